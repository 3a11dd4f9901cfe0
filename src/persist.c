/*-------------------------------------------------------------------------
 *
 * persist.c
 *	  Memory across restarts: with role_guard.save on, a clean shutdown
 *	  writes the counters (totals, peaks, windows) and the event ring to
 *	  pg_stat/role_guard.stat, and the next start reads them back and
 *	  removes the file, as pg_stat_statements does with its dump file.
 *
 * When.  Both run in the postmaster (or a standalone backend), when no
 * other process uses shared memory, so no lock is taken:
 *	- the start: from shmem.c's startup hook, right after shared memory is
 *	  made.  The file is read only if pg_control says the server was shut
 *	  down cleanly (DB_SHUTDOWNED, or DB_SHUTDOWNED_IN_RECOVERY on a
 *	  standby); it is removed whatever it held, so a crash, a crash-restart
 *	  or an immediate shutdown after this start finds nothing to read.
 *	- the end: an on_shmem_exit callback of the postmaster.  It writes only
 *	  with code 0 and when pg_control says the server shut down cleanly:
 *	  after an immediate shutdown the postmaster also exits with 0, but no
 *	  shutdown checkpoint was written.  The file is written under a
 *	  temporary name and renamed with durable_rename.
 * A file that is missing, unreadable, too large, truncated, of another
 * format, or fails its checksum or its checks (savefile.c) gives one LOG
 * line and an empty start, never a failed start.
 *
 * What is kept.  Counters that hold statistics, keyed as in memory (kind,
 * role OID, database OID), with the role's (or database's) name as last
 * seen; the active budgets' counts that hold statistics (active.c: the
 * refusals and waits that role_guard_budgets shows for active_* entries),
 * with the entry over each; the global counts; the events, oldest first.
 * The LOG lines count both kinds of counts as counters.  A file is read
 * only by the cluster that wrote it (pg_control's system identifier).  Not kept: sessions,
 * pins, reservations (applied again at the next login), kept member counts
 * (counted again from the slots when an entry needs them).  A role dropped
 * while the server was down keeps its counter under its last name, exactly
 * as one dropped while it runs (the views show it by that name until
 * role_guard_reset() or a full table evicts it; role_guard_advice, which
 * lists existing roles only, leaves it out).  If the table or the ring is
 * smaller than the file (role_guard.max_roles or event_log_size lowered),
 * what does not fit is left out and the LOG line says how much.
 *
 * pg_stat/ is per node and not replicated: a standby writes and reads its
 * own file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_control.h"
#include "common/controldata_utils.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "savefile.h"

#define RG_SAVE_TMP		RG_SAVE_FILE ".tmp"

/*
 * Did the server shut down cleanly?  From pg_control: at start, as the last
 * shutdown left it (the startup process has not run yet); at the
 * postmaster's exit, as this shutdown left it.  Any failure to tell counts
 * as "no".  *sysid: the cluster's database system identifier (0 when it
 * could not be read), which a file must carry to be read back: a file
 * copied from another cluster would pin its counters on whatever roles
 * have the same OIDs here.  A physical standby has its primary's.
 */
static bool
rg_clean_shutdown(uint64 *sysid)
{
	bool		clean = false;
	MemoryContext cxt = CurrentMemoryContext;

	*sysid = 0;
	PG_TRY();
	{
		bool		crc_ok = false;
		ControlFileData *cf = get_controlfile(DataDir, &crc_ok);

		clean = crc_ok && (cf->state == DB_SHUTDOWNED ||
						   cf->state == DB_SHUTDOWNED_IN_RECOVERY);
		if (crc_ok)
			*sysid = cf->system_identifier;
		pfree(cf);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		clean = false;
	}
	PG_END_TRY();
	return clean;
}

/* Read the whole file into a palloc'd buffer; NULL with a LOG line. */
static char *
rg_read_file(size_t *len)
{
	struct stat st;
	char	   *buf;
	int			fd;
	size_t		done = 0;

	if (stat(RG_SAVE_FILE, &st) != 0)
	{
		if (errno == ENOENT)
			ereport(LOG,
					(errmsg("role_guard: no saved statistics in \"%s\", starting empty",
							RG_SAVE_FILE)));
		else
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("role_guard: could not stat file \"%s\", starting empty: %m",
							RG_SAVE_FILE)));
		return NULL;
	}
	/* a directory, a FIFO (whose open would wait for a writer), a device */
	if (!S_ISREG(st.st_mode))
	{
		ereport(LOG,
				(errmsg("role_guard: ignored file \"%s\", starting empty: it is not a regular file",
						RG_SAVE_FILE)));
		return NULL;
	}
	if ((uint64) st.st_size > RG_SAVE_MAX_BYTES)
	{
		ereport(LOG,
				(errmsg("role_guard: ignored file \"%s\", starting empty: it has %lld bytes, more than %zu",
						RG_SAVE_FILE, (long long) st.st_size, RG_SAVE_MAX_BYTES)));
		return NULL;
	}
	*len = (size_t) st.st_size;
	buf = palloc_extended(Max(*len, 1), MCXT_ALLOC_NO_OOM);
	/* never waits: replaced by a FIFO since the stat, it reads as empty */
	fd = OpenTransientFile(RG_SAVE_FILE, O_RDONLY | PG_BINARY
#ifdef O_NONBLOCK
						   | O_NONBLOCK
#endif
		);
	if (buf == NULL || fd < 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("role_guard: could not read file \"%s\", starting empty: %m",
						RG_SAVE_FILE)));
		if (fd >= 0)
			CloseTransientFile(fd);
		return NULL;
	}
	while (done < *len)
	{
		ssize_t		n = read(fd, buf + done, *len - done);

		if (n <= 0)
			break;
		done += n;
	}
	CloseTransientFile(fd);
	*len = done;				/* a file cut meanwhile reads as truncated */
	return buf;
}

