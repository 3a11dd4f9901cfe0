/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  When a budget is full: a login may wait for a place
 *	  (role_guard.login_waits), and may make one by ending a long-idle
 *	  session that the full entry counts (role_guard.evict_idle).
 *
 * Only a login that a full budget refuses in enforce mode waits, and only
 * if fewer than role_guard.max_waiting_logins wait already and the slot it
 * holds meanwhile is not one that is kept: a waiting login holds a
 * connection slot (its process), so it may wait only if, with it counted,
 * the sessions and waiters still leave free the slots core keeps
 * (superuser_reserved_connections, and reserved_connections from 16) and
 * those the reservations keep.  A login that may not wait is refused at
 * once, as without login_waits.  (A login refused by the reservations
 * themselves is therefore never let wait: it would hold one of the slots
 * they keep.)
 *
 * A waiter is a backend that has taken a ticket (its place in line) and
 * recorded in its own slot who it is (role, groups, database; not its pid,
 * as it is not admitted).  Every admission check subtracts from an entry's
 * room the waiters that wait for a place in that count and came before
 * (rg_waiters_ahead; a login that does not wait counts them all): so
 * waiters for the same place are admitted in the order they arrived, and a
 * new login never takes a place an earlier waiter waits for.  A place
 * freed by any exit (or a waiter leaving, or a reload: the reaper wakes
 * waiters at every scan) sets the waiters' latches (rg_wake_waiters); each
 * looks again under the lock.  No polling.
 *
 * A waiter sleeps on its latch and its client's socket, so it notices at
 * once a client that goes away (WL_SOCKET_CLOSED) and leaves the line; it
 * stays interruptible (pg_terminate_backend, postmaster death, and
 * authentication_timeout, which is still running: the wait ends a moment
 * before it, so the client gets role_guard's refusal rather than core's
 * timeout).  Whatever way it leaves, its ticket is given back (by
 * rg_wait_abandon from the exit callback on a FATAL).
 *
 * Eviction: only a login whose one obstacle is one place in one full entry
 * (no other full entry, no earlier waiter for that place, no reservation
 * refusing it) may evict: ending a session for a login that one place
 * would not admit would end it for nothing.  Before waiting, such a login
 * looks for the
 * longest-idle session that the entry counts (rg_slot_in_count), of a role
 * with an evict_idle limit it has passed, idle and not in a transaction,
 * not already asked to end; it asks that session to end (rg_request_end,
 * ending.c: the session itself checks it is still idle, so an active
 * session is never ended, and counts its own eviction) and waits for the
 * place, at least until that session has gone and at most login_waits or
 * 5 s, whichever is longer.
 * A session asked to end is not chosen by another login: two logins racing
 * for one evictable session, one gets it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/ps_status.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "login.h"

/* How long a login that evicted a session waits, at least. */
#define RG_EVICT_WAIT_MS 5000

/* A wait ends this long before authentication_timeout would end it. */
#define RG_AUTH_MARGIN_MS 200

/* This backend is in line: what rg_wait_abandon must give back. */
static RGCounter *my_wait_role = NULL;

/*
 * A wait ended by a reload (RG_RETRY): the login is decided again from the
 * start with the new settings, and keeps its place in line and the time
 * it began waiting.
 */
static uint64 my_kept_ticket = 0;
static TimestampTz my_kept_start = 0;

/* Is the request to end "pid" (sent by this backend) still pending? */
static bool
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

/* Take a ticket and show who waits.  Lock held. */
static void
rg_wait_register(RGLogin *login, const RGCharges *charges)
{
	RGBackend  *slot = rg_backend(rg_my_procno());
	const RGMembers *m = &login->members;

	login->ticket = my_kept_ticket != 0 ? my_kept_ticket : ++rg_shared->next_ticket;
	login->waiting = true;
	memset(slot, 0, sizeof(*slot));
	slot->roleid = login->roleid;
	slot->ngroups = Min(m->ngroups, RG_SLOT_GROUPS);
	memcpy(slot->groups, m->groups, sizeof(Oid) * slot->ngroups);
	if (login->dbname)
		strlcpy(NameStr(slot->datname), login->dbname, NAMEDATALEN);
	slot->dboid = login->dboid;
	slot->wait_pid = MyProcPid;
	slot->wait_ticket = login->ticket;
	rg_shared->waiting++;
	charges->role->waiting++;
	my_wait_role = charges->role;
}

