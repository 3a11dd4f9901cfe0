
# Copyright: see README.md.
#
# Waiting logins at their edges (issue 21, items 2 and 4).
#
#  A. Waiters never hold the slots that are kept.  A login waiting for a
#     place holds a process slot; however many want to wait, the slots
#     core keeps (superuser_reserved_connections, and reserved_connections
#     from 16) stay free of waiters, so a superuser always gets in, over
#     the Unix socket and over TCP.  A login that cannot wait then is
#     refused at once, as without login_waits.  max_connections 6,
#     superuser_reserved_connections 3, app=1, login_waits app=20s: one
#     app and two other sessions held, three app logins want to wait.
#  B. (16 and later) reserved_connections: a role with the privileges of
#     pg_use_reserved_connections gets in while app logins want to wait.
#  C. A waiting login does not hold back VACUUM of the shared catalogs:
#     rows of pg_authid dead since the login began waiting are removable
#     while it waits (VACUUM (VERBOSE) pg_authid).  What core itself holds
#     during authentication is measured too, with a login held at the very
#     start of role_guard's hook (pause point "login-start"), and printed.
#
# Logins that wait or are held are raw logins from this process
# (RoleGuardTest's c_new).  In A and B every process slot counts, so the
# test asks the server nothing while the app logins are on their way: it
# watches their process titles instead.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT c_new c_update c_wait c_close c_text c_hold_ok
  inject_arm inject_wait inject_wake);

my $DETAIL_FULL =
  qr/^role_guard budget "app=1" is full \(1 of 1 sessions(?:, and \d+ earlier logins? waiting for a place)?\)\.$/;

my $node = rg_node(
	'wait_edges',
	budgets => 'app=1',
	conf    => qq{max_connections = 6
superuser_reserved_connections = 3
role_guard.login_waits = 'app=20s'
});
my $su = $node->safe_psql('postgres', 'SELECT current_user');
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE other LOGIN;
CREATE EXTENSION role_guard;
});

# Client ports of this node's backends whose process title says they wait
# for a place.
sub waiting_ports
{
	my $pm = $node->{_pid};
	my %t;
	foreach my $line (split /\n/, `ps -o args= --ppid $pm`)
	{
		$t{$1} = 1
		  if $line =~ /127\.0\.0\.1\((\d+)\) waiting for a place \(role_guard\)/;
	}
	return \%t;
}

# Wait (at most 30 s) until no backend of the clients @_ is left: a
# refused login's backend holds a process slot until it has exited, and a
# superuser needs one.
sub backends_gone_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my (@cs) = @_;
	my %ports = map { $_->{port} => 1 } @cs;
	my $pm = $node->{_pid};
	my $deadline = time + 30;
	my @left;
	while (1)
	{
		@left = grep { /127\.0\.0\.1\((\d+)\)/ && $ports{$1} }
		  split /\n/, `ps -o args= --ppid $pm`;
		last if !@left || time > $deadline;
		usleep(10_000);
	}
	return ok(!@left, 'the refused logins\' backends have exited')
	  || diag join("\n", @left);
}

# Send the app logins, then wait (at most 30 s) until each is refused or
# waits; returns (refused, waiting) client lists.
sub app_logins
{
	my ($n) = @_;
	my @cs = map { c_new($node, 'app') } 1 .. $n;
	my $deadline = time + 30;
	my (@refused, @waiting);
	while (1)
	{
		c_update($_) for @cs;
		my $w = waiting_ports();
		@refused = grep { $_->{state} ne 'pending' } @cs;
		@waiting = grep { $_->{state} eq 'pending' && $w->{ $_->{port} } } @cs;
		last if @refused + @waiting == $n || time > $deadline;
		usleep(20_000);
	}
	return (\@refused, \@waiting);
}

