/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  The login hook: superuser host denial and exact connection budgets.
 *
 * ClientAuthentication_hook runs after the client authenticated, inside a
 * transaction, before the session's database is set up.  For a login with
 * STATUS_OK it
 *	1. looks the role up (one syscache look-up),
 *	2. registers the release callback, and only then
 *	3. takes the lock once, and under it
 *	   - finds the roles it is a member of in the membership cache
 *	     (members.c; on a miss it lets the lock go, reads the catalogs and
 *	     takes the lock again to store them),
 *	   - refuses a superuser (or a member of a superuser role) whose TCP
 *	     address matches role_guard.superuser_deny_hosts,
 *	   - finds the budget entries that apply in this backend's parsed
 *	     policy (O(1) hash look-ups in local memory; no parsing),
 *	   - checks every applicable budget against the shared counts and
 *	     either charges every counter or refuses.
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
#include "catalog/pg_auth_members.h"
#include "catalog/pg_authid.h"
#include "common/ip.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "replication/walsender.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "role_guard.h"

static ClientAuthentication_hook_type prev_ClientAuthentication = NULL;

/* Which count of a counter a session holds. */
typedef enum RGChargeField
{
	RG_CHARGE_CONNECTIONS,
	RG_CHARGE_MEMBER
} RGChargeField;

typedef struct RGCharge
{
	RGCounter  *counter;
	RGChargeField field;
} RGCharge;

/* What this backend holds; given back by rg_release_at_exit. */
static RGCharge *my_charges = NULL;
static int	my_charges_room = 0;
static int	my_ncharges = 0;
static int	my_procno = -1;		/* slot filled, or -1 */

RGBackend  *rg_my_slot = NULL;
RGCounter  *rg_my_counter = NULL;
static bool exit_registered = false;

/* A budget entry that applies to this login, and the count it limits. */
typedef struct RGCheck
{
	const RGEntry *entry;
	int			charge;			/* index into the charges */
} RGCheck;

/* The entry a login was (or would have been) refused by. */
typedef struct RGViolation
{
	RGEntryKind kind;
	char		entry[RG_ENTRY_TEXT_LEN];
	int			limit;
	int			used;
} RGViolation;

/*
 * The client's TCP address as 4 or 16 bytes, an IPv4-mapped IPv6 address
 * as IPv4.  False for a Unix socket, which never matches a host list.
 */
static bool
rg_client_address(const Port *port, int *family, uint8 *addr)
{
	const struct sockaddr_storage *ss = &port->raddr.addr;

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

/* Record a login event: kind, role, and the login's database, address, name. */
static void pg_attribute_printf(4, 5)
rg_login_event(Port *port, RGEventKind kind, const char *rolname,
			   const char *fmt,...)
{
	RGEvent		ev;
	va_list		ap;

	rg_event_init(&ev, kind);
	ev.pid = MyProcPid;
	strlcpy(NameStr(ev.rolname), rolname, NAMEDATALEN);
	if (port->database_name)
		strlcpy(NameStr(ev.datname), port->database_name, NAMEDATALEN);
	rg_event_client(&ev, &port->raddr);
	if (port->application_name)
		strlcpy(ev.application_name, port->application_name, sizeof(ev.application_name));
	va_start(ap, fmt);
	vsnprintf(ev.detail, sizeof(ev.detail), fmt, ap);
	va_end(ap);
	rg_event_add(&ev);
}

/*
 * A superuser (or a member of one) logged in from a listed host, and was
 * counted: log it, and in enforce mode refuse it.  No lock held.
 */
static void
rg_report_denial(Port *port, const NameData *rolname, bool rolsuper,
				 const NameData *supername, bool monitor)
{
	char		host[NI_MAXHOST];
	const char *appname = port->application_name ? port->application_name : "";

	host[0] = '\0';
	if (pg_getnameinfo_all(&port->raddr.addr, port->raddr.salen,
						   host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
		strlcpy(host, "?", sizeof(host));

	if (rolsuper)
		rg_login_event(port, monitor ? RG_EVENT_WOULD_DENY : RG_EVENT_SUPERUSER_DENIED,
					   NameStr(*rolname),
					   "Role is a superuser; host \"%s\" matches role_guard.superuser_deny_hosts.",
					   host);
	else
		rg_login_event(port, monitor ? RG_EVENT_WOULD_DENY : RG_EVENT_SUPERUSER_DENIED,
					   NameStr(*rolname),
					   "Role is a member of superuser role \"%s\"; host \"%s\" matches role_guard.superuser_deny_hosts.",
					   NameStr(*supername), host);
	ereport(LOG,
			(errmsg("role_guard: superuser login %s: role \"%s\", host \"%s\", application_name \"%s\"",
					monitor ? "would be refused" : "refused",
					NameStr(*rolname), host, appname)));
	if (monitor)
		return;
	if (rolsuper)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("a superuser may not log in from host \"%s\"", host),
				 errdetail("Role \"%s\" is a superuser, and role_guard.superuser_deny_hosts lists this host.",
						   NameStr(*rolname))));
	ereport(FATAL,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("a superuser may not log in from host \"%s\"", host),
			 errdetail("Role \"%s\" is a member of superuser role \"%s\", and role_guard.superuser_deny_hosts lists this host.",
					   NameStr(*rolname), NameStr(*supername))));
}

