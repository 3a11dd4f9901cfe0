
# Copyright: see README.md.
#
# Exactness under simultaneous logins.  Forked clients wait on a barrier
# file and then all log in at once over 127.0.0.1; the admitted ones hold
# their sessions until every other attempt has been answered, so the
# number admitted must be exactly the budget.  Then a churn of short
# sessions against a small budget: the peak never exceeds it, every refusal
# the clients saw is counted, and the count returns to 0.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use POSIX qw(:sys_wait_h);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT file_text fork_at_barrier open_barrier);

my $node = rg_node(
	'storm',
	budgets => 'app=10, +pool=7, churn=5',
	conf    => "max_connections = 150\n");

$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE pool NOLOGIN;
CREATE ROLE poolmid NOLOGIN;
CREATE ROLE p1 LOGIN;
CREATE ROLE p2 LOGIN;
GRANT pool TO p1;
GRANT pool TO poolmid;
GRANT poolmid TO p2;
CREATE ROLE churn LOGIN;
CREATE TABLE storm_release (round int);
GRANT SELECT ON storm_release TO PUBLIC;
CREATE EXTENSION role_guard;
});

my $tmp = PostgreSQL::Test::Utils::tempdir;
my %live;    # pid => 1 for forked clients not yet reaped

END
{
	# Never leave a forked client behind.
	kill 'KILL', keys %live if %live;
}

