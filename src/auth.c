/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  The login hook: superuser host denial and exact connection budgets.
 *
 * ClientAuthentication_hook runs after the client authenticated, inside a
 * transaction, before core has looked at the database or the role's
 * right to log in.  First, whatever the status and only while
 * role_guard.auth_failure_limit is above 0, login blocks count a failure
 * or refuse a blocked pair (authblock.c).  Then, for a login with
 * STATUS_OK, rg_admit runs these steps, top to bottom:
 *
 *	refresh		this process's copy of the settings made the postmaster's
 *				if a reload came since the process started (guc.c); no
 *				I/O when it is current.
 *	identify	the role (one syscache look-up), the client; a login that
 *				core will refuse after the hook for its role (NOLOGIN, no
 *				REPLICATION) is left to core: it takes no place and learns
 *				nothing of the budgets.  No lock.
 *	prepare		register the release callback (before anything is taken).
 *	lock		take role_guard's lock once, exclusively.
 *	database	likewise for a login core will refuse for its database (no
 *				such database, ALLOW_CONNECTIONS false, no CONNECT): from the
 *				database cache (members.c).
 *	groups		the roles it is a member of, from the membership cache
 *				(members.c).  A miss of either cache lets the lock go, reads
 *				the catalogs and takes the lock again.  If a reload came
 *				meanwhile, the lock goes and the steps run again from
 *				"refresh" (rg_begin), so the rest is decided under the lock
 *				by the settings the postmaster has loaded.
 *	counters	find or create, and pin, the counters the login is charged
 *				to: the role's, and the counts an entry names or that are
 *				kept already (the database's, the role's in the database,
 *				the member counts of its role and groups; see shmem.c).
 *	decide		a verdict: admit, admit uncounted, refuse for the host,
 *				refuse for a budget, refuse for a full counter table; and
 *				what monitor mode would have refused.  A login a full
 *				budget refuses may wait for a place (below: "Waiting
 *				for a place", through queue.c); a reload
 *				during its wait sends it back to "refresh", its place in
 *				line kept.
 *	apply		charge the counters and take the slot, or count the refusal.
 *	unlock		let the lock go, once.
 *	report		events, LOG lines and the FATAL, with no lock held.
 *
 * Check and charge happen under one exclusive lock, so no number of
 * simultaneous logins can pass a budget.  The release callback runs in
 * before_shmem_exit, i.e. on every way out of a backend that does not
 * crash-restart the server (which re-creates the counts anyway).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include "access/htup_details.h"
#include "utils/timeout.h"
#include "utils/snapmgr.h"
#include "utils/ps_status.h"
#include "storage/proc.h"
#include "storage/latch.h"
#include "access/transam.h"
#include "catalog/pg_authid.h"
#include "common/ip.h"
#include "libpq/auth.h"
#include "libpq/hba.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "replication/walsender.h"
#include "storage/ipc.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "inject.h"
#include "login.h"
#include "queue.h"
#include "role_guard.h"

static ClientAuthentication_hook_type prev_ClientAuthentication = NULL;

/*
 * What this backend holds, besides rg_my_slot and rg_my_counter (shmem.c);
 * given back by rg_release_at_exit.
 */
static RGCounter **my_overflow = NULL;	/* member counts charged for groups
										 * past the slot's RG_SLOT_GROUPS */
static int	my_noverflow = 0;
static bool exit_registered = false;

/* A login waiting for a place holds these pinned: unpinned at exit too. */
static RGCharges *my_pending = NULL;
static const RGLogin *my_pending_login = NULL;

static void rg_unpin_counters(const RGLogin *login, RGCharges *charges);


/*
 * The client's TCP address as 4 or 16 bytes, an IPv4-mapped IPv6 address
 * as IPv4.  False for a Unix socket, which never matches a host list.
 */
bool
rg_client_address(const SockAddr *client, int *family, uint8 *addr)
{
	const struct sockaddr_storage *ss = &client->addr;

	if (ss->ss_family == AF_INET)
	{
		memcpy(addr, &((const struct sockaddr_in *) ss)->sin_addr, 4);
		*family = 4;
		return true;
	}
	if (ss->ss_family == AF_INET6)
	{
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *) ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6))
		{
			memcpy(addr, &a6->s6_addr[12], 4);
			*family = 4;
		}
		else
		{
			memcpy(addr, a6->s6_addr, 16);
			*family = 6;
		}
		return true;
	}
	return false;
}

/*
 * Does role_guard.superuser_deny_hosts list this client?  Never for the
 * Unix socket.
 */
bool
rg_host_denied(const SockAddr *client)
{
	int			family;
	uint8		addr[16];

	if (rg_deny_hosts == NULL || (!rg_deny_hosts->all && rg_deny_hosts->nentries == 0))
		return false;
	return rg_client_address(client, &family, addr) &&
		rg_hosts_match(rg_deny_hosts, family, addr) != NULL;
}

/* Record a login event: kind, role, and the login's database, address, name. */
static void
rg_login_event(const RGLogin *login, RGEventKind kind, const char *detail)
{
	Port	   *port = login->port;
	RGEvent		ev;

	rg_event_init(&ev, kind);
	ev.pid = MyProcPid;
	ev.rolname = login->rolname;
	if (login->dbname)
		strlcpy(NameStr(ev.datname), login->dbname, NAMEDATALEN);
	rg_event_client(&ev, &login->origin);
	if (port->application_name)
		strlcpy(ev.application_name, port->application_name, sizeof(ev.application_name));
	strlcpy(ev.detail, detail, sizeof(ev.detail));
	rg_event_add(&ev);
}

/* The DETAIL of a full budget, as clients, the log and events show it. */
static void
rg_budget_detail(char *buf, size_t len, const RGViolation *v)
{
	if (v->waiting > 0)
		snprintf(buf, len, "role_guard budget \"%s=%d\" is full (%d of %d sessions, and %d earlier %s waiting for a place).",
				 v->entry, v->limit, v->used, v->limit, v->waiting,
				 v->waiting == 1 ? "login" : "logins");
	else
		snprintf(buf, len, "role_guard budget \"%s=%d\" is full (%d of %d sessions).",
				 v->entry, v->limit, v->used, v->limit);
}

