/*-------------------------------------------------------------------------
 *
 * active.c
 *	  Active budgets (role_guard.active_budgets): at most N transactions in
 *	  progress per role, +group, @db and name@db entry, with a FIFO wait
 *	  (role_guard.active_waits) and a refusal, SQLSTATE 53400.
 *
 * A session takes an active place at the first statement of a transaction
 * that does real work (the executor and utility hooks call rg_active_take,
 * executor.c decides which statements count) and gives it back when the
 * transaction ends by any path, once its locks are released:
 * rg_active_release_after_locks, a resource-release callback, at commit,
 * abort and PREPARE TRANSACTION, and so also at a FATAL or a plain exit
 * (ShutdownPostgres aborts the transaction; rg_active_exit_unref, at
 * on_shmem_exit, gives back anything left).  rg_active_xact_end, from the
 * transaction callback, lets the next transaction take a place.  A
 * crash-restart makes shared memory anew.
 *
 * Counts.  Each entry that applies to a session limits one count, kept in
 * an RGActiveCount found by key (rg_active_key is the one rule that says
 * which count an entry limits): name= and * the role's own transactions,
 * +group the transactions of the group and its members, @db the
 * database's, name@db the role's in that database.  A session resolves the
 * counts that apply to it once (again after a reload or a change of roles)
 * and holds a reference on each (refs), so a count with sessions is never
 * removed; the place is then one pass over those few counts under the lock.
 *
 * Waiting.  A statement that finds no room takes a ticket and joins one
 * line of waiters in ticket order (RGActiveShared.queue: queue.c, the one
 * way of waiting that logins use too).  Places are not
 * fought over: whoever frees one (a transaction's end, a waiter leaving,
 * a new limit) walks the list under the lock (rg_active_grant) and gives
 * places to the waiters that fit, in ticket order, counting in each count
 * the earlier waiters that did not fit (a later statement never takes a
 * place an earlier one waits for, whatever their roles); it then sets the
 * granted waiters' latches.  A waiter sleeps on its latch (and its client's
 * socket; rg_queue_sleep) with the wait event RoleGuardActiveWait, so it is interruptible
 * by statement_timeout, pg_cancel_backend, pg_terminate_backend, postmaster
 * death and a client that goes away; whatever way it leaves, the abort or
 * exit path takes it off the list (and gives back a place granted in the
 * meantime).
 *
 * Locking.  The counts and the waiter list have their own LWLock (tranche
 * "role_guard active"), never held with the counters' lock: taking and
 * giving back a place never holds up a login.  [active] below: read and
 * written under it exclusively (the views read held and waiting of the
 * per-process records without it, a snapshot that may be a moment old).
 * Nothing under it errors or allocates (HASH_ENTER_NULL).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/dest.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "inject.h"
#include "queue.h"
#include "role_guard.h"
#include "savefile.h"

/* The counts one session's place may be in: role, its +group entries, @db, name@db. */
#define RG_ACTIVE_COUNTS (RG_SLOT_GROUPS + 4)

typedef struct RGActiveKey
{
	uint32		kind;			/* RGActiveKind */
	Oid			roleid;			/* the role, or the +group's role */
	Oid			dboid;
} RGActiveKey;

struct RGActiveCount
{
	RGActiveKey key;			/* hash key */
	int32		kind;			/* [active] RGEntryKind of the entry */
	int32		limit;			/* [active] its value as last resolved */
	int32		held;			/* [active] places held */
	int32		waiting;		/* [active] statements waiting for one */
	int32		refs;			/* [active] sessions that resolved it */
	int32		peak;			/* [active] most held since rg_active_fold
								 * last took it into the windows */
	uint64		pass;			/* [active] rg_active_grant's walk ... */
	int32		ahead;			/* [active] ... and its earlier waiters */
	uint64		full_pass;		/* [active] the walk that found it full */
	char		entry[RG_ENTRY_TEXT_LEN];	/* [active] as the views show it */
	RGActiveStats stats;		/* [active] */
};

/* One per PGPROC: its place and, while it waits, its line. */
typedef struct RGActiveProc
{
	bool		held;			/* [active] holds a place */
	bool		granted;		/* a waiter given its place: [active] while
								 * in line, then its own process's alone
								 * (rg_active_sleep reads it and
								 * rg_active_served clears it without the
								 * lock) */
	RGQueueLink link;			/* [active] its place in line */
	uint64		ticket;			/* [active] its ticket, kept when the walk
								 * takes it out of line */
	TimestampTz granted_at;		/* as granted: when it was given its place */
	int32		ncounts;		/* [active] */
	RGActiveCount *counts[RG_ACTIVE_COUNTS];	/* [active] */
	bool		waits_for[RG_ACTIVE_COUNTS];	/* [active] counts[i] was full
												 * for it at a walk since it
												 * joined the line: it waits
												 * for a place there (kept
												 * for the whole wait) */
} RGActiveProc;

typedef struct RGActiveShared
{
	LWLock	   *lock;			/* [startup] */
	int			nprocs;			/* [startup] */
	uint64		pass;			/* [active] rg_active_grant's walks */
	int32		waited_counts;	/* [active] counts with waiting > 0 */
	RGQueue		queue;			/* [active] the waiters, in ticket order */
	RGActiveProc procs[FLEXIBLE_ARRAY_MEMBER];
} RGActiveShared;

static RGActiveShared *rg_active = NULL;

/*
 * Waiters this process granted a place under the lock, woken once it is let
 * go (rg_active_unlock): setting a latch may be a system call, not to be
 * made with the lock held.  Allocated before the first lock (rg_active_take);
 * without it, a grant wakes at once.
 */
static int *my_woken = NULL;
static int	my_nwoken = 0;
static HTAB *rg_active_counts = NULL;

/* Set while a transaction may still have to take a place: see executor.c. */
bool		rg_active_need = false;
/* Bumped by the assign hooks of active_budgets and active_waits. */
static uint64 rg_active_generation = 1;
/* active_budgets has an entry: each transaction may have to take a place */
static bool rg_active_configured = false;

/* What this session resolved (backend-local). */
static struct
{
	uint64		generation;		/* rg_active_generation resolved under */
	uint64		members;		/* membership-cache generation */
	bool		resolved;
	bool		exempt;			/* superuser over the Unix socket */
	int32		wait_ms;		/* role_guard.active_waits, -1: no limit */
	int			ncounts;
	RGActiveCount *counts[RG_ACTIVE_COUNTS];
	bool		held;			/* this transaction holds a place */
	bool		waiting;		/* ... waits for one */
	bool		pinned;			/* held through a utility statement's own
								 * commits, to its end (rg_active_pin) */
	bool		exit_registered;
} my;

