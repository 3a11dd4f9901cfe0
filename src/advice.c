/*-------------------------------------------------------------------------
 *
 * advice.c
 *	  role_guard_advice, role_guard_suggested_budgets(), the summary's
 *	  suggested_budgeted and suggested_fits, and role_guard_windows: the
 *	  budget a DBA would compute by hand, from the windows (windows.c).
 *
 * The rule (README, "Advice"): a role seen in the last 31 days (a session,
 * a refusal or a wait) is suggested its 31-day peak plus a quarter of it,
 * at least one more; if it was refused or made to wait in that time, at
 * least its current budget plus a quarter, at least one more.  A role not
 * seen keeps its budget.  The same rule sizes +group entries (from the
 * group's member peak and the refusals charged to the entry) and @db
 * entries (the database's peak and refusals); "*" and name@db entries are
 * kept as they are.
 *
 * The suggested line keeps every entry of role_guard.budgets in its order
 * with its new value, then adds name=N for a role without an entry of its
 * own whose suggestion differs from what "*" gives it.  suggested_budgeted
 * counts that line the way role_guard_summary.budgeted counts the current
 * one (every LOGIN role: its own entry, else "*"; NULL if some role has
 * neither), and suggested_fits compares it with the slots the way
 * "overcommitted" does (rg_connection_slots: max_connections, less
 * superuser_reserved_connections and, from 16, reserved_connections).
 *
 * Active places (role_guard.active_budgets): active_budget is the role's
 * entry in that setting (or "*"); active_peak_31d is the 31-day peak of
 * that entry's count for the role (active.c's peaks, folded into the
 * windows by rg_active_fold), NULL when the role has no such entry and
 * none was seen; suggested_active_budget is the same rule applied to that
 * peak and to the statements that waited for a place or were refused one,
 * NULL without an active budget (nothing to size).
 *
 * Everything is computed from one copy of the windows, taken under the
 * shared lock a part of the counter array at a time, as the views do.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "role_guard.h"

PG_FUNCTION_INFO_V1(role_guard_advice_rows);
PG_FUNCTION_INFO_V1(role_guard_suggested_budgets);
PG_FUNCTION_INFO_V1(role_guard_suggested_totals);
PG_FUNCTION_INFO_V1(role_guard_windows);

#define RG_ADVICE_PART 512

/* One counter's windows, summed at the time of the copy. */
typedef struct RGWindowRow
{
	RGCounterKey key;			/* hash key */
	NameData	name;			/* as the counter last saw it */
	RGWindowSum h24;
	RGWindowSum d31;
} RGWindowRow;

/* A role's row by its name. */
typedef struct RGNamedAdvice
{
	NameData	name;			/* hash key */
	int			index;			/* into RGAdvice.rows */
} RGNamedAdvice;

/* One role's advice. */
typedef struct RGAdviceRow
{
	Oid			roleid;
	NameData	rolname;
	bool		has_budget;
	int32		budget;
	bool		own_entry;		/* a name= entry of its own */
	RGWindowSum h24;
	RGWindowSum d31;
	bool		has_suggestion;
	int32		suggested;
	bool		has_active_budget;
	int32		active_budget;
	bool		has_active_peak;
	bool		has_active_suggestion;
	int32		active_suggested;
	StringInfoData reason;
} RGAdviceRow;

typedef struct RGAdvice
{
	HTAB	   *windows;		/* RGWindowRow by counter key */
	TimestampTz now;
	TimestampTz since;			/* when the windows began */
	RGAdviceRow *rows;
	int			nrows;
	HTAB	   *by_name;		/* RGNamedAdvice by role name */
	StringInfoData line;		/* the suggested role_guard.budgets */
	bool		has_budgeted;
	int32		budgeted;		/* the line, counted as summary.budgeted */
	int32		slots;
	bool		fits;
} RGAdvice;

/*
 * Copy every counter's windows, summed now, into a local hash.  The lock is
 * held shared for RG_ADVICE_PART places at a time; the sums are made with
 * no lock held, from a copy of one part.
 */