/* The DETAIL of a full counter table. */
static void
rg_full_detail(char *buf, size_t len)
{
	snprintf(buf, len, "All %d entries of role_guard's shared counter table are in use.",
			 rg_counter_capacity());
}

/*
 * Does the login's authentication method prove a secret (SPEC)?  Then a
 * superuser denial is shown as a failed authentication (and counts as one
 * for the login blocks, authblock.c).
 */
bool
rg_method_proves_secret(const Port *port)
{
	switch (port->hba->auth_method)
	{
		case uaPassword:
		case uaMD5:
		case uaSCRAM:
		case uaPAM:
		case uaBSD:
		case uaLDAP:
		case uaRADIUS:
			return true;
		default:
			return false;
	}
}

/*
 * Refuse the login as core refuses a failed authentication of its method
 * (auth_failed in core's src/backend/libpq/auth.c, the same on 15 to 18):
 * the same SQLSTATE and message, and, in the ErrorResponse, the same file
 * and routine (and line, once this server has seen one; see deny.c); the
 * real reason goes to the server log only, as core's errdetail_log does.
 */
static void
rg_refuse_as_auth_failure(const Port *port, const char *reason)
{
	const char *errstr;
	int			code = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;

	switch (port->hba->auth_method)
	{
		case uaPAM:
			errstr = gettext_noop("PAM authentication failed for user \"%s\"");
			break;
		case uaBSD:
			errstr = gettext_noop("BSD authentication failed for user \"%s\"");
			break;
		case uaLDAP:
			errstr = gettext_noop("LDAP authentication failed for user \"%s\"");
			break;
		case uaRADIUS:
			errstr = gettext_noop("RADIUS authentication failed for user \"%s\"");
			break;
		default:
			errstr = gettext_noop("password authentication failed for user \"%s\"");
			code = ERRCODE_INVALID_PASSWORD;
			break;
	}
	if (errstart(FATAL, NULL))
	{
		errcode(code);
		errmsg(errstr, port->user_name);
		errdetail_log("%s", reason);
		errfinish("auth.c", rg_auth_failed_line(__LINE__), "auth_failed");
	}
	pg_unreachable();
}

/*
 * A login that the superuser denial covers (a superuser, a member of one,
 * or what role_guard.superuser_deny_covers adds) from a listed host: record
 * and log it, and in enforce mode refuse it.  No lock held.
 */
static void
rg_report_denial(const RGLogin *login, const RGVerdict *v)
{
	Port	   *port = login->port;
	bool		monitor = v->kind != RG_REFUSE_HOST;
	char		host[NI_MAXHOST];
	char		relay[64];
	char		subject[NAMEDATALEN + 16];
	char		why[2 * NAMEDATALEN + 128];
	char		detail[sizeof(why) + NI_MAXHOST + 160];

	host[0] = '\0';
	if (pg_getnameinfo_all(&login->origin.addr, login->origin.salen,
						   host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
		strlcpy(host, "?", sizeof(host));
	relay[0] = '\0';
	if (login->relay_pid != 0)
		snprintf(relay, sizeof(relay), " (through backend %d over the Unix socket)",
				 login->relay_pid);
	rg_deny_reason_text(why, sizeof(why), "Role", &v->deny_reason, false);
	snprintf(detail, sizeof(detail),
			 "%s; host \"%s\"%s matches role_guard.superuser_deny_hosts.",
			 why, host, relay);
	rg_login_event(login, monitor ? RG_EVENT_WOULD_DENY : RG_EVENT_SUPERUSER_DENIED,
				   detail);
	ereport(LOG,
			(errmsg("role_guard: superuser login %s: role \"%s\", host \"%s\"%s, application_name \"%s\"",
					monitor ? "would be refused" : "refused",
					NameStr(login->rolname), host, relay,
					port->application_name ? port->application_name : "")));
	if (monitor)
		return;
	snprintf(subject, sizeof(subject), "Role \"%s\"", NameStr(login->rolname));
	rg_deny_reason_text(why, sizeof(why), subject, &v->deny_reason, false);
	snprintf(detail, sizeof(detail),
			 "%s, and role_guard.superuser_deny_hosts lists this host%s.",
			 why, relay);
	if (rg_method_proves_secret(port))
		rg_refuse_as_auth_failure(port, detail);
	ereport(FATAL,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("a superuser may not log in from host \"%s\"", host),
			 errdetail("%s", detail)));
}

/*
 * What a refused login did before it was refused, as a sentence (or
 * nothing): waited for a place (login_waits), or ended an idle session and
 * waited for its place (evict_idle), or both.
 */
static void
rg_waited_detail(char *buf, size_t len, const RGLogin *login,
				 const RGVerdict *v)
{
	if (v->waited_s <= 0)
		buf[0] = '\0';
	else if (!v->evicted)
		snprintf(buf, len, " The login waited %.1f s for a place (role_guard.login_waits).",
				 v->waited_s);
	else if (login->wait_ms > 0)
		snprintf(buf, len, " The login ended an idle session (role_guard.evict_idle) and waited %.1f s for a place (role_guard.login_waits).",
				 v->waited_s);
	else
		snprintf(buf, len, " The login ended an idle session (role_guard.evict_idle) and waited %.1f s for its place, which another login took.",
				 v->waited_s);
}

/* Refuse a login for a full budget.  No lock held. */
static void
rg_report_budget_refusal(const RGLogin *login, const RGVerdict *verdict)
{
	const RGViolation *v = &verdict->violation;
	char		detail[RG_ENTRY_TEXT_LEN + 300];

	rg_budget_detail(detail, sizeof(detail), v);
	rg_waited_detail(detail + strlen(detail), sizeof(detail) - strlen(detail),
					 login, verdict);
	rg_login_event(login, verdict->waited_s > 0 ? RG_EVENT_WAIT_TIMEOUT : RG_EVENT_REJECTED,
				   detail);
	if (v->kind == RG_ENTRY_DATABASE)
		ereport(FATAL,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg("too many connections for database \"%s\"", login->dbname),
				 errdetail("%s", detail)));
	if (v->kind == RG_ENTRY_ROLE_DATABASE)
		ereport(FATAL,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg("too many connections for role \"%s\" in database \"%s\"",
						NameStr(login->rolname), login->dbname),
				 errdetail("%s", detail)));
	ereport(FATAL,
			(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			 errmsg("too many connections for role \"%s\"", NameStr(login->rolname)),
			 errdetail("%s", detail)));
}

