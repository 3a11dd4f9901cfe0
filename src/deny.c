/*-------------------------------------------------------------------------
 *
 * deny.c
 *	  The superuser denial for the whole session: what it covers, where a
 *	  login relayed by a backend of this server comes from, and the check
 *	  before each statement of a session from a denied host.
 *
 * What is covered.  A role is covered when it, or a role it is a member of
 * (directly or not, whatever INHERIT or SET say: SET ROLE, or a grant with
 * SET on 16 and later, reaches it), is a superuser; and, as
 * role_guard.superuser_deny_covers lists, when it or such a role has
 * CREATEROLE on PostgreSQL 15 and earlier (which grants itself membership
 * in any role that is not a superuser), or when it is a member of
 * pg_execute_server_program, pg_write_server_files or pg_read_server_files
 * (programs and files as the server's operating-system user).  The login
 * hook (auth.c) and the reaper ask rg_deny_covers_role; so does the check
 * here.
 *
 * Relays.  A login over the Unix socket whose peer process (SO_PEERCRED) is
 * a client backend that role_guard admitted (dblink, postgres_fdw) comes
 * from that backend's own client: its slot's client, which is itself
 * resolved the same way, so a chain of relays ends at the first client
 * that is not a backend of this server.  Nothing else is recognised: a
 * relay through another local process (a pooler, a shell) is a Unix-socket
 * login.
 *
 * The check before each statement.  A session whose client is on a host
 * superuser_deny_hosts lists (in enforce mode; in monitor mode the login
 * hook and the reaper report what enforce would deny) runs rg_deny_session_check before
 * each statement the executor or ProcessUtility runs, at any nesting level
 * and in both protocols, after each utility statement (a GRANT that just
 * made the session's role a member is caught before anything else runs,
 * and rolled back with it), and when a function is made ready to call
 * (object_access_hook, OAT_FUNCTION_EXECUTE: the fast-path protocol and
 * PL/pgSQL's simple expressions, which go through neither hook).  It looks
 * at the session identity (session_user) and the SET ROLE identity (the
 * outer user), not at the user a SECURITY DEFINER function runs as.
 *
 * Cost: every other session pays one test of a backend-local boolean,
 * rg_deny_watch, per statement, and with no host list set nothing per
 * function (the hook is installed once a list is: rg_deny_watch_calls).
 * A watched session compares two OIDs and the membership cache's
 * generation (an atomic, bumped by AUTHMEMMEMROLE and AUTHOID
 * invalidations: members.c) with those of its last check; only when one
 * changed does it look the roles up (syscache and the membership cache).
 * A reload (mode, the host list, the coverage) makes every session look
 * again once (rg_deny_policy_changed).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "common/ip.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "storage/procarray.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "role_guard.h"

/* this backend must run rg_deny_session_check (read before every statement) */
bool		rg_deny_watch = false;

/* the policy changed: is the session from a denied host at all? */
static bool rg_deny_dirty = false;

/* this session's client, as role_guard resolved it at login */
static SockAddr rg_my_client;
static int	rg_my_relay_pid = 0;
static bool rg_my_client_known = false;

/* this backend's own refusal is being reported (not core's: not learned) */
static bool rg_deny_emitting = false;

/* the identities and membership generation of the last clean check */
static Oid	rg_checked_session = InvalidOid;
static Oid	rg_checked_outer = InvalidOid;
static uint64 rg_checked_generation = 0;

static object_access_hook_type prev_object_access = NULL;
static void rg_object_access(ObjectAccessType access, Oid classId,
							 Oid objectId, int subId, void *arg);
static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * Is a role with these attributes and groups covered by the denial?  *r
 * says why (the first reason found, superuser first).  m's super and
 * createrole arrays must be filled (names wanted).
 */
