/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  role_guard's shared state: its size, its creation and its lock.
 *
 * The structs, and the locking rules with what protects each field, are
 * in shmem.h.  This file creates RGShared (the lock, global counts, one
 * RGBackend slot per PGPROC indexed by procno) and the counter hash, and
 * owns the rules for finding, creating, pinning and removing counters: a
 * counter with no session, pin or statistic is removed at once; when the
 * table is full, one with statistics only is evicted.
 *
 * Member counts (the counts +group budgets limit).  A role counter's
 * member_connections is kept only while members_tracked is set, and then
 * equals the number of admitted slots whose login role is that role or
 * lists it among its groups (rg_slot_counts_member), plus the sessions of
 * roles with more than RG_SLOT_GROUPS groups that charged it at login.  A
 * login sets it up (rg_counter_track_members, one pass over the slots) only
 * for a role that a +group entry names, and charges every tracked counter
 * of its role and groups; an exit gives back to the tracked counters of its
 * slot's role and groups.  So counters that no entry checks are neither
 * created nor needed, and an entry added on reload counts the sessions
 * already in exactly.  A tracked counter is removed like any other once its
 * counts are zero and it has no statistics.
 *
 * Database counts (@db and name@db budgets) follow the same idea: such a
 * counter is made only when a login finds an entry that names it, counted
 * from the slots then (rg_slots_in_count), charged by every login while it
 * exists, and given back by every exit whose slot it counts
 * (rg_slot_counter).  RGShared.ndb_counters lets a login and an exit skip
 * the look-ups while there are none, which is the default policy's case.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/backend_status.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "role_guard.h"
#include "savefile.h"
#include "windows.h"


RGShared   *rg_shared = NULL;
RGBackend  *rg_my_slot = NULL;
RGCounter  *rg_my_counter = NULL;
static RGCounter *rg_counters = NULL;	/* the array */
static RGWindows *rg_windows = NULL;	/* its windows, place by place */
static HTAB *rg_counter_index = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Counters: one role, one database and one role-in-database counter per
 * possible session (a counter with sessions is never evicted, so these
 * always fit), plus max_roles for the counters of +group entries and for
 * statistics kept after the sessions left.
 */
int
rg_counter_capacity(void)
{
	return rg_max_roles + 3 * MaxBackends;
}

/* Where the login line's links begin: after the slots, one per slot. */
static Size
rg_login_links_offset(void)
{
	return MAXALIGN(add_size(offsetof(RGShared, backends),
							 mul_size(rg_total_procs(), sizeof(RGBackend))));
}

static Size
rg_shared_size(void)
{
	return add_size(rg_login_links_offset(),
					mul_size(rg_total_procs(), sizeof(RGQueueLink)));
}

static Size
rg_counters_size(void)
{
	return add_size(mul_size(rg_counter_capacity(), sizeof(RGCounter) + sizeof(RGWindows)),
					hash_estimate_size(rg_counter_capacity(), sizeof(RGCounterIndex)));
}

static Size
rg_shmem_size(void)
{
	return add_size(add_size(add_size(rg_shared_size(), rg_counters_size()),
							 add_size(rg_events_shmem_size(), rg_members_shmem_size())),
					add_size(rg_active_shmem_size(), rg_authblock_shmem_size()));
}

static void
rg_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(rg_shmem_size());
	/*
	 * [0]: counters and slots; [1]: the event ring (events.c); [2]: the
	 * login blocks (authblock.c)
	 */
	RequestNamedLWLockTranche("role_guard", 3);
	/* active places (active.c): never held with the others */
	RequestNamedLWLockTranche("role_guard active", 1);
}

