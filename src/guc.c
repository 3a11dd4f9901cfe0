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
 * PGOPTIONS or ALTER ROLE/DATABASE ... SET.  And every setting is
 * GUC_SUPERUSER_ONLY (RG_GUC_FLAGS): the policy is read by superusers and
 * pg_read_all_settings (so pg_monitor) only, through SHOW, current_setting
 * and pg_settings alike, as the views are; the deny list would otherwise
 * tell any role which hosts are not denied.  (role_guard.library_version,
 * no policy, stays readable.)
 *
 * Which copy decides.  Every process has its own copy of the settings,
 * taken when it started (forked from the postmaster) and renewed when it
 * processes a SIGHUP; a backend still authenticating processes none, so a
 * login could be decided by the settings of before a reload, and re-apply
 * an older reservation list after the newer one.  So every assign hook of
 * a PGC_SIGHUP setting adds the value to a hash of the process's whole
 * policy (rg_policy_noted), and the postmaster, which loads a reload before
 * it signals anyone, publishes its hash in shared memory
 * (RGShared.policy_hash, an atomic it writes without a lock).  A process
 * whose hash differs holds an older (or, for a moment, newer) copy: the
 * login path reads the configuration file again before it decides
 * (rg_policy_refresh) and decides only with a copy equal to the
 * postmaster's (checked under role_guard's lock), and no process applies a
 * reservation list from a copy that is not the postmaster's
 * (rg_reserve_apply).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "common/hashfn.h"
#include "utils/builtins.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "compat.h"
#include "role_guard.h"

int			rg_mode = RG_MODE_ENFORCE;
int			rg_max_roles = 1024;
const RGPolicy *rg_budgets = NULL;
const RGHostList *rg_deny_hosts = NULL;
const RGPolicy *rg_idle_timeouts = NULL;
const RGPolicy *rg_idle_in_transaction_timeouts = NULL;
const RGPolicy *rg_reservations = NULL;
uint32		rg_reservations_hash = 0;
int			rg_reservations_total = 0;
bool		rg_superuser_socket_exempt = true;
const RGPolicy *rg_login_waits = NULL;
const RGPolicy *rg_evict_idle = NULL;
const RGPolicy *rg_active_budgets = NULL;
const RGPolicy *rg_active_waits = NULL;
int			rg_max_waiting_logins = 10;
int			rg_deny_covers = RG_COVERS_EXECUTE_PROGRAM | RG_COVERS_WRITE_FILES |
	RG_COVERS_READ_FILES;
int			rg_reap_interval = 10000;
int			rg_event_log_size = 1000;
int			rg_auth_failure_limit = 0;
int			rg_auth_failure_window = 60000;
int			rg_auth_block_time = 600000;
int			rg_max_auth_blocks = 1024;
const RGHostList *rg_auth_exempt_hosts = NULL;
bool		rg_save = true;

/* role_guard.library_version: read only, the version this library was built as */
#ifndef RG_LIBRARY_VERSION
#error "RG_LIBRARY_VERSION is set by the Makefile from role_guard.control"
#endif
static char *rg_library_version = NULL;

static char *rg_budgets_text = NULL;
static char *rg_deny_hosts_text = NULL;
static char *rg_idle_timeouts_text = NULL;
static char *rg_iit_timeouts_text = NULL;
static char *rg_reservations_text = NULL;
static char *rg_login_waits_text = NULL;
static char *rg_evict_idle_text = NULL;
static char *rg_active_budgets_text = NULL;
static char *rg_active_waits_text = NULL;
static char *rg_auth_exempt_hosts_text = NULL;
static char *rg_deny_covers_text = NULL;

/* role_guard.superuser_deny_covers: its words */
static const struct
{
	const char *word;
	int			flag;
}			rg_covers_words[] =
{
	{"createrole", RG_COVERS_CREATEROLE},
	{"pg_execute_server_program", RG_COVERS_EXECUTE_PROGRAM},
	{"pg_write_server_files", RG_COVERS_WRITE_FILES},
	{"pg_read_server_files", RG_COVERS_READ_FILES},
};

/* the flags of every policy setting (see the top of the file) */
#define RG_GUC_FLAGS GUC_SUPERUSER_ONLY