# A client refused at once for the full budget: no word of a wait.
sub refused_at_once_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($c, $name) = @_;
	my $e = $c->{err} // {};
	return ok($c->{state} eq 'refused'
		  && ($e->{C} // '') eq '53300'
		  && ($e->{M} // '') eq 'too many connections for role "app"'
		  && ($e->{D} // '') =~ $DETAIL_FULL
		  && ($e->{D} // '') !~ /waited/, $name)
	  || diag c_text($c);
}

sub superuser_in_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name) = @_;
	foreach my $via ([ 'Unix socket', sock_connstr($node, $su) ],
		[ 'TCP', tcp_connstr($node, $su) ])
	{
		my ($ret, $out, $err) = try_login($node, $via->[1], 'SELECT 1');
		ok($ret == 0 && $out eq '1', "$name: superuser logs in over the $via->[0]")
		  or diag $err;
	}
	return;
}

# ===========================================================================
# A. Waiters and the slots core keeps for superusers.
# ===========================================================================
{
	my @held = (c_hold_ok($node, 'app', 'A: app holds its one place'),
		map { c_hold_ok($node, 'other', "A: other #$_ in") } 1 .. 2);
	ok(poll_until($node, 'SELECT slots_used FROM role_guard_reserve_stats()', '4'),
		'A: 3 sessions (and this query\'s) use slots');
	my ($refused, $waiting) = app_logins(3);
	is(scalar @$waiting, 0,
		'A: no app login waits (every slot left is one core keeps for superusers)');
	is(scalar @$refused, 3, 'A: the three app logins are refused');
	refused_at_once_ok($_, 'A: refused at once, as without login_waits') for @$refused;
	backends_gone_ok(@$refused);
	superuser_in_ok('A: three app logins wanted to wait');
	c_close($_) for @$refused, @$waiting;

	# With a slot free for it, one login waits; the next may not.
	my $other = pop @held;
	c_close($other);
	ok(poll_until($node, 'SELECT slots_used FROM role_guard_reserve_stats()', '3'),
		'A: one other session gone: 2 sessions use slots');
	($refused, $waiting) = app_logins(3);
	is(scalar @$waiting, 1, 'A: one app login waits (the one slot left)');
	is(scalar @$refused, 2, 'A: the two others are refused');
	refused_at_once_ok($_, 'A: refused at once') for @$refused;
	backends_gone_ok(@$refused);
	superuser_in_ok('A: one app login waits');
	c_close($held[0]);    # the app holder leaves: the waiter gets its place
	is(c_wait($waiting->[0], 30), 'admitted', 'A: the waiter gets the place app left')
	  or diag c_text($waiting->[0]);
	c_close($_) for @held, @$refused, @$waiting;
}
ok(poll_until($node, 'SELECT slots_used FROM role_guard_reserve_stats()', '1'),
	'A: all gone');

# ===========================================================================
# B. reserved_connections (16 and later).
# ===========================================================================
SKIP:
{
	skip 'reserved_connections exists from PostgreSQL 16', 8
	  if $node->pg_version < 16;
	$node->append_conf('postgresql.conf', "reserved_connections = 1\n");
	$node->restart;
	$node->safe_psql('postgres',
		'CREATE ROLE resv LOGIN; GRANT pg_use_reserved_connections TO resv');
	# 6 - 3 - 1 = 2 slots for app and other
	my @held = (c_hold_ok($node, 'app', 'B: app holds its one place'),
		c_hold_ok($node, 'other', 'B: other in'));
	ok(poll_until($node, 'SELECT slots_used FROM role_guard_reserve_stats()', '3'),
		'B: 2 sessions (and this query\'s) use slots');
	my ($refused, $waiting) = app_logins(3);
	is(scalar @$waiting, 0, 'B: no app login waits (the slot left is reserved_connections\')');
	backends_gone_ok(@$refused);
	my ($ret, $out, $err) =
	  try_login($node, tcp_connstr($node, 'resv'), 'SELECT current_user');
	ok($ret == 0 && $out eq 'resv',
		'B: a role with pg_use_reserved_connections gets in') or diag $err;
	superuser_in_ok('B: app logins wanted to wait');
	c_close($_) for @held, @$refused, @$waiting;
	$node->append_conf('postgresql.conf', "reserved_connections = 0\n");
	$node->restart;
}

# ===========================================================================
# C. A waiting login and VACUUM of pg_authid.
# ===========================================================================
$node->append_conf('postgresql.conf', "max_connections = 20\n");
$node->append_conf('postgresql.conf', "role_guard.login_waits = 'app=120s'\n");
$node->restart;

# VACUUM (VERBOSE) pg_authid: (removed, dead but not yet removable).
sub vacuum_authid
{
	my ($ret, $out, $err) = try_login($node, sock_connstr($node, $su),
		'VACUUM (VERBOSE) pg_authid');
	return ($1, $2) if $err =~ /tuples: (\d+) removed, \d+ remain, (\d+) are dead but not yet removable/;
	diag "VACUUM (VERBOSE) pg_authid: $err";
	return (-1, -1);
}

# Make a row of pg_authid dead, then VACUUM until none is left dead but
# not removable, at most 20 s (a moment's snapshot of another backend, the
# reaper's scan for one, may hold one back for that moment).  Returns the
# last (removed, not yet removable).
sub dead_row_vacuumed
{
	my ($tag) = @_;
	$node->safe_psql('postgres', "CREATE ROLE dead_$tag; DROP ROLE dead_$tag;");
	my $deadline = time + 20;
	my ($removed, $kept) = (0, 0);
	while (1)
	{
		my ($r, $k) = vacuum_authid();
		$removed += $r if $r > 0;
		$kept = $k;
		last if $k == 0 || time > $deadline;
		usleep(200_000);
	}
	return ($removed, $kept);
}

{
	my ($r0, $k0) = dead_row_vacuumed('quiet');
	is($k0, 0, 'C: with no login on its way, a dead pg_authid row is removable');

	# What core holds during authentication: a login held at the start of
	# role_guard's hook, before role_guard reads anything.
	inject_arm($node, 'login-start');
	my $held = c_new($node, 'other');
	my $pid  = inject_wait($node, 'login-start');
	ok($pid, 'C: a login held at the start of the login hook');
	$node->safe_psql('postgres', 'CREATE ROLE dead_core; DROP ROLE dead_core;');
	my ($rc, $kc) = vacuum_authid();
	note sprintf('C: PostgreSQL %s: during authentication core itself holds back %d dead pg_authid row(s) (%d removed)',
		$node->pg_version, $kc, $rc);
	inject_wake($node, 'login-start', $pid) if $pid;
	is(c_wait($held, 30), 'admitted', 'C: the held login goes on') or diag c_text($held);
	c_close($held);

	my $app = c_hold_ok($node, 'app', 'C: app holds its one place');
	my $w = c_new($node, 'app');
	ok(poll_until($node, 'SELECT waiting FROM role_guard_summary', '1'),
		'C: an app login waits');
	my ($r1, $k1) = dead_row_vacuumed('waiting');
	c_update($w);
	is($w->{state}, 'pending', 'C: the app login still waits');
	is($k1, 0,
		'C: while a login waits, a pg_authid row dead since it began waiting is removable');
	c_close($app);
	is(c_wait($w, 30), 'admitted', 'C: the waiter gets its place') or diag c_text($w);
	my ($ret, $out) = try_login($node, sock_connstr($node, $su),
		q{SELECT count(*) FROM pg_roles WHERE rolname LIKE 'dead\_%'});
	is($out, '0', 'C: the waiter\'s session sees the roles dropped while it waited as dropped');
	c_close($w);
}

$node->stop;
done_testing();