/* The DETAIL of a refusal for reservations. */
static void
rg_reserved_detail(char *buf, size_t len, const RGVerdict *v)
{
	snprintf(buf, len,
			 v->in_flight ?
			 "role_guard.reservations keeps %d connection slots free for reserved roles and groups; %d of %d slots are in use, and logins still in progress hold more." :
			 "role_guard.reservations keeps %d connection slots free for reserved roles and groups; %d of %d slots are in use.",
			 v->reserved_unused, v->slots_used, rg_connection_slots());
}

/*
 * A login that would take a slot the reservations keep: refuse it, or in
 * monitor mode record that enforce would have.  No lock held.
 */
static void
rg_report_reserved(const RGLogin *login, const RGVerdict *v, bool refuse)
{
	char		detail[256];

	rg_reserved_detail(detail, sizeof(detail), v);
	rg_login_event(login, refuse ? RG_EVENT_REJECTED : RG_EVENT_WOULD_REJECT, detail);
	if (!refuse)
	{
		ereport(LOG,
				(errmsg("role_guard: connection of role \"%s\" would be refused",
						NameStr(login->rolname)),
				 errdetail("%s", detail)));
		return;
	}
	ereport(FATAL,
			(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			 errmsg("remaining connection slots are reserved for roles with role_guard reservations"),
			 errdetail("%s", detail)));
}

/* A login admitted although a budget is full: monitor mode, or exempt. */
static void
rg_report_over_budget(const RGLogin *login, const RGViolation *v)
{
	char		detail[RG_ENTRY_TEXT_LEN + 128];

	rg_budget_detail(detail, sizeof(detail), v);
	if (login->exempt)
	{
		ereport(LOG,
				(errmsg("role_guard: superuser \"%s\" admitted over budget through the Unix socket",
						NameStr(login->rolname)),
				 errdetail("%s", detail)));
		return;
	}
	rg_login_event(login, RG_EVENT_WOULD_REJECT, detail);
	ereport(LOG,
			(errmsg("role_guard: connection of role \"%s\" would be refused",
					NameStr(login->rolname)),
			 errdetail("%s", detail)));
}

/* A needed counter could not be made: refuse, or log the uncounted login. */
static void
rg_report_full(const RGLogin *login, bool refuse)
{
	char		detail[128];

	rg_full_detail(detail, sizeof(detail));
	if (!refuse)
	{
		ereport(LOG,
				(errmsg("role_guard: connection of role \"%s\" admitted without being counted",
						NameStr(login->rolname)),
				 errdetail("%s", detail),
				 errhint("Increase role_guard.max_roles.")));
		return;
	}
	rg_login_event(login, RG_EVENT_REJECTED, detail);
	ereport(FATAL,
			(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			 errmsg("role_guard cannot count a connection of role \"%s\"",
					NameStr(login->rolname)),
			 errdetail("%s", detail),
			 errhint("Increase role_guard.max_roles.")));
}

/* Waiting for a place -------------------------------------------------------
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
 * A waiter takes a ticket and joins the login line (RGShared.login_queue:
 * queue.c, the one way of waiting that statements use too), and records in
 * its own slot who it is (role, groups, database; not its pid, as it is not
 * admitted).  Every admission check subtracts from an entry's room the
 * waiters ahead in that line that wait for a place in that count
 * (rg_waiters_ahead; a login that does not wait counts them all): so
 * waiters for the same place are admitted in the order they arrived, and a
 * new login never takes a place an earlier waiter waits for.  A place freed
 * by any exit (or a waiter leaving, or a reload: the reaper wakes waiters
 * at every scan) wakes the line (rg_wake_waiters); each looks again under
 * the lock, deciding itself with rg_decide.  No polling.
 *
 * A waiter sleeps on its latch and its client's socket (rg_queue_sleep), so
 * it notices at once a client that goes away and leaves the line; it stays
 * interruptible (pg_terminate_backend, postmaster death, and
 * authentication_timeout, which is still running: the wait ends a moment
 * before it, so the client gets role_guard's refusal rather than core's
 * timeout).  Whatever way it leaves, its ticket is given back (by
 * rg_wait_abandon from the exit callback on a FATAL).  A login may first
 * end a long-idle session for a place (rg_evict, ending.c), and then waits
 * for that place.
 */

/* How long a login that evicted a session waits, at least. */
#define RG_EVICT_WAIT_MS 5000

/* A wait ends this long before authentication_timeout would end it. */
#define RG_AUTH_MARGIN_MS 200

/* This backend is in line: what rg_wait_abandon must give back. */
static RGCounter *my_wait_role = NULL;

/*
 * A wait ended by a reload (RG_RETRY): the login is decided again from the
 * start with the new settings, and keeps its place in line, the time it
 * began waiting, and the session it asked to end (evict_idle) if any: that
 * session's place is still its own to wait for (at least
 * RG_EVICT_WAIT_MS), not a reason to end another or to be refused.
 */
static uint64 my_kept_ticket = 0;
static TimestampTz my_kept_start = 0;
static int	my_kept_victim = 0;
static bool my_kept_evicted = false;

/* Take a ticket and show who waits.  Lock held. */
static void
rg_wait_register(RGLogin *login, const RGCharges *charges)
{
	RGBackend  *slot = rg_backend(rg_my_procno());
	const RGMembers *m = &login->members;

	login->ticket = my_kept_ticket != 0 ? my_kept_ticket :
		rg_queue_ticket(&rg_shared->login_queue);
	login->waiting = true;
	memset(slot, 0, sizeof(*slot));
	slot->roleid = login->roleid;
	slot->ngroups = Min(m->ngroups, RG_SLOT_GROUPS);
	memcpy(slot->groups, m->groups, sizeof(Oid) * slot->ngroups);
	if (login->dbname)
		strlcpy(NameStr(slot->datname), login->dbname, NAMEDATALEN);
	slot->dboid = login->dboid;
	rg_queue_enter(&rg_shared->login_queue, rg_my_procno(), login->ticket);
	charges->role->waiting++;
	my_wait_role = charges->role;
}

/*
 * What a login in line waits for: the counts that had no room for it at
 * any look since it joined the line (v: this look's), recorded in its slot
 * for the others' rg_waiters_ahead.  Kept for the whole wait, so that two
 * other roles freeing and taking its counts in turn cannot keep it out;
 * past RG_SLOT_WAIT_FULL of them, all its counts.  Lock held.
 */
