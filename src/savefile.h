/*-------------------------------------------------------------------------
 *
 * savefile.h
 *	  The format of the file role_guard keeps its counters, windows and
 *	  events in across a clean restart (pg_stat/role_guard.stat), and its
 *	  reader: a pure function over a byte buffer (savefile.c calls no
 *	  backend function), so it can be fuzzed without a server
 *	  (test/fuzz/fuzz_savefile.c).  persist.c writes and reads the file.
 *
 * Layout, in the server's own byte order and struct layout (the file never
 * leaves its data directory):
 *	RGSaveHeader	magic, format, the sizes of the header and of each
 *					record, the record counts, the database system
 *					identifier of the cluster that wrote it (pg_control),
 *					the payload's size and its CRC-32C;
 *	payload			one RGSaveGlobals, ncounters RGSavedCounter, nactive
 *					RGSavedActive, nevents RGEvent (oldest first).
 * A change of any record's layout must bump RG_SAVE_FORMAT (the sizes in
 * the header catch most, not all, of such changes).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RG_SAVEFILE_H
#define RG_SAVEFILE_H

#include "port/pg_crc32c.h"

#include "role_guard.h"

#define RG_SAVE_FILE		"pg_stat/role_guard.stat"
#define RG_SAVE_MAGIC		0x52475356	/* "RGSV" */
#define RG_SAVE_FORMAT		4
/* the largest file read (and written): what one palloc may hold */
#define RG_SAVE_MAX_BYTES	((size_t) 0x3fffffff)

typedef struct RGSaveHeader
{
	uint32		magic;
	uint32		format;
	uint32		header_size;	/* sizeof(RGSaveHeader) */
	uint32		globals_size;	/* sizeof(RGSaveGlobals) */
	uint32		counter_size;	/* sizeof(RGSavedCounter) */
	uint32		event_size;		/* sizeof(RGEvent) */
	uint32		active_size;	/* sizeof(RGSavedActive) */
	uint32		ncounters;
	uint32		nactive;
	uint32		nevents;
	uint64		system_identifier;	/* the writer's cluster */
	uint64		payload_size;	/* bytes after the header */
	pg_crc32c	crc;			/* CRC-32C of the payload */
	uint32		pad;
} RGSaveHeader;

typedef struct RGSaveGlobals
{
	TimestampTz saved_at;
	TimestampTz windows_since;	/* RGShared.windows_since */
	RGGlobalStats stats;
} RGSaveGlobals;

/* A counter as saved: no sessions, pins or reservations (none survive). */
typedef struct RGSavedCounter
{
	RGCounterKey key;
	NameData	rolname;
	bool		rolsuper;
	RGCounterStats stats;
	uint64		statements;
	RGWindows	windows;
} RGSavedCounter;

/*
 * An active budget's count as saved (active.c): its key (the entry's kind,
 * "*" as a role's; the role or group; the database), the entry over it and
 * its statistics.  No places or waiters (none survive).
 */
typedef struct RGSavedActive
{
	uint32		kind;			/* RGEntryKind, never RG_ENTRY_DEFAULT */
	Oid			roleid;
	Oid			dboid;
	int32		entry_kind;		/* RGEntryKind of the entry over it */
	char		entry[RG_ENTRY_TEXT_LEN];
	RGActiveStats stats;
} RGSavedActive;

/* A file's contents once checked: records still in the buffer, unaligned. */
typedef struct RGSaveContents
{
	uint64		system_identifier;	/* of the cluster that wrote it */
	RGSaveGlobals globals;
	uint32		ncounters;
	const char *counters;		/* read with rg_save_counter */
	uint32		nactive;
	const char *active;			/* read with rg_save_active */
	uint32		nevents;
	const char *events;			/* read with rg_save_event */
} RGSaveContents;

extern uint64 rg_save_payload_size(uint32 ncounters, uint32 nactive,
								   uint32 nevents);
extern void rg_save_header_init(RGSaveHeader *h, uint64 system_identifier,
								uint32 ncounters, uint32 nactive,
								uint32 nevents);
extern bool rg_save_parse(const char *buf, size_t len, RGSaveContents *out,
						  char *err, size_t errlen);
extern void rg_save_counter(const RGSaveContents *c, uint32 i,
							RGSavedCounter *out);
extern void rg_save_active(const RGSaveContents *c, uint32 i,
						   RGSavedActive *out);
extern void rg_save_event(const RGSaveContents *c, uint32 i, RGEvent *out);

#endif							/* RG_SAVEFILE_H */
