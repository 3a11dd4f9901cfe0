
# Copyright: see README.md.
#
# The superuser denial and what a denied host could learn or get around
# (issue 22, item 2):
#   1. the password oracle: where the method proves a secret (md5 here,
#      scram-sha-256 in 010), a refused superuser login with the right
#      password gets exactly the ErrorResponse of a wrong password, every
#      field (severity, SQLSTATE, message, file, line, routine); the real
#      reason is in the server log and role_guard_events; a wrong password
#      is core's refusal and records no denial;
#   2. a denied login to a database that does not exist (or by a NOLOGIN
#      superuser) is refused and recorded as a denial, whatever core would
#      have said next; a plain role still gets core's error;
#   3. relays: a backend of this server that connects over the Unix socket
#      (dblink) on behalf of a client on a denied host counts as that host:
#      the superuser login it makes is refused, with the relaying backend's
#      pid in the event; through two backends too; the same dblink from a
#      session over the Unix socket is the administrators' door;
#   4. login blocks count wrong passwords relayed that way as the client's
#      host's, and not those relayed for a Unix-socket session.
# Only 127.0.0.1 and the node's Unix socket are used.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT write_hba event_is no_event_ok raw_result);

my $node = PostgreSQL::Test::Cluster->new('deny_relay');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'role_guard'
listen_addresses = '127.0.0.1'
log_error_verbosity = verbose
log_min_messages = info
role_guard.superuser_deny_hosts = '127.0.0.1'
});
write_hba($node, <<'EOT');
local   all  pwsu,relay2               scram-sha-256
local   all  all                       trust
host    all  md5su,md5plain  127.0.0.1/32   md5
host    all  scramsu         127.0.0.1/32   scram-sha-256
host    all  all             127.0.0.1/32   trust
EOT
$node->start;

$node->safe_psql(
	'postgres', q{
SET password_encryption = 'md5';
CREATE ROLE md5su LOGIN SUPERUSER PASSWORD 'right-pw';
CREATE ROLE md5plain LOGIN PASSWORD 'right-pw';
SET password_encryption = 'scram-sha-256';
CREATE ROLE pwsu LOGIN SUPERUSER PASSWORD 'right-pw';
CREATE ROLE scramsu LOGIN SUPERUSER PASSWORD 'right-pw';
CREATE ROLE relay2 LOGIN PASSWORD 'right-pw';
CREATE ROLE relayer LOGIN;
CREATE ROLE su1 LOGIN SUPERUSER;
CREATE ROLE nologsu NOLOGIN SUPERUSER;
CREATE ROLE plain LOGIN;
CREATE EXTENSION role_guard;
});

sub counter
{
	my ($role) = @_;
	my $v = usage_of($node, $role, 'superuser_denied')->{superuser_denied};
	return $v eq '<norow>' ? 0 : $v;
}

sub count_events
{
	my ($where) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM role_guard_events WHERE $where");
}

# An ErrorResponse's fields in one line, every field, by code.
sub fields_text
{
	my ($r) = @_;
	my $f = $r->{fields} // {};
	return join(' ', map { "$_=$f->{$_}" } sort keys %$f);
}

# ---------------------------------------------------------------------------
# 1. The password oracle is closed
# ---------------------------------------------------------------------------
my $wrong = raw_login($node, 'md5su', 'postgres', password => 'wrong-pw');
is($wrong->{sqlstate}, '28P01', '1 wrong password: core\'s 28P01')
  or diag raw_result($wrong);
my $pos   = log_pos($node);
my $right = raw_login($node, 'md5su', 'postgres', password => 'right-pw');
is(fields_text($right), fields_text($wrong),
	'1 right password of a superuser on a denied host: the same ErrorResponse, every field');
like(fields_text($right), qr/R=auth_failed/, '1 (the fields include the routine)');
my $log = log_since($node, $pos);
like($log,
	qr/FATAL:\s+28P01: password authentication failed for user "md5su"\n[^\n]*DETAIL:\s+Role "md5su" is a superuser, and role_guard.superuser_deny_hosts lists this host\./,
	'1 the server log has the real reason as the DETAIL');
