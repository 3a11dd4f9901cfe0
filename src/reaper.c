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
 * again, writes the request into it (the pid it is for, why, the limit, and
 * the statement count it saw) and sends SIGTERM.  The backend's SIGTERM
 * handler (installed at admission, see rg_reaper_backend_admitted) knows a
 * signal from the worker by its sender's pid: if the session has started
 * work since the worker looked (it no longer waits for its client, or has
 * begun a statement), the request is dropped and the session lives on;
 * otherwise it dies as pg_terminate_backend would, and the FATAL its client
 * gets is turned into the idle-timeout message (57P05 or 25P03) or, for a
 * superuser on a denied host, 28000.  A SIGTERM from anyone else (the
 * postmaster, pg_terminate_backend) is core's die() unchanged.
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
} RGReported;

static HTAB *rg_limits = NULL;
static bool rg_limits_stale = true;
static RGReported *rg_reported = NULL;

/* What the last scan did, for its DEBUG2 line: slots walked, roles resolved. */
static int	rg_scan_slots = 0;
static int	rg_scan_roles = 0;

/*
 * The backend half.  rg_reap_reason is set by this backend's SIGTERM
 * handler when the signal is the worker's and is acted on; the FATAL that
 * follows ("terminating connection due to administrator command", 57P01)
 * is then rewritten by rg_emit_log into core's own idle-timeout message and
 * SQLSTATE (as idle_session_timeout and idle_in_transaction_session_timeout
 * give) or into a superuser denial, with a DETAIL naming the role_guard
 * setting, so clients and poolers see why.
 */
static emit_log_hook_type prev_emit_log_hook = NULL;
static volatile sig_atomic_t rg_reap_reason = RG_REAP_NONE;
static volatile int32 rg_reap_limit_ms = 0;

