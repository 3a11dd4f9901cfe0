/*-------------------------------------------------------------------------
 *
 * reaper.c
 *	  The background worker that ends sessions idle (or idle in
 *	  transaction) past their role's limit, and sessions that became
 *	  superusers on a host role_guard.superuser_deny_hosts lists.
 *
 * The worker connects to no database (it reads only the shared catalogs
 * pg_authid and pg_auth_members), starts once the server is consistent, so
 * it runs on hot standbys too, and is restarted a second after it dies
 * (SIGTERM makes it exit with status 1).  Every role_guard.reap_interval it
 * scans role_guard's per-backend slots:
 *	- state and idle start come from the backend's PGPROC, core's status
 *	  entry and the slot (see rg_backend_state), which no session setting
 *	  can hide or change: not idle_session_timeout, PGOPTIONS, ALTER ROLE
 *	  ... SET or track_activities; the worker also remembers the last scan
 *	  that saw each session busy, and idle time never starts before it;
 *	- a role's limits are resolved once (pg_authid, pg_auth_members through
 *	  the syscache) and kept in a local hash until the settings are reloaded
 *	  or a role or membership changes (syscache invalidation), so a scan in
 *	  the steady state reads shared memory only: O(slots), no catalog
 *	  access;
 *	- only client backends that role_guard admitted have slots; walsenders
 *	  (physical and logical) are never touched, and background workers,
 *	  autovacuum, parallel workers and this worker never have a slot;
 *	- a session whose role was dropped while it ran is reaped by the "*"
 *	  entries (it has no entry and no group any more).
 *
 * Ending a session.  Under role_guard's lock the worker reads the slot
 * again and asks the session to end (rg_request_end, ending.c): the
 * session itself checks that it is still idle when the request arrives,
 * drops it if not (the next scan logs that), and otherwise ends, counting
 * and recording its own ending.  The LOG line "terminating session ..." is
 * written when the request is sent.  A SIGTERM from anyone else (the
 * postmaster, pg_terminate_backend) is core's die(), untouched.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "libpq/libpq-be.h"
#include "common/ip.h"

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
#include "utils/wait_event.h"

#include "compat.h"
#include "inject.h"
#include "role_guard.h"

/* A role's resolved limits, in the worker's own memory. */
typedef struct RGRoleLimits
{
	Oid			roleid;			/* hash key */
	RGRoleInfo	info;			/* name, superuser, limits (roles.c) */
} RGRoleLimits;

/* What the worker remembers of a slot between scans. */
typedef struct RGReported
{
	int			pid;			/* the session this is about */
	TimestampTz seen_busy;		/* last scan that saw it busy */
	/* the idle period last reported or signalled */
	uint32		seq;
	TimestampTz since;
	bool		signalled;		/* false: only reported (monitor mode) */
	/* a superuser on a denied host: reported (monitor), or signalled */
	bool		deny_reported;
	bool		deny_signalled;
	uint32		dropped;		/* the slot's reap_dropped last logged */
} RGReported;

static HTAB *rg_limits = NULL;
static bool rg_limits_stale = true;
static RGReported *rg_reported = NULL;

/* What the last scan did, for its DEBUG2 line: slots walked, roles resolved. */
static int	rg_scan_slots = 0;
static int	rg_scan_roles = 0;

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
		rg_scan_roles++;
		if (!rg_role_info(roleid, &limits->info))
		{
			/* dropped: keep the name its counter last saw */
			RGCounter  *c;

			NameStr(limits->info.rolname)[0] = '\0';
			LWLockAcquire(rg_lock(), LW_SHARED);
			c = rg_counter_find(RG_COUNTER_ROLE, roleid, InvalidOid);
			if (c)
				limits->info.rolname = c->rolname;
			LWLockRelease(rg_lock());
		}
	}
	if (in_xact)
		CommitTransactionCommand();
}

/* Describe a reap (or would-be reap) from the slot. */
static void
rg_reap_event(RGEvent *ev, const RGBackend *slot, int pid,
			  const RGRoleLimits *limits, RGBackendState state, long idle_ms,
			  int32 limit, bool monitor)
{
	rg_event_for_slot(ev, monitor ? RG_EVENT_WOULD_REAP :
					  state == RG_STATE_IDLE ? RG_EVENT_REAPED_IDLE :
					  RG_EVENT_REAPED_IDLE_IN_TRANSACTION,
					  slot, pid, &limits->info.rolname);
	snprintf(ev->detail, sizeof(ev->detail), "%s for %.1f s, limit %.1f s.",
			 state == RG_STATE_IDLE ? "Idle" : "Idle in transaction",
			 idle_ms / 1000.0, limit / 1000.0);
}