is(count_events(q{event = 'superuser_denied' AND rolname = 'md5su'}), '1',
	'1 one superuser_denied event (the right password only)');
is(counter('md5su'), 1, '1 superuser_denied = 1');
my $again = raw_login($node, 'md5su', 'postgres', password => 'right-pw');
is(fields_text($again), fields_text($wrong), '1 and again');

# scram-sha-256: the server's final message (which only a right proof gets)
# is held back for a login the denial will refuse, so the messages the
# client receives are those of a wrong password, in the same order.
my $swrong = raw_login($node, 'scramsu', 'postgres', password => 'wrong-pw');
my $sright = raw_login($node, 'scramsu', 'postgres', password => 'right-pw');
is(join(',', @{ $sright->{codes} }), join(',', @{ $swrong->{codes} }),
	'1 scram: the same authentication requests for the right password as for a wrong one (no SASL final)')
  or diag 'right: ' . join(',', @{ $sright->{codes} }) . ' wrong: ' . join(',', @{ $swrong->{codes} });
is(fields_text($sright), fields_text($swrong), '1 scram: the same ErrorResponse, every field');
is(count_events(q{event = 'superuser_denied' AND rolname = 'scramsu'}), '1',
	'1 scram: one superuser_denied event (the right password only)');
ok(set_conf($node, 'role_guard.superuser_deny_hosts' => ''), '1 scram: reload with no denied host');
my $sok = raw_login($node, 'scramsu', 'postgres', password => 'right-pw');
ok($sok->{sock}, '1 scram: with no denied host the right password gets in')
  or diag raw_result($sok);
is($sok->{codes}[-2], 12, '1 scram: and gets the SASL final message (12)')
  or diag join(',', @{ $sok->{codes} });
RoleGuardTest::raw_close($sok->{sock});
ok(set_conf($node, 'role_guard.superuser_deny_hosts' => '127.0.0.1'), '1 scram: the denied host again');

my $plain = raw_login($node, 'md5plain', 'postgres', password => 'right-pw');
ok($plain->{sock}, '1 a plain role with its password is admitted');
RoleGuardTest::raw_close($plain->{sock});

# ---------------------------------------------------------------------------
# 2. A denial is recorded whatever core would have said next
# ---------------------------------------------------------------------------
my ($ret, $out, $err) = try_login($node, tcp_connstr($node, 'su1', 'nosuchdb'));
like($err, qr/FATAL:\s+a superuser may not log in from host "127.0.0.1"/,
	'2 a superuser to a database that does not exist: denied');
unlike($err, qr/does not exist/, '2 and not told whether the database exists');
event_is($node, { rolname => 'su1', event => 'superuser_denied' },
	{ datname => 'nosuchdb', client_addr => '127.0.0.1' },
	'2 one superuser_denied event naming the database');
is(counter('su1'), 1, '2 superuser_denied = 1');
($ret, $out, $err) = try_login($node, tcp_connstr($node, 'nologsu'));
like($err, qr/FATAL:\s+a superuser may not log in from host "127.0.0.1"/,
	'2 a NOLOGIN superuser: denied');
is(count_events(q{event = 'superuser_denied' AND rolname = 'nologsu'}), '1',
	'2 and recorded');
($ret, $out, $err) = try_login($node, tcp_connstr($node, 'plain', 'nosuchdb'));
like($err, qr/FATAL:\s+database "nosuchdb" does not exist/,
	'2 a plain role gets core\'s error');
is(count_events(q{rolname = 'plain'}), '0', '2 and no event');