static HTAB *
rg_copy_windows(TimestampTz now, TimestampTz *since)
{
	HTAB	   *rows;
	int			capacity = rg_counter_capacity();
	RGCounter  *counters = palloc0(sizeof(RGCounter) * RG_ADVICE_PART);
	RGWindows  *windows = palloc0(sizeof(RGWindows) * RG_ADVICE_PART);
	int			place = 0;

	rg_active_fold();			/* the active peaks not in the windows yet */
	rows = rg_local_hash("role_guard windows", sizeof(RGCounterKey),
						 sizeof(RGWindowRow), 256);
	while (place < capacity)
	{
		int			end = Min(place + RG_ADVICE_PART, capacity);
		int			n = 0;
		int			i;

		LWLockAcquire(rg_lock(), LW_SHARED);
		*since = rg_shared->windows_since;
		for (; place < end; place++)
		{
			const RGCounter *c = rg_counter_at(place);

			if (c->key.kind == 0)
				continue;
			counters[n] = *c;
			windows[n++] = *rg_counter_windows(c);
		}
		LWLockRelease(rg_lock());
		for (i = 0; i < n; i++)
		{
			RGWindowRow *row = hash_search(rows, &counters[i].key, HASH_ENTER, NULL);

			row->name = counters[i].rolname;
			rg_windows_read(&windows[i], counters[i].connections,
							counters[i].members_tracked ? counters[i].member_connections : 0,
							now, *since, &row->h24, &row->d31);
		}
	}
	pfree(counters);
	pfree(windows);
	return rows;
}

static const RGWindowRow *
rg_window_row(const RGAdvice *a, RGCounterKind kind, Oid roleid, Oid dboid)
{
	RGCounterKey key;

	memset(&key, 0, sizeof(key));
	key.kind = kind;
	key.roleid = roleid;
	key.dboid = dboid;
	return hash_search(a->windows, &key, HASH_FIND, NULL);
}

/* A quarter of n, at least one: the headroom the rule adds. */
static int64
rg_margin(int64 n)
{
	return Max(1, (n + 3) / 4);
}

/*
 * The rule, for one entry or role: its 31-day peak, refusals and waits, and
 * its current budget (has_budget false: none).  False: not seen in the
 * window, keep the budget.
 */
static bool
rg_suggest(int32 peak, int64 refused, int64 waited, bool has_budget,
		   int32 budget, int32 *suggested)
{
	int64		s;

	if (peak <= 0 && refused == 0 && waited == 0)
		return false;
	s = peak + rg_margin(peak);
	if ((refused > 0 || waited > 0) && has_budget)
		s = Max(s, budget + rg_margin(budget));
	*suggested = (int32) Min(s, (int64) PG_INT32_MAX);
	return true;
}

static void *
rg_palloc_policy(size_t size)
{
	return palloc(size);
}

static void
rg_pfree_policy(void *ptr)
{
	pfree(ptr);
}

/* Parse a budget-grammar text (the suggested line). */
static RGPolicy *
rg_parse_budgets(const char *text)
{
	char		err[256];

	if (text == NULL)
		return NULL;
	return rg_policy_parse(RG_POLICY_BUDGETS, text, rg_palloc_policy,
						   rg_pfree_policy, err, sizeof(err));
}

/* A role's active part: the same rule for its active budget. */
static void
rg_advice_active(RGAdviceRow *row)
{
	const RGWindowSum *d = &row->d31;

	row->has_active_peak = row->has_active_budget || d->active_peak > 0 ||
		d->active_waited > 0;
	if (!row->has_active_budget)
		return;
	row->has_active_suggestion = true;
	if (!rg_suggest(d->active_peak, 0, d->active_waited, true,
					row->active_budget, &row->active_suggested))
	{
		row->active_suggested = row->active_budget;
		appendStringInfo(&row->reason,
						 " Active: no transaction in the last 31 days: active budget %d kept.",
						 row->active_budget);
	}
	else if (d->active_waited > 0)
		appendStringInfo(&row->reason,
						 " Active: statements waited or were refused %lld times at active budget %d, peak %d transactions: suggested %d.",
						 (long long) d->active_waited, row->active_budget,
						 d->active_peak, row->active_suggested);
	else
		appendStringInfo(&row->reason,
						 " Active: peak %d transactions in progress, active budget %d: suggested %d.",
						 d->active_peak, row->active_budget, row->active_suggested);
}

