/*-------------------------------------------------------------------------
 *
 * executor.c
 *	  Executor and utility hooks: per-role statement counts, and the
 *	  per-backend state the reaper and the views read.
 *
 * A top-level statement is one a client sent: an executor statement
 * (ExecutorStart .. ExecutorEnd) or a utility statement (ProcessUtility)
 * that starts with no role_guard hook active below it in this backend
 * (nesting level 0; planning counts as a level, as it may run functions)
 * and that does not return its rows to SPI or to a SQL function: code
 * that core runs outside any statement (deferred triggers firing at COMMIT,
 * a domain's CHECK on a Bind parameter) runs its queries at level 0, through
 * those.  A utility statement counts only as the client's own
 * (PROCESS_UTILITY_TOPLEVEL).  Statements run by
 * functions, EXPLAIN ANALYZE, CREATE TABLE AS and the like are nested and
 * not counted again; a statement that fails before it starts executing (a
 * syntax error, say) is not counted.  Parallel workers, background workers
 * and sessions role_guard did not admit have no slot and are not counted.
 *
 * Before each executor or utility statement, at every level, and after each
 * utility statement, RG_DENY_CHECK (deny.c) keeps a session from a host
 * role_guard.superuser_deny_hosts lists from acting as a superuser; for any
 * other session it is one test of a boolean.
 *
 * Per statement the cost is: two stores and one atomic add on start, one
 * clock read on leaving ExecutorRun and on ending, no lock, no allocation.
 * The state lives in this backend's own RGBackend slot, written only here:
 *	- active_statements: 1 from start to end (ExecutorEnd, the end of
 *	  ProcessUtility, or an abort at level 0: ExecutorEnd does not run when a
 *	  statement fails, so the transaction callbacks end it instead);
 *	- idle_since: when the backend last finished work for its client (end of
 *	  a statement, of an ExecutorRun that may leave a portal suspended, of an
 *	  abort);
 *	- in_utility: a top-level utility statement runs (COPY FROM STDIN reads
 *	  from the client, yet the session is busy);
 *	- aborted_block: from the abort of a transaction block until that
 *	  transaction's memory is released (at ROLLBACK; at once for an implicit
 *	  block or a failed COMMIT), detected with a reset callback on
 *	  TopTransactionContext rather than by guessing the block state;
 *	- seq: bumped at each start, so the reaper can tell that a session it saw
 *	  idle has done something since.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/defrem.h"
#include "commands/prepare.h"
#include "executor/executor.h"
#include "optimizer/planner.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "inject.h"
#include "role_guard.h"

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static planner_hook_type prev_planner = NULL;

/* role_guard hooks active in this backend right now */
static int	rg_nesting = 0;

/*
 * An error that leaves the executor and planner hooks does not bring
 * rg_nesting back down on its way (no PG_TRY there: a sigsetjmp per hook,
 * four or five per statement, was 1 % of a pgbench -S transaction).  It is
 * repaired by the abort that follows every caught error: a subtransaction's
 * (PL/pgSQL's exception blocks) or the transaction's (the client's
 * statement).  Each abort sets rg_nesting to the lesser of itself and the
 * level at which that (sub)transaction began:
 *	- rg_xact_base: the level of the first hook in the transaction, 0 for a
 *	  client's; in a procedure after a COMMIT or ROLLBACK inside, the
 *	  procedure's level, so its own ROLLBACK (an abort with no error) leaves
 *	  rg_nesting as it is; -1 until a hook runs in the transaction;
 *	- rg_subxact_base[n]: rg_nesting when subtransaction nest level n began.
 * rg_ProcessUtility keeps its PG_CATCH: a CALL, DO or VACUUM runs queries
 * in transactions of their own, and an error that ends it must bring
 * rg_nesting below those transactions' base (hence the lesser of the two).
 */
static int	rg_xact_base = -1;
static int *rg_subxact_base = NULL;
static int	rg_subxact_levels = 0;

/* Run the next hook (or core's function) one level deeper. */
#define RG_NESTED(call) \
	do { \
		if (unlikely(rg_xact_base < 0)) \
			rg_xact_base = rg_nesting; \
		rg_nesting++; \
		call; \
		rg_nesting--; \
	} while (0)

/*
 * The same, coming back up on an error too (PG_CATCH rather than
 * PG_FINALLY, which -Wextra flags as clobbering with some compilers).
 */
