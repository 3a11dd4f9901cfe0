/*
 * fuzz_savefile.c: libFuzzer harness for the reader of role_guard's save
 * file (src/savefile.c, the very file the extension is built from; it
 * calls no backend function).  See test/fuzz/run.
 *
 * The first input byte picks how the rest is used:
 *	even	the rest is a whole file, read as is (headers, sizes, CRC);
 *	odd		the rest is a payload: the harness puts a header in front
 *			whose counts and CRC fit it (the second byte says how many of
 *			its records are events and active counts), so the fuzzer
 *			gets past the checksum and reaches the checks of every record.
 * A file the reader accepts is then read record by record, and every
 * promise the reader makes is checked: names and strings terminated, no
 * negative count, each window slot at its place.
 *
 * Built with -DRG_SAVEFILE_SEEDS instead, it is a program that writes the
 * seed corpus (a valid file, and its payload-mode twin) into a directory.
 */
#include "postgres.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "savefile.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_slots(const RGWindowSlot *slots, int n, int32 last)
{
	int			i;

	for (i = 0; i < n; i++)
		if (slots[i].number != 0 &&
			(slots[i].number % n != i || slots[i].number > last ||
			 slots[i].peak < 0 || slots[i].rejected < 0 || slots[i].waited < 0 ||
			 slots[i].member_waited < 0))
			abort();
}

static void
check_contents(const RGSaveContents *c)
{
	uint32		i;

	for (i = 0; i < c->ncounters; i++)
	{
		RGSavedCounter sc;

		rg_save_counter(c, i, &sc);
		if (strlen(NameStr(sc.rolname)) >= NAMEDATALEN ||
			sc.key.kind < RG_COUNTER_ROLE || sc.key.kind > RG_COUNTER_ROLEDB ||
			sc.stats.peak < 0 || sc.stats.rejected.done < 0)
			abort();
		check_slots(sc.windows.hours, RG_WINDOW_HOURS, sc.windows.last_hour);
		check_slots(sc.windows.days, RG_WINDOW_DAYS, sc.windows.last_day);
		if (sc.windows.hour_ix < 0 || sc.windows.hour_ix >= RG_WINDOW_HOURS ||
			sc.windows.day_ix < 0 || sc.windows.day_ix >= RG_WINDOW_DAYS)
			abort();			/* the login path indexes the slots with these */
	}
	for (i = 0; i < c->nactive; i++)
	{
		RGSavedActive a;

		rg_save_active(c, i, &a);
		if (strlen(a.entry) >= sizeof(a.entry) || a.kind == RG_ENTRY_DEFAULT ||
			a.kind > RG_ENTRY_ROLE_DATABASE || a.stats.rejected < 0 ||
			a.stats.waited < 0 || a.stats.would_wait < 0)
			abort();			/* active.c keys its hash with these */
		if (a.entry_kind != (int32) a.kind &&
			!(a.kind == RG_ENTRY_ROLE && a.entry_kind == RG_ENTRY_DEFAULT))
			abort();			/* "*" is a role's count, nothing else moves */
		if (OidIsValid(a.roleid) != (a.kind != RG_ENTRY_DATABASE) ||
			OidIsValid(a.dboid) != (a.kind == RG_ENTRY_DATABASE ||
									a.kind == RG_ENTRY_ROLE_DATABASE))
			abort();			/* the OIDs its kind names, no other */
	}
	for (i = 0; i < c->nevents; i++)
	{
		RGEvent		ev;

		rg_save_event(c, i, &ev);
		if (strlen(ev.detail) >= sizeof(ev.detail) ||
			strlen(ev.client_addr) >= sizeof(ev.client_addr) || ev.kind < 0)
			abort();
	}
}

/*
 * A header in front of a payload, with counts and CRC that fit it: the
 * first byte says how many events (bits 0-1) and active counts (bits 2-3)
 * the payload ends with; counters take the rest.
 */
