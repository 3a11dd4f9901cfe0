
# Copyright: see README.md.
#
# A session's place in its budgets is released on every way a backend can
# end: normal exit, FATAL later in start-up (after role_guard admitted the
# login), pg_terminate_backend, a client that vanishes, idle_session_timeout,
# and SIGKILL of a backend (crash and crash-restart).  Each path is taken
# with a budget of app=1, so a leaked place shows as a refused next login.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT wait_log);

my $node = rg_node(
	'exits',
	budgets => 'app=1, capped=1, nolog=1',
	conf    => "restart_after_crash = on\n");

$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE other LOGIN;
CREATE ROLE capped LOGIN CONNECTION LIMIT 0;
CREATE ROLE nolog NOLOGIN;
CREATE DATABASE closeddb ALLOW_CONNECTIONS false;
CREATE EXTENSION role_guard;
});

sub tcp { return tcp_connstr($node, @_); }

sub connections_of
{
	my ($role) = @_;
	return "SELECT connections FROM role_guard_usage WHERE rolname = '$role'";
}

# The budget is full while $s is in, and free again after it went away.
sub full_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name) = @_;
	is(usage_of($node, 'app', 'connections')->{connections},
		'1', "$name: session counted");
	refused_ok(
		$node, tcp('app'), "$name: budget full",
		role  => 'app',
		entry => 'app=1',
		used  => 1,
		limit => 1);
}

sub released_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name, $role) = @_;
	$role //= 'app';
	ok(poll_until($node, connections_of($role), '0'),
		"$name: connections of $role back to 0");
	admitted_ok($node, tcp($role), "$name: next login of $role admitted");
}

# The session of a background psql has ended: psql notices at its next
# query (it waits on its input until then), and exits.
sub gone_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($s, $name) = @_;
	my $out = $s->query('SELECT 1', 10);
	my $deadline = time + 10;
	usleep(20_000) while $s->alive && time < $deadline;
	ok(!defined $out && !$s->alive, "$name: client saw its session end")
	  or diag 'psql stderr: ' . $s->stderr;
	$s->quit;
}

# 1. Normal exit (\q: Terminate message).
my $s = hold_ok($node, 'app', 'postgres', 'normal exit: session in');
full_ok('normal exit');
$s->quit;
released_ok('normal exit');

# 2. FATAL later in start-up, after the login passed role_guard.  Repeated,
# so that a place leaked by the first attempt refuses the next ones.
foreach my $i (1 .. 3)
{
	my $pos = log_pos($node);
	my ($ret, $out, $err) = try_login($node, tcp('app', 'nosuchdb'));
	isnt($ret, 0, "missing database, attempt $i: login fails");
	like(
		$err,
		qr/database "nosuchdb" does not exist/,
		"missing database, attempt $i: fails for the missing database");
	unlike(
		log_since($node, $pos),
		qr/too many connections/,
		"missing database, attempt $i: not refused by a budget");
}
released_ok('missing database');

foreach my $i (1 .. 3)
{
	my ($ret, $out, $err) = try_login($node, tcp('app', 'closeddb'));
	isnt($ret, 0, "database not accepting connections, attempt $i: fails");
	like(
		$err,
		qr/database "closeddb" is not currently accepting connections/,
		"database not accepting connections, attempt $i: core's message");
}
released_ok('database not accepting connections');

foreach my $i (1 .. 3)
{
	my ($ret, $out, $err) = try_login($node, tcp('nolog'));
	isnt($ret, 0, "NOLOGIN role, attempt $i: fails");
	like(
		$err,
		qr/role "nolog" is not permitted to log in/,
		"NOLOGIN role, attempt $i: core's message");
}
ok(poll_until($node, connections_of('nolog'), '0'),
	'NOLOGIN role: no place kept');