/* The entry of a refusal, as the message shows it. */
typedef struct RGActiveFull
{
	RGActiveCount *count;		/* its count (this session holds a reference) */
	int32		kind;
	char		entry[RG_ENTRY_TEXT_LEN];
	int32		limit;
	int32		used;
	int32		waiting;		/* earlier statements in line for it, when
								 * they, not the places held, fill it */
} RGActiveFull;

static void rg_active_exit(int code, Datum arg);
static void rg_active_exit_unref(int code, Datum arg);
static void rg_active_release_after_locks(ResourceReleasePhase phase,
										  bool isCommit, bool isTopLevel,
										  void *arg);
static void rg_active_unwait(RGActiveProc *w);
static void rg_active_wait_in(RGActiveProc *w);

/* Shared memory ---------------------------------------------------------- */

static int
rg_active_capacity(void)
{
	return rg_counter_capacity();
}

Size
rg_active_shmem_size(void)
{
	return add_size(add_size(offsetof(RGActiveShared, procs),
							 mul_size(rg_total_procs(), sizeof(RGActiveProc))),
					hash_estimate_size(rg_active_capacity(), sizeof(RGActiveCount)));
}

/* Called from shmem.c's startup hook, AddinShmemInitLock held. */
void
rg_active_shmem_init(LWLock *lock)
{
	bool		found;
	HASHCTL		info;
	Size		size = add_size(offsetof(RGActiveShared, procs),
								mul_size(rg_total_procs(), sizeof(RGActiveProc)));

	rg_active = ShmemInitStruct("role_guard active", size, &found);
	if (!found)
	{
		memset(rg_active, 0, size);
		rg_active->lock = lock;
		rg_active->nprocs = rg_total_procs();
		rg_queue_init(&rg_active->queue, &rg_active->procs[0].link,
					  sizeof(RGActiveProc), rg_active->nprocs);
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(RGActiveKey);
	info.entrysize = sizeof(RGActiveCount);
	rg_active_counts = ShmemInitHash("role_guard active counts",
									 rg_active_capacity(), rg_active_capacity(),
									 &info, HASH_ELEM | HASH_BLOBS);
}

/* The one rule: the count an entry limits, for a session. */
static void
rg_active_key(RGActiveKey *key, const RGEntry *e, Oid roleid, Oid groupid,
			  Oid dboid)
{
	memset(key, 0, sizeof(*key));
	key->kind = e->kind == RG_ENTRY_DEFAULT ? RG_ENTRY_ROLE : e->kind;
	switch ((RGEntryKind) e->kind)
	{
		case RG_ENTRY_ROLE:
		case RG_ENTRY_DEFAULT:
			key->roleid = roleid;
			break;
		case RG_ENTRY_GROUP:
			key->roleid = groupid;
			break;
		case RG_ENTRY_DATABASE:
			key->dboid = dboid;
			break;
		case RG_ENTRY_ROLE_DATABASE:
			key->roleid = roleid;
			key->dboid = dboid;
			break;
	}
}

/*
 * Nothing to keep: no session, place or waiter, no statistics, and no peak
 * the windows have not taken yet (rg_active_fold).
 */
static bool
rg_active_count_unused(const RGActiveCount *c)
{
	static const RGActiveStats zero;

	return c->refs == 0 && c->held == 0 && c->waiting == 0 && c->peak == 0 &&
		memcmp(&c->stats, &zero, sizeof(zero)) == 0;
}

/* One more place held in a count.  Lock held. */
static inline void
rg_active_hold(RGActiveCount *c)
{
	c->held++;
	if (c->held > c->peak)
		c->peak = c->held;
}

/* A peak taken from a count, for the windows. */
typedef struct RGActivePeak
{
	RGActiveKey key;
	int32		peak;
} RGActivePeak;

/*
 * Take the counts' peaks into the windows (windows.c) of the counters
 * that keep the same entries' session counts: name= and * the role's,
 * +group the group's (as its member peak), @db the database's, name@db the
 * role-in-database's, where that counter exists (a role's does from its
 * first login on; a group's or database's only when its session count is
 * kept).  Each count's peak is then what it holds now, so the
 * next hour starts from it; a count left with nothing to keep goes.
 *
 * The active lock and then the counters' lock, never both: the peaks are
 * copied out first.  Called by the reaper at every scan, by the views
 * before they read the windows, and by the postmaster at a clean shutdown
 * before the file is written (every other process gone: no lock).  O(the
 * counts); never on a login's or a statement's path.
 */
void
rg_active_fold(void)
{
	static RGActivePeak *peaks = NULL;
	bool		locks = IsUnderPostmaster;
	int			capacity = rg_active_capacity();
	HASH_SEQ_STATUS status;
	RGActiveCount *c;
	int			n = 0;
	int			i;

	if (rg_active == NULL || hash_get_num_entries(rg_active_counts) == 0)
		return;
	if (peaks == NULL)
		peaks = MemoryContextAlloc(TopMemoryContext,
								   sizeof(RGActivePeak) * capacity);
	if (locks)
		LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
	hash_seq_init(&status, rg_active_counts);
	while ((c = hash_seq_search(&status)) != NULL)
	{
		if (c->peak > 0 && n < capacity)
		{
			peaks[n].key = c->key;
			peaks[n++].peak = c->peak;
			c->peak = c->held;
		}
		if (rg_active_count_unused(c))
			hash_search(rg_active_counts, &c->key, HASH_REMOVE, NULL);
	}
	if (locks)
		LWLockRelease(rg_active->lock);
	if (n == 0)
		return;

	rg_windows_clock(GetCurrentTimestamp());
	if (locks)
		LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
	{
		const RGActiveKey *k = &peaks[i].key;
		RGCounter  *counter;

		/*
		 * Only counters that exist: one made here would not be charged by a
		 * login already past its counters (a waiting one), and its exit
		 * would then take one too many off it.
		 */
		switch ((RGEntryKind) k->kind)
		{
			case RG_ENTRY_DATABASE:
				counter = rg_counter_find(RG_COUNTER_DB, InvalidOid, k->dboid);
				break;
			case RG_ENTRY_ROLE_DATABASE:
				counter = rg_counter_find(RG_COUNTER_ROLEDB, k->roleid, k->dboid);
				break;
			default:
				counter = rg_counter_find(RG_COUNTER_ROLE, k->roleid, InvalidOid);
				break;
		}
		if (counter != NULL)
			rg_windows_active_peak(counter, k->kind == RG_ENTRY_GROUP,
								   peaks[i].peak);
	}
	if (locks)
		LWLockRelease(rg_lock());
}

/*
 * The save file (persist.c): the postmaster at a clean shutdown writes the
 * counts that hold statistics and reads them back at the next start, every
 * other process gone or not yet there (no lock).  Places, waiters and
 * references do not survive; a count read back is kept while its entry
 * stays the same (rg_active_enter starts it again under another).
 */
int
rg_active_each_saved(bool (*emit) (const struct RGSavedActive *a, void *arg),
					 void *arg)
{
	static const RGActiveStats zero;
	HASH_SEQ_STATUS status;
	RGActiveCount *c;
	RGSavedActive a;
	int			n = 0;

	if (rg_active == NULL)
		return 0;
	hash_seq_init(&status, rg_active_counts);
	while ((c = hash_seq_search(&status)) != NULL)
	{
		if (memcmp(&c->stats, &zero, sizeof(zero)) == 0)
			continue;
		memset(&a, 0, sizeof(a));
		a.kind = c->key.kind;
		a.roleid = c->key.roleid;
		a.dboid = c->key.dboid;
		a.entry_kind = c->kind;
		strlcpy(a.entry, c->entry, sizeof(a.entry));
		a.stats = c->stats;
		if (!emit(&a, arg))
		{
			hash_seq_term(&status);
			return -1;
		}
		n++;
	}
	return n;
}

/*
 * A count read back from the file.  False: the table is full (the file was
 * written with a larger role_guard.max_roles or max_connections: the hash
 * could still grow into spare shared memory, but the views and the windows
 * read no more than its capacity), or the count is there already.
 */
bool
rg_active_restore(const RGSavedActive *saved)
{
	RGActiveKey key;
	RGActiveCount *c;
	bool		found;

	if (hash_get_num_entries(rg_active_counts) >= rg_active_capacity())
		return false;
	memset(&key, 0, sizeof(key));
	key.kind = saved->kind;
	key.roleid = saved->roleid;
	key.dboid = saved->dboid;
	c = hash_search(rg_active_counts, &key, HASH_ENTER_NULL, &found);
	if (c == NULL || found)
		return false;
	memset((char *) c + sizeof(RGActiveKey), 0,
		   sizeof(RGActiveCount) - sizeof(RGActiveKey));
	c->kind = saved->entry_kind;
	strlcpy(c->entry, saved->entry, sizeof(c->entry));
	c->stats = saved->stats;
	return true;
}

/* Make room: drop a count that no session uses (statistics only). */
static bool
rg_active_evict(void)
{
	HASH_SEQ_STATUS status;
	RGActiveCount *c;

	hash_seq_init(&status, rg_active_counts);
	while ((c = hash_seq_search(&status)) != NULL)
	{
		if (c->refs == 0 && c->held == 0 && c->waiting == 0)
		{
			hash_seq_term(&status);
			hash_search(rg_active_counts, &c->key, HASH_REMOVE, NULL);
			return true;
		}
	}
	return false;
}

/* Find or make a count, and reference it.  Lock held.  NULL: table full. */
static RGActiveCount *
rg_active_enter(const RGActiveKey *key, const RGEntry *e)
{
	RGActiveCount *c;
	bool		found;
	char		entry[RG_ENTRY_TEXT_LEN];

	c = hash_search(rg_active_counts, key, HASH_FIND, NULL);
	if (c == NULL)
	{
		c = hash_search(rg_active_counts, key, HASH_ENTER_NULL, &found);
		if (c == NULL && rg_active_evict())
			c = hash_search(rg_active_counts, key, HASH_ENTER_NULL, &found);
		if (c == NULL)
			return NULL;
		memset((char *) c + sizeof(RGActiveKey), 0,
			   sizeof(RGActiveCount) - sizeof(RGActiveKey));
	}
	rg_entry_format(e, entry, sizeof(entry));
	if (c->kind != e->kind || strcmp(c->entry, entry) != 0)
	{
		/* the role's own count, limited now by "*" or its own entry */
		static const RGActiveStats zero;

		c->stats = zero;
		c->kind = e->kind;
		strlcpy(c->entry, entry, sizeof(c->entry));
	}
	c->limit = e->value;
	c->refs++;
	return c;
}

/* Drop this session's references.  Lock held. */
static void
rg_active_unref(void)
{
	int			i;

	for (i = 0; i < my.ncounts; i++)
	{
		RGActiveCount *c = my.counts[i];

		c->refs--;
		if (rg_active_count_unused(c))
			hash_search(rg_active_counts, &c->key, HASH_REMOVE, NULL);
	}
	my.ncounts = 0;
}

/* Let the lock go, then wake the waiters granted a place under it. */
static void
rg_active_unlock(void)
{
	int			n = my_nwoken;

	my_nwoken = 0;
	LWLockRelease(rg_active->lock);
	while (n > 0)
		rg_queue_wake(my_woken[--n]);
}

/* The waiter list --------------------------------------------------------- */

static void
rg_active_unlink(int procno)
{
	rg_queue_leave(&rg_active->queue, procno);
	rg_active_unwait(&rg_active->procs[procno]);
}

/* A waiter's counts, waited in: one waiter fewer in each.  Lock held. */
static void
rg_active_unwait(RGActiveProc *w)
{
	int			i;

	for (i = 0; i < w->ncounts; i++)
	{
		if (--w->counts[i]->waiting == 0)
			rg_active->waited_counts--;
	}
	w->ncounts = 0;
}

/* ... and this session's counts, waited in by its process.  Lock held. */
static void
rg_active_wait_in(RGActiveProc *w)
{
	int			i;

	w->ncounts = my.ncounts;
	for (i = 0; i < my.ncounts; i++)
	{
		w->counts[i] = my.counts[i];
		w->waits_for[i] = false;
		if (my.counts[i]->waiting++ == 0)
			rg_active->waited_counts++;
	}
}

/* Earlier waiters in this count that the current walk could not serve. */
static inline int32
rg_active_ahead(const RGActiveCount *c, uint64 pass)
{
	return c->pass == pass ? c->ahead : 0;
}

/*
 * Give places to the waiters that fit, in ticket order: a waiter fits when
 * each of its counts has room after the earlier waiters that did not fit
 * and wait for a place in that count (one that was full for them).  Lock
 * held exclusively.  Sets the latches of those served.  The counts' "ahead"
 * of this walk's pass stay until the next walk, which every change of the
 * line and every place given back makes: a new statement fits when each
 * of its counts has room after them (rg_active_fits).
 *
 * A count found full stays full for the rest of the walk (the walk only
 * takes places, and only adds waiters ahead), so none of its later waiters
 * can fit; once every count that has waiters is found full, no later
 * waiter can, and the walk stops: a release behind a long line of one
 * full count looks at one waiter, not at all of them.
 */
static void
rg_active_grant(void)
{
	uint64		pass;
	int			procno;
	int32		full = 0;		/* counts with waiters found full */

	/* a new pass even with no one in line: no count keeps an old "ahead" */
	pass = ++rg_active->pass;
	if (rg_active->queue.n == 0)
		return;
	for (procno = rg_queue_first(&rg_active->queue); procno >= 0;)
	{
		RGActiveProc *w = &rg_active->procs[procno];
		int			next = rg_queue_next(&rg_active->queue, procno);
		bool		fits = true;
		int			i;

		for (i = 0; i < w->ncounts; i++)
		{
			RGActiveCount *c = w->counts[i];

			if (c->held + rg_active_ahead(c, pass) < c->limit)
				continue;
			fits = false;
			if (c->full_pass != pass)
			{
				c->full_pass = pass;
				full++;
			}
		}
		if (fits)
		{
			for (i = 0; i < w->ncounts; i++)
			{
				rg_active_hold(w->counts[i]);
				w->counts[i]->stats.waited++;
			}
			rg_active_unlink(procno);
			w->held = true;
			w->granted = true;
			w->granted_at = GetCurrentTimestamp();
			if (my_woken != NULL && my_nwoken < rg_active->nprocs)
				my_woken[my_nwoken++] = procno;
			else
				rg_queue_wake(procno);
		}
		else
		{
			/*
			 * It waits for a place in the counts that have been full for
			 * it at a walk since it joined the line (kept for the whole
			 * wait: two other roles freeing and taking its counts in turn
			 * cannot keep it out), not in those that always had room: a
			 * count with room stays open to later statements (another
			 * role's, in a +group or @db count that a role waiting on its
			 * own entry shares with it).
			 */
			for (i = 0; i < w->ncounts; i++)
			{
				RGActiveCount *c = w->counts[i];

				if (c->held + rg_active_ahead(c, pass) >= c->limit)
					w->waits_for[i] = true;
				if (!w->waits_for[i])
					continue;
				if (c->pass != pass)
				{
					c->pass = pass;
					c->ahead = 0;
				}
				c->ahead++;
			}
			if (full >= rg_active->waited_counts)
				break;
		}
		procno = next;
	}
}

/* Resolution -------------------------------------------------------------- */

/*
 * role_guard.active_waits for a role: its own entry, else the shortest of
 * its groups' entries, else "*"; -1 when none names it (wait until the
 * statement is cancelled).  0 refuses at once.
 */
static int32
rg_active_wait_limit(const char *rolname, const RGMembers *m)
{
	const RGPolicy *p = rg_active_waits;
	const RGEntry *e;
	int32		best = -1;
	int			i;

	if (p == NULL || p->nentries == 0)
		return -1;
	if ((e = rg_policy_lookup(p, RG_ENTRY_ROLE, rolname, NULL)) != NULL)
		return e->value;
	for (i = -1; p->ngroups > 0 && m->names && i < m->ngroups; i++)
	{
		e = rg_policy_lookup(p, RG_ENTRY_GROUP,
							 i < 0 ? rolname : NameStr(m->names[i]), NULL);
		if (e && (best < 0 || e->value < best))
			best = e->value;
	}
	if (best >= 0)
		return best;
	e = rg_policy_default(p);
	return e ? e->value : -1;
}

/* The entries that apply to this session, each with its count's key. */
static int
rg_active_entries(const NameData *rolname, Oid roleid, const RGMembers *m,
				  const RGEntry **entries, RGActiveKey *keys)
{
	const RGPolicy *p = rg_active_budgets;
	const RGBackend *slot = rg_my_slot;
	const char *db = NameStr(slot->datname);
	const RGEntry *e;
	int			n = 0;
	int			i;

#define RG_ACTIVE_ADD(entry, groupid) \
	do { \
		if ((entry) != NULL && n < RG_ACTIVE_COUNTS) \
		{ \
			entries[n] = (entry); \
			rg_active_key(&keys[n], (entry), roleid, (groupid), slot->dboid); \
			n++; \
		} \
	} while (0)

	e = rg_policy_lookup(p, RG_ENTRY_ROLE, NameStr(*rolname), NULL);
	RG_ACTIVE_ADD(e ? e : rg_policy_default(p), InvalidOid);
	if (p->ngroups > 0)
	{
		RG_ACTIVE_ADD(rg_policy_lookup(p, RG_ENTRY_GROUP, NameStr(*rolname), NULL),
					  roleid);
		for (i = 0; i < m->ngroups; i++)
			RG_ACTIVE_ADD(rg_policy_lookup(p, RG_ENTRY_GROUP, NameStr(m->names[i]), NULL),
						  m->groups[i]);
	}
	if (OidIsValid(slot->dboid))
	{
		RG_ACTIVE_ADD(rg_policy_lookup(p, RG_ENTRY_DATABASE, NULL, db), InvalidOid);
		RG_ACTIVE_ADD(rg_policy_lookup(p, RG_ENTRY_ROLE_DATABASE, NameStr(*rolname), db),
					  InvalidOid);
	}
#undef RG_ACTIVE_ADD
	return n;
}

/*
 * Does a place given in this session's counts stand under these entries:
 * the same counts, in order, none over its new limit?  Lock held.
 */
static bool
rg_active_grant_stands(const RGActiveKey *keys, const RGEntry *const *entries,
					   int n)
{
	int			i;

	if (n != my.ncounts)
		return false;
	for (i = 0; i < n; i++)
	{
		if (memcmp(&keys[i], &my.counts[i]->key, sizeof(RGActiveKey)) != 0 ||
			my.counts[i]->held > entries[i]->value)
			return false;
	}
	return true;
}

/*
 * A place the walk gave this waiter under counts that no longer apply (a
 * reload or a change of roles since it resolved them): given back, and the
 * wait it counted with it; the waiter goes back in line at its ticket once
 * it has its new counts.  Lock held.
 */
static void
rg_active_ungrant(RGActiveProc *w)
{
	int			i;

	for (i = 0; i < my.ncounts; i++)
	{
		my.counts[i]->held--;
		my.counts[i]->stats.waited--;
	}
	w->held = false;
	w->granted = false;
}

/*
 * Find the counts that apply to this session (after a reload or a change
 * of roles, or the first time): catalogs through the membership cache, no
 * lock; then references under the lock.
 *
 * "waiting": the statement waits, and a reload (or a change of roles) came
 * meanwhile.  It keeps its ticket, so its place in line, and waits in its
 * new counts (none: it leaves the line, and runs).  A place the walk gave
 * it meanwhile stands if its counts are the same and none is over its new
 * limit; else it goes back, and the statement waits again at its ticket:
 * it never runs under counts or limits that no longer apply.
 */
static void
rg_active_resolve(bool waiting)
{
	RGBackend  *slot = rg_my_slot;
	RGActiveProc *w = &rg_active->procs[rg_my_procno()];
	RGMembers	m;
	NameData	rolname;
	bool		rolsuper = false;
	bool		rolcreaterole = false;
	const RGEntry *entries[RG_ACTIVE_COUNTS];
	RGActiveKey keys[RG_ACTIVE_COUNTS];
	uint64		generation = rg_active_generation;
	uint64		members = rg_members_generation();
	int			n = 0;
	int			i;

	m.ngroups = 0;
	m.groups = palloc(sizeof(Oid) * RG_MEMBERS_CACHED);
	m.names = palloc(sizeof(NameData) * RG_MEMBERS_CACHED);
	m.super = palloc(sizeof(bool) * RG_MEMBERS_CACHED);
	m.createrole = palloc(sizeof(bool) * RG_MEMBERS_CACHED);
	NameStr(rolname)[0] = '\0';
	if (rg_active_configured &&
		rg_role_groups(slot->roleid, &rolname, &rolsuper, &rolcreaterole, &m))
	{
		n = rg_active_entries(&rolname, slot->roleid, &m, entries, keys);
		my.wait_ms = rg_active_wait_limit(NameStr(rolname), &m);
	}
	my.exempt = rolsuper && slot->client.addr.ss_family == AF_UNIX &&
		rg_superuser_socket_exempt;

	LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
	if (waiting && w->granted && rg_active_grant_stands(keys, entries, n))
	{
		/* served in counts that still apply: it runs, under their limits */
		for (i = 0; i < n; i++)
			my.counts[i]->limit = entries[i]->value;
		my.generation = generation;
		my.members = members;
	}
	else
	{
		bool		rejoin = waiting && w->granted;

		if (rejoin)
			rg_active_ungrant(w);
		else if (waiting)
			rg_active_unwait(w);
		rg_active_unref();
		for (i = 0; i < n; i++)
		{
			RGActiveCount *c = rg_active_enter(&keys[i], entries[i]);

			if (c == NULL)
			{
				rg_active_unref();
				break;
			}
			my.counts[my.ncounts++] = c;
		}
		if (waiting && my.ncounts > 0)
		{
			rg_active_wait_in(w);
			if (rejoin)
				rg_queue_enter(&rg_active->queue, rg_my_procno(), w->ticket);
		}
		else if (waiting)
		{
			rg_queue_leave(&rg_active->queue, rg_my_procno());
			my.waiting = false;
		}
		my.generation = generation;
		my.members = members;
		my.resolved = true;
		/* a new limit may let waiters in (this one too) */
		rg_active_grant();
	}
	rg_active_unlock();
	if (n > 0 && my.ncounts == 0)
		ereport(LOG,
				(errmsg("role_guard: transactions of role \"%s\" are not counted against active budgets",
						NameStr(rolname)),
				 errdetail("All %d entries of role_guard's active count table are in use.",
						   rg_active_capacity()),
				 errhint("Increase role_guard.max_roles.")));
	pfree(m.groups);
	pfree(m.names);
	pfree(m.super);
	pfree(m.createrole);
}

/* Taking a place ------------------------------------------------------------ */

/*
 * The statements ahead of this one in each of its counts: those that wait
 * for a place in it (rg_active_grant's), when this one is not in line;
 * else those before it in line that wait for a place in it (a walk of the
 * line: only on the way to a refusal).  Lock held.
 */
static void
rg_active_earlier(int32 *earlier)
{
	int			me = rg_my_procno();
	int			procno;
	int			i;
	int			j;

	for (i = 0; i < my.ncounts; i++)
		earlier[i] = my.waiting ? 0 : rg_active_ahead(my.counts[i], rg_active->pass);
	if (!my.waiting)
		return;
	for (procno = rg_queue_first(&rg_active->queue); procno >= 0 && procno != me;
		 procno = rg_queue_next(&rg_active->queue, procno))
	{
		const RGActiveProc *o = &rg_active->procs[procno];

		for (j = 0; j < o->ncounts; j++)
			for (i = 0; i < my.ncounts; i++)
				earlier[i] += o->counts[j] == my.counts[i] && o->waits_for[j];
	}
}

/* The count with least room, for messages.  Lock held. */
static void
rg_active_fullest(RGActiveFull *full)
{
	int32		earlier[RG_ACTIVE_COUNTS];
	int			best_room = INT_MAX;
	int			i;

	memset(full, 0, sizeof(*full));
	rg_active_earlier(earlier);
	for (i = 0; i < my.ncounts; i++)
	{
		RGActiveCount *c = my.counts[i];
		int32		others = earlier[i];
		int			room = c->limit - c->held - others;

		if (room < best_room)
		{
			best_room = room;
			full->count = c;
			full->kind = c->kind;
			strlcpy(full->entry, c->entry, sizeof(full->entry));
			full->limit = c->limit;
			full->used = c->held;
			full->waiting = c->held < c->limit ? others : 0;
		}
	}
}

/* Does every count have room (places held only)?  Lock held. */
static bool
rg_active_room(void)
{
	int			i;

	for (i = 0; i < my.ncounts; i++)
	{
		RGActiveCount *c = my.counts[i];

		if (c->held >= c->limit)
			return false;
	}
	return true;
}

/*
 * Does every count have room after the statements in line that wait for a
 * place in it (the last walk's "ahead": rg_active_grant)?  Then taking a
 * place takes none that an earlier statement waits for.  Lock held.
 */
static bool
rg_active_fits(void)
{
	uint64		pass = rg_active->pass;
	int			i;

	for (i = 0; i < my.ncounts; i++)
	{
		RGActiveCount *c = my.counts[i];

		if (c->held + rg_active_ahead(c, pass) >= c->limit)
			return false;
	}
	return true;
}

/* Take the place in every count.  Lock held. */
static void
rg_active_charge(void)
{
	int			i;

	for (i = 0; i < my.ncounts; i++)
		rg_active_hold(my.counts[i]);
	rg_active->procs[rg_my_procno()].held = true;
	my.held = true;
}

/* Join the line and let the walk serve it if it can.  Lock held. */
static void
rg_active_enqueue(void)
{
	int			procno = rg_my_procno();
	RGActiveProc *w = &rg_active->procs[procno];

	w->granted = false;
	rg_active_wait_in(w);
	w->ticket = rg_queue_ticket(&rg_active->queue);
	rg_queue_enter(&rg_active->queue, procno, w->ticket);
	my.waiting = true;
	rg_active_grant();
}

/*
 * The walk gave this waiter its place (and took it out of line): it holds
 * it now.  The walk counted the wait in each count, which stands only when
 * the statement runs, as the role's count is kept only then.  Out of line
 * only this process writes its granted: no lock needed, but the caller may
 * hold it.
 */
static void
rg_active_served(RGActiveProc *w, bool runs)
{
	int			i;

	my.waiting = false;
	my.held = true;
	w->granted = false;
	for (i = 0; i < my.ncounts && !runs; i++)
		my.counts[i]->stats.waited--;
}

/*
 * Leave the line (a timeout, an error, an exit): the statement does not
 * run.  A place given meanwhile stays taken (the caller gives it back).
 * Lock held.
 */
static void
rg_active_dequeue(void)
{
	int			procno = rg_my_procno();
	RGActiveProc *w = &rg_active->procs[procno];

	if (!my.waiting)
		return;
	if (w->granted)
	{
		rg_active_served(w, false);
		return;
	}
	my.waiting = false;
	rg_active_unlink(procno);
	/* later waiters counted this one ahead of them */
	rg_active_grant();
}

/*
 * Count what a statement met, in its counts and its role's counter: waited,
 * refused, or (monitor mode) would have waited.  Slow path only.  A wait
 * served is counted in the counts by the walk that grants the place
 * (rg_active_grant, under the lock it holds then), so a waiter woken takes
 * only the counters' lock.
 */
static void
rg_active_count_outcome(bool waited, bool refused, bool would,
						const RGActiveFull *full)
{
	LWLock	   *lock = rg_lock();
	RGCounter  *role = rg_my_counter;

	/* a refusal counts for the entry its DETAIL named, as a login's does */
	if (full != NULL && full->count != NULL && (refused || would))
	{
		LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
		full->count->stats.rejected += refused;
		full->count->stats.would_wait += would;
		rg_active_unlock();
	}
	if (role == NULL)
		return;
	if (waited || refused || would)
		rg_windows_clock(GetCurrentTimestamp());
	LWLockAcquire(lock, LW_EXCLUSIVE);
	role->stats.active.waited += waited;
	role->stats.active.rejected += refused;
	role->stats.active.would_wait += would;
	/* monitor's would-be waits count as a login's would-be refusals do */
	if (waited || refused || would)
		rg_windows_count(role, RG_WINDOW_ACTIVE_WAITED);
	LWLockRelease(lock);
}

/* What became of the statement that found its entry full. */
typedef enum RGActiveHow
{
	RG_ACTIVE_WAITED,			/* refused after waiting (or at once) */
	RG_ACTIVE_WOULD,			/* monitor mode: it would have waited */
	RG_ACTIVE_EXEMPT			/* a superuser over the Unix socket */
} RGActiveHow;

/*
 * The DETAIL: the entry, its use (and the earlier statements in line that
 * fill it with the places held, as a login's DETAIL says), and the wait.
 */
static void
rg_active_detail(char *buf, size_t len, const RGActiveFull *full,
				 double waited_s, RGActiveHow how)
{
	char		use[128];

	if (full->waiting > 0)
		snprintf(use, sizeof(use),
				 "%d of %d transactions in progress, and %d earlier %s waiting for a place",
				 full->used, full->limit, full->waiting,
				 full->waiting == 1 ? "statement" : "statements");
	else
		snprintf(use, sizeof(use), "%d of %d transactions in progress",
				 full->used, full->limit);
	if (how == RG_ACTIVE_WOULD)
		snprintf(buf, len,
				 "role_guard active budget \"%s=%d\" is full (%s); the statement would wait (role_guard.mode is monitor).",
				 full->entry, full->limit, use);
	else if (how == RG_ACTIVE_EXEMPT)
		snprintf(buf, len,
				 "role_guard active budget \"%s=%d\" is full (%s); a superuser over the Unix socket never waits (role_guard.superuser_socket_exempt).",
				 full->entry, full->limit, use);
	else
		snprintf(buf, len,
				 "role_guard active budget \"%s=%d\" is full (%s); the statement waited %.1f s (role_guard.active_waits).",
				 full->entry, full->limit, use, waited_s);
}

/* An event about this session's statement. */
static void
rg_active_event(RGEventKind kind, const char *detail, uint64 query_id)
{
	RGBackend  *slot = rg_my_slot;
	RGCounter  *role = rg_my_counter;
	RGEvent		ev;

	rg_event_init(&ev, kind);
	ev.pid = MyProcPid;
	if (role)
		ev.rolname = role->rolname;
	ev.datname = slot->datname;
	memcpy(ev.application_name, slot->application_name, sizeof(ev.application_name));
	ev.application_name[sizeof(ev.application_name) - 1] = '\0';
	rg_event_client(&ev, &slot->client);
	strlcpy(ev.detail, detail, sizeof(ev.detail));
	ev.query_id = (int64) query_id;
	rg_event_add(&ev);
}

/* Refuse the statement: ERROR 53400.  No lock held. */
static void
rg_active_refuse(const RGActiveFull *full, double waited_s, uint64 query_id)
{
	char		detail[RG_ENTRY_TEXT_LEN + 256];
	const char *rolname = rg_my_counter ? NameStr(rg_my_counter->rolname) : "";
	const char *db = NameStr(rg_my_slot->datname);

	rg_active_detail(detail, sizeof(detail), full, waited_s, RG_ACTIVE_WAITED);
	rg_active_count_outcome(false, true, false, full);
	rg_active_event(RG_EVENT_ACTIVE_REJECTED, detail, query_id);
	if (full->kind == RG_ENTRY_DATABASE)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many active transactions for database \"%s\"", db),
				 errdetail("%s", detail)));
	if (full->kind == RG_ENTRY_ROLE_DATABASE)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many active transactions for role \"%s\" in database \"%s\"",
						rolname, db),
				 errdetail("%s", detail)));
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("too many active transactions for role \"%s\"", rolname),
			 errdetail("%s", detail)));
}

