
# Copyright: see README.md.
#
# role_guard's shared counter table must not refuse logins that no budget
# limits: a login may be refused only by an entry that applies to it.  With
# role_guard.max_roles = 16 and max_connections = 20 the table is small;
# roles in 64 groups each, and no budgets, must all get in.  Counting stays
# exact where entries name groups: a +group budget whose members are in many
# groups admits exactly its limit under simultaneous logins, and a reload
# that adds a +group entry while members are connected counts them at once.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use POSIX qw(:sys_wait_h);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT file_text raw_hold_ok raw_close raw_result
  no_event_ok);

my $node = rg_node(
	'counter_table',
	budgets => '',
	conf    => "role_guard.max_roles = 16\nmax_connections = 20\n");

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
DO $$
DECLARE
  s text;
BEGIN
  -- wide_a, wide_b, wide_c: each in 64 groups of its own
  FOREACH s IN ARRAY ARRAY['a', 'b', 'c'] LOOP
    EXECUTE format('CREATE ROLE %I LOGIN', 'wide_' || s);
    FOR i IN 1..64 LOOP
      EXECUTE format('CREATE ROLE %I NOLOGIN', 'g' || s || i);
      EXECUTE format('GRANT %I TO %I', 'g' || s || i, 'wide_' || s);
    END LOOP;
  END LOOP;
  -- m1..m10: each in gx and in 40 groups of its own
  CREATE ROLE gx NOLOGIN;
  FOR m IN 1..10 LOOP
    EXECUTE format('CREATE ROLE %I LOGIN', 'm' || m);
    EXECUTE format('GRANT gx TO %I', 'm' || m);
    FOR i IN 1..40 LOOP
      EXECUTE format('CREATE ROLE %I NOLOGIN', 'gm' || m || '_' || i);
      EXECUTE format('GRANT %I TO %I', 'gm' || m || '_' || i, 'm' || m);
    END LOOP;
  END LOOP;
  -- p1..p5: in gp (p3 through gpmid), each in 3 groups of its own
  CREATE ROLE gp NOLOGIN;
  CREATE ROLE gpmid NOLOGIN;
  GRANT gp TO gpmid;
  FOR m IN 1..5 LOOP
    EXECUTE format('CREATE ROLE %I LOGIN', 'p' || m);
    EXECUTE format('GRANT %I TO %I', CASE WHEN m = 3 THEN 'gpmid' ELSE 'gp' END, 'p' || m);
    FOR i IN 1..3 LOOP
      EXECUTE format('CREATE ROLE %I NOLOGIN', 'gq' || m || '_' || i);
      EXECUTE format('GRANT %I TO %I', 'gq' || m || '_' || i, 'p' || m);
    END LOOP;
  END LOOP;
END
$$ LANGUAGE plpgsql;
});

my $table_full = qr/entries of role_guard's shared counter table are in use/;

# ===========================================================================
# 1. No budgets at all: roles in 64 groups each all get in.
# ===========================================================================
my @wide;
push @wide,
  raw_hold_ok($node, 'wide_a', 'postgres', 'wide_a (64 groups) holds a session');
{
	my $pos = log_pos($node);
	my $r   = raw_login($node, 'wide_b');
	is(raw_result($r), 'admitted',
		'wide_b (64 other groups) admitted while wide_a is in: no budget applies');
	push @wide, $r->{sock};
	$r = raw_login($node, 'wide_c');
	is(raw_result($r), 'admitted',
		'wide_c (64 more groups) admitted too');
	push @wide, $r->{sock};
	unlike(log_since($node, $pos), $table_full,
		'no counter-table refusal in the server log');
}
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(rolname || '=' || connections, ' ' ORDER BY rolname)
		    FROM role_guard_usage WHERE rolname LIKE 'wide\_%'}),
	'wide_a=1 wide_b=1 wide_c=1',
	'role_guard_usage counts the three sessions');
no_event_ok(
	$node,
	{ event => 'rejected', rolname => [qw(wide_a wide_b wide_c)] },
	'no rejected event for the wide roles');
raw_close($_) for @wide;
ok( poll_until(
		$node,
		q{SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'wide\_%'},
		'0'),
	'wide sessions gone');

