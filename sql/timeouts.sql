--
-- role_guard.idle_timeouts / idle_in_transaction_timeouts grammar, and
-- role_guard.reap_interval bounds.  (timeouts_1.out: PostgreSQL 16 and later
-- print the units in the range of the "outside the valid range" message.)
--
-- each file stands alone: the extension may exist already
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS role_guard;
RESET client_min_messages;
ALTER SYSTEM SET role_guard.idle_timeouts = 'app=500ms, +Readers = 10min, *=2h, "Batch Job"=0, x=1d, y=90, z=1.5s, w=250us, v = 3 min, u=+5s, t=-0, s=-0.0ms';
ALTER SYSTEM SET role_guard.idle_in_transaction_timeouts = 'app=30s, *=5min';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\c
SELECT setting, entry, kind, rolname, value AS ms FROM role_guard_policy()
WHERE setting <> 'budgets' ORDER BY setting, entry;

-- a role's effective limits: own entry, else the smallest group entry, else *
CREATE ROLE readers;
CREATE ROLE fast_readers;
CREATE ROLE rg_app LOGIN IN ROLE readers, fast_readers;
CREATE ROLE rg_other LOGIN;
ALTER SYSTEM SET role_guard.idle_timeouts = '+readers=10min, +fast_readers=1min, *=2h, rg_own=5s';
ALTER SYSTEM SET role_guard.idle_in_transaction_timeouts = '+readers=0, *=30s';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\c
CREATE ROLE rg_own LOGIN IN ROLE fast_readers;
SELECT r.rolname, t.idle_timeout, t.idle_in_transaction_timeout
FROM pg_roles r, role_guard_role_timeouts(r.oid) t
WHERE r.rolname IN ('rg_app', 'rg_other', 'rg_own') ORDER BY 1;
SELECT rolname, idle_timeout, idle_in_transaction_timeout
FROM role_guard_usage WHERE rolname IN ('rg_app', 'rg_other', 'rg_own') ORDER BY 1;

-- malformed
ALTER SYSTEM SET role_guard.idle_timeouts = 'app=10 parsecs';
ALTER SYSTEM SET role_guard.idle_timeouts = 'app=-5s';
ALTER SYSTEM SET role_guard.idle_timeouts = 'app=';
ALTER SYSTEM SET role_guard.idle_timeouts = 'app=soon';
ALTER SYSTEM SET role_guard.idle_timeouts = 'app=30d';
ALTER SYSTEM SET role_guard.idle_timeouts = '@db=5s';
ALTER SYSTEM SET role_guard.idle_timeouts = 'app@db=5s';
ALTER SYSTEM SET role_guard.idle_timeouts = 'app=5s, app=6s';
ALTER SYSTEM SET role_guard.idle_in_transaction_timeouts = '*=1s,';

-- reap_interval: 100ms and up
ALTER SYSTEM SET role_guard.reap_interval = '100ms';
ALTER SYSTEM SET role_guard.reap_interval = '1min';
ALTER SYSTEM SET role_guard.reap_interval = '99ms';
ALTER SYSTEM SET role_guard.reap_interval = 0;
SET role_guard.idle_timeouts = '';
SET role_guard.reap_interval = '1s';

ALTER SYSTEM RESET ALL;
SELECT pg_reload_conf();
DROP ROLE rg_app, rg_other, rg_own, readers, fast_readers;
SELECT pg_sleep(0.5);