/* Admitted over a full budget: monitor mode, or an exempt superuser. */
static void
rg_active_report_over(const RGActiveFull *full, uint64 query_id)
{
	char		detail[RG_ENTRY_TEXT_LEN + 256];
	const char *rolname = rg_my_counter ? NameStr(rg_my_counter->rolname) : "";

	rg_active_detail(detail, sizeof(detail), full, 0,
					 my.exempt ? RG_ACTIVE_EXEMPT : RG_ACTIVE_WOULD);
	if (my.exempt)
	{
		ereport(LOG,
				(errmsg("role_guard: superuser \"%s\" began a transaction over an active budget through the Unix socket",
						rolname),
				 errdetail("%s", detail)));
		return;
	}
	rg_active_count_outcome(false, false, true, full);
	rg_active_event(RG_EVENT_WOULD_WAIT, detail, query_id);
	ereport(LOG,
			(errmsg("role_guard: statement of role \"%s\" would wait for an active place",
					rolname),
			 errdetail("%s", detail)));
}

/*
 * role_guard.mode became monitor or off while a statement waited: it
 * leaves the line and runs, in monitor mode counted (as there it would
 * have been, over the budget), unless the walk served it meanwhile.
 */
static bool
rg_active_stop_waiting(void)
{
	RGActiveProc *w = &rg_active->procs[rg_my_procno()];

	LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
	if (w->granted)
		rg_active_served(w, true);
	else
	{
		rg_active_dequeue();
		if (rg_mode == RG_MODE_MONITOR)
			rg_active_charge();
	}
	rg_active_unlock();
	return true;
}