bool
rg_deny_covers_role(bool rolsuper, bool rolcreaterole, const RGMembers *m,
					RGDenyReason *r)
{
	bool		createrole = RG_CREATEROLE_GRANTS_ANY &&
		(rg_deny_covers & RG_COVERS_CREATEROLE) != 0;
	int			i;

	memset(r, 0, sizeof(*r));
	if (rolsuper)
		r->why = RG_DENY_SUPERUSER;
	for (i = 0; r->why == RG_DENY_NONE && i < m->ngroups; i++)
		if (m->super[i])
		{
			r->why = RG_DENY_SUPER_MEMBER;
			r->via = m->names[i];
		}
	if (r->why == RG_DENY_NONE && createrole && rolcreaterole)
		r->why = RG_DENY_CREATEROLE;
	for (i = 0; r->why == RG_DENY_NONE && createrole && i < m->ngroups; i++)
		if (m->createrole[i])
		{
			r->why = RG_DENY_CREATEROLE_MEMBER;
			r->via = m->names[i];
		}
	for (i = 0; r->why == RG_DENY_NONE && i < m->ngroups; i++)
		if ((m->groups[i] == ROLE_PG_EXECUTE_SERVER_PROGRAM &&
			 (rg_deny_covers & RG_COVERS_EXECUTE_PROGRAM)) ||
			(m->groups[i] == ROLE_PG_WRITE_SERVER_FILES &&
			 (rg_deny_covers & RG_COVERS_WRITE_FILES)) ||
			(m->groups[i] == ROLE_PG_READ_SERVER_FILES &&
			 (rg_deny_covers & RG_COVERS_READ_FILES)))
		{
			r->why = RG_DENY_SERVER_ROLE;
			r->via = m->names[i];
		}
	return r->why != RG_DENY_NONE;
}

/*
 * Why a role is covered, as a clause: "<subject> is a superuser", "<subject>
 * is a member of superuser role "x"", ... or with "became" for a role that
 * became so after it logged in.  No final period.
 */
void
rg_deny_reason_text(char *buf, size_t len, const char *subject,
					const RGDenyReason *r, bool became)
{
	const char *is = became ? "became" : "is";

	switch (r->why)
	{
		case RG_DENY_SUPERUSER:
			snprintf(buf, len, "%s %s a superuser", subject, is);
			break;
		case RG_DENY_SUPER_MEMBER:
			snprintf(buf, len, "%s %s a member of superuser role \"%s\"",
					 subject, is, NameStr(r->via));
			break;
		case RG_DENY_CREATEROLE:
			snprintf(buf, len, "%s has CREATEROLE (role_guard.superuser_deny_covers)",
					 subject);
			break;
		case RG_DENY_CREATEROLE_MEMBER:
			snprintf(buf, len, "%s %s a member of role \"%s\", which has CREATEROLE (role_guard.superuser_deny_covers)",
					 subject, is, NameStr(r->via));
			break;
		case RG_DENY_SERVER_ROLE:
			snprintf(buf, len, "%s %s a member of \"%s\" (role_guard.superuser_deny_covers)",
					 subject, is, NameStr(r->via));
			break;
		case RG_DENY_NONE:
			snprintf(buf, len, "%s is not covered", subject);
			break;
	}
}

/* The peer process of a Unix-socket connection, or 0 if unknown. */
static int
rg_socket_peer_pid(pgsocket sock)
{
#ifdef SO_PEERCRED
	struct ucred cred;
	socklen_t	len = sizeof(cred);

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
		len == sizeof(cred))
		return cred.pid;
#endif
	return 0;
}

static void rg_login_origin_lookup(const Port *port, SockAddr *origin,
								   int *relay_pid);

/*
 * Where a login comes from, for the denial and the login blocks: the
 * client's own address, or for a Unix-socket login made by a client
 * backend role_guard admitted, that backend's client (see the top of the
 * file).  *relay_pid is that backend's pid, or 0.  A process has one
 * login: looked up once (the SCRAM exchange, the login blocks and the
 * login hook all ask), then remembered.  No lock held.
 */
void
rg_login_origin(const Port *port, SockAddr *origin, int *relay_pid)
{
	static const Port *known_port = NULL;
	static SockAddr known_origin;
	static int	known_relay_pid;

	if (port != known_port)
	{
		rg_login_origin_lookup(port, &known_origin, &known_relay_pid);
		known_port = port;
	}
	*origin = known_origin;
	*relay_pid = known_relay_pid;
}

/* ... the look-up: takes the main lock shared briefly for a relay. */
static void
rg_login_origin_lookup(const Port *port, SockAddr *origin, int *relay_pid)
{
	int			pid;
	PGPROC	   *proc;

	*origin = port->raddr;
	*relay_pid = 0;
	if (port->raddr.addr.ss_family != AF_UNIX ||
		(pid = rg_socket_peer_pid(port->sock)) <= 0 ||
		(proc = BackendPidGetProc(pid)) == NULL)
		return;
	LWLockAcquire(rg_lock(), LW_SHARED);
	{
		const RGBackend *slot = rg_backend(rg_procno_of(proc));

		if (slot->pid == pid)
		{
			*origin = slot->client;
			*relay_pid = pid;
		}
	}
	LWLockRelease(rg_lock());
}

