/* role_guard--1.0--1.1.sql */

\echo Use "ALTER EXTENSION role_guard UPDATE TO '1.1'" to load this file. \quit

-- One row per budget entry, with the numbers the login path checks: the
-- count each entry limits is taken by the same rule in C (rg_entry_used),
-- not re-derived here.
CREATE FUNCTION role_guard_budget_rows(
    OUT entry text, OUT kind text, OUT budget integer,
    OUT connections integer, OUT rejected bigint, OUT would_reject bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_budget_rows'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- One row per reservation entry (role_guard.reservations).
CREATE FUNCTION role_guard_reservation_rows(
    OUT entry text, OUT kind text, OUT rolname name, OUT reserved integer,
    OUT connections integer, OUT unused integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_reservation_rows'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- The reservations' totals and the connection slots as role_guard counts them.
CREATE FUNCTION role_guard_reserve_stats(
    OUT reserved integer, OUT reserved_unused integer,
    OUT slots integer, OUT slots_used integer, OUT waiting integer)
RETURNS record
AS 'MODULE_PATHNAME', 'role_guard_reserve_stats'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- Per role: logins waiting now, admitted after waiting, timed out waiting,
-- sessions ended by eviction.
CREATE FUNCTION role_guard_role_waits(
    OUT roleid oid, OUT waiting integer, OUT waited bigint,
    OUT wait_timeouts bigint, OUT evicted bigint, OUT would_evict bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_role_waits'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE OR REPLACE VIEW role_guard_budgets AS
SELECT entry, kind, budget, connections, rejected, would_reject
FROM role_guard_budget_rows();

CREATE VIEW role_guard_reservations AS
SELECT entry, kind, reserved, connections, unused
FROM role_guard_reservation_rows();

-- 1.0's view, plus the role's reservation and its waits and evictions;
-- roles with a reservation of their own are shown too.  Entries are joined
-- by name (hashed), not looked up per role: 10 000 roles against 10 000
-- entries take a fraction of a second.
CREATE OR REPLACE VIEW role_guard_usage AS
WITH p AS MATERIALIZED (
    SELECT * FROM role_guard_policy()
), s AS MATERIALIZED (
    SELECT * FROM role_guard_role_stats()
), r AS MATERIALIZED (
    SELECT rolname, reserved FROM role_guard_reservation_rows() WHERE kind = 'role'
), w AS MATERIALIZED (
    SELECT * FROM role_guard_role_waits()
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
    SELECT a.oid FROM pg_catalog.pg_authid a
    WHERE a.rolname IN (SELECT rolname FROM pr)
       OR a.rolname IN (SELECT rolname FROM r)
       OR (a.rolcanlogin AND EXISTS (SELECT 1 FROM dflt))
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
       coalesce(w.evicted, 0) AS evicted
FROM named n
LEFT JOIN s ON s.roleid = n.roleid
LEFT JOIN t ON t.roleid = n.roleid
LEFT JOIN w ON w.roleid = n.roleid
LEFT JOIN pb ON pb.rolname = n.rolname
LEFT JOIN r ON r.rolname = n.rolname;


-- 1.0's view, plus the reservations and the logins waiting.
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
), lim AS (
    SELECT current_setting('max_connections')::integer AS max_connections,
           current_setting('superuser_reserved_connections')::integer AS reserved
)
SELECT lim.max_connections,
       lim.reserved AS superuser_reserved_connections,
       b.budgeted,
       g.connections,
       lim.max_connections - lim.reserved - g.connections AS headroom,
       coalesce(b.budgeted > lim.max_connections - lim.reserved, true) AS overcommitted,
       rs.reserved,
       rs.reserved_unused,
       rs.waiting
FROM lim, b, role_guard_global_stats() g, role_guard_reserve_stats() rs;

REVOKE ALL ON FUNCTION role_guard_budget_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_reservation_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_reserve_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_role_waits() FROM PUBLIC;
REVOKE ALL ON role_guard_reservations FROM PUBLIC;
GRANT EXECUTE ON FUNCTION role_guard_budget_rows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_reservation_rows() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_reserve_stats() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_role_waits() TO pg_monitor;
GRANT SELECT ON role_guard_reservations TO pg_monitor;
