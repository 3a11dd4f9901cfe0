/*-------------------------------------------------------------------------
 *
 * views.c
 *	  The SQL-callable functions behind role_guard's views.
 *
 * Each function copies what it needs out of shared memory under the shared
 * lock and builds its rows afterwards; names are resolved after the lock is
 * released.  The views themselves (sql/role_guard--*.sql) join these rows
 * with the catalogs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inet.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "role_guard.h"

PG_FUNCTION_INFO_V1(role_guard_role_stats);
PG_FUNCTION_INFO_V1(role_guard_db_stats);
PG_FUNCTION_INFO_V1(role_guard_policy);
PG_FUNCTION_INFO_V1(role_guard_global_stats);
PG_FUNCTION_INFO_V1(role_guard_reset);
PG_FUNCTION_INFO_V1(role_guard_role_timeouts);
PG_FUNCTION_INFO_V1(role_guard_events);
PG_FUNCTION_INFO_V1(role_guard_budget_rows);
PG_FUNCTION_INFO_V1(role_guard_reservation_rows);
PG_FUNCTION_INFO_V1(role_guard_reserve_stats);
PG_FUNCTION_INFO_V1(role_guard_role_waits);
PG_FUNCTION_INFO_V1(role_guard_event_rows);
PG_FUNCTION_INFO_V1(role_guard_role_active);
PG_FUNCTION_INFO_V1(role_guard_active_budget_rows);
PG_FUNCTION_INFO_V1(role_guard_auth_block_rows);
PG_FUNCTION_INFO_V1(role_guard_unblock);
PG_FUNCTION_INFO_V1(role_guard_role_auth);

static const char *const rg_kind_names[] = {
	[RG_ENTRY_ROLE] = "role",
	[RG_ENTRY_DEFAULT] = "default",
	[RG_ENTRY_GROUP] = "group",
	[RG_ENTRY_DATABASE] = "database",
	[RG_ENTRY_ROLE_DATABASE] = "role_database",
};

/* One role's row: a copy of its counter plus its sessions' states. */
typedef struct RGRoleRow
{
	Oid			roleid;			/* hash key */
	bool		has_counter;
	RGCounter	counter;
	NameData	curname;		/* its name now (the counter's if dropped) */
	int32		members;		/* sessions of it and of its members */
	int32		active;
	int32		idle;
	int32		idle_in_transaction;
	int32		active_statements;
	int32		active_places;	/* sessions holding an active place */
	int32		active_waiting; /* ... waiting for one */
} RGRoleRow;

/* What a view needs of one admitted session. */
typedef struct RGSlotCopy
{
	Oid			roleid;
	Oid			dboid;
	RGBackendState state;
	int32		active_statements;
	bool		active_held;	/* holds an active place (active.c) */
	bool		active_waiting; /* waits for one */
	bool		groups_overflow;
	int16		ngroups;
	Oid			groups[RG_SLOT_GROUPS];
} RGSlotCopy;

/* A copy of the shared counts, taken under the lock in one go. */
typedef struct RGSnapshot
{
	RGCounter  *counters;		/* all kinds */
	int			ncounters;
	RGSlotCopy *slots;
	int			nslots;
	RGGlobalStats stats;
	RGReserveState reserve;
	int32		regular_sessions;
} RGSnapshot;

/*
 * Copy the counters, the global counts and the admitted sessions, holding
 * the lock (shared) for RG_SNAPSHOT_PART places of the counter array at a
 * time, then once more for the slots: a scrape of a table of tens of
 * thousands of counters never holds up a login for long.  Each counter is
 * copied whole under the lock; the parts are not one instant (as in
 * pg_stat_activity, a counter may move between them).  Nothing is
 * allocated under the lock: the buffer has room for one more part before
 * each, zeroed beforehand so that its pages are not first touched under it.
 */
#define RG_SNAPSHOT_PART 512