/* This process's policy hash: the sum of each PGC_SIGHUP setting's. */
#define RG_POLICY_SETTINGS 32
static struct
{
	const char *name;
	uint64		hash;
}			rg_noted[RG_POLICY_SETTINGS];
static int	rg_nnoted = 0;
static uint64 rg_policy_hash = 0;

/*
 * An assign hook's new value: into this process's policy hash, and in the
 * postmaster into shared memory (once it exists; rg_policy_publish then).
 */
static void
rg_policy_noted(const char *name, const void *value, size_t len)
{
	uint64		h = hash_bytes_extended((const unsigned char *) name, strlen(name), 0);
	int			i;

	h = hash_bytes_extended((const unsigned char *) value, len, h);
	for (i = 0; i < rg_nnoted && strcmp(rg_noted[i].name, name) != 0; i++)
		;
	if (i == rg_nnoted)
	{
		Assert(rg_nnoted < RG_POLICY_SETTINGS);
		if (rg_nnoted == RG_POLICY_SETTINGS)
			return;
		rg_noted[rg_nnoted].name = name;
		rg_noted[rg_nnoted++].hash = 0;
	}
	rg_policy_hash += h - rg_noted[i].hash;
	rg_noted[i].hash = h;
	if (!IsUnderPostmaster)
		rg_policy_publish();
}

static void
rg_policy_noted_text(const char *name, const char *value)
{
	value = value ? value : "";
	rg_policy_noted(name, value, strlen(value));
}

/* The postmaster (or a single-user backend): publish its hash. */
void
rg_policy_publish(void)
{
	if (rg_shared != NULL)
		pg_atomic_write_u64(&rg_shared->policy_hash, rg_policy_hash);
}

/*
 * The postmaster's policy hash: what it loaded last (0 without role_guard's
 * shared memory).
 */
uint64
rg_policy_loaded(void)
{
	return rg_shared == NULL ? 0 : pg_atomic_read_u64(&rg_shared->policy_hash);
}

/* This process's policy hash. */
uint64
rg_policy_own(void)
{
	return rg_policy_hash;
}

/* Is this process's copy of the settings the one the postmaster loaded? */
bool
rg_policy_current(void)
{
	return rg_shared == NULL || rg_policy_loaded() == rg_policy_hash;
}

/*
 * Make this process's copy of the settings the postmaster's, if it is not
 * (a reload since the process started that it has not processed): read
 * the configuration file, as PostgresMain does on SIGHUP.  Nothing to do,
 * and no I/O, when it is current.  Not under role_guard's lock.
 */
void
rg_policy_refresh(void)
{
	if (!ConfigReloadPending && rg_policy_current())
		return;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
}

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

/*
 * The plain list settings: the check hook parses (rg_check_policy), the
 * assign hook only stores the parsed form, then runs "then" (what a new
 * value of that setting must also change, or nothing).
 */
#define RG_POLICY_SETTING_THEN(fn, gucname, type, target, then) \
static bool \
rg_check_##fn(char **newval, void **extra, GucSource source) \
{ \
	return rg_check_policy(gucname, type, newval, extra); \
} \
static void \
rg_assign_##fn(const char *newval, void *extra) \
{ \
	target = (const RGPolicy *) extra; \
	rg_policy_noted_text(gucname, newval); \
	then; \
}

#define RG_POLICY_SETTING(fn, gucname, type, target) \
	RG_POLICY_SETTING_THEN(fn, gucname, type, target, (void) 0)

RG_POLICY_SETTING(budgets, "role_guard.budgets", RG_POLICY_BUDGETS, rg_budgets)

RG_POLICY_SETTING(idle_timeouts, "role_guard.idle_timeouts", RG_POLICY_TIMEOUTS, rg_idle_timeouts)

RG_POLICY_SETTING(iit_timeouts, "role_guard.idle_in_transaction_timeouts", RG_POLICY_TIMEOUTS, rg_idle_in_transaction_timeouts)