/* Leave the line, and let the others look again.  Lock held. */
static void
rg_wait_unregister(void)
{
	RGBackend  *slot = rg_backend(rg_my_procno());

	if (my_wait_role == NULL)
		return;
	memset(slot, 0, sizeof(*slot));
	rg_shared->waiting--;
	my_wait_role->waiting--;
	my_wait_role = NULL;
	rg_wake_waiters();
}

/* At exit (a FATAL while waiting): leave the line.  Lock held. */
void
rg_wait_abandon(void)
{
	rg_wait_unregister();
}

/*
 * The longest-idle session that the full entry counts and that may be
 * ended for it (see the top of the file), or -1.  Lock held.
 */
static int
rg_evict_candidate(const RGVerdict *v, TimestampTz now, TimestampTz *since)
{
	bool		member = v->worst->kind == RG_ENTRY_GROUP;
	int			best = -1;
	int			procno;

	for (procno = 0; procno < rg_backend_count(); procno++)
	{
		RGBackend  *slot = rg_backend(procno);
		TimestampTz idle_start;

		if (slot->pid == 0 || slot->walsender || slot->evict_ms <= 0 ||
			slot->reap_pid != 0 || !rg_slot_in_count(slot, v->worst_counter, member))
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
static int
rg_evict(const RGLogin *login, const RGVerdict *v, bool monitor, RGEvent *ev)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz since = 0;
	int			procno;
	RGBackend  *slot;
	RGCounter  *victim_role;
	int			pid;

	if (rg_evict_idle == NULL || rg_evict_idle->nentries == 0 || v->worst == NULL)
		return 0;
	/*
	 * Only when that session's place is the one thing between the login and
	 * its admission: one full entry, short of one place that no earlier
	 * waiter waits for, and no reservation or denial refusing it too.
	 */
	if (v->nfull != 1 || v->worst_room != 0 || v->violation.waiting != 0 ||
		v->reserved || v->deny)
		return 0;
	procno = rg_evict_candidate(v, now, &since);
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
		rg_event_add(&ev);
}

/* May this login wait, or evict, instead of being refused?  Lock held. */
bool
rg_wait_wanted(const RGLogin *login, const RGVerdict *v)
{
	int			unused = rg_shared->reserve.unused;

	if (v->kind != RG_REFUSE_BUDGET)
		return false;
	if (login->wait_ms <= 0 &&
		(rg_evict_idle == NULL || rg_evict_idle->nentries == 0))
		return false;
	if (rg_shared->waiting >= rg_max_waiting_logins)
		return false;

	/*
	 * The slot it holds while it waits must be one that every slot kept
	 * leaves: core's for superusers (and reserved_connections), which
	 * rg_connection_slots leaves out, and the reservations' unused places.
	 * Also with no reservation at all: else enough waiters fill the slots
	 * core keeps, and a superuser cannot log in even over the socket.
	 */
	return rg_connection_slots() -
		(rg_shared->regular_sessions + rg_shared->waiting + 1) >= Max(unused, 0);
}

/*
 * Before each sleep: let go of what would hold back VACUUM's horizon for
 * the shared catalogs while the login waits (a login is in no database
 * yet, so its xmin counts for shared catalogs only).  The catalog snapshot
 * (core's own look-ups during authentication, and role_guard's) goes; up
 * to 17 InitPostgres also took a transaction snapshot before
 * authentication (18 no longer does), unused since, whose xmin stays
 * published until the last registered snapshot goes: a catalog snapshot
 * taken and let go at once makes snapmgr clear it (as core's own
 * InvalidateCatalogSnapshot after authentication does soon after the hook
 * anyway).  Snapshots someone registered or pushed are left alone.
 */
static void
rg_wait_release_snapshots(void)
{
	InvalidateCatalogSnapshot();
	if (!TransactionIdIsValid(MyProc->xmin) || HaveRegisteredOrActiveSnapshot())
		return;
	(void) GetCatalogSnapshot(AuthIdRelationId);
	InvalidateCatalogSnapshot();
}

/* The place in line of a login decided again after a reload, or 0. */
uint64
rg_wait_resumed_ticket(void)
{
	return my_kept_ticket;
}

/* How long it waited, counted in its role's statistics.  Lock held. */
static void
rg_wait_account(const RGCharges *charges, RGVerdict *v, TimestampTz start,
				TimestampTz now)
{
	my_kept_ticket = 0;
	my_kept_start = 0;
	v->waited_s = TimestampDifferenceMilliseconds(start, now) / 1000.0;
	if (charges->role == NULL)
		return;					/* decided again: no counter this time */
	rg_windows_clock(now);
	rg_windows_count(charges->role, RG_WINDOW_WAITED);
	if (v->kind == RG_ADMIT)
		charges->role->stats.waited++;
	else if (v->kind == RG_REFUSE_BUDGET)
		charges->role->stats.wait_timeouts++;
}

/*
 * A login that waited before a reload and was decided again without
 * waiting more (admitted, or refused at once under the new settings): its
 * wait is over.  Lock held.
 */
void
rg_wait_settle(const RGCharges *charges, RGVerdict *v)
{
	if (my_kept_start != 0)
		rg_wait_account(charges, v, my_kept_start, GetCurrentTimestamp());
}

/* When a wait must end: its limit, or just before authentication_timeout. */
static TimestampTz
rg_wait_deadline(TimestampTz start, int32 wait_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, wait_ms);

	if (get_timeout_active(STATEMENT_TIMEOUT))
	{
		TimestampTz auth = TimestampTzPlusMilliseconds(get_timeout_finish_time(STATEMENT_TIMEOUT),
													   -RG_AUTH_MARGIN_MS);

		if (auth < deadline)
			deadline = auth;
	}
	return deadline;
}