/* Give back everything this backend holds.  Runs at backend exit. */
static void
rg_release_at_exit(int code, Datum arg)
{
	LWLock	   *lock;
	int			i;

	if (my_ncharges == 0 && my_procno < 0)
		return;
	/* the executor hooks stop touching the slot and the counter now */
	rg_my_slot = NULL;
	rg_my_counter = NULL;
	lock = rg_lock();
	/* nothing ERRORs under the lock, but never wait on ourselves */
	if (LWLockHeldByMe(lock))
		LWLockRelease(lock);

	LWLockAcquire(lock, LW_EXCLUSIVE);
	for (i = 0; i < my_ncharges; i++)
	{
		RGCounter  *c = my_charges[i].counter;

		if (my_charges[i].field == RG_CHARGE_CONNECTIONS)
			c->connections--;
		else
			c->member_connections--;
		Assert(c->connections >= 0 && c->member_connections >= 0);
	}
	/* a counter may be charged twice: forget only after all decrements */
	for (i = 0; i < my_ncharges; i++)
		rg_counter_forget_if_unused(my_charges[i].counter);
	if (my_procno >= 0)
	{
		RGBackend  *slot = rg_backend(my_procno);

		memset(slot, 0, sizeof(*slot));
	}
	LWLockRelease(lock);
	my_ncharges = 0;
	my_procno = -1;
}

/* Report a full budget at the given level. */
static void
rg_report_budget(int elevel, const RGViolation *v, const char *rolname,
				 const char *dbname, bool monitor)
{
	if (elevel >= ERROR)
	{
		if (v->kind == RG_ENTRY_DATABASE)
			ereport(elevel,
					(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
					 errmsg("too many connections for database \"%s\"", dbname),
					 errdetail("role_guard budget \"%s=%d\" is full (%d of %d sessions).",
							   v->entry, v->limit, v->used, v->limit)));
		else if (v->kind == RG_ENTRY_ROLE_DATABASE)
			ereport(elevel,
					(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
					 errmsg("too many connections for role \"%s\" in database \"%s\"",
							rolname, dbname),
					 errdetail("role_guard budget \"%s=%d\" is full (%d of %d sessions).",
							   v->entry, v->limit, v->used, v->limit)));
		else
			ereport(elevel,
					(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
					 errmsg("too many connections for role \"%s\"", rolname),
					 errdetail("role_guard budget \"%s=%d\" is full (%d of %d sessions).",
							   v->entry, v->limit, v->used, v->limit)));
	}
	else if (monitor)
		ereport(elevel,
				(errmsg("role_guard: connection of role \"%s\" would be refused", rolname),
				 errdetail("role_guard budget \"%s=%d\" is full (%d of %d sessions).",
						   v->entry, v->limit, v->used, v->limit)));
	else
		ereport(elevel,
				(errmsg("role_guard: superuser \"%s\" admitted over budget through the Unix socket",
						rolname),
				 errdetail("role_guard budget \"%s=%d\" is full (%d of %d sessions).",
						   v->entry, v->limit, v->used, v->limit)));
}

/*
 * Charge a refusal (or, in monitor mode, a would-be refusal) to the role's
 * counter and to the counter of the entry that refused it.  Lock held.
 */
static void
rg_count_refusal(RGCounter *role, const RGCheck *check, RGCharge *charges,
				 bool monitor, TimestampTz now)
{
	RGCounter  *c = charges[check->charge].counter;
	RGGlobalStats *g = rg_global_stats();

	if (monitor)
		role->would_reject++;
	else
	{
		role->rejected++;
		role->last_rejected = now;
	}
	switch ((RGEntryKind) check->entry->kind)
	{
		case RG_ENTRY_DEFAULT:
			if (monitor)
				g->default_would_reject++;
			else
				g->default_rejected++;
			break;
		case RG_ENTRY_GROUP:
			if (monitor)
				c->group_would_reject++;
			else
				c->group_rejected++;
			break;
		default:
			if (monitor)
				c->entry_would_reject++;
			else
				c->entry_rejected++;
			break;
	}
}

