/*-------------------------------------------------------------------------
 *
 * reaper.c
 *	  The background worker that ends sessions idle (or idle in
 *	  transaction) past their role's limit.
 *
 * The worker connects to no database (it reads only the shared catalogs
 * pg_authid and pg_auth_members), starts once the server is consistent, so
 * it runs on hot standbys too, and is restarted a second after it dies
 * (SIGTERM makes it exit with status 1).  Every role_guard.reap_interval it
 * scans role_guard's per-backend slots:
 *	- state and idle time come from the slot and the backend's PGPROC (see
 *	  rg_backend_state and executor.c), which no session setting can hide or
 *	  change: not idle_session_timeout, PGOPTIONS, ALTER ROLE ... SET or
 *	  track_activities;
 *	- a role's limits are resolved once (pg_authid, pg_auth_members through
 *	  the syscache) and kept in a local hash until the settings are reloaded
 *	  or a role or membership changes (syscache invalidation), so a scan in
 *	  the steady state reads shared memory only: O(slots), no lock, no SPI,
 *	  no catalog access;
 *	- only client backends that role_guard admitted have slots; walsenders
 *	  are skipped, and background workers, autovacuum, parallel workers and
 *	  this worker never have one.
 * Before signalling, it reads the slot and the PGPROC again and goes ahead
 * only if the same process is still idle since the same moment.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "role_guard.h"

/* A role's resolved limits, in the worker's own memory. */
typedef struct RGRoleLimits
{
	Oid			roleid;			/* hash key */
	bool		exists;
	int32		idle_ms;		/* 0: none */
	int32		iit_ms;
	NameData	rolname;
} RGRoleLimits;

/* The idle period the worker last reported or signalled for a slot. */
typedef struct RGReported
{
	int			pid;
	uint32		seq;
	TimestampTz since;
	bool		signalled;		/* false: only reported (monitor mode) */
} RGReported;

static HTAB *rg_limits = NULL;
static bool rg_limits_stale = true;
static RGReported *rg_reported = NULL;

/*
 * The backend half.  A session the reaper signals dies as after
 * pg_terminate_backend, with "terminating connection due to administrator
 * command" (57P01).  This hook turns that one message, when the reaper was
 * the sender, into core's own idle-timeout message and SQLSTATE (as
 * idle_session_timeout and idle_in_transaction_session_timeout give), with a
 * DETAIL naming the role_guard setting, so clients and poolers see why.
 */
static emit_log_hook_type prev_emit_log_hook = NULL;

static void
rg_emit_log(ErrorData *edata)
{
	RGBackend  *slot = rg_my_slot;

	if (slot != NULL && slot->reap_state >= 0 && edata->elevel == FATAL &&
		edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
	{
		bool		idle = slot->reap_state == RG_STATE_IDLE;

		edata->sqlerrcode = idle ? ERRCODE_IDLE_SESSION_TIMEOUT :
			ERRCODE_IDLE_IN_TRANSACTION_SESSION_TIMEOUT;
		edata->message = pstrdup(idle ?
								 "terminating connection due to idle-session timeout" :
								 "terminating connection due to idle-in-transaction timeout");
		edata->detail = psprintf("role_guard.%s allows this role %.1f s.",
								 idle ? "idle_timeouts" : "idle_in_transaction_timeouts",
								 slot->reap_limit_ms / 1000.0);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
rg_reaper_backend_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = rg_emit_log;
}

void
rg_reaper_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "role_guard");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "rg_reaper_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "role_guard reaper");
	snprintf(worker.bgw_type, BGW_MAXLEN, "role_guard reaper");
	RegisterBackgroundWorker(&worker);
}

static void
rg_limits_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	rg_limits_stale = true;
}

