
# Copyright: see README.md.
#
# The superuser denial holds for the whole session (issue 22, item 1).  A
# session that logged in over TCP from a host role_guard.superuser_deny_hosts
# lists never runs a statement while its session identity or its SET ROLE
# identity is a superuser or a member of one:
#   1. the issue's attack on 15 (a CREATEROLE role grants itself a role that
#      is a member of a superuser role, SET ROLE, COPY TO PROGRAM), in one
#      simple query, inside a DO block, and over the extended protocol: the
#      program never runs (its file is never made), the session ends with
#      FATAL 28000 at the GRANT, and the GRANT is rolled back with it;
#   2. a membership granted by another session after login (every version):
#      the next statement (SET ROLE, COPY, a DO block, an extended-protocol
#      Parse/Bind/Execute, a function called through the fast path's cousin
#      set_config) ends the session before it runs: the file is never made;
#      one 'superuser_denied' event with the pid and superuser_denied + 1;
#   3. a SECURITY DEFINER function owned by a superuser is not a violation;
#      a session whose roles stay plain runs as before;
#   4. role_guard.superuser_deny_covers: a member of pg_execute_server_program
#      is covered by default (refused at login, and a grant after login ends
#      the session); with the setting empty it is not; 'createrole' covers
#      CREATEROLE roles on 15 only;
#   5. monitor mode: the statement runs (the reaper reports it, as before),
#      and back in enforce mode the next statement ends the session;
#   6. the Unix socket is never watched: the same roles act there;
#   7. a function called through the fast-path protocol (FunctionCall: no
#      executor, no ProcessUtility) after a membership granted by another
#      session ends the session before it runs, also in a session that
#      logged in while no host was listed, the list set by a reload since
#      (the function-call check is installed then); with no host listed the
#      call runs.
# Only 127.0.0.1 and the node's Unix socket are used.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RoleGuardTest qw(:DEFAULT write_hba event_is no_event_ok);

my $node = PostgreSQL::Test::Cluster->new('deny_session');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'role_guard'
listen_addresses = '127.0.0.1'
log_error_verbosity = verbose
log_min_messages = info
role_guard.superuser_deny_hosts = '127.0.0.1'
role_guard.reap_interval = '1h'
});
write_hba($node, <<'EOT');
local   all  all                 trust
host    all  all  127.0.0.1/32   trust
EOT
$node->start;
my $v15 = $node->pg_version < 16;

$node->safe_psql(
	'postgres', q{
CREATE ROLE admins NOLOGIN;
GRANT postgres TO admins;
CREATE ROLE mallory LOGIN CREATEROLE;
CREATE ROLE victim LOGIN;
CREATE ROLE plain LOGIN;
CREATE ROLE prog LOGIN;
CREATE FUNCTION sd_whoami() RETURNS text LANGUAGE sql SECURITY DEFINER
  AS 'SELECT current_user::text';
GRANT EXECUTE ON FUNCTION sd_whoami() TO PUBLIC;
CREATE EXTENSION role_guard;
});

my $dir = $node->basedir;
my $n   = 0;

# A file name a program would create; never created if the denial holds.
sub target { $n++; return "$dir/pwned_$n"; }

sub copy_sql
{
	my ($file) = @_;
	return "COPY (SELECT 1) TO PROGRAM 'touch $file'";
}

sub tcp { return tcp_connstr($node, $_[0]); }

sub counter
{
	my ($role) = @_;
	my $v = usage_of($node, $role, 'superuser_denied')->{superuser_denied};
	return $v eq '<norow>' ? 0 : $v;
}

sub member_of
{
	my ($role, $group) = @_;
	return $node->safe_psql('postgres',
		"SELECT pg_has_role('$role', '$group', 'MEMBER')");
}

# One session of $role over TCP (a psql reading a pipe); dies if refused.
sub session
{
	my ($role) = @_;
	my $s = bg_session($node, tcp($role));
	die "$role could not log in: " . $s->stderr unless $s->connected;
	return $s;
}

# $s is ended by role_guard: psql exits with FATAL 28000's message.
sub ended_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($s, $name) = @_;
	my $deadline = time + $RoleGuardTest::wait_seconds;
	usleep(50_000) while $s->alive && time < $deadline;
	ok(!$s->alive, "$name: the session is ended");
	like(
		$s->stderr,
		qr/FATAL:\s+terminating connection because a superuser may not be connected from host "127.0.0.1"\n\s*DETAIL:\s+[^\n]*role_guard\.superuser_deny_hosts lists this host/,
		"$name: FATAL with the denial and its DETAIL");
	return;
}

