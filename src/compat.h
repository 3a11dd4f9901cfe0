/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every PG_VERSION_NUM difference role_guard meets, as small wrappers.
 *
 * No other file tests PG_VERSION_NUM.  Supported: PostgreSQL 15 to 18.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RG_COMPAT_H
#define RG_COMPAT_H

#include "access/twophase.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/wait_event.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#if PG_VERSION_NUM < 150000
#error "role_guard needs PostgreSQL 15 or later"
#endif

/*
 * This backend's index into ProcGlobal->allProcs, which role_guard also uses
 * to index its own per-backend slots.  PG17 made it MyProcNumber; PG18
 * removed PGPROC.pgprocno.
 */
static inline int
rg_my_procno(void)
{
#if PG_VERSION_NUM >= 170000
	return MyProcNumber;
#else
	return MyProc->pgprocno;
#endif
}

/* A PGPROC's index into ProcGlobal->allProcs (as rg_my_procno). */
static inline int
rg_procno_of(PGPROC *proc)
{
#if PG_VERSION_NUM >= 170000
	return GetNumberFromPGProc(proc);
#else
	return proc->pgprocno;
#endif
}

/*
 * Up to PostgreSQL 15 a role with CREATEROLE may grant membership in any
 * role that is not a superuser (pg_execute_server_program included); from
 * 16 on only in roles it holds with ADMIN OPTION, which makes it a member
 * of them already.
 */
#if PG_VERSION_NUM < 160000
#define RG_CREATEROLE_GRANTS_ANY true
#else
#define RG_CREATEROLE_GRANTS_ANY false
#endif