/* The session's client as numeric text, "?" if it cannot be printed. */
static void
rg_deny_host_text(char *host, size_t len)
{
	if (pg_getnameinfo_all(&rg_my_client.addr, rg_my_client.salen,
						   host, len, NULL, 0, NI_NUMERICHOST) != 0)
		strlcpy(host, "?", len);
}

/*
 * A login went through: from now on its statements are watched if its
 * origin is a denied host (decided at the first statement).
 */
void
rg_deny_session_start(const SockAddr *origin, int relay_pid)
{
	rg_my_client = *origin;
	rg_my_relay_pid = relay_pid;
	rg_my_client_known = true;
	rg_deny_policy_changed();
}

/*
 * The check when a function is made ready to call: object_access_hook,
 * installed in a session only once a host list exists while it is
 * connected (at its login, or at the reload that sets the list, which a
 * backend takes in before it acts on its next message), so that where no
 * list is set a session pays nothing per function.  Never taken out again:
 * a hook installed after it chains to it.
 */
static void
rg_deny_watch_calls(void)
{
	static bool installed = false;

	if (installed)
		return;
	prev_object_access = object_access_hook;
	object_access_hook = rg_object_access;
	installed = true;
}

/* A reload changed the mode, the host list or the coverage. */
void
rg_deny_policy_changed(void)
{
	rg_deny_dirty = true;
	rg_deny_watch = rg_my_client_known;
	rg_checked_generation = 0;
	if (rg_deny_watch && rg_deny_hosts != NULL)
		rg_deny_watch_calls();
}

/*
 * Is identity "roleid" covered?  Its name and the reason into *name, *r.
 * False also for a role that is gone.  In a transaction; no lock held.
 */
static bool
rg_identity_covered(Oid roleid, NameData *name, RGDenyReason *r)
{
	RGMembers	m;
	bool		rolsuper;
	bool		rolcreaterole;
	bool		covered;

	m.groups = palloc(sizeof(Oid) * RG_MEMBERS_CACHED);
	m.names = palloc(sizeof(NameData) * RG_MEMBERS_CACHED);
	m.super = palloc(sizeof(bool) * RG_MEMBERS_CACHED);
	m.createrole = palloc(sizeof(bool) * RG_MEMBERS_CACHED);
	m.ngroups = 0;
	covered = rg_role_groups(roleid, name, &rolsuper, &rolcreaterole, &m) &&
		rg_deny_covers_role(rolsuper, rolcreaterole, &m, r);
	pfree(m.groups);
	pfree(m.names);
	pfree(m.super);
	pfree(m.createrole);
	return covered;
}

/*
 * Record the violation (event, counter) and end the session before the
 * statement: FATAL 28000.  Enforce mode only: in monitor mode the login
 * hook and the reaper report what enforce would deny, once a session.
 */
static void
rg_deny_report(const NameData *rolname, bool set_role, const RGDenyReason *r)
{
	char		host[NI_MAXHOST];
	char		subject[NAMEDATALEN + 32];
	char		why[2 * NAMEDATALEN + 128];
	char		relay[64];
	RGEvent		ev;

	rg_deny_host_text(host, sizeof(host));
	relay[0] = '\0';
	if (rg_my_relay_pid != 0)
		snprintf(relay, sizeof(relay), " (through backend %d over the Unix socket)",
				 rg_my_relay_pid);
	rg_deny_reason_text(why, sizeof(why), set_role ? "Role set with SET ROLE" : "Role",
						r, !set_role);
	rg_event_init(&ev, RG_EVENT_SUPERUSER_DENIED);
	ev.pid = MyProcPid;
	ev.rolname = *rolname;
	if (rg_my_slot)
		ev.datname = rg_my_slot->datname;
	rg_event_client(&ev, &rg_my_client);
	if (application_name)
		strlcpy(ev.application_name, application_name, sizeof(ev.application_name));
	snprintf(ev.detail, sizeof(ev.detail),
			 "%s%s; host \"%s\"%s matches role_guard.superuser_deny_hosts.",
			 why, set_role ? "" : " after it logged in", host, relay);
	rg_event_add(&ev);
	if (rg_my_counter)
	{
		LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
		rg_outcome_count(&rg_my_counter->stats.superuser_denied, false);
		LWLockRelease(rg_lock());
	}
	snprintf(subject, sizeof(subject), "%s \"%s\"",
			 set_role ? "Role set with SET ROLE" : "Session role", NameStr(*rolname));
	rg_deny_reason_text(why, sizeof(why), subject, r, false);
	ereport(FATAL,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("terminating connection because a superuser may not be connected from host \"%s\"",
					host),
			 errdetail("%s, and role_guard.superuser_deny_hosts lists this host%s.",
					   why, relay)));
}