static void
rg_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;
	int			capacity = rg_counter_capacity();
	int			place;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rg_shared = ShmemInitStruct("role_guard", rg_shared_size(), &found);
	if (!found)
	{
		memset(rg_shared, 0, rg_shared_size());
		rg_shared->lock = &(GetNamedLWLockTranche("role_guard"))->lock;
		rg_shared->nbackends = rg_total_procs();
		rg_queue_init(&rg_shared->login_queue,
					  (char *) rg_shared + rg_login_links_offset(),
					  sizeof(RGQueueLink), rg_shared->nbackends);
		rg_shared->capacity = capacity;
		pg_atomic_init_u32(&rg_shared->auth_failed_line, 0);
		pg_atomic_init_u64(&rg_shared->policy_hash, 0);
		/* the postmaster's copy of the settings is the one in force */
		if (!IsUnderPostmaster)
			rg_policy_publish();
		rg_shared->windows_since = rg_windows_time(GetCurrentTimestamp());
	}
	rg_counters = ShmemInitStruct("role_guard counters",
								  mul_size(capacity, sizeof(RGCounter)), &found);
	if (!found)
	{
		/* every place free, chained in order */
		memset(rg_counters, 0, mul_size(capacity, sizeof(RGCounter)));
		for (place = 0; place < capacity; place++)
			rg_counters[place].next_free = place + 1 < capacity ? place + 1 : -1;
		rg_shared->free_place = capacity > 0 ? 0 : -1;
	}
	rg_windows = ShmemInitStruct("role_guard windows",
								 mul_size(capacity, sizeof(RGWindows)), &found);
	if (!found)
		memset(rg_windows, 0, mul_size(capacity, sizeof(RGWindows)));
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(RGCounterKey);
	info.entrysize = sizeof(RGCounterIndex);
	/* all entries allocated now: the hash never asks for more */
	rg_counter_index = ShmemInitHash("role_guard counter index", capacity, capacity,
									 &info, HASH_ELEM | HASH_BLOBS);
	rg_events_shmem_init(&(GetNamedLWLockTranche("role_guard"))[1].lock);
	rg_authblock_shmem_init(&(GetNamedLWLockTranche("role_guard"))[2].lock);
	rg_members_shmem_init();
	rg_active_shmem_init(&(GetNamedLWLockTranche("role_guard active"))->lock);
	LWLockRelease(AddinShmemInitLock);
	rg_persist_startup();
}

void
rg_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rg_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rg_shmem_startup;
}

LWLock *
rg_lock(void)
{
	return rg_shared->lock;
}

RGGlobalStats *
rg_global_stats(void)
{
	return &rg_shared->stats;
}

/*
 * The counter at a place of the array (key.kind 0: none there).  For the
 * views, which copy the array a part at a time under the lock.
 */
const RGCounter *
rg_counter_at(int place)
{
	return &rg_counters[place];
}

/* A counter's windows (windows.c): the same place of the parallel array. */
RGWindows *
rg_counter_windows(const RGCounter *c)
{
	return &rg_windows[c - rg_counters];
}

int
rg_backend_count(void)
{
	return rg_shared->nbackends;
}

RGBackend *
rg_backend(int procno)
{
	Assert(procno >= 0 && procno < rg_shared->nbackends);
	return &rg_shared->backends[procno];
}

/*
 * A session's state, read without a lock, and when it is idle, when its
 * wait for the client began.
 *
 * Idle or not comes from the PGPROC: core marks a backend that waits to
 * read from its client with the ClientRead wait event whatever
 * track_activities says, so a session cannot hide from it; a top-level
 * utility statement that reads from the client (COPY FROM STDIN) is busy
 * (in_utility, executor.c).  In a transaction if the PGPROC has one open,
 * or the transaction block has failed.
 *
 * The idle start is the latest of what is known to precede the wait:
 *	- core's own record in the backend's status entry: when the backend
 *	  reports itself idle (or idle in transaction) right before it tells its
 *	  client it is ready for the next command, it stamps
 *	  st_state_start_timestamp; that is exact, whatever the statement did
 *	  inside (functions, cursors, portals, triggers, extended protocol).
 *	  A session with track_activities off (only a superuser may do that)
 *	  reports STATE_DISABLED instead, and one between Execute and Sync of
 *	  the extended protocol still shows "active": for those
 *	  the slot's idle_since, which executor.c moves to the end of every
 *	  top-level piece of work it sees (the reaper also takes the last
 *	  moment it saw the session busy).
 */