# ===========================================================================
# 2. A reload that adds a +group entry while members are connected counts
#    them at once, exactly.
# ===========================================================================
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
my %p;
$p{$_} = raw_hold_ok($node, "p$_", 'postgres', "p$_ in (no budgets yet)")
  for 1 .. 3;
ok(set_budgets($node, '+gp=3'), 'reload adds +gp=3 with p1, p2, p3 in');
is_deeply(
	budget_of($node, '+gp', 'kind', 'budget', 'connections'),
	{ kind => 'group', budget => 3, connections => 3 },
	'role_guard_budgets right after the reload: +gp has 3 connections (p3 through gpmid)'
);
refused_ok(
	$node, tcp_connstr($node, 'p4'), 'p4 after the reload',
	role  => 'p4',
	entry => '+gp=3',
	used  => 3,
	limit => 3);
raw_close(delete $p{1});
$p{4} = raw_hold_ok($node, 'p4', 'postgres', 'p4 admitted once p1 has left');
refused_ok(
	$node, tcp_connstr($node, 'p5'), 'p5 while p2, p3, p4 are in',
	role  => 'p5',
	entry => '+gp=3',
	used  => 3,
	limit => 3);
is_deeply(
	budget_of($node, '+gp', 'connections', 'rejected'),
	{ connections => 3, rejected => 2 },
	'+gp still counts 3, and the 2 refusals');
raw_close($_) for values %p;
ok(poll_until($node,
		q{SELECT connections FROM role_guard_budgets WHERE entry = '+gp'}, '0'),
	'+gp back to 0');

# ===========================================================================
# 3. Exactness with entries naming some of many groups: ten members of gx,
#    each in 40 other groups, log in at once against +gx=3.
# ===========================================================================
ok(set_budgets($node, '+gx=3, +gm1_1=5, +gm2_1=5, +ga1=5'),
	'budgets naming gx and some of the members\' other groups');
$node->safe_psql('postgres', 'SELECT role_guard_reset()');

my $tmp = PostgreSQL::Test::Utils::tempdir;
my %live;
END { kill 'KILL', keys %live if %live; }
my $n = 10;
foreach my $i (1 .. $n)
{
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		my $deadline = time + 30;
		usleep(2_000) until -e "$tmp/go" || time > $deadline;
		my $r = eval { raw_login($node, "m$i") } // {};
		open(my $fh, '>', "$tmp/out.$i.tmp") or POSIX::_exit(1);
		print $fh raw_result($r), "\n";
		close $fh;
		rename("$tmp/out.$i.tmp", "$tmp/out.$i");
		if ($r->{sock})
		{
			$deadline = time + 30;
			usleep(10_000) until -e "$tmp/release" || time > $deadline;
			raw_close($r->{sock});
		}
		POSIX::_exit(0);
	}
	$live{$pid} = 1;
}
open(my $go, '>', "$tmp/go") or die;
close $go;
{
	my $deadline = time + 30;
	usleep(20_000) while time < $deadline && grep { !-e "$tmp/out.$_" } 1 .. $n;
}
my @res = map { file_text("$tmp/out.$_") } 1 .. $n;
chomp @res;
my $detail = 'role_guard budget "+gx=3" is full (3 of 3 sessions).';
is(scalar(grep { $_ eq 'admitted' } @res),
	3, 'exactly 3 of 10 simultaneous members of gx admitted')
  or diag join("\n", @res);
is( scalar(
		grep { /^53300 too many connections for role "m\d+" DETAIL: \Q$detail\E$/ }
		  @res),
	7,
	'the 7 others refused by +gx=3 with "(3 of 3 sessions)"');
is_deeply(
	budget_of($node, '+gx', 'connections', 'rejected'),
	{ connections => 3, rejected => 7 },
	'role_guard_budgets: +gx has 3 connections and 7 rejected');
open(my $rel, '>', "$tmp/release") or die;
close $rel;
{
	my $deadline = time + 30;
	while (%live && time < $deadline)
	{
		foreach my $pid (keys %live)
		{
			delete $live{$pid} if waitpid($pid, WNOHANG) == $pid;
		}
		usleep(20_000);
	}
	ok(!%live, 'all clients finished');
}
ok(poll_until($node,
		q{SELECT connections FROM role_guard_budgets WHERE entry = '+gx'}, '0'),
	'+gx back to 0');

$node->stop;
done_testing();