# ---------------------------------------------------------------------------
# 1. The issue's attack on 15: a CREATEROLE role grants itself the way in
# ---------------------------------------------------------------------------
SKIP:
{
	skip 'CREATEROLE grants any role only on 15 and earlier', 12 unless $v15;

	my $before = counter('mallory');
	my $f      = target();
	my ($ret, $out, $err) = try_login($node, tcp('mallory'),
		'GRANT admins TO mallory; SET ROLE postgres; ' . copy_sql($f));
	isnt($ret, 0, '1 simple query: refused');
	like($err, qr/FATAL:\s+terminating connection because a superuser may not be connected from host "127.0.0.1"/,
		'1 simple query: FATAL 28000 denial');
	ok(!-e $f, '1 simple query: the program never ran');
	is(member_of('mallory', 'admins'), 'f', '1 simple query: the GRANT was rolled back');
	is(counter('mallory') - $before, 1, '1 simple query: superuser_denied + 1');

	$f = target();
	($ret, $out, $err) = try_login($node, tcp('mallory'), qq{DO \$\$
BEGIN
  EXECUTE 'GRANT admins TO mallory';
  PERFORM set_config('role', 'postgres', false);
  EXECUTE \$q\$} . copy_sql($f) . qq{\$q\$;
END \$\$});
	like($err, qr/FATAL:\s+terminating connection because a superuser may not be connected/,
		'1 DO block: FATAL 28000 denial');
	ok(!-e $f, '1 DO block: the program never ran');
	is(member_of('mallory', 'admins'), 'f', '1 DO block: the GRANT was rolled back');

	# extended protocol: GRANT, then SET ROLE and COPY in one pipeline
	$f = target();
	my $w = RoleGuardTest::Wire->new($node, 'mallory');
	$w->send(
		$w->parse('', 'GRANT admins TO mallory'), $w->bind('', ''), $w->execute('', 0),
		$w->parse('', 'SET ROLE postgres'), $w->bind('', ''), $w->execute('', 0),
		$w->parse('', copy_sql($f)), $w->bind('', ''), $w->execute('', 0),
		$w->sync);
	is($w->wait_ready(1), undef, '1 extended protocol: no ReadyForQuery');
	my $e = $w->error($w->pending) // {};
	is(($e->{V} // '') . ' ' . ($e->{C} // ''), 'FATAL 28000',
		'1 extended protocol: FATAL 28000');
	ok(!-e $f, '1 extended protocol: the program never ran');
	is(member_of('mallory', 'admins'), 'f', '1 extended protocol: the GRANT was rolled back');
}

# ---------------------------------------------------------------------------
# 2. A membership granted after login by another session
# ---------------------------------------------------------------------------
my @cases = (
	[ 'SET ROLE then COPY', sub { "SET ROLE postgres; " . copy_sql($_[0]) } ],
	[ 'COPY as the member', sub { copy_sql($_[0]) } ],
	[
		'DO block',
		sub {
			"DO \$\$ BEGIN PERFORM set_config('role', 'postgres', false); "
			  . "EXECUTE \$q\$" . copy_sql($_[0]) . "\$q\$; END \$\$";
		}
	],
	[ 'SELECT set_config', sub { "SELECT set_config('role', 'postgres', false)" } ],
);
foreach my $c (@cases)
{
	my ($what, $sql) = @$c;
	my $s = session('victim');
	my $pid = $s->backend_pid;
	my $before = counter('victim');
	$node->safe_psql('postgres', 'GRANT admins TO victim');
	my $f = target();
	$s->send($sql->($f));
	ended_ok($s, "2 $what");
	ok(!-e $f, "2 $what: the program never ran");
	is(counter('victim') - $before, 1, "2 $what: superuser_denied + 1");
	event_is(
		$node,
		{ pid => $pid, event => 'superuser_denied' },
		{
			rolname     => 'victim',
			client_addr => '127.0.0.1',
			detail =>
			  qr/^Role became a member of superuser role "postgres" after it logged in; host "127\.0\.0\.1" matches role_guard\.superuser_deny_hosts\.$/
		},
		"2 $what: one superuser_denied event with its pid");
	$node->safe_psql('postgres', 'REVOKE admins FROM victim');
}

# extended protocol, membership granted between two pipelines
{
	my $w = RoleGuardTest::Wire->new($node, 'victim');
	$w->send($w->parse('', 'SELECT 1'), $w->bind('', ''), $w->execute('', 0), $w->sync);
	ok($w->wait_ready(1), '2 extended protocol: a first statement runs');
	$node->safe_psql('postgres', 'GRANT admins TO victim');
	my $f = target();
	$w->send($w->parse('s', copy_sql($f)), $w->bind('', 's'), $w->execute('', 0), $w->sync);
	is($w->wait_ready(1), undef, '2 extended protocol: no ReadyForQuery');
	my $e = $w->error($w->pending) // {};
	is(($e->{V} // '') . ' ' . ($e->{C} // ''), 'FATAL 28000', '2 extended protocol: FATAL 28000');
	ok(!-e $f, '2 extended protocol: the program never ran');
	$node->safe_psql('postgres', 'REVOKE admins FROM victim');
}

# ALTER ROLE ... SUPERUSER after login
{
	my $s = session('plain');
	$node->safe_psql('postgres', 'ALTER ROLE plain SUPERUSER');
	my $f = target();
	$s->send(copy_sql($f));
	ended_ok($s, '2 ALTER ROLE SUPERUSER');
	ok(!-e $f, '2 ALTER ROLE SUPERUSER: the program never ran');
	$node->safe_psql('postgres', 'ALTER ROLE plain NOSUPERUSER');
}

# ---------------------------------------------------------------------------
# 3. SECURITY DEFINER owned by a superuser; plain sessions
# ---------------------------------------------------------------------------
{
	my $s = session('plain');
	is($s->query('SELECT sd_whoami()'), 'postgres',
		'3 a SECURITY DEFINER function owned by a superuser runs');
	is($s->query("SELECT 40 + 2"), '42', '3 and the session goes on');
	is($s->query("DO \$\$ BEGIN PERFORM 1; END \$\$; SELECT 'ok'"), 'ok',
		'3 a plain session runs DO blocks and statements');
	$s->quit;
}

# ---------------------------------------------------------------------------
# 4. role_guard.superuser_deny_covers
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'GRANT pg_execute_server_program TO prog');
my ($ret, $out, $err) = try_login($node, tcp('prog'), 'SELECT 1');
like($err,
	qr/FATAL:\s+a superuser may not log in from host "127.0.0.1"\n\s*DETAIL:\s+Role "prog" is a member of "pg_execute_server_program" \(role_guard.superuser_deny_covers\), and role_guard.superuser_deny_hosts lists this host\./,
	'4 a member of pg_execute_server_program is refused at login by default');
ok(set_conf($node, 'role_guard.superuser_deny_covers' => ''),
	'4 reload with superuser_deny_covers empty');
($ret, $out, $err) = try_login($node, tcp('prog'), 'SELECT 42');
is($out, '42', '4 with the setting empty it is admitted');
ok(set_conf($node, 'role_guard.superuser_deny_covers' => 'pg_execute_server_program'),
	'4 reload with superuser_deny_covers = pg_execute_server_program');
$node->safe_psql('postgres', 'REVOKE pg_execute_server_program FROM prog');
{
	my $s = session('prog');
	$node->safe_psql('postgres', 'GRANT pg_execute_server_program TO prog');
	my $f = target();
	$s->send(copy_sql($f));
	ended_ok($s, '4 pg_execute_server_program granted after login');
	ok(!-e $f, '4 pg_execute_server_program granted after login: the program never ran');
	$node->safe_psql('postgres', 'REVOKE pg_execute_server_program FROM prog');
}
ok(set_conf($node, 'role_guard.superuser_deny_covers' => 'createrole'),
	'4 reload with superuser_deny_covers = createrole');
($ret, $out, $err) = try_login($node, tcp('mallory'), 'SELECT 42');
if ($v15)
{
	like($err, qr/DETAIL:\s+Role "mallory" has CREATEROLE \(role_guard.superuser_deny_covers\)/,
		'4 createrole: a CREATEROLE role is refused on 15');
}
else
{
	is($out, '42', '4 createrole: a CREATEROLE role is admitted on 16 and later');
}
($ret, $out, $err) = $node->psql('postgres', 'SET role_guard.superuser_deny_covers = \'\'');
isnt($ret, 0, '4 a session cannot SET superuser_deny_covers');
ok(set_conf($node, 'role_guard.superuser_deny_covers' =>
	'pg_execute_server_program, pg_write_server_files, pg_read_server_files'),
	'4 back to the default');

# ---------------------------------------------------------------------------
# 5. monitor mode
# ---------------------------------------------------------------------------
ok(set_conf($node, 'role_guard.mode' => 'monitor'), '5 reload with mode = monitor');
{
	my $s   = session('victim');
	my $pid = $s->backend_pid;
	$node->safe_psql('postgres', 'GRANT admins TO victim');
	is($s->query("SET ROLE postgres; SELECT current_user"), 'postgres',
		'5 monitor: the statement runs');
	is($s->query("SELECT 1"), '1', '5 monitor: and the next');
	no_event_ok($node, { pid => $pid, event => 'superuser_denied' },
		'5 monitor: no superuser_denied event');
	ok(set_conf($node, 'role_guard.mode' => 'enforce'), '5 reload with mode = enforce');
	$s->send('SELECT 1');
	ended_ok($s, '5 back in enforce: the next statement');
	$node->safe_psql('postgres', 'REVOKE admins FROM victim');
}

# ---------------------------------------------------------------------------
# 6. the Unix socket is the administrators' door
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres', 'GRANT admins TO victim');
	my $s = bg_session($node, sock_connstr($node, 'victim'));
	is($s->query("SET ROLE postgres; SELECT current_user"), 'postgres',
		'6 over the Unix socket a member acts as the superuser');
	$s->quit;
	$node->safe_psql('postgres', 'REVOKE admins FROM victim');
}

# ---------------------------------------------------------------------------
# 7. the fast-path protocol
# ---------------------------------------------------------------------------
{
	my $set_config = $node->safe_psql('postgres',
		"SELECT 'set_config(text,text,boolean)'::regprocedure::oid");
	# FunctionCall set_config($name, 'postgres', false) as victim: 'role'
	# by default (a member becomes the superuser), else a harmless one
	my $call = sub {
		my ($w, $name) = @_;
		$w->send($w->function_call($set_config, $name // 'role', 'postgres', 'f'));
		return $w->wait_ready(1);
	};
	my $runs_ok = sub {
		my ($w, $name, $what) = @_;
		my $r = $call->($w, $name);
		ok($r && grep({ $_->[0] eq 'V' } @$r), $what);
	};
	my $denied_ok = sub {
		my ($w, $name) = @_;
		is($call->($w), undef, "$name: no answer to the call");
		my $e = $w->error($w->pending) // {};
		is(($e->{V} // '') . ' ' . ($e->{C} // ''), 'FATAL 28000', "$name: FATAL 28000");
		like($e->{M} // '', qr/a superuser may not be connected from host "127\.0\.0\.1"/,
			"$name: the denial's message");
	};

	my $w = RoleGuardTest::Wire->new($node, 'victim');
	$runs_ok->($w, 'application_name', '7 a plain role\'s fast-path call runs');
	$node->safe_psql('postgres', 'GRANT admins TO victim');
	$denied_ok->($w, '7 after a membership granted meanwhile');
	$node->safe_psql('postgres', 'REVOKE admins FROM victim');

	ok(set_conf($node, 'role_guard.superuser_deny_hosts' => ''), '7 reload with no host listed');
	$w = RoleGuardTest::Wire->new($node, 'victim');
	my $m = RoleGuardTest::Wire->new($node, 'victim');
	$node->safe_psql('postgres', 'GRANT admins TO victim');
	$runs_ok->($m, 'role', '7 no host listed: a member\'s call runs');
	$m->terminate;
	$node->safe_psql('postgres', 'REVOKE admins FROM victim');
	ok(set_conf($node, 'role_guard.superuser_deny_hosts' => '127.0.0.1'),
		'7 reload listing 127.0.0.1 again');
	# the session reads the reload at its next message, still a plain role
	$runs_ok->($w, 'application_name', '7 a session from before the reload: a plain call runs');
	$node->safe_psql('postgres', 'GRANT admins TO victim');
	$denied_ok->($w, '7 a session from before the reload, made a member since');
	$node->safe_psql('postgres', 'REVOKE admins FROM victim');
}

$node->stop;
done_testing();
