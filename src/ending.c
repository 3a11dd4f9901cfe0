/*-------------------------------------------------------------------------
 *
 * ending.c
 *	  Requests to end a session: sent by the reaper (idle limits, superuser
 *	  denial) or by a login evicting an idle session, decided and acted on
 *	  by the session itself.
 *
 * How a request travels.  Under role_guard's lock exclusively, the sender
 * checks that the slot still holds the session it saw (and, but for a
 * superuser denial, that the session has started nothing since: its
 * "seq"), writes the request into the slot (RGBackend.reap_*: the pid it is
 * for, why, the limit, the seq it saw, and the event's DETAIL) and sends
 * SIGUSR2.  A regular backend ignores SIGUSR2 (only walsenders use it, and
 * they are never sent a request); role_guard installs rg_end_handler for
 * it before a login takes its slot, so no request can arrive unheard.
 *
 * The session's handler reads the request from its own slot (not from the
 * signal: two signals of one kind that arrive together are one to the
 * kernel, and the request is what counts).  If the session has started
 * work since it was seen idle (it no longer waits for its client, runs a
 * utility statement, or has begun a statement), the request is dropped:
 * the handler clears it and counts the drop in the slot (reap_dropped; the
 * reaper logs it); a superuser denial is never dropped.  Otherwise it
 * records why and calls core's die(), as pg_terminate_backend's SIGTERM
 * would.
 *
 * SIGTERM stays core's own die(), untouched: a pg_terminate_backend or the
 * postmaster's shutdown SIGTERM that arrives at the same moment as a
 * request is a different signal, so it is never merged with the request
 * and never dropped with it.  A real termination always wins.
 *
 * What ended is counted by the session that ends, not by the sender: when
 * the FATAL that ends it is reported (rg_emit_log), or failing that at exit,
 * the role's counter (reaped, evicted, superuser_denied) is bumped and the
 * event is recorded, once.  A dropped request is neither counted nor
 * recorded as an ending.  The FATAL itself ("terminating connection due to
 * administrator command", 57P01) is rewritten into core's idle-timeout
 * message and SQLSTATE (as idle_session_timeout and
 * idle_in_transaction_session_timeout give), the eviction message, or a
 * superuser denial, with a DETAIL naming the role_guard setting, so
 * clients and poolers see why.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "common/ip.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "replication/walsender.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/elog.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "login.h"
#include "role_guard.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

/* Set by rg_end_handler when this session acts on a request. */
static volatile sig_atomic_t rg_end_reason = RG_REAP_NONE;
static volatile int32 rg_end_limit_ms = 0;

/* The ending has been counted and recorded (once). */
static bool rg_end_accounted = false;

static bool rg_end_installed = false;

/*
 * Fill an event about the session in "slot": pid, role name (NULL: none),
 * database, application, client, the last top-level statement's query_id.
 * The slot is read as it is (the lock held, or a snapshot that may be a
 * moment old).  The query_id is the one pg_stat_activity shows for the
 * session, core's own (st_query_id: a statement that failed in its
 * planning, or in parse analysis before it had one, included); with
 * track_activities off, where core shows none, the one role_guard's hooks
 * saw last.
 */
void
rg_event_for_slot(RGEvent *ev, RGEventKind kind, const RGBackend *slot,
				  int pid, const NameData *rolname)
{
	rg_event_init(ev, kind);
	ev->pid = pid;
	if (rolname != NULL)
		ev->rolname = *rolname;
	ev->datname = slot->datname;
	memcpy(ev->application_name, slot->application_name, sizeof(ev->application_name));
	ev->application_name[sizeof(ev->application_name) - 1] = '\0';
	rg_event_client(ev, &slot->client);
	if (slot->beentry != NULL && slot->beentry->st_state != STATE_DISABLED)
		ev->query_id = (int64) slot->beentry->st_query_id;
	else
		ev->query_id = slot->last_query_id;
}

/*
 * Ask a backend to end (see the top of the file): true if the request was
 * written and signalled.  Lock held exclusively.
 */
bool
rg_request_end(RGBackend *slot, int pid, uint32 seq, RGReapReason reason,
			   int32 limit, const char *detail)
{
	if (slot->pid != pid || (reason != RG_REAP_SUPERUSER && slot->seq != seq))
		return false;
	if (slot->reap_pid == pid)
		return false;			/* asked already, and going */
	slot->reap_seq = seq;
	slot->reap_reason = reason;
	slot->reap_limit_ms = limit;
	slot->reap_sender = MyProcPid;
	strlcpy(slot->reap_detail, detail, sizeof(slot->reap_detail));
	pg_write_barrier();
	slot->reap_pid = pid;
	pg_memory_barrier();
	if (kill(pid, SIGUSR2) == 0)
		return true;
	slot->reap_pid = 0;
	ereport(LOG,
			(errmsg("role_guard: could not signal pid %d: %m", pid)));
	return false;
}

/*
 * SIGUSR2: a request to end this session, if its slot holds one.  Go only
 * if the session has done nothing since it was seen idle (a superuser
 * denial goes whatever the session does); else drop the request.
 */