# Fork one client per element of @cmds (each an argv), all held at a
# barrier until the parent calls open_barrier($dir).  stdout/stderr of
# client $i go to "$dir/out.$i" / "$dir/err.$i".  Returns { pid => index }.
sub launch
{
	my ($dir, @cmds) = @_;
	mkdir $dir;
	my %kids;
	foreach my $i (0 .. $#cmds)
	{
		my $pid = fork_at_barrier($dir, $i, @{ $cmds[$i] });
		$kids{$pid} = $i;
		$live{$pid} = 1;
	}
	return \%kids;
}

# Reap whatever has exited; records exit codes in $status.
sub reap
{
	my ($kids, $status) = @_;
	foreach my $pid (keys %$kids)
	{
		next if exists $status->{$pid};
		my $r = waitpid($pid, WNOHANG);
		if ($r == $pid)
		{
			$status->{$pid} = $? >> 8;
			delete $live{$pid};
		}
	}
	return scalar keys %$status;
}

sub wait_all
{
	my ($kids, $status, $secs) = @_;
	my $deadline = time + $secs;
	while (reap($kids, $status) < keys %$kids && time < $deadline)
	{
		usleep(20_000);
	}
	return scalar(keys %$status) == scalar(keys %$kids);
}

# One storm: clients given as [user, ...]; every client runs a DO block
# that waits (at most 30 s) for storm_release to get row $round.
sub storm
{
	my ($round, @users) = @_;
	my $dir  = "$tmp/round$round";
	my $tag  = "storm_round_$round";
	my $hold = qq{DO \$\$BEGIN FOR i IN 1..600 LOOP }
	  . qq{EXIT WHEN EXISTS (SELECT 1 FROM storm_release WHERE round = $round); }
	  . qq{PERFORM pg_sleep(0.05); END LOOP; END\$\$ /* $tag */};
	my @cmds = map {
		[
			'psql', '-XAtq', '-w',
			'-d', tcp_connstr($node, $_),
			'-c', $hold, '-c', "SELECT 'admitted'"
		]
	} @users;

	my $pos = log_pos($node);
	my $kids = launch($dir, @cmds);
	my %status;
	my $t0 = time;
	open_barrier($dir);

	# Every client is either refused (exited) or admitted (its DO block is
	# running).  Wait until that holds for all of them, bounded.
	my $active   = 0;
	my $deadline = time + 60;
	while (time < $deadline)
	{
		my $exited = reap($kids, \%status);
		$active = $node->safe_psql(
			'postgres', qq{
SELECT count(*) FROM pg_stat_activity
 WHERE pid <> pg_backend_pid() AND state = 'active'
   AND query LIKE '%$tag%'});
		last if $exited + $active >= @users;
		usleep(50_000);
	}
	my $exited = reap($kids, \%status);
	note sprintf("round %d: %d refused, %d in, %.1fs", $round, $exited,
		$active, time - $t0);

	my %r = (
		pos     => $pos,
		refused => [ map { $kids->{$_} } keys %status ],
		codes   => { map { $kids->{$_} => $status{$_} } keys %status },
		active  => $active,
		dir     => $dir,
		kids    => $kids,
		status  => \%status);
	return \%r;
}

sub release
{
	my ($r, $round) = @_;
	$node->safe_psql('postgres', "INSERT INTO storm_release VALUES ($round)");
	my $done = wait_all($r->{kids}, $r->{status}, 60);
	ok($done, "round $round: every admitted client finished");
	my $kids = $r->{kids};
	my @admitted =
	  grep { !exists $r->{codes}{ $kids->{$_} } } keys %$kids;
	my $ok = grep {
		defined $r->{status}{$_}
		  && $r->{status}{$_} == 0
		  && file_text("$r->{dir}/out.$kids->{$_}") =~ /^admitted$/m
	} @admitted;
	is($ok, scalar(@admitted),
		"round $round: every admitted client ran its queries");
	return;
}

# ---------------------------------------------------------------------------
# Round 1: 100 simultaneous logins of app against app=10.
# ---------------------------------------------------------------------------
my $r = storm(1, ('app') x 100);
is(scalar @{ $r->{refused} }, 90, 'round 1: exactly 90 logins refused');
is($r->{active}, 10, 'round 1: exactly 10 sessions admitted');
my $detail = 'role_guard budget "app=10" is full (10 of 10 sessions).';
is( scalar(
		grep {
			     $r->{codes}{$_} == 2
			  && file_text("$r->{dir}/err.$_") =~
			  /FATAL:\s+too many connections for role "app"\n\s*DETAIL:\s+\Q$detail\E/
		} @{ $r->{refused} }),
	90,
	'round 1: each refused client got the budget message with "(10 of 10 sessions)"'
);
is( count_matches(
		log_since($node, $r->{pos}),
		qr/FATAL:\s+53300: too many connections for role "app"\n/),
	90,
	'round 1: server logged 90 refusals with SQLSTATE 53300');
is_deeply(
	usage_of($node, 'app', 'connections', 'peak', 'rejected'),
	{ connections => 10, peak => 10, rejected => 90 },
	'round 1: role_guard_usage while the 10 are in');
release($r, 1);
ok(poll_until($node,
		q{SELECT connections FROM role_guard_usage WHERE rolname = 'app'}, '0'),
	'round 1: connections back to 0');
is_deeply(
	usage_of($node, 'app', 'connections', 'peak', 'rejected'),
	{ connections => 0, peak => 10, rejected => 90 },
	'round 1: role_guard_usage afterwards');
is_deeply(
	budget_of($node, 'app', 'connections', 'rejected'),
	{ connections => 0, rejected => 90 },
	'round 1: role_guard_budgets afterwards');

# ---------------------------------------------------------------------------
# Round 2: 60 simultaneous logins, half by a direct member of pool and
# half by an indirect one, against +pool=7.
# ---------------------------------------------------------------------------
$r = storm(2, ('p1', 'p2') x 30);
is(scalar @{ $r->{refused} }, 53, 'round 2: exactly 53 logins refused');
is($r->{active}, 7, 'round 2: exactly 7 group sessions admitted');
$detail = 'role_guard budget "+pool=7" is full (7 of 7 sessions).';
is( scalar(
		grep {
			file_text("$r->{dir}/err.$_") =~
			  /FATAL:\s+too many connections for role "p[12]"\n\s*DETAIL:\s+\Q$detail\E/
		} @{ $r->{refused} }),
	53,
	'round 2: each refused client got the group DETAIL');
is_deeply(
	budget_of($node, '+pool', 'connections', 'rejected'),
	{ connections => 7, rejected => 53 },
	'round 2: role_guard_budgets for +pool while the 7 are in');
is( $node->safe_psql(
		'postgres',
		q{SELECT sum(rejected) FROM role_guard_usage WHERE rolname IN ('p1', 'p2')}),
	'53',
	'round 2: per-role rejected counts add up');
release($r, 2);
ok( poll_until(
		$node,
		q{SELECT connections FROM role_guard_budgets WHERE entry = '+pool'},
		'0'),
	'round 2: +pool back to 0');

# ---------------------------------------------------------------------------
# Round 3: churn.  16 clients, each 12 short sessions in a row, against
# churn=5.
# ---------------------------------------------------------------------------
my $dir   = "$tmp/churn";
my $conn  = tcp_connstr($node, 'churn');
my $loop  = qq{for i in 1 2 3 4 5 6 7 8 9 10 11 12; do }
  . qq{psql -XAtq -w -d "\$RG_CONN" -c "SELECT pg_sleep(0.05), 'ok'" >/dev/null 2>>"\$RG_ERR"; }
  . qq{echo "rc=\$?"; done};
my @cmds =
  map { [ 'env', "RG_CONN=$conn", "RG_ERR=$dir/err.$_", 'sh', '-c', $loop ] }
  0 .. 15;
my $t0   = time;
my $kids = launch($dir, @cmds);
my %status;
open_barrier($dir);
ok(wait_all($kids, \%status, 90), 'churn: all clients finished');
note sprintf("churn: %.1fs", time - $t0);
my ($n_ok, $n_refused, $n_other) = (0, 0, 0);
my $refusal_msgs = 0;
foreach my $i (0 .. 15)
{
	my $out = file_text("$dir/out.$i");
	$n_ok      += () = $out =~ /^rc=0$/mg;
	$n_refused += () = $out =~ /^rc=2$/mg;
	$n_other   += () = $out =~ /^rc=(?![02]$)\d+$/mg;
	$refusal_msgs += () = file_text("$dir/err.$i") =~
	  /FATAL:\s+too many connections for role "churn"\n\s*DETAIL:\s+role_guard budget "churn=5" is full \(5 of 5 sessions\)\./g;
}
note "churn: $n_ok admitted, $n_refused refused, $n_other other";
is($n_ok + $n_refused, 192, 'churn: every login admitted or refused');
is($n_other, 0, 'churn: no other failures');
ok($n_ok > 0,      'churn: some logins admitted');
ok($n_refused > 0, 'churn: some logins refused (16 clients, 5 places)');
is($refusal_msgs, $n_refused,
	'churn: every refusal says the budget is full at 5 of 5');
ok(poll_until($node,
		q{SELECT connections FROM role_guard_usage WHERE rolname = 'churn'}, '0'),
	'churn: connections back to 0');
is_deeply(
	usage_of($node, 'churn', 'connections', 'peak', 'rejected'),
	{ connections => 0, peak => 5, rejected => $n_refused },
	'churn: peak is the budget, rejected is what the clients saw');

$node->stop;
done_testing();
