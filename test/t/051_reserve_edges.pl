
# Copyright: see README.md.
#
# Reservations at their edges, each race made to happen every time with
# the test build's pause points (src/inject.h):
#
#  A. Between role_guard's decision and core's own check.  role_guard
#     decides in the login hook; core counts the process slots in use
#     later (InitPostgres), at the moment it gets there.  A login that
#     role_guard lets through past the slots (because no reservation had
#     an unused place when it decided) gets through core's check if a
#     reserved session ends meanwhile, and then holds the place that
#     session gave back to its reservation.  5 slots (max_connections 8,
#     superuser_reserved_connections 3), crit=2, so storm may hold 3: a
#     storm login paused at "login-decided" while a crit client quits must
#     not end with storm=4 crit=1.
#
#  B. A reload while a login is on its way (issue 21, item 3): decided by
#     the settings the server has loaded, for reservations, budgets and
#     login_waits alike.
#  C. A login in flight (held at "login-start": it holds a process slot
#     that role_guard does not count) while role_guard decides a storm
#     login that fills no reserved place.  By role_guard's count storm may
#     have a 3rd session; by core's free list the slot it would take is one
#     crit's unused places need.  Admitted, it makes core refuse the 2nd
#     crit login.  role_guard must see core's world: refuse it.
#  D. A waiter decided again while logins are in flight: it already holds
#     its slot, so it is held to role_guard's count alone.
#
# Holders and the paused logins are raw logins from this process
# (RoleGuardTest's c_new); the test's own queries run as the bootstrap
# superuser over the Unix socket, and never while a paused login waits for
# core's check (they would take a process slot too).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT c_new c_wait c_close c_text c_hold_ok
  inject_arm inject_wait inject_wake pid_gone_ok);

my $RG_RESERVED = qr/^remaining connection slots are reserved for roles with role_guard reservations$/;

my $node = rg_node(
	'reserve_edges',
	conf => qq{max_connections = 8
superuser_reserved_connections = 3
role_guard.reservations = 'crit=2'
});

$node->safe_psql(
	'postgres', q{
CREATE ROLE storm LOGIN;
CREATE ROLE crit LOGIN;
CREATE EXTENSION role_guard;
});

my $SUMM_SQL =
  q{SELECT reserved || ' unused ' || reserved_unused FROM role_guard_summary};
my $COUNT_SQL =
  q{SELECT string_agg(usename || '=' || n, ' ' ORDER BY usename) FROM (SELECT usename, count(*) AS n FROM pg_stat_activity WHERE usename IN ('storm', 'crit') AND backend_type = 'client backend' GROUP BY usename) s};
# the slots role_guard counts in use, less this query's own session
my $USED_SQL = q{SELECT slots_used - 1 FROM role_guard_reserve_stats()};

# Core's own refusals for process slots (15, and 16 and later).
my $CORE_SLOTS =
  qr/^(?:sorry, too many clients already|remaining connection slots are reserved for (?:non-replication superuser connections|roles with the SUPERUSER attribute))$/;