/*
 * Sleep until the walk serves this statement or its wait ends.  Returns
 * true with the place taken, false when active_waits passed (off the line,
 * *full filled).  An interrupt ERRORs or FATALs out of here: the abort and
 * exit paths leave the line.
 */
static bool
rg_active_sleep(TimestampTz start, RGActiveFull *full)
{
	RGActiveProc *w = &rg_active->procs[rg_my_procno()];
	uint32		event = rg_active_wait_event();
	TimestampTz deadline = my.wait_ms >= 0 ?
		TimestampTzPlusMilliseconds(start, my.wait_ms) : 0;

	for (;;)
	{
		if (rg_queue_sleep(deadline, event, true) == RG_QUEUE_CLIENT_GONE)
			ereport(FATAL,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("connection to client lost")));

		/*
		 * A reload (SIGHUP sets the latch): read the file now, not once the
		 * statement is over, as the login path does (a budget raised or
		 * removed must let the waiter in; a new active_waits applies from
		 * the start of the wait), and a change of roles likewise; a place
		 * given under counts that no longer apply goes back.
		 */
		rg_policy_refresh();
		if (rg_mode != RG_MODE_ENFORCE)
			return rg_active_stop_waiting();
		if (my.generation != rg_active_generation ||
			my.members != rg_members_generation())
		{
			rg_active_resolve(true);
			if (!my.waiting)
				return true;	/* no count limits it now: it runs */
			deadline = my.wait_ms >= 0 ?
				TimestampTzPlusMilliseconds(start, my.wait_ms) : 0;
		}

		/*
		 * Served?  The walk that grants a place takes the waiter out of line
		 * and sets granted before it lets the lock go and sets the latch
		 * (ResetLatch is a barrier): read without the lock.  Only leaving
		 * the line at the deadline takes it, and a place given meanwhile is
		 * then taken as served.
		 */
		if (!w->granted && deadline != 0 && GetCurrentTimestamp() >= deadline)
		{
			LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
			if (!w->granted)
			{
				rg_active_fullest(full);
				rg_active_dequeue();
				rg_active_unlock();
				return false;
			}
			rg_active_unlock();
		}
		if (w->granted)
		{
			rg_active_served(w, true);
			elog(DEBUG2, "role_guard: active place taken " INT64_FORMAT " us after it was granted",
				 (int64) (GetCurrentTimestamp() - w->granted_at));
			return true;
		}
	}
}