/*
 * Unpin the counters a login entered: every charge's, the role's once
 * (charges 0 and 1 share it).  Lock held.
 */
static void
rg_unpin_charges(RGCharge *charges, int ncharges)
{
	int			i;

	for (i = 0; i < ncharges; i++)
		if (i != 1)
			rg_counter_unpin(charges[i].counter);
}

/* Room for a login's charges and checks: 4 + its groups. */
static void
rg_admit_arrays(int ngroups, RGCharge **charges, RGCheck **checks)
{
	int			n = 4 + ngroups;

	if (*charges)
		pfree(*charges);
	if (*checks)
		pfree(*checks);
	*charges = palloc(sizeof(RGCharge) * n);
	*checks = palloc(sizeof(RGCheck) * n);
	if (my_charges_room < n)
	{
		if (my_charges)
			pfree(my_charges);
		my_charges = MemoryContextAlloc(TopMemoryContext, sizeof(RGCharge) * n);
		my_charges_room = n;
	}
}

static void
rg_admit(Port *port)
{
	HeapTuple	tup;
	Oid			roleid;
	bool		rolsuper;
	NameData	rolname;
	bool		via_socket = port->raddr.addr.ss_family == AF_UNIX;
	const char *dbname;
	const RGPolicy *policy = rg_budgets;
	int			mode = rg_mode;
	bool		deny_host = false;
	bool		deny = false;
	NameData	supername;
	RGMembers	m;
	RGCharge   *charges = NULL;
	int			ncharges = 0;
	RGCheck    *checks = NULL;
	int			nchecks = 0;
	int			role_charge;
	int			role_member_charge;
	int			db_charge = -1;
	int			roledb_charge = -1;
	const RGEntry *e;
	const RGCheck *worst = NULL;
	int			worst_room = 0;
	RGViolation violation;
	bool		full = false;
	bool		exempt;
	bool		refuse;
	TimestampTz now;
	LWLock	   *lock = rg_lock();
	int			i;

	tup = SearchSysCache1(AUTHNAME, CStringGetDatum(port->user_name));
	if (!HeapTupleIsValid(tup))
		return;					/* core reports the unknown role */
	roleid = ((Form_pg_authid) GETSTRUCT(tup))->oid;
	rolsuper = ((Form_pg_authid) GETSTRUCT(tup))->rolsuper;
	namestrcpy(&rolname, NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname));
	ReleaseSysCache(tup);

	/* a physical replication connection has no database */
	dbname = port->database_name[0] != '\0' ? port->database_name : NULL;
	/* superusers over the Unix socket are never refused by a budget */
	exempt = rolsuper && via_socket;

	/* does role_guard.superuser_deny_hosts list the client? */
	if (mode != RG_MODE_OFF && rg_deny_hosts != NULL)
	{
		int			family;
		uint8		addr[16];

		deny_host = rg_client_address(port, &family, addr) &&
			rg_hosts_match(rg_deny_hosts, family, addr) != NULL;
	}

	/*
	 * The groups come from the membership cache (members.c); their names
	 * only for +group entries, their SUPERUSER attributes only to deny.
	 */
	m.ngroups = 0;
	m.groups = palloc(sizeof(Oid) * RG_MEMBERS_CACHED);
	m.names = NULL;
	m.super = NULL;
	if ((policy && policy->ngroups > 0) || (deny_host && !rolsuper))
	{
		m.names = palloc(sizeof(NameData) * RG_MEMBERS_CACHED);
		m.super = palloc(sizeof(bool) * RG_MEMBERS_CACHED);
	}
	rg_admit_arrays(RG_MEMBERS_CACHED, &charges, &checks);

	/* The place is given back on every exit path: register before taking. */
	if (!exit_registered)
	{
		before_shmem_exit(rg_release_at_exit, (Datum) 0);
		exit_registered = true;
	}
	now = GetCurrentTimestamp();

	LWLockAcquire(lock, LW_EXCLUSIVE);

	if (!rg_members_lookup(roleid, &m))
	{
		/* a miss: read the catalogs without the lock, then store */
		uint64		generation;

		LWLockRelease(lock);
		pfree(m.groups);
		if (m.names)
		{
			pfree(m.names);
			pfree(m.super);
		}
		generation = rg_members_load(roleid, &m);
		if (m.ngroups > RG_MEMBERS_CACHED)
			rg_admit_arrays(m.ngroups, &charges, &checks);
		LWLockAcquire(lock, LW_EXCLUSIVE);
		rg_members_store(generation, roleid, &rolname, rolsuper, &m);
	}

	/*
	 * The charges: the role's own count, its member count (a role is a
	 * member of itself for +role), each group's member count, the database
	 * and the role-in-database counts.
	 */
	role_charge = ncharges++;	/* 0 */
	charges[role_charge].field = RG_CHARGE_CONNECTIONS;
	role_member_charge = ncharges++;	/* 1: the same counter */
	charges[role_member_charge].field = RG_CHARGE_MEMBER;
	for (i = 0; i < m.ngroups; i++)
		charges[ncharges++].field = RG_CHARGE_MEMBER;
	if (dbname)
	{
		db_charge = ncharges++;
		roledb_charge = ncharges++;
	}

	/* find or create every counter; none of this can ERROR */
	charges[role_charge].counter = rg_counter_enter(RG_COUNTER_ROLE, roleid, NULL);
	charges[role_member_charge].counter = charges[role_charge].counter;
	for (i = 0; i < m.ngroups; i++)
		charges[2 + i].counter = rg_counter_enter(RG_COUNTER_ROLE, m.groups[i], NULL);
	if (dbname)
	{
		charges[db_charge].counter = rg_counter_enter(RG_COUNTER_DB, InvalidOid, dbname);
		charges[roledb_charge].counter = rg_counter_enter(RG_COUNTER_ROLEDB, roleid, dbname);
	}
	for (i = 0; i < ncharges; i++)
		if (charges[i].counter == NULL)
			full = true;
	if (charges[role_charge].counter)
	{
		charges[role_charge].counter->rolname = rolname;
		charges[role_charge].counter->rolsuper = rolsuper;
	}

	/* superuser denial, before anything is charged */
	if (deny_host)
	{
		deny = rolsuper;
		for (i = 0; !deny && i < m.ngroups; i++)
		{
			if (m.super[i])
			{
				deny = true;
				supername = m.names[i];
			}
		}
	}
	if (deny)
	{
		RGCounter  *c = charges[role_charge].counter;

		if (c && mode == RG_MODE_MONITOR)
			c->would_deny++;
		else if (c)
			c->superuser_denied++;
		if (mode == RG_MODE_ENFORCE)
		{
			rg_unpin_charges(charges, ncharges);
			LWLockRelease(lock);
			rg_report_denial(port, &rolname, rolsuper, &supername, false);
		}
	}

	/* The entries that apply, in tie-break order. */
	e = rg_policy_lookup(policy, RG_ENTRY_ROLE, NameStr(rolname), NULL);
	if (e == NULL)
		e = rg_policy_default(policy);
	if (e)
		checks[nchecks++] = (RGCheck) {e, role_charge};
	if (policy && policy->ngroups > 0)
	{
		e = rg_policy_lookup(policy, RG_ENTRY_GROUP, NameStr(rolname), NULL);
		if (e)
			checks[nchecks++] = (RGCheck) {e, role_member_charge};
		for (i = 0; i < m.ngroups; i++)
		{
			e = rg_policy_lookup(policy, RG_ENTRY_GROUP, NameStr(m.names[i]), NULL);
			if (e)
				checks[nchecks++] = (RGCheck) {e, 2 + i};
		}
	}
	if (dbname)
	{
		e = rg_policy_lookup(policy, RG_ENTRY_DATABASE, NULL, dbname);
		if (e)
			checks[nchecks++] = (RGCheck) {e, db_charge};
		e = rg_policy_lookup(policy, RG_ENTRY_ROLE_DATABASE, NameStr(rolname), dbname);
		if (e)
			checks[nchecks++] = (RGCheck) {e, roledb_charge};
	}

	/* the budget with least room, if any is full */
	if (!full && mode != RG_MODE_OFF)
	{
		for (i = 0; i < nchecks; i++)
		{
			RGCharge   *ch = &charges[checks[i].charge];
			int			used = ch->field == RG_CHARGE_CONNECTIONS ?
				ch->counter->connections : ch->counter->member_connections;
			int			room = checks[i].entry->value - used;

			if (room <= 0 && (worst == NULL || room < worst_room))
			{
				worst = &checks[i];
				worst_room = room;
			}
		}
	}
	if (worst)
	{
		RGCharge   *ch = &charges[worst->charge];

		violation.kind = worst->entry->kind;
		rg_entry_format(worst->entry, violation.entry, sizeof(violation.entry));
		violation.limit = worst->entry->value;
		violation.used = ch->field == RG_CHARGE_CONNECTIONS ?
			ch->counter->connections : ch->counter->member_connections;
	}

	/*
	 * A full counter table refuses in enforce mode (an uncounted session
	 * could pass a budget); monitor and off, and the superuser on the Unix
	 * socket, are let in uncounted.
	 */
	refuse = !exempt && mode == RG_MODE_ENFORCE && (full || worst);
	if (refuse || full)
	{
		if (worst && charges[role_charge].counter)
			rg_count_refusal(charges[role_charge].counter, worst, charges,
							 false, now);
		rg_unpin_charges(charges, ncharges);
		LWLockRelease(lock);

		if (deny)
			rg_report_denial(port, &rolname, rolsuper, &supername, true);
		if (!refuse)
		{
			ereport(LOG,
					(errmsg("role_guard: connection of role \"%s\" admitted without being counted",
							NameStr(rolname)),
					 errdetail("All %d entries of role_guard's shared counter table are in use; raise role_guard.max_roles.",
							   rg_counter_capacity())));
			return;
		}
		if (worst)
		{
			rg_login_event(port, RG_EVENT_REJECTED, NameStr(rolname),
						   "role_guard budget \"%s=%d\" is full (%d of %d sessions).",
						   violation.entry, violation.limit, violation.used,
						   violation.limit);
			rg_report_budget(FATAL, &violation, NameStr(rolname), dbname, false);
		}
		rg_login_event(port, RG_EVENT_REJECTED, NameStr(rolname),
					   "All %d entries of role_guard's shared counter table are in use; raise role_guard.max_roles.",
					   rg_counter_capacity());
		ereport(FATAL,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg("too many connections for role \"%s\"", NameStr(rolname)),
				 errdetail("All %d entries of role_guard's shared counter table are in use; raise role_guard.max_roles.",
						   rg_counter_capacity())));
	}

	/* admitted: charge every counter and take the slot */
	for (i = 0; i < ncharges; i++)
	{
		RGCounter  *c = charges[i].counter;

		if (charges[i].field == RG_CHARGE_CONNECTIONS)
		{
			c->connections++;
			if (c->connections > c->peak)
				c->peak = c->connections;
		}
		else
			c->member_connections++;
		my_charges[i] = charges[i];
	}
	my_ncharges = ncharges;
	my_procno = rg_my_procno();
	{
		RGBackend  *slot = rg_backend(my_procno);

		memset(slot, 0, sizeof(*slot));
		slot->reap_state = -1;
		slot->pid = MyProcPid;
		slot->roleid = roleid;
		slot->walsender = am_walsender;
		slot->idle_since = now;
		if (dbname)
			strlcpy(NameStr(slot->datname), dbname, NAMEDATALEN);
		if (port->application_name)
			strlcpy(slot->application_name, port->application_name,
					sizeof(slot->application_name));
		slot->client = port->raddr;
		rg_my_slot = slot;
		rg_my_counter = charges[role_charge].counter;
	}
	/* monitor: count what enforce would refuse (it admits exempt logins) */
	if (worst && mode == RG_MODE_MONITOR && !exempt)
		rg_count_refusal(charges[role_charge].counter, worst, charges, true, now);
	rg_unpin_charges(charges, ncharges);
	LWLockRelease(lock);

	if (deny)
		rg_report_denial(port, &rolname, rolsuper, &supername, true);
	if (worst && !exempt)
		rg_login_event(port, RG_EVENT_WOULD_REJECT, NameStr(rolname),
					   "role_guard budget \"%s=%d\" is full (%d of %d sessions).",
					   violation.entry, violation.limit, violation.used,
					   violation.limit);
	if (worst)
		rg_report_budget(LOG, &violation, NameStr(rolname), dbname, !exempt);
	pfree(charges);
	pfree(checks);
	pfree(m.groups);
	if (m.names)
	{
		pfree(m.names);
		pfree(m.super);
	}
}

static void
rg_ClientAuthentication(Port *port, int status)
{
	if (prev_ClientAuthentication)
		prev_ClientAuthentication(port, status);
	if (status != STATUS_OK || rg_shared == NULL)
		return;
	rg_admit(port);
}

void
rg_auth_init(void)
{
	prev_ClientAuthentication = ClientAuthentication_hook;
	ClientAuthentication_hook = rg_ClientAuthentication;
}
