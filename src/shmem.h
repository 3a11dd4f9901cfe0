/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  role_guard's shared state: every struct in shared memory, and what
 *	  protects each of its fields.
 *
 * Owners: shmem.c creates RGShared (with one RGBackend slot per PGPROC) and
 * the counter hash (RGCounter); members.c the membership cache
 * (RGMembersShared, RGRoleEntry); events.c the event ring, and
 * authblock.c the table of login blocks, each with its own lock (see
 * there).
 *
 * Locking rules.  "The lock" is RGShared.lock, the first LWLock of tranche
 * "role_guard".  Each field below is marked with what protects it:
 *	[lock]		read under the lock (shared is enough), written under it
 *				exclusively;
 *	[owner]		written by the backend that owns the slot, without the
 *				lock; others read it as a snapshot that may be a moment old;
 *	[reaper]	written under the lock exclusively by the process that asks
 *				the backend to end (the reaper, or a login evicting it), read
 *				by the owning backend's request handler (see ending.c), which
 *				clears reap_pid when it drops the request;
 *	[atomic]	an atomic, read and changed without the lock;
 *	[startup]	set once when shared memory is created.
 * Under the lock nothing may ERROR, allocate or do I/O (hence
 * HASH_ENTER_NULL).  The login path takes it once, exclusively.  A counter
 * with sessions (connections or member_connections above zero) or pins is
 * never removed, so a backend may keep pointers to the counters it charged.
 * After a crash-restart the postmaster creates shared memory anew, so every
 * count starts again at zero along with the sessions it counted.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RG_SHMEM_H
#define RG_SHMEM_H

#include "datatype/timestamp.h"
#include "libpq/pqcomm.h"
#include "port/atomics.h"
#include "storage/lwlock.h"

#include "policy.h"
#include "queue.h"

struct PgBackendStatus;

/*
 * Counters.  One array of rg_counter_capacity() places holds three kinds,
 * found by RGCounterKey (zero-filled, so it can be hashed as bytes) through
 * a hash of RGCounterIndex.  A counter stays at its place while it exists,
 * so the views can copy the array a part at a time:
 *	- RG_COUNTER_ROLE: one role, by OID.  "connections" counts sessions
 *	  logged in as the role; "member_connections", while members_tracked,
 *	  those of the role and of every role that was a member of it at login.
 *	- RG_COUNTER_DB: one database, by OID (from the database cache, so a
 *	  renamed database keeps its count).
 *	- RG_COUNTER_ROLEDB: one role in one database.
 *
 * Member counts are kept only for roles that a +group entry names (or
 * named once): see "Member counts" in shmem.c.  Database and
 * role-in-database counters exist only once an @db or name@db entry names
 * them, counted from the slots when made, and while they count sessions or
 * keep statistics (rg_kept_counter in auth.c).
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
	Oid			dboid;			/* InvalidOid for RG_COUNTER_ROLE */
} RGCounterKey;

/* What enforce mode did, and what monitor mode would have done. */
typedef struct RGOutcome
{
	int64		done;
	int64		would;
} RGOutcome;

static inline void
rg_outcome_count(RGOutcome *outcome, bool monitor)
{
	if (monitor)
		outcome->would++;
	else
		outcome->done++;
}

/* What active budgets (active.c) met: statements that waited, refused, would wait. */
typedef struct RGActiveStats
{
	int64		waited;			/* got their place after waiting */
	int64		rejected;		/* refused (active_waits passed, or 0) */
	int64		would_wait;		/* monitor mode: would have waited */
} RGActiveStats;

/*
 * A counter's statistics since the last role_guard_reset(): all [lock].
 * All zero means "nothing to keep" (peak is kept for role counters only).
 */