/*
 * Monitor mode: count what enforce would have done (a reap or a superuser
 * denial) on the role's counter, and record it.  What enforce does is
 * counted by the session that ends (ending.c).
 */
static void
rg_count_would(Oid roleid, RGReapReason reason, const RGEvent *ev)
{
	RGCounter  *c;

	LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	c = rg_counter_find(RG_COUNTER_ROLE, roleid, InvalidOid);
	if (c != NULL)
		rg_outcome_count(reason == RG_REAP_SUPERUSER ? &c->stats.superuser_denied :
						 &c->stats.reaped, true);
	LWLockRelease(rg_lock());
	rg_event_add(ev);
}

/* The reaper's request to end a session (ending.c), under the lock. */
static bool
rg_signal_backend(RGBackend *slot, int pid, uint32 seq, RGReapReason reason,
				  int32 limit, const char *detail)
{
	bool		sent;

	RG_INJECT("reaper-before-signal");
	LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	sent = rg_request_end(slot, pid, seq, reason, limit, detail);
	LWLockRelease(rg_lock());
	return sent;
}

/*
 * A session whose role is a superuser (or a member of one) now, from a
 * host role_guard.superuser_deny_hosts lists: it logged in before that was
 * so.  End it (enforce) or report it once (monitor).
 */
static void
rg_deny_check(RGBackend *slot, RGReported *r, int pid,
			  const RGRoleLimits *limits, bool monitor)
{
	const RGRoleInfo *info = &limits->info;
	RGEvent		ev;

	if (info->deny.why == RG_DENY_NONE || !rg_host_denied(&slot->client))
		return;
	if (monitor ? r->deny_reported : r->deny_signalled)
		return;
	/* a login admitted in monitor mode: its would_deny is recorded */
	if (monitor && slot->deny_at_login)
	{
		r->deny_reported = true;
		return;
	}
	rg_event_for_slot(&ev, monitor ? RG_EVENT_WOULD_DENY : RG_EVENT_SUPERUSER_DENIED,
					  slot, pid, &info->rolname);
	{
		char		why[2 * NAMEDATALEN + 128];

		rg_deny_reason_text(why, sizeof(why), "Role", &info->deny, true);
		snprintf(ev.detail, sizeof(ev.detail),
				 "%s after it logged in; host \"%s\" matches role_guard.superuser_deny_hosts.",
				 why, ev.client_addr);
	}
	r->deny_reported = true;
	r->deny_signalled = !monitor;
	if (monitor)
	{
		rg_count_would(slot->roleid, RG_REAP_SUPERUSER, &ev);
		ereport(LOG,
				(errmsg("role_guard: would terminate session of superuser role \"%s\" (pid %d) from host \"%s\"",
						NameStr(info->rolname), pid, ev.client_addr)));
		return;
	}
	ereport(LOG,
			(errmsg("role_guard: terminating session of superuser role \"%s\" (pid %d) from host \"%s\"",
					NameStr(info->rolname), pid, ev.client_addr)));
	(void) rg_signal_backend(slot, pid, 0, RG_REAP_SUPERUSER, 0, ev.detail);
}

/*
 * A request to this session was dropped since the last scan (it was busy
 * again when the request arrived): say so once per drop.
 */
