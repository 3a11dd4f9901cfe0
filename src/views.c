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
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "role_guard.h"

PG_FUNCTION_INFO_V1(role_guard_role_stats);
PG_FUNCTION_INFO_V1(role_guard_db_stats);
PG_FUNCTION_INFO_V1(role_guard_policy);
PG_FUNCTION_INFO_V1(role_guard_global_stats);
PG_FUNCTION_INFO_V1(role_guard_reset);
PG_FUNCTION_INFO_V1(role_guard_role_timeouts);

/* One role's row: a copy of its counter plus its sessions' states. */
typedef struct RGRoleRow
{
	Oid			roleid;			/* hash key */
	bool		has_counter;
	RGCounter	counter;
	int32		members;		/* sessions of it and of its members */
	int32		active;
	int32		idle;
	int32		idle_in_transaction;
	int32		active_statements;
} RGRoleRow;

/* What a view needs of one admitted session. */
typedef struct RGSlotCopy
{
	Oid			roleid;
	RGBackendState state;
	int32		active_statements;
	bool		groups_overflow;
	int16		ngroups;
	Oid			groups[RG_SLOT_GROUPS];
} RGSlotCopy;

/* A copy of the shared counts, taken under the lock in one go. */
typedef struct RGSnapshot
{
	RGCounter  *counters;
	int			ncounters;
	RGSlotCopy *slots;
	int			nslots;
} RGSnapshot;

/*
 * Copy the counters (of the kinds wanted) and the admitted sessions.
 * Nothing is allocated under the lock: the copy is sized first and taken
 * again, larger, in the rare case the table grew in between.
 */