typedef struct RGCounterStats
{
	int32		peak;			/* ROLE: highest "connections" */
	RGOutcome	rejected;		/* ROLE: logins of this role refused */
	RGOutcome	entry_rejected; /* refusals charged to this counter's own
								 * entry: name=, @db or name@db */
	RGOutcome	group_rejected; /* ROLE: refusals charged to +name */
	RGOutcome	superuser_denied;	/* ROLE: superuser denials */
	RGOutcome	reaped;			/* ROLE: sessions reaped */
	RGOutcome	evicted;		/* ROLE: sessions ended to make room */
	int64		waited;			/* ROLE: logins admitted after waiting */
	int64		wait_timeouts;	/* ROLE: logins that waited and were refused */
	RGOutcome	auth_blocked;	/* ROLE: login blocks begun for its name
								 * (authblock.c) */
	TimestampTz last_rejected;	/* ROLE: 0 = never */
	RGActiveStats active;		/* ROLE: its statements and active budgets */
} RGCounterStats;

typedef struct RGCounter
{
	RGCounterKey key;			/* [lock] kind 0: a free place of the array */
	int32		next_free;		/* [lock] a free place: the next one, -1 for
								 * none */
	NameData	rolname;		/* [lock] role's name when last seen (kept
								 * after DROP ROLE); RG_COUNTER_DB: the
								 * database's */
	bool		rolsuper;		/* [lock] likewise, its SUPERUSER attribute */
	bool		members_tracked;	/* [lock] ROLE: member_connections is kept
									 * (and the counter too, even at zero,
									 * until a full table evicts it) */
	int32		pins;			/* [lock] logins holding it while they admit
								 * (never evicted meanwhile) */
	int32		connections;	/* [lock] */
	int32		member_connections; /* [lock] ROLE, while members_tracked */
	int32		reserved;		/* [lock] ROLE: places role_guard.reservations
								 * keeps for its sessions (name=N) */
	int32		member_reserved;	/* [lock] ROLE: ... for its members
									 * (+name=N); implies members_tracked */
	int32		waiting;		/* [lock] ROLE: its logins waiting now */
	struct RGCounter *next_reserved;	/* [lock] the next in the list of
										 * counters with reservations
										 * (RGReserveState.first) */
	RGCounterStats stats;		/* [lock] */
	pg_atomic_uint64 statements;	/* [atomic] run by sessions of this role */
} RGCounter;

/*
 * Peaks by window (windows.c).  Each counter place of the array has one
 * RGWindows at the same index in a parallel array (so the views that copy
 * counters do not copy windows): one slot per hour of the last 24 and per
 * day of the last 31, each keyed by its absolute hour or day number (UTC,
 * from 2000-01-01), so a slot whose number is stale is an hour or day that
 * has passed and is reset before it is used again.  All fields [lock].
 */
#define RG_WINDOW_HOURS 24
#define RG_WINDOW_DAYS 31

typedef struct RGWindowSlot
{
	int32		number;			/* hour or day number; 0: never used */
	int32		peak;			/* highest "connections" in it */
	int32		member_peak;	/* highest "member_connections" in it */
	int32		rejected;		/* ROLE: its logins refused (enforce) or
								 * that would be (monitor); DB, ROLEDB:
								 * refusals charged to the entry */
	int32		member_rejected;	/* ROLE: refusals charged to +name */
	int32		waited;			/* ROLE: its logins that waited for a place;
								 * DB, ROLEDB: logins that began to wait
								 * for a place in the entry */
	int32		active_peak;	/* most active places held in the count of
								 * the entry name= or * (ROLE), @db (DB),
								 * name@db (ROLEDB): active.c's peaks,
								 * folded in by rg_active_fold */
	int32		member_active_peak; /* ROLE: ... of +name's count */
	int32		active_waited;	/* ROLE: its statements that waited for an
								 * active place or were refused one (or, in
								 * monitor mode, would have waited) */
	int32		member_waited;	/* ROLE: logins that began to wait for a
								 * place in +name */
} RGWindowSlot;

typedef struct RGWindows
{
	int32		last_hour;		/* the latest hour a slot was touched in
								 * (0: never); the windows never go back */
	int32		last_day;
	int16		hour_ix;		/* last_hour % RG_WINDOW_HOURS */
	int16		day_ix;			/* last_day % RG_WINDOW_DAYS */
	RGWindowSlot hours[RG_WINDOW_HOURS];	/* hour h at hours[h % 24] */
	RGWindowSlot days[RG_WINDOW_DAYS];	/* day d at days[d % 31] */
} RGWindows;