#define RG_NESTED_CAUGHT(call) \
	do { \
		int			rg_level = rg_nesting; \
		\
		if (unlikely(rg_xact_base < 0)) \
			rg_xact_base = rg_nesting; \
		rg_nesting++; \
		PG_TRY(); \
		{ \
			call; \
		} \
		PG_CATCH(); \
		{ \
			rg_nesting = rg_level; \
			PG_RE_THROW(); \
		} \
		PG_END_TRY(); \
		rg_nesting = rg_level; \
	} while (0)

/* the top-level executor statement running now, if any */
static QueryDesc *rg_top_query = NULL;

/* clears aborted_block when the failed transaction is cleaned up */
static MemoryContextCallback rg_abort_cleanup_cb;
static bool rg_abort_cleanup_armed = false;

static inline void
rg_statement_begin(uint64 query_id)
{
	RGBackend  *slot = rg_my_slot;

	if (slot == NULL)
		return;
	/* a test may hold a session here, busy and not yet counted as such */
	RG_INJECT_SIGNALS_HELD("statement-begin");
	slot->seq++;
	slot->last_query_id = (int64) query_id;
	slot->active_statements = 1;
	pg_atomic_fetch_add_u64(&rg_my_counter->statements, 1);
}

/* The backend is about to wait for its client. */
static inline void
rg_work_done(void)
{
	RGBackend  *slot = rg_my_slot;

	if (slot == NULL)
		return;
	slot->idle_since = GetCurrentTimestamp();
}

/*
 * The top-level statement is over.  The clock is read again even when its
 * last ExecutorRun just stamped idle_since: between the two, a portal of the
 * extended protocol may wait for deferred triggers at COMMIT, a Bind or a
 * fast-path call, and ExecutorEnd itself for parallel workers or a remote
 * server, none of which another hook sees.
 */
static inline void
rg_statement_end(void)
{
	RGBackend  *slot = rg_my_slot;

	if (slot == NULL || slot->active_statements == 0)
		return;
	slot->idle_since = GetCurrentTimestamp();
	pg_write_barrier();
	slot->in_utility = false;
	slot->active_statements = 0;
}

/*
 * A statement that waited for its active place runs on a snapshot taken
 * once it has the place, not on the one its caller took before it waited:
 * under READ COMMITTED each statement sees what was committed when it
 * starts to run, as after a wait for a lock.  Under REPEATABLE READ and
 * SERIALIZABLE the transaction's snapshot stays the one taken before the
 * wait.
 *
 * Only where the snapshot's owner and level are known, and it is the
 * active one, on top of the stack, which the owner pops once the hook
 * returns: a portal's own (portalSnapshot: PortalRunUtility's, or
 * EnsurePortalSnapshotExists's in a procedure after a COMMIT), pushed at
 * the portal's createLevel, which then gets the new one; or, with
 * top_query, the one PortalStart or PortalRunMulti pushed for the client's
 * own statement at the current level.  Anything else (read-only SPI runs
 * on its caller's snapshot, pushed at an outer level, which a
 * subtransaction's abort must not take off the stack) keeps its snapshot.
 * A hold snapshot the portal registered apart is left as it is (older, it
 * only keeps more rows alive).  Returns the new one, or NULL.
 */
static Snapshot
rg_fresh_snapshot(Snapshot old, bool top_query)
{
	Portal		portal = ActivePortal;
	bool		portals = portal != NULL && portal->portalSnapshot == old;

	if (IsolationUsesXactSnapshot() || old == NULL || !ActiveSnapshotSet() ||
		old != GetActiveSnapshot() || (!portals && !top_query))
		return NULL;
	PopActiveSnapshot();
	PushActiveSnapshotWithLevel(GetTransactionSnapshot(),
								portals ? portal->createLevel :
								GetCurrentTransactionNestLevel());
	if (portals)
		portal->portalSnapshot = GetActiveSnapshot();
	return GetActiveSnapshot();
}

/*
 * Start-up itself may run queries (initial partition pruning calling a SQL
 * function, say): they are nested, like those run by ExecutorRun.
 */