static void
rg_snapshot(RGSnapshot *snap)
{
	int			capacity = rg_counter_capacity();
	int			room = Min(rg_shared->ncounters + RG_SNAPSHOT_PART, capacity);
	int			nbackends = rg_backend_count();
	int			place = 0;
	int			procno;

	snap->slots = palloc0(sizeof(RGSlotCopy) * nbackends);
	snap->counters = palloc0(sizeof(RGCounter) * Max(room, 1));
	snap->ncounters = 0;
	while (place < capacity)
	{
		int			end = Min(place + RG_SNAPSHOT_PART, capacity);

		if (room - snap->ncounters < end - place)
		{
			room = Min(snap->ncounters + (capacity - place), capacity);
			snap->counters = repalloc(snap->counters, sizeof(RGCounter) * room);
			memset(&snap->counters[snap->ncounters], 0,
				   sizeof(RGCounter) * (room - snap->ncounters));
		}
		LWLockAcquire(rg_lock(), LW_SHARED);
		for (; place < end; place++)
		{
			const RGCounter *c = rg_counter_at(place);

			if (c->key.kind != 0)
				memcpy(&snap->counters[snap->ncounters++], c, sizeof(RGCounter));
		}
		LWLockRelease(rg_lock());
	}

	LWLockAcquire(rg_lock(), LW_SHARED);
	snap->nslots = 0;
	for (procno = 0; procno < nbackends; procno++)
	{
		RGBackend  *slot = rg_backend(procno);
		RGSlotCopy *copy = &snap->slots[snap->nslots];

		if (slot->pid == 0)
			continue;
		copy->roleid = slot->roleid;
		copy->dboid = slot->dboid;
		copy->state = rg_backend_state(procno, slot, NULL);
		copy->active_statements = slot->active_statements;
		rg_active_proc_state(procno, &copy->active_held, &copy->active_waiting);
		copy->groups_overflow = slot->groups_overflow;
		copy->ngroups = slot->ngroups;
		memcpy(copy->groups, slot->groups, sizeof(Oid) * slot->ngroups);
		snap->nslots++;
	}
	snap->stats = *rg_global_stats();
	snap->reserve = rg_shared->reserve;
	snap->regular_sessions = rg_shared->regular_sessions;
	LWLockRelease(rg_lock());
}

/* A hash in the current memory context, keyed by bytes. */
HTAB *
rg_local_hash(const char *name, Size keysize, Size entrysize, long n)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, Max(n, 16), &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* The start of a set-returning function over the shared counts. */
static void
rg_srf_snapshot(FunctionCallInfo fcinfo, RGSnapshot *snap)
{
	rg_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	rg_snapshot(snap);
}

static RGRoleRow *
rg_role_row(HTAB *rows, Oid roleid)
{
	bool		found;
	RGRoleRow  *row = hash_search(rows, &roleid, HASH_ENTER, &found);

	if (!found)
		memset((char *) row + sizeof(Oid), 0, sizeof(RGRoleRow) - sizeof(Oid));
	return row;
}

/* One session: its state for its role's row, its place in its groups'. */
static void
rg_role_rows_add_slot(HTAB *rows, const RGSlotCopy *slot)
{
	RGRoleRow  *row = rg_role_row(rows, slot->roleid);
	int			j;

	row->members++;
	if (slot->state == RG_STATE_ACTIVE)
		row->active++;
	else if (slot->state == RG_STATE_IDLE)
		row->idle++;
	else
		row->idle_in_transaction++;
	row->active_statements += slot->active_statements;
	row->active_places += slot->active_held;
	row->active_waiting += slot->active_waiting;
	if (slot->groups_overflow)
	{
		/* the slot holds only some of its groups: read them all now */
		RGMembers	m;
		NameData	name;
		bool		super;
		bool		createrole;

		m.groups = palloc(sizeof(Oid) * RG_MEMBERS_CACHED);
		m.names = NULL;
		m.super = NULL;
		m.createrole = NULL;
		m.ngroups = 0;
		(void) rg_role_groups(slot->roleid, &name, &super, &createrole, &m);
		for (j = 0; j < m.ngroups; j++)
			rg_role_row(rows, m.groups[j])->members++;
		pfree(m.groups);
	}
	else
		for (j = 0; j < slot->ngroups; j++)
			rg_role_row(rows, slot->groups[j])->members++;
}

/*
 * One row per role that has a counter or is a session's role or group,
 * built from a snapshot after the lock is released.  A role's member
 * count is its kept one when role_guard keeps it (it then also has the
 * sessions of roles in more groups than a slot records), else the count of
 * the sessions whose slots name it.
 */