/* Number of PGPROCs (regular backends, auxiliary processes, prepared xacts). */
static inline int
rg_total_procs(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

/* A PGPROC's current local transaction id (invalid when not in a transaction). */
#if PG_VERSION_NUM >= 170000
#define RG_PROC_LXID(proc)	((proc)->vxid.lxid)
#else
#define RG_PROC_LXID(proc)	((proc)->lxid)
#endif

/* superuser_reserved_connections (renamed in PG16). */
static inline int
rg_superuser_reserved(void)
{
#if PG_VERSION_NUM >= 160000
	return SuperuserReservedConnections;
#else
	return ReservedBackends;
#endif
}

/*
 * The connection slots a login without special privileges may use, as core
 * counts them when it admits one (InitPostgres): max_connections, less
 * superuser_reserved_connections and, from PG16, reserved_connections
 * (kept for pg_use_reserved_connections).  Walsenders, background workers
 * and autovacuum have PGPROCs of their own and use none of these.
 */
static inline int
rg_connection_slots(void)
{
#if PG_VERSION_NUM >= 160000
	return MaxConnections - SuperuserReservedConnections - ReservedConnections;
#else
	return MaxConnections - ReservedBackends;
#endif
}

/*
 * The most connection slots core lets this login use (InitPostgres, after
 * the login hook): a superuser all of max_connections; from PG16 a role
 * with the privileges of pg_use_reserved_connections all but
 * superuser_reserved_connections; any other rg_connection_slots().  Before
 * role_guard's lock (has_privs_of_role may read the catalogs), and only
 * when reserved_connections is set.
 */
static inline int
rg_login_slot_limit(Oid roleid, bool rolsuper)
{
	if (rolsuper)
		return MaxConnections;
#if PG_VERSION_NUM >= 160000
	if (ReservedConnections > 0 &&
		has_privs_of_role(roleid, ROLE_PG_USE_RESERVED_CONNECTIONS))
		return MaxConnections - SuperuserReservedConnections;
#endif
	return rg_connection_slots();
}

/*
 * Are at least n of core's process slots for client backends free now?
 * Core's free list, under its own spinlock (HaveNFreeProcs): the slots held
 * by every backend, also one still authenticating or refused and on its
 * way out, which role_guard's counts do not see.  O(n).
 */
static inline bool
rg_free_procs_at_least(int n)
{
#if PG_VERSION_NUM >= 160000
	int			nfree;

	return n <= 0 || HaveNFreeProcs(n, &nfree);
#else
	return n <= 0 || HaveNFreeProcs(n);
#endif
}

/* The same arithmetic, in words, for messages. */
static inline void
rg_connection_slots_text(char *buf, size_t len)
{
#if PG_VERSION_NUM >= 160000
	if (ReservedConnections > 0)
		snprintf(buf, len, "max_connections %d, less superuser_reserved_connections %d and reserved_connections %d",
				 MaxConnections, SuperuserReservedConnections, ReservedConnections);
	else
		snprintf(buf, len, "max_connections %d, less superuser_reserved_connections %d",
				 MaxConnections, SuperuserReservedConnections);
#else
	snprintf(buf, len, "max_connections %d, less superuser_reserved_connections %d",
			 MaxConnections, ReservedBackends);
#endif
}

/*
 * ExecutorRun's arguments: PG18 dropped execute_once.  A hook is declared
 * as rg_ExecutorRun(RG_EXECUTOR_RUN_PARAMS) and passes RG_EXECUTOR_RUN_ARGS.
 */
#if PG_VERSION_NUM >= 180000
#define RG_EXECUTOR_RUN_PARAMS	QueryDesc *queryDesc, ScanDirection direction, uint64 count
#define RG_EXECUTOR_RUN_ARGS	queryDesc, direction, count
#else
#define RG_EXECUTOR_RUN_PARAMS	QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once
#define RG_EXECUTOR_RUN_ARGS	queryDesc, direction, count, execute_once
#endif

/*
 * Allocate and free a check hook's "extra": plain malloc/free until PG15,
 * guc_malloc/guc_free (a memory context) from PG16.
 */
static inline void *
rg_guc_malloc_extra(size_t size)
{
#if PG_VERSION_NUM >= 160000
	return guc_malloc(LOG, size);
#else
	return malloc(size);
#endif
}

static inline void
rg_guc_free_extra(void *ptr)
{
#if PG_VERSION_NUM >= 160000
	guc_free(ptr);
#else
	free(ptr);
#endif
}

/* CONNECT privilege on a database (PG16 folded the per-kind aclchecks). */
static inline bool
rg_has_connect_privilege(Oid dboid, Oid roleid)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(DatabaseRelationId, dboid, roleid, ACL_CONNECT) == ACLCHECK_OK;
#else
	return pg_database_aclcheck(dboid, roleid, ACL_CONNECT) == ACLCHECK_OK;
#endif
}

/*
 * A wait event of role_guard's: a custom one by this name from PG17 (shown
 * by pg_stat_activity, which on PG18 lists backends still authenticating
 * too), the generic "Extension" before.  The first call registers it in
 * shared memory (takes core's lock): call it before role_guard's lock is
 * taken.  *event caches it.
 */
static inline uint32
rg_custom_wait_event(const char *name, uint32 *event)
{
#if PG_VERSION_NUM >= 170000
	if (*event == 0)
		*event = WaitEventExtensionNew(name);
	return *event;
#else
	return PG_WAIT_EXTENSION;
#endif
}

/* A wait event set for this process's lifetime (PG17 takes a resource owner). */
static inline WaitEventSet *
rg_create_wait_event_set(int nevents)
{
#if PG_VERSION_NUM >= 170000
	return CreateWaitEventSet(NULL, nevents);
#else
	return CreateWaitEventSet(TopMemoryContext, nevents);
#endif
}

/* A login waiting for a place (auth.c, through queue.c). */
static inline uint32
rg_login_wait_event(void)
{
	static uint32 event = 0;

	return rg_custom_wait_event("RoleGuardLoginWait", &event);
}

/* A statement waiting for an active place (active.c). */
static inline uint32
rg_active_wait_event(void)
{
	static uint32 event = 0;

	return rg_custom_wait_event("RoleGuardActiveWait", &event);
}

#endif							/* RG_COMPAT_H */