/* Milliseconds since "start". */
static double
rg_ms_since(TimestampTz start)
{
	return (GetCurrentTimestamp() - start) / 1000.0;
}

/* Put a checked file's contents into shared memory. */
static void
rg_restore(const RGSaveContents *contents, TimestampTz start)
{
	uint32		i;
	uint32		counters = 0;
	uint32		events = 0;

	rg_shared->stats = contents->globals.stats;
	rg_shared->windows_since = contents->globals.windows_since;
	for (i = 0; i < contents->ncounters; i++)
	{
		RGSavedCounter c;

		rg_save_counter(contents, i, &c);
		if (rg_counter_restore(&c))
			counters++;
	}
	for (i = 0; i < contents->nactive; i++)
	{
		RGSavedActive a;

		rg_save_active(contents, i, &a);
		if (rg_active_restore(&a))
			counters++;
	}
	for (i = 0; i < contents->nevents; i++)
	{
		RGEvent		ev;

		rg_save_event(contents, i, &ev);
		rg_event_restore(&ev);
	}
	/* a smaller ring keeps the newest */
	events = (uint32) rg_events_count();
	ereport(LOG,
			(errmsg("role_guard: restored %u counters and %u events saved at %s (%.1f ms)",
					counters, events,
					timestamptz_to_str(contents->globals.saved_at),
					rg_ms_since(start)),
			 (counters < contents->ncounters + contents->nactive ||
			  events < contents->nevents) ?
			 errdetail("%u counters and %u events did not fit (role_guard.max_roles, role_guard.event_log_size).",
					   contents->ncounters + contents->nactive - counters,
					   contents->nevents - events) : 0));
}

/*
 * The contents of the file, if this cluster may read them back: false with
 * a sentence in err for one it may not (damaged, of another format, or
 * another cluster's).
 */
static bool
rg_readable(const char *buf, size_t len, uint64 sysid,
			RGSaveContents *contents, char *err, size_t errlen)
{
	if (!rg_save_parse(buf, len, contents, err, errlen))
		return false;
	if (contents->system_identifier != sysid)
	{
		snprintf(err, errlen,
				 "it was written by another cluster (database system identifier %llu, this one's is %llu)",
				 (unsigned long long) contents->system_identifier,
				 (unsigned long long) sysid);
		return false;
	}
	return true;
}

/* At start: read the file back if the last shutdown was clean, remove it. */
static void
rg_persist_read(void)
{
	RGSaveContents contents;
	char		err[256];
	char	   *buf;
	size_t		len = 0;
	TimestampTz start = GetCurrentTimestamp();
	uint64		sysid = 0;

	if (access(RG_SAVE_FILE, F_OK) == 0 && !rg_clean_shutdown(&sysid))
	{
		ereport(LOG,
				(errmsg("role_guard: ignored file \"%s\", starting empty: the server did not shut down cleanly",
						RG_SAVE_FILE)));
		unlink(RG_SAVE_FILE);
		return;
	}
	buf = rg_read_file(&len);
	if (buf == NULL)
	{
		unlink(RG_SAVE_FILE);
		return;
	}
	if (rg_readable(buf, len, sysid, &contents, err, sizeof(err)))
		rg_restore(&contents, start);
	else
		ereport(LOG,
				(errmsg("role_guard: ignored file \"%s\", starting empty: %s",
						RG_SAVE_FILE, err)));
	pfree(buf);
	unlink(RG_SAVE_FILE);
}

/* Write part of the payload, adding it to the CRC. */
static bool
rg_write_part(FILE *f, const void *data, size_t len, pg_crc32c *crc)
{
	COMP_CRC32C(*crc, data, len);
	return fwrite(data, 1, len, f) == len;
}

/* Where rg_write_event writes. */
typedef struct RGWriteTarget
{
	FILE	   *f;
	pg_crc32c  *crc;
} RGWriteTarget;

static bool
rg_write_event(const RGEvent *ev, void *arg)
{
	RGWriteTarget *out = (RGWriteTarget *) arg;

	return rg_write_part(out->f, ev, sizeof(RGEvent), out->crc);
}