static void
rg_drop_check(const RGBackend *slot, RGReported *r, int pid,
			  const RGRoleLimits *limits)
{
	uint32		dropped = slot->reap_dropped;

	if (dropped == r->dropped)
		return;
	r->dropped = dropped;
	ereport(LOG,
			(errmsg("role_guard: session of role \"%s\" (pid %d) was busy again when asked to end, and goes on",
					NameStr(limits->info.rolname), pid)));
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
	if (r->pid != pid)
	{
		memset(r, 0, sizeof(*r));
		r->pid = pid;
	}
	limits = hash_search(rg_limits, &roleid, HASH_FIND, NULL);
	if (limits == NULL)
		return;
	if (slot->evict_ms != limits->info.evict_ms)
	{
		/* a reload changed role_guard.evict_idle, or the role's groups */
		LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
		if (slot->pid == pid)
			slot->evict_ms = limits->info.evict_ms;
		LWLockRelease(rg_lock());
	}
	rg_drop_check(slot, r, pid, limits);
	if (rg_deny_hosts != NULL)
		rg_deny_check(slot, r, pid, limits, monitor);

	seq = slot->seq;
	pg_read_barrier();
	state = rg_backend_state(procno, slot, &since);
	if (state == RG_STATE_ACTIVE)
	{
		r->seen_busy = now;
		return;
	}
	limit = state == RG_STATE_IDLE_IN_TRANSACTION ? limits->info.iit_ms :
		limits->info.idle_ms;
	if (limit <= 0)
		return;
	if (r->seen_busy > since)
		since = r->seen_busy;
	idle_ms = TimestampDifferenceMilliseconds(since, now);
	if (idle_ms < limit || proc->pid != pid)
		return;
	what = state == RG_STATE_IDLE ? "idle" : "idle in transaction";

	/*
	 * Act once per idle period: report it once in monitor mode, signal it
	 * once in enforce mode (a signalled backend takes a moment to go).
	 */
	if (r->seq == seq && r->since == since && (monitor || r->signalled))
		return;
	r->seq = seq;
	r->since = since;
	r->signalled = !monitor;
	rg_reap_event(&ev, slot, pid, limits, state, idle_ms, limit, monitor);

	if (monitor)
	{
		rg_count_would(roleid, RG_REAP_IDLE, &ev);
		ereport(LOG,
				(errmsg("role_guard: would terminate session of role \"%s\" (pid %d): %s for %.1f s, limit %.1f s",
						NameStr(limits->info.rolname), pid, what,
						idle_ms / 1000.0, limit / 1000.0)));
		return;
	}
	ereport(LOG,
			(errmsg("role_guard: terminating session of role \"%s\" (pid %d): %s for %.1f s, limit %.1f s",
					NameStr(limits->info.rolname), pid, what,
					idle_ms / 1000.0, limit / 1000.0)));
	(void) rg_signal_backend(slot, pid, seq,
							 state == RG_STATE_IDLE ? RG_REAP_IDLE : RG_REAP_IDLE_IN_TRANSACTION,
							 limit, ev.detail);
}

/*
 * Is anything configured that a scan looks for?  With nothing (no idle
 * limits, no host list, no eviction), a scan walks no slot and resolves no
 * role.
 */
static bool
rg_reap_configured(void)
{
	return (rg_idle_timeouts != NULL && rg_idle_timeouts->nentries > 0) ||
		(rg_idle_in_transaction_timeouts != NULL &&
		 rg_idle_in_transaction_timeouts->nentries > 0) ||
		rg_deny_hosts != NULL ||
		(rg_evict_idle != NULL && rg_evict_idle->nentries > 0);
}

static void
rg_reap_scan(void)
{
	int			mode = rg_mode;
	TimestampTz start;
	TimestampTz now;
	int			n = rg_backend_count();
	int			procno;

	start = GetCurrentTimestamp();

	/*
	 * Every interval, even with nothing to reap: on a standby, this is what
	 * brings replayed role changes to the membership cache (members.c).
	 */
	AcceptInvalidationMessages();
	/* a reload or role change reaches the reservations without a login */
	if (rg_reserve_stale())
	{
		StartTransactionCommand();
		rg_reserve_sync();
		CommitTransactionCommand();
	}
	/* the active counts' peaks into the windows, hour by hour */
	rg_active_fold();
	/* waiting logins look again: a reload may have made room */
	if (rg_shared->login_queue.n > 0)
	{
		LWLockAcquire(rg_lock(), LW_SHARED);
		rg_wake_waiters();
		LWLockRelease(rg_lock());
	}
	rg_scan_slots = 0;
	rg_scan_roles = 0;
	if (mode != RG_MODE_OFF && rg_reap_configured())
	{
		if (rg_limits_stale || rg_limits == NULL)
			rg_limits_reset();
		rg_limits_fill();

		now = GetCurrentTimestamp();
		for (procno = 0; procno < n; procno++)
			rg_reap_check(procno, now, mode == RG_MODE_MONITOR);
		rg_scan_slots = n;
	}
	elog(DEBUG2, "role_guard reaper: scan walked %d slots, resolved %d roles in %ld us",
		 rg_scan_slots, rg_scan_roles,
		 (long) (GetCurrentTimestamp() - start));
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