static void
rg_wait_note(const RGVerdict *v)
{
	RGBackend  *slot = rg_backend(rg_my_procno());
	int			i;
	int			j;

	StaticAssertStmt(RG_SLOT_WAIT_FULL <= RG_EVICT_FULL,
					 "a verdict keeps every full count a slot records");
	if (v->nfull > RG_EVICT_FULL)
		slot->wait_nfull = RG_SLOT_WAIT_FULL + 1;
	for (i = 0; i < Min(v->nfull, RG_EVICT_FULL); i++)
	{
		if (slot->wait_nfull > RG_SLOT_WAIT_FULL)
			return;
		for (j = 0; j < slot->wait_nfull; j++)
			if (slot->wait_full[j] == v->full[i].counter &&
				slot->wait_member[j] == v->full[i].member)
				break;
		if (j < slot->wait_nfull)
			continue;
		if (slot->wait_nfull == RG_SLOT_WAIT_FULL)
		{
			slot->wait_nfull = RG_SLOT_WAIT_FULL + 1;
			return;
		}
		slot->wait_full[slot->wait_nfull] = v->full[i].counter;
		slot->wait_member[slot->wait_nfull] = v->full[i].member;
		slot->wait_nfull++;
	}
}

/* Leave the line, and let the others look again.  Lock held. */
static void
rg_wait_unregister(void)
{
	RGBackend  *slot = rg_backend(rg_my_procno());

	if (my_wait_role == NULL)
		return;
	rg_queue_leave(&rg_shared->login_queue, rg_my_procno());
	memset(slot, 0, sizeof(*slot));
	my_wait_role->waiting--;
	my_wait_role = NULL;
	rg_wake_waiters();
}

/* At exit (a FATAL while waiting): leave the line.  Lock held. */
static void
rg_wait_abandon(void)
{
	rg_wait_unregister();
}

/* May this login wait, or evict, instead of being refused?  Lock held. */
static bool
rg_wait_wanted(const RGLogin *login, const RGVerdict *v)
{
	int			unused = rg_shared->reserve.unused;

	if (v->kind != RG_REFUSE_BUDGET)
		return false;
	if (login->wait_ms <= 0 &&
		(rg_evict_idle == NULL || rg_evict_idle->nentries == 0))
		return false;
	if (rg_shared->login_queue.n >= rg_max_waiting_logins)
		return false;

	/*
	 * The slot it holds while it waits must be one that every slot kept
	 * leaves: core's for superusers (and reserved_connections), which
	 * rg_connection_slots leaves out, and the reservations' unused places.
	 * Also with no reservation at all: else enough waiters fill the slots
	 * core keeps, and a superuser cannot log in even over the socket.
	 */
	return rg_connection_slots() -
		(rg_shared->regular_sessions + rg_shared->login_queue.n + 1) >= Max(unused, 0);
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
static uint64
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
	my_kept_victim = 0;
	v->evicted |= my_kept_evicted;
	my_kept_evicted = false;
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
static void
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
static void
rg_login_wait(RGLogin *login, const RGCharges *charges, RGVerdict *v)
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
	victim = my_kept_victim;
	evicted = my_kept_evicted;
	if (victim == 0 || !rg_request_pending(victim))
	{
		victim = rg_evict(login, v, false, &ev);
		evicted |= victim != 0;
	}
	if (evicted)
		wait_ms = Max(wait_ms, RG_EVICT_WAIT_MS);
	if (wait_ms <= 0)
		return;
	/* the entry it waits for counts it once, not again after a reload */
	if (my_kept_start == 0)
	{
		rg_windows_clock(now);
		rg_windows_wait(v->worst ? v->worst->kind : -1, v->worst_counter);
	}
	deadline = rg_wait_deadline(start, wait_ms);
	rg_wait_register(login, charges);
	rg_wait_note(v);
	set_ps_display("waiting for a place (role_guard)");

	for (;;)
	{
		RGQueueWake wake;

		LWLockRelease(lock);
		rg_wait_release_snapshots();
		wake = rg_queue_sleep(deadline, wait_event, true);
		LWLockAcquire(lock, LW_EXCLUSIVE);
		now = GetCurrentTimestamp();
		if (wake == RG_QUEUE_CLIENT_GONE)
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
		rg_wait_note(v);
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
		my_kept_victim = victim;
		my_kept_evicted = evicted;
		return;
	}
	login->ticket = 0;
	rg_wait_account(charges, v, start, now);
	v->evicted = evicted;
}

/* Give back everything this backend holds.  Runs at backend exit. */
static void
rg_release_at_exit(int code, Datum arg)
{
	LWLock	   *lock;
	RGBackend  *slot = rg_my_slot;
	RGCounter  *role = rg_my_counter;
	/* its groups' counters, found once (no allocation at exit) */
	static RGCounter *groups[RG_SLOT_GROUPS];
	RGCounter  *db,
			   *roledb;
	int			i;

	if (my_pending != NULL)
	{
		/* a FATAL (terminate, timeout) while it waited for a place */
		lock = rg_lock();
		if (LWLockHeldByMe(lock))
			LWLockRelease(lock);
		LWLockAcquire(lock, LW_EXCLUSIVE);
		rg_wait_abandon();
		rg_unpin_counters(my_pending_login, my_pending);
		LWLockRelease(lock);
		my_pending = NULL;
	}
	if (slot == NULL)
		return;
	/* the executor hooks stop touching the slot and the counter now */
	rg_my_slot = NULL;
	rg_my_counter = NULL;
	rg_windows_clock(GetCurrentTimestamp());
	lock = rg_lock();
	/* nothing ERRORs under the lock, but never wait on ourselves */
	if (LWLockHeldByMe(lock))
		LWLockRelease(lock);

	LWLockAcquire(lock, LW_EXCLUSIVE);
	/* the database's counts, if kept: see rg_kept_counter */
	db = rg_slot_counter(slot, RG_COUNTER_DB);
	roledb = rg_slot_counter(slot, RG_COUNTER_ROLEDB);
	/* decrement everything first: a counter may be charged twice */
	rg_counter_add(role, false, -1);
	if (role->members_tracked)
		rg_counter_add(role, true, -1);
	if (db)
		rg_counter_add(db, false, -1);
	if (roledb)
		rg_counter_add(roledb, false, -1);
	for (i = 0; i < slot->ngroups; i++)
	{
		groups[i] = rg_counter_find(RG_COUNTER_ROLE, slot->groups[i], InvalidOid);
		if (groups[i] && groups[i]->members_tracked)
			rg_counter_add(groups[i], true, -1);
	}
	for (i = 0; i < my_noverflow; i++)
		rg_counter_add(my_overflow[i], true, -1);
	if (!slot->walsender)
		rg_shared->regular_sessions--;

	rg_counter_forget_if_unused(db);
	rg_counter_forget_if_unused(roledb);
	rg_counter_forget_if_unused(role);
	for (i = 0; i < slot->ngroups; i++)
		rg_counter_forget_if_unused(groups[i]);
	for (i = 0; i < my_noverflow; i++)
		rg_counter_forget_if_unused(my_overflow[i]);
	memset(slot, 0, sizeof(*slot));
	/* a place is free: the logins waiting for one look again */
	rg_wake_waiters();
	LWLockRelease(lock);
	my_noverflow = 0;
}

