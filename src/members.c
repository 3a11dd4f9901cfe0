/*-------------------------------------------------------------------------
 *
 * members.c
 *	  The membership cache: which roles a login role is a member of, and
 *	  those roles' names and SUPERUSER attributes, kept in shared memory so
 *	  that a new backend need not read pg_auth_members at every login.
 *	  And the database cache: what core checks of a database at login, so
 *	  that it need not read pg_database either.
 *
 * A new backend starts with an empty syscache, so looking up a role's
 * memberships costs it an index scan of pg_auth_members per role in the
 * closure (about 17 000 instructions for a role in no group, 0.6 % of a
 * whole login; for a role in 50 groups, over a million).  The cache keeps
 * the answer in shared memory, per role, for the next login.
 *
 * Validity is one generation number for the whole cache.  An entry is
 * valid while its generation equals the cache's; anything that may change
 * a membership, a role's name or its attributes bumps the cache's
 * generation, which invalidates every entry at once:
 *	- a syscache invalidation of AUTHMEMMEMROLE or AUTHOID, in whichever
 *	  process sees it: the backend that changes the catalog (at its own
 *	  command end, before it commits), any backend or the reaper that
 *	  receives the invalidation from another, a standby's processes after
 *	  replay, a shared-invalidation reset;
 *	- the end of a transaction that saw such an invalidation: the bump at
 *	  command end came before the change was visible, so a login reading
 *	  the catalogs in between must not be able to store what it read.
 *	  XACT_EVENT_COMMIT comes after the commit is visible to others and
 *	  before the client hears of it;
 *	- COMMIT PREPARED, whose invalidations are only queued for others
 *	  (executor.c calls rg_members_invalidate after it).
 * A login that misses reads the generation first, then the catalogs with a
 * new catalog snapshot and no syscache (roles.c: "fresh"), and stores what
 * it read under the generation it read before: if anything changed
 * meanwhile, the entry is born invalid.  So once a GRANT, REVOKE, ALTER
 * ROLE or DROP ROLE has returned to its client, no login uses what was
 * cached before it.  On a standby, a change replayed from the primary
 * reaches the cache when one of the standby's processes reads the
 * invalidation queue; the reaper does so at every reap_interval.
 *
 * Shared memory: RGMembersShared (the generations, the capacity and a pool
 * of max_roles x RG_MEMBERS_POOL_AVG group OIDs) and a hash of RGRoleEntry
 * keyed by role OID, role_guard.max_roles entries.  A role's entry holds
 * its name, SUPERUSER and CREATEROLE attributes, and its groups if it logged in
 * (ngroups >= 0, a run of the pool) or -1 if the entry was made for a
 * group's name only.  A role that is a member of more than
 * RG_MEMBERS_CACHED roles is not cached: its logins read the catalogs.
 * When the hash or the pool has no room for a login's entries, the cache
 * is emptied first (the pool is only appended to, so the runs of entries
 * that went stale are reclaimed then).
 *
 * The database cache works the same way with its own generation,
 * db_generation, bumped by syscache invalidations of DATABASEOID (CREATE,
 * DROP, RENAME, ALTER DATABASE, GRANT or REVOKE CONNECT, and VACUUM's
 * in-place updates, which cost one catalog read per database afterwards)
 * and at the end of a transaction that saw one.  An entry, keyed by name,
 * holds the database's OID, whether it exists, is valid and allows
 * connections, and whether PUBLIC has CONNECT on it; a name with no
 * database is cached too (a client retrying a wrong name costs nothing).
 * What it does not hold is a role's own CONNECT privilege: for a database
 * PUBLIC may not connect to, a login by a role that is not a superuser
 * makes core's privilege check, without the lock.  The hash holds
 * RG_DATABASES_CACHED entries and is emptied when full.
 *
 * The structs and what protects their fields are in shmem.h: the hashes
 * are under role_guard's main lock (the login path uses them inside the
 * exclusive section it holds anyway), the generations are atomics.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/syscache.h"

#include "compat.h"
#include "role_guard.h"


static RGMembersShared *rg_members_shared = NULL;
static HTAB *rg_members_hash = NULL;
static HTAB *rg_databases_hash = NULL;

/* the caches' generations, as the syscache callbacks' argument */
#define RG_GEN_ROLES	0
#define RG_GEN_DATABASES	1

/* this transaction saw such an invalidation: bump again when it ends */
static bool rg_xact_pending[2];

