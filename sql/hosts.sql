--
-- role_guard.superuser_deny_hosts grammar: addresses, CIDR blocks, "all",
-- and each malformed input with its message.
--
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '127.0.0.1, 10.0.0.0/8 , 192.168.1.7/24, ::1, fd00::/8, ::ffff:10.1.2.3/128, 0.0.0.0/0, all, ALL';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '  ';
-- a session cannot change it
SET role_guard.superuser_deny_hosts = '';
-- malformed
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '10.0.0.0/33';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '::1/200';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '10.0.0.0/';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '10.0.0.0/-1';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '10.0.0.0/8x';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '10.0.0';
-- superuser_deny_covers: an empty entry, a word given twice
ALTER SYSTEM SET role_guard.superuser_deny_covers = 'createrole,';
ALTER SYSTEM SET role_guard.superuser_deny_covers = 'createrole, CreateRole';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '256.1.1.1';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = 'db.example.com';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = 'localhost';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '1:2:3';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '10.0.0.1,,10.0.0.2';
ALTER SYSTEM SET role_guard.superuser_deny_hosts = '10.0.0.1,';
ALTER SYSTEM RESET ALL;