RGBackendState
rg_backend_state(int procno, const RGBackend *slot, TimestampTz *idle_start)
{
	PGPROC	   *proc = GetPGProcByNumber(procno);
	uint32		wait_event = *((volatile uint32 *) &proc->wait_event_info);
	int			pid = slot->pid;
	PgBackendStatus *be = slot->beentry;
	TimestampTz since = slot->idle_since;
	RGBackendState state;

	if (wait_event != WAIT_EVENT_CLIENT_READ || slot->in_utility)
		return RG_STATE_ACTIVE;
	if (RG_PROC_LXID(proc) != InvalidLocalTransactionId || slot->aborted_block)
		state = RG_STATE_IDLE_IN_TRANSACTION;
	else
		state = RG_STATE_IDLE;
	if (idle_start == NULL)
		return state;

	if (be != NULL)
	{
		int			attempts;

		/* core's read protocol for a status entry (backend_status.h) */
		for (attempts = 0; attempts < 100; attempts++)
		{
			int			before;
			int			after;
			int			be_pid;
			BackendState be_state;
			TimestampTz be_since;

			pgstat_begin_read_activity(be, before);
			be_pid = be->st_procpid;
			be_state = be->st_state;
			be_since = be->st_state_start_timestamp;
			pgstat_end_read_activity(be, after);
			if (!pgstat_read_activity_complete(before, after))
			{
				CHECK_FOR_INTERRUPTS();
				continue;
			}
			if (be_pid == pid &&
				(be_state == STATE_IDLE ||
				 be_state == STATE_IDLEINTRANSACTION ||
				 be_state == STATE_IDLEINTRANSACTION_ABORTED) &&
				be_since > since)
				since = be_since;
			break;
		}
	}
	*idle_start = since;
	return state;
}

/* Does a slot's session count toward roleid's member count? */
bool
rg_slot_counts_member(const RGBackend *slot, Oid roleid)
{
	int			i;

	if (slot->roleid == roleid)
		return true;
	for (i = 0; i < slot->ngroups; i++)
		if (slot->groups[i] == roleid)
			return true;
	return false;
}

/*
 * The admitted sessions a counter's count (or member count) covers, from
 * the slots: how a count that starts being kept begins.  O(slots).  Lock
 * held.
 */
static int32
rg_slots_in_count(const RGCounter *c, bool member)
{
	int			procno;
	int32		n = 0;

	for (procno = 0; procno < rg_shared->nbackends; procno++)
	{
		const RGBackend *slot = &rg_shared->backends[procno];

		if (slot->pid != 0 && rg_slot_in_count(slot, c, member))
			n++;
	}
	return n;
}

/*
 * Start keeping a role counter's member count: count the admitted
 * sessions that are members of it.  Caller holds the lock exclusively.
 */
void
rg_counter_track_members(RGCounter *counter)
{
	Assert(counter->key.kind == RG_COUNTER_ROLE);
	if (counter->members_tracked)
		return;
	rg_counter_set(counter, true, rg_slots_in_count(counter, true));
	counter->members_tracked = true;
}

/* Places a count leaves unused of what is reserved for it. */
static inline int32
rg_unused(int32 reserved, int32 count)
{
	return reserved > count ? reserved - count : 0;
}

/*
 * Set a counter's connections (or, "member", its member count), keeping
 * the places reservations keep free in step: every change of a count goes
 * through here or rg_counter_add.  Lock held exclusively.
 */
void
rg_counter_set(RGCounter *c, bool member, int32 value)
{
	int32	   *count = member ? &c->member_connections : &c->connections;
	int32		reserved = member ? c->member_reserved : c->reserved;

	rg_shared->reserve.unused += rg_unused(reserved, value) - rg_unused(reserved, *count);
	rg_windows_note(&rg_windows[c - rg_counters], c, member, *count, value);
	*count = value;
	if (!member && c->key.kind == RG_COUNTER_ROLE && value > c->stats.peak)
		c->stats.peak = value;
}