# Core's own CONNECTION LIMIT is checked after authentication too.
foreach my $i (1 .. 3)
{
	my ($ret, $out, $err) = try_login($node, tcp('capped'));
	isnt($ret, 0, "core CONNECTION LIMIT 0, attempt $i: fails");
	like(
		$err,
		qr/too many connections for role "capped"/,
		"core CONNECTION LIMIT 0, attempt $i: core's message");
	unlike($err, qr/role_guard budget/,
		"core CONNECTION LIMIT 0, attempt $i: not role_guard's refusal");
}
$node->safe_psql('postgres', 'ALTER ROLE capped CONNECTION LIMIT -1');
released_ok('core CONNECTION LIMIT', 'capped');

# 3. pg_terminate_backend.
$s = hold_ok($node, 'app', 'postgres', 'pg_terminate_backend: session in');
full_ok('pg_terminate_backend');
is( $node->safe_psql(
		'postgres',
		'SELECT pg_terminate_backend(' . ($s->backend_pid // 0) . ', 10000)'),
	't',
	'pg_terminate_backend: backend terminated');
gone_ok($s, 'pg_terminate_backend');
released_ok('pg_terminate_backend');

# 4. The client vanishes: psql killed with SIGKILL while idle.
$s = hold_ok($node, 'app', 'postgres', 'client killed: session in');
full_ok('client killed');
$s->kill_client;
released_ok('client killed');

# 4b. The client vanishes while its backend runs a query: the backend
# finds out when it sends the result.
$s = hold_ok($node, 'app', 'postgres', 'client killed mid-query: session in');
$s->send('SELECT pg_sleep(2)');
ok( poll_until(
		$node,
		q{SELECT count(*) FROM pg_stat_activity
		  WHERE usename = 'app' AND state = 'active' AND query LIKE '%pg_sleep(2)%'},
		'1'),
	'client killed mid-query: query running');
$s->kill_client;
full_ok('client killed mid-query, before the backend noticed');
released_ok('client killed mid-query');

# 5. A raw client that closes its socket without a Terminate message.
my $raw = raw_login($node, 'app');
ok(defined $raw->{sock}, 'socket closed: raw session in')
  or diag explain $raw;
full_ok('socket closed');
close($raw->{sock}) if defined $raw->{sock};
released_ok('socket closed');

# 6. FATAL after login: idle_session_timeout ends the session.
$s = hold_ok($node, 'app', 'postgres', 'idle_session_timeout: session in');
full_ok('idle_session_timeout');
$s->query("SET idle_session_timeout = '300ms'");
released_ok('idle_session_timeout');
gone_ok($s, 'idle_session_timeout');

# 7. SIGKILL of a backend: crash and crash-restart.  Another role's
# session is in too; after the restart every count starts from 0.
$s = hold_ok($node, 'app', 'postgres', 'SIGKILL: app session in');
my $s_other = hold_ok($node, 'other', 'postgres', 'SIGKILL: other in');
full_ok('SIGKILL');
my $pos = log_pos($node);
# (never kill 0: that would be our own process group)
ok($s->backend_pid && kill('KILL', $s->backend_pid),
	'SIGKILL sent to the app backend');
ok( defined wait_log(
		$node, qr/all server processes terminated; reinitializing/, $pos),
	'SIGKILL: postmaster reinitializes');
ok(poll_until($node, 'SELECT 1', '1'), 'SIGKILL: server accepts logins again');
gone_ok($s,       'SIGKILL: app');
gone_ok($s_other, 'SIGKILL: other');
is( $node->safe_psql(
		'postgres',
		q{SELECT coalesce(sum(connections), 0) FROM role_guard_usage
		  WHERE rolname IN ('app', 'other')}),
	'0',
	'SIGKILL: counts of app and other are 0 after crash-restart');
released_ok('SIGKILL');
$s = hold_ok($node, 'app', 'postgres',
	'SIGKILL: app in again after crash-restart');
full_ok('after crash-restart the budget still holds');
$s->quit;
released_ok('after crash-restart');

$node->stop;
done_testing();
