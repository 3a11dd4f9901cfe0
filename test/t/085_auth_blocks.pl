
# Copyright: see README.md.
#
# Login blocks after failed authentications (role_guard.auth_failure_limit)
# on one real server, SCRAM over TCP (127.0.0.1, 127.0.0.2 as a second
# client address, and ::1): the limit blocks the (address, role name) pair;
# while blocked, a right password is refused exactly like a wrong one, down
# to the protocol messages (no SCRAM final message); other roles from the
# same address and the same role from other addresses are unaffected; Unix
# socket failures are never counted; abandoned logins are not counted; a
# success forgets failures; unknown role names, superusers and replication
# connections are blocked too; exempt hosts; role_guard_unblock; expiry
# after auth_block_time; a reload changing the limit; monitor mode;
# limit 0; the events, usage.auth_blocked, and ALTER EXTENSION UPDATE from
# 1.1.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT write_hba scram_login scram_result events_where
  wait_log inject_arm inject_wait inject_wake);

my $su = (getpwuid($<))[0];
my $node = rg_node(
	'authblock',
	start => 0,
	conf => qq{
listen_addresses = '127.0.0.1,::1'
password_encryption = 'scram-sha-256'
role_guard.auth_failure_limit = 3
max_wal_senders = 2
wal_level = replica
role_guard.auth_failure_window = '1min'
role_guard.auth_block_time = '10min'
});
write_hba($node, qq{
local all "$su" trust
local all all scram-sha-256
host all trustsu 127.0.0.0/8 trust
host all all 127.0.0.0/8 scram-sha-256
host all all ::1/128 scram-sha-256
host replication all 127.0.0.0/8 scram-sha-256
});
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
CREATE ROLE app LOGIN PASSWORD 'apppw';
CREATE ROLE other LOGIN PASSWORD 'otherpw';
CREATE ROLE boss LOGIN SUPERUSER PASSWORD 'bosspw';
CREATE ROLE repl LOGIN REPLICATION PASSWORD 'replpw';
CREATE ROLE mon LOGIN PASSWORD 'monpw';
CREATE ROLE cnt LOGIN PASSWORD 'cntpw';
CREATE ROLE slide LOGIN PASSWORD 'slidepw';
CREATE ROLE su1 LOGIN SUPERUSER PASSWORD 'su1pw';
CREATE ROLE su2 LOGIN SUPERUSER PASSWORD 'su2pw';
CREATE ROLE trustsu LOGIN SUPERUSER;
});

# shared memory: max_auth_blocks (1024) places of 272 bytes (128 of them the
# times of a pair's last 16 failures), 2048 buckets of 4 bytes and a 48-byte
# header
is($node->safe_psql('postgres',
		q{SELECT size FROM pg_shmem_allocations WHERE name = 'role_guard auth blocks'}),
	1024 * 272 + 2048 * 4 + 48, 'the table takes 286 768 bytes at the defaults');

sub pairs
{
	return $node->safe_psql('postgres',
		q{SELECT host(client_addr) || ' ' || rolname || ' ' || failures || ' '
		  || CASE WHEN blocked_until IS NOT NULL THEN 't' ELSE 'f' END
		  FROM role_guard_auth_blocks ORDER BY 1});
}

# n logins of $user with $pw (%o as scram_login); the results.
sub logins
{
	my ($n, $user, $pw, %o) = @_;
	return map { scram_login($node, $user, $pw, %o) } 1 .. $n;
}

my $wrong_re = qr/^password authentication failed for user ".+"$/s;
my $block_re = qr/^too many failed logins for role "(\w+)" from host "([0-9a-f.:]+)"$/;

sub failed_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($r, $name) = @_;
	ok(($r->{sqlstate} // '') eq '28P01' && ($r->{message} // '') =~ $wrong_re,
		"$name: password authentication failed") or diag scram_result($r);
}