/* The counter index: where a key's counter is in the counter array. */
typedef struct RGCounterIndex
{
	RGCounterKey key;			/* [lock] hash key */
	int32		place;			/* [lock] */
} RGCounterIndex;

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
	RG_REAP_SUPERUSER,			/* became a superuser on a denied host */
	RG_REAP_EVICT				/* idle past role_guard.evict_idle, and its
								 * place is wanted by a login */
} RGReapReason;

/*
 * One slot per PGPROC, indexed by procno.  The owning backend fills it at
 * admission and clears it at exit, both under the lock exclusively.  A
 * login waiting for a place (auth.c) fills roleid, groups and datname as at
 * admission, but not pid: it is not admitted.  Its place in line is in
 * RGShared.login_queue's links, outside the slot.
 */
/* The counts a waiting login records as those it waits for a place in. */
#define RG_SLOT_WAIT_FULL 4

typedef struct RGBackend
{
	int			pid;			/* [lock] 0: slot not in use */
	Oid			roleid;			/* [lock] login role */
	bool		walsender;		/* [lock] a replication connection */
	bool		groups_overflow;	/* [lock] the role had more than
									 * RG_SLOT_GROUPS groups */
	int16		ngroups;		/* [lock] used entries of groups[] */
	Oid			groups[RG_SLOT_GROUPS]; /* [lock] its groups at login */
	struct PgBackendStatus *beentry;	/* [lock] core's status entry */
	NameData	datname;		/* [lock] for events */
	Oid			dboid;			/* [lock] its database, InvalidOid for none */
	char		application_name[NAMEDATALEN];	/* [lock] */
	SockAddr	client;			/* [lock] AF_UNIX for the Unix socket */
	bool		in_utility;		/* [owner] a top-level utility statement
								 * runs: COPY FROM STDIN reads from the
								 * client, yet works */
	bool		aborted_block;	/* [owner] in a failed transaction block */
	int32		active_statements;	/* [owner] 1 while a top-level
									 * statement runs */
	uint32		seq;			/* [owner] bumped as each top-level
								 * statement or run starts */
	int64		last_query_id;	/* [owner] query id of the last top-level
								 * statement (0: none known) */
	TimestampTz idle_since;		/* [owner] end of the last work for the
								 * client (or of login): a lower bound of
								 * the idle start */
	bool		deny_at_login;	/* [lock] admitted (monitor mode) although
								 * role_guard.superuser_deny_hosts denies
								 * it: its login reported it already */
	int32		evict_ms;		/* [lock] its role's role_guard.evict_idle
								 * (0: never), set at admission, kept
								 * current by the reaper */
	int			reap_pid;		/* [reaper] the process a request to end is
								 * for (0: none) */
	int			reap_sender;	/* [reaper] who sent it: the reaper, or a
								 * login evicting it */
	uint32		reap_seq;		/* [reaper] seq when it was seen idle */
	int32		reap_reason;	/* [reaper] RGReapReason */
	int32		reap_limit_ms;	/* [reaper] */
	char		reap_detail[256];	/* [reaper] the DETAIL of the event the
									 * session records if it ends */
	uint32		reap_dropped;	/* [owner] requests it dropped, busy again
								 * (the reaper logs each) */
	int16		wait_nfull;		/* [lock] a waiting login: the counts that
								 * had no room for it at a look since it
								 * joined the line, up to RG_SLOT_WAIT_FULL
								 * of them in wait_full[] (more: it waits
								 * in all its counts); it waits for a place
								 * in those, not in its counts that always
								 * had room */
	bool		wait_member[RG_SLOT_WAIT_FULL]; /* [lock] ... a +group's */
	const RGCounter *wait_full[RG_SLOT_WAIT_FULL];	/* [lock] */
} RGBackend;

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

/* Counts kept outside the hash. */
typedef struct RGGlobalStats
{
	RGOutcome	default_rejected;	/* [lock] refusals charged to "*" */
} RGGlobalStats;

/*
 * Reservations as applied (reserve.c): the counters' reserved and
 * member_reserved, and these totals, always from one list.
 */