static void
rg_end_handler(SIGNAL_ARGS)
{
	int			save_errno = errno;
	RGBackend  *slot = rg_my_slot;
	int			reason;

	if (slot == NULL || slot->reap_pid != MyProcPid || rg_end_reason != RG_REAP_NONE)
	{
		errno = save_errno;
		return;
	}
	pg_read_barrier();
	reason = slot->reap_reason;
	if (reason != RG_REAP_SUPERUSER &&
		(slot->seq != slot->reap_seq || slot->in_utility ||
		 MyProc->wait_event_info != WAIT_EVENT_CLIENT_READ))
	{
		/*
		 * Busy again since it was seen idle: not idle any more.  The request
		 * is dropped (the slot may be asked again later).  One that is acted
		 * on stays in the slot until the exit clears it, so nobody asks this
		 * dying session again meanwhile.
		 */
		slot->reap_dropped++;
		pg_write_barrier();
		slot->reap_pid = 0;
		errno = save_errno;
		return;
	}
	rg_end_limit_ms = slot->reap_limit_ms;
	rg_end_reason = reason;
	errno = save_errno;
	die(SIGTERM);
}

/*
 * This session is ending on a request it acted on: count it on the role's
 * counter and record its event, once.
 */
static void
rg_end_account(void)
{
	RGBackend  *slot = rg_my_slot;
	int			reason = rg_end_reason;
	RGCounter  *c;
	RGEvent		ev;
	RGEventKind kind;

	if (rg_end_accounted || reason == RG_REAP_NONE || slot == NULL)
		return;
	rg_end_accounted = true;
	kind = reason == RG_REAP_SUPERUSER ? RG_EVENT_SUPERUSER_DENIED :
		reason == RG_REAP_EVICT ? RG_EVENT_EVICTED :
		reason == RG_REAP_IDLE ? RG_EVENT_REAPED_IDLE :
		RG_EVENT_REAPED_IDLE_IN_TRANSACTION;

	LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	c = rg_counter_find(RG_COUNTER_ROLE, slot->roleid, InvalidOid);
	if (c != NULL)
		rg_outcome_count(reason == RG_REAP_SUPERUSER ? &c->stats.superuser_denied :
						 reason == RG_REAP_EVICT ? &c->stats.evicted :
						 &c->stats.reaped, false);
	rg_event_for_slot(&ev, kind, slot, MyProcPid, c ? &c->rolname : NULL);
	strlcpy(ev.detail, slot->reap_detail, sizeof(ev.detail));
	LWLockRelease(rg_lock());
	rg_event_add(&ev);
}

/* Rewrite the FATAL that ends a session on a request (see the top). */
static void
rg_end_message(ErrorData *edata, int reason)
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
								 rg_end_limit_ms / 1000.0);
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
								 rg_end_limit_ms / 1000.0);
	}
}

