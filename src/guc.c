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

#include "miscadmin.h"
#include "utils/guc.h"

#include "compat.h"
#include "role_guard.h"

int			rg_mode = RG_MODE_ENFORCE;
int			rg_max_roles = 1024;
const RGPolicy *rg_budgets = NULL;
const RGHostList *rg_deny_hosts = NULL;
const RGPolicy *rg_idle_timeouts = NULL;
const RGPolicy *rg_idle_in_transaction_timeouts = NULL;
int			rg_reap_interval = 10000;
int			rg_event_log_size = 1000;

static char *rg_budgets_text = NULL;
static char *rg_deny_hosts_text = NULL;
static char *rg_idle_timeouts_text = NULL;
static char *rg_iit_timeouts_text = NULL;

static char *rg_mode_text = NULL;

/*
 * role_guard.mode is a string with a check hook rather than an enum, and
 * max_roles is range-checked in a check hook rather than by the GUC
 * machinery: only a check hook can stop the start on a bad value (see
 * rg_reject).
 */
static const struct
{
	const char *name;
	int			mode;
}			rg_mode_names[] = {
	{"enforce", RG_MODE_ENFORCE},
	{"monitor", RG_MODE_MONITOR},
	{"off", RG_MODE_OFF},
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

/*
 * Report a value the parser refused.  While shared_preload_libraries is
 * being processed the GUC machinery would only WARN and start with the
 * default (define_custom_variable re-applies the file's value at WARNING),
 * so there the bad value stops the start instead, with the message a
 * reload logs.
 */
static bool
rg_reject(const char *name, const char *value, const char *err)
{
	if (process_shared_preload_libraries_in_progress)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for parameter \"%s\": \"%s\"", name, value),
				 err[0] != '\0' ? errdetail("%s", err) : 0));
	if (err[0] != '\0')
		GUC_check_errdetail("%s", err);
	return false;
}

/* Parse a list setting into *extra; on failure report the bad entry. */
static bool
rg_check_policy(const char *name, RGPolicyType type, char **newval, void **extra)
{
	char		err[512];
	RGPolicy   *policy;

	policy = rg_policy_parse(type, *newval, rg_guc_alloc, rg_guc_free,
							 err, sizeof(err));
	if (policy == NULL)
		return rg_reject(name, *newval, err);
	*extra = policy;
	return true;
}

static bool
rg_check_budgets(char **newval, void **extra, GucSource source)
{
	return rg_check_policy("role_guard.budgets", RG_POLICY_BUDGETS, newval, extra);
}

static void
rg_assign_budgets(const char *newval, void *extra)
{
	rg_budgets = (const RGPolicy *) extra;
}

static bool
rg_check_idle_timeouts(char **newval, void **extra, GucSource source)
{
	return rg_check_policy("role_guard.idle_timeouts", RG_POLICY_TIMEOUTS,
						   newval, extra);
}

static void
rg_assign_idle_timeouts(const char *newval, void *extra)
{
	rg_idle_timeouts = (const RGPolicy *) extra;
}

static bool
rg_check_iit_timeouts(char **newval, void **extra, GucSource source)
{
	return rg_check_policy("role_guard.idle_in_transaction_timeouts",
						   RG_POLICY_TIMEOUTS, newval, extra);
}

static void
rg_assign_iit_timeouts(const char *newval, void *extra)
{
	rg_idle_in_transaction_timeouts = (const RGPolicy *) extra;
}

static bool
rg_check_mode(char **newval, void **extra, GucSource source)
{
	int			i;
	int		   *mode;

	for (i = 0; i < (int) lengthof(rg_mode_names); i++)
	{
		if (pg_strcasecmp(*newval, rg_mode_names[i].name) == 0)
		{
			mode = rg_guc_alloc(sizeof(int));
			if (mode == NULL)
				return false;
			*mode = rg_mode_names[i].mode;
			*extra = mode;
			return true;
		}
	}
	return rg_reject("role_guard.mode", *newval,
					 "Valid values are \"enforce\", \"monitor\" and \"off\".");
}

static void
rg_assign_mode(const char *newval, void *extra)
{
	rg_mode = *(int *) extra;
}