/*
 * Step "identify": what the login is, and whether role_guard has a say in
 * it at all.  False for a login core refuses anyway (after this hook) for
 * its role alone: role_guard takes no place for it and says nothing, and
 * core reports its own error.  No lock.
 */
static bool
rg_identify(Port *port, RGLogin *login)
{
	HeapTuple	tup;
	Form_pg_authid form;
	bool		core_refuses;

	memset(login, 0, sizeof(*login));
	tup = SearchSysCache1(AUTHNAME, CStringGetDatum(port->user_name));
	if (!HeapTupleIsValid(tup))
		return false;			/* core reports the unknown role */
	form = (Form_pg_authid) GETSTRUCT(tup);
	login->port = port;
	login->roleid = form->oid;
	login->rolsuper = form->rolsuper;
	login->rolcreaterole = form->rolcreaterole;
	namestrcpy(&login->rolname, NameStr(form->rolname));
	core_refuses = rg_role_refuses_login(form, am_walsender);
	ReleaseSysCache(tup);

	/* a physical replication connection has no database */
	login->dbname = port->database_name[0] != '\0' ? port->database_name : NULL;
	login->mode = rg_mode;
	login->policy = rg_budgets;
	/* where it comes from: a backend relaying over the socket is its client */
	rg_login_origin(port, &login->origin, &login->relay_pid);
	/* superusers over the Unix socket: by default never refused by a budget */
	login->exempt = login->rolsuper &&
		login->origin.addr.ss_family == AF_UNIX && rg_superuser_socket_exempt;
	login->deny_host = login->mode != RG_MODE_OFF && rg_host_denied(&login->origin);
	login->slot_limit = rg_login_slot_limit(login->roleid, login->rolsuper);
	return !core_refuses;
}

/*
 * Step "database": false for a login core will refuse for its database (no
 * such database, not allowing connections, no CONNECT): like a role core
 * refuses, it takes no place.  From the database cache; on a miss the lock
 * is let go while pg_database is read.  Lock held.
 */
static bool
rg_check_database(RGLogin *login)
{
	if (login->dbname == NULL)
		return true;
	return !rg_database_refuses(login->dbname, login->roleid, login->rolsuper,
								&login->dboid);
}

/*
 * Room for a login's groups (and their charges), at least n.  Names and
 * SUPERUSER attributes only when wanted: for +group entries, or to deny a
 * member of a superuser role.
 */
static void
rg_login_arrays(RGLogin *login, RGCharges *charges, int n)
{
	RGMembers  *m = &login->members;

	m->groups = palloc(sizeof(Oid) * n);
	m->names = NULL;
	m->super = NULL;
	m->createrole = NULL;
	if ((login->policy && login->policy->ngroups > 0) ||
		(login->deny_host && !login->rolsuper) ||
		(rg_login_waits && rg_login_waits->ngroups > 0) ||
		(rg_evict_idle && rg_evict_idle->ngroups > 0))
	{
		m->names = palloc(sizeof(NameData) * n);
		m->super = palloc(sizeof(bool) * n);
		m->createrole = palloc(sizeof(bool) * n);
	}
	charges->groups = palloc0(sizeof(RGCounter *) * n);
	/* the groups' +group entries: only a policy with such entries has any */
	charges->entries = login->policy && login->policy->ngroups > 0 ?
		palloc0(sizeof(RGEntry *) * n) : NULL;
}

/* Step "prepare": everything that may allocate, before the lock. */
static void
rg_prepare(RGLogin *login, RGCharges *charges)
{
	memset(charges, 0, sizeof(*charges));
	rg_login_arrays(login, charges, RG_MEMBERS_CACHED);
	if (my_overflow == NULL)
		my_overflow = MemoryContextAlloc(TopMemoryContext, sizeof(RGCounter *));
	/* the place is given back on every exit path: register before taking */
	if (!exit_registered)
	{
		before_shmem_exit(rg_release_at_exit, (Datum) 0);
		exit_registered = true;
	}
	/* requests to end the session may come once it has a slot */
	rg_end_install();
	/* reservations whose names need resolving to OIDs: before the lock */
	rg_reserve_resolve(&login->reserve);
	/* a custom wait event is registered in shared memory: not under it */
	if (rg_login_waits && rg_login_waits->nentries > 0)
		(void) rg_login_wait_event();
	login->now = GetCurrentTimestamp();
	rg_windows_clock(login->now);
}

/* A miss found more groups than the arrays hold: make room (no lock held). */
static void
rg_groups_sized(int ngroups, void *arg)
{
	RGCharges  *charges = (RGCharges *) arg;

	if (ngroups > RG_MEMBERS_CACHED)
	{
		pfree(charges->groups);
		charges->groups = palloc0(sizeof(RGCounter *) * ngroups);
		if (charges->entries)
		{
			pfree(charges->entries);
			charges->entries = palloc0(sizeof(RGEntry *) * ngroups);
		}
	}
	if (ngroups > RG_SLOT_GROUPS)
		my_overflow = repalloc(my_overflow, sizeof(RGCounter *) * ngroups);
}