typedef struct RGReserveState
{
	bool		applied;		/* [lock] a list has been applied */
	uint32		hash;			/* [lock] which list (rg_reservations_hash) */
	uint64		generation;		/* [lock] membership-cache generation it
								 * was resolved under */
	int32		places;			/* [lock] the places of all its entries */
	int32		unbacked;		/* [lock] places of entries that name no
								 * role: kept free for nobody */
	int32		unused;			/* [lock] places reservations keep free now:
								 * unbacked plus, over every counter,
								 * reserved - connections and member_reserved
								 * - member_connections where positive */
	struct RGCounter *first;	/* [lock] the counters with reservations
								 * (never removed while they hold places),
								 * linked by next_reserved */
} RGReserveState;

typedef struct RGShared
{
	LWLock	   *lock;			/* [startup] */
	int			nbackends;		/* [startup] slots in backends[] */
	int			capacity;		/* [startup] most counters the hash holds */
	int32		regular_sessions;	/* [lock] admitted sessions that use a
									 * connection slot (not walsenders) */
	int32		ncounters;		/* [lock] places of the counter array in use */
	int32		free_place;		/* [lock] its first free place, -1: none */
	int32		ndb_counters;	/* [lock] counters of databases and roles
								 * in databases in the table */
	TimestampTz windows_since;	/* [lock] when the windows began (start,
								 * restored file, or role_guard_reset()) */
	RGQueue		login_queue;	/* [lock] logins waiting for a place, in
								 * ticket order (queue.c; .n: how many);
								 * its links, one per slot, follow
								 * backends[] */
	pg_atomic_uint64 policy_hash;	/* [atomic] the postmaster's policy hash
									 * (guc.c), written by it alone */
	RGReserveState reserve;		/* [lock] */
	RGGlobalStats stats;		/* [lock] */
	pg_atomic_uint32 auth_failed_line;	/* [atomic] the source line of core's
										 * failed-authentication report, once
										 * seen (deny.c); 0 until then */
	RGBackend	backends[FLEXIBLE_ARRAY_MEMBER];
} RGShared;

/*
 * The membership cache (members.c).  Validity is one generation number for
 * the whole cache; an entry is valid while its generation equals it.  A
 * role's groups are a run of OIDs in one shared pool, sized for an average
 * of RG_MEMBERS_POOL_AVG groups per entry; when the pool or the hash is
 * full, the cache is emptied and filled again.
 */
#define RG_MEMBERS_CACHED 64	/* most groups a cached role may have */
#define RG_MEMBERS_POOL_AVG 8

typedef struct RGMembersShared
{
	pg_atomic_uint64 generation;	/* [atomic] bumped to invalidate all
									 * role entries */
	pg_atomic_uint64 db_generation; /* [atomic] ... all database entries */
	int			capacity;		/* [startup] role entries the hash holds */
	int			pool_size;		/* [startup] OIDs pool[] holds */
	int			pool_used;		/* [lock] OIDs of pool[] in use */
	Oid			pool[FLEXIBLE_ARRAY_MEMBER];	/* [lock] the entries' groups */
} RGMembersShared;

typedef struct RGRoleEntry
{
	Oid			roleid;			/* [lock] hash key */
	uint64		generation;		/* [lock] valid while equal to the cache's */
	NameData	name;			/* [lock] */
	bool		rolsuper;		/* [lock] */
	bool		rolcreaterole;	/* [lock] */
	int16		ngroups;		/* [lock] -1: groups not known */
	int32		first;			/* [lock] its groups: pool[first ..
								 * first + ngroups - 1] */
} RGRoleEntry;

/*
 * The database cache (members.c): what core checks of a database at login,
 * by name, valid while its generation equals the cache's db_generation.
 */
#define RG_DATABASES_CACHED 128

/* What core checks of a database at login (roles.c reads it). */
typedef struct RGDatabase
{
	Oid			oid;			/* InvalidOid: no such database */
	bool		connectable;	/* exists, is valid, allows connections */
	bool		public_connect; /* PUBLIC has CONNECT on it */
} RGDatabase;

typedef struct RGDatabaseEntry
{
	NameData	datname;		/* [lock] hash key */
	uint64		generation;		/* [lock] */
	RGDatabase	db;				/* [lock] */
} RGDatabaseEntry;

#endif							/* RG_SHMEM_H */