/*
 * While shared_preload_libraries is processed, a bad value in
 * postgresql.conf for an enum or integer setting would only draw a WARNING
 * from define_custom_variable, and the server would start with the
 * default.  So the text is checked before the setting is defined, and a
 * bad one stops the start with the message a reload logs.  (Later, the GUC
 * machinery checks values itself: a reload logs and keeps the old value.)
 */
static void
rg_preload_check_enum(const char *name, const struct config_enum_entry *options)
{
	const char *raw;
	int			i;

	if (!process_shared_preload_libraries_in_progress ||
		(raw = GetConfigOption(name, true, false)) == NULL)
		return;
	for (i = 0; options[i].name; i++)
		if (pg_strcasecmp(raw, options[i].name) == 0)
			return;
	ereport(FATAL,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for parameter \"%s\": \"%s\"", name, raw),
			 errhint("Available values: enforce, monitor, off.")));
}

static void
rg_preload_check_bool(const char *name)
{
	const char *raw;

	if (!process_shared_preload_libraries_in_progress ||
		(raw = GetConfigOption(name, true, false)) == NULL)
		return;
	if (!parse_bool(raw, NULL))
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" requires a Boolean value", name)));
}

static void
rg_preload_check_int(const char *name, int flags, int min, int max)
{
	const char *raw;
	const char *hint = NULL;
	int			val;

	if (!process_shared_preload_libraries_in_progress ||
		(raw = GetConfigOption(name, true, false)) == NULL)
		return;
	if (!parse_int(raw, &val, flags, &hint))
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for parameter \"%s\": \"%s\"", name, raw),
				 hint ? errhint("%s", _(hint)) : 0));
	if (val < min || val > max)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%d%s is outside the valid range for parameter \"%s\" (%d .. %d)",
						val, flags ? " ms" : "", name, min, max)));
}

RG_POLICY_SETTING(login_waits, "role_guard.login_waits", RG_POLICY_TIMEOUTS, rg_login_waits)

RG_POLICY_SETTING(evict_idle, "role_guard.evict_idle", RG_POLICY_TIMEOUTS, rg_evict_idle)

/*
 * The active lists: like the plain ones, and a new value makes every
 * session resolve its counts again (active.c) and tells the executor hooks
 * whether there is anything to take at all.
 */
#define RG_ACTIVE_SETTING(fn, gucname, type, target) \
	RG_POLICY_SETTING_THEN(fn, gucname, type, target, \
						   rg_active_settings_changed())

RG_ACTIVE_SETTING(active_budgets, "role_guard.active_budgets", RG_POLICY_BUDGETS, rg_active_budgets)

RG_ACTIVE_SETTING(active_waits, "role_guard.active_waits", RG_POLICY_TIMEOUTS, rg_active_waits)

/*
 * role_guard.reservations: the grammar, and no more places than there are
 * connection slots (each entry's places may be needed at once).
 */
static bool
rg_check_reservations(char **newval, void **extra, GucSource source)
{
	const RGPolicy *policy;
	int64		total = 0;
	int			slots = rg_connection_slots();
	int			i;

	if (!rg_check_policy("role_guard.reservations", RG_POLICY_RESERVATIONS,
						 newval, extra))
		return false;
	policy = (const RGPolicy *) *extra;
	for (i = 0; i < policy->nentries; i++)
		total += policy->entries[i].value;
	if (total > slots)
	{
		char		err[512];
		char		how[256];

		rg_connection_slots_text(how, sizeof(how));
		snprintf(err, sizeof(err),
				 "The reservations add up to " INT64_FORMAT " connection slots, but only %d exist (%s).",
				 total, slots, how);
		rg_guc_free(*extra);
		*extra = NULL;
		return rg_reject("role_guard.reservations", *newval, err);
	}
	return true;
}

static void
rg_assign_reservations(const char *newval, void *extra)
{
	const RGPolicy *policy = (const RGPolicy *) extra;
	int			i;

	rg_reservations = policy;
	rg_reservations_total = 0;
	for (i = 0; policy && i < policy->nentries; i++)
		rg_reservations_total += policy->entries[i].value;
	/* what identifies this list in shared memory (see reserve.c) */
	rg_reservations_hash = newval ? hash_bytes((const unsigned char *) newval,
											   strlen(newval)) : 0;
	rg_policy_noted_text("role_guard.reservations", newval);
}