static void
rg_emit_log(ErrorData *edata)
{
	int			reason = rg_end_reason;

	if (reason != RG_REAP_NONE && edata->elevel == FATAL &&
		edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
	{
		rg_end_message(edata, reason);
		rg_end_account();
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* At exit: an ending whose FATAL was not reported is counted here. */
static void
rg_end_at_exit(int code, Datum arg)
{
	rg_end_account();
}

/*
 * Before a login takes its slot: requests to end it may come from then on
 * (a walsender is never asked, and keeps its own SIGUSR2).  Its exit
 * callback runs before the one that clears the slot, registered earlier.
 */
void
rg_end_install(void)
{
	if (rg_end_installed || am_walsender)
		return;
	pqsignal(SIGUSR2, rg_end_handler);
	before_shmem_exit(rg_end_at_exit, (Datum) 0);
	rg_end_installed = true;
}

void
rg_end_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = rg_emit_log;
}

/* Eviction ----------------------------------------------------------------
 *
 * Only a login whose one obstacle is one place in each full entry (once
 * the sessions already asked to end for earlier waiters have gone; no
 * reservation refusing it) may evict, and only a session that every full
 * entry counts: ending a session for a login that its place would not
 * admit would end it for nothing.
 * Before waiting, such a login looks for the longest-idle session that
 * the full entries all count (rg_slot_in_count), of a role with an
 * evict_idle limit it has passed, idle and not in a transaction, not
 * already asked to end; it asks that session to end
 * (rg_request_end above: the session itself checks it is still idle, so an
 * active session is never ended, and counts its own eviction) and waits
 * for the place (auth.c), at least until that session has gone and at most
 * login_waits or 5 s, whichever is longer.  A session asked to end is not
 * chosen by another login: two logins racing for one evictable session,
 * one gets it.
 */

/* Is the request to end "pid" (sent by this backend) still pending? */
bool
rg_request_pending(int pid)
{
	int			procno;

	for (procno = 0; procno < rg_backend_count(); procno++)
	{
		RGBackend  *slot = rg_backend(procno);

		if (slot->pid == pid)
			return slot->reap_pid == pid && slot->reap_sender == MyProcPid;
	}
	return false;
}

/* Does every full entry of the verdict count the session? */
static bool
rg_counted_by_all(const RGVerdict *v, const RGBackend *slot)
{
	int			i;

	for (i = 0; i < v->nfull; i++)
		if (!rg_slot_in_count(slot, v->full[i].counter, v->full[i].member))
			return false;
	return true;
}

/*
 * The longest-idle session that the full entries count and that may be
 * ended for them (see the top of the file), or -1; and in pending[i] the
 * sessions full entry i counts that an eviction has asked to end already
 * (their places are coming, for the logins that wait for them).  Lock
 * held.
 */
static int
rg_evict_candidate(const RGVerdict *v, TimestampTz now, TimestampTz *since,
				   int *pending)
{
	int			best = -1;
	int			procno;
	int			i;

	for (i = 0; i < v->nfull; i++)
		pending[i] = 0;
	for (procno = 0; procno < rg_backend_count(); procno++)
	{
		RGBackend  *slot = rg_backend(procno);
		TimestampTz idle_start;

		if (slot->pid == 0 || slot->walsender)
			continue;
		if (slot->reap_pid != 0)
		{
			if (slot->reap_reason == RG_REAP_EVICT)
				for (i = 0; i < v->nfull; i++)
					if (rg_slot_in_count(slot, v->full[i].counter,
										 v->full[i].member))
						pending[i]++;
			continue;
		}
		if (slot->evict_ms <= 0 || !rg_counted_by_all(v, slot))
			continue;
		if (rg_backend_state(procno, slot, &idle_start) != RG_STATE_IDLE ||
			TimestampDifferenceMilliseconds(idle_start, now) < slot->evict_ms)
			continue;
		if (best < 0 || idle_start < *since)
		{
			best = procno;
			*since = idle_start;
		}
	}
	return best;
}

/*
 * End (or, in monitor mode, report) the longest-idle session the full
 * entry counts, if there is one.  Lock held.  In monitor mode the would-be
 * eviction is counted and its event filled for the caller to add once the
 * lock is let go; in enforce mode the session, if it ends, counts and
 * records its own eviction (ending.c).  Returns the pid asked to end, or
 * 0.
 */
int
rg_evict(const RGLogin *login, const RGVerdict *v, bool monitor, RGEvent *ev)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz since = 0;
	int			procno;
	int			i;
	int			pending[RG_EVICT_FULL];
	RGBackend  *slot;
	RGCounter  *victim_role;
	int			pid;

	if (rg_evict_idle == NULL || rg_evict_idle->nentries == 0 || v->worst == NULL)
		return 0;
	/* no reservation or denial refusing it too */
	if (v->nfull > RG_EVICT_FULL || v->reserved || v->deny)
		return 0;
	procno = rg_evict_candidate(v, now, &since, pending);

	/*
	 * Only when that session's place is the one thing between the login and
	 * its admission: each full entry one place short once the sessions
	 * asked to end already for the earlier waiters have gone (their room,
	 * after those waiters, is 0 then).  So logins that arrive together each
	 * end a session of their own, in line, while one is there, and none
	 * ends one that would admit nobody.
	 */
	for (i = 0; i < v->nfull; i++)
		if (v->full[i].room + pending[i] != 0)
			return 0;
	if (procno < 0)
		return 0;
	slot = rg_backend(procno);
	pid = slot->pid;
	victim_role = rg_counter_find(RG_COUNTER_ROLE, slot->roleid, InvalidOid);
	rg_event_for_slot(ev, monitor ? RG_EVENT_WOULD_EVICT : RG_EVENT_EVICTED,
					  slot, pid, victim_role ? &victim_role->rolname : NULL);
	snprintf(ev->detail, sizeof(ev->detail),
			 "Idle for %.1f s, role_guard.evict_idle allows %.1f s; its place in \"%s=%d\" is wanted by a login of role \"%s\".",
			 TimestampDifferenceMilliseconds(since, now) / 1000.0,
			 slot->evict_ms / 1000.0, v->violation.entry, v->violation.limit,
			 NameStr(login->rolname));
	if (monitor)
	{
		if (victim_role)
			rg_outcome_count(&victim_role->stats.evicted, true);
		return 0;
	}
	ev->at = 0;					/* recorded by the session if it ends */
	if (!rg_request_end(slot, pid, slot->seq, RG_REAP_EVICT, slot->evict_ms,
						ev->detail))
		return 0;
	return pid;
}

/* Monitor mode: a login over budget records the eviction enforce would make. */
void
rg_evict_monitor(const RGLogin *login, const RGVerdict *v)
{
	RGEvent		ev;

	memset(&ev, 0, sizeof(ev));
	LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	(void) rg_evict(login, v, true, &ev);
	LWLockRelease(rg_lock());
	if (ev.at != 0)
	{
		ereport(LOG,
				(errmsg("role_guard: session of role \"%s\" (pid %d) would be ended to make room for a login of role \"%s\"",
						NameStr(ev.rolname), ev.pid, NameStr(login->rolname)),
				 errdetail("%s", ev.detail)));
		rg_event_add(&ev);
	}
}