static void
rg_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	bool		top_query = false;

	/* a session from a denied host: not as a superuser (deny.c) */
	RG_DENY_CHECK();
	if (rg_nesting == 0 && rg_my_slot != NULL &&
		queryDesc->dest->mydest != DestSPI &&
		queryDesc->dest->mydest != DestSQLFunction)
	{
		top_query = true;
		rg_top_query = queryDesc;
		rg_statement_begin(queryDesc->plannedstmt->queryId);
	}
	/* any statement the executor runs is real work: an active place */
	if (unlikely(rg_active_need) &&
		rg_active_take(queryDesc->plannedstmt->queryId))
	{
		/* the query's registration (CreateQueryDesc's) moves to the new one */
		Snapshot	old = queryDesc->snapshot;
		Snapshot	fresh = rg_fresh_snapshot(old, top_query);

		if (fresh != NULL)
		{
			UnregisterSnapshot(old);
			queryDesc->snapshot = RegisterSnapshot(fresh);
		}
	}
	RG_NESTED({
		if (prev_ExecutorStart)
			prev_ExecutorStart(queryDesc, eflags);
		else
			standard_ExecutorStart(queryDesc, eflags);
	});
}

/*
 * Any run at level 0 is work for the client, whichever statement opened
 * the portal (the extended protocol may run a portal again after other
 * statements): activity when it starts, idle from when it returns.
 */
static void
rg_ExecutorRun(RG_EXECUTOR_RUN_PARAMS)
{
	bool		top = rg_nesting == 0;

	if (top && rg_my_slot)
		rg_my_slot->seq++;
	RG_NESTED({
		if (prev_ExecutorRun)
			prev_ExecutorRun(RG_EXECUTOR_RUN_ARGS);
		else
			standard_ExecutorRun(RG_EXECUTOR_RUN_ARGS);
	});
	/* a portal may stay open while its client thinks: idle from here */
	if (top)
		rg_work_done();
}

static void
rg_ExecutorFinish(QueryDesc *queryDesc)
{
	RG_NESTED({
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	});
}

static void
rg_ExecutorEnd(QueryDesc *queryDesc)
{
	bool		top = rg_nesting == 0;

	RG_NESTED({
		if (prev_ExecutorEnd)
			prev_ExecutorEnd(queryDesc);
		else
			standard_ExecutorEnd(queryDesc);
	});
	if (queryDesc == rg_top_query)
	{
		rg_top_query = NULL;
		rg_statement_end();
	}
	else if (top)
		rg_work_done();
}

static PlannedStmt *
rg_planner(Query *parse, const char *query_string, int cursorOptions,
		   ParamListInfo boundParams)
{
	PlannedStmt *result;

	RG_NESTED({
		if (prev_planner)
			result = prev_planner(parse, query_string, cursorOptions, boundParams);
		else
			result = standard_planner(parse, query_string, cursorOptions, boundParams);
	});
	return result;
}

/*
 * Does a utility statement take an active place?  All do but transaction
 * control, SET (SET CONSTRAINTS too: it fires only deferred triggers of
 * statements that took the place already), RESET, SHOW, DISCARD,
 * DEALLOCATE and PREPARE.
 */
static bool
rg_utility_takes_place(const Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_TransactionStmt:
		case T_VariableSetStmt:
		case T_ConstraintsSetStmt:
		case T_VariableShowStmt:
		case T_DiscardStmt:
		case T_DeallocateStmt:
		case T_PrepareStmt:
			return false;
		default:
			return true;
	}
}

/* A statement the client sent (not one run by a function), in a session. */
static inline bool
rg_utility_top(ProcessUtilityContext context)
{
	return rg_nesting == 0 && rg_my_slot != NULL &&
		context == PROCESS_UTILITY_TOPLEVEL;
}

/*
 * The query id of a top-level utility statement: the one pg_stat_activity
 * shows (and pg_stat_statements counts under), reported before the
 * statement runs.  The statement's own copy may be 0 by the time it gets
 * here: pg_stat_statements, tracking utilities, clears it before it calls
 * on (so that nested statements are not counted twice), and its hook runs
 * before ours when it is loaded after role_guard.  With track_activities
 * off nothing is shown: the statement's own, if any.
 */
static inline uint64
rg_shown_query_id(uint64 own)
{
	uint64		shown = pgstat_get_my_query_id();

	return shown != 0 ? shown : own;
}

/*
 * The id of the query an EXECUTE runs, for the EXECUTE whose own id is
 * gone: pg_stat_statements clears it and counts the statement under the
 * prepared query's, which the executor reports once it starts, after any
 * wait for a place.  From the prepared statement, so that a wait or a
 * refusal carries that id too.  0 for an unknown statement, or one whose
 * query is to be analysed again: an invalidation keeps the old query_list
 * (and its id) until the statement is revalidated, and the id may change
 * then.
 */