static size_t
wrap_payload(const uint8_t *data, size_t size, char **out)
{
	uint32		nevents = size > 0 ? data[0] % 4 : 0;
	uint32		nactive = size > 0 ? (data[0] >> 2) % 4 : 0;
	size_t		body = size > 0 ? size - 1 : 0;
	size_t		rest;
	uint32		ncounters;
	RGSaveHeader h;
	pg_crc32c	crc;

	if (body < sizeof(RGSaveGlobals) + (size_t) nevents * sizeof(RGEvent) +
		(size_t) nactive * sizeof(RGSavedActive))
		nevents = nactive = 0;
	if (body < sizeof(RGSaveGlobals))
		body = sizeof(RGSaveGlobals);
	rest = body - sizeof(RGSaveGlobals) - (size_t) nevents * sizeof(RGEvent) -
		(size_t) nactive * sizeof(RGSavedActive);
	ncounters = (uint32) (rest / sizeof(RGSavedCounter));
	rg_save_header_init(&h, 7, ncounters, nactive, nevents);
	*out = calloc(1, sizeof(h) + h.payload_size);
	if (size > 1)
		memcpy(*out + sizeof(h), data + 1, Min(size - 1, (size_t) h.payload_size));
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, *out + sizeof(h), h.payload_size);
	FIN_CRC32C(crc);
	h.crc = crc;
	memcpy(*out, &h, sizeof(h));
	return sizeof(h) + h.payload_size;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	RGSaveContents c;
	char		err[256];
	char	   *file;
	size_t		len;

	if (size == 0)
		return 0;
	if (data[0] & 1)
		len = wrap_payload(data + 1, size - 1, &file);
	else
	{
		len = size - 1;
		file = malloc(Max(len, 1));
		memcpy(file, data + 1, len);
	}
	err[0] = '\0';
	if (rg_save_parse(file, len, &c, err, sizeof(err)))
		check_contents(&c);
	else if (err[0] == '\0')
		abort();				/* a refusal always says why */
	free(file);
	return 0;
}

#ifdef RG_SAVEFILE_SEEDS
/*
 * Seeds: one valid file with two counters, one active count and one event
 * (whole-file mode), the same as a payload (payload mode), and an empty
 * file.
 */
static void
write_seed(const char *dir, const char *name, uint8_t mode, const char *data,
		   size_t len)
{
	char		path[1024];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL)
		exit(1);
	fputc(mode, f);
	fwrite(data, 1, len, f);
	fclose(f);
}

int
main(int argc, char **argv)
{
	struct
	{
		RGSaveHeader h;
		RGSaveGlobals g;
		RGSavedCounter c[2];
		RGSavedActive a;
		RGEvent		e;
	}			file;
	pg_crc32c	crc;
	char		payload[sizeof(file) - sizeof(RGSaveHeader) + 1];

	if (argc != 2)
		return 2;
	memset(&file, 0, sizeof(file));
	file.g.saved_at = 849312000000000;
	file.g.windows_since = 848707200000000;
	file.c[0].key.kind = RG_COUNTER_ROLE;
	file.c[0].key.roleid = 16384;
	strcpy(NameStr(file.c[0].rolname), "app");
	file.c[0].stats.peak = 7;
	file.c[0].stats.rejected.done = 3;
	file.c[0].windows.last_hour = 235920;
	file.c[0].windows.last_day = 9830;
	file.c[0].windows.hour_ix = 235920 % RG_WINDOW_HOURS;
	file.c[0].windows.day_ix = 9830 % RG_WINDOW_DAYS;
	file.c[0].windows.hours[235920 % RG_WINDOW_HOURS].number = 235920;
	file.c[0].windows.hours[235920 % RG_WINDOW_HOURS].peak = 7;
	file.c[0].windows.days[9830 % RG_WINDOW_DAYS].number = 9830;
	file.c[0].windows.days[9830 % RG_WINDOW_DAYS].peak = 7;
	file.c[1].key.kind = RG_COUNTER_DB;
	file.c[1].key.dboid = 5;
	strcpy(NameStr(file.c[1].rolname), "postgres");
	file.a.kind = RG_ENTRY_GROUP;
	file.a.roleid = 16390;
	file.a.entry_kind = RG_ENTRY_GROUP;
	strcpy(file.a.entry, "+tenants");
	file.a.stats.rejected = 2;
	file.a.stats.waited = 5;
	file.e.kind = 0;
	strcpy(NameStr(file.e.rolname), "app");
	strcpy(file.e.client_addr, "10.0.0.1");
	strcpy(file.e.detail, "role_guard budget \"app=7\" is full (7 of 7 sessions).");
	rg_save_header_init(&file.h, 7, 2, 1, 1);
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, (char *) &file + sizeof(RGSaveHeader), file.h.payload_size);
	FIN_CRC32C(crc);
	file.h.crc = crc;
	write_seed(argv[1], "savefile_valid", 0, (char *) &file, sizeof(file));
	payload[0] = 1 | (1 << 2);	/* one event, one active count */
	memcpy(payload + 1, (char *) &file + sizeof(RGSaveHeader), sizeof(payload) - 1);
	write_seed(argv[1], "savefile_payload", 1, payload, sizeof(payload));
	write_seed(argv[1], "savefile_empty", 0, "", 0);
	write_seed(argv[1], "savefile_short", 0, (char *) &file, 20);
	return 0;
}
#endif