/* One role's row: budget, windows, suggestion and reason. */
static void
rg_advice_role(RGAdvice *a, RGAdviceRow *row)
{
	const RGEntry *e = rg_policy_lookup(rg_budgets, RG_ENTRY_ROLE,
										NameStr(row->rolname), NULL);
	const RGWindowRow *w = rg_window_row(a, RG_COUNTER_ROLE, row->roleid, InvalidOid);
	const RGWindowSum *d = &row->d31;
	bool		isnull;

	row->own_entry = e != NULL;
	if (e == NULL)
		e = rg_policy_default(rg_budgets);
	row->has_budget = e != NULL;
	row->budget = e ? e->value : 0;
	if (w)
	{
		row->h24 = w->h24;
		row->d31 = w->d31;
	}
	row->active_budget = rg_active_role_budget(NameStr(row->rolname), &isnull);
	row->has_active_budget = !isnull;
	initStringInfo(&row->reason);
	row->has_suggestion = rg_suggest(d->peak, d->rejected, d->waited,
									 row->has_budget, row->budget, &row->suggested);
	if (!row->has_suggestion)
	{
		row->has_suggestion = row->has_budget;
		row->suggested = row->budget;
		appendStringInfoString(&row->reason,
							   "No session, refusal or wait in the last 31 days: the budget is kept.");
	}
	else if (d->rejected > 0 || d->waited > 0)
		appendStringInfo(&row->reason,
						 "Refused %lld and made to wait %lld times in the last 31 days%s; peak %d sessions: suggested above both by a quarter (at least 1).",
						 (long long) d->rejected, (long long) d->waited,
						 row->has_budget ? psprintf(" at budget %d", row->budget) : "",
						 d->peak);
	else
		appendStringInfo(&row->reason,
						 "Peak %d sessions in the last 31 days%s: suggested the peak plus a quarter (at least 1).",
						 d->peak,
						 row->has_budget ? psprintf(", budget %d", row->budget) :
						 ", no budget now");
	rg_advice_active(row);
	if (a->since > rg_windows_time(a->now) - 31 * USECS_PER_DAY)
		appendStringInfo(&row->reason, " Observed only since %s.",
						 timestamptz_to_str(a->since));
}

/*
 * Is a role listed: an entry of its own (in budgets or active_budgets), or
 * seen in the last 31 days?
 */
static bool
rg_advice_listed(const RGAdvice *a, Oid roleid, const char *rolname)
{
	const RGWindowRow *w;

	if (rg_policy_lookup(rg_budgets, RG_ENTRY_ROLE, rolname, NULL) != NULL ||
		rg_policy_lookup(rg_active_budgets, RG_ENTRY_ROLE, rolname, NULL) != NULL)
		return true;
	w = rg_window_row(a, RG_COUNTER_ROLE, roleid, InvalidOid);
	return w && (w->d31.peak > 0 || w->d31.rejected > 0 || w->d31.waited > 0);
}

/* The rows: existing roles listed by rg_advice_listed, from pg_authid. */
static void
rg_advice_rows(RGAdvice *a)
{
	Relation	rel = table_open(AuthIdRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, NULL);
	HeapTuple	tup;
	int			room = 64;

	a->rows = palloc0(sizeof(RGAdviceRow) * room);
	a->nrows = 0;
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_authid form = (Form_pg_authid) GETSTRUCT(tup);
		RGAdviceRow *row;

		if (!rg_advice_listed(a, form->oid, NameStr(form->rolname)))
			continue;
		if (a->nrows == room)
		{
			a->rows = repalloc(a->rows, sizeof(RGAdviceRow) * room * 2);
			memset(&a->rows[room], 0, sizeof(RGAdviceRow) * room);
			room *= 2;
		}
		row = &a->rows[a->nrows++];
		row->roleid = form->oid;
		namestrcpy(&row->rolname, NameStr(form->rolname));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	a->by_name = rg_local_hash("role_guard advice by name", sizeof(NameData),
							   sizeof(RGNamedAdvice), a->nrows);
	for (int i = 0; i < a->nrows; i++)
	{
		RGNamedAdvice *n = hash_search(a->by_name, &a->rows[i].rolname,
									   HASH_ENTER, NULL);

		n->index = i;
		rg_advice_role(a, &a->rows[i]);
	}
}

static const RGAdviceRow *
rg_advice_find(const RGAdvice *a, const char *rolname)
{
	NameData	key;
	RGNamedAdvice *n;

	memset(&key, 0, sizeof(key));
	strlcpy(NameStr(key), rolname, NAMEDATALEN);
	n = hash_search(a->by_name, &key, HASH_FIND, NULL);
	return n ? &a->rows[n->index] : NULL;
}

