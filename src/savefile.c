/*-------------------------------------------------------------------------
 *
 * savefile.c
 *	  The reader of role_guard's save file, and the header its writer puts:
 *	  see savefile.h for the layout.
 *
 * rg_save_parse checks a whole file held in a buffer and says in one
 * sentence what is wrong with a bad one: too short, not ours, another
 * format version, sizes that do not add up (truncated, or more bytes than
 * the header accounts for), a CRC mismatch, or a record whose values no
 * server could have written (a counter kind, OIDs that do not fit the
 * kind, an unterminated name, a negative count, a window slot out of its
 * place, an active count whose OIDs or entry do not fit its kind).
 * Nothing here calls into the backend (no palloc, no elog), so
 * test/fuzz links it alone; no input can make it read outside the buffer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "savefile.h"

/* Bytes of the payload for so many records. */
uint64
rg_save_payload_size(uint32 ncounters, uint32 nactive, uint32 nevents)
{
	return (uint64) sizeof(RGSaveGlobals) +
		(uint64) ncounters * sizeof(RGSavedCounter) +
		(uint64) nactive * sizeof(RGSavedActive) +
		(uint64) nevents * sizeof(RGEvent);
}

/* A header for so many records of a cluster; the writer adds the CRC. */
void
rg_save_header_init(RGSaveHeader *h, uint64 system_identifier,
					uint32 ncounters, uint32 nactive, uint32 nevents)
{
	memset(h, 0, sizeof(*h));
	h->magic = RG_SAVE_MAGIC;
	h->format = RG_SAVE_FORMAT;
	h->header_size = sizeof(RGSaveHeader);
	h->globals_size = sizeof(RGSaveGlobals);
	h->counter_size = sizeof(RGSavedCounter);
	h->event_size = sizeof(RGEvent);
	h->active_size = sizeof(RGSavedActive);
	h->ncounters = ncounters;
	h->nactive = nactive;
	h->nevents = nevents;
	h->system_identifier = system_identifier;
	h->payload_size = rg_save_payload_size(ncounters, nactive, nevents);
}

static bool
rg_save_fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return false;
}

static bool
rg_terminated(const char *s, size_t len)
{
	return memchr(s, '\0', len) != NULL;
}

static bool
rg_outcome_ok(const RGOutcome *o)
{
	return o->done >= 0 && o->would >= 0;
}

/* One ring of window slots: each slot at its place, no negative count. */
static bool
rg_ring_ok(const RGWindowSlot *slots, int n, int32 last)
{
	int			i;

	if (last < 0)
		return false;
	for (i = 0; i < n; i++)
	{
		const RGWindowSlot *s = &slots[i];

		if (s->number == 0)
			continue;
		if (s->number < 0 || s->number > last || s->number % n != i ||
			s->peak < 0 || s->member_peak < 0 || s->rejected < 0 ||
			s->member_rejected < 0 || s->waited < 0 || s->active_peak < 0 ||
			s->member_active_peak < 0 || s->active_waited < 0 ||
			s->member_waited < 0)
			return false;
	}
	return true;
}

static bool
rg_saved_counter_ok(const RGSavedCounter *c)
{
	const RGCounterStats *st = &c->stats;
	bool		role = OidIsValid(c->key.roleid);
	bool		db = OidIsValid(c->key.dboid);

	switch (c->key.kind)
	{
		case RG_COUNTER_ROLE:
			if (!role || db)
				return false;
			break;
		case RG_COUNTER_DB:
			if (role || !db)
				return false;
			break;
		case RG_COUNTER_ROLEDB:
			if (!role || !db)
				return false;
			break;
		default:
			return false;
	}
	return rg_terminated(NameStr(c->rolname), NAMEDATALEN) &&
		st->peak >= 0 && st->waited >= 0 && st->wait_timeouts >= 0 &&
		rg_outcome_ok(&st->rejected) && rg_outcome_ok(&st->entry_rejected) &&
		rg_outcome_ok(&st->group_rejected) &&
		rg_outcome_ok(&st->superuser_denied) && rg_outcome_ok(&st->reaped) &&
		rg_outcome_ok(&st->evicted) &&
		rg_ring_ok(c->windows.hours, RG_WINDOW_HOURS, c->windows.last_hour) &&
		rg_ring_ok(c->windows.days, RG_WINDOW_DAYS, c->windows.last_day) &&
		c->windows.hour_ix == c->windows.last_hour % RG_WINDOW_HOURS &&
		c->windows.day_ix == c->windows.last_day % RG_WINDOW_DAYS;
}

/* An active count: OIDs that fit its kind, an entry that may be over it. */
static bool
rg_saved_active_ok(const RGSavedActive *a)
{
	bool		role = OidIsValid(a->roleid);
	bool		db = OidIsValid(a->dboid);
	bool		kinds;

	switch (a->kind)
	{
		case RG_ENTRY_ROLE:
			kinds = role && !db && (a->entry_kind == RG_ENTRY_ROLE ||
									a->entry_kind == RG_ENTRY_DEFAULT);
			break;
		case RG_ENTRY_GROUP:
			kinds = role && !db && a->entry_kind == RG_ENTRY_GROUP;
			break;
		case RG_ENTRY_DATABASE:
			kinds = !role && db && a->entry_kind == RG_ENTRY_DATABASE;
			break;
		case RG_ENTRY_ROLE_DATABASE:
			kinds = role && db && a->entry_kind == RG_ENTRY_ROLE_DATABASE;
			break;
		default:
			kinds = false;
			break;
	}
	return kinds && rg_terminated(a->entry, sizeof(a->entry)) &&
		a->stats.waited >= 0 && a->stats.rejected >= 0 &&
		a->stats.would_wait >= 0;
}