static void
rg_snapshot(RGSnapshot *snap, bool roles, bool with_slots)
{
	int			room = hash_get_num_entries(rg_counter_table()) + 16;
	int			nbackends = rg_backend_count();
	HASH_SEQ_STATUS status;
	RGCounter  *c;
	int			procno;

	snap->slots = with_slots ? palloc(sizeof(RGSlotCopy) * nbackends) : NULL;
	for (;;)
	{
		snap->counters = palloc(sizeof(RGCounter) * room);
		LWLockAcquire(rg_lock(), LW_SHARED);
		if (hash_get_num_entries(rg_counter_table()) <= room)
			break;
		room = hash_get_num_entries(rg_counter_table()) + 16;
		LWLockRelease(rg_lock());
		pfree(snap->counters);
	}
	snap->ncounters = 0;
	hash_seq_init(&status, rg_counter_table());
	while ((c = hash_seq_search(&status)) != NULL)
	{
		if ((c->key.kind == RG_COUNTER_ROLE) == roles)
			memcpy(&snap->counters[snap->ncounters++], c, sizeof(RGCounter));
	}
	snap->nslots = 0;
	for (procno = 0; with_slots && procno < nbackends; procno++)
	{
		RGBackend  *slot = rg_backend(procno);
		RGSlotCopy *copy = &snap->slots[snap->nslots];

		if (slot->pid == 0)
			continue;
		copy->roleid = slot->roleid;
		copy->state = rg_backend_state(procno, slot, NULL);
		copy->active_statements = slot->active_statements;
		copy->groups_overflow = slot->groups_overflow;
		copy->ngroups = slot->ngroups;
		memcpy(copy->groups, slot->groups, sizeof(Oid) * slot->ngroups);
		snap->nslots++;
	}
	LWLockRelease(rg_lock());
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

Datum
role_guard_role_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASHCTL		ctl;
	HTAB	   *rows;
	HASH_SEQ_STATUS status;
	RGSnapshot	snap;
	RGCounter  *c;
	RGRoleRow  *row;
	int			i;
	int			j;

	rg_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	rg_snapshot(&snap, true, true);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(RGRoleRow);
	ctl.hcxt = CurrentMemoryContext;
	rows = hash_create("role_guard role rows", 256, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (i = 0; i < snap.ncounters; i++)
	{
		row = rg_role_row(rows, snap.counters[i].key.roleid);
		row->has_counter = true;
		memcpy(&row->counter, &snap.counters[i], sizeof(RGCounter));
	}
	for (i = 0; i < snap.nslots; i++)
	{
		RGSlotCopy *slot = &snap.slots[i];

		row = rg_role_row(rows, slot->roleid);
		row->members++;
		switch (slot->state)
		{
			case RG_STATE_ACTIVE:
				row->active++;
				break;
			case RG_STATE_IDLE:
				row->idle++;
				break;
			case RG_STATE_IDLE_IN_TRANSACTION:
				row->idle_in_transaction++;
				break;
		}
		row->active_statements += slot->active_statements;
		if (slot->groups_overflow)
		{
			/* the slot holds only some of its groups: read them all now */
			int			ngroups;
			Oid		   *groups = rg_member_of(slot->roleid, &ngroups);

			for (j = 0; j < ngroups; j++)
				rg_role_row(rows, groups[j])->members++;
			pfree(groups);
		}
		else
			for (j = 0; j < slot->ngroups; j++)
				rg_role_row(rows, slot->groups[j])->members++;
	}

	hash_seq_init(&status, rows);
	while ((row = hash_seq_search(&status)) != NULL)
	{
		Datum		values[22];
		bool		nulls[22];

		c = &row->counter;
		/* a kept member count also has the sessions of roles in many groups */
		if (row->has_counter && c->members_tracked)
			row->members = c->member_connections;
		memset(nulls, 0, sizeof(nulls));
		i = 0;
		values[i++] = ObjectIdGetDatum(row->roleid);
		values[i++] = NameGetDatum(&c->rolname);
		nulls[0 + 1] = !row->has_counter;
		values[i++] = BoolGetDatum(c->rolsuper);
		nulls[2] = !row->has_counter;
		values[i++] = Int32GetDatum(c->connections);
		values[i++] = Int32GetDatum(row->members);
		values[i++] = Int32GetDatum(c->peak);
		values[i++] = Int32GetDatum(row->active);
		values[i++] = Int32GetDatum(row->idle);
		values[i++] = Int32GetDatum(row->idle_in_transaction);
		values[i++] = Int64GetDatum(c->rejected);
		values[i++] = Int64GetDatum(c->would_reject);
		values[i++] = Int64GetDatum(c->entry_rejected);
		values[i++] = Int64GetDatum(c->entry_would_reject);
		values[i++] = Int64GetDatum(c->group_rejected);
		values[i++] = Int64GetDatum(c->group_would_reject);
		values[i++] = Int64GetDatum(c->superuser_denied);
		values[i++] = Int64GetDatum(c->would_deny);
		values[i++] = Int64GetDatum(c->reaped);
		values[i++] = Int64GetDatum(c->would_reap);
		values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&c->statements));
		values[i++] = Int32GetDatum(row->active_statements);
		if (c->last_rejected != 0)
			values[i] = TimestampTzGetDatum(c->last_rejected);
		else
			nulls[i] = true;
		i++;
		Assert(i == lengthof(values));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
role_guard_db_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RGSnapshot	snap;
	int			i;

	rg_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	rg_snapshot(&snap, false, false);

	for (i = 0; i < snap.ncounters; i++)
	{
		RGCounter  *c = &snap.counters[i];
		Datum		values[6];
		bool		nulls[6];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(c->key.kind == RG_COUNTER_DB ?
										"database" : "role_database");
		values[1] = ObjectIdGetDatum(c->key.roleid);
		nulls[1] = c->key.kind == RG_COUNTER_DB;
		values[2] = NameGetDatum(&c->key.dbname);
		values[3] = Int32GetDatum(c->connections);
		values[4] = Int64GetDatum(c->entry_rejected);
		values[5] = Int64GetDatum(c->entry_would_reject);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

static const char *const rg_kind_names[] = {
	[RG_ENTRY_ROLE] = "role",
	[RG_ENTRY_DEFAULT] = "default",
	[RG_ENTRY_GROUP] = "group",
	[RG_ENTRY_DATABASE] = "database",
	[RG_ENTRY_ROLE_DATABASE] = "role_database",
};

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
	values[2] = Int64GetDatum(stats.default_rejected);
	values[3] = Int64GetDatum(stats.default_would_reject);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

Datum
role_guard_reset(PG_FUNCTION_ARGS)
{
	rg_require_loaded();
	rg_counters_reset();
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