# A login of $user, tried again (for up to 30 s) while core refuses it for
# process slots: backends in flight (the test's own queries, exiting) hold
# slots for a moment; a slot held for good makes every try fail.
sub c_login_retry
{
	my ($user) = @_;
	my $deadline = time + 30;
	while (1)
	{
		my $c = c_new($node, $user);
		c_wait($c, 30);
		return $c
		  unless $c->{state} eq 'refused'
		  && ($c->{err}{M} // '') =~ $CORE_SLOTS
		  && time < $deadline;
		usleep(50_000);
	}
}

# A client's refusal is role_guard's for reservations.
sub rg_refused_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($c, $name) = @_;
	my $e = $c->{err} // {};
	return ok($c->{state} eq 'refused'
		  && ($e->{C} // '') eq '53300'
		  && ($e->{M} // '') =~ $RG_RESERVED
		  && ($e->{D} // '') =~ /role_guard\.reservations/, $name)
	  || diag c_text($c);
}

# ===========================================================================
# A. A storm login paused between role_guard's decision and core's check
#    while a crit client quits.
# ===========================================================================
my @crit  = map { c_hold_ok($node, 'crit',  "A: crit #$_ in") } 1 .. 2;
my @storm = map { c_hold_ok($node, 'storm', "A: storm #$_ in") } 1 .. 3;
ok(poll_until($node, $USED_SQL, '5'), 'A: 5 of 5 slots in use');
is($node->safe_psql('postgres', $SUMM_SQL), '2 unused 0', 'A: crit=2 used, nothing unused');
{
	inject_arm($node, 'login-decided');
	my $s4  = c_new($node, 'storm');
	my $pid = inject_wait($node, 'login-decided');
	ok($pid, 'A: a 4th storm login is held after role_guard\'s decision');
	# a crit client quits while the storm login has not met core's check
	my $quit = shift @crit;
	c_close($quit);
	pid_gone_ok($quit->{pid}, 'A: the crit backend has exited');
	inject_wake($node, 'login-decided', $pid) if $pid;
	c_wait($s4, 30);
	rg_refused_ok($s4,
		'A: the 4th storm login is refused by role_guard (no slot is free, crit\'s place is kept)');
	push @storm, $s4 if $s4->{state} eq 'admitted';
	pid_gone_ok($s4->{pid}, 'A: the refused storm backend has exited')
	  if $s4->{pid} && $s4->{state} eq 'refused';

	my $c = c_login_retry('crit');
	is($c->{state}, 'admitted', 'A: crit gets its reserved place back')
	  or diag c_text($c);
	push @crit, $c if $c->{state} eq 'admitted';
}
is($node->safe_psql('postgres', $COUNT_SQL), 'crit=2 storm=3', 'A: pg_stat_activity: crit=2 storm=3');
is($node->safe_psql('postgres', $SUMM_SQL), '2 unused 0', 'A: role_guard_summary: crit=2 used');
c_close($_) for @crit, @storm;
ok(poll_until($node, $SUMM_SQL, '2 unused 2'), 'A: all gone');

# ===========================================================================
# C. A login in flight while role_guard decides another one.  5 slots,
#    crit=2 unused, storm holds 2: role_guard's count leaves a 3rd storm
#    session room (5 - 3 >= 2), but a 4th storm login held at "login-start"
#    holds a process slot too, so only 4 are free (8 - 4), fewer than
#    superuser_reserved_connections 3 plus the 2 unused places.
# ===========================================================================
{
	my @storm = map { c_hold_ok($node, 'storm', "C: storm #$_ in") } 1 .. 2;
	ok(poll_until($node, $USED_SQL, '2'), 'C: 2 of 5 slots in use');
	is($node->safe_psql('postgres', $SUMM_SQL), '2 unused 2', 'C: crit=2 unused');
	inject_arm($node, 'login-start');
	my $held = c_new($node, 'storm');
	my $pid  = inject_wait($node, 'login-start');
	ok($pid, 'C: a storm login is held in flight, before role_guard decides it');
	my $s3 = c_new($node, 'storm');
	c_wait($s3, 30);
	rg_refused_ok($s3,
		'C: a storm login decided meanwhile is refused (the logins in flight hold the slots crit needs)');
	like($s3->{err}{D} // '', qr/\d+ of 5 slots are in use, and logins still in progress hold more\.$/,
		'C: its DETAIL says that logins in progress hold the rest');
	push @storm, $s3 if $s3->{state} eq 'admitted';
	pid_gone_ok($s3->{pid}, 'C: the refused storm backend has exited')
	  if $s3->{pid} && $s3->{state} eq 'refused';
	# crit takes both places while the held login is still in flight
	my @crit = map { c_login_retry('crit') } 1 .. 2;
	is($_->{state}, 'admitted', 'C: crit login admitted while a storm login is in flight')
	  or diag c_text($_) for @crit;
	inject_wake($node, 'login-start', $pid) if $pid;
	c_wait($held, 30);
	is($held->{state}, 'admitted',
		'C: the held storm login, decided now, takes the 5th slot (no place is unused)')
	  or diag c_text($held);
	push @storm, $held if $held->{state} eq 'admitted';
	is($node->safe_psql('postgres', $COUNT_SQL), 'crit=2 storm=3', 'C: crit=2 storm=3');
	c_close($_) for @crit, @storm;
}
ok(poll_until($node, $SUMM_SQL, '2 unused 2'), 'C: all gone');

# ===========================================================================
# B. A reload while a login is on its way.  A backend still authenticating
#    processes no SIGHUP: its copy of the settings is the one of before
#    the reload.  It must be decided by the settings the server has loaded
#    (and never put an older reservation list back).  Each login is held at
#    a pause point while the configuration is reloaded: "login-start" (the
#    start of the login hook, before anything is read) and
#    "login-prepared" (the steps before role_guard's lock done, with the
#    settings of that moment).
# ===========================================================================

# Hold a login of $user at $point, reload %conf, wake it; returns the
# client, answered, and its backend's pid.
sub held_across_reload
{
	my ($point, $user, %conf) = @_;
	inject_arm($node, $point);
	my $c   = c_new($node, $user);
	my $pid = inject_wait($node, $point);
	ok($pid, "B: a $user login held at $point");
	ok(set_conf($node, %conf),
		'B: reloaded ' . join(', ', map { "$_ = '$conf{$_}'" } sort keys %conf));
	inject_wake($node, $point, $pid) if $pid;
	c_wait($c, 30);
	return ($c, $pid);
}

# B1, the issue's case: crit=1 (storm may hold 4 of 5), storm holds 3, a
# storm login held before its decision while crit=2 is loaded.
ok(set_conf($node, 'role_guard.reservations' => 'crit=1'), 'B1: crit=1');
{
	my @storm = map { c_hold_ok($node, 'storm', "B1: storm #$_ in") } 1 .. 3;
	my ($c, $pid) = held_across_reload('login-start', 'storm',
		'role_guard.reservations' => 'crit=2');
	rg_refused_ok($c, 'B1: the held storm login is decided under crit=2: refused');
	push @storm, $c if $c->{state} eq 'admitted';
	# until it has exited it holds a process slot core counts
	pid_gone_ok($pid, 'B1: the refused storm backend has exited')
	  if $pid && $c->{state} eq 'refused';
	is($node->safe_psql('postgres', $SUMM_SQL), '2 unused 2',
		'B1: role_guard_summary: crit=2 in force (no login put crit=1 back)');
	my @crit = map { c_login_retry('crit') } 1 .. 2;
	is($_->{state}, 'admitted', 'B1: crit login admitted') or diag c_text($_) for @crit;
	is($node->safe_psql('postgres', $COUNT_SQL), 'crit=2 storm=3', 'B1: crit=2 storm=3');
	c_close($_) for @crit, @storm;
}
ok(poll_until($node, $SUMM_SQL, '2 unused 2'), 'B1: all gone');

# B2: budgets, the same at both points: storm=4 -> storm=3 while storm
# holds 3.
ok(set_conf($node, 'role_guard.reservations' => '', 'role_guard.budgets' => 'storm=4'),
	'B2: no reservations, storm=4');
foreach my $point (qw(login-start login-prepared))
{
	my @storm = map { c_hold_ok($node, 'storm', "B2 $point: storm #$_ in") } 1 .. 3;
	my ($c) = held_across_reload($point, 'storm', 'role_guard.budgets' => 'storm=3');
	ok($c->{state} eq 'refused'
		  && ($c->{err}{M} // '') eq 'too many connections for role "storm"'
		  && ($c->{err}{D} // '') =~ /^role_guard budget "storm=3" is full \(3 of 3 sessions\)/,
		"B2 $point: the held login is decided under storm=3: refused") or diag c_text($c);
	push @storm, $c if $c->{state} eq 'admitted';
	c_close($_) for @storm;
	ok(set_conf($node, 'role_guard.budgets' => 'storm=4'), "B2 $point: storm=4 again");
	ok(poll_until($node, $COUNT_SQL, ''), "B2 $point: all gone");
}

# B3: a waiting login and a reload.  storm=3, login_waits storm=120s.
ok(set_conf($node, 'role_guard.budgets' => 'storm=3', 'role_guard.login_waits' => 'storm=120s'),
	'B3: storm=3, login_waits storm=120s');
{
	my @storm = map { c_hold_ok($node, 'storm', "B3: storm #$_ in") } 1 .. 3;
	my $w = c_new($node, 'storm');
	ok(poll_until($node, 'SELECT waiting FROM role_guard_summary', '1'),
		'B3: a 4th storm login waits');
	ok(set_conf($node, 'role_guard.budgets' => 'storm=4'), 'B3: storm=4 loaded');
	is(c_wait($w, 30), 'admitted',
		'B3: the waiter is admitted under storm=4 (not left waiting under storm=3)')
	  or diag c_text($w);
	push @storm, $w;
	my $w2 = c_new($node, 'storm');
	ok(poll_until($node, 'SELECT waiting FROM role_guard_summary', '1'),
		'B3: a 5th storm login waits');
	ok(set_conf($node, 'role_guard.login_waits' => ''), 'B3: login_waits emptied');
	c_wait($w2, 30);
	ok($w2->{state} eq 'refused'
		  && ($w2->{err}{D} // '') =~ /^role_guard budget "storm=4" is full \(4 of 4 sessions\)\. The login waited [\d.]+ s for a place/,
		'B3: the waiter is refused once login_waits no longer lets it wait, its DETAIL says how long it waited')
	  or diag c_text($w2);
	is($node->safe_psql('postgres',
		q{SELECT waited || ' ' || wait_timeouts || ' ' || waiting FROM role_guard_usage WHERE rolname = 'storm'}),
		'1 1 0', 'B3: role_guard_usage: one waited, one wait timed out, none waiting');
	c_close($_) for @storm;
}

# ===========================================================================
# D. A waiter decided again while logins are in flight.  It holds its
#    process slot already (counted among the waiters), so admitting it takes
#    no slot more: it is held to role_guard's count alone, not refused for
#    the slots the logins in flight hold.  5 slots, crit=2 unused, storm=2
#    with login_waits: storm holds 2, a 3rd storm login waits; two crit
#    logins are held in flight ("login-start", "login-prepared"); a storm
#    session leaves.
# ===========================================================================
ok( set_conf(
		$node,
		'role_guard.reservations' => 'crit=2',
		'role_guard.budgets'      => 'storm=2',
		'role_guard.login_waits'  => 'storm=60s'),
	'D: crit=2, storm=2, login_waits storm=60s');
{
	my @storm = map { c_hold_ok($node, 'storm', "D: storm #$_ in") } 1 .. 2;
	my $w = c_new($node, 'storm');
	ok(poll_until($node, 'SELECT waiting FROM role_guard_summary', '1'),
		'D: a 3rd storm login waits');
	# one held at each of two pause points (one backend per point)
	my (@held, @at);
	foreach my $point (qw(login-start login-prepared))
	{
		inject_arm($node, $point);
		push @held, c_new($node, 'crit');
		my $pid = inject_wait($node, $point);
		ok($pid, "D: a crit login held in flight at $point");
		push @at, [ $point, $pid ] if $pid;
	}
	# 8 process slots: storm 2, the waiter and the two held: 3 free, fewer
	# than superuser_reserved_connections 3 plus crit's 2 unused places
	my $quit = shift @storm;
	c_close($quit);
	is(c_wait($w, 30), 'admitted',
		'D: the waiter gets the place the storm session left, logins in flight or not')
	  or diag c_text($w);
	push @storm, $w if $w->{state} eq 'admitted';
	inject_wake($node, @$_) for @at;
	is(c_wait($_, 30), 'admitted', 'D: a held crit login fills its reserved place')
	  or diag c_text($_) for @held;
	is($node->safe_psql('postgres', $COUNT_SQL), 'crit=2 storm=2', 'D: crit=2 storm=2');
	c_close($_) for @held, @storm;
}

$node->stop;
done_testing();