/*
 * Wait for a place (evicting a session first if one may be ended).  Called
 * with the lock held and a refusing verdict; returns with the lock held and
 * the final verdict: admitted, refused after waiting (v->waited_s says how
 * long), or the client gone.
 */
void
rg_wait(RGLogin *login, const RGCharges *charges, RGVerdict *v)
{
	LWLock	   *lock = rg_lock();
	RGEvent		ev;
	int32		wait_ms = login->wait_ms;
	int			victim;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz start = my_kept_start != 0 ? my_kept_start : now;
	TimestampTz deadline;
	uint32		wait_event = rg_login_wait_event();
	bool		evicted;

	memset(&ev, 0, sizeof(ev));
	victim = rg_evict(login, v, false, &ev);
	evicted = victim != 0;
	if (victim != 0)
		wait_ms = Max(wait_ms, RG_EVICT_WAIT_MS);
	if (wait_ms <= 0)
		return;
	deadline = rg_wait_deadline(start, wait_ms);
	rg_wait_register(login, charges);
	set_ps_display("waiting for a place (role_guard)");

	for (;;)
	{
		int			rc;

		LWLockRelease(lock);
		rg_wait_release_snapshots();
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_TIMEOUT | WL_SOCKET_CLOSED | WL_EXIT_ON_PM_DEATH,
							   MyProcPort->sock,
							   Max(TimestampDifferenceMilliseconds(now, deadline), 1),
							   wait_event);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		LWLockAcquire(lock, LW_EXCLUSIVE);
		now = GetCurrentTimestamp();
		if (rc & WL_SOCKET_CLOSED)
		{
			v->kind = RG_REFUSE_GONE;
			break;
		}
		/*
		 * A reload since it began waiting: decide again with the new
		 * settings.  (Not merely a copy that differs: one read from a file
		 * edited but not reloaded yet would never match.)
		 */
		if (rg_policy_loaded() != login->loaded)
		{
			v->kind = RG_RETRY;
			break;
		}
		rg_decide(login, charges, v);
		if (v->kind != RG_REFUSE_BUDGET || now >= deadline)
			break;
		/* the session it ended is gone, or stayed (it was busy): another? */
		if (victim == 0 || !rg_request_pending(victim))
		{
			victim = rg_evict(login, v, false, &ev);
			evicted |= victim != 0;
		}
	}
	rg_wait_unregister();
	login->waiting = false;
	if (v->kind == RG_RETRY)
	{
		my_kept_ticket = login->ticket;
		my_kept_start = start;
		return;
	}
	login->ticket = 0;
	rg_wait_account(charges, v, start, now);
	v->evicted = evicted;
}