static HTAB *
rg_role_rows(const RGSnapshot *snap)
{
	HTAB	   *rows;
	HASH_SEQ_STATUS status;
	RGRoleRow  *row;
	int			i;

	rows = rg_local_hash("role_guard role rows", sizeof(Oid), sizeof(RGRoleRow),
						 snap->ncounters + snap->nslots);
	for (i = 0; i < snap->ncounters; i++)
	{
		if (snap->counters[i].key.kind != RG_COUNTER_ROLE)
			continue;
		row = rg_role_row(rows, snap->counters[i].key.roleid);
		row->has_counter = true;
		memcpy(&row->counter, &snap->counters[i], sizeof(RGCounter));
	}
	for (i = 0; i < snap->nslots; i++)
		rg_role_rows_add_slot(rows, &snap->slots[i]);

	hash_seq_init(&status, rows);
	while ((row = hash_seq_search(&status)) != NULL)
	{
		char	   *name = GetUserNameFromId(row->roleid, true);

		if (row->has_counter && row->counter.members_tracked)
			row->members = row->counter.member_connections;
		if (name)
			namestrcpy(&row->curname, name);
		else
			row->curname = row->counter.rolname;
	}
	return rows;
}

/* role_guard_role_stats(): one row per role row (see rg_role_rows). */
Datum
role_guard_role_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	RGSnapshot	snap;
	RGRoleRow  *row;

	rg_srf_snapshot(fcinfo, &snap);

	hash_seq_init(&status, rg_role_rows(&snap));
	while ((row = hash_seq_search(&status)) != NULL)
	{
		RGCounter  *c = &row->counter;
		Datum		values[22];
		bool		nulls[22];
		int			i = 0;

		memset(nulls, 0, sizeof(nulls));
		values[i++] = ObjectIdGetDatum(row->roleid);
		nulls[i] = !row->has_counter;
		values[i++] = NameGetDatum(&c->rolname);
		nulls[i] = !row->has_counter;
		values[i++] = BoolGetDatum(c->rolsuper);
		values[i++] = Int32GetDatum(c->connections);
		values[i++] = Int32GetDatum(row->members);
		values[i++] = Int32GetDatum(c->stats.peak);
		values[i++] = Int32GetDatum(row->active);
		values[i++] = Int32GetDatum(row->idle);
		values[i++] = Int32GetDatum(row->idle_in_transaction);
		values[i++] = Int64GetDatum(c->stats.rejected.done);
		values[i++] = Int64GetDatum(c->stats.rejected.would);
		values[i++] = Int64GetDatum(c->stats.entry_rejected.done);
		values[i++] = Int64GetDatum(c->stats.entry_rejected.would);
		values[i++] = Int64GetDatum(c->stats.group_rejected.done);
		values[i++] = Int64GetDatum(c->stats.group_rejected.would);
		values[i++] = Int64GetDatum(c->stats.superuser_denied.done);
		values[i++] = Int64GetDatum(c->stats.superuser_denied.would);
		values[i++] = Int64GetDatum(c->stats.reaped.done);
		values[i++] = Int64GetDatum(c->stats.reaped.would);
		values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&c->statements));
		values[i++] = Int32GetDatum(row->active_statements);
		nulls[i] = c->stats.last_rejected == 0;
		values[i++] = TimestampTzGetDatum(c->stats.last_rejected);
		Assert(i == lengthof(values));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* Look-ups over a snapshot, for the budget rows. */
typedef struct RGKeyedCounter
{
	RGCounterKey key;			/* hash key */
	const RGCounter *counter;
} RGKeyedCounter;

typedef struct RGNamedRow
{
	NameData	name;			/* hash key: a role's name now */
	const RGRoleRow *row;
} RGNamedRow;

typedef struct RGLookup
{
	const RGSnapshot *snap;
	HTAB	   *rows;			/* RGRoleRow by role OID */
	HTAB	   *by_key;			/* RGKeyedCounter by counter key */
	HTAB	   *by_name;		/* RGNamedRow by role name now */
} RGLookup;

static void
rg_lookup_build(RGLookup *lk, const RGSnapshot *snap)
{
	HASH_SEQ_STATUS status;
	RGRoleRow  *row;
	int			i;

	lk->snap = snap;
	lk->rows = rg_role_rows(snap);
	lk->by_key = rg_local_hash("role_guard counters by key", sizeof(RGCounterKey),
							   sizeof(RGKeyedCounter), snap->ncounters);
	lk->by_name = rg_local_hash("role_guard roles by name", sizeof(NameData),
								sizeof(RGNamedRow), hash_get_num_entries(lk->rows));
	for (i = 0; i < snap->ncounters; i++)
	{
		RGKeyedCounter *k = hash_search(lk->by_key, &snap->counters[i].key,
										HASH_ENTER, NULL);

		k->counter = &snap->counters[i];
	}
	hash_seq_init(&status, lk->rows);
	while ((row = hash_seq_search(&status)) != NULL)
	{
		NameData	key;
		RGNamedRow *n;

		memset(&key, 0, sizeof(key));
		strlcpy(NameStr(key), NameStr(row->curname), NAMEDATALEN);
		n = hash_search(lk->by_name, &key, HASH_ENTER, NULL);
		n->row = row;
	}
}

