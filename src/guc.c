/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  role_guard's settings, their check and assign hooks, and the parsed
 *	  policy the rest of the module reads.
 *
 * List-valued settings are parsed once, in the check hook, by policy.c into
 * a single guc_malloc'd block kept as the setting's "extra"; the assign hook
 * only stores the pointer.  A bad value therefore never reaches the assign
 * hook: on reload the GUC machinery logs the check hook's detail (naming the
 * bad entry) and keeps the old value and its parsed form; at start-up it
 * stops the server with the same message.  The login path reads the parsed
 * form and never parses.
 *
 * Every policy setting is PGC_SIGHUP: a session cannot change it with SET,
 * PGOPTIONS or ALTER ROLE/DATABASE ... SET.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "compat.h"
#include "role_guard.h"

int			rg_mode = RG_MODE_ENFORCE;
int			rg_max_roles = 1024;
const RGPolicy *rg_budgets = NULL;
const RGHostList *rg_deny_hosts = NULL;

static char *rg_budgets_text = NULL;
static char *rg_deny_hosts_text = NULL;

static const struct config_enum_entry rg_mode_options[] = {
	{"enforce", RG_MODE_ENFORCE, false},
	{"monitor", RG_MODE_MONITOR, false},
	{"off", RG_MODE_OFF, false},
	{NULL, 0, false}
};

static void *
rg_guc_alloc(size_t size)
{
	return rg_guc_malloc_extra(size);
}

static void
rg_guc_free(void *ptr)
{
	rg_guc_free_extra(ptr);
}

/* Parse a list setting into *extra; on failure report the bad entry. */
static bool
rg_check_policy(RGPolicyType type, char **newval, void **extra)
{
	char		err[512];
	RGPolicy   *policy;

	policy = rg_policy_parse(type, *newval, rg_guc_alloc, rg_guc_free,
							 err, sizeof(err));
	if (policy == NULL)
	{
		if (err[0] != '\0')
			GUC_check_errdetail("%s", err);
		return false;
	}
	*extra = policy;
	return true;
}

static bool
rg_check_budgets(char **newval, void **extra, GucSource source)
{
	return rg_check_policy(RG_POLICY_BUDGETS, newval, extra);
}

static void
rg_assign_budgets(const char *newval, void *extra)
{
	rg_budgets = (const RGPolicy *) extra;
}

static bool
rg_check_hosts(char **newval, void **extra, GucSource source)
{
	char		err[512];
	RGHostList *list;

	list = rg_hosts_parse(*newval, rg_guc_alloc, err, sizeof(err));
	if (list == NULL)
	{
		if (err[0] != '\0')
			GUC_check_errdetail("%s", err);
		return false;
	}
	*extra = list;
	return true;
}

static void
rg_assign_hosts(const char *newval, void *extra)
{
	rg_deny_hosts = (const RGHostList *) extra;
}

void
rg_guc_init(void)
{
	DefineCustomEnumVariable("role_guard.mode",
							 "What role_guard does: enforce, monitor (log and count only) or off.",
							 NULL,
							 &rg_mode,
							 RG_MODE_ENFORCE,
							 rg_mode_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("role_guard.budgets",
							   "Connection budgets: comma-separated name=N, *=N, +group=N, @db=N, name@db=N.",
							   NULL,
							   &rg_budgets_text,
							   "",
							   PGC_SIGHUP,
							   0,
							   rg_check_budgets, rg_assign_budgets, NULL);

	DefineCustomStringVariable("role_guard.superuser_deny_hosts",
							   "Addresses and CIDR blocks (or \"all\") from which superusers may not log in over TCP.",
							   NULL,
							   &rg_deny_hosts_text,
							   "",
							   PGC_SIGHUP,
							   0,
							   rg_check_hosts, rg_assign_hosts, NULL);

	DefineCustomIntVariable("role_guard.max_roles",
							"Roles whose counters role_guard keeps in shared memory.",
							NULL,
							&rg_max_roles,
							1024,
							16, 1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
}
