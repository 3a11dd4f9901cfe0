/*-------------------------------------------------------------------------
 *
 * role_guard.c
 *	  Entry point: refuse to load unless preloaded, then start each part.
 *
 * The parts, each in its own file: guc.c (settings and parsed policy),
 * shmem.c (shared state), auth.c (the login hook), executor.c (statement
 * counts and session state), reaper.c (the idle-session worker), ending.c
 * (requests to end a session, and how the session takes them), views.c
 * (the functions behind the views), deny.c (the superuser denial for the
 * whole session); policy.c parses, roles.c reads roles.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "role_guard.h"

PG_MODULE_MAGIC;

/*
 * Loaded after start-up: by LOAD or CREATE EXTENSION (or a function call)
 * in a session, or as the session starts by session_preload_libraries or
 * local_preload_libraries.  Nothing is set up (no hook, no shared memory;
 * the views' functions say so when called).  In a statement, an ERROR ends
 * the statement.  As a session starts, error handling is not set up yet
 * (no PG_exception_stack): an ERROR would become FATAL and refuse every
 * login, the administrators' too; there the same message is a WARNING and
 * the session goes on without role_guard.
 */
static void
rg_refuse_late_load(void)
{
	ereport(PG_exception_stack != NULL ? ERROR : WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("role_guard must be loaded via shared_preload_libraries"),
			 errdetail("A library loaded after the server started cannot set up its shared memory and hooks; role_guard does nothing in this session."),
			 errhint("Add role_guard to shared_preload_libraries in postgresql.conf and restart the server.")));
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
	{
		rg_refuse_late_load();
		return;
	}

	rg_guc_init();
	MarkGUCPrefixReserved("role_guard");
	rg_shmem_init();
	rg_auth_init();
	rg_authwire_install();
	rg_deny_init();
	rg_members_init();
	rg_executor_init();
	rg_reaper_register();
	rg_end_init();

	/* once per server start: the postmaster loads preloaded libraries */
	if (!IsUnderPostmaster)
		ereport(LOG,
				(errmsg("role_guard %s loaded", RG_LIBRARY_VERSION)));
}
