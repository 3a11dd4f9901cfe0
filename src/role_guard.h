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
#include "shmem.h"

struct FormData_pg_authid;
struct RGMembers;
struct Port;

/* role_guard.mode */
typedef enum RGMode
{
	RG_MODE_ENFORCE,
	RG_MODE_MONITOR,
	RG_MODE_OFF
} RGMode;




/* role_guard.superuser_deny_covers: what the denial covers besides superusers */
#define RG_COVERS_CREATEROLE		0x01	/* CREATEROLE, on 15 and earlier */
#define RG_COVERS_EXECUTE_PROGRAM	0x02	/* pg_execute_server_program */
#define RG_COVERS_WRITE_FILES		0x04	/* pg_write_server_files */
#define RG_COVERS_READ_FILES		0x08	/* pg_read_server_files */

/* Why a role is covered by the superuser denial (deny.c). */
typedef enum RGDenyWhy
{
	RG_DENY_NONE,
	RG_DENY_SUPERUSER,			/* SUPERUSER */
	RG_DENY_SUPER_MEMBER,		/* a member of a superuser role (via) */
	RG_DENY_CREATEROLE,			/* CREATEROLE, if covered */
	RG_DENY_CREATEROLE_MEMBER,	/* a member of a CREATEROLE role (via) */
	RG_DENY_SERVER_ROLE			/* a member of a covered predefined role (via) */
} RGDenyWhy;

typedef struct RGDenyReason
{
	RGDenyWhy	why;
	NameData	via;			/* the role it is a member of, if any */
} RGDenyReason;

/* role_guard_events: what happened, as one fixed-size ring entry. */
typedef enum RGEventKind
{
	RG_EVENT_REJECTED,
	RG_EVENT_WOULD_REJECT,
	RG_EVENT_SUPERUSER_DENIED,
	RG_EVENT_WOULD_DENY,
	RG_EVENT_REAPED_IDLE,
	RG_EVENT_REAPED_IDLE_IN_TRANSACTION,
	RG_EVENT_WOULD_REAP,
	RG_EVENT_EVICTED,
	RG_EVENT_WOULD_EVICT,
	RG_EVENT_WAIT_TIMEOUT,
	RG_EVENT_ACTIVE_REJECTED,
	RG_EVENT_WOULD_WAIT,
	RG_EVENT_AUTH_BLOCKED,
	RG_EVENT_WOULD_BLOCK,
	RG_EVENT_NKINDS				/* not a kind: how many there are */
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
	int64		query_id;		/* the statement's, 0: none (login events) */
} RGEvent;



/* role_guard.c */
extern void _PG_init(void);

/* guc.c */
extern int	rg_mode;
extern int	rg_max_roles;
extern int	rg_reap_interval;
extern int	rg_event_log_size;
extern const RGPolicy *rg_budgets;
extern const RGPolicy *rg_idle_timeouts;
extern const RGPolicy *rg_idle_in_transaction_timeouts;
extern const RGHostList *rg_deny_hosts;
extern const RGPolicy *rg_reservations;
extern uint32 rg_reservations_hash;
extern int	rg_reservations_total;
extern bool rg_superuser_socket_exempt;
extern const RGPolicy *rg_login_waits;
extern const RGPolicy *rg_evict_idle;
extern const RGPolicy *rg_active_budgets;
extern const RGPolicy *rg_active_waits;
extern int	rg_max_waiting_logins;
extern int	rg_auth_failure_limit;
extern int	rg_auth_failure_window;	/* ms */
extern int	rg_auth_block_time;	/* ms */
extern int	rg_max_auth_blocks;
extern const RGHostList *rg_auth_exempt_hosts;
extern int	rg_deny_covers;
extern bool rg_save;
extern void rg_guc_init(void);
extern void rg_policy_publish(void);
extern uint64 rg_policy_loaded(void);
extern uint64 rg_policy_own(void);
extern bool rg_policy_current(void);
extern void rg_policy_refresh(void);

/* persist.c */
extern void rg_persist_startup(void);