static void
rg_emit_log(ErrorData *edata)
{
	int			reason = rg_reap_reason;

	if (reason != RG_REAP_NONE && edata->elevel == FATAL &&
		edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
	{
		if (reason == RG_REAP_SUPERUSER)
		{
			char		host[NI_MAXHOST];

			host[0] = '\0';
			if (MyProcPort == NULL ||
				pg_getnameinfo_all(&MyProcPort->raddr.addr, MyProcPort->raddr.salen,
								   host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
				strlcpy(host, "?", sizeof(host));
			edata->sqlerrcode = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
			edata->message = psprintf("terminating connection because a superuser may not be connected from host \"%s\"",
									  host);
			edata->detail = pstrdup("The session's role became a superuser (or a member of one) after it logged in, and role_guard.superuser_deny_hosts lists this host.");
		}
		else if (reason == RG_REAP_EVICT)
		{
			edata->sqlerrcode = ERRCODE_IDLE_SESSION_TIMEOUT;
			edata->message = pstrdup("terminating idle connection to make room for another login");
			edata->detail = psprintf("role_guard.evict_idle lets this role's sessions be ended after %.1f s idle when their place is needed.",
									 rg_reap_limit_ms / 1000.0);
		}
		else
		{
			bool		idle = reason == RG_REAP_IDLE;

			edata->sqlerrcode = idle ? ERRCODE_IDLE_SESSION_TIMEOUT :
				ERRCODE_IDLE_IN_TRANSACTION_SESSION_TIMEOUT;
			edata->message = pstrdup(idle ?
									 "terminating connection due to idle-session timeout" :
									 "terminating connection due to idle-in-transaction timeout");
			edata->detail = psprintf("role_guard.%s allows this role %.1f s.",
									 idle ? "idle_timeouts" : "idle_in_transaction_timeouts",
									 rg_reap_limit_ms / 1000.0);
		}
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * SIGTERM in an admitted backend.  A request to end it (from the worker,
 * or from a login evicting it), sent by the process the request names: go
 * only if the session has done nothing since it was seen idle (a superuser
 * denial goes whatever the session does).  Anything else: die().
 */
static void
rg_sigterm(int signo, siginfo_t *info, void *context)
{
	int			save_errno = errno;
	RGBackend  *slot = rg_my_slot;

	if (slot != NULL && info != NULL && info->si_pid != 0 &&
		slot->reap_pid == MyProcPid && info->si_pid == slot->reap_sender)
	{
		int			reason;

		pg_read_barrier();
		reason = slot->reap_reason;
		if (reason != RG_REAP_SUPERUSER &&
			(slot->seq != slot->reap_seq || slot->in_utility ||
			 MyProc->wait_event_info != WAIT_EVENT_CLIENT_READ))
		{
			/*
			 * Busy again since it was seen idle: not idle any more.  The
			 * request is dropped (the slot may be asked again later).  One
			 * that is acted on stays in the slot until the exit clears it,
			 * so nobody asks this dying session again meanwhile.
			 */
			slot->reap_pid = 0;
			errno = save_errno;
			return;
		}
		rg_reap_limit_ms = slot->reap_limit_ms;
		rg_reap_reason = reason;
	}
	errno = save_errno;
	die(signo);
}

/* An admitted backend takes the worker's signals through rg_sigterm. */
void
rg_reaper_backend_admitted(void)
{
	struct sigaction act;

	memset(&act, 0, sizeof(act));
	act.sa_sigaction = rg_sigterm;
	act.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&act.sa_mask);
	sigaction(SIGTERM, &act, NULL);
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
	ev->rolname = limits->info.rolname;
	ev->datname = slot->datname;
	memcpy(ev->application_name, slot->application_name, sizeof(ev->application_name));
	ev->application_name[sizeof(ev->application_name) - 1] = '\0';
	rg_event_client(ev, &slot->client);
	ev->query_id = slot->last_query_id;
	snprintf(ev->detail, sizeof(ev->detail), "%s for %.1f s, limit %.1f s.",
			 state == RG_STATE_IDLE ? "Idle" : "Idle in transaction",
			 idle_ms / 1000.0, limit / 1000.0);
}

/*
 * Count a reap or a superuser denial (or, in monitor mode, what would have
 * been one) on the role's counter, and record it.  Lock held.
 */
static void
rg_count_reap(Oid roleid, RGReapReason reason, bool monitor)
{
	RGCounter  *c = rg_counter_find(RG_COUNTER_ROLE, roleid, InvalidOid);

	if (c == NULL)
		return;
	rg_outcome_count(reason == RG_REAP_SUPERUSER ? &c->stats.superuser_denied :
					 &c->stats.reaped, monitor);
}

/*
 * Ask a backend to end (the reaper, or a login evicting a session): check
 * that the slot still holds the same session (and, but for a superuser
 * denial, that it has done nothing since "seq"), write the request and send
 * SIGTERM.  The backend checks again when the signal arrives (rg_sigterm).
 * True if signalled.  Lock held exclusively.
 */
bool
rg_request_end(RGBackend *slot, int pid, uint32 seq, RGReapReason reason,
			   int32 limit)
{
	if (slot->pid != pid || (reason != RG_REAP_SUPERUSER && slot->seq != seq))
		return false;
	if (slot->reap_pid == pid)
		return false;			/* asked already, and going */
	slot->reap_seq = seq;
	slot->reap_reason = reason;
	slot->reap_limit_ms = limit;
	slot->reap_sender = MyProcPid;
	pg_write_barrier();
	slot->reap_pid = pid;
	pg_memory_barrier();
	if (kill(pid, SIGTERM) == 0)
		return true;
	slot->reap_pid = 0;
	ereport(LOG,
			(errmsg("role_guard: could not signal pid %d: %m", pid)));
	return false;
}

/* The reaper's request: under the lock, counted when sent. */
static bool
rg_signal_backend(RGBackend *slot, int pid, uint32 seq, RGReapReason reason,
				  int32 limit, Oid roleid)
{
	bool		sent;

	LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	sent = rg_request_end(slot, pid, seq, reason, limit);
	if (sent)
		rg_count_reap(roleid, reason, false);
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

	if (!(info->rolsuper || info->super_member) || !rg_host_denied(&slot->client))
		return;
	if (monitor ? r->deny_reported : r->deny_signalled)
		return;
	rg_event_init(&ev, monitor ? RG_EVENT_WOULD_DENY : RG_EVENT_SUPERUSER_DENIED);
	ev.pid = pid;
	ev.rolname = info->rolname;
	ev.datname = slot->datname;
	memcpy(ev.application_name, slot->application_name, sizeof(ev.application_name));
	ev.application_name[sizeof(ev.application_name) - 1] = '\0';
	rg_event_client(&ev, &slot->client);
	ev.query_id = slot->last_query_id;
	if (info->rolsuper)
		snprintf(ev.detail, sizeof(ev.detail),
				 "Role became a superuser after it logged in; host \"%s\" matches role_guard.superuser_deny_hosts.",
				 ev.client_addr);
	else
		snprintf(ev.detail, sizeof(ev.detail),
				 "Role became a member of superuser role \"%s\" after it logged in; host \"%s\" matches role_guard.superuser_deny_hosts.",
				 NameStr(info->supername), ev.client_addr);
	r->deny_reported = true;
	r->deny_signalled = !monitor;
	if (monitor)
	{
		LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
		rg_count_reap(slot->roleid, RG_REAP_SUPERUSER, true);
		LWLockRelease(rg_lock());
		rg_event_add(&ev);
		ereport(LOG,
				(errmsg("role_guard: would terminate session of superuser role \"%s\" (pid %d) from host \"%s\"",
						NameStr(info->rolname), pid, ev.client_addr)));
		return;
	}
	ereport(LOG,
			(errmsg("role_guard: terminating session of superuser role \"%s\" (pid %d) from host \"%s\"",
					NameStr(info->rolname), pid, ev.client_addr)));
	if (rg_signal_backend(slot, pid, 0, RG_REAP_SUPERUSER, 0, slot->roleid))
		rg_event_add(&ev);
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
		LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
		rg_count_reap(roleid, RG_REAP_IDLE, true);
		LWLockRelease(rg_lock());
		rg_event_add(&ev);
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
	if (rg_signal_backend(slot, pid, seq,
						  state == RG_STATE_IDLE ? RG_REAP_IDLE : RG_REAP_IDLE_IN_TRANSACTION,
						  limit, roleid))
		rg_event_add(&ev);
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
	/* waiting logins look again: a reload may have made room */
	if (rg_shared->waiting > 0)
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
