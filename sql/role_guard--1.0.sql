/* role_guard--1.0.sql */

\echo Use "CREATE EXTENSION role_guard" to load this file. \quit

-- Low-level functions: rows straight from shared memory and from this
-- session's parsed settings.  The views below are the interface.

CREATE FUNCTION role_guard_role_stats(
    OUT roleid oid, OUT rolname name, OUT rolsuper boolean,
    OUT connections integer, OUT member_connections integer, OUT peak integer,
    OUT active integer, OUT idle integer, OUT idle_in_transaction integer,
    OUT rejected bigint, OUT would_reject bigint,
    OUT role_rejected bigint, OUT role_would_reject bigint,
    OUT group_rejected bigint, OUT group_would_reject bigint,
    OUT superuser_denied bigint, OUT would_deny bigint,
    OUT reaped bigint, OUT would_reap bigint,
    OUT statements bigint, OUT active_statements integer,
    OUT last_rejected timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_role_stats'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION role_guard_db_stats(
    OUT kind text, OUT roleid oid, OUT datname name,
    OUT connections integer, OUT rejected bigint, OUT would_reject bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_db_stats'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION role_guard_policy(
    OUT setting text, OUT entry text, OUT kind text,
    OUT rolname name, OUT datname name, OUT value integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_policy'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION role_guard_global_stats(
    OUT connections integer, OUT replication_connections integer,
    OUT default_rejected bigint, OUT default_would_reject bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'role_guard_global_stats'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION role_guard_role_timeouts(roleid oid,
    OUT idle_timeout interval, OUT idle_in_transaction_timeout interval)
RETURNS record
AS 'MODULE_PATHNAME', 'role_guard_role_timeouts'
LANGUAGE C STRICT STABLE PARALLEL RESTRICTED;

CREATE FUNCTION role_guard_events(
    OUT at timestamptz, OUT event text, OUT rolname name, OUT datname name,
    OUT client_addr inet, OUT application_name text, OUT pid integer,
    OUT detail text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'role_guard_events'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION role_guard_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'role_guard_reset'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- One row per configured budget entry.
CREATE VIEW role_guard_budgets AS
WITH p AS MATERIALIZED (
    SELECT * FROM role_guard_policy() WHERE setting = 'budgets'
), s AS MATERIALIZED (
    SELECT s.*, coalesce(a.rolname, s.rolname) AS curname
    FROM role_guard_role_stats() s LEFT JOIN pg_catalog.pg_authid a ON a.oid = s.roleid
), d AS MATERIALIZED (
    SELECT * FROM role_guard_db_stats()
), g AS (
    SELECT * FROM role_guard_global_stats()
)
SELECT p.entry,
       p.kind,
       p.value AS budget,
       coalesce(CASE p.kind
           WHEN 'role' THEN (SELECT sum(s.connections)::integer FROM s WHERE s.curname = p.rolname)
           WHEN 'group' THEN (SELECT sum(s.member_connections)::integer FROM s WHERE s.curname = p.rolname)
           WHEN 'database' THEN (SELECT d.connections FROM d
                                 WHERE d.kind = 'database' AND d.datname = p.datname)
           WHEN 'role_database' THEN (SELECT d.connections FROM d JOIN s ON s.roleid = d.roleid
                                      WHERE d.kind = 'role_database' AND d.datname = p.datname
                                        AND s.curname = p.rolname)
           WHEN 'default' THEN (SELECT sum(s.connections)::integer FROM s
                                WHERE NOT EXISTS (SELECT 1 FROM p p2
                                                  WHERE p2.kind = 'role' AND p2.rolname = s.curname))
       END, 0) AS connections,
       coalesce(CASE p.kind
           WHEN 'role' THEN (SELECT sum(s.role_rejected)::bigint FROM s WHERE s.curname = p.rolname)
           WHEN 'group' THEN (SELECT sum(s.group_rejected)::bigint FROM s WHERE s.curname = p.rolname)
           WHEN 'database' THEN (SELECT d.rejected FROM d
                                 WHERE d.kind = 'database' AND d.datname = p.datname)
           WHEN 'role_database' THEN (SELECT sum(d.rejected)::bigint FROM d JOIN s ON s.roleid = d.roleid
                                      WHERE d.kind = 'role_database' AND d.datname = p.datname
                                        AND s.curname = p.rolname)
           WHEN 'default' THEN (SELECT g.default_rejected FROM g)
       END, 0) AS rejected,
       coalesce(CASE p.kind
           WHEN 'role' THEN (SELECT sum(s.role_would_reject)::bigint FROM s WHERE s.curname = p.rolname)
           WHEN 'group' THEN (SELECT sum(s.group_would_reject)::bigint FROM s WHERE s.curname = p.rolname)
           WHEN 'database' THEN (SELECT d.would_reject FROM d
                                 WHERE d.kind = 'database' AND d.datname = p.datname)
           WHEN 'role_database' THEN (SELECT sum(d.would_reject)::bigint FROM d JOIN s ON s.roleid = d.roleid
                                      WHERE d.kind = 'role_database' AND d.datname = p.datname
                                        AND s.curname = p.rolname)
           WHEN 'default' THEN (SELECT g.default_would_reject FROM g)
       END, 0) AS would_reject
FROM p;

-- One row per role that has a budget or a timeout (its own entry, or as a
-- LOGIN role through "*" or a group), a session now, or a non-zero counter
-- (peak included) since the last reset.
CREATE VIEW role_guard_usage AS
WITH p AS MATERIALIZED (
    SELECT * FROM role_guard_policy()
), s AS MATERIALIZED (
    SELECT * FROM role_guard_role_stats()
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
    SELECT a.oid FROM pg_catalog.pg_authid a
    WHERE EXISTS (SELECT 1 FROM p WHERE p.kind = 'role' AND p.rolname = a.rolname)
       OR (a.rolcanlogin AND EXISTS (SELECT 1 FROM dflt))
       OR (a.rolcanlogin AND EXISTS (SELECT 1 FROM t WHERE t.roleid = a.oid
                                     AND (t.idle_timeout IS NOT NULL
                                          OR t.idle_in_transaction_timeout IS NOT NULL)))
)
SELECT coalesce(a.rolname, s.rolname) AS rolname,
       coalesce(a.rolsuper, s.rolsuper) AS superuser,
       coalesce((SELECT p.value FROM p
                 WHERE p.setting = 'budgets' AND p.kind = 'role'
                   AND p.rolname = coalesce(a.rolname, s.rolname)),
                (SELECT value FROM dflt)) AS budget,
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
       t.idle_in_transaction_timeout
FROM shown
LEFT JOIN s ON s.roleid = shown.roleid
LEFT JOIN t ON t.roleid = shown.roleid
LEFT JOIN pg_catalog.pg_authid a ON a.oid = shown.roleid;

-- The connection arithmetic, done live.
CREATE VIEW role_guard_summary AS
WITH p AS MATERIALIZED (
    SELECT * FROM role_guard_policy() WHERE setting = 'budgets'
), per_role AS (
    SELECT coalesce((SELECT p.value FROM p WHERE p.kind = 'role' AND p.rolname = a.rolname),
                    (SELECT p.value FROM p WHERE p.kind = 'default')) AS budget
    FROM pg_catalog.pg_authid a
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
       coalesce(b.budgeted > lim.max_connections - lim.reserved, true) AS overcommitted
FROM lim, b, role_guard_global_stats() g;

-- The most recent events, newest first.
CREATE VIEW role_guard_events AS
SELECT at, event, rolname, datname, client_addr, application_name, pid, detail
FROM role_guard_events();

-- Readable by superusers and pg_monitor, not by PUBLIC.
REVOKE ALL ON FUNCTION role_guard_role_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_db_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_policy() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_global_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_role_timeouts(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_events() FROM PUBLIC;
REVOKE ALL ON FUNCTION role_guard_reset() FROM PUBLIC;
REVOKE ALL ON role_guard_usage, role_guard_budgets, role_guard_summary,
    role_guard_events FROM PUBLIC;

GRANT EXECUTE ON FUNCTION role_guard_role_stats() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_db_stats() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_policy() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_global_stats() TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_role_timeouts(oid) TO pg_monitor;
GRANT EXECUTE ON FUNCTION role_guard_events() TO pg_monitor;
GRANT SELECT ON role_guard_usage, role_guard_budgets, role_guard_summary,
    role_guard_events TO pg_monitor;