static const RGRoleRow *
rg_lookup_role(const RGLookup *lk, const char *name)
{
	NameData	key;
	RGNamedRow *n;

	memset(&key, 0, sizeof(key));
	strlcpy(NameStr(key), name, NAMEDATALEN);
	n = hash_search(lk->by_name, &key, HASH_FIND, NULL);
	return n ? n->row : NULL;
}

static const RGCounter *
rg_lookup_counter(const RGLookup *lk, RGCounterKind kind, Oid roleid,
				  Oid dboid)
{
	RGCounterKey key;
	RGKeyedCounter *k;

	memset(&key, 0, sizeof(key));
	key.kind = kind;
	key.roleid = roleid;
	key.dboid = dboid;
	k = hash_search(lk->by_key, &key, HASH_FIND, NULL);
	return k ? k->counter : NULL;
}

/*
 * One budget entry's numbers, by the same rule the login path checks
 * (rg_entry_used): the count it limits now, and its refusals.
 */
static void
rg_budget_numbers(const RGEntry *e, const RGLookup *lk, int32 *used,
				  RGOutcome *rejected)
{
	const RGRoleRow *row = NULL;
	const RGCounter *c = NULL;
	HASH_SEQ_STATUS status;
	RGRoleRow  *r;
	Oid			dboid = InvalidOid;

	*used = 0;
	memset(rejected, 0, sizeof(*rejected));
	if (e->kind != RG_ENTRY_DEFAULT && e->kind != RG_ENTRY_DATABASE)
		row = rg_lookup_role(lk, e->name);
	if (e->kind == RG_ENTRY_DATABASE || e->kind == RG_ENTRY_ROLE_DATABASE)
		dboid = get_database_oid(e->db, true);
	switch ((RGEntryKind) e->kind)
	{
		case RG_ENTRY_ROLE:
			if (row && row->has_counter)
				c = &row->counter;
			break;
		case RG_ENTRY_GROUP:
			if (row)
			{
				*used = row->members;
				*rejected = row->counter.stats.group_rejected;
			}
			return;
		case RG_ENTRY_DATABASE:
			c = rg_lookup_counter(lk, RG_COUNTER_DB, InvalidOid, dboid);
			break;
		case RG_ENTRY_ROLE_DATABASE:
			if (row)
				c = rg_lookup_counter(lk, RG_COUNTER_ROLEDB, row->roleid, dboid);
			break;
		case RG_ENTRY_DEFAULT:
			/* "*" counts, per role, the roles without an entry of their own */
			hash_seq_init(&status, lk->rows);
			while ((r = hash_seq_search(&status)) != NULL)
				if (r->has_counter &&
					rg_policy_lookup(rg_budgets, RG_ENTRY_ROLE, NameStr(r->curname), NULL) == NULL)
					*used += r->counter.connections;
			*rejected = lk->snap->stats.default_rejected;
			return;
	}
	if (c)
	{
		*used = c->connections;
		*rejected = c->stats.entry_rejected;
	}
	else if (e->kind == RG_ENTRY_DATABASE || (e->kind == RG_ENTRY_ROLE_DATABASE && row))
	{
		/* not counted yet: no login since the entry came (see rg_kept_counter) */
		int			i;

		for (i = 0; i < lk->snap->nslots && OidIsValid(dboid); i++)
			if (lk->snap->slots[i].dboid == dboid &&
				(e->kind == RG_ENTRY_DATABASE || lk->snap->slots[i].roleid == row->roleid))
				(*used)++;
	}
}

/* The columns after "entry" and "kind" of one entry's row. */
typedef void (*RGEntryRowFill) (const RGEntry *e, const RGLookup *lk,
								Datum *values);

/*
 * One row per entry of a setting: "entry" (its left side as the server
 * folds and quotes it), "kind", then what "fill" puts.
 */