static uint64
rg_execute_query_id(const ExecuteStmt *stmt)
{
	PreparedStatement *ps = FetchPreparedStatement(stmt->name, false);

	if (ps == NULL || !ps->plansource->is_valid ||
		ps->plansource->query_list == NIL)
		return 0;
	return linitial_node(Query, ps->plansource->query_list)->queryId;
}

/*
 * Does a utility statement keep its active place through the commits it
 * makes itself (rg_active_pin)?  VACUUM (not FULL) and ANALYZE: in their
 * later transactions they take locks that no statement waiting for a
 * place holds (SHARE UPDATE EXCLUSIVE; lazy truncation only tries for
 * more) and wait for no other transaction.  Not those that do: VACUUM FULL
 * and CLUSTER take ACCESS EXCLUSIVE locks there, CREATE INDEX, REINDEX and
 * DETACH PARTITION CONCURRENTLY wait for older transactions, and a
 * statement waiting for the place they held would hold its parse-time
 * locks and snapshot meanwhile: a cycle that the deadlock detector does
 * not see (the waiter sleeps on its latch).  They give the place back at
 * their first own commit, as CALL and DO do at each COMMIT.
 */
static bool
rg_utility_pins(const Node *stmt)
{
	ListCell   *lc;

	if (!IsA(stmt, VacuumStmt))
		return false;
	foreach(lc, ((const VacuumStmt *) stmt)->options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, "full") == 0 && defGetBoolean(opt))
			return false;
	}
	return true;
}

/* The next ProcessUtility, at one nesting level more. */
static pg_noinline void
rg_utility_call(PlannedStmt *pstmt, const char *queryString,
				bool readOnlyTree, ProcessUtilityContext context,
				ParamListInfo params, QueryEnvironment *queryEnv,
				DestReceiver *dest, QueryCompletion *qc)
{
	RG_NESTED_CAUGHT({
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	});
}

/* ... with the active place pinned to its end (rg_active_pin) */
static pg_noinline void
rg_utility_call_pinned(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	PG_TRY();
	{
		rg_utility_call(pstmt, queryString, readOnlyTree, context, params,
						queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		rg_active_unpin();
		PG_RE_THROW();
	}
	PG_END_TRY();
	rg_active_unpin();
}

static void
rg_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				  bool readOnlyTree, ProcessUtilityContext context,
				  ParamListInfo params, QueryEnvironment *queryEnv,
				  DestReceiver *dest, QueryCompletion *qc)
{
	/* read before the call: the statement may be freed by then (ROLLBACK) */
	bool		commit_prepared = IsA(pstmt->utilityStmt, TransactionStmt) &&
		((TransactionStmt *) pstmt->utilityStmt)->kind == TRANS_STMT_COMMIT_PREPARED;
	uint64		own_query_id = pstmt->queryId;
	uint64		query_id = rg_utility_top(context) ?
		rg_shown_query_id(own_query_id) : own_query_id;

	RG_DENY_CHECK();
	if (rg_utility_top(context))
	{
		rg_statement_begin(query_id);
		rg_my_slot->in_utility = true;
	}
	if (unlikely(rg_active_need) && rg_utility_takes_place(pstmt->utilityStmt))
	{
		bool		shown = false;

		if (query_id == 0 && IsA(pstmt->utilityStmt, ExecuteStmt))
		{
			query_id = rg_execute_query_id((ExecuteStmt *) pstmt->utilityStmt);
			/* shown while it waits, as the executor would show it */
			shown = query_id != 0 && pgstat_get_my_query_id() == 0;
			if (shown)
				pgstat_report_query_id(query_id, false);
			if (rg_utility_top(context))
				rg_my_slot->last_query_id = (int64) query_id;
		}
		if (rg_active_take(query_id) && ActivePortal != NULL)
			(void) rg_fresh_snapshot(ActivePortal->portalSnapshot, false);
		/* the executor reports the id again, after a revalidation if any */
		if (shown)
			pgstat_report_query_id(0, true);
	}
	/* VACUUM and ANALYZE keep their place through their own commits */
	if (rg_utility_top(context) && rg_utility_pins(pstmt->utilityStmt) &&
		rg_active_pin())
		rg_utility_call_pinned(pstmt, queryString, readOnlyTree, context,
							   params, queryEnv, dest, qc);
	else
		rg_utility_call(pstmt, queryString, readOnlyTree, context, params,
						queryEnv, dest, qc);
	/* its invalidations went to the queue only: see members.c */
	if (commit_prepared)
		rg_members_invalidate();
	/*
	 * EXECUTE of a prepared statement: pg_stat_statements clears the
	 * EXECUTE's own id, and the executor reports the prepared query's, which
	 * pg_stat_activity shows from then on.
	 */
	if (rg_utility_top(context))
		rg_my_slot->last_query_id = (int64) rg_shown_query_id(own_query_id);
	/* a GRANT that made the session a superuser's member ends it here */
	RG_DENY_CHECK();
	if (rg_nesting == 0)
		rg_statement_end();
}

