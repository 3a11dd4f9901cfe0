
# Copyright: see README.md.
#
# role_guard.superuser_deny_hosts on one real server: superusers (and members
# of superuser roles, directly, indirectly or NOINHERIT) logging in over TCP
# from a listed address are refused with FATAL 28000 after authentication;
# the Unix socket is never refused; plain roles are admitted; replication
# connections are covered; a failed password learns nothing from role_guard;
# bad lists on reload keep the old list; good reloads take effect; monitor
# mode only logs, off mode is silent.  Addresses used: 127.0.0.1 and (when it
# can be bound) ::1, nothing else.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IO::Socket::IP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT wait_log superuser_denied_ok admitted_quietly_ok
  denied_counters_ok set_deny_hosts_ok connect_fails_log_level write_hba);

# Can this machine bind ::1?  (No IPv6 on lo in some containers.)
my ($have_v6, $v6_reason) = (1, '');
{
	my $s = IO::Socket::IP->new(
		LocalHost => '::1',
		LocalPort => 0,
		Listen    => 1,
		ReuseAddr => 1);
	if ($s)
	{
		close($s);
	}
	else
	{
		($have_v6, $v6_reason) = (0, "cannot bind ::1 ($@)");
	}
	($have_v6, $v6_reason) = (0, 'RG_TEST_NO_IPV6 is set')
	  if $ENV{RG_TEST_NO_IPV6};
}
diag "IPv6 part skipped: $v6_reason" unless $have_v6;

my $node = PostgreSQL::Test::Cluster->new('sudeny');
$node->init;
my $log_level = connect_fails_log_level($node);
my $listen = $have_v6 ? '127.0.0.1, ::1' : '127.0.0.1';
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'role_guard'
listen_addresses = '$listen'
log_error_verbosity = verbose
log_min_messages = $log_level
wal_level = replica
max_wal_senders = 4
role_guard.superuser_deny_hosts = '127.0.0.0/8'
});

# pg_hba.conf written whole: the password role gets scram-sha-256 over TCP,
# everything else is trusted.
write_hba($node, <<'EOT');
local   all          all                     trust
local   replication  all                     trust
host    all          pwsuper  127.0.0.1/32   scram-sha-256
host    all          pwsuper  ::1/128        scram-sha-256
host    replication  all      127.0.0.1/32   trust
host    replication  all      ::1/128        trust
host    all          all      127.0.0.1/32   trust
host    all          all      ::1/128        trust
EOT
$node->start;

$node->safe_psql(
	'postgres', q{
SET password_encryption = 'scram-sha-256';
CREATE ROLE su1 LOGIN SUPERUSER;
CREATE ROLE pwsuper LOGIN SUPERUSER PASSWORD 'right-pw';
CREATE ROLE plain LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
CREATE ROLE supgroup NOLOGIN SUPERUSER;
CREATE ROLE direct_m LOGIN;
CREATE ROLE middle NOLOGIN;
CREATE ROLE indirect_m LOGIN;
CREATE ROLE noinh_m LOGIN NOINHERIT;
GRANT supgroup TO direct_m;
GRANT supgroup TO middle;
GRANT middle TO indirect_m;
GRANT supgroup TO noinh_m;
CREATE EXTENSION role_guard;
});

my $port = $node->port;

sub tcp
{
	my ($user, %o) = @_;
	my $h = $o{host} // '127.0.0.1';
	my $s = "host=$h port=$port user=$user dbname=postgres connect_timeout=20";
	$s .= " $o{extra}" if defined $o{extra};
	return $s;
}

sub sock
{
	my ($user, %o) = @_;
	my $s =
	    'host='
	  . $node->host
	  . " port=$port user=$user dbname=postgres connect_timeout=20";
	$s .= " $o{extra}" if defined $o{extra};
	return $s;
}

# Expected superuser_denied per role, checked against role_guard_usage.
my %denied;

sub counters_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name) = @_;
	denied_counters_ok($node, $name, \%denied,
		qw(su1 pwsuper plain repl direct_m indirect_m noinh_m));
	return;
}

# One login that role_guard must refuse: psql fails with the message and
# DETAIL; the server log has the LOG line and FATAL 28000 with the DETAIL.
# %o: host (client address, default 127.0.0.1), member_of (superuser role
# for the member DETAIL), connstr (default tcp($role, host)), app
# (application_name expected in the LOG line).
sub denied_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($role, $name, %o) = @_;
	my $host = $o{host} // '127.0.0.1';
	superuser_denied_ok($node, $o{connstr} // tcp($role, host => $host),
		$name,
		role      => $role,
		host      => $host,
		member_of => $o{member_of},
		app       => $o{app});
	$denied{$role}++;
	return;
}