/*
 * The slow path of RG_DENY_CHECK (see the top of the file).  Needs a
 * transaction to look roles up: outside one (an aborted block running
 * ROLLBACK) it waits for the next statement; so it does while the login
 * is still being set up (the first statement is checked).
 */
void
rg_deny_session_check(void)
{
	Oid			session;
	Oid			outer;
	uint64		generation;
	NameData	name;
	RGDenyReason r;

	if (rg_deny_dirty)
	{
		rg_deny_dirty = false;
		/* monitor mode: the login hook and the reaper report, once */
		if (rg_mode != RG_MODE_ENFORCE || !rg_host_denied(&rg_my_client))
		{
			rg_deny_watch = false;
			return;
		}
	}
	/* the rest of the login (its identities are set at its end) */
	if (!IsNormalProcessingMode() || !IsTransactionState())
		return;
	session = GetSessionUserId();
	outer = GetOuterUserId();
	generation = rg_members_generation();
	if (session == rg_checked_session && outer == rg_checked_outer &&
		generation == rg_checked_generation)
		return;
	if (rg_identity_covered(session, &name, &r))
		rg_deny_report(&name, false, &r);
	else if (outer != session && rg_identity_covered(outer, &name, &r))
		rg_deny_report(&name, true, &r);
	/* clean */
	rg_checked_session = session;
	rg_checked_outer = outer;
	rg_checked_generation = generation;
}

/*
 * Will the login hook refuse this login as a covered role from a denied
 * host (enforce mode)?  Asked by authwire.c before a SCRAM exchange's
 * final message goes out, which would tell the client that its password
 * was right: the message is held back, and the client sees what a wrong
 * password shows.  In the login's transaction, during authentication.
 */
bool
rg_deny_login_refuses(const Port *port)
{
	return rg_mode == RG_MODE_ENFORCE && rg_deny_login_covered(port);
}

/*
 * ... or would it, in monitor mode too (authblock.c counts such a login as
 * the failed authentication enforce would show, and monitor mode records
 * the block that enforce would start).
 */
bool
rg_deny_login_covered(const Port *port)
{
	SockAddr	origin;
	int			relay_pid;
	HeapTuple	tup;
	Oid			roleid;
	NameData	name;
	RGDenyReason r;

	if (rg_mode == RG_MODE_OFF || rg_deny_hosts == NULL || rg_shared == NULL)
		return false;
	rg_login_origin(port, &origin, &relay_pid);
	if (!rg_host_denied(&origin))
		return false;
	tup = SearchSysCache1(AUTHNAME, CStringGetDatum(port->user_name));
	if (!HeapTupleIsValid(tup))
		return false;
	roleid = ((Form_pg_authid) GETSTRUCT(tup))->oid;
	ReleaseSysCache(tup);
	return rg_identity_covered(roleid, &name, &r);
}

/* A function is about to be called (fast path, or an expression built). */
static void
rg_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				 int subId, void *arg)
{
	if (access == OAT_FUNCTION_EXECUTE)
		RG_DENY_CHECK();
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
}

/*
 * A refused superuser login that stands for a failed authentication (auth.c)
 * carries core's file and routine in its ErrorResponse, and core's line
 * once this server has reported one real failed authentication: learned
 * here, from the report itself, in whichever backend makes it.
 */
static void
rg_deny_emit_log(ErrorData *edata)
{
	if (edata->elevel == FATAL && rg_shared != NULL &&
		edata->funcname != NULL && strcmp(edata->funcname, "auth_failed") == 0 &&
		edata->filename != NULL && strcmp(edata->filename, "auth.c") == 0 &&
		edata->lineno > 0 && !rg_deny_emitting)
		pg_atomic_write_u32(&rg_shared->auth_failed_line, (uint32) edata->lineno);
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* The line for such a refusal: core's, once seen; "fallback" until then. */
int
rg_auth_failed_line(int fallback)
{
	uint32		line = rg_shared ? pg_atomic_read_u32(&rg_shared->auth_failed_line) : 0;

	rg_deny_emitting = true;
	return line > 0 ? (int) line : fallback;
}

void
rg_deny_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = rg_deny_emit_log;
}