/*
 * The first statement of a transaction that does real work: take a place
 * in every count that applies, waiting in line if one is full.  True when
 * the statement waited for its place (and has it).
 */
bool
rg_active_take(uint64 query_id)
{
	RGBackend  *slot = rg_my_slot;
	bool		monitor = rg_mode == RG_MODE_MONITOR;
	RGActiveFull full;
	TimestampTz start;

	rg_active_need = false;
	if (slot == NULL || slot->walsender || rg_mode == RG_MODE_OFF ||
		my.held || my.waiting || rg_active == NULL)
		return false;
	if (!my.resolved || my.generation != rg_active_generation ||
		my.members != rg_members_generation())
		rg_active_resolve(false);
	if (my.ncounts == 0)
		return false;
	if (!my.exit_registered)
	{
		/* registered in shared memory (17+): once, never under our lock */
		(void) rg_active_wait_event();
		before_shmem_exit(rg_active_exit, (Datum) 0);
		on_shmem_exit(rg_active_exit_unref, (Datum) 0);
		RegisterResourceReleaseCallback(rg_active_release_after_locks, NULL);
		my.exit_registered = true;
		my_woken = MemoryContextAlloc(TopMemoryContext,
									  sizeof(int) * rg_active->nprocs);
	}

	LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
	if (rg_active_fits())
	{
		rg_active_charge();
		rg_active_unlock();
		return false;
	}
	rg_active_fullest(&full);
	if (monitor || my.exempt)
	{
		/* counted, never waits; reported only when over */
		bool		over = !rg_active_room();

		rg_active_charge();
		rg_active_unlock();
		if (over)
			rg_active_report_over(&full, query_id);
		return false;
	}
	if (my.wait_ms == 0)
	{
		rg_active_unlock();
		rg_active_refuse(&full, 0, query_id);
	}
	/* in line under the same lock that found no room */
	start = GetCurrentTimestamp();
	rg_active_enqueue();
	rg_active_unlock();
	RG_INJECT("active-wait");
	if (!rg_active_sleep(start, &full))
		rg_active_refuse(&full, TimestampDifferenceMilliseconds(start, GetCurrentTimestamp()) / 1000.0,
						 query_id);
	rg_active_count_outcome(true, false, false, NULL);
	return true;
}

