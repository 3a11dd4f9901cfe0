
# Copyright: see README.md.
#
# With nothing to look for (no idle limits, no eviction, and
# role_guard.superuser_deny_hosts empty, its default), a reaper scan walks
# no slot and resolves no role, however many sessions there are.  The
# reaper's DEBUG2 line per scan says what it did ("scan walked N slots,
# resolved N roles in N us").  An empty host list used to count as set, so
# every scan read each session's role and walked every slot.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT c_hold_ok c_close wait_log);

my $node = rg_node(
	'reaper_quiet',
	conf => "role_guard.reap_interval = '100ms'\nlog_min_messages = debug2\n");
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
my @held = map { c_hold_ok($node, 'app', "session $_ in") } 1 .. 8;

my $scan_re =
  qr/role_guard reaper: scan walked (\d+) slots, resolved (\d+) roles in (\d+) us/;

# The next $n scans after now (after the first that $start accepts, when
# given): a list of [slots, roles, us].
sub scans
{
	my ($n, $start) = @_;
	my $pos = log_pos($node);
	my $deadline = time + $RoleGuardTest::wait_seconds;
	my @s;
	while (time < $deadline)
	{
		@s = ();
		my $text = log_since($node, $pos);
		push @s, [ $1, $2, $3 ] while $text =~ /$scan_re/g;
		if ($start)
		{
			shift @s while @s && !$start->($s[0]);
		}
		return @s if @s >= $n;
		usleep(50_000);
	}
	diag "only " . scalar(@s) . " scans seen";
	return @s;
}

sub quiet_ok
{
	my ($what) = @_;
	my @s = scans(5);
	ok(@s >= 5, "$what: scans seen");
	is(join(',', map { "$_->[0]/$_->[1]" } @s[ 0 .. 4 ]),
		join(',', ('0/0') x 5),
		"$what: each scan walks no slot and resolves no role");
	my @us = sort { $a <=> $b } map { $_->[2] } @s;
	note "$what: a scan takes $us[int(@us / 2)] us (median of "
	  . scalar(@us) . ')';
	return;
}

quiet_ok('defaults (superuser_deny_hosts unset)');

ok(set_conf($node, 'role_guard.superuser_deny_hosts' => ''),
	"superuser_deny_hosts = ''");
quiet_ok("superuser_deny_hosts = '' set explicitly");

# Something to look for: every scan walks the slots, and the roles are
# resolved once (then kept until a reload or a role change).
ok(set_conf($node, 'role_guard.superuser_deny_hosts' => '10.9.8.7'),
	"superuser_deny_hosts = '10.9.8.7'");
# (the reaper reads the reload at its next scan)
my @s = scans(4, sub { $_[0]->[0] > 0 });
ok((grep { $_->[0] > 0 } @s) == @s, 'a host list set: every scan walks the slots');
ok(set_conf($node, 'role_guard.superuser_deny_hosts' => ''),
	"superuser_deny_hosts = '' again");
scans(2, sub { $_[0]->[0] == 0 });
ok(set_conf($node, 'role_guard.idle_timeouts' => 'nobody=1h'),
	"idle_timeouts = 'nobody=1h'");
@s = scans(4, sub { $_[0]->[0] > 0 });
ok((grep { $_->[0] > 0 } @s) == @s, 'an idle limit set: every scan walks the slots');

c_close($_) foreach @held;
$node->stop;
done_testing();