static bool
rg_write_active(const RGSavedActive *a, void *arg)
{
	RGWriteTarget *out = (RGWriteTarget *) arg;

	return rg_write_part(out->f, a, sizeof(RGSavedActive), out->crc);
}

/* Write the payload's records; sets the counts.  False on a write error. */
static bool
rg_write_records(FILE *f, pg_crc32c *crc, uint32 *ncounters, uint32 *nactive,
				 uint32 *nevents)
{
	RGSaveGlobals g;
	RGSavedCounter c;
	RGWriteTarget out;
	int			place;
	int			n;

	memset(&g, 0, sizeof(g));
	g.saved_at = GetCurrentTimestamp();
	g.windows_since = rg_shared->windows_since;
	g.stats = rg_shared->stats;
	if (!rg_write_part(f, &g, sizeof(g), crc))
		return false;
	*ncounters = 0;
	for (place = 0; place < rg_counter_capacity(); place++)
	{
		if (!rg_counter_save(place, &c))
			continue;
		if (!rg_write_part(f, &c, sizeof(c), crc))
			return false;
		(*ncounters)++;
	}
	out.f = f;
	out.crc = crc;
	n = rg_active_each_saved(rg_write_active, &out);
	if (n < 0)
		return false;
	*nactive = (uint32) n;
	n = rg_events_each(rg_write_event, &out);
	*nevents = (uint32) Max(n, 0);
	return n >= 0;
}

/* At a clean shutdown: write the file (temporary name, then renamed). */
static void
rg_persist_write(uint64 sysid)
{
	RGSaveHeader h;
	pg_crc32c	crc;
	uint32		ncounters;
	uint32		nactive;
	uint32		nevents;
	FILE	   *f;
	TimestampTz start = GetCurrentTimestamp();

	rg_active_fold();			/* the active peaks since the reaper's last scan */
	f = AllocateFile(RG_SAVE_TMP, PG_BINARY_W);
	if (f == NULL)
		goto error;
	rg_save_header_init(&h, sysid, 0, 0, 0);
	if (fwrite(&h, sizeof(h), 1, f) != 1)
		goto error;
	INIT_CRC32C(crc);
	if (!rg_write_records(f, &crc, &ncounters, &nactive, &nevents))
		goto error;
	FIN_CRC32C(crc);
	rg_save_header_init(&h, sysid, ncounters, nactive, nevents);
	if (h.payload_size + sizeof(h) > RG_SAVE_MAX_BYTES)
	{
		ereport(LOG,
				(errmsg("role_guard: statistics not saved: %u counters and %u events need more than %zu bytes",
						ncounters + nactive, nevents, RG_SAVE_MAX_BYTES)));
		FreeFile(f);
		unlink(RG_SAVE_TMP);
		return;
	}
	h.crc = crc;
	if (fseek(f, 0, SEEK_SET) != 0 || fwrite(&h, sizeof(h), 1, f) != 1)
		goto error;
	if (FreeFile(f) != 0)
	{
		f = NULL;
		goto error;
	}
	if (durable_rename(RG_SAVE_TMP, RG_SAVE_FILE, LOG) != 0)
	{
		/* core logged why: a directory in the way, or a failed fsync after it */
		ereport(LOG,
				(errmsg("role_guard: statistics may not be saved: could not rename \"%s\" to \"%s\" durably",
						RG_SAVE_TMP, RG_SAVE_FILE)));
		unlink(RG_SAVE_TMP);
		return;
	}
	ereport(LOG,
			(errmsg("role_guard: saved %u counters and %u events to \"%s\" (%.1f ms)",
					ncounters + nactive, nevents, RG_SAVE_FILE, rg_ms_since(start))));
	return;

error:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("role_guard: could not write file \"%s\": %m", RG_SAVE_TMP)));
	if (f)
		FreeFile(f);
	unlink(RG_SAVE_TMP);
}

/*
 * on_shmem_exit of the postmaster: only a clean exit writes.  The exit
 * code is not enough: after an immediate shutdown the postmaster exits
 * with 0 too, without a shutdown checkpoint, so pg_control decides, as it
 * does for core's statistics.
 */
static void
rg_persist_shutdown(int code, Datum arg)
{
	uint64		sysid;

	if (code != 0 || rg_shared == NULL || !rg_save)
		return;
	if (!rg_clean_shutdown(&sysid))
	{
		ereport(LOG,
				(errmsg("role_guard: statistics not saved: the server did not shut down cleanly")));
		return;
	}
	rg_persist_write(sysid);
}

/*
 * Called from shmem.c's startup hook once shared memory is made.  Only the
 * process that made it (the postmaster, or a standalone backend) reads and
 * writes the file.  With role_guard.save off, nothing is read or written,
 * and a file left from an earlier run is removed unread (it would be stale
 * when the setting is turned on again).
 */
void
rg_persist_startup(void)
{
	if (IsUnderPostmaster)
		return;
	on_shmem_exit(rg_persist_shutdown, (Datum) 0);
	if (!rg_save)
	{
		unlink(RG_SAVE_FILE);
		return;
	}
	rg_persist_read();
}