/* A subtransaction begins: the level to come back to if it aborts. */
static void
rg_subxact_begin(void)
{
	int			level = GetCurrentTransactionNestLevel();

	if (level >= rg_subxact_levels)
	{
		int			n = Max(level + 1, Max(16, 2 * rg_subxact_levels));

		/* only at a depth never reached before in this backend */
		rg_subxact_base = rg_subxact_base == NULL ?
			MemoryContextAlloc(TopMemoryContext, n * sizeof(int)) :
			repalloc(rg_subxact_base, n * sizeof(int));
		rg_subxact_levels = n;
	}
	rg_subxact_base[level] = rg_nesting;
}

/* A (sub)transaction that began at level base aborts (see rg_xact_base). */
static inline void
rg_nesting_unwind(int base)
{
	if (base >= 0 && base < rg_nesting)
		rg_nesting = base;
}

static void
rg_abort_cleanup(void *arg)
{
	rg_abort_cleanup_armed = false;
	if (rg_my_slot)
		rg_my_slot->aborted_block = false;
}

/*
 * A transaction ended: its active place is free, the membership cache
 * learns what it changed (members.c), and the nesting level is repaired
 * after an abort.  At level 0 an abort ends the statement that failed;
 * inside a transaction block it leaves the session "idle in transaction
 * (aborted)" until the transaction is cleaned up.  role_guard's only
 * transaction callback: core calls each one for every event, the
 * PRE_COMMIT ones included, which return at once.
 */
static void
rg_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			rg_active_xact_end();
			break;
		case XACT_EVENT_ABORT:
			rg_nesting_unwind(rg_xact_base);
			rg_active_xact_end();
			break;
		case XACT_EVENT_PARALLEL_ABORT:
			rg_nesting_unwind(rg_xact_base);
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
			break;
		default:
			return;
	}
	rg_xact_base = -1;
	rg_members_xact_end();
	if (event != XACT_EVENT_ABORT || rg_my_slot == NULL || rg_nesting != 0)
		return;
	rg_top_query = NULL;
	if (rg_my_slot->active_statements)
		rg_statement_end();
	else
		rg_work_done();
	if (IsTransactionBlock() && TopTransactionContext != NULL &&
		!rg_abort_cleanup_armed)
	{
		/* static callback, registered once: nothing to allocate in abort */
		rg_abort_cleanup_cb.func = rg_abort_cleanup;
		rg_abort_cleanup_cb.arg = NULL;
		MemoryContextRegisterResetCallback(TopTransactionContext,
										   &rg_abort_cleanup_cb);
		rg_abort_cleanup_armed = true;
		rg_my_slot->aborted_block = true;
	}
}

/* A subtransaction failed at level 0: the statement that ran is over. */
static void
rg_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_START_SUB)
		rg_subxact_begin();
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		int			level = GetCurrentTransactionNestLevel();

		if (level < rg_subxact_levels)
			rg_nesting_unwind(rg_subxact_base[level]);
		rg_active_subxact_abort();
	}
	if (event == SUBXACT_EVENT_ABORT_SUB && rg_nesting == 0 && rg_my_slot &&
		rg_my_slot->active_statements)
	{
		rg_top_query = NULL;
		rg_statement_end();
	}
}

void
rg_executor_init(void)
{
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = rg_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = rg_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = rg_ExecutorFinish;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = rg_ExecutorEnd;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = rg_ProcessUtility;
	prev_planner = planner_hook;
	planner_hook = rg_planner;
	RegisterXactCallback(rg_xact_callback, NULL);
	RegisterSubXactCallback(rg_subxact_callback, NULL);
}
