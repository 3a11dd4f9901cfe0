/*-------------------------------------------------------------------------
 *
 * role_guard.h
 *	  Types shared between role_guard's files, and their externs, grouped
 *	  by the file that defines them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ROLE_GUARD_H
#define ROLE_GUARD_H

#include "datatype/timestamp.h"
#include "libpq/pqcomm.h"
#include "port/atomics.h"
#include "storage/lwlock.h"

#include "policy.h"

struct FormData_pg_authid;
struct PgBackendStatus;

/* role_guard.mode */
typedef enum RGMode
{
	RG_MODE_ENFORCE,
	RG_MODE_MONITOR,
	RG_MODE_OFF
} RGMode;

/*
 * Shared counters.  One hash table holds three kinds, keyed by RGCounterKey
 * (zero-filled, so it can be hashed as bytes):
 *	- RG_COUNTER_ROLE: one role, by OID.  "connections" counts sessions
 *	  logged in as the role, "member_connections" those of the role and of
 *	  every role that is a member of it (directly or not) at login time.
 *	- RG_COUNTER_DB: one database, by name (the login path has no OID yet).
 *	- RG_COUNTER_ROLEDB: one role in one database.
 * Every login is charged to all counters that describe it, whatever the
 * policy, so that a reload that adds an entry finds an exact count.
 */
typedef enum RGCounterKind
{
	RG_COUNTER_ROLE = 1,
	RG_COUNTER_DB,
	RG_COUNTER_ROLEDB
} RGCounterKind;

typedef struct RGCounterKey
{
	uint32		kind;			/* RGCounterKind */
	Oid			roleid;			/* InvalidOid for RG_COUNTER_DB */
	NameData	dbname;			/* zeroes for RG_COUNTER_ROLE */
} RGCounterKey;

typedef struct RGCounter
{
	RGCounterKey key;			/* hash key: must be first */
	NameData	rolname;		/* role's name when last seen (kept after DROP) */
	bool		rolsuper;		/* likewise, its SUPERUSER attribute */
	bool		members_tracked;	/* ROLE: member_connections is exact (see
									 * "Member counts" in shmem.c) */
	int32		pins;			/* logins holding it while they admit (never
								 * evicted meanwhile) */
	int32		connections;
	int32		member_connections; /* RG_COUNTER_ROLE, while members_tracked */
	int32		peak;			/* highest "connections" since reset */
	int64		rejected;		/* ROLE: logins of this role refused */
	int64		would_reject;	/* ROLE: ... that monitor mode let in */
	int64		entry_rejected; /* refusals charged to this counter's own
								 * entry: name=, @db or name@db */
	int64		entry_would_reject;
	int64		group_rejected; /* ROLE: refusals charged to +name */
	int64		group_would_reject;
	int64		superuser_denied;
	int64		would_deny;
	int64		reaped;
	int64		would_reap;
	TimestampTz last_rejected;	/* 0 = never */
	pg_atomic_uint64 statements;	/* executed by sessions of this role */
} RGCounter;

/*
 * The one counting rule: the count a budget entry limits, in the counter
 * that keeps it (the role's for name= and *, the group's member count for
 * +group, the database's for @db, the role-in-database's for name@db).
 */
static inline int
rg_entry_used(const RGEntry *entry, const RGCounter *counter)
{
	return entry->kind == RG_ENTRY_GROUP ? counter->member_connections :
		counter->connections;
}

/* Groups a slot records; a login role with more records only these. */
#define RG_SLOT_GROUPS 64

/* Why the reaper signals a backend (RGBackend.reap_reason). */
typedef enum RGReapReason
{
	RG_REAP_NONE = 0,
	RG_REAP_IDLE,				/* idle past role_guard.idle_timeouts */
	RG_REAP_IDLE_IN_TRANSACTION,	/* ... idle_in_transaction_timeouts */
	RG_REAP_SUPERUSER			/* became a superuser on a denied host */
} RGReapReason;

/*
 * One slot per PGPROC, indexed by procno.
 */
typedef struct RGBackend
{
	/*
	 * Written by the owning backend under the exclusive lock, when it is
	 * admitted and when it exits; read by others under the lock (or, for a
	 * racy but harmless glance, without it).
	 */
	int			pid;			/* 0: slot not in use */
	Oid			roleid;			/* login role */
	bool		walsender;		/* a replication connection */
	bool		groups_overflow;	/* the role had more than RG_SLOT_GROUPS */
	int16		ngroups;		/* used entries of groups[] */
	Oid			groups[RG_SLOT_GROUPS];	/* roles it is a member of at login */
	struct PgBackendStatus *beentry;	/* core's status entry of this backend */
	NameData	datname;
	char		application_name[NAMEDATALEN];
	SockAddr	client;			/* AF_UNIX for the Unix socket */
	/* written by the owner only, without the lock (executor.c): */
	bool		in_utility;		/* a top-level utility statement runs: COPY
								 * FROM STDIN waits on its client, yet works */
	bool		aborted_block;	/* in a failed transaction block */
	int32		active_statements;	/* 1 while a top-level statement runs */
	uint32		seq;			/* bumped as each top-level statement starts */
	TimestampTz idle_since;		/* end of the last work for the client (or of
								 * login): a lower bound of the idle start */
	/*
	 * Written by the reaper under the exclusive lock just before it signals
	 * the backend; read by the backend's SIGTERM handler, which acts on them
	 * only if reap_pid is its own pid and the signal came from the reaper.
	 */
	int			reap_pid;		/* the process the request is for, or 0 */
	uint32		reap_seq;		/* slot's seq when the reaper saw it idle */
	int32		reap_reason;	/* RGReapReason */
	int32		reap_limit_ms;
} RGBackend;