# A bad list in postgresql.conf, reloaded: the log names the entry, the
# setting keeps its old value.
sub bad_reload_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($value, $detail, $old) = @_;
	my $pos = log_pos($node);
	$node->append_conf('postgresql.conf',
		"role_guard.superuser_deny_hosts = '$value'\n");
	$node->reload;
	ok( defined wait_log(
			$node,
			qr/invalid value for parameter "role_guard\.superuser_deny_hosts": "\Q$value\E"\n[^\n]*DETAIL:\s+\Q$detail\E/,
			$pos),
		"bad list '$value' on reload: log names the entry")
	  or diag "log since reload:\n" . slurp_file($node->logfile, $pos);
	is( $node->safe_psql(
			'postgres',
			"SELECT current_setting('role_guard.superuser_deny_hosts')"),
		$old,
		"bad list '$value' on reload: old list '$old' still in force");
	ok($node->safe_psql('postgres', 'SELECT 1') eq '1',
		"bad list '$value' on reload: server still running");
	return;
}

sub v6_skip_msg { return "IPv6 part skipped: $v6_reason"; }

# ---------------------------------------------------------------------------
# 127.0.0.0/8, set at start-up
# ---------------------------------------------------------------------------
is( $node->safe_psql(
		'postgres', "SELECT current_setting('role_guard.superuser_deny_hosts')"
	),
	'127.0.0.0/8',
	'list from postgresql.conf in force at start-up');

denied_ok('su1', 'superuser over 127.0.0.1 with 127.0.0.0/8 listed');