sub blocked_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($r, $user, $host, $name) = @_;
	ok( ($r->{sqlstate} // '') eq '28000'
		  && ($r->{message} // '') eq
		  qq{too many failed logins for role "$user" from host "$host"}
		  && ($r->{detail} // '') =~
		  /^role_guard refuses logins of this role from this host until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/,
		"$name: refused as blocked, DETAIL with the end of the block")
	  or diag scram_result($r);
}

sub admitted
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($r, $name) = @_;
	ok($r->{admitted}, "$name: admitted") or diag scram_result($r);
}

# --- Unix socket failures are never counted -------------------------------
{
	my $cs = sock_connstr($node, 'app') . ' password=wrong';
	for (1 .. 5)
	{
		my ($ret, $out, $err) = try_login($node, $cs);
		like($err, qr/password authentication failed for user "app"/,
			"socket login $_ with a wrong password fails") if $_ == 1;
	}
	is(pairs(), '', 'five socket failures: no pair counted');
	my ($ret) = try_login($node, sock_connstr($node, 'app') . ' password=apppw');
	is($ret, 0, 'app logs in over the socket afterwards');
}

# --- abandoned logins (hang up at the password request) are not counted --
{
	my @r = (logins(5, 'app', 'x', abandon => 'request'),
		logins(5, 'app', 'x', abandon => 'continue'));
	is(scalar(grep { $_->{abandoned} } @r), 10,
		'ten logins hung up: five when asked for SASL, five after server-first');
	# the server has seen them end: a login after them is served in order
	admitted(scram_login($node, 'app', 'apppw'), 'app with its password');
	is(pairs(), '', 'ten abandoned logins: nothing counted');
}

# --- a success forgets failures ------------------------------------------
{
	my @r = logins(2, 'app', 'wrong');
	failed_ok($_, 'app wrong') foreach @r;
	is(pairs(), '127.0.0.1 app 2 f', 'two failures counted for (127.0.0.1, app)');
	admitted(scram_login($node, 'app', 'apppw'), 'app with its password');
	is(pairs(), '', 'the success forgot them');
}

# --- the limit blocks the pair --------------------------------------------
my $pos = log_pos($node);
my @three = logins(3, 'app', 'wrong');
failed_ok($_, 'app wrong, below the block') foreach @three;
is(pairs(), '127.0.0.1 app 3 t', 'three failures: (127.0.0.1, app) blocked');
ok(wait_log($node,
		qr/LOG:  .*role_guard: logins of role "app" from host "127\.0\.0\.1" blocked/, $pos),
	'a LOG line says the block began');
{
	my @ev = events_where($node, { event => 'auth_blocked' });
	is(scalar(@ev), 1, 'one auth_blocked event');
	is($ev[0]{rolname} . ' ' . $ev[0]{client_addr}, 'app 127.0.0.1',
		'... for app from 127.0.0.1');
	like($ev[0]{detail},
		qr/^3 failed authentications within 60 s \(role_guard\.auth_failure_limit = 3\); logins of this role from this host are refused until /,
		'... with what happened in its detail');
}
is($node->safe_psql('postgres',
		q{SELECT auth_blocked FROM role_guard_usage WHERE rolname = 'app'}),
	'1', 'role_guard_usage.auth_blocked of app is 1');

# --- while blocked: right and wrong passwords alike ------------------------
{
	my $wrong = scram_login($node, 'app', 'wrong');
	my $right = scram_login($node, 'app', 'apppw');
	blocked_ok($wrong, 'app', '127.0.0.1', 'wrong password');
	blocked_ok($right, 'app', '127.0.0.1', 'right password');
	is(scram_result($right), scram_result($wrong),
		'right and wrong password: the same messages, message and DETAIL');
	is_deeply($right->{codes}, [ 10, 11 ],
		'the right password got no SCRAM final message (server signature)')
	  or diag scram_result($right);

	# libpq's view: the same error text
	my $cs = tcp_connstr($node, 'app');
	my (undef, undef, $err_wrong) = try_login($node, "$cs password=wrong");
	my (undef, undef, $err_right) = try_login($node, "$cs password=apppw");
	like($err_right, qr/too many failed logins for role "app"/,
		'psql with the right password: refused as blocked');
	is($err_right, $err_wrong, 'psql: the same text for right and wrong');
	is(pairs(), '127.0.0.1 app 3 t', 'logins while blocked are not counted');
}

# --- other pairs are unaffected --------------------------------------------
admitted(scram_login($node, 'other', 'otherpw'), 'other role from 127.0.0.1');
admitted(scram_login($node, 'app', 'apppw', local => '127.0.0.2'),
	'app from 127.0.0.2');
admitted(scram_login($node, 'app', 'apppw', host => '::1'), 'app from ::1');
is((try_login($node, sock_connstr($node, 'app') . ' password=apppw'))[0],
	0, 'app over the Unix socket');

# --- IPv6: its own pair --------------------------------------------------
{
	failed_ok($_, 'app wrong from ::1') foreach logins(3, 'app', 'wrong', host => '::1');
	blocked_ok(scram_login($node, 'app', 'apppw', host => '::1'),
		'app', '::1', 'app from ::1 after three failures');
	admitted(scram_login($node, 'app', 'apppw', local => '127.0.0.2'),
		'app from 127.0.0.2 still');
}

# --- an unknown role name, a superuser, a replication connection ----------
{
	failed_ok($_, 'nosuch') foreach logins(3, 'nosuch', 'x');
	blocked_ok(scram_login($node, 'nosuch', 'x'), 'nosuch', '127.0.0.1',
		'an unknown role name');
	failed_ok($_, 'boss') foreach logins(3, 'boss', 'wrong');
	blocked_ok(scram_login($node, 'boss', 'bosspw'), 'boss', '127.0.0.1',
		'a superuser with its password, over TCP');
	is( (try_login($node, sock_connstr($node, 'boss') . ' password=bosspw'))[0],
		0, 'the superuser over the Unix socket');
	failed_ok($_, 'repl (replication)')
	  foreach logins(3, 'repl', 'wrong', replication => 'true');
	blocked_ok(scram_login($node, 'repl', 'replpw', replication => 'true'),
		'repl', '127.0.0.1', 'a replication connection');
}

# --- role_guard_unblock ----------------------------------------------------
is($node->safe_psql('postgres', q{SELECT role_guard_unblock('127.0.0.1', 'app')}),
	'1', "role_guard_unblock('127.0.0.1', 'app') ends one block");
admitted(scram_login($node, 'app', 'apppw'), 'app from 127.0.0.1 after unblock');
blocked_ok(scram_login($node, 'app', 'apppw', host => '::1'),
	'app', '::1', 'app from ::1 is still blocked');
is($node->safe_psql('postgres', q{SELECT role_guard_unblock('::1')}),
	'1', "role_guard_unblock('::1') ends the block of ::1");
is($node->safe_psql('postgres', q{SELECT role_guard_unblock('127.0.0.0/8')}),
	'3', "role_guard_unblock('127.0.0.0/8') ends the other three");
is(pairs(), '', 'no pair left');
is($node->safe_psql('postgres', q{SELECT role_guard_unblock(NULL, 'app')}),
	'0', 'nothing more to end');
{
	my ($ret, $out, $err) = $node->psql('postgres',
		q{SET ROLE other; SELECT role_guard_unblock('127.0.0.1')});
	like($err, qr/permission denied for function role_guard_unblock/,
		'role_guard_unblock is not for PUBLIC');
}

# --- a role name with bytes that are not text -------------------------------
{
	my $bad = "bad\xff\x01name";
	failed_ok($_, 'a name with bytes 0xff and 0x01') foreach logins(3, $bad, 'x');
	is($node->safe_psql('postgres',
			q{SET client_encoding = 'LATIN1';
			  SELECT rolname || ' ' || failures FROM role_guard_auth_blocks}),
		'bad\xff\x01name 3', 'the view shows it escaped (and converts to LATIN1)');
	my @ev = events_where($node, { event => 'auth_blocked', rolname => 'bad\xff\x01name' });
	is(scalar(@ev), 1, 'its auth_blocked event has the escaped name');
	is($node->safe_psql('postgres', q{SELECT role_guard_unblock('127.0.0.1', 'bad\xff\x01name')}),
		'1', 'unblocked by its name as the view shows it');
	is(pairs(), '', 'no pair left');
}

# --- exempt hosts ------------------------------------------------------------
set_conf($node, 'role_guard.auth_block_exempt_hosts' => '127.0.0.2/32');
failed_ok($_, 'other wrong from an exempt host')
  foreach logins(5, 'other', 'wrong', local => '127.0.0.2');
is(pairs(), '', 'failures from an exempt host: not counted');
set_conf($node, 'role_guard.auth_block_exempt_hosts' => '');

# --- a reload changes the limit for the next failure --------------------
set_conf($node, 'role_guard.auth_failure_limit' => '10');
failed_ok($_, 'cnt wrong, limit 10') foreach logins(3, 'cnt', 'wrong');
is(pairs(), '127.0.0.1 cnt 3 f', 'three failures under limit 10: counting');
set_conf($node, 'role_guard.auth_failure_limit' => '4');
failed_ok(scram_login($node, 'cnt', 'wrong'), 'cnt: the fourth failure');
is(pairs(), '127.0.0.1 cnt 4 t', 'limit 4 after the reload: the fourth failure blocks');
blocked_ok(scram_login($node, 'cnt', 'cntpw'), 'cnt', '127.0.0.1',
	'cnt with its password');
set_conf($node, 'role_guard.auth_failure_limit' => '3');
$node->safe_psql('postgres', q{SELECT role_guard_unblock(NULL)});

# --- expiry after auth_block_time -----------------------------------------
set_conf($node, 'role_guard.auth_block_time' => '2s');
{
	failed_ok($_, 'cnt wrong, 2 s blocks') foreach logins(3, 'cnt', 'wrong');
	my $t0 = time;
	my $left = $node->safe_psql('postgres',
		q{SELECT extract(epoch FROM blocked_until - now()) FROM role_guard_auth_blocks
		  WHERE rolname = 'cnt'});
	ok($left > 0 && $left <= 2.1, "the block ends about 2 s from now ($left s)");
	blocked_ok(scram_login($node, 'cnt', 'cntpw'), 'cnt', '127.0.0.1',
		'cnt right after the block began');
	my $r;
	my $deadline = time + $RoleGuardTest::wait_seconds;
	do { usleep(100_000); $r = scram_login($node, 'cnt', 'cntpw') }
	  until $r->{admitted} || time > $deadline;
	my $waited = time - $t0;
	admitted($r, sprintf('cnt once the block ended (%.1f s after it began)', $waited));
	ok($waited >= 1.5, 'not before its time');
	is(pairs(), '', 'the success forgot the ended block');
}
set_conf($node, 'role_guard.auth_block_time' => '10min');

# --- the window slides: limit failures within any window block -------------
# With a window of 6 s: failures at 0 s and about 4 s, then two after 6.2 s.
# The third is 6.2 s after the first (2 in its window); the fourth has the
# second, the third and itself within 6 s, and blocks.  A window that
# started at the first failure and began again after it passed would count
# only the last two.
set_conf($node, 'role_guard.auth_failure_window' => '6s');
{
	failed_ok(scram_login($node, 'slide', 'wrong'), 'slide: first failure');
	my $t1 = time;
	usleep(100_000) while time < $t1 + 4;
	failed_ok(scram_login($node, 'slide', 'wrong'), 'slide: second failure, 4 s later');
	is(pairs(), '127.0.0.1 slide 2 f', 'two failures within the window');
	usleep(100_000) while time < $t1 + 6.2;
	failed_ok(scram_login($node, 'slide', 'wrong'), 'slide: third failure, 6.2 s after the first');
	is(pairs(), '127.0.0.1 slide 2 f',
		'the first failure left the window: two in it, no block');
	failed_ok(scram_login($node, 'slide', 'wrong'), 'slide: fourth failure');
	is(pairs(), '127.0.0.1 slide 3 t',
		'three failures within 6 s (the second, third and fourth): blocked');
	blocked_ok(scram_login($node, 'slide', 'slidepw'), 'slide', '127.0.0.1',
		'slide with its password');
}
set_conf($node, 'role_guard.auth_failure_window' => '1min');
$node->safe_psql('postgres', q{SELECT role_guard_unblock(NULL, 'slide')});

# --- a superuser denied from its host counts as a failure -------------------
# superuser_deny_hosts refuses su1 and su2 from 127.0.0.2 as a failed
# authentication, whatever the password.  It must count as one too: were a
# right password a success for the count (forgetting the failures), a
# denied host could tell a right password from a wrong one by when the
# block begins.  su1 tries wrong, wrong, right, wrong; su2 wrong four times:
# each step ends the same for both.
set_conf($node, 'role_guard.superuser_deny_hosts' => '127.0.0.2/32');
{
	my @pw1 = qw(wrong wrong su1pw wrong);
	for my $i (0 .. 3)
	{
		my $r1 = scram_login($node, 'su1', $pw1[$i], local => '127.0.0.2');
		my $r2 = scram_login($node, 'su2', 'wrong', local => '127.0.0.2');
		(my $t1 = scram_result($r1)) =~ s/su1/suN/g;
		(my $t2 = scram_result($r2)) =~ s/su2/suN/g;
		# the block's end differs by the time between the two logins
		s/until \S+ \S+/until T/ for $t1, $t2;
		is($t1, $t2, "denied superusers, login " . ($i + 1) . " ($pw1[$i] / wrong): the same messages");
		if ($i < 3)
		{
			failed_ok($r1, "su1 ($pw1[$i]) from a denied host, login " . ($i + 1));
		}
		else
		{
			blocked_ok($r1, 'su1', '127.0.0.2', 'su1 after three denied logins');
		}
	}
	is(pairs(), "127.0.0.2 su1 3 t\n127.0.0.2 su2 3 t",
		'both pairs blocked after three logins, the right password among them');

	# trust proves no secret: the denial is told as it is, every time, and
	# is no failed authentication (never a block)
	for my $i (1 .. 4)
	{
		my $r = raw_login($node, 'trustsu', 'postgres', local => '127.0.0.2');
		is(($r->{sqlstate} // '') . ' ' . ($r->{message} // ''),
			'28000 a superuser may not log in from host "127.0.0.2"',
			"trustsu (trust) from a denied host, login $i: the denial's own message");
	}
	is(pairs(), "127.0.0.2 su1 3 t\n127.0.0.2 su2 3 t",
		'four trust denials: no pair counted for trustsu');
}
set_conf($node, 'role_guard.superuser_deny_hosts' => '');
$node->safe_psql('postgres', q{SELECT role_guard_unblock('127.0.0.2')});

# --- monitor mode: would_block, nothing refused ----------------------------
set_conf($node, 'role_guard.mode' => 'monitor');
{
	failed_ok($_, 'mon wrong, monitor') foreach logins(3, 'mon', 'wrong');
	is(pairs(), '127.0.0.1 mon 3 t', 'the would-be block is listed');
	failed_ok(scram_login($node, 'mon', 'wrong'),
		'mon wrong while it would be blocked: core\'s failure, not a block');
	my $right = scram_login($node, 'mon', 'monpw');
	admitted($right, 'mon with its password, in monitor mode');
	is_deeply($right->{codes}, [ 10, 11, 12, 0 ],
		'... with the SCRAM final message as usual');
	is(scalar(events_where($node, { event => 'would_block', rolname => 'mon' })),
		1, 'one would_block event');
	is(scalar(events_where($node, { event => 'auth_blocked', rolname => 'mon' })),
		0, 'no auth_blocked event');

	# a superuser that enforce would deny counts as the failure enforce
	# would show, right password and all: monitor records the block it
	# would start, and admits
	set_conf($node, 'role_guard.superuser_deny_hosts' => '127.0.0.2/32');
	admitted(scram_login($node, 'su1', 'su1pw', local => '127.0.0.2'),
		"su1 from a denied host, monitor mode, login $_") foreach 1 .. 3;
	is(pairs(), "127.0.0.1 mon 3 t\n127.0.0.2 su1 3 t",
		'monitor: three would-be denials make a would-be block of su1');
	is(scalar(events_where($node, { event => 'would_block', rolname => 'su1' })),
		1, 'monitor: one would_block event for su1');
	set_conf($node, 'role_guard.superuser_deny_hosts' => '');
	$node->safe_psql('postgres', q{SELECT role_guard_unblock('127.0.0.2')});
}
# a block that would have begun in monitor mode is not one once enforced
set_conf($node, 'role_guard.mode' => 'enforce');
is(pairs(), '127.0.0.1 mon 3 f',
	'enforce: the would-be block is not listed as a block, its failures are');
admitted(scram_login($node, 'mon', 'monpw'),
	'mon with its password once enforcing: the would-be block is not enforced');
is(scalar(events_where($node, { event => 'auth_blocked', rolname => 'mon' })),
	0, 'still no auth_blocked event for mon');
$node->safe_psql('postgres', q{SELECT role_guard_unblock(NULL)});

# --- limit 0: nothing counted ---------------------------------------------
set_conf($node, 'role_guard.auth_failure_limit' => '0');
failed_ok($_, 'cnt wrong, limit 0') foreach logins(4, 'cnt', 'wrong');
is(pairs(), '', 'limit 0: nothing counted');
set_conf($node, 'role_guard.auth_failure_limit' => '3');

# --- a reload or an unblock while a login is in its SCRAM exchange ---------
# A backend still authenticating has its settings from its fork.  The SCRAM
# final message (code 12) is decided with the settings of its own moment
# (before_final: a change before it), and the login with those of the
# hook's (after_final: a change while the backend is held at the start of
# the hook, the final message sent or held back by then).  A final message
# held back for a block or a denial that has ended by the hook goes out
# when the login is admitted (12, then 0); one that a block or a denial
# begun since the fork would refuse is held back, and the login ends as a
# wrong password ends.
{
	my $limit = sub {
		my $n = shift;
		return sub { set_conf($node, 'role_guard.auth_failure_limit' => $n) };
	};
	my $deny = sub {
		my $hosts = shift;
		return sub { set_conf($node, 'role_guard.superuser_deny_hosts' => $hosts) };
	};
	my $unblock = sub {
		$node->safe_psql('postgres', q{SELECT role_guard_unblock('127.0.0.1', 'slide')});
	};
	# the login held at the start of the hook while $code runs
	my $in_hook = sub {
		my $code = shift;
		inject_arm($node, 'login-hook');
		return sub {
			my $pid = inject_wait($node, 'login-hook');
			$code->();
			inject_wake($node, 'login-hook', $pid) if $pid;
		};
	};
	my $slide = sub { scram_login($node, 'slide', 'slidepw', @_) };
	my $su2 = sub { scram_login($node, 'su2', shift, local => '127.0.0.2', @_) };

	failed_ok($_, 'slide wrong') foreach logins(3, 'slide', 'wrong');
	is(pairs(), '127.0.0.1 slide 3 t', 'slide blocked');

	my $r = $slide->(before_final => $limit->('0'));
	admitted($r, 'slide, blocked at its fork, limit 0 before its final message');
	is_deeply($r->{codes}, [ 10, 11, 12, 0 ], '... with its final message')
	  or diag scram_result($r);

	$r = $slide->(before_final => $limit->('3'));
	blocked_ok($r, 'slide', '127.0.0.1',
		'slide, forked under limit 0, the block back before its final message');
	is_deeply($r->{codes}, [ 10, 11 ],
		'... no final message: what a wrong password shows')
	  or diag scram_result($r);

	$r = $slide->(after_final => $in_hook->($limit->('0')));
	admitted($r, 'slide, final message held back for its block, limit 0 by the hook');
	is_deeply($r->{codes}, [ 10, 11, 12, 0 ],
		'... the final message held back went out before AuthenticationOk')
	  or diag scram_result($r);
	$limit->('3')->();

	$r = $slide->(after_final => $in_hook->($unblock));
	admitted($r, 'slide, final message held back, role_guard_unblock by the hook');
	is_deeply($r->{codes}, [ 10, 11, 12, 0 ], '... with its final message')
	  or diag scram_result($r);
	is(pairs(), '', 'slide: nothing left');

	$r = $su2->('su2pw', before_final => $deny->('127.0.0.2/32'));
	failed_ok($r, 'su2 from 127.0.0.2, denied after its fork');
	is_deeply($r->{codes}, [ 10, 11 ], '... no final message')
	  or diag scram_result($r);
	$r = $su2->('su2pw', after_final => $in_hook->(sub { }));
	failed_ok($r, 'su2 from 127.0.0.2, denied at its final message and by the hook');
	is_deeply($r->{codes}, [ 10, 11 ], '... no final message')
	  or diag scram_result($r);
	is(pairs(), '127.0.0.2 su2 2 f', 'both denied logins counted as failures');

	$r = $su2->('su2pw', after_final => $in_hook->($deny->('')));
	admitted($r, 'su2, final message held back for a denial lifted by the hook');
	is_deeply($r->{codes}, [ 10, 11, 12, 0 ], '... with its final message')
	  or diag scram_result($r);
	is(pairs(), '', '... a success: the failures forgotten');
}

# --- ALTER EXTENSION role_guard UPDATE from 1.1 -----------------------------
failed_ok($_, 'other wrong') foreach logins(3, 'other', 'wrong');
$node->safe_psql('postgres', 'CREATE DATABASE upd');
$node->safe_psql('upd', q{CREATE EXTENSION role_guard VERSION '1.1'});
my $has_col = q{SELECT count(*) FROM pg_attribute
	WHERE attrelid = 'role_guard_usage'::regclass AND attname = 'auth_blocked'};
is($node->safe_psql('upd', $has_col), '0', 'at 1.1: role_guard_usage has no auth_blocked');
ok($node->safe_psql('upd', q{SELECT count(*) FROM role_guard_usage}) >= 0,
	'at 1.1: role_guard_usage answers');
$node->safe_psql('upd', q{ALTER EXTENSION role_guard UPDATE TO '1.2'});
is($node->safe_psql('upd', q{SELECT extversion FROM pg_extension WHERE extname = 'role_guard'}),
	'1.2', 'updated to 1.2');
is($node->safe_psql('upd', $has_col), '1', 'at 1.2: role_guard_usage has auth_blocked');
is($node->safe_psql('upd',
		q{SELECT host(client_addr) || ' ' || rolname || ' ' || failures FROM role_guard_auth_blocks
		  WHERE blocked_until IS NOT NULL}),
	'127.0.0.1 other 3', 'role_guard_auth_blocks after the update shows the block');
is($node->safe_psql('upd', q{SELECT auth_blocked FROM role_guard_usage WHERE rolname = 'other'}),
	'1', 'role_guard_usage.auth_blocked after the update');

$node->stop;
done_testing();