/* shmem.c (the shared structs are in shmem.h) */
extern RGShared *rg_shared;
extern RGBackend *rg_my_slot;	/* this backend's slot, NULL unless admitted */
extern RGCounter *rg_my_counter;	/* ... and its role's counter */
extern void rg_require_loaded(void);
extern void rg_shmem_init(void);
extern LWLock *rg_lock(void);
extern RGGlobalStats *rg_global_stats(void);
extern int	rg_backend_count(void);
extern RGBackend *rg_backend(int procno);
extern RGBackendState rg_backend_state(int procno, const RGBackend *slot,
									   TimestampTz *idle_start);
extern bool rg_slot_counts_member(const RGBackend *slot, Oid roleid);
extern void rg_counter_track_members(RGCounter *counter);
extern RGCounter *rg_slot_counter(const RGBackend *slot, RGCounterKind kind);
extern void rg_counter_set(RGCounter *c, bool member, int32 value);
extern void rg_counter_add(RGCounter *c, bool member, int delta);
extern void rg_counter_reserve(RGCounter *c, bool member, int32 places);
extern bool rg_slot_in_count(const RGBackend *slot, const RGCounter *c,
							 bool member);
extern int	rg_waiters_ahead(const RGCounter *c, bool member, uint64 ticket);
extern void rg_wake_waiters(void);
extern RGCounter *rg_counter_find(RGCounterKind kind, Oid roleid, Oid dboid);
extern RGCounter *rg_counter_enter(RGCounterKind kind, Oid roleid, Oid dboid);
extern void rg_counter_unpin(RGCounter *counter);
extern void rg_counter_forget_if_unused(RGCounter *counter);
extern void rg_counters_reset(void);
extern int	rg_counter_capacity(void);
extern const RGCounter *rg_counter_at(int place);
extern RGWindows *rg_counter_windows(const RGCounter *c);
struct RGSavedCounter;
extern bool rg_counter_save(int place, struct RGSavedCounter *out);
extern bool rg_counter_restore(const struct RGSavedCounter *saved);

/* windows.c */
typedef enum RGWindowCount
{
	RG_WINDOW_REJECTED,
	RG_WINDOW_MEMBER_REJECTED,
	RG_WINDOW_WAITED,
	RG_WINDOW_MEMBER_WAITED,
	RG_WINDOW_ACTIVE_WAITED
} RGWindowCount;

/* A counter's windows summed over the last 24 hours or 31 days. */
typedef struct RGWindowSum
{
	int32		peak;
	int32		member_peak;
	int64		rejected;
	int64		member_rejected;
	int64		waited;
	int32		active_peak;
	int32		member_active_peak;
	int64		active_waited;
	int64		member_waited;
} RGWindowSum;

extern TimestampTz rg_windows_time(TimestampTz now);
extern void rg_windows_clock(TimestampTz now);
extern void rg_windows_count(const RGCounter *c, RGWindowCount what);
extern void rg_windows_refusal(const RGCounter *role, int kind,
							   const RGCounter *entry);
extern void rg_windows_wait(int kind, const RGCounter *entry);
extern void rg_windows_read(const RGWindows *w, int32 connections,
							int32 member_connections, TimestampTz now,
							TimestampTz windows_since, RGWindowSum *last24h,
							RGWindowSum *last31d);
extern bool rg_windows_empty(const RGWindows *w);
extern void rg_windows_active_peak(const RGCounter *c, bool member, int32 peak);

/* events.c */
extern Size rg_events_shmem_size(void);
extern void rg_events_shmem_init(LWLock *lock);
extern void rg_event_init(RGEvent *ev, RGEventKind kind);
extern void rg_event_client(RGEvent *ev, const SockAddr *client);
extern void rg_event_add(const RGEvent *ev);
extern void rg_events_reset(void);
extern RGEvent *rg_events_copy(int *nevents);
extern const char *rg_event_name(int kind);
extern int	rg_events_each(bool (*emit) (const RGEvent *ev, void *arg),
						   void *arg);
extern void rg_event_restore(const RGEvent *ev);
extern int	rg_events_count(void);