# The SQLSTATE as the client sees it in the protocol (ErrorResponse).
{
	my $r = raw_login($node, 'su1');
	is( join('|',
			$r->{severity} // '<none>', $r->{sqlstate} // '<none>',
			$r->{message} // '<none>'),
		'FATAL|28000|a superuser may not log in from host "127.0.0.1"',
		'protocol-level login: ErrorResponse FATAL, SQLSTATE 28000');
	is($r->{sock}, undef, 'protocol-level login: no ReadyForQuery');
	$denied{su1}++;
}

denied_ok(
	'su1', 'application_name is in the LOG line',
	connstr => tcp('su1', extra => 'application_name=rg_app_010'),
	app     => 'rg_app_010');

admitted_quietly_ok($node, sock('su1'),
	'same superuser over the Unix socket: admitted');
admitted_quietly_ok($node, tcp('plain'),
	'plain role over 127.0.0.1: admitted');

denied_ok(
	'direct_m', 'direct member of a superuser role: refused',
	member_of => 'supgroup');
denied_ok(
	'indirect_m', 'member through a middle role: refused',
	member_of => 'supgroup');
denied_ok(
	'noinh_m', 'NOINHERIT member (can SET ROLE supgroup): refused',
	member_of => 'supgroup');
admitted_quietly_ok($node, sock('indirect_m'),
	'member of a superuser role over the Unix socket: admitted');

# Replication connections (walsender), physical.
denied_ok(
	'su1', 'superuser replication connection over 127.0.0.1: refused',
	connstr => tcp('su1', extra => 'replication=true'));
admitted_quietly_ok(
	$node, tcp('repl', extra => 'replication=true'),
	'REPLICATION (not superuser) role, replication connection: admitted',
	sql    => 'IDENTIFY_SYSTEM',
	stdout => qr/^\d+\|\d+\|/);
admitted_quietly_ok(
	$node, sock('su1', extra => 'replication=true'),
	'superuser replication connection over the Unix socket: admitted',
	sql    => 'IDENTIFY_SYSTEM',
	stdout => qr/^\d+\|\d+\|/);

counters_ok('after the 127.0.0.0/8 refusals');

# A failed password learns nothing from role_guard; nothing is counted.
my $wrong_err;
{
	my $pos = log_pos($node);
	my ($ret, $out, $err) = $node->psql(
		'postgres', 'SELECT 1',
		connstr      => tcp('pwsuper', extra => 'password=wrong-pw'),
		extra_params => ['-w']);
	isnt($ret, 0, 'wrong password, superuser, listed host: refused');
	like(
		$err,
		qr/FATAL:\s+password authentication failed for user "pwsuper"/,
		'wrong password: client gets PostgreSQL\'s password failure');
	unlike($err, qr/role_guard|may not log in|superuser/i,
		'wrong password: client sees nothing from role_guard');
	$wrong_err = $err;
	my $log = slurp_file($node->logfile, $pos);
	like(
		$log,
		qr/FATAL:\s+28P01: password authentication failed for user "pwsuper"/,
		'wrong password: log has the password failure (28P01)');
	unlike($log, qr/role_guard|may not log in/,
		'wrong password: nothing from role_guard in the log');
	counters_ok('after the wrong password');
}
# The right password: refused as if it were wrong (scram-sha-256 proves a
# secret), the real reason in the log only; counted as a denial.
{
	my $pos = log_pos($node);
	my ($ret, $out, $err) = $node->psql(
		'postgres', 'SELECT 1',
		connstr      => tcp('pwsuper', extra => 'password=right-pw'),
		extra_params => ['-w']);
	isnt($ret, 0, 'right password, superuser, listed host: refused');
	is($err, $wrong_err,
		'right password: the client error is the wrong password\'s, byte for byte');
	my $log = wait_log($node, qr/FATAL:\s+28P01: password authentication failed for user "pwsuper"\n[^\n]*DETAIL:\s+Role "pwsuper" is a superuser, and role_guard\.superuser_deny_hosts lists this host\./, $pos);
	ok(defined $log, 'right password: the log has 28P01 with the real reason as its DETAIL');
	like($log // '', qr/LOG:\s+(?:00000: )?role_guard: superuser login refused: role "pwsuper", host "127\.0\.0\.1"/,
		'right password: and role_guard\'s LOG line');
	$denied{pwsuper}++;
	counters_ok('after the right password');
}
admitted_quietly_ok($node, sock('pwsuper'),
	'password superuser over the Unix socket: admitted');

# A role that does not exist: core's own message, nothing from role_guard.
$node->connect_fails(
	tcp('no_such_role'),
	'unknown role from a listed host: refused by core',
	expected_stderr => qr/role "no_such_role" does not exist/,
	log_unlike      => [qr/role_guard|may not log in/]);

SKIP:
{
	skip v6_skip_msg(), 5 unless $have_v6;
	admitted_quietly_ok($node, tcp('su1', host => '::1'),
		'superuser over ::1 with only 127.0.0.0/8 listed: admitted');
}

# ---------------------------------------------------------------------------
# Bad lists on reload: old list stays, log names the entry.
# ---------------------------------------------------------------------------
bad_reload_ok('10.0.0.0/33',
	'Entry "10.0.0.0/33" has a prefix length out of range (0 to 32 for IPv4).',
	'127.0.0.0/8');
denied_ok('su1', 'after bad reload 10.0.0.0/33: still refused');
bad_reload_ok('::1/200',
	'Entry "::1/200" has a prefix length out of range (0 to 128 for IPv6).',
	'127.0.0.0/8');
denied_ok('su1', 'after bad reload ::1/200: still refused');
bad_reload_ok('foo',
	'Entry "foo" is not an IPv4 or IPv6 address or CIDR block (host names are not allowed).',
	'127.0.0.0/8');
denied_ok('su1', 'after bad reload foo: still refused');
bad_reload_ok('10.0.0.1, 127.0.0.0/8, foo',
	'Entry "foo" is not an IPv4 or IPv6 address or CIDR block (host names are not allowed).',
	'127.0.0.0/8');
denied_ok('su1', 'after bad reload with good entries and foo: still refused');

# ---------------------------------------------------------------------------
# Good reloads change the list for the next login.
# ---------------------------------------------------------------------------
set_deny_hosts_ok($node, '10.0.0.0/8');
admitted_quietly_ok($node, tcp('su1'),
	'superuser over 127.0.0.1 with only 10.0.0.0/8 listed: admitted');
admitted_quietly_ok($node, tcp('direct_m'),
	'member over 127.0.0.1 with only 10.0.0.0/8 listed: admitted');

set_deny_hosts_ok($node, '127.1.2.3/8');
denied_ok('su1', 'host bits past the prefix ignored (127.1.2.3/8)');

set_deny_hosts_ok($node, '10.0.0.0/8, 127.0.0.1');
denied_ok('su1', 'a bare address (no prefix) in a list of two');

set_deny_hosts_ok($node, '127.0.0.2/32');
admitted_quietly_ok($node, tcp('su1'),
	'127.0.0.2/32 listed, client 127.0.0.1: admitted');

set_deny_hosts_ok($node, '');
admitted_quietly_ok($node, tcp('su1'), 'empty list: superuser admitted');

# ---------------------------------------------------------------------------
# IPv6: ::1/128 denies ::1 and not 127.0.0.1.
# ---------------------------------------------------------------------------
set_deny_hosts_ok($node, '::1/128');
admitted_quietly_ok($node, tcp('su1'),
	'::1/128 listed, superuser over 127.0.0.1: admitted');
SKIP:
{
	skip v6_skip_msg(), 13 unless $have_v6;
	denied_ok(
		'su1', '::1/128 listed, superuser over ::1: refused',
		host => '::1');
	denied_ok(
		'indirect_m', '::1/128 listed, indirect member over ::1: refused',
		host      => '::1',
		member_of => 'supgroup');
	admitted_quietly_ok($node, tcp('plain', host => '::1'),
		'::1/128 listed, plain role over ::1: admitted');
}

# ---------------------------------------------------------------------------
# all: every TCP superuser, never the socket, never a plain role.
# ---------------------------------------------------------------------------
set_deny_hosts_ok($node, 'all');
denied_ok('su1', 'all: superuser over 127.0.0.1 refused');
denied_ok('direct_m', 'all: member over 127.0.0.1 refused',
	member_of => 'supgroup');
SKIP:
{
	skip v6_skip_msg(), 4 unless $have_v6;
	denied_ok('su1', 'all: superuser over ::1 refused', host => '::1');
}
admitted_quietly_ok($node, sock('su1'), 'all: superuser over the Unix socket admitted');
admitted_quietly_ok($node, tcp('plain'), 'all: plain role over 127.0.0.1 admitted');
denied_ok(
	'su1', 'all: superuser replication connection refused',
	connstr => tcp('su1', extra => 'replication=true'));

counters_ok('after the all refusals');

# ---------------------------------------------------------------------------
# monitor: admitted, the would-be line logged, counted as would_deny only.
# ---------------------------------------------------------------------------
sub would_deny
{
	my ($role) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce((SELECT would_deny FROM role_guard_role_stats() WHERE rolname = '$role'), 0)"
	);
}
my $wd_su1 = would_deny('su1');
my $wd_dm  = would_deny('direct_m');

ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'reload with mode = monitor');
$node->connect_ok(
	tcp('su1', extra => 'application_name=rg_mon'),
	'monitor: superuser over 127.0.0.1 admitted',
	sql             => 'SELECT 42',
	expected_stdout => qr/^42$/,
	log_like => [
		qr/LOG:\s+(?:00000: )?role_guard: superuser login would be refused: role "su1", host "127\.0\.0\.1", application_name "rg_mon"/
	],
	log_unlike => [ qr/may not log in/, qr/superuser login refused/ ]);