/* Giving it back -------------------------------------------------------------- */

/* Leave the line and give back the place, if any.  Lock not held. */
static void
rg_active_release(void)
{
	RGActiveProc *w;
	int			i;

	if (!my.held && !my.waiting)
		return;
	w = &rg_active->procs[rg_my_procno()];
	LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
	rg_active_dequeue();
	if (my.held)
	{
		for (i = 0; i < my.ncounts; i++)
			my.counts[i]->held--;
		w->held = false;
		my.held = false;
		rg_active_grant();
	}
	rg_active_unlock();
}

/*
 * A subtransaction failed: a statement that waited in it (a procedure's,
 * after a COMMIT inside) leaves the line; a place given meanwhile is kept
 * for the rest of the transaction.
 */
void
rg_active_subxact_abort(void)
{
	if (!my.waiting)
		return;
	LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
	rg_active_dequeue();
	rg_active_unlock();
	if (!my.held)
		rg_active_need = rg_active_configured;
}

/*
 * The transaction ended (commit, abort, prepare): the next transaction
 * may take a place.  This one gives its place back a moment later, once
 * its locks are released (rg_active_release_after_locks).
 */
void
rg_active_xact_end(void)
{
	rg_active_need = rg_active_configured;
}

/*
 * The place goes back once the transaction's locks have gone (advisory
 * ones too), not at the commit callback a moment before: a transaction
 * given the place then cannot find a lock of the one before it still
 * held, and so no one can see more transactions at work than the budget
 * allows.  The transaction is over then, whatever its end (commit, abort,
 * PREPARE TRANSACTION, whose locks go to the prepared transaction).
 * Registered at a session's first place; called for every resource owner
 * released (a portal's too): one test, unless it holds or waits.
 */