/* auth.c */
extern void rg_auth_init(void);
extern bool rg_client_address(const SockAddr *client, int *family, uint8 *addr);
extern bool rg_host_denied(const SockAddr *client);

/* authblock.c: login blocks after failed authentications */
struct Port;

/* One row of role_guard_auth_blocks. */
typedef struct RGAuthRow
{
	uint8		family;			/* 4 or 6 */
	uint8		addr[16];
	NameData	rolname;
	int32		failures;
	TimestampTz first_failure;
	TimestampTz blocked_until;	/* 0: no block in force */
} RGAuthRow;

extern Size rg_authblock_shmem_size(void);
extern void rg_authblock_shmem_init(LWLock *lock);
extern void rg_authblock_login(struct Port *port, int status);
extern bool rg_authblock_refuses(const struct Port *port);
extern RGAuthRow *rg_authblock_rows(int *n);
extern int	rg_authblock_unblock(const RGHostList *hosts, const char *rolname);
extern void rg_auth_name_text(const char *name, int encoding, char *out,
							  size_t outlen);

/* authwire.c: the SCRAM final message of a login that will be refused */
typedef enum RGAuthWireState
{
	RG_WIRE_NONE,				/* no SASL final message (yet) */
	RG_WIRE_SENT,				/* sent: the login was not blocked then */
	RG_WIRE_WITHHELD			/* held back: a login block or the
								 * superuser denial would refuse it; sent
								 * if the hook admits the login */
} RGAuthWireState;

extern void rg_authwire_install(void);
extern void rg_authwire_done(void);
extern void rg_authwire_release(void);
extern RGAuthWireState rg_authwire_state(void);

/* roles.c */
extern Oid *rg_member_of_fresh(Oid roleid, int *count);
extern bool rg_role_fresh(Oid roleid, NameData *name, bool *rolsuper,
						  bool *rolcreaterole);
extern bool rg_role_refuses_login(const struct FormData_pg_authid *role,
								  bool walsender);

extern void rg_database_fresh(const char *dbname, RGDatabase *db);
/* What the reaper and the views need to know of a role, from the catalogs. */
typedef struct RGRoleInfo
{
	NameData	rolname;
	bool		rolsuper;
	bool		super_member;	/* a member of a superuser role */
	NameData	supername;		/* ... that role, if super_member */
	RGDenyReason deny;			/* covered by the superuser denial, and why */
	int32		idle_ms;		/* effective limits, 0 = none */
	int32		iit_ms;
	int32		evict_ms;		/* role_guard.evict_idle, 0 = never */
} RGRoleInfo;
extern bool rg_role_info(Oid roleid, RGRoleInfo *info);
extern int32 rg_policy_limit(const RGPolicy *policy, const char *rolname,
							 const NameData *groupnames, int ngroups);
extern bool rg_role_groups(Oid roleid, NameData *rolname, bool *rolsuper,
						   bool *rolcreaterole, struct RGMembers *m);

/* members.c: the shared membership and database caches */

/* A login role's groups, and their names and SUPERUSER attributes. */
typedef struct RGMembers
{
	int			ngroups;
	Oid		   *groups;
	NameData   *names;			/* NULL: not wanted (rg_members_lookup) */
	bool	   *super;			/* SUPERUSER, per group (with names) */
	bool	   *createrole;		/* CREATEROLE, per group (with names) */
} RGMembers;

extern Size rg_members_shmem_size(void);
extern void rg_members_shmem_init(void);
extern void rg_members_init(void);
extern void rg_members_invalidate(void);
extern void rg_members_xact_end(void);
extern uint64 rg_members_generation(void);
extern void rg_members_resolve(Oid roleid, const NameData *rolname,
							   bool rolsuper, bool rolcreaterole,
							   RGMembers *m, bool lock_held,
							   void (*sized) (int ngroups, void *arg),
							   void *arg);
extern bool rg_database_refuses(const char *dbname, Oid roleid, bool rolsuper,
								Oid *dboid);

