
# Copyright: see README.md.
#
# The event trail keeps its security events (issue 22, item 5).  With
# role_guard.event_log_size = 40 the ring has a security quarter of 10
# entries (5 for superuser denials, 5 for login blocks) and a general part
# of 30:
#   1. superuser denials, then a flood of 200 budget refusals by an
#      authenticated role: every denial is still in role_guard_events, the
#      refusals keep the newest 30, and the view stays newest first;
#   2. a flood of 15 denials keeps the newest 5 of them and displaces no
#      refusal;
#   3. role_guard_reset() empties both parts.
# Only 127.0.0.1 and the node's Unix socket are used.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT raw_result);

my $node = rg_node(
	'event_trail',
	budgets => 'flood=0',
	conf    => qq{role_guard.event_log_size = 40
role_guard.superuser_deny_hosts = '127.0.0.1'
});
$node->safe_psql(
	'postgres', q{
CREATE ROLE flood LOGIN;
CREATE ROLE su1 LOGIN SUPERUSER;
CREATE EXTENSION role_guard;
});

sub count_of
{
	my ($event) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM role_guard_events WHERE event = '$event'");
}

# $n logins of $user over TCP that role_guard refuses (28000 or 53300).
sub refused_logins
{
	my ($user, $n) = @_;
	my $refused = 0;
	my $last    = '';
	for (1 .. $n)
	{
		my $r = raw_login($node, $user);
		$last = raw_result($r);
		$refused++ if defined $r->{sqlstate} && $r->{sqlstate} =~ /^(28000|53300)$/;
		RoleGuardTest::raw_close($r->{sock}) if $r->{sock};
	}
	is($refused, $n, "$n logins of $user refused") or diag "last: $last";
	return;
}

# 1. denials, then a flood of refusals
refused_logins('su1', 3);
is(count_of('superuser_denied'), '3', '1 three superuser_denied events');
refused_logins('flood', 200);
is(count_of('superuser_denied'), '3', '1 after 200 refusals: the 3 denials are still there');
is(count_of('rejected'), '30', '1 the refusals keep the general part: the newest 30');
my @at = split /\n/,
  $node->safe_psql('postgres', 'SELECT extract(epoch FROM at) FROM role_guard_events');
my $sorted = 1;
$sorted &&= $at[ $_ - 1 ] >= $at[$_] for 1 .. $#at;
ok($sorted && @at == 33, '1 the view is newest first across both parts')
  or diag join(' ', @at);
my $newest = $node->safe_psql('postgres',
	q{SELECT event FROM role_guard_events LIMIT 1});
is($newest, 'rejected', '1 the newest event is the last refusal');

# 2. a flood of denials stays in its own part
refused_logins('su1', 15);
is(count_of('superuser_denied'), '5',
	'2 15 more denials: the newest 5 are kept (the other half of the quarter is for login blocks)');
is(count_of('rejected'), '30', '2 and no refusal was displaced');

# 3. reset
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
is($node->safe_psql('postgres', 'SELECT count(*) FROM role_guard_events'),
	'0', '3 role_guard_reset() empties both parts');
refused_logins('flood', 1);
is($node->safe_psql('postgres', 'SELECT count(*) FROM role_guard_events'),
	'1', '3 and the ring fills again');

$node->stop;
done_testing();