static bool
rg_saved_event_ok(const RGEvent *ev)
{
	return ev->kind >= 0 && ev->kind < RG_EVENT_NKINDS &&
		rg_terminated(NameStr(ev->rolname), NAMEDATALEN) &&
		rg_terminated(NameStr(ev->datname), NAMEDATALEN) &&
		rg_terminated(ev->client_addr, sizeof(ev->client_addr)) &&
		rg_terminated(ev->application_name, sizeof(ev->application_name)) &&
		rg_terminated(ev->detail, sizeof(ev->detail));
}

/* The header: ours, this format, sizes that add up to the file's. */
static bool
rg_save_header_ok(const RGSaveHeader *h, size_t len, char *err, size_t errlen)
{
	if (h->magic != RG_SAVE_MAGIC)
		return rg_save_fail(err, errlen, "it is not a role_guard save file");
	if (h->format != RG_SAVE_FORMAT)
	{
		snprintf(err, errlen, "it has format %u, this server reads format %d",
				 h->format, RG_SAVE_FORMAT);
		return false;
	}
	if (h->header_size != sizeof(RGSaveHeader) ||
		h->globals_size != sizeof(RGSaveGlobals) ||
		h->counter_size != sizeof(RGSavedCounter) ||
		h->event_size != sizeof(RGEvent) ||
		h->active_size != sizeof(RGSavedActive))
		return rg_save_fail(err, errlen,
							"its record sizes are not this build's (another build of role_guard, or a damaged header)");
	if (h->payload_size != rg_save_payload_size(h->ncounters, h->nactive,
												 h->nevents))
		return rg_save_fail(err, errlen, "its header does not add up");
	if (len - sizeof(RGSaveHeader) < h->payload_size)
	{
		snprintf(err, errlen, "it is truncated (%zu bytes, %llu expected)",
				 len, (unsigned long long) (h->payload_size + sizeof(RGSaveHeader)));
		return false;
	}
	if (len - sizeof(RGSaveHeader) > h->payload_size)
	{
		snprintf(err, errlen, "it has %zu bytes, %llu expected",
				 len, (unsigned long long) (h->payload_size + sizeof(RGSaveHeader)));
		return false;
	}
	return true;
}

/*
 * Check a whole save file held in buf[0 .. len-1].  True with *out set
 * (its records still in buf); false with a sentence in err.
 */
bool
rg_save_parse(const char *buf, size_t len, RGSaveContents *out, char *err,
			  size_t errlen)
{
	RGSaveHeader h;
	const char *payload = buf + sizeof(RGSaveHeader);
	pg_crc32c	crc;
	uint32		i;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return rg_save_fail(err, errlen, "it is empty");
	if (len < sizeof(RGSaveHeader))
		return rg_save_fail(err, errlen, "it is shorter than its header");
	memcpy(&h, buf, sizeof(h));
	if (!rg_save_header_ok(&h, len, err, errlen))
		return false;
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, payload, h.payload_size);
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, h.crc))
		return rg_save_fail(err, errlen, "its checksum does not match its contents");

	out->system_identifier = h.system_identifier;
	memcpy(&out->globals, payload, sizeof(RGSaveGlobals));
	out->ncounters = h.ncounters;
	out->counters = payload + sizeof(RGSaveGlobals);
	out->nactive = h.nactive;
	out->active = out->counters + (size_t) h.ncounters * sizeof(RGSavedCounter);
	out->nevents = h.nevents;
	out->events = out->active + (size_t) h.nactive * sizeof(RGSavedActive);
	if (!rg_outcome_ok(&out->globals.stats.default_rejected))
		return rg_save_fail(err, errlen, "its global counts are negative");
	for (i = 0; i < out->ncounters; i++)
	{
		RGSavedCounter c;

		rg_save_counter(out, i, &c);
		if (!rg_saved_counter_ok(&c))
		{
			snprintf(err, errlen, "its counter %u has values no server writes", i);
			return false;
		}
	}
	for (i = 0; i < out->nactive; i++)
	{
		RGSavedActive a;

		rg_save_active(out, i, &a);
		if (!rg_saved_active_ok(&a))
		{
			snprintf(err, errlen, "its active count %u has values no server writes", i);
			return false;
		}
	}
	for (i = 0; i < out->nevents; i++)
	{
		RGEvent		ev;

		rg_save_event(out, i, &ev);
		if (!rg_saved_event_ok(&ev))
		{
			snprintf(err, errlen, "its event %u has values no server writes", i);
			return false;
		}
	}
	return true;
}

/* Counter i of a checked file, copied out (the buffer is unaligned). */
void
rg_save_counter(const RGSaveContents *c, uint32 i, RGSavedCounter *out)
{
	memcpy(out, c->counters + (size_t) i * sizeof(RGSavedCounter), sizeof(*out));
}

/* Active count i of a checked file, copied out. */
void
rg_save_active(const RGSaveContents *c, uint32 i, RGSavedActive *out)
{
	memcpy(out, c->active + (size_t) i * sizeof(RGSavedActive), sizeof(*out));
}

/* Event i (oldest first) of a checked file, copied out. */
void
rg_save_event(const RGSaveContents *c, uint32 i, RGEvent *out)
{
	memcpy(out, c->events + (size_t) i * sizeof(RGEvent), sizeof(*out));
}