/* role_guard_events: what happened, as one fixed-size ring entry. */
typedef enum RGEventKind
{
	RG_EVENT_REJECTED,
	RG_EVENT_WOULD_REJECT,
	RG_EVENT_SUPERUSER_DENIED,
	RG_EVENT_WOULD_DENY,
	RG_EVENT_REAPED_IDLE,
	RG_EVENT_REAPED_IDLE_IN_TRANSACTION,
	RG_EVENT_WOULD_REAP
} RGEventKind;

typedef struct RGEvent
{
	TimestampTz at;
	int32		kind;			/* RGEventKind */
	int32		pid;			/* 0: none */
	NameData	rolname;
	NameData	datname;		/* "" for none */
	char		client_addr[64];	/* numeric host, "" for the Unix socket */
	char		application_name[NAMEDATALEN];
	char		detail[256];
} RGEvent;

/* Counts kept outside the hash. Protected by RGShared.lock. */
typedef struct RGGlobalStats
{
	int64		default_rejected;	/* refusals charged to "*" */
	int64		default_would_reject;
} RGGlobalStats;

/*
 * Session state as the views and the reaper see it: idle while waiting for
 * its client outside a utility statement, in a transaction if its PGPROC
 * has one open or its transaction block has failed.
 */
typedef enum RGBackendState
{
	RG_STATE_ACTIVE,
	RG_STATE_IDLE,
	RG_STATE_IDLE_IN_TRANSACTION
} RGBackendState;

/* role_guard.c */
extern void _PG_init(void);
extern void rg_require_loaded(void);

/* guc.c */
extern int	rg_mode;
extern int	rg_max_roles;
extern int	rg_reap_interval;
extern int	rg_event_log_size;
extern const RGPolicy *rg_budgets;
extern const RGPolicy *rg_idle_timeouts;
extern const RGPolicy *rg_idle_in_transaction_timeouts;
extern const RGHostList *rg_deny_hosts;
extern void rg_guc_init(void);

/* shmem.c */
typedef struct RGShared RGShared;
extern RGShared *rg_shared;
extern void rg_shmem_init(void);
extern LWLock *rg_lock(void);
extern RGGlobalStats *rg_global_stats(void);
extern int	rg_backend_count(void);
extern RGBackend *rg_backend(int procno);
extern RGBackendState rg_backend_state(int procno, const RGBackend *slot,
									   TimestampTz *idle_start);
extern bool rg_slot_counts_member(const RGBackend *slot, Oid roleid);
extern void rg_counter_track_members(RGCounter *counter);
extern void rg_reaper_pid_set(int pid);
extern int	rg_reaper_pid(void);
extern RGCounter *rg_counter_find(RGCounterKind kind, Oid roleid,
								  const char *dbname);
extern RGCounter *rg_counter_enter(RGCounterKind kind, Oid roleid,
								   const char *dbname);
extern void rg_counter_unpin(RGCounter *counter);
extern void rg_counter_forget_if_unused(RGCounter *counter);
extern void rg_counters_reset(void);
extern int	rg_counter_capacity(void);
extern struct HTAB *rg_counter_table(void);

/* events.c */
extern Size rg_events_shmem_size(void);
extern void rg_events_shmem_init(LWLock *lock);
extern void rg_event_init(RGEvent *ev, RGEventKind kind);
extern void rg_event_client(RGEvent *ev, const SockAddr *client);
extern void rg_event_add(const RGEvent *ev);
extern void rg_events_reset(void);

/* auth.c: this backend's slot and role counter, NULL unless admitted */
extern RGBackend *rg_my_slot;
extern RGCounter *rg_my_counter;
extern void rg_auth_init(void);
extern bool rg_host_denied(const SockAddr *client);

/* roles.c */
extern Oid *rg_member_of(Oid roleid, int *count);
extern Oid *rg_member_of_ext(Oid roleid, int *count, bool fresh);
extern bool rg_role_fresh(Oid roleid, NameData *name, bool *rolsuper);
extern bool rg_core_refuses_login(const struct FormData_pg_authid *role,
								  const char *dbname, bool walsender);
/* What the reaper and the views need to know of a role, from the catalogs. */
typedef struct RGRoleInfo
{
	NameData	rolname;
	bool		rolsuper;
	bool		super_member;	/* a member of a superuser role */
	NameData	supername;		/* ... that role, if super_member */
	int32		idle_ms;		/* effective limits, 0 = none */
	int32		iit_ms;
} RGRoleInfo;
extern bool rg_role_info(Oid roleid, RGRoleInfo *info);

/* members.c: the shared membership cache */
#define RG_MEMBERS_CACHED 64	/* most groups a cached role may have */

/* A login role's groups, and their names and SUPERUSER attributes. */
typedef struct RGMembers
{
	int			ngroups;
	Oid		   *groups;
	NameData   *names;			/* NULL: not wanted (rg_members_lookup) */
	bool	   *super;
} RGMembers;

extern Size rg_members_shmem_size(void);
extern void rg_members_shmem_init(void);
extern void rg_members_init(void);
extern void rg_members_invalidate(void);
extern bool rg_members_lookup(Oid roleid, RGMembers *m);
extern uint64 rg_members_load(Oid roleid, RGMembers *m);
extern void rg_members_store(uint64 generation, Oid roleid,
							 const NameData *rolname, bool rolsuper,
							 const RGMembers *m);

/* executor.c */
extern void rg_executor_init(void);

/* reaper.c */
extern void rg_reaper_register(void);
extern void rg_reaper_backend_init(void);
extern void rg_reaper_backend_admitted(void);
extern PGDLLEXPORT void rg_reaper_main(Datum arg);

#endif							/* ROLE_GUARD_H */