/* An entry's value in the suggested line. */
static int32
rg_line_value(const RGAdvice *a, const RGEntry *e)
{
	const RGAdviceRow *row;
	const RGWindowRow *w = NULL;
	int32		suggested;

	switch ((RGEntryKind) e->kind)
	{
		case RG_ENTRY_ROLE:
			row = rg_advice_find(a, e->name);
			return row && row->has_suggestion ? row->suggested : e->value;
		case RG_ENTRY_GROUP:
			w = rg_window_row(a, RG_COUNTER_ROLE, get_role_oid(e->name, true),
							  InvalidOid);
			if (w && rg_suggest(w->d31.member_peak, w->d31.member_rejected,
								w->d31.member_waited, true, e->value,
								&suggested))
				return suggested;
			return e->value;
		case RG_ENTRY_DATABASE:
			w = rg_window_row(a, RG_COUNTER_DB, InvalidOid,
							  get_database_oid(e->db, true));
			if (w && rg_suggest(w->d31.peak, w->d31.rejected, w->d31.waited,
								true, e->value, &suggested))
				return suggested;
			return e->value;
		case RG_ENTRY_DEFAULT:
		case RG_ENTRY_ROLE_DATABASE:
			break;
	}
	return e->value;
}

static void
rg_line_add(StringInfo line, const RGEntry *e, int32 value)
{
	char		text[RG_ENTRY_TEXT_LEN];

	rg_entry_format(e, text, sizeof(text));
	appendStringInfo(line, "%s%s=%d", line->len > 0 ? ", " : "", text, value);
}

/* The suggested role_guard.budgets (see the top of this file). */
static void
rg_advice_line(RGAdvice *a)
{
	const RGEntry *dflt = rg_policy_default(rg_budgets);
	int			i;

	initStringInfo(&a->line);
	for (i = 0; rg_budgets && i < rg_budgets->nentries; i++)
		rg_line_add(&a->line, &rg_budgets->entries[i],
					rg_line_value(a, &rg_budgets->entries[i]));
	for (i = 0; i < a->nrows; i++)
	{
		const RGAdviceRow *row = &a->rows[i];
		RGEntry		e;

		if (row->own_entry || !row->has_suggestion ||
			(dflt && dflt->value == row->suggested))
			continue;
		memset(&e, 0, sizeof(e));
		e.kind = RG_ENTRY_ROLE;
		strlcpy(e.name, NameStr(row->rolname), sizeof(e.name));
		rg_line_add(&a->line, &e, row->suggested);
	}
}

/*
 * The line counted as role_guard_summary counts "budgeted": every LOGIN
 * role's own entry, else "*"; none for some role: NULL.
 */