$node->connect_ok(
	tcp('direct_m'),
	'monitor: member over 127.0.0.1 admitted',
	sql             => 'SELECT 42',
	expected_stdout => qr/^42$/,
	log_like => [
		qr/role_guard: superuser login would be refused: role "direct_m", host "127\.0\.0\.1"/
	],
	log_unlike => [qr/may not log in/]);
admitted_quietly_ok($node, sock('su1'), 'monitor: superuser over the socket: nothing logged');
admitted_quietly_ok($node, tcp('plain'), 'monitor: plain role over TCP: nothing logged');
counters_ok('monitor: superuser_denied unchanged');
is( would_deny('su1') . ',' . would_deny('direct_m'),
	($wd_su1 + 1) . ',' . ($wd_dm + 1),
	'monitor: would_deny counted once each (role_guard_role_stats)');

# ---------------------------------------------------------------------------
# off: admitted, nothing logged, nothing counted.
# ---------------------------------------------------------------------------
ok(set_conf($node, 'role_guard.mode' => 'off'), 'reload with mode = off');
$node->connect_ok(
	tcp('su1'),
	'off: superuser over 127.0.0.1 admitted silently',
	sql             => 'SELECT 42',
	expected_stdout => qr/^42$/,
	log_unlike      => [qr/role_guard/]);
$node->connect_ok(
	tcp('indirect_m'),
	'off: member over 127.0.0.1 admitted silently',
	sql             => 'SELECT 42',
	expected_stdout => qr/^42$/,
	log_unlike      => [qr/role_guard/]);
counters_ok('off: superuser_denied unchanged');
is( would_deny('su1') . ',' . would_deny('direct_m'),
	($wd_su1 + 1) . ',' . ($wd_dm + 1),
	'off: would_deny unchanged');

# Back to enforce: refused again on the next login.
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'reload with mode = enforce');
denied_ok('su1', 'enforce again: superuser over 127.0.0.1 refused');
counters_ok('at the end');

$node->stop;
done_testing();