/*
 * Step "groups": the login role's groups, from the membership cache.  On a
 * miss, the one place where the lock is let go and taken again: the
 * catalogs are read without it, and what was read is stored under it.
 */
static void
rg_resolve_groups(RGLogin *login, RGCharges *charges)
{
	const RGMembers *m = &login->members;

	rg_members_resolve(login->roleid, &login->rolname, login->rolsuper,
					   login->rolcreaterole,
					   &login->members, true, rg_groups_sized, charges);
	/* its limits by name and groups (O(1) look-ups in local memory) */
	login->wait_ms = rg_policy_limit(rg_login_waits, NameStr(login->rolname),
									 m->names, m->names ? m->ngroups : 0);
	login->evict_ms = rg_policy_limit(rg_evict_idle, NameStr(login->rolname),
									  m->names, m->names ? m->ngroups : 0);
}

/* The +group entry that names this role, or NULL. */
static const RGEntry *
rg_group_entry(const RGPolicy *policy, const NameData *name)
{
	if (policy == NULL || policy->ngroups == 0)
		return NULL;
	return rg_policy_lookup(policy, RG_ENTRY_GROUP, NameStr(*name), NULL);
}

/*
 * A count that is kept only while an entry wants it: a role's member count
 * (for +group entries), a database's or a role-in-database's (for @db and
 * name@db entries).  The login charges its counter, pinned, if an entry
 * names it ("named": made if missing, and then counted from the slots) or
 * if it is kept already; else NULL.  *full when a named one could not be
 * made.  An exit gives back to the counters its slot finds, so a count
 * made while sessions were in stays exact.
 */
static RGCounter *
rg_kept_counter(RGCounterKind kind, Oid roleid, Oid dboid, bool named,
				bool *full)
{
	RGCounter  *c;

	if (named)
	{
		c = rg_counter_enter(kind, roleid, dboid);
		if (c == NULL)
			*full = true;
		else if (kind == RG_COUNTER_ROLE)
			rg_counter_track_members(c);
		return c;
	}
	if (kind != RG_COUNTER_ROLE && rg_shared->ndb_counters == 0)
		return NULL;
	c = rg_counter_find(kind, roleid, dboid);
	if (c == NULL || (kind == RG_COUNTER_ROLE && !c->members_tracked))
		return NULL;
	c->pins++;
	return c;
}

/* Step "counters": find or create, and pin, every counter charged. */
static void
rg_enter_counters(RGLogin *login, RGCharges *charges)
{
	const RGPolicy *policy = login->policy;
	RGMembers  *m = &login->members;
	int			i;

	charges->role = rg_counter_enter(RG_COUNTER_ROLE, login->roleid, InvalidOid);
	if (charges->role == NULL)
	{
		charges->full = true;
		return;
	}
	charges->role->rolname = login->rolname;
	charges->role->rolsuper = login->rolsuper;
	if (rg_group_entry(policy, &login->rolname))
		rg_counter_track_members(charges->role);
	if (login->dbname)
	{
		charges->db = rg_kept_counter(RG_COUNTER_DB, InvalidOid, login->dboid,
									  policy && rg_policy_lookup(policy, RG_ENTRY_DATABASE,
																 NULL, login->dbname),
									  &charges->full);
		charges->roledb = rg_kept_counter(RG_COUNTER_ROLEDB, login->roleid, login->dboid,
										  policy && rg_policy_lookup(policy, RG_ENTRY_ROLE_DATABASE,
																	 NameStr(login->rolname),
																	 login->dbname),
										  &charges->full);
		/* the names the views show, also for a database dropped later */
		if (charges->db)
			namestrcpy(&charges->db->rolname, login->dbname);
		if (charges->roledb)
			charges->roledb->rolname = login->rolname;
	}
	for (i = 0; i < m->ngroups && !charges->full; i++)
	{
		const RGEntry *e = NULL;

		if (charges->entries)
			e = charges->entries[i] = rg_group_entry(policy, &m->names[i]);
		charges->groups[i] = rg_kept_counter(RG_COUNTER_ROLE, m->groups[i], InvalidOid,
											 e != NULL, &charges->full);
	}
}

/* Unpin every counter the login entered.  Lock held. */
static void
rg_unpin_counters(const RGLogin *login, RGCharges *charges)
{
	int			i;

	rg_counter_unpin(charges->db);
	rg_counter_unpin(charges->roledb);
	for (i = 0; i < login->members.ngroups; i++)
		rg_counter_unpin(charges->groups[i]);
	rg_counter_unpin(charges->role);
}

/*
 * One budget entry that applies: is it the fullest so far?  Its room is
 * what the count leaves, less the logins that wait for a place in it and
 * came before this one (all of them, for a login that does not wait): a
 * new login never takes a place an earlier waiter waits for.
 */
static void
rg_check_entry(const RGLogin *login, RGVerdict *v, const RGEntry *e,
			   RGCounter *c)
{
	bool		member = e != NULL && e->kind == RG_ENTRY_GROUP;
	int			ahead;
	int			room;

	if (e == NULL || c == NULL)
		return;
	ahead = rg_waiters_ahead(c, member, login->ticket);
	room = e->value - rg_entry_used(e, c) - ahead;
	if (room > 0)
		return;
	if (v->nfull < RG_EVICT_FULL)
	{
		v->full[v->nfull].counter = c;
		v->full[v->nfull].member = member;
		v->full[v->nfull].room = room;
	}
	v->nfull++;
	if (v->worst == NULL || room < v->worst_room)
	{
		v->worst = e;
		v->worst_counter = c;
		v->worst_room = room;
	}
}

/*
 * The budget entries that apply to the login, each with the counter that
 * keeps its count, checked in tie-break order: the role's own entry (or
 * "*"), +group entries of the role and its groups, @db, role@db.
 */