static Datum
rg_entry_rows(FunctionCallInfo fcinfo, const RGPolicy *policy, int ncolumns,
			  RGEntryRowFill fill)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RGSnapshot	snap;
	RGLookup	lk;
	int			i;

	if (policy == NULL || policy->nentries == 0)
	{
		rg_require_loaded();
		InitMaterializedSRF(fcinfo, 0);
		return (Datum) 0;
	}
	rg_srf_snapshot(fcinfo, &snap);
	rg_lookup_build(&lk, &snap);
	for (i = 0; i < policy->nentries; i++)
	{
		const RGEntry *e = &policy->entries[i];
		char		text[RG_ENTRY_TEXT_LEN];
		Datum		values[8];
		bool		nulls[8] = {0};

		Assert(ncolumns <= lengthof(values));
		rg_entry_format(e, text, sizeof(text));
		values[0] = CStringGetTextDatum(text);
		values[1] = CStringGetTextDatum(rg_kind_names[e->kind]);
		fill(e, &lk, values + 2);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* A budget entry: its limit, what it counts now, its refusals. */
static void
rg_budget_row(const RGEntry *e, const RGLookup *lk, Datum *values)
{
	int32		used;
	RGOutcome	rejected;

	rg_budget_numbers(e, lk, &used, &rejected);
	values[0] = Int32GetDatum(e->value);
	values[1] = Int32GetDatum(used);
	values[2] = Int64GetDatum(rejected.done);
	values[3] = Int64GetDatum(rejected.would);
}

/* role_guard_budget_rows(): one row per budget entry, numbers from C. */
Datum
role_guard_budget_rows(PG_FUNCTION_ARGS)
{
	return rg_entry_rows(fcinfo, rg_budgets, 6, rg_budget_row);
}

Datum
role_guard_db_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RGSnapshot	snap;
	int			i;
	char	   *name;
	NameData	datname;

	rg_srf_snapshot(fcinfo, &snap);

	for (i = 0; i < snap.ncounters; i++)
	{
		RGCounter  *c = &snap.counters[i];
		Datum		values[6];
		bool		nulls[6];

		if (c->key.kind == RG_COUNTER_ROLE)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(c->key.kind == RG_COUNTER_DB ?
										"database" : "role_database");
		values[1] = ObjectIdGetDatum(c->key.roleid);
		nulls[1] = c->key.kind == RG_COUNTER_DB;
		/* its name now, or as last seen if it was dropped */
		name = get_database_name(c->key.dboid);
		if (name)
		{
			namestrcpy(&datname, name);
			values[2] = NameGetDatum(&datname);
		}
		else if (c->key.kind == RG_COUNTER_DB)
			values[2] = NameGetDatum(&c->rolname);
		else
			nulls[2] = true;
		values[3] = Int32GetDatum(c->connections);
		values[4] = Int64GetDatum(c->stats.entry_rejected.done);
		values[5] = Int64GetDatum(c->stats.entry_rejected.would);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}


/* Emit one row per entry of a parsed policy. */
static void
rg_policy_rows(ReturnSetInfo *rsinfo, const char *setting, const RGPolicy *policy)
{
	int			i;

	if (policy == NULL)
		return;
	for (i = 0; i < policy->nentries; i++)
	{
		const RGEntry *e = &policy->entries[i];
		char		text[RG_ENTRY_TEXT_LEN];
		NameData	rolname;
		NameData	datname;
		Datum		values[6];
		bool		nulls[6];

		memset(nulls, 0, sizeof(nulls));
		rg_entry_format(e, text, sizeof(text));
		namestrcpy(&rolname, e->name);
		namestrcpy(&datname, e->db);
		values[0] = CStringGetTextDatum(setting);
		values[1] = CStringGetTextDatum(text);
		values[2] = CStringGetTextDatum(rg_kind_names[e->kind]);
		values[3] = NameGetDatum(&rolname);
		nulls[3] = e->name[0] == '\0';
		values[4] = NameGetDatum(&datname);
		nulls[4] = e->db[0] == '\0';
		values[5] = Int32GetDatum(e->value);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

Datum
role_guard_policy(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	rg_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	rg_policy_rows(rsinfo, "budgets", rg_budgets);
	rg_policy_rows(rsinfo, "idle_timeouts", rg_idle_timeouts);
	rg_policy_rows(rsinfo, "idle_in_transaction_timeouts",
				   rg_idle_in_transaction_timeouts);
	return (Datum) 0;
}

Datum
role_guard_global_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4];
	int32		clients = 0;
	int32		replication = 0;
	RGGlobalStats stats;
	int			procno;

	rg_require_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	LWLockAcquire(rg_lock(), LW_SHARED);
	for (procno = 0; procno < rg_backend_count(); procno++)
	{
		RGBackend  *slot = rg_backend(procno);

		if (slot->pid == 0)
			continue;
		if (slot->walsender)
			replication++;
		else
			clients++;
	}
	stats = *rg_global_stats();
	LWLockRelease(rg_lock());

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(clients);
	values[1] = Int32GetDatum(replication);
	values[2] = Int64GetDatum(stats.default_rejected.done);
	values[3] = Int64GetDatum(stats.default_rejected.would);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

Datum
role_guard_reset(PG_FUNCTION_ARGS)
{
	rg_require_loaded();
	rg_counters_reset();
	rg_active_reset();
	rg_events_reset();
	PG_RETURN_VOID();
}

/* An interval of "ms" milliseconds, or NULL for 0 (no limit). */
static void
rg_ms_interval(int32 ms, Datum *value, bool *isnull)
{
	Interval   *iv;

	*isnull = ms <= 0;
	if (*isnull)
		return;
	iv = palloc0(sizeof(Interval));
	iv->time = (int64) ms * 1000;
	*value = IntervalPGetDatum(iv);
}

/* A role's effective idle limits under this session's settings. */
Datum
role_guard_role_timeouts(PG_FUNCTION_ARGS)
{
	Oid			roleid = PG_GETARG_OID(0);
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2];
	RGRoleInfo	info;

	rg_require_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!rg_role_info(roleid, &info))
		info.idle_ms = info.iit_ms = 0;
	rg_ms_interval(info.idle_ms, &values[0], &nulls[0]);
	rg_ms_interval(info.iit_ms, &values[1], &nulls[1]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * The inet value of a stored client_addr, or false for none.  Built as
 * inet_in builds it (pg_inet_net_pton into a zeroed inet), but a text that
 * inet_in would reject gives false (a NULL client_addr), never an error:
 * one bad entry must not make the whole view fail.  A zone ("%...") is cut
 * off first, as core's clean_ipv6_addr does.
 */
static bool
rg_client_inet(const char *stored, Datum *result)
{
	char		text[sizeof(((RGEvent *) NULL)->client_addr)];
	char	   *zone;
	inet	   *dst;
	int			bits;

	memcpy(text, stored, sizeof(text));
	text[sizeof(text) - 1] = '\0';
	if ((zone = strchr(text, '%')) != NULL)
		*zone = '\0';
	if (text[0] == '\0')
		return false;

	dst = (inet *) palloc0(sizeof(inet));
	ip_family(dst) = strchr(text, ':') != NULL ? PGSQL_AF_INET6 : PGSQL_AF_INET;
	bits = pg_inet_net_pton(ip_family(dst), text, ip_addr(dst), -1);
	if (bits < 0 || bits > ip_maxbits(dst))
	{
		pfree(dst);
		return false;
	}
	ip_bits(dst) = bits;
	SET_INET_VARSIZE(dst);
	*result = InetPGetDatum(dst);
	return true;
}

/*
 * The ring, newest first: 1.0's eight columns, and from 1.2 a ninth,
 * query_id (role_guard_event_rows).  A database not yet updated keeps
 * calling role_guard_events() and gets the columns its view expects.
 */
static Datum
rg_event_rows(FunctionCallInfo fcinfo, bool with_query_id)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RGEvent    *copy;
	int			n;
	int			i;

	rg_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	copy = rg_events_copy(&n);
	for (i = 0; i < n; i++)
	{
		RGEvent    *ev = &copy[i];
		Datum		values[9];
		bool		nulls[9];

		memset(nulls, 0, sizeof(nulls));
		values[0] = TimestampTzGetDatum(ev->at);
		values[1] = CStringGetTextDatum(rg_event_name(ev->kind));
		values[2] = NameGetDatum(&ev->rolname);
		nulls[2] = NameStr(ev->rolname)[0] == '\0';
		values[3] = NameGetDatum(&ev->datname);
		nulls[3] = NameStr(ev->datname)[0] == '\0';
		values[4] = (Datum) 0;
		nulls[4] = !rg_client_inet(ev->client_addr, &values[4]);
		values[5] = CStringGetTextDatum(ev->application_name);
		nulls[5] = ev->application_name[0] == '\0';
		values[6] = Int32GetDatum(ev->pid);
		nulls[6] = ev->pid == 0;
		values[7] = CStringGetTextDatum(ev->detail);
		if (with_query_id)
		{
			values[8] = Int64GetDatum(ev->query_id);
			nulls[8] = ev->query_id == 0;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (copy != NULL)
		pfree(copy);
	return (Datum) 0;
}

/* role_guard_events(): 1.0's columns. */
Datum
role_guard_events(PG_FUNCTION_ARGS)
{
	return rg_event_rows(fcinfo, false);
}

/* role_guard_event_rows(): 1.2's, with query_id. */
Datum
role_guard_event_rows(PG_FUNCTION_ARGS)
{
	return rg_event_rows(fcinfo, true);
}

/*
 * A reservation entry: the role or group it names, its places, the
 * sessions it covers now (a role's sessions, or a group's members'), and
 * its unused places.
 */
static void
rg_reservation_row(const RGEntry *e, const RGLookup *lk, Datum *values)
{
	const RGRoleRow *row = rg_lookup_role(lk, e->name);
	int32		used = 0;
	NameData   *name = palloc(sizeof(NameData));

	if (row)
		used = e->kind == RG_ENTRY_GROUP ? row->members : row->counter.connections;
	namestrcpy(name, e->name);
	values[0] = NameGetDatum(name);
	values[1] = Int32GetDatum(e->value);
	values[2] = Int32GetDatum(used);
	values[3] = Int32GetDatum(Max(e->value - used, 0));
}

/* role_guard_reservation_rows(): one row per reservation entry. */
Datum
role_guard_reservation_rows(PG_FUNCTION_ARGS)
{
	return rg_entry_rows(fcinfo, rg_reservations, 6, rg_reservation_row);
}

/*
 * role_guard_reserve_stats(): the reservations' totals and the slots in
 * use, as the login path counts them.
 */
Datum
role_guard_reserve_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {0};
	RGReserveState rs;
	int32		used;
	int32		waiting;

	rg_require_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rg_reserve_sync();
	LWLockAcquire(rg_lock(), LW_SHARED);
	rs = rg_shared->reserve;
	used = rg_shared->regular_sessions;
	waiting = rg_shared->login_queue.n;
	LWLockRelease(rg_lock());
	values[0] = Int32GetDatum(rg_reservations_total);
	values[1] = Int32GetDatum(rs.unused);
	values[2] = Int32GetDatum(rg_connection_slots());
	values[3] = Int32GetDatum(used);
	values[4] = Int32GetDatum(waiting);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* The columns after roleid of one role counter's row. */
typedef void (*RGRoleCounterFill) (const RGCounter *c, Datum *values);

/* One row per role counter: roleid, then what "fill" puts. */
static Datum
rg_role_counter_rows(FunctionCallInfo fcinfo, int ncolumns,
					 RGRoleCounterFill fill)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RGSnapshot	snap;
	int			i;

	rg_srf_snapshot(fcinfo, &snap);
	for (i = 0; i < snap.ncounters; i++)
	{
		const RGCounter *c = &snap.counters[i];
		Datum		values[8];
		bool		nulls[8] = {0};

		Assert(ncolumns <= lengthof(values));
		if (c->key.kind != RG_COUNTER_ROLE)
			continue;
		values[0] = ObjectIdGetDatum(c->key.roleid);
		fill(c, values + 1);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* A role's waits and evictions. */
static void
rg_role_waits_row(const RGCounter *c, Datum *values)
{
	values[0] = Int32GetDatum(c->waiting);
	values[1] = Int64GetDatum(c->stats.waited);
	values[2] = Int64GetDatum(c->stats.wait_timeouts);
	values[3] = Int64GetDatum(c->stats.evicted.done);
	values[4] = Int64GetDatum(c->stats.evicted.would);
}

/* role_guard_role_waits(): per role counter, its waits and evictions. */
Datum
role_guard_role_waits(PG_FUNCTION_ARGS)
{
	return rg_role_counter_rows(fcinfo, 6, rg_role_waits_row);
}

/*
 * role_guard_role_active(): per role, its active budget, the places its
 * sessions hold and the statements waiting now, and what its statements
 * met since the last reset.
 */
Datum
role_guard_role_active(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	RGSnapshot	snap;
	RGRoleRow  *row;

	rg_srf_snapshot(fcinfo, &snap);
	hash_seq_init(&status, rg_role_rows(&snap));
	while ((row = hash_seq_search(&status)) != NULL)
	{
		const RGActiveStats *a = &row->counter.stats.active;
		Datum		values[7];
		bool		nulls[7] = {0};

		values[0] = ObjectIdGetDatum(row->roleid);
		values[1] = Int32GetDatum(rg_active_role_budget(NameStr(row->curname), &nulls[1]));
		values[2] = Int32GetDatum(row->active_places);
		values[3] = Int32GetDatum(row->active_waiting);
		values[4] = Int64GetDatum(a->waited);
		values[5] = Int64GetDatum(a->rejected);
		values[6] = Int64GetDatum(a->would_wait);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * role_guard_active_budget_rows(): one row per active_budgets entry, kind
 * prefixed "active_", its limit, the places its count holds, what it
 * refused and (monitor) would have made wait.
 */
Datum
role_guard_active_budget_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const RGPolicy *policy = rg_active_budgets;
	RGActiveCountCopy *copies;
	int			ncopies;
	int			i;

	rg_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	if (policy == NULL || policy->nentries == 0)
		return (Datum) 0;
	copies = rg_active_copy(&ncopies);
	for (i = 0; i < policy->nentries; i++)
	{
		const RGEntry *e = &policy->entries[i];
		char		text[RG_ENTRY_TEXT_LEN];
		char		kind[32];
		int32		held;
		RGActiveStats stats;
		Datum		values[6];
		bool		nulls[6] = {0};

		rg_active_entry_numbers(e, copies, ncopies, &held, &stats);
		rg_entry_format(e, text, sizeof(text));
		snprintf(kind, sizeof(kind), "active_%s", rg_kind_names[e->kind]);
		values[0] = CStringGetTextDatum(text);
		values[1] = CStringGetTextDatum(kind);
		values[2] = Int32GetDatum(e->value);
		values[3] = Int32GetDatum(held);
		values[4] = Int64GetDatum(stats.rejected);
		values[5] = Int64GetDatum(stats.would_wait);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* An inet host value (/32 or /128) from 4 or 16 address bytes. */
static Datum
rg_inet_datum(int family, const uint8 *addr)
{
	inet	   *dst = (inet *) palloc0(sizeof(inet));

	ip_family(dst) = family == 4 ? PGSQL_AF_INET : PGSQL_AF_INET6;
	ip_bits(dst) = family == 4 ? 32 : 128;
	memcpy(ip_addr(dst), addr, family == 4 ? 4 : 16);
	SET_INET_VARSIZE(dst);
	return InetPGetDatum(dst);
}

/* role_guard_auth_block_rows(): the pairs role_guard_auth_blocks shows. */
Datum
role_guard_auth_block_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RGAuthRow  *rows;
	int			n;
	int			i;

	rg_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	rows = rg_authblock_rows(&n);
	for (i = 0; i < n; i++)
	{
		const RGAuthRow *r = &rows[i];
		Datum		values[5];
		bool		nulls[5] = {0};
		char		name[4 * NAMEDATALEN + 1];

		rg_auth_name_text(NameStr(r->rolname), GetDatabaseEncoding(),
						  name, sizeof(name));
		values[0] = rg_inet_datum(r->family, r->addr);
		values[1] = CStringGetTextDatum(name);
		values[2] = Int32GetDatum(r->failures);
		values[3] = TimestampTzGetDatum(r->first_failure);
		values[4] = TimestampTzGetDatum(r->blocked_until);
		nulls[4] = r->blocked_until == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(rows);
	return (Datum) 0;
}

static void *
rg_palloc_any(size_t size)
{
	return palloc(size);
}

/*
 * role_guard_unblock(client_addr inet, rolname text DEFAULT NULL): end the
 * blocks (and forget the failures) of the pairs whose address is in
 * client_addr (an address, or a network: 10.0.0.0/8) and whose role name
 * is rolname; NULL for either matches every one.  Returns the number of
 * blocks in force it ended.  The address goes through the parser of
 * role_guard.superuser_deny_hosts, so an IPv4-mapped IPv6 address matches
 * IPv4 pairs as a login's does.
 */
Datum
role_guard_unblock(PG_FUNCTION_ARGS)
{
	RGHostList *hosts = NULL;
	char	   *rolname = NULL;

	rg_require_loaded();
	if (!PG_ARGISNULL(0))
	{
		char	   *text = DatumGetCString(DirectFunctionCall1(inet_out,
															   PG_GETARG_DATUM(0)));
		char		err[256];

		hosts = rg_hosts_parse(text, rg_palloc_any, err, sizeof(err));
		if (hosts == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid client address \"%s\"", text),
					 err[0] ? errdetail("%s", err) : 0));
	}
	if (!PG_ARGISNULL(1))
		rolname = text_to_cstring(PG_GETARG_TEXT_PP(1));
	PG_RETURN_INT32(rg_authblock_unblock(hosts, rolname));
}

/* The login blocks begun for a role's name. */
static void
rg_role_auth_row(const RGCounter *c, Datum *values)
{
	values[0] = Int64GetDatum(c->stats.auth_blocked.done);
	values[1] = Int64GetDatum(c->stats.auth_blocked.would);
}

/* role_guard_role_auth(): per role counter, the login blocks of its name. */
Datum
role_guard_role_auth(PG_FUNCTION_ARGS)
{
	return rg_role_counter_rows(fcinfo, 3, rg_role_auth_row);
}