/* Add delta (+1 or -1) to a count: see rg_counter_set. */
void
rg_counter_add(RGCounter *c, bool member, int delta)
{
	rg_counter_set(c, member, (member ? c->member_connections : c->connections) + delta);
}

/* Set a counter's reservation (or member reservation), as rg_counter_set. */
void
rg_counter_reserve(RGCounter *c, bool member, int32 places)
{
	int32	   *reserved = member ? &c->member_reserved : &c->reserved;
	int32		count = member ? c->member_connections : c->connections;

	rg_shared->reserve.unused += rg_unused(places, count) - rg_unused(*reserved, count);
	*reserved = places;
}

/*
 * Is a slot's session (or waiting login) in this count of this counter:
 * does it charge it, or would its admission?  Lock held.
 */
bool
rg_slot_in_count(const RGBackend *slot, const RGCounter *c, bool member)
{
	switch ((RGCounterKind) c->key.kind)
	{
		case RG_COUNTER_ROLE:
			return member ? rg_slot_counts_member(slot, c->key.roleid) :
				slot->roleid == c->key.roleid;
		case RG_COUNTER_DB:
			return slot->dboid == c->key.dboid;
		case RG_COUNTER_ROLEDB:
			return slot->roleid == c->key.roleid && slot->dboid == c->key.dboid;
	}
	return false;
}

/*
 * Does a waiting login wait for a place in this count: one that had no
 * room for it at its last look?  A login that waits for its own role's
 * entry holds back no place of a +group or @db entry with room.  Lock held.
 */
static bool
rg_slot_waits_for(const RGBackend *slot, const RGCounter *c, bool member)
{
	int			i;

	if (slot->wait_nfull > RG_SLOT_WAIT_FULL)
		return true;
	for (i = 0; i < slot->wait_nfull; i++)
		if (slot->wait_full[i] == c && slot->wait_member[i] == member)
			return true;
	return false;
}

/*
 * How many logins that came before "ticket" (0: a login that does not
 * wait, after them all) wait for a place in this count: a walk of the
 * login line up to that ticket, O(the waiters ahead).  Lock held.
 */
int
rg_waiters_ahead(const RGCounter *c, bool member, uint64 ticket)
{
	const RGQueue *q = &rg_shared->login_queue;
	int			procno;
	int			n = 0;

	for (procno = rg_queue_first(q); procno >= 0; procno = rg_queue_next(q, procno))
	{
		if (ticket != 0 && rg_queue_link(q, procno)->ticket >= ticket)
			break;				/* the line is in ticket order */
		if (rg_slot_in_count(&rg_shared->backends[procno], c, member) &&
			rg_slot_waits_for(&rg_shared->backends[procno], c, member))
			n++;
	}
	return n;
}

/*
 * A place may have freed: every login in line looks again (each decides
 * for itself, under the lock).  O(the waiters).  Lock held.
 */
void
rg_wake_waiters(void)
{
	const RGQueue *q = &rg_shared->login_queue;
	int			procno;

	for (procno = rg_queue_first(q); procno >= 0; procno = rg_queue_next(q, procno))
		rg_queue_wake(procno);
}

static void
rg_counter_key(RGCounterKey *key, RGCounterKind kind, Oid roleid, Oid dboid)
{
	memset(key, 0, sizeof(*key));
	key->kind = kind;
	key->roleid = roleid;
	key->dboid = dboid;
}

/* Look a counter up.  Caller holds the lock (shared is enough). */
RGCounter *
rg_counter_find(RGCounterKind kind, Oid roleid, Oid dboid)
{
	RGCounterKey key;
	RGCounterIndex *ix;

	rg_counter_key(&key, kind, roleid, dboid);
	ix = (RGCounterIndex *) hash_search(rg_counter_index, &key, HASH_FIND, NULL);
	return ix ? &rg_counters[ix->place] : NULL;
}