/* Check an integer setting's range; "unit" is appended to the message. */
static bool
rg_check_range(const char *name, int value, int min, int max, const char *unit)
{
	char		err[256];
	char		val[32];

	if (value >= min && value <= max)
		return true;
	snprintf(err, sizeof(err), "%s must be between %d%s and %d%s.",
			 name, min, unit, max, unit);
	snprintf(val, sizeof(val), "%d%s", value, unit);
	return rg_reject(name, val, err);
}

/*
 * An integer setting's text from postgresql.conf, checked before the
 * setting is defined: define_custom_variable only WARNs about text it
 * cannot parse as a number, before any check hook runs, and starts with
 * the default.  Only while preloading (later, reloads log and keep the old
 * value as usual).
 */
static void
rg_check_int_text(const char *name, int flags)
{
	const char *raw;
	const char *hint = NULL;
	int			val;

	if (!process_shared_preload_libraries_in_progress)
		return;
	raw = GetConfigOption(name, true, false);
	if (raw == NULL || parse_int(raw, &val, flags, &hint))
		return;
	ereport(FATAL,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for parameter \"%s\": \"%s\"", name, raw),
			 hint ? errhint("%s", _(hint)) : 0));
}

static bool
rg_check_reap_interval(int *newval, void **extra, GucSource source)
{
	return rg_check_range("role_guard.reap_interval", *newval, 100, INT_MAX, "ms");
}

static bool
rg_check_event_log_size(int *newval, void **extra, GucSource source)
{
	return rg_check_range("role_guard.event_log_size", *newval, 0, 1000000, "");
}

static bool
rg_check_max_roles(int *newval, void **extra, GucSource source)
{
	return rg_check_range("role_guard.max_roles", *newval, 16, 1000000, "");
}

static bool
rg_check_hosts(char **newval, void **extra, GucSource source)
{
	char		err[512];
	RGHostList *list;

	list = rg_hosts_parse(*newval, rg_guc_alloc, err, sizeof(err));
	if (list == NULL)
		return rg_reject("role_guard.superuser_deny_hosts", *newval, err);
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
	DefineCustomStringVariable("role_guard.mode",
							   "What role_guard does: enforce, monitor (log and count only) or off.",
							   NULL,
							   &rg_mode_text,
							   "enforce",
							   PGC_SIGHUP,
							   0,
							   rg_check_mode, rg_assign_mode, NULL);

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

	DefineCustomStringVariable("role_guard.idle_timeouts",
							   "Idle-session limits per role: comma-separated name=DURATION, +group=DURATION, *=DURATION.",
							   NULL,
							   &rg_idle_timeouts_text,
							   "",
							   PGC_SIGHUP,
							   0,
							   rg_check_idle_timeouts, rg_assign_idle_timeouts, NULL);

	DefineCustomStringVariable("role_guard.idle_in_transaction_timeouts",
							   "Idle-in-transaction limits per role: comma-separated name=DURATION, +group=DURATION, *=DURATION.",
							   NULL,
							   &rg_iit_timeouts_text,
							   "",
							   PGC_SIGHUP,
							   0,
							   rg_check_iit_timeouts, rg_assign_iit_timeouts, NULL);

	rg_check_int_text("role_guard.reap_interval", GUC_UNIT_MS);
	DefineCustomIntVariable("role_guard.reap_interval",
							"How often the reaper looks for idle sessions.",
							NULL,
							&rg_reap_interval,
							10000,
							INT_MIN, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							rg_check_reap_interval, NULL, NULL);

	rg_check_int_text("role_guard.max_roles", 0);
	DefineCustomIntVariable("role_guard.max_roles",
							"Roles whose counters role_guard keeps in shared memory.",
							NULL,
							&rg_max_roles,
							1024,
							INT_MIN, INT_MAX,
							PGC_POSTMASTER,
							0,
							rg_check_max_roles, NULL, NULL);

	rg_check_int_text("role_guard.event_log_size", 0);
	DefineCustomIntVariable("role_guard.event_log_size",
							"Events kept in shared memory for role_guard_events.",
							NULL,
							&rg_event_log_size,
							1000,
							INT_MIN, INT_MAX,
							PGC_POSTMASTER,
							0,
							rg_check_event_log_size, NULL, NULL);
}