static void
rg_limits_reset(void)
{
	HASHCTL		ctl;

	if (rg_limits)
		hash_destroy(rg_limits);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(RGRoleLimits);
	ctl.hcxt = TopMemoryContext;
	rg_limits = hash_create("role_guard role limits", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	rg_limits_stale = false;
}

/* Resolve the limits of every role with a session that has none yet. */
static void
rg_limits_fill(void)
{
	int			n = rg_backend_count();
	bool		in_xact = false;
	int			procno;

	for (procno = 0; procno < n; procno++)
	{
		RGBackend  *slot = rg_backend(procno);
		Oid			roleid = slot->roleid;
		RGRoleLimits *limits;
		bool		found;

		if (slot->pid == 0 || slot->walsender || !OidIsValid(roleid))
			continue;
		if (hash_search(rg_limits, &roleid, HASH_FIND, NULL) != NULL)
			continue;
		if (!in_xact)
		{
			StartTransactionCommand();
			in_xact = true;
		}
		limits = hash_search(rg_limits, &roleid, HASH_ENTER, &found);
		limits->exists = rg_role_timeouts(roleid, &limits->idle_ms,
										  &limits->iit_ms, &limits->rolname);
	}
	if (in_xact)
		CommitTransactionCommand();
}

/*
 * Describe a reap (or would-be reap) from the slot, before the backend is
 * signalled: once it exits, its slot is cleared.
 */
static void
rg_reap_event(RGEvent *ev, const RGBackend *slot, int pid,
			  const RGRoleLimits *limits, RGBackendState state, long idle_ms,
			  int32 limit, bool monitor)
{
	rg_event_init(ev, monitor ? RG_EVENT_WOULD_REAP :
				  state == RG_STATE_IDLE ? RG_EVENT_REAPED_IDLE :
				  RG_EVENT_REAPED_IDLE_IN_TRANSACTION);
	ev->pid = pid;
	ev->rolname = limits->rolname;
	ev->datname = slot->datname;
	memcpy(ev->application_name, slot->application_name, sizeof(ev->application_name));
	ev->application_name[sizeof(ev->application_name) - 1] = '\0';
	rg_event_client(ev, &slot->client);
	snprintf(ev->detail, sizeof(ev->detail), "%s for %.1f s, limit %.1f s.",
			 state == RG_STATE_IDLE ? "Idle" : "Idle in transaction",
			 idle_ms / 1000.0, limit / 1000.0);
}

/* Count a reap (or would-be reap) on the role's counter, and record it. */
static void
rg_count_reap(Oid roleid, const RGEvent *ev, bool monitor)
{
	RGCounter  *c;

	LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	c = rg_counter_find(RG_COUNTER_ROLE, roleid, NULL);
	if (c)
	{
		if (monitor)
			c->would_reap++;
		else
			c->reaped++;
	}
	LWLockRelease(rg_lock());
	rg_event_add(ev);
}

static void
rg_reap_check(int procno, TimestampTz now, bool monitor)
{
	RGBackend  *slot = rg_backend(procno);
	PGPROC	   *proc = GetPGProcByNumber(procno);
	RGReported *r = &rg_reported[procno];
	int			pid = slot->pid;
	Oid			roleid = slot->roleid;
	RGBackendState state;
	RGRoleLimits *limits;
	int32		limit;
	uint32		seq;
	TimestampTz since;
	long		idle_ms;
	const char *what;
	RGEvent		ev;

	if (pid == 0 || slot->walsender)
		return;
	state = rg_backend_state(procno, slot);
	if (state == RG_STATE_ACTIVE)
		return;
	limits = hash_search(rg_limits, &roleid, HASH_FIND, NULL);
	if (limits == NULL || !limits->exists)
		return;
	limit = state == RG_STATE_IDLE_IN_TRANSACTION ? limits->iit_ms : limits->idle_ms;
	if (limit <= 0)
		return;
	seq = slot->seq;
	since = slot->idle_since;
	pg_read_barrier();
	idle_ms = TimestampDifferenceMilliseconds(since, now);
	if (idle_ms < limit || proc->pid != pid)
		return;
	what = state == RG_STATE_IDLE ? "idle" : "idle in transaction";

	/*
	 * Act once per idle period: report it once in monitor mode, signal it
	 * once in enforce mode (a signalled backend takes a moment to go).
	 */
	if (r->pid == pid && r->seq == seq && r->since == since &&
		(monitor || r->signalled))
		return;

	if (monitor)
	{
		r->pid = pid;
		r->seq = seq;
		r->since = since;
		r->signalled = false;
		rg_reap_event(&ev, slot, pid, limits, state, idle_ms, limit, true);
		rg_count_reap(roleid, &ev, true);
		ereport(LOG,
				(errmsg("role_guard: would terminate session of role \"%s\" (pid %d): %s for %.1f s, limit %.1f s",
						NameStr(limits->rolname), pid, what,
						idle_ms / 1000.0, limit / 1000.0)));
		return;
	}

	rg_reap_event(&ev, slot, pid, limits, state, idle_ms, limit, false);
	/* the same process, still idle since the same moment? */
	pg_read_barrier();
	if (slot->pid != pid || slot->seq != seq || slot->idle_since != since ||
		proc->pid != pid || rg_backend_state(procno, slot) != state)
		return;
	ereport(LOG,
			(errmsg("role_guard: terminating session of role \"%s\" (pid %d): %s for %.1f s, limit %.1f s",
					NameStr(limits->rolname), pid, what,
					idle_ms / 1000.0, limit / 1000.0)));
	r->pid = pid;
	r->seq = seq;
	r->since = since;
	r->signalled = true;
	/* tell the backend why, for the message its client gets */
	slot->reap_limit_ms = limit;
	slot->reap_state = state;
	pg_write_barrier();
	if (kill(pid, SIGTERM) == 0)
		rg_count_reap(roleid, &ev, false);
	else
		ereport(LOG,
				(errmsg("role_guard: could not signal pid %d: %m", pid)));
}

static void
rg_reap_scan(void)
{
	int			mode = rg_mode;
	TimestampTz now;
	int			n = rg_backend_count();
	int			procno;

	/*
	 * Every interval, even with nothing to reap: on a standby, this is what
	 * brings replayed role changes to the membership cache (members.c).
	 */
	AcceptInvalidationMessages();
	if (mode == RG_MODE_OFF)
		return;
	if ((rg_idle_timeouts == NULL || rg_idle_timeouts->nentries == 0) &&
		(rg_idle_in_transaction_timeouts == NULL ||
		 rg_idle_in_transaction_timeouts->nentries == 0))
		return;

	if (rg_limits_stale || rg_limits == NULL)
		rg_limits_reset();
	rg_limits_fill();

	now = GetCurrentTimestamp();
	for (procno = 0; procno < n; procno++)
		rg_reap_check(procno, now, mode == RG_MODE_MONITOR);
}

void
rg_reaper_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* no database: pg_authid and pg_auth_members are shared catalogs */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("role_guard reaper");

	CacheRegisterSyscacheCallback(AUTHOID, rg_limits_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMMEMROLE, rg_limits_invalidate, (Datum) 0);
	rg_reported = MemoryContextAllocZero(TopMemoryContext,
										 sizeof(RGReported) * rg_backend_count());

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			rg_limits_stale = true;
		}
		rg_reap_scan();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 rg_reap_interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