static void
rg_active_release_after_locks(ResourceReleasePhase phase, bool isCommit,
							  bool isTopLevel, void *arg)
{
	if (phase == RESOURCE_RELEASE_AFTER_LOCKS && isTopLevel &&
		(my.held || my.waiting) && !my.pinned)
		rg_active_release();
}

/*
 * A top-level VACUUM or ANALYZE (executor.c's rg_utility_pins says which
 * statements, and why only those), which commits its first transaction
 * and starts others in which no statement of its own begins, keeps the
 * place its first transaction took through those commits, to its end: its
 * work is never done without a place, and never waits for one half-way.
 * Returns whether it holds one (the caller unpins it at the statement's
 * end, error or not: an abort then gives it back; a FATAL's exit does so
 * whatever the pin, rg_active_exit_unref).
 */
bool
rg_active_pin(void)
{
	my.pinned = my.held;
	return my.pinned;
}

void
rg_active_unpin(void)
{
	my.pinned = false;
}

/*
 * active_budgets or active_waits took a new value (an assign hook: any
 * process, at start or reload): every session resolves its counts again at
 * its next take, and the executor hooks learn whether there is anything to
 * take at all.
 */
void
rg_active_settings_changed(void)
{
	rg_active_generation++;
	rg_active_configured = rg_active_budgets != NULL && rg_active_budgets->nentries > 0;

	/*
	 * A transaction open now (a session reads a reload between statements,
	 * idle in it) may have done work without a place: it goes on without
	 * one, so that it never waits in the middle of its work.  The next
	 * transaction takes one.  A failed transaction block holds none and
	 * runs nothing more (its ROLLBACK calls no transaction callback): its
	 * next transaction takes one too.
	 */
	if (!rg_active_configured || !IsTransactionOrTransactionBlock() ||
		(IsAbortedTransactionBlockState() && GetCurrentTransactionNestLevel() == 1))
		rg_active_need = rg_active_configured;
}

