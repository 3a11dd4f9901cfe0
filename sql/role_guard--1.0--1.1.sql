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

CREATE OR REPLACE VIEW role_guard_budgets AS
SELECT entry, kind, budget, connections, rejected, would_reject
FROM role_guard_budget_rows();

REVOKE ALL ON FUNCTION role_guard_budget_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION role_guard_budget_rows() TO pg_monitor;