static bool
rg_counter_unused(const RGCounter *c)
{
	static const RGCounterStats zero;

	/*
	 * A kept member count stays, even at zero: re-counting it costs a pass
	 * over the slots, and the +group entry that wanted it will want it again
	 * at the next login.  Only a full table evicts it.
	 */
	return !c->members_tracked &&
		c->pins == 0 && c->connections == 0 && c->member_connections == 0 &&
		c->reserved == 0 && c->member_reserved == 0 && c->waiting == 0 &&
		memcmp(&c->stats, &zero, sizeof(zero)) == 0 &&
		pg_atomic_read_u64((pg_atomic_uint64 *) &c->statements) == 0 &&
		rg_windows_empty(&rg_windows[c - rg_counters]);
}

/* Remove a counter from the table.  Lock held exclusively. */
static void
rg_counter_remove(RGCounter *c)
{
	if (c->key.kind != RG_COUNTER_ROLE)
		rg_shared->ndb_counters--;
	hash_search(rg_counter_index, &c->key, HASH_REMOVE, NULL);
	memset(c, 0, sizeof(*c));
	memset(&rg_windows[c - rg_counters], 0, sizeof(RGWindows));
	c->next_free = rg_shared->free_place;
	rg_shared->free_place = c - rg_counters;
	rg_shared->ncounters--;
}

/*
 * The kept count of a slot's database (RG_COUNTER_DB) or of its role in it
 * (RG_COUNTER_ROLEDB), or NULL: no entry has wanted it since it was last
 * empty.  Lock held.
 */
RGCounter *
rg_slot_counter(const RGBackend *slot, RGCounterKind kind)
{
	if (rg_shared->ndb_counters == 0 || !OidIsValid(slot->dboid))
		return NULL;
	return rg_counter_find(kind, kind == RG_COUNTER_DB ? InvalidOid : slot->roleid,
						   slot->dboid);
}

/*
 * Make room by dropping one counter that has statistics (or a kept member
 * count) but no session.  A counter that holds nothing at all is one a
 * login is creating right now
 * (others are removed as soon as they empty): it is never the victim.
 */
static bool
rg_counter_evict(void)
{
	int			place;

	for (place = 0; place < rg_shared->capacity; place++)
	{
		RGCounter  *c = &rg_counters[place];

		if (c->key.kind != 0 &&
			c->connections == 0 && c->member_connections == 0 &&
			c->reserved == 0 && c->member_reserved == 0 && c->waiting == 0 &&
			c->pins == 0 && !rg_counter_unused(c))
		{
			rg_counter_remove(c);
			return true;
		}
	}
	return false;
}

/*
 * Find or create a counter, and pin it: a login that needs several
 * counters pins each one it gets, so that making room for the next cannot
 * evict it; it unpins them all (rg_counter_unpin) before it lets the lock
 * go.  Caller holds the lock exclusively.  Returns NULL, without erroring,
 * when the table is full of counters with sessions or pins.
 */
RGCounter *
rg_counter_enter(RGCounterKind kind, Oid roleid, Oid dboid)
{
	RGCounterKey key;
	RGCounterIndex *ix;
	RGCounter  *c;
	bool		found;

	rg_counter_key(&key, kind, roleid, dboid);
	ix = (RGCounterIndex *) hash_search(rg_counter_index, &key, HASH_FIND, NULL);
	if (ix == NULL)
	{
		if (rg_shared->free_place < 0 && !rg_counter_evict())
			return NULL;
		ix = (RGCounterIndex *) hash_search(rg_counter_index, &key,
											HASH_ENTER_NULL, &found);
		if (ix == NULL)
			return NULL;
		ix->place = rg_shared->free_place;
		c = &rg_counters[ix->place];
		rg_shared->free_place = c->next_free;
		rg_shared->ncounters++;
		memset(c, 0, sizeof(*c));
		c->key = key;
		c->next_free = -1;
		pg_atomic_init_u64(&c->statements, 0);
		if (kind != RG_COUNTER_ROLE)
		{
			/* a database count begins with the sessions already in */
			c->connections = rg_slots_in_count(c, false);
			rg_shared->ndb_counters++;
		}
	}
	else
		c = &rg_counters[ix->place];
	c->pins++;
	return c;
}