/* reserve.c */
typedef struct RGReserveResolved
{
	uint32		hash;			/* the list (rg_reservations_hash) */
	uint64		generation;		/* membership-cache generation */
	int			nentries;
	Oid		   *oids;			/* per entry; NULL: nothing to apply */
} RGReserveResolved;

extern bool rg_reserve_stale(void);
extern bool rg_reserve_resolve(RGReserveResolved *resolved);
extern void rg_reserve_apply(const RGReserveResolved *resolved);
extern void rg_reserve_sync(void);
extern bool rg_reserve_refuses(const RGCounter *role, RGCounter *const *groups,
							   int ngroups, bool waiter, int limit,
							   int *unused, int *used, bool *in_flight);

/* active.c */
typedef struct RGActiveCount RGActiveCount;

/* A copy of one active count, for the views. */
typedef struct RGActiveCountCopy
{
	uint32		kind;			/* RGEntryKind (* as name=) */
	Oid			roleid;
	Oid			dboid;
	int32		entry_kind;		/* the entry its stats were made under */
	int32		held;
	int32		waiting;
	RGActiveStats stats;
} RGActiveCountCopy;

extern bool rg_active_need;
extern void rg_active_settings_changed(void);
extern Size rg_active_shmem_size(void);
extern void rg_active_shmem_init(LWLock *lock);
extern bool rg_active_take(uint64 query_id);
extern void rg_active_subxact_abort(void);
extern void rg_active_xact_end(void);
extern bool rg_active_pin(void);
extern void rg_active_unpin(void);
extern void rg_active_proc_state(int procno, bool *held, bool *waiting);
extern RGActiveCountCopy *rg_active_copy(int *ncopies);
extern void rg_active_reset(void);
extern void rg_active_fold(void);
struct RGSavedActive;
extern int	rg_active_each_saved(bool (*emit) (const struct RGSavedActive *a,
											   void *arg),
								 void *arg);
extern bool rg_active_restore(const struct RGSavedActive *saved);
extern void rg_active_entry_numbers(const RGEntry *e,
									const RGActiveCountCopy *copies,
									int ncopies, int32 *held,
									RGActiveStats *stats);
extern int32 rg_active_role_budget(const char *rolname, bool *isnull);
/* views.c */
struct HTAB;
extern struct HTAB *rg_local_hash(const char *name, Size keysize,
								  Size entrysize, long n);

/* deny.c */
extern bool rg_deny_watch;
extern void rg_deny_init(void);
extern bool rg_deny_covers_role(bool rolsuper, bool rolcreaterole,
								const struct RGMembers *m, RGDenyReason *r);
extern void rg_deny_reason_text(char *buf, size_t len, const char *subject,
								const RGDenyReason *r, bool became);
extern void rg_login_origin(const struct Port *port, SockAddr *origin,
							int *relay_pid);
extern void rg_deny_session_start(const SockAddr *origin, int relay_pid);
extern void rg_deny_policy_changed(void);
extern void rg_deny_session_check(void);
extern int	rg_auth_failed_line(int fallback);
extern bool rg_deny_login_refuses(const struct Port *port);
extern bool rg_deny_login_covered(const struct Port *port);
extern bool rg_method_proves_secret(const struct Port *port);

/*
 * Before (and after) each statement: one branch for a session that is not
 * from a denied host.
 */
#define RG_DENY_CHECK() \
	do { \
		if (unlikely(rg_deny_watch)) \
			rg_deny_session_check(); \
	} while (0)

/* executor.c */
extern void rg_executor_init(void);

/* reaper.c */
extern void rg_reaper_register(void);
extern PGDLLEXPORT void rg_reaper_main(Datum arg);

/* ending.c */
extern void rg_end_init(void);
extern void rg_end_install(void);
extern bool rg_request_end(RGBackend *slot, int pid, uint32 seq,
						   RGReapReason reason, int32 limit,
						   const char *detail);
extern void rg_event_for_slot(RGEvent *ev, RGEventKind kind,
							  const RGBackend *slot, int pid,
							  const NameData *rolname);

#endif							/* ROLE_GUARD_H */