static void
rg_check_budgets(const RGLogin *login, const RGCharges *charges, RGVerdict *v)
{
	const RGPolicy *policy = login->policy;
	const RGMembers *m = &login->members;
	const RGEntry *e;
	int			i;

	e = rg_policy_lookup(policy, RG_ENTRY_ROLE, NameStr(login->rolname), NULL);
	rg_check_entry(login, v, e ? e : rg_policy_default(policy), charges->role);
	if (policy && policy->ngroups > 0)
	{
		rg_check_entry(login, v, rg_group_entry(policy, &login->rolname),
					   charges->role);
		for (i = 0; i < m->ngroups; i++)
			rg_check_entry(login, v, charges->entries[i], charges->groups[i]);
	}
	if (login->dbname)
	{
		rg_check_entry(login, v, rg_policy_lookup(policy, RG_ENTRY_DATABASE, NULL,
										   login->dbname),
					   charges->db);
		rg_check_entry(login, v, rg_policy_lookup(policy, RG_ENTRY_ROLE_DATABASE,
										   NameStr(login->rolname), login->dbname),
					   charges->roledb);
	}
	if (v->worst)
	{
		v->violation.kind = v->worst->kind;
		rg_entry_format(v->worst, v->violation.entry, sizeof(v->violation.entry));
		v->violation.limit = v->worst->value;
		v->violation.used = rg_entry_used(v->worst, v->worst_counter);
		v->violation.waiting = v->worst->value - v->violation.used - v->worst_room;
	}
}

/* Step "decide": the verdict.  Lock held; reads only. */
void
rg_decide(const RGLogin *login, const RGCharges *charges, RGVerdict *v)
{
	const RGMembers *m = &login->members;
	bool		enforce = login->mode == RG_MODE_ENFORCE;

	memset(v, 0, sizeof(*v));
	if (login->deny_host)
		v->deny = rg_deny_covers_role(login->rolsuper, login->rolcreaterole, m,
									  &v->deny_reason);
	if (!charges->full && login->mode != RG_MODE_OFF)
	{
		rg_check_budgets(login, charges, v);
		if (!am_walsender && !login->exempt)
			v->reserved = rg_reserve_refuses(charges->role, charges->groups,
											 m->ngroups, login->waiting,
											 login->slot_limit,
											 &v->reserved_unused,
											 &v->slots_used,
											 &v->in_flight);
	}

	if (v->deny && enforce)
		v->kind = RG_REFUSE_HOST;
	else if (charges->full)
		v->kind = enforce && !login->exempt ? RG_REFUSE_FULL : RG_ADMIT_UNCOUNTED;
	else if (v->worst && enforce && !login->exempt)
		v->kind = RG_REFUSE_BUDGET;
	else if (v->reserved && enforce)
		v->kind = RG_REFUSE_RESERVED;
	else
		v->kind = RG_ADMIT;
}

/* Count a refusal, or in monitor mode a would-be refusal.  Lock held. */
static void
rg_count_refusal(const RGLogin *login, RGCounter *role, const RGVerdict *v,
				 bool monitor)
{
	RGCounter  *c = v->worst_counter;
	RGGlobalStats *g = rg_global_stats();

	rg_outcome_count(&role->stats.rejected, monitor);
	if (!monitor)
		role->stats.last_rejected = login->now;
	rg_windows_refusal(role, v->worst ? v->worst->kind : -1, c);
	if (v->worst == NULL)
		return;					/* refused for reservations: no entry */
	switch ((RGEntryKind) v->worst->kind)
	{
		case RG_ENTRY_DEFAULT:
			rg_outcome_count(&g->default_rejected, monitor);
			break;
		case RG_ENTRY_GROUP:
			rg_outcome_count(&c->stats.group_rejected, monitor);
			break;
		default:
			rg_outcome_count(&c->stats.entry_rejected, monitor);
			break;
	}
}

/* Admitted: charge every counter and take the slot.  Lock held. */
static void
rg_charge(const RGLogin *login, const RGCharges *charges)
{
	const RGMembers *m = &login->members;
	RGCounter  *role = charges->role;
	RGBackend  *slot = rg_backend(rg_my_procno());
	Port	   *port = login->port;
	int			i;

	rg_counter_add(role, false, 1);
	if (role->members_tracked)
		rg_counter_add(role, true, 1);
	if (charges->db)
		rg_counter_add(charges->db, false, 1);
	if (charges->roledb)
		rg_counter_add(charges->roledb, false, 1);
	my_noverflow = 0;
	for (i = 0; i < m->ngroups; i++)
	{
		RGCounter  *c = charges->groups[i];

		if (c == NULL)
			continue;
		rg_counter_add(c, true, 1);
		if (i >= RG_SLOT_GROUPS)
			my_overflow[my_noverflow++] = c;
	}
	if (!am_walsender)
		rg_shared->regular_sessions++;

	memset(slot, 0, sizeof(*slot));
	slot->pid = MyProcPid;
	slot->roleid = login->roleid;
	slot->walsender = am_walsender;
	slot->ngroups = Min(m->ngroups, RG_SLOT_GROUPS);
	slot->groups_overflow = m->ngroups > RG_SLOT_GROUPS;
	memcpy(slot->groups, m->groups, sizeof(Oid) * slot->ngroups);
	slot->beentry = MyBEEntry;
	slot->evict_ms = login->evict_ms;
	slot->idle_since = login->now;
	if (login->dbname)
		strlcpy(NameStr(slot->datname), login->dbname, NAMEDATALEN);
	slot->dboid = login->dboid;
	if (port->application_name)
		strlcpy(slot->application_name, port->application_name,
				sizeof(slot->application_name));
	slot->client = login->origin;

	rg_my_slot = slot;
	rg_my_counter = role;
}

/* Step "apply": carry the verdict out on the shared counts.  Lock held. */
static void
rg_apply(const RGLogin *login, const RGCharges *charges, const RGVerdict *v)
{
	bool		monitor = login->mode == RG_MODE_MONITOR;
	RGCounter  *role = charges->role;

	if (v->deny && role)
		rg_outcome_count(&role->stats.superuser_denied, monitor);
	switch (v->kind)
	{
		case RG_ADMIT:
			rg_charge(login, charges);
			rg_my_slot->deny_at_login = v->deny;
			/* monitor: count what enforce would refuse (not exempt logins) */
			if ((v->worst || v->reserved) && monitor && !login->exempt)
				rg_count_refusal(login, role, v, true);
			break;
		case RG_REFUSE_BUDGET:
		case RG_REFUSE_RESERVED:
			rg_count_refusal(login, role, v, false);
			break;
		case RG_REFUSE_HOST:
		case RG_REFUSE_FULL:
		case RG_REFUSE_GONE:
		case RG_ADMIT_UNCOUNTED:
		case RG_RETRY:
			break;
	}
}