# ---------------------------------------------------------------------------
# 3. Relays through the Unix socket
# ---------------------------------------------------------------------------
SKIP:
{
	my $have = $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_available_extensions WHERE name = 'dblink'});
	skip 'dblink is not installed with this server', 14 unless $have eq '1';
	$node->safe_psql('postgres', 'CREATE EXTENSION dblink');

	my $sockdir = $node->host;
	my $port    = $node->port;
	my $to = sub {
		my ($user, $sql, $tag) = @_;
		$tag //= 'q';
		return "SELECT x FROM dblink('host=$sockdir port=$port dbname=postgres user=$user password=right-pw', "
		  . "\$$tag\$$sql\$$tag\$) AS t(x text)";
	};

	my $s = bg_session($node, tcp_connstr($node, 'relayer'));
	die 'relayer could not log in: ' . $s->stderr unless $s->connected;
	my $pid = $s->backend_pid;
	my $res = $s->query($to->('pwsu', 'SELECT current_user::text'));
	ok(!defined $res || $res eq '', '3 dblink from a denied host to a superuser over the socket: no result');
	like($s->stderr, qr/password authentication failed for user "pwsu"/,
		'3 the relayed login is refused as a failed password (scram-sha-256)');
	event_is(
		$node,
		{ rolname => 'pwsu', event => 'superuser_denied' },
		{
			client_addr => '127.0.0.1',
			detail =>
			  qr/^Role is a superuser; host "127\.0\.0\.1" \(through backend $pid over the Unix socket\) matches role_guard\.superuser_deny_hosts\.$/
		},
		'3 the event names the client\'s host and the relaying backend');
	is($s->query($to->('relay2', 'SELECT current_user::text')), 'relay2',
		'3 a plain role through the same relay is admitted');
	$s->query($to->('relay2', $to->('pwsu', 'SELECT current_user::text'), 'r'));
	is(count_events(q{event = 'superuser_denied' AND rolname = 'pwsu'}), '2',
		'3 through two backends: still from the denied host');
	is($s->query('SELECT 1'), '1', '3 the relaying session itself goes on');
	$s->quit;

	my $local = bg_session($node, sock_connstr($node, 'relayer'));
	is($local->query($to->('pwsu', 'SELECT current_user::text')), 'pwsu',
		'3 the same dblink from a Unix-socket session is admitted');
	$local->quit;
	is(count_events(q{event = 'superuser_denied' AND rolname = 'pwsu'}), '2',
		'3 and records no denial');
	is(counter('pwsu'), 2, '3 superuser_denied of pwsu = 2');

	# 4. login blocks: guesses that a backend relays for its TCP client
	# count as that client's, (127.0.0.1, relay2); relayed for a session
	# over the Unix socket, they are not counted
	ok(set_conf($node, 'role_guard.auth_failure_limit' => '3'), '4 auth_failure_limit = 3');
	my $guess = sub {
		my ($s, $pw) = @_;
		$s->query("SELECT x FROM dblink('host=$sockdir port=$port dbname=postgres user=relay2 password=$pw', "
			  . "'SELECT 1::text') AS t(x text)");
		return $s->stderr;
	};
	my $g = bg_session($node, tcp_connstr($node, 'relayer'));
	$guess->($g, "wrong$_") for 1 .. 3;
	is( $node->safe_psql('postgres',
			q{SELECT host(client_addr) || ' ' || rolname || ' ' || failures || ' '
			  || (blocked_until IS NOT NULL)::text FROM role_guard_auth_blocks}),
		'127.0.0.1 relay2 3 true',
		'4 three wrong passwords relayed by dblink for a TCP client block (its address, relay2)');
	like($guess->($g, 'right-pw'),
		qr/too many failed logins for role "relay2" from host "127\.0\.0\.1"/,
		'4 the right password through the relay is refused then');
	$g->quit;
	$node->safe_psql('postgres', 'SELECT role_guard_unblock(NULL)');
	my $lg = bg_session($node, sock_connstr($node, 'relayer'));
	$guess->($lg, "wrong$_") for 1 .. 4;
	is($node->safe_psql('postgres', 'SELECT count(*) FROM role_guard_auth_blocks'),
		'0', '4 wrong passwords relayed for a Unix-socket session are not counted');
	$lg->quit;
	ok(set_conf($node, 'role_guard.auth_failure_limit' => '0'), '4 auth_failure_limit = 0 again');
}

$node->stop;
done_testing();