/* Parse a host list setting into *extra; on failure report the bad entry. */
static bool
rg_check_host_list(const char *name, char **newval, void **extra)
{
	char		err[512];
	RGHostList *list;

	list = rg_hosts_parse(*newval, rg_guc_alloc, err, sizeof(err));
	if (list == NULL)
		return rg_reject(name, *newval, err);
	*extra = list;
	return true;
}

/*
 * An empty list (the default '') is stored as NULL: every reader tests
 * "!= NULL" for "a host list is set", and a reaper scan or a login with
 * nothing configured must do no work for it.
 */
static const RGHostList *
rg_hosts_or_null(void *extra)
{
	const RGHostList *list = (const RGHostList *) extra;

	return list != NULL && (list->all || list->nentries > 0) ? list : NULL;
}

/*
 * The host list settings: one grammar (superuser_deny_hosts's).  A change
 * makes the sessions' superuser check look again once (deny.c).
 */
#define RG_HOSTS_SETTING(fn, gucname, target) \
static bool \
rg_check_##fn(char **newval, void **extra, GucSource source) \
{ \
	return rg_check_host_list(gucname, newval, extra); \
} \
static void \
rg_assign_##fn(const char *newval, void *extra) \
{ \
	target = rg_hosts_or_null(extra); \
	rg_deny_policy_changed(); \
	rg_policy_noted_text(gucname, newval); \
}

RG_HOSTS_SETTING(hosts, "role_guard.superuser_deny_hosts", rg_deny_hosts)

RG_HOSTS_SETTING(exempt_hosts, "role_guard.auth_block_exempt_hosts", rg_auth_exempt_hosts)

/* role_guard.auth_failure_limit */
static void
rg_assign_auth_failure_limit(int newval, void *extra)
{
	rg_policy_noted("role_guard.auth_failure_limit", &newval, sizeof(newval));
}

/*
 * role_guard.superuser_deny_covers: a list of the words in rg_covers_words
 * (or empty: superusers and their members only), parsed into a bit mask.
 */
static bool
rg_check_covers(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *words;
	ListCell   *lc;
	int			mask = 0;
	int		   *result;

	if (!SplitIdentifierString(raw, ',', &words))
		return rg_reject("role_guard.superuser_deny_covers", *newval,
						 "The value is not a comma-separated list of words: an entry is empty, or a quote is not closed.");
	foreach(lc, words)
	{
		const char *w = (const char *) lfirst(lc);
		int			i;
		int			flag = 0;

		for (i = 0; i < (int) lengthof(rg_covers_words) && flag == 0; i++)
			if (strcmp(w, rg_covers_words[i].word) == 0)
				flag = rg_covers_words[i].flag;
		if (flag == 0)
		{
			char		err[256];

			snprintf(err, sizeof(err),
					 "Unknown word \"%s\": the words are createrole, pg_execute_server_program, pg_write_server_files and pg_read_server_files.",
					 w);
			return rg_reject("role_guard.superuser_deny_covers", *newval, err);
		}
		if (mask & flag)
		{
			char		err[256];

			/* as the lists refuse an entry given twice */
			snprintf(err, sizeof(err), "Word \"%s\" is given twice.", w);
			return rg_reject("role_guard.superuser_deny_covers", *newval, err);
		}
		mask |= flag;
	}
	result = rg_guc_alloc(sizeof(int));
	if (result == NULL)
		return false;
	*result = mask;
	*extra = result;
	return true;
}

static void
rg_assign_covers(const char *newval, void *extra)
{
	rg_deny_covers = *(const int *) extra;
	rg_deny_policy_changed();
	rg_policy_noted_text("role_guard.superuser_deny_covers", newval);
}

static void
rg_assign_mode(int newval, void *extra)
{
	rg_mode = newval;
	rg_deny_policy_changed();
	rg_policy_noted("role_guard.mode", &newval, sizeof(newval));
}

#define RG_COVERS_DEFAULT "pg_execute_server_program, pg_write_server_files, pg_read_server_files"

/* The other scalar PGC_SIGHUP settings: only noted in the policy hash. */
#define RG_SCALAR_NOTED(fn, gucname, type) \
static void \
rg_assign_##fn(type newval, void *extra) \
{ \
	rg_policy_noted(gucname, &newval, sizeof(newval)); \
}