/* Unpin a counter from rg_counter_enter, dropping it if it holds nothing. */
void
rg_counter_unpin(RGCounter *counter)
{
	if (counter == NULL)
		return;
	Assert(counter->pins > 0);
	counter->pins--;
	rg_counter_forget_if_unused(counter);
}

/*
 * Drop a counter that holds nothing.  Caller holds the lock exclusively.
 * A counter dropped already (a place left free, key.kind 0) is left alone:
 * a caller may name one twice.
 */
void
rg_counter_forget_if_unused(RGCounter *counter)
{
	if (counter != NULL && counter->key.kind != 0 && rg_counter_unused(counter))
		rg_counter_remove(counter);
}

/*
 * role_guard_reset(): clear statistics, set peaks to the present, drop
 * counters left with nothing.  Takes the lock itself.
 */
void
rg_counters_reset(void)
{
	int			place;

	LWLockAcquire(rg_shared->lock, LW_EXCLUSIVE);
	for (place = 0; place < rg_shared->capacity; place++)
	{
		RGCounter  *c = &rg_counters[place];

		if (c->key.kind == 0)
			continue;
		memset(&c->stats, 0, sizeof(c->stats));
		memset(&rg_windows[place], 0, sizeof(RGWindows));
		if (c->key.kind == RG_COUNTER_ROLE)
			c->stats.peak = c->connections;
		pg_atomic_write_u64(&c->statements, 0);
		rg_counter_forget_if_unused(c);
	}
	memset(&rg_shared->stats, 0, sizeof(rg_shared->stats));
	rg_shared->windows_since = rg_windows_time(GetCurrentTimestamp());
	LWLockRelease(rg_shared->lock);
}

/*
 * A counter as the save file keeps it (persist.c): false for a free place
 * or a counter with nothing worth keeping (no statistics, windows or
 * statements; sessions and pins are not kept).  At shutdown, no lock.
 */
bool
rg_counter_save(int place, RGSavedCounter *out)
{
	static const RGCounterStats zero;
	const RGCounter *c = &rg_counters[place];
	uint64		statements;

	if (c->key.kind == 0)
		return false;
	statements = pg_atomic_read_u64((pg_atomic_uint64 *) &c->statements);
	if (memcmp(&c->stats, &zero, sizeof(zero)) == 0 && statements == 0 &&
		rg_windows_empty(&rg_windows[place]))
		return false;
	memset(out, 0, sizeof(*out));
	out->key = c->key;
	out->rolname = c->rolname;
	out->rolsuper = c->rolsuper;
	out->stats = c->stats;
	out->statements = statements;
	out->windows = rg_windows[place];
	return true;
}

/*
 * Put back a saved counter, with no sessions (persist.c, at start, before
 * any other process exists: no lock).  False when the table is full or
 * holds the key already.
 */
bool
rg_counter_restore(const RGSavedCounter *saved)
{
	RGCounterIndex *ix;
	RGCounter  *c;
	bool		found;

	if (rg_shared->free_place < 0)
		return false;
	ix = (RGCounterIndex *) hash_search(rg_counter_index, &saved->key,
										HASH_ENTER_NULL, &found);
	if (ix == NULL || found)
		return false;
	ix->place = rg_shared->free_place;
	c = &rg_counters[ix->place];
	rg_shared->free_place = c->next_free;
	rg_shared->ncounters++;
	memset(c, 0, sizeof(*c));
	c->key = saved->key;
	c->next_free = -1;
	c->rolname = saved->rolname;
	c->rolsuper = saved->rolsuper;
	c->stats = saved->stats;
	pg_atomic_init_u64(&c->statements, saved->statements);
	rg_windows[ix->place] = saved->windows;
	if (c->key.kind != RG_COUNTER_ROLE)
		rg_shared->ndb_counters++;
	return true;
}

/* For SQL-callable functions: error out cleanly if shared memory is missing. */
void
rg_require_loaded(void)
{
	if (rg_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("role_guard must be loaded via shared_preload_libraries"),
				 errhint("Add role_guard to shared_preload_libraries in postgresql.conf and restart the server.")));
}
