--
-- The views: columns and types as README.md names them, contents for this
-- session, the summary's arithmetic, privileges and reset.
--
-- each file stands alone: the extension may exist already
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS role_guard;
RESET client_min_messages;
SELECT attrelid::regclass AS view, attname, format_type(atttypid, atttypmod)
FROM pg_attribute
WHERE attrelid IN ('role_guard_usage'::regclass, 'role_guard_budgets'::regclass,
                   'role_guard_summary'::regclass, 'role_guard_events'::regclass,
                   'role_guard_reservations'::regclass,
                   'role_guard_auth_blocks'::regclass)
  AND attnum > 0
ORDER BY attrelid::regclass::text, attnum;

-- this session is counted; nothing is configured
SELECT rolname = current_user AS me, superuser, budget, connections, active,
       idle, idle_in_transaction, peak >= 1 AS peaked, rejected, would_reject,
       superuser_denied, reaped, last_rejected
FROM role_guard_usage WHERE rolname = current_user;
SELECT count(*) FROM role_guard_budgets;

-- summary: no budget for the login roles, so budgeted is NULL and the
-- server counts as overcommitted
SELECT max_connections = current_setting('max_connections')::int AS max_ok,
       superuser_reserved_connections = current_setting('superuser_reserved_connections')::int AS reserved_ok,
       budgeted, connections >= 1 AS counted,
       headroom = max_connections - superuser_reserved_connections - connections AS headroom_ok,
       overcommitted
FROM role_guard_summary;

-- a budget for every login role: budgeted is their sum
CREATE ROLE rg_app LOGIN;
CREATE ROLE rg_nologin;
ALTER SYSTEM SET role_guard.budgets = 'rg_app=7, *=2';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\c
SELECT budgeted = 7 + 2 * (SELECT count(*) - 1 FROM pg_roles WHERE rolcanlogin) AS sum_ok,
       overcommitted
FROM role_guard_summary;
SELECT rolname, budget, connections FROM role_guard_usage WHERE rolname LIKE 'rg\_%' ORDER BY 1;
SELECT entry, kind, budget, rejected, would_reject FROM role_guard_budgets ORDER BY entry;

-- budgets larger than the server make it overcommitted
ALTER SYSTEM SET role_guard.budgets = 'rg_app=1000, *=2';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\c
SELECT budgeted > max_connections AS over, overcommitted FROM role_guard_summary;

-- reservations: one row per entry; the summary's totals
ALTER SYSTEM SET role_guard.reservations = 'rg_app=3, +pg_monitor=2, "No Such"=1';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\c
SELECT * FROM role_guard_reservations ORDER BY entry;
SELECT reserved, reserved_unused FROM role_guard_summary;
SELECT rolname, reserved FROM role_guard_usage WHERE rolname = 'rg_app';
-- more places than there are slots: refused, the old list stays
ALTER SYSTEM SET role_guard.reservations = 'rg_app=100000';
ALTER SYSTEM SET role_guard.reservations = 'rg_app=3, *=2';
ALTER SYSTEM SET role_guard.reservations = 'rg_app=3, @db=2';
ALTER SYSTEM SET role_guard.reservations = 'rg_app=-1';
ALTER SYSTEM RESET role_guard.reservations;
SELECT pg_reload_conf();

-- privileges: nothing for PUBLIC, reading for pg_monitor, reset for superusers
CREATE ROLE rg_plain;
CREATE ROLE rg_monitor IN ROLE pg_monitor;
SET ROLE rg_plain;
SELECT * FROM role_guard_usage;
SELECT * FROM role_guard_budgets;
SELECT * FROM role_guard_summary;
SELECT * FROM role_guard_events;
SELECT * FROM role_guard_reservations;
SELECT * FROM role_guard_role_stats();
SELECT * FROM role_guard_budget_rows();
SELECT * FROM role_guard_reservation_rows();
SELECT * FROM role_guard_reserve_stats();
SELECT * FROM role_guard_role_waits();
SELECT * FROM role_guard_auth_blocks;
SELECT * FROM role_guard_auth_block_rows();
SELECT * FROM role_guard_role_auth();
SELECT role_guard_unblock(NULL);
SELECT role_guard_reset();
RESET ROLE;
SET ROLE rg_monitor;
SELECT count(*) > 0 AS readable FROM role_guard_usage;
SELECT count(*) AS entries FROM role_guard_budgets;
SELECT count(*) AS rows FROM role_guard_summary;
SELECT count(*) >= 0 AS readable FROM role_guard_events;
SELECT count(*) >= 0 AS readable FROM role_guard_reservations;
SELECT count(*) >= 0 AS readable FROM role_guard_auth_blocks;
SELECT role_guard_unblock(NULL);
SELECT role_guard_reset();
RESET ROLE;

-- reset: peaks fall to the present, counters to zero
SELECT role_guard_reset();
SELECT peak = connections AS peak_reset, rejected, would_reject
FROM role_guard_usage WHERE rolname = current_user;

ALTER SYSTEM RESET ALL;
SELECT pg_reload_conf();
DROP ROLE rg_app, rg_nologin, rg_plain, rg_monitor;
