--
-- role_guard.budgets grammar: every entry kind, quoting, folding, white
-- space, and each malformed input with its message.  Settings are
-- PGC_SIGHUP, so values go through ALTER SYSTEM (which runs the same check
-- hook as a reload) and take effect with pg_reload_conf() and a new session.
--
CREATE EXTENSION role_guard;

-- a session cannot set the policy
SET role_guard.budgets = 'app=1';
SET role_guard.mode = 'off';
ALTER ROLE CURRENT_USER SET role_guard.budgets = 'app=1';
ALTER DATABASE contrib_regression SET role_guard.mode = 'off';

-- every kind, spaces around tokens, folding, quoted names
ALTER SYSTEM SET role_guard.budgets = ' APP = 10 , "Mixed Case"=2,*=3, + ReadOnly =28, @LimDB=5, app@limdb = 1 , "we""ird"@"Db 1"=0, Ärger=4, _x$1=7';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\c
SHOW role_guard.budgets;
SELECT entry, kind, budget FROM role_guard_budgets ORDER BY kind, entry;
SELECT setting, entry, kind, rolname, datname, value FROM role_guard_policy() ORDER BY kind, entry;

-- the empty list, and white space only
ALTER SYSTEM SET role_guard.budgets = '   ';
ALTER SYSTEM SET role_guard.budgets = '';

-- malformed entries, one message each, naming the entry
ALTER SYSTEM SET role_guard.budgets = 'app';
ALTER SYSTEM SET role_guard.budgets = 'app 10';
ALTER SYSTEM SET role_guard.budgets = 'app=';
ALTER SYSTEM SET role_guard.budgets = 'app=-1';
ALTER SYSTEM SET role_guard.budgets = 'app=ten';
ALTER SYSTEM SET role_guard.budgets = 'app=1.5';
ALTER SYSTEM SET role_guard.budgets = 'app=2147483648';
ALTER SYSTEM SET role_guard.budgets = '=5';
ALTER SYSTEM SET role_guard.budgets = '+=5';
ALTER SYSTEM SET role_guard.budgets = '@=5';
ALTER SYSTEM SET role_guard.budgets = 'app@=5';
ALTER SYSTEM SET role_guard.budgets = '""=5';
ALTER SYSTEM SET role_guard.budgets = '"open=5';
ALTER SYSTEM SET role_guard.budgets = 'my-app=5';
ALTER SYSTEM SET role_guard.budgets = '1app=5';
ALTER SYSTEM SET role_guard.budgets = 'a=1,,b=2';
ALTER SYSTEM SET role_guard.budgets = ',a=1';
ALTER SYSTEM SET role_guard.budgets = 'a=1,';
ALTER SYSTEM SET role_guard.budgets = 'app=1, APP=2';
ALTER SYSTEM SET role_guard.budgets = '*=1, *=2';
ALTER SYSTEM SET role_guard.budgets = '+g=1, + g=2';
ALTER SYSTEM SET role_guard.budgets = 'a@d=1, "a"@"d"=2';
ALTER SYSTEM SET role_guard.budgets = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1';
-- 63 bytes is the longest name
ALTER SYSTEM SET role_guard.budgets = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1';
-- a sign: "+5" is 5, "-0" is 0, below 0 is refused
ALTER SYSTEM SET role_guard.budgets = 'app=-01';
ALTER SYSTEM SET role_guard.budgets = 'app=-';
ALTER SYSTEM SET role_guard.reservations = 'app=-1';
ALTER SYSTEM SET role_guard.budgets = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1, app=+5, b=-0, c=-00';

SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
\c
SELECT entry, budget FROM role_guard_budgets;

-- an invalid mode
ALTER SYSTEM SET role_guard.mode = 'strict';

ALTER SYSTEM RESET ALL;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