/*
 * Backend exit (before_shmem_exit, so before ShutdownPostgres aborts the
 * transaction): wake whom a walk under the lock granted a place.  A
 * transaction still open gives its place back in that abort, once its
 * locks are gone (rg_active_release_after_locks); with none open, nothing
 * is held, but whatever is goes back now.
 */
static void
rg_active_exit(int code, Datum arg)
{
	if (LWLockHeldByMe(rg_active->lock))
		rg_active_unlock();
	if (!IsTransactionOrTransactionBlock())
		rg_active_release();
	rg_active_need = false;
}

/*
 * Later at exit (on_shmem_exit: after ShutdownPostgres, before ProcKill,
 * the lock still usable): give back anything the abort did not, and drop
 * this session's references on its counts.
 */
static void
rg_active_exit_unref(int code, Datum arg)
{
	rg_active_release();
	if (my.ncounts > 0)
	{
		LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
		rg_active_unref();
		LWLockRelease(rg_active->lock);
	}
}

/* Views ------------------------------------------------------------------------- */

/* Does a process hold a place, or wait for one?  No lock: a snapshot. */
void
rg_active_proc_state(int procno, bool *held, bool *waiting)
{
	RGActiveProc *w;

	*held = *waiting = false;
	if (rg_active == NULL || procno >= rg_active->nprocs)
		return;
	w = &rg_active->procs[procno];
	*held = w->held;
	*waiting = w->link.ticket != 0;
}

/* A copy of every count (palloc'd), for role_guard_budgets. */
RGActiveCountCopy *
rg_active_copy(int *ncopies)
{
	int			room = rg_active_capacity();
	RGActiveCountCopy *copy = palloc0(sizeof(RGActiveCountCopy) * Max(room, 1));
	HASH_SEQ_STATUS status;
	RGActiveCount *c;
	int			n = 0;

	LWLockAcquire(rg_active->lock, LW_SHARED);
	hash_seq_init(&status, rg_active_counts);
	while ((c = hash_seq_search(&status)) != NULL)
	{
		if (n >= room)
		{
			hash_seq_term(&status);
			break;
		}
		copy[n].kind = c->key.kind;
		copy[n].roleid = c->key.roleid;
		copy[n].dboid = c->key.dboid;
		copy[n].entry_kind = c->kind;
		copy[n].held = c->held;
		copy[n].waiting = c->waiting;
		copy[n].stats = c->stats;
		n++;
	}
	rg_active_unlock();
	*ncopies = n;
	return copy;
}

/*
 * One active_budgets entry's numbers for role_guard_budgets, by the rule
 * that says which count it limits (rg_active_key): places held now, and
 * the statements it refused or (monitor) would have made wait.  "*" sums
 * the counts of the roles that have no entry of their own.
 */
void
rg_active_entry_numbers(const RGEntry *e, const RGActiveCountCopy *copies,
						int ncopies, int32 *held, RGActiveStats *stats)
{
	Oid			roleid = InvalidOid;
	Oid			dboid = InvalidOid;
	RGActiveKey key;
	int			i;

	*held = 0;
	memset(stats, 0, sizeof(*stats));
	if (e->name[0] != '\0')
		roleid = get_role_oid(e->name, true);
	if (e->db[0] != '\0')
		dboid = get_database_oid(e->db, true);
	rg_active_key(&key, e, roleid, roleid, dboid);
	for (i = 0; i < ncopies; i++)
	{
		const RGActiveCountCopy *c = &copies[i];

		if (c->kind != key.kind)
			continue;
		if (e->kind == RG_ENTRY_DEFAULT)
		{
			char	   *name = GetUserNameFromId(c->roleid, true);

			if (name && rg_policy_lookup(rg_active_budgets, RG_ENTRY_ROLE, name, NULL))
				continue;
		}
		else if (c->roleid != key.roleid || c->dboid != key.dboid ||
				 (!OidIsValid(roleid) && e->name[0] != '\0') ||
				 (!OidIsValid(dboid) && e->db[0] != '\0'))
			continue;
		*held += c->held;
		/* a role's own count keeps the statistics of the entry last over it */
		if (c->entry_kind != e->kind)
			continue;
		stats->waited += c->stats.waited;
		stats->rejected += c->stats.rejected;
		stats->would_wait += c->stats.would_wait;
	}
}

/* A role's active budget as role_guard_usage shows it: its entry, or "*". */
int32
rg_active_role_budget(const char *rolname, bool *isnull)
{
	const RGEntry *e;

	e = rg_policy_lookup(rg_active_budgets, RG_ENTRY_ROLE, rolname, NULL);
	if (e == NULL)
		e = rg_policy_default(rg_active_budgets);
	*isnull = e == NULL;
	return e ? e->value : 0;
}

/* role_guard_reset(): forget the counts' statistics. */
void
rg_active_reset(void)
{
	HASH_SEQ_STATUS status;
	RGActiveCount *c;

	if (rg_active == NULL)
		return;
	LWLockAcquire(rg_active->lock, LW_EXCLUSIVE);
	hash_seq_init(&status, rg_active_counts);
	while ((c = hash_seq_search(&status)) != NULL)
	{
		memset(&c->stats, 0, sizeof(c->stats));
		c->peak = c->held;		/* the windows start again too */
		if (rg_active_count_unused(c))
			hash_search(rg_active_counts, &c->key, HASH_REMOVE, NULL);
	}
	rg_active_unlock();
}