RG_SCALAR_NOTED(socket_exempt, "role_guard.superuser_socket_exempt", bool)

RG_SCALAR_NOTED(max_waiting, "role_guard.max_waiting_logins", int)

RG_SCALAR_NOTED(reap_interval, "role_guard.reap_interval", int)

RG_SCALAR_NOTED(auth_failure_window, "role_guard.auth_failure_window", int)

RG_SCALAR_NOTED(auth_block_time, "role_guard.auth_block_time", int)

/* The list settings, all PGC_SIGHUP and GUC_LIST_INPUT, default ''. */
static const struct
{
	const char *name;
	const char *description;
	char	  **text;
	GucStringCheckHook check;
	GucStringAssignHook assign;
}			rg_list_settings[] =
{
	{"role_guard.budgets",
		"Connection budgets: comma-separated name=N, *=N, +group=N, @db=N, name@db=N.",
	&rg_budgets_text, rg_check_budgets, rg_assign_budgets},
	{"role_guard.superuser_deny_hosts",
		"Addresses and CIDR blocks (or \"all\") from which superusers may not log in over TCP.",
	&rg_deny_hosts_text, rg_check_hosts, rg_assign_hosts},
	{"role_guard.idle_timeouts",
		"Idle-session limits per role: comma-separated name=DURATION, +group=DURATION, *=DURATION.",
	&rg_idle_timeouts_text, rg_check_idle_timeouts, rg_assign_idle_timeouts},
	{"role_guard.idle_in_transaction_timeouts",
		"Idle-in-transaction limits per role: comma-separated name=DURATION, +group=DURATION, *=DURATION.",
	&rg_iit_timeouts_text, rg_check_iit_timeouts, rg_assign_iit_timeouts},
	{"role_guard.reservations",
		"Connection slots kept for roles and groups: comma-separated name=N, +group=N.",
	&rg_reservations_text, rg_check_reservations, rg_assign_reservations},
	{"role_guard.login_waits",
		"How long a login that finds its place taken may wait for one: name=DURATION, +group=DURATION, *=DURATION.",
	&rg_login_waits_text, rg_check_login_waits, rg_assign_login_waits},
	{"role_guard.evict_idle",
		"Sessions that may be ended to make room, idle at least: name=DURATION, +group=DURATION, *=DURATION.",
	&rg_evict_idle_text, rg_check_evict_idle, rg_assign_evict_idle},
	{"role_guard.active_budgets",
		"Active budgets: at most N transactions in progress, comma-separated name=N, *=N, +group=N, @db=N, name@db=N.",
	&rg_active_budgets_text, rg_check_active_budgets, rg_assign_active_budgets},
	{"role_guard.active_waits",
		"How long a statement may wait for an active place: name=DURATION, +group=DURATION, *=DURATION (0: refuse at once).",
	&rg_active_waits_text, rg_check_active_waits, rg_assign_active_waits},
	{"role_guard.auth_block_exempt_hosts",
		"Addresses and CIDR blocks (or \"all\") whose failed logins are neither counted nor blocked.",
	&rg_auth_exempt_hosts_text, rg_check_exempt_hosts, rg_assign_exempt_hosts},
};

/* An integer setting, its bounds checked at start-up too. */
static void
rg_define_int_hooked(const char *name, const char *description, int *var,
					 int boot, int min, int max, GucContext context, int flags,
					 GucIntAssignHook assign)
{
	rg_preload_check_int(name, flags, min, max);
	DefineCustomIntVariable(name, description, NULL, var, boot, min, max,
							context, flags | RG_GUC_FLAGS, NULL, assign, NULL);
}

static void
rg_define_int(const char *name, const char *description, int *var,
			  int boot, int min, int max, GucContext context, int flags)
{
	rg_define_int_hooked(name, description, var, boot, min, max, context,
						 flags, NULL);
}

