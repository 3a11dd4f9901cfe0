/* role_guard--1.1--1.2.sql */

\echo Use "ALTER EXTENSION role_guard UPDATE TO '1.2'" to load this file. \quit

-- Version 1.2.  Each part of 1.2 keeps its objects
-- in one block below, headed by the part it belongs to, so that parts
-- built side by side append blocks instead of editing each other's.  A fresh
-- CREATE EXTENSION runs role_guard--1.0.sql, then --1.0--1.1.sql, then this
-- script; a database still at 1.0 or 1.1 keeps its own views, which call
-- only functions whose columns never change (new columns come from new
-- functions).  A view that several parts extend (role_guard_usage) is
-- defined once, after the blocks, with every part's columns.

-- ---------------------------------------------------------------------------
-- Login blocks after failed authentications: the view
-- role_guard_auth_blocks, role_guard_unblock(), role_guard_usage.auth_blocked
-- (from role_guard_role_auth(), in the view at the end)
-- ---------------------------------------------------------------------------

-- The pairs (client address, role name as the client sent it) with failed
-- authentications in their window or a block in force.
CREATE FUNCTION role_guard_auth_block_rows(
    OUT client_addr inet, OUT rolname text, OUT failures integer,
    OUT first_failure timestamptz, OUT blocked_until timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_auth_block_rows'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW role_guard_auth_blocks AS
SELECT client_addr, rolname, failures, first_failure, blocked_until
FROM role_guard_auth_block_rows();

-- Per role: login blocks begun for its name (and in monitor mode, would-be).
CREATE FUNCTION role_guard_role_auth(
    OUT roleid oid, OUT auth_blocked bigint, OUT would_block bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_role_auth'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- End the blocks of an address (or a network), of one role name or all;
-- NULL matches every one.  Returns the number of blocks in force ended.
CREATE FUNCTION role_guard_unblock(client_addr inet, rolname text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'role_guard_unblock'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION role_guard_auth_block_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_role_auth() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_unblock(inet, text) FROM PUBLIC;
REVOKE ALL ON role_guard_auth_blocks FROM PUBLIC;
GRANT EXECUTE ON FUNCTION role_guard_auth_block_rows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_role_auth() TO pg_monitor;
GRANT SELECT ON role_guard_auth_blocks TO pg_monitor;
-- ---- end of login blocks ----

-- ---------------------------------------------------------------------------
-- Active budgets and query_id on events (issue 24): role_guard.active_budgets
-- and role_guard.active_waits; role_guard_usage's active columns, the
-- active_* rows of role_guard_budgets, role_guard_events.query_id
-- ---------------------------------------------------------------------------

-- Per role: its active budget, places held and statements waiting now, and
-- statements that waited, were refused, or (monitor) would have waited.
CREATE FUNCTION role_guard_role_active(
    OUT roleid oid, OUT active_budget integer, OUT active_transactions integer,
    OUT statements_waiting integer, OUT statements_waited bigint,
    OUT statements_rejected bigint, OUT would_wait bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_role_active'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- One row per active_budgets entry, the count it limits taken by the same
-- rule in C as the executor hooks check.
CREATE FUNCTION role_guard_active_budget_rows(
    OUT entry text, OUT kind text, OUT budget integer,
    OUT connections integer, OUT rejected bigint, OUT would_reject bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_active_budget_rows'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- The event ring with query_id (role_guard_events() keeps 1.0's columns).
CREATE FUNCTION role_guard_event_rows(
    OUT at timestamptz, OUT event text, OUT rolname name, OUT datname name,
    OUT client_addr inet, OUT application_name text, OUT pid integer,
    OUT detail text, OUT query_id bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_event_rows'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE OR REPLACE VIEW role_guard_events AS
SELECT at, event, rolname, datname, client_addr, application_name, pid,
       detail, query_id
FROM role_guard_event_rows();

-- For an active entry, "connections" is the transactions holding places.
CREATE OR REPLACE VIEW role_guard_budgets AS
SELECT entry, kind, budget, connections, rejected, would_reject
FROM role_guard_budget_rows()
UNION ALL
SELECT entry, kind, budget, connections, rejected, would_reject
FROM role_guard_active_budget_rows();

-- (role_guard_usage's active columns: in the view at the end)


REVOKE ALL ON FUNCTION role_guard_role_active() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_active_budget_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_event_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION role_guard_role_active() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_active_budget_rows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_event_rows() TO pg_monitor;
-- ---- end of active budgets (issue 24) ----

-- ---------------------------------------------------------------------------
-- Memory across restarts, peaks by window and advice (issue 25):
-- role_guard_advice, role_guard_suggested_budgets(), role_guard_windows(),
-- role_guard_summary's suggested_budgeted and suggested_fits (in the summary
-- below).  The windows, the advice and the suggested line are computed in C
-- (src/windows.c, src/advice.c); role_guard.save needs no SQL object.
-- ---------------------------------------------------------------------------

-- Every counter's windows, summed over the last 24 hours and 31 days:
-- roles (their own sessions, and their members' for +group entries),
-- databases (@db) and roles in databases (name@db).
CREATE FUNCTION role_guard_windows(
    OUT kind text, OUT name name, OUT roleid oid, OUT dboid oid,
    OUT peak_24h integer, OUT peak_31d integer,
    OUT member_peak_24h integer, OUT member_peak_31d integer,
    OUT rejected_31d bigint, OUT member_rejected_31d bigint,
    OUT waited_31d bigint, OUT member_waited_31d bigint,
    OUT windows_since timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_windows'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION role_guard_advice_rows(
    OUT rolname name, OUT budget integer, OUT peak_24h integer,
    OUT peak_31d integer, OUT rejected_31d bigint, OUT waited_31d bigint,
    OUT suggested_budget integer, OUT active_budget integer,
    OUT active_peak_31d integer, OUT suggested_active_budget integer,
    OUT reason text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_advice_rows'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- A value for role_guard.budgets built from the suggestions.
CREATE FUNCTION role_guard_suggested_budgets()
RETURNS text
AS 'MODULE_PATHNAME', 'role_guard_suggested_budgets'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- The suggested line counted as role_guard_summary.budgeted is, and
-- whether it fits the slots.
CREATE FUNCTION role_guard_suggested_totals(
    OUT suggested_budgeted integer, OUT suggested_fits boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'role_guard_suggested_totals'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW role_guard_advice AS
SELECT rolname, budget, peak_24h, peak_31d, rejected_31d, waited_31d,
       suggested_budget, active_budget, active_peak_31d,
       suggested_active_budget, reason
FROM role_guard_advice_rows();

REVOKE ALL ON FUNCTION role_guard_windows() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_advice_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_suggested_budgets() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_suggested_totals() FROM PUBLIC;
REVOKE ALL ON role_guard_advice FROM PUBLIC;
GRANT EXECUTE ON FUNCTION role_guard_windows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_advice_rows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_suggested_budgets() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_suggested_totals() TO pg_monitor;
GRANT SELECT ON role_guard_advice TO pg_monitor;
-- ---- end of memory across restarts and advice (issue 25) ----

-- ---------------------------------------------------------------------------
-- role_guard_usage: 1.1's columns, then each part's
-- ---------------------------------------------------------------------------
-- 1.1's view, plus the columns of 1.2: the active columns (a role with an
-- active entry, or that held, waited for or was refused an active place, is
-- shown) and auth_blocked (a role whose name had a login block is shown).
CREATE OR REPLACE VIEW role_guard_usage AS
WITH p AS MATERIALIZED (
    SELECT * FROM role_guard_policy()
), s AS MATERIALIZED (
    SELECT * FROM role_guard_role_stats()
), r AS MATERIALIZED (
    SELECT rolname, reserved FROM role_guard_reservation_rows() WHERE kind = 'role'
), w AS MATERIALIZED (
    SELECT * FROM role_guard_role_waits()
), ac AS MATERIALIZED (
    SELECT * FROM role_guard_role_active()
), ae AS MATERIALIZED (
    SELECT entry, kind, budget FROM role_guard_active_budget_rows()
), ab AS MATERIALIZED (
    SELECT * FROM role_guard_role_auth()
), pb AS MATERIALIZED (
    SELECT rolname, value FROM p WHERE setting = 'budgets' AND kind = 'role'
), pr AS MATERIALIZED (
    SELECT DISTINCT rolname FROM p WHERE kind = 'role'
), dflt AS (
    SELECT value FROM p WHERE setting = 'budgets' AND kind = 'default'
), t AS MATERIALIZED (
    SELECT a.oid AS roleid, lim.*
    FROM pg_catalog.pg_authid a, role_guard_role_timeouts(a.oid) lim
    WHERE EXISTS (SELECT 1 FROM p WHERE p.setting <> 'budgets')
), shown AS (
    SELECT s.roleid FROM s
    WHERE s.connections > 0 OR s.peak > 0 OR s.rejected > 0 OR s.would_reject > 0
       OR s.superuser_denied > 0 OR s.would_deny > 0 OR s.reaped > 0
       OR s.would_reap > 0 OR s.statements > 0
    UNION
    SELECT w.roleid FROM w
    WHERE w.waiting > 0 OR w.waited > 0 OR w.wait_timeouts > 0 OR w.evicted > 0
    UNION
    SELECT ac.roleid FROM ac
    WHERE ac.active_transactions > 0 OR ac.statements_waiting > 0
       OR ac.statements_waited > 0 OR ac.statements_rejected > 0
       OR ac.would_wait > 0
    UNION
    SELECT ab.roleid FROM ab WHERE ab.auth_blocked > 0 OR ab.would_block > 0
    UNION
    SELECT a.oid FROM pg_catalog.pg_authid a
    WHERE a.rolname IN (SELECT rolname FROM pr)
       OR a.rolname IN (SELECT rolname FROM r)
       OR (a.rolcanlogin AND EXISTS (SELECT 1 FROM dflt))
       OR (a.rolcanlogin AND EXISTS (SELECT 1 FROM ae WHERE ae.kind = 'active_default'))
       OR a.rolname::text IN (SELECT ae.entry FROM ae WHERE ae.kind = 'active_role')
       OR quote_ident(a.rolname) IN (SELECT ae.entry FROM ae WHERE ae.kind = 'active_role')
    UNION
    SELECT t.roleid FROM t JOIN pg_catalog.pg_authid a ON a.oid = t.roleid
    WHERE a.rolcanlogin
      AND (t.idle_timeout IS NOT NULL OR t.idle_in_transaction_timeout IS NOT NULL)
), named AS (
    SELECT shown.roleid, coalesce(a.rolname, s.rolname) AS rolname,
           coalesce(a.rolsuper, s.rolsuper) AS superuser
    FROM shown
    LEFT JOIN s ON s.roleid = shown.roleid
    LEFT JOIN pg_catalog.pg_authid a ON a.oid = shown.roleid
)
SELECT n.rolname,
       n.superuser,
       coalesce(pb.value, (SELECT value FROM dflt)) AS budget,
       coalesce(s.connections, 0) AS connections,
       coalesce(s.active, 0) AS active,
       coalesce(s.idle, 0) AS idle,
       coalesce(s.idle_in_transaction, 0) AS idle_in_transaction,
       coalesce(s.peak, 0) AS peak,
       coalesce(s.rejected, 0) AS rejected,
       coalesce(s.would_reject, 0) AS would_reject,
       coalesce(s.superuser_denied, 0) AS superuser_denied,
       coalesce(s.reaped, 0) AS reaped,
       coalesce(s.statements, 0) AS statements,
       coalesce(s.active_statements, 0) AS active_statements,
       s.last_rejected,
       t.idle_timeout,
       t.idle_in_transaction_timeout,
       r.reserved,
       coalesce(w.waiting, 0) AS waiting,
       coalesce(w.waited, 0) AS waited,
       coalesce(w.wait_timeouts, 0) AS wait_timeouts,
       coalesce(w.evicted, 0) AS evicted,
       -- a role not seen since the start has no count: its entry, else *
       coalesce(ac.active_budget,
                (SELECT ae.budget FROM ae WHERE ae.kind = 'active_role'
                   AND ae.entry IN (n.rolname::text, quote_ident(n.rolname)) LIMIT 1),
                (SELECT ae.budget FROM ae WHERE ae.kind = 'active_default' LIMIT 1))
         AS active_budget,
       coalesce(ac.active_transactions, 0) AS active_transactions,
       coalesce(ac.statements_waiting, 0) AS statements_waiting,
       coalesce(ac.statements_waited, 0) AS statements_waited,
       coalesce(ac.statements_rejected, 0) AS statements_rejected,
       coalesce(ac.would_wait, 0) AS would_wait,
       coalesce(ab.auth_blocked, 0) AS auth_blocked
FROM named n
LEFT JOIN s ON s.roleid = n.roleid
LEFT JOIN t ON t.roleid = n.roleid
LEFT JOIN w ON w.roleid = n.roleid
LEFT JOIN ac ON ac.roleid = n.roleid
LEFT JOIN ab ON ab.roleid = n.roleid
LEFT JOIN pb ON pb.rolname = n.rolname
LEFT JOIN r ON r.rolname = n.rolname;

-- ---------------------------------------------------------------------------
-- role_guard_summary: one slot rule (issue 21.5).  1.1's view, with headroom
-- and overcommitted counted against the slots a login without special
-- privileges may use, by the rule the reservations use too
-- (role_guard_reserve_stats().slots: max_connections, less
-- superuser_reserved_connections and, on 16 and later, reserved_connections).
-- Then each part's columns: suggested_budgeted and suggested_fits (issue 25).
-- ---------------------------------------------------------------------------
CREATE OR REPLACE VIEW role_guard_summary AS
WITH p AS MATERIALIZED (
    SELECT * FROM role_guard_policy() WHERE setting = 'budgets'
), per_role AS (
    SELECT coalesce(pb.value, (SELECT p.value FROM p WHERE p.kind = 'default')) AS budget
    FROM pg_catalog.pg_authid a
    LEFT JOIN p pb ON pb.kind = 'role' AND pb.rolname = a.rolname
    WHERE a.rolcanlogin
), b AS (
    SELECT CASE WHEN bool_and(budget IS NOT NULL)
                THEN least(sum(budget), 2147483647)::integer END AS budgeted
    FROM per_role
)
SELECT current_setting('max_connections')::integer AS max_connections,
       current_setting('superuser_reserved_connections')::integer
         AS superuser_reserved_connections,
       b.budgeted,
       g.connections,
       rs.slots - g.connections AS headroom,
       coalesce(b.budgeted > rs.slots, true) AS overcommitted,
       rs.reserved,
       rs.reserved_unused,
       rs.waiting,
       st.suggested_budgeted,
       st.suggested_fits
FROM b, role_guard_global_stats() g, role_guard_reserve_stats() rs,
     role_guard_suggested_totals() st;
-- ---- end of role_guard_summary (issue 21.5) ----