static pg_atomic_uint64 *
rg_generation(int which)
{
	return which == RG_GEN_ROLES ? &rg_members_shared->generation :
		&rg_members_shared->db_generation;
}

/* The shared part with its pool of groups' OIDs. */
static Size
rg_members_struct_size(void)
{
	return add_size(offsetof(RGMembersShared, pool),
					mul_size(mul_size(rg_max_roles, RG_MEMBERS_POOL_AVG),
							 sizeof(Oid)));
}

Size
rg_members_shmem_size(void)
{
	return add_size(add_size(MAXALIGN(rg_members_struct_size()),
							 hash_estimate_size(rg_max_roles, sizeof(RGRoleEntry))),
					hash_estimate_size(RG_DATABASES_CACHED, sizeof(RGDatabaseEntry)));
}

/*
 * Empty a cache's hash (its key is each entry's first field).  Lock held
 * exclusively.
 */
static void
rg_hash_empty(HTAB *hash)
{
	HASH_SEQ_STATUS status;
	void	   *e;

	hash_seq_init(&status, hash);
	while ((e = hash_seq_search(&status)) != NULL)
		hash_search(hash, e, HASH_REMOVE, NULL);
}

/* Create or attach; caller holds AddinShmemInitLock. */
void
rg_members_shmem_init(void)
{
	bool		found;
	HASHCTL		info;

	rg_members_shared = ShmemInitStruct("role_guard membership cache",
										rg_members_struct_size(), &found);
	if (!found)
	{
		/* no entry is written with generation 0: it is never valid */
		pg_atomic_init_u64(&rg_members_shared->generation, 1);
		pg_atomic_init_u64(&rg_members_shared->db_generation, 1);
		rg_members_shared->capacity = rg_max_roles;
		rg_members_shared->pool_size = rg_max_roles * RG_MEMBERS_POOL_AVG;
		rg_members_shared->pool_used = 0;
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(Oid);
	info.entrysize = sizeof(RGRoleEntry);
	rg_members_hash = ShmemInitHash("role_guard membership cache entries",
									rg_max_roles, rg_max_roles,
									&info, HASH_ELEM | HASH_BLOBS);
	memset(&info, 0, sizeof(info));
	info.keysize = NAMEDATALEN;
	info.entrysize = sizeof(RGDatabaseEntry);
	rg_databases_hash = ShmemInitHash("role_guard database cache entries",
									  RG_DATABASES_CACHED, RG_DATABASES_CACHED,
									  &info, HASH_ELEM | HASH_STRINGS);
}

/* Invalidate every entry of both caches.  Any process, no lock. */
void
rg_members_invalidate(void)
{
	if (rg_members_shared)
	{
		pg_atomic_fetch_add_u64(rg_generation(RG_GEN_ROLES), 1);
		pg_atomic_fetch_add_u64(rg_generation(RG_GEN_DATABASES), 1);
	}
}

/* The cache's generation: it changes whenever a role or membership may have. */
uint64
rg_members_generation(void)
{
	return pg_atomic_read_u64(&rg_members_shared->generation);
}

/* arg: which cache's generation (RG_GEN_ROLES, RG_GEN_DATABASES) */
static void
rg_members_syscache_cb(Datum arg, int cacheid, uint32 hashvalue)
{
	if (rg_members_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(rg_generation(DatumGetInt32(arg)), 1);
	rg_xact_pending[DatumGetInt32(arg)] = true;
}

/*
 * A transaction ended (any way): bump again what it saw invalidated, as its
 * own changes are visible to others only now.  Called by executor.c's
 * transaction callback (one callback for role_guard: core calls each for
 * every event).
 */
void
rg_members_xact_end(void)
{
	int			which;

	for (which = 0; which < lengthof(rg_xact_pending); which++)
	{
		if (!rg_xact_pending[which])
			continue;
		rg_xact_pending[which] = false;
		if (rg_members_shared)
			pg_atomic_fetch_add_u64(rg_generation(which), 1);
	}
}

/* _PG_init: the callbacks every process inherits from the postmaster. */
void
rg_members_init(void)
{
	CacheRegisterSyscacheCallback(AUTHMEMMEMROLE, rg_members_syscache_cb,
								  Int32GetDatum(RG_GEN_ROLES));
	CacheRegisterSyscacheCallback(AUTHOID, rg_members_syscache_cb,
								  Int32GetDatum(RG_GEN_ROLES));
	CacheRegisterSyscacheCallback(DATABASEOID, rg_members_syscache_cb,
								  Int32GetDatum(RG_GEN_DATABASES));
}

/*
 * A login role's groups from the cache, into m (whose arrays have room for
 * RG_MEMBERS_CACHED), with their names and SUPERUSER attributes if
 * m->names is set.  False on a miss.  Caller holds the main lock.
 */
static bool
rg_members_lookup(Oid roleid, RGMembers *m)
{
	uint64		generation = pg_atomic_read_u64(&rg_members_shared->generation);
	RGRoleEntry *e;
	int			i;

	e = hash_search(rg_members_hash, &roleid, HASH_FIND, NULL);
	if (e == NULL || e->generation != generation || e->ngroups < 0)
		return false;
	m->ngroups = e->ngroups;
	memcpy(m->groups, &rg_members_shared->pool[e->first], sizeof(Oid) * e->ngroups);
	if (m->names == NULL)
		return true;
	for (i = 0; i < m->ngroups; i++)
	{
		RGRoleEntry *g = hash_search(rg_members_hash, &m->groups[i], HASH_FIND, NULL);

		if (g == NULL || g->generation != generation)
			return false;
		m->names[i] = g->name;
		m->super[i] = g->rolsuper;
		m->createrole[i] = g->rolcreaterole;
	}
	return true;
}

/*
 * A login role's groups, with names and SUPERUSER attributes, read from
 * the catalogs (a cache miss).  The arrays are palloc'd.  Returns the
 * generation read before the catalogs, for rg_members_store.  No lock held.
 */
static uint64
rg_members_load(Oid roleid, RGMembers *m)
{
	uint64		generation;
	int			i,
				n = 0;

	/* a full barrier: the catalogs are read after the generation */
	generation = pg_atomic_fetch_add_u64(&rg_members_shared->generation, 0);
	m->groups = rg_member_of_fresh(roleid, &m->ngroups);
	m->names = palloc(sizeof(NameData) * Max(m->ngroups, 1));
	m->super = palloc(sizeof(bool) * Max(m->ngroups, 1));
	m->createrole = palloc(sizeof(bool) * Max(m->ngroups, 1));
	for (i = 0; i < m->ngroups; i++)
	{
		/* a group dropped meanwhile is left out */
		if (rg_role_fresh(m->groups[i], &m->names[n], &m->super[n],
						  &m->createrole[n]))
			m->groups[n++] = m->groups[i];
	}
	m->ngroups = n;
	return generation;
}

static RGRoleEntry *
rg_members_enter(Oid roleid, uint64 generation, const NameData *name,
				 bool rolsuper, bool rolcreaterole)
{
	bool		found;
	RGRoleEntry *e = hash_search(rg_members_hash, &roleid, HASH_ENTER_NULL, &found);

	if (e == NULL)
		return NULL;
	if (!found || e->generation != generation)
		e->ngroups = -1;
	e->generation = generation;
	e->name = *name;
	e->rolsuper = rolsuper;
	e->rolcreaterole = rolcreaterole;
	return e;
}

/*
 * Store what rg_members_load read, under the generation it returned.
 * Caller holds the main lock exclusively.
 */
static void
rg_members_store(uint64 generation, Oid roleid, const NameData *rolname,
				 bool rolsuper, bool rolcreaterole, const RGMembers *m)
{
	RGRoleEntry *e;
	int			i;

	if (generation != pg_atomic_read_u64(&rg_members_shared->generation) ||
		m->ngroups > RG_MEMBERS_CACHED ||
		m->ngroups + 1 > rg_members_shared->capacity ||
		m->ngroups > rg_members_shared->pool_size)
		return;
	if (hash_get_num_entries(rg_members_hash) + m->ngroups + 1 >
		rg_members_shared->capacity ||
		rg_members_shared->pool_used + m->ngroups > rg_members_shared->pool_size)
	{
		rg_hash_empty(rg_members_hash);
		rg_members_shared->pool_used = 0;
	}
	for (i = 0; i < m->ngroups; i++)
		if (rg_members_enter(m->groups[i], generation, &m->names[i],
							 m->super[i], m->createrole[i]) == NULL)
			return;
	e = rg_members_enter(roleid, generation, rolname, rolsuper, rolcreaterole);
	if (e == NULL)
		return;
	e->first = rg_members_shared->pool_used;
	memcpy(&rg_members_shared->pool[e->first], m->groups, sizeof(Oid) * m->ngroups);
	rg_members_shared->pool_used += m->ngroups;
	e->ngroups = m->ngroups;
}

/*
 * The one way role_guard finds a role's groups, for budgets (the login
 * path), idle limits and superuser membership (the reaper, the views):
 * from the cache, or on a miss from the catalogs, stored for the next
 * time.  m's arrays must have room for RG_MEMBERS_CACHED; on a miss they
 * are replaced by palloc'd ones that fit, and "sized" (if not NULL) is
 * called with the number of groups, while no lock is held, so the caller
 * can size its own arrays.  "lock_held": the caller holds the main lock
 * exclusively (the login path); on a miss it is let go while the catalogs
 * are read and taken again.  Otherwise no lock is held on entry or exit.
 */
void
rg_members_resolve(Oid roleid, const NameData *rolname, bool rolsuper,
				   bool rolcreaterole, RGMembers *m, bool lock_held,
				   void (*sized) (int ngroups, void *arg), void *arg)
{
	LWLock	   *lock = rg_lock();
	bool		hit;
	uint64		generation;

	if (!lock_held)
		LWLockAcquire(lock, LW_SHARED);
	hit = rg_members_lookup(roleid, m);
	if (hit)
	{
		if (!lock_held)
			LWLockRelease(lock);
		return;
	}
	LWLockRelease(lock);
	pfree(m->groups);
	if (m->names)
	{
		pfree(m->names);
		pfree(m->super);
		pfree(m->createrole);
	}
	generation = rg_members_load(roleid, m);
	if (sized)
		sized(m->ngroups, arg);
	LWLockAcquire(lock, LW_EXCLUSIVE);
	rg_members_store(generation, roleid, rolname, rolsuper, rolcreaterole, m);
	if (!lock_held)
		LWLockRelease(lock);
}

/* A database from the cache, into db.  False on a miss.  Lock held. */
static bool
rg_database_lookup(const char *dbname, RGDatabase *db)
{
	RGDatabaseEntry *e;
	NameData	key;

	namestrcpy(&key, dbname);
	e = hash_search(rg_databases_hash, &key, HASH_FIND, NULL);
	if (e == NULL ||
		e->generation != pg_atomic_read_u64(rg_generation(RG_GEN_DATABASES)))
		return false;
	*db = e->db;
	return true;
}

/*
 * Store what rg_database_fresh read, under the generation read before it.
 * Lock held exclusively.
 */
static void
rg_database_store(uint64 generation, const char *dbname, const RGDatabase *db)
{
	RGDatabaseEntry *e;
	NameData	key;

	if (generation != pg_atomic_read_u64(rg_generation(RG_GEN_DATABASES)))
		return;
	if (hash_get_num_entries(rg_databases_hash) >= RG_DATABASES_CACHED)
		rg_hash_empty(rg_databases_hash);
	namestrcpy(&key, dbname);
	e = hash_search(rg_databases_hash, &key, HASH_ENTER_NULL, NULL);
	if (e == NULL)
		return;
	e->generation = generation;
	e->db = *db;
}

/*
 * The database checks core makes after the hook, for a login to "dbname"
 * by this role: true if core will refuse it (no such database, invalid,
 * not allowing connections, or no CONNECT privilege for a role that is not
 * a superuser).  *dboid is the database's OID.  From the database cache,
 * or on a miss from the catalog, stored for the next time.  Caller holds
 * the main lock exclusively; it is let go while the catalogs are read (a
 * miss, or the privilege check for a database PUBLIC may not connect to)
 * and taken again.
 */
bool
rg_database_refuses(const char *dbname, Oid roleid, bool rolsuper, Oid *dboid)
{
	LWLock	   *lock = rg_lock();
	RGDatabase	db;
	bool		hit;
	bool		refuses;
	uint64		generation = 0;

	hit = rg_database_lookup(dbname, &db);
	if (hit && (!db.connectable || db.public_connect || rolsuper))
	{
		*dboid = db.oid;
		return !db.connectable;
	}
	LWLockRelease(lock);
	if (!hit)
	{
		/* a full barrier: the catalog is read after the generation */
		generation = pg_atomic_fetch_add_u64(rg_generation(RG_GEN_DATABASES), 0);
		rg_database_fresh(dbname, &db);
	}
	*dboid = db.oid;
	refuses = !db.connectable ||
		(!db.public_connect && !rolsuper &&
		 !rg_has_connect_privilege(db.oid, roleid));
	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (!hit)
		rg_database_store(generation, dbname, &db);
	return refuses;
}