/* Step "report": events, LOG lines, FATAL.  No lock held. */
static void
rg_report(const RGLogin *login, const RGVerdict *v)
{
	if (v->deny)
		rg_report_denial(login, v);
	switch (v->kind)
	{
		case RG_REFUSE_BUDGET:
			rg_report_budget_refusal(login, v);
			break;
		case RG_REFUSE_GONE:
			ereport(FATAL,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("role_guard: client of role \"%s\" went away while waiting %.1f s for a place",
							NameStr(login->rolname), v->waited_s)));
			break;
		case RG_REFUSE_RESERVED:
			rg_report_reserved(login, v, true);
			break;
		case RG_REFUSE_FULL:
		case RG_ADMIT_UNCOUNTED:
			rg_report_full(login, v->kind == RG_REFUSE_FULL);
			break;
		case RG_ADMIT:
			if (v->worst)
				rg_report_over_budget(login, &v->violation);
			else if (v->reserved)
				rg_report_reserved(login, v, false);
			break;
		case RG_REFUSE_HOST:
		case RG_RETRY:
			break;
	}
}

/*
 * A login that core refuses after this hook (its role may not log in, or
 * its database is missing, closed or not granted): it takes no place, but
 * a denial is decided, counted and recorded as for any login, whatever
 * core would have said next; in enforce mode the client gets the denial
 * (or the failed authentication that stands for it), not core's error.
 * No lock held.
 */
static void
rg_deny_core_refused(RGLogin *login)
{
	RGCharges	unused;
	RGVerdict	v;
	RGCounter  *role;
	bool		monitor = login->mode != RG_MODE_ENFORCE;

	if (!login->deny_host)
		return;
	rg_login_arrays(login, &unused, RG_MEMBERS_CACHED);
	rg_members_resolve(login->roleid, &login->rolname, login->rolsuper,
					   login->rolcreaterole, &login->members, false, NULL, NULL);
	memset(&v, 0, sizeof(v));
	if (!rg_deny_covers_role(login->rolsuper, login->rolcreaterole,
							 &login->members, &v.deny_reason))
		return;
	v.deny = true;
	v.kind = monitor ? RG_ADMIT : RG_REFUSE_HOST;
	LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	role = rg_counter_enter(RG_COUNTER_ROLE, login->roleid, InvalidOid);
	if (role != NULL)
	{
		role->rolname = login->rolname;
		role->rolsuper = login->rolsuper;
		rg_outcome_count(&role->stats.superuser_denied, monitor);
		rg_counter_unpin(role);
	}
	LWLockRelease(rg_lock());
	rg_report_denial(login, &v);
}

/*
 * Steps "identify" to "groups", with this process's copy of the settings
 * made the server's newest first (a reload may have come since the
 * process started, or while the client authenticated; guc.c).  If another
 * reload comes before the lock is taken, the steps run again with it, so
 * the login is decided (under the lock, from here on) by the settings the
 * postmaster has loaded.  False, with no lock held, for a login role_guard
 * has no say in; else true with the lock held.
 */
static bool
rg_begin(Port *port, RGLogin *login, RGCharges *charges)
{
	int			tries = 0;

	for (;;)
	{
		rg_policy_refresh();
		if (!rg_identify(port, login))
		{
			if (OidIsValid(login->roleid))
				rg_deny_core_refused(login);
			return false;
		}
		/* decided again after a reload: its place in line is kept */
		login->ticket = rg_wait_resumed_ticket();
		rg_prepare(login, charges);
		RG_INJECT("login-prepared");

		LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
		if (!rg_check_database(login))
		{
			LWLockRelease(rg_lock());
			rg_deny_core_refused(login);
			return false;
		}
		rg_resolve_groups(login, charges);

		/*
		 * A copy newer than the postmaster's (the file edited but not
		 * reloaded yet) stays so: go on with it after a few tries.
		 */
		login->loaded = rg_policy_loaded();
		if (login->loaded == rg_policy_own() || ++tries >= 3)
			return true;
		LWLockRelease(rg_lock());
	}
}

static void
rg_admit(Port *port)
{
	RGLogin		login;
	RGCharges	charges;
	RGVerdict	verdict;
	LWLock	   *lock = rg_lock();

	RG_INJECT("login-start");
	for (;;)
	{
		if (!rg_begin(port, &login, &charges))
			return;
		rg_reserve_apply(&login.reserve);
		rg_enter_counters(&login, &charges);
		rg_decide(&login, &charges, &verdict);
		if (rg_wait_wanted(&login, &verdict))
		{
			my_pending = &charges;
			my_pending_login = &login;
			rg_login_wait(&login, &charges, &verdict);
		}
		if (verdict.kind != RG_RETRY)
			break;
		/* a reload while it waited: from the start with the new settings */
		rg_unpin_counters(&login, &charges);
		my_pending = NULL;
		LWLockRelease(lock);
	}
	rg_wait_settle(&charges, &verdict);
	rg_apply(&login, &charges, &verdict);
	rg_unpin_counters(&login, &charges);
	my_pending = NULL;
	LWLockRelease(lock);
	/* decided; core's own checks (InitPostgres) come after the hook */
	RG_INJECT("login-decided");

	if (verdict.kind == RG_ADMIT && verdict.worst && login.mode == RG_MODE_MONITOR)
		rg_evict_monitor(&login, &verdict);
	rg_report(&login, &verdict);
	/* it is in: its statements are watched if it comes from a denied host */
	rg_deny_session_start(&login.origin, login.relay_pid);
}

static void
rg_ClientAuthentication(Port *port, int status)
{
	if (prev_ClientAuthentication)
		prev_ClientAuthentication(port, status);
	if (rg_shared == NULL)
		return;
	RG_INJECT("login-hook");
	/* the settings the postmaster loaded decide, login blocks too (guc.c) */
	rg_policy_refresh();
	/* login blocks: counted and refused whatever the status (authblock.c) */
	if (rg_auth_failure_limit > 0)
		rg_authblock_login(port, status);
	rg_authwire_done();
	if (status != STATUS_OK)
		return;
	rg_admit(port);
	/* admitted: a SCRAM final message held back goes out now (authwire.c) */
	rg_authwire_release();
}

void
rg_auth_init(void)
{
	prev_ClientAuthentication = ClientAuthentication_hook;
	ClientAuthentication_hook = rg_ClientAuthentication;
}