/* Login blocks after failed authentications (authblock.c). */
static void
rg_define_auth_block_settings(void)
{
	rg_define_int_hooked("role_guard.auth_failure_limit",
						 "Failed authentications of one client address and role name within role_guard.auth_failure_window that block the pair; 0 turns login blocks off.",
						 &rg_auth_failure_limit, 0, 0, 1000000, PGC_SIGHUP, 0,
						 rg_assign_auth_failure_limit);
	rg_define_int_hooked("role_guard.auth_failure_window",
						 "The time within which role_guard.auth_failure_limit failed authentications block a pair.",
						 &rg_auth_failure_window, 60000, 100, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS,
						 rg_assign_auth_failure_window);
	rg_define_int_hooked("role_guard.auth_block_time",
						 "How long a blocked client address and role name pair stays blocked.",
						 &rg_auth_block_time, 600000, 100, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS,
						 rg_assign_auth_block_time);
	rg_define_int("role_guard.max_auth_blocks",
				  "Client address and role name pairs whose failed logins role_guard keeps in shared memory.",
				  &rg_max_auth_blocks, 1024, 1, 1000000, PGC_POSTMASTER, 0);
}

void
rg_guc_init(void)
{
	int			i;

	rg_preload_check_enum("role_guard.mode", rg_mode_options);
	DefineCustomEnumVariable("role_guard.mode",
							 "What role_guard does: enforce, monitor (log and count only) or off.",
							 NULL, &rg_mode, RG_MODE_ENFORCE, rg_mode_options,
							 PGC_SIGHUP, RG_GUC_FLAGS, NULL, rg_assign_mode, NULL);

	for (i = 0; i < (int) lengthof(rg_list_settings); i++)
		DefineCustomStringVariable(rg_list_settings[i].name,
								   rg_list_settings[i].description,
								   NULL, rg_list_settings[i].text, "",
								   PGC_SIGHUP, GUC_LIST_INPUT | RG_GUC_FLAGS,
								   rg_list_settings[i].check,
								   rg_list_settings[i].assign, NULL);

	DefineCustomStringVariable("role_guard.superuser_deny_covers",
							   "What the superuser denial covers besides superusers and their members: createrole, pg_execute_server_program, pg_write_server_files, pg_read_server_files.",
							   NULL, &rg_deny_covers_text, RG_COVERS_DEFAULT,
							   PGC_SIGHUP, GUC_LIST_INPUT | RG_GUC_FLAGS,
							   rg_check_covers, rg_assign_covers, NULL);

	rg_preload_check_bool("role_guard.superuser_socket_exempt");
	DefineCustomBoolVariable("role_guard.superuser_socket_exempt",
							 "Superusers over the Unix socket are never refused by a budget or a reservation.",
							 NULL, &rg_superuser_socket_exempt, true,
							 PGC_SIGHUP, RG_GUC_FLAGS, NULL, rg_assign_socket_exempt, NULL);

	DefineCustomStringVariable("role_guard.library_version",
							   "Version of the loaded role_guard library.",
							   NULL, &rg_library_version, RG_LIBRARY_VERSION,
							   PGC_INTERNAL,
							   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, NULL);

	rg_preload_check_bool("role_guard.save");
	DefineCustomBoolVariable("role_guard.save",
							 "Keep counters, peaks and events across a clean restart.",
							 NULL, &rg_save, true,
							 PGC_SIGHUP, RG_GUC_FLAGS, NULL, NULL, NULL);

	rg_define_int_hooked("role_guard.max_waiting_logins",
						 "The most logins waiting for a place at one time.",
						 &rg_max_waiting_logins, 10, 0, 100000, PGC_SIGHUP, 0,
						 rg_assign_max_waiting);
	rg_define_int_hooked("role_guard.reap_interval",
						 "How often the reaper looks for idle sessions.",
						 &rg_reap_interval, 10000, 100, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS,
						 rg_assign_reap_interval);
	rg_define_int("role_guard.max_roles",
				  "Roles whose counters role_guard keeps in shared memory.",
				  &rg_max_roles, 1024, 16, 1000000, PGC_POSTMASTER, 0);
	rg_define_int("role_guard.event_log_size",
				  "Events kept in shared memory for role_guard_events.",
				  &rg_event_log_size, 1000, 0, 1000000, PGC_POSTMASTER, 0);
	rg_define_auth_block_settings();
}