static void
rg_advice_budgeted(RGAdvice *a)
{
	RGPolicy   *line = rg_parse_budgets(a->line.data);
	Relation	rel = table_open(AuthIdRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, NULL);
	HeapTuple	tup;
	int64		total = 0;

	a->has_budgeted = line != NULL;
	while (a->has_budgeted && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_authid form = (Form_pg_authid) GETSTRUCT(tup);
		const RGEntry *e;

		if (!form->rolcanlogin)
			continue;
		e = rg_policy_lookup(line, RG_ENTRY_ROLE, NameStr(form->rolname), NULL);
		if (e == NULL)
			e = rg_policy_default(line);
		if (e == NULL)
			a->has_budgeted = false;
		else
			total += e->value;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	a->budgeted = (int32) Min(total, (int64) PG_INT32_MAX);
	a->slots = rg_connection_slots();
	a->fits = a->has_budgeted && a->budgeted <= a->slots;
}

/* Say in every row's reason why the suggestions do not fit, and by how much. */
static void
rg_advice_misfit(RGAdvice *a)
{
	char		slots[256];

	rg_connection_slots_text(slots, sizeof(slots));
	for (int i = 0; i < a->nrows && !a->fits; i++)
	{
		StringInfo	r = &a->rows[i].reason;

		if (a->has_budgeted)
			appendStringInfo(r, " The suggestions add up to %d sessions, %d more than the %d connection slots (%s).",
							 a->budgeted, a->budgeted - a->slots, a->slots, slots);
		else
			appendStringInfoString(r, " The suggestions leave some LOGIN role with no budget (no entry of its own and no \"*\" entry), so they cannot fit the connection slots.");
	}
}

static void
rg_advice_build(RGAdvice *a)
{
	rg_require_loaded();
	memset(a, 0, sizeof(*a));
	a->now = GetCurrentTimestamp();
	a->windows = rg_copy_windows(a->now, &a->since);
	rg_advice_rows(a);
	rg_advice_line(a);
	rg_advice_budgeted(a);
	rg_advice_misfit(a);
}

/* role_guard_advice_rows(): the rows of the role_guard_advice view. */
Datum
role_guard_advice_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RGAdvice	a;

	rg_advice_build(&a);
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < a.nrows; i++)
	{
		RGAdviceRow *row = &a.rows[i];
		Datum		values[11];
		bool		nulls[11] = {0};

		values[0] = NameGetDatum(&row->rolname);
		values[1] = Int32GetDatum(row->budget);
		nulls[1] = !row->has_budget;
		values[2] = Int32GetDatum(row->h24.peak);
		values[3] = Int32GetDatum(row->d31.peak);
		values[4] = Int64GetDatum(row->d31.rejected);
		values[5] = Int64GetDatum(row->d31.waited);
		values[6] = Int32GetDatum(row->suggested);
		nulls[6] = !row->has_suggestion;
		values[7] = Int32GetDatum(row->active_budget);
		nulls[7] = !row->has_active_budget;
		values[8] = Int32GetDatum(row->d31.active_peak);
		nulls[8] = !row->has_active_peak;
		values[9] = Int32GetDatum(row->active_suggested);
		nulls[9] = !row->has_active_suggestion;
		values[10] = CStringGetTextDatum(row->reason.data);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* role_guard_suggested_budgets(): the suggested role_guard.budgets. */
Datum
role_guard_suggested_budgets(PG_FUNCTION_ARGS)
{
	RGAdvice	a;

	rg_advice_build(&a);
	PG_RETURN_TEXT_P(cstring_to_text(a.line.data));
}

/* role_guard_suggested_totals(): the summary's suggested_budgeted, _fits. */
Datum
role_guard_suggested_totals(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {0};
	RGAdvice	a;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rg_advice_build(&a);
	values[0] = Int32GetDatum(a.budgeted);
	nulls[0] = !a.has_budgeted;
	values[1] = BoolGetDatum(a.fits);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * role_guard_windows(): every counter's windows, summed: roles (peak of
 * their own sessions, and of their members' for +group), databases (@db)
 * and roles in databases (name@db).
 */
Datum
role_guard_windows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	static const char *const kinds[] = {"", "role", "database", "role_database"};
	HASH_SEQ_STATUS status;
	RGWindowRow *w;
	TimestampTz since;

	rg_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	hash_seq_init(&status, rg_copy_windows(GetCurrentTimestamp(), &since));
	while ((w = hash_seq_search(&status)) != NULL)
	{
		Datum		values[13];
		bool		nulls[13] = {0};
		char	   *now_name;

		/* its name now; as last seen if it was dropped */
		now_name = w->key.kind == RG_COUNTER_DB ? get_database_name(w->key.dboid) :
			GetUserNameFromId(w->key.roleid, true);
		if (now_name)
			namestrcpy(&w->name, now_name);

		values[0] = CStringGetTextDatum(kinds[w->key.kind]);
		values[1] = NameGetDatum(&w->name);
		values[2] = ObjectIdGetDatum(w->key.roleid);
		nulls[2] = !OidIsValid(w->key.roleid);
		values[3] = ObjectIdGetDatum(w->key.dboid);
		nulls[3] = !OidIsValid(w->key.dboid);
		values[4] = Int32GetDatum(w->h24.peak);
		values[5] = Int32GetDatum(w->d31.peak);
		values[6] = Int32GetDatum(w->h24.member_peak);
		values[7] = Int32GetDatum(w->d31.member_peak);
		values[8] = Int64GetDatum(w->d31.rejected);
		values[9] = Int64GetDatum(w->d31.member_rejected);
		values[10] = Int64GetDatum(w->d31.waited);
		values[11] = Int64GetDatum(w->d31.member_waited);
		values[12] = TimestampTzGetDatum(since);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
