
# Copyright: see README.md.
#
# role_guard with pg_cron inside the same server.
#
#   (1) pg_cron's launcher (backend_type 'pg_cron launcher', a background
#       worker connected as the bootstrap superuser) is never counted in
#       role_guard_usage and never reaped, with role_guard.idle_timeouts =
#       '*=1s' covering the bootstrap superuser too (no exemption entry).
#   (2) libpq mode (cron.use_background_workers = off, cron.host =
#       127.0.0.1): a job runs as its owner over an ordinary login, so
#       budgets apply exactly as to any login.  jobber=0: the run is
#       'failed' in cron.job_run_details, the server log has the FATAL
#       53300 'too many connections for role "jobber"', role_guard counts
#       one rejection and records a 'rejected' event (application_name
#       'pg_cron').  pg_cron 1.4 itself writes only 'connection failed' into
#       return_message (it does not copy libpq's error text): asserted as
#       such.  jobber=1: the run succeeds and is counted while it runs.
#   (3) a running job (SELECT pg_sleep(8)) with idle limit jobber=1s is
#       active, not idle: never reaped, the run succeeds.
#   (4) cron.use_background_workers = on: the job is a background worker
#       (backend_type 'pg_cron') that never passes ClientAuthentication_hook,
#       so role_guard neither counts nor refuses nor reaps it: with
#       jobber=0 the job runs and succeeds, while an ordinary login of
#       jobber is refused.
#   (5) (2) and (3) in both load orders: 'pg_cron,role_guard' and
#       'role_guard,pg_cron'.
#
# pg_cron 1.4 schedules by the minute only ('N seconds' came in 1.5), so
# all five nodes run at once and their jobs fire at the same minute tick:
# the whole test waits for one tick (about a minute) plus the 8 s job (a
# node that misses the tick gets the next one).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT reap_log_re no_event_ok events_where);

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
plan skip_all => 'pg_cron is not installed'
  unless -e "$pkglibdir/pg_cron.so";

my $SLEEP = 8;    # seconds the long jobs run
my $LONG  = "SELECT pg_sleep($SLEEP)";

# name, shared_preload_libraries, jobber's budget, background workers, job
my @SPEC = (
	[ 'deny_cron_first',  'pg_cron,role_guard', 0, 0, 'SELECT 1' ],
	[ 'deny_rg_first',    'role_guard,pg_cron', 0, 0, 'SELECT 1' ],
	[ 'allow_cron_first', 'pg_cron,role_guard', 1, 0, $LONG ],
	[ 'allow_rg_first',   'role_guard,pg_cron', 1, 0, $LONG ],
	[ 'bgw',              'pg_cron,role_guard', 0, 1, $LONG ],);

my (%N, @names);
foreach my $s (@SPEC)
{
	my ($name, $libs, $budget, $bgw, $cmd) = @$s;
	my $node = rg_node(
		"cron_$name",
		budgets => "jobber=$budget",
		conf    => qq{
shared_preload_libraries = '$libs'
cron.database_name = 'postgres'
cron.host = '127.0.0.1'
cron.use_background_workers = } . ($bgw ? 'on' : 'off') . qq{
max_worker_processes = 16
role_guard.idle_timeouts = '*=1s'
role_guard.reap_interval = '200ms'
});
	$node->safe_psql(
		'postgres', q{
CREATE EXTENSION role_guard;
CREATE EXTENSION pg_cron;
CREATE ROLE jobber LOGIN;
});
	is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
		$libs, "$name: shared_preload_libraries = '$libs'");
	$N{$name} = {
		node   => $node,
		budget => $budget,
		bgw    => $bgw,
		cmd    => $cmd,
		logpos => log_pos_of($node),
	};
	push @names, $name;
}
my $su = $N{bgw}{node}->safe_psql('postgres', 'SELECT current_user');

sub log_pos_of { return -s $_[0]->logfile; }

# ---------------------------------------------------------------------------
# (1) the launcher: there, a background worker of the bootstrap superuser,
# not counted.
# ---------------------------------------------------------------------------
# Client backends that role_guard counts, against what pg_stat_activity
# lists, in one snapshot: "usage=N clients=N".
my $COUNTS = q{
SELECT 'usage=' || (SELECT coalesce(sum(connections), 0) FROM role_guard_usage)
    || ' clients=' || (SELECT count(*) FROM pg_stat_activity
                       WHERE backend_type = 'client backend')};

foreach my $name (@names)
{
	my $node = $N{$name}{node};
	ok( poll_until(
			$node,
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'",
			'1'),
		"$name: the pg_cron launcher is running");
	my $row = $node->safe_psql('postgres',
		"SELECT pid, usename, application_name FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'"
	);
	my ($pid, $user, $app) = split /\|/, $row;
	is("$user|$app", "$su|pg_cron scheduler",
		"$name: the launcher is connected as the bootstrap superuser");
	$N{$name}{launcher} = $pid;
	is($node->safe_psql('postgres', $COUNTS),
		'usage=1 clients=1',
		"$name: role_guard counts only the client backend, not the launcher");
}

# ---------------------------------------------------------------------------
# Schedule one job per node, owned by jobber, every minute.  Done in the
# first 45 s of a minute so that every node's launcher has the job before
# the same tick.
# ---------------------------------------------------------------------------
{
	my $sec = (gmtime)[0];
	sleep(62 - $sec) if $sec > 45;
}
foreach my $name (@names)
{
	my $node = $N{$name}{node};
	my $cmd  = $N{$name}{cmd};
	$N{$name}{jobid} = $node->safe_psql('postgres',
		"SELECT cron.schedule_in_database('rg_job', '* * * * *', \$\$$cmd\$\$, 'postgres', 'jobber')"
	);
	is( $node->safe_psql(
			'postgres', "SELECT username FROM cron.job WHERE jobid = $N{$name}{jobid}"),
		'jobber',
		"$name: job $N{$name}{jobid} owned by jobber");
}
my $scheduled = time;

# ---------------------------------------------------------------------------
# The tick: the long jobs are running.  Look at them as they run.
# ---------------------------------------------------------------------------
my $JOBBER = q{
SELECT pid, backend_type, state FROM pg_stat_activity WHERE usename = 'jobber'};

ok( poll_until(
		$N{allow_cron_first}{node},
		"SELECT count(*) FROM pg_stat_activity WHERE usename = 'jobber' AND state = 'active'",
		'1', 80),
	'the minute tick came: the allow_cron_first job is running');
my $tick = time;
note sprintf('tick %.1f s after scheduling', $tick - $scheduled);

foreach my $name (qw(allow_cron_first allow_rg_first bgw))
{
	my $node = $N{$name}{node};
	my $bgw  = $N{$name}{bgw};
	ok( poll_until(
			$node,
			"SELECT count(*) FROM pg_stat_activity WHERE usename = 'jobber' AND state = 'active'",
			'1', 5),
		"$name: the job is running");
	my ($pid, $type, $state) = split /\|/,
	  $node->safe_psql('postgres', $JOBBER);
	$N{$name}{jobpid} = $pid;
	is("$type|$state",
		($bgw ? 'pg_cron' : 'client backend') . '|active',
		"$name: the job is " . ($bgw ? 'a background worker' : 'a client backend'));

	my $u = usage_of($node, 'jobber', qw(budget connections rejected));
	if ($bgw)
	{
		# budget 0 and yet running: role_guard never saw it
		is_deeply(
			$u,
			{ budget => 0, connections => 0, rejected => 0 },
			"$name: the background-worker job is not counted against jobber=0");
		is($node->safe_psql('postgres', $COUNTS),
			'usage=1 clients=1',
			"$name: role_guard counts only the client backend");
	}
	else
	{
		is_deeply(
			$u,
			{ budget => 1, connections => 1, rejected => 0 },
			"$name: the job's login fills jobber=1 like any login");
		is($node->safe_psql('postgres', $COUNTS),
			'usage=2 clients=2',
			"$name: role_guard counts the job and the client backend");
	}
}

# (4) while the background-worker job of jobber runs with jobber=0, an
# ordinary login of jobber is refused: the budget is in force, the worker
# just is not a login.
refused_ok($N{bgw}{node}, tcp_connstr($N{bgw}{node}, 'jobber'),
	'bgw: an ordinary login of jobber meanwhile',
	role => 'jobber', entry => 'jobber=0', used => 0, limit => 0);

# (3) well past the 1 s idle limit (and many 200 ms reaper rounds), the
# running jobs are still there.
{
	my $left = $tick + 3.5 - time;
	usleep(int($left * 1e6)) if $left > 0;
}
foreach my $name (qw(allow_cron_first allow_rg_first bgw))
{
	my $node = $N{$name}{node};
	my ($pid, undef, $state) = split /\|/,
	  $node->safe_psql('postgres', $JOBBER);
	is("$pid|$state", "$N{$name}{jobpid}|active",
		"$name: the running job is not reaped 3.5 s into a 1 s idle limit");
}

# ---------------------------------------------------------------------------
# The runs end; look at cron.job_run_details.
# ---------------------------------------------------------------------------
my $RUN = q{
SELECT status || '|' || coalesce(return_message, '<null>') || '|' || coalesce(job_pid, 0)
FROM cron.job_run_details WHERE jobid = __J__ ORDER BY runid LIMIT 1};

# Every node's first run, each job unscheduled as soon as it has one (no
# second tick may muddle the counts below).  All nodes are watched at once:
# a job scheduled at the very end of a minute may only fire at the next
# tick, a minute later than the others.
my %ended;
my $deadline = time + $SLEEP + 80;
while (time < $deadline && grep { !$ended{$_} } @names)
{
	foreach my $name (grep { !$ended{$_} } @names)
	{
		my $j = $N{$name}{jobid};
		next
		  unless $N{$name}{node}->safe_psql('postgres',
			"SELECT count(*) FROM cron.job_run_details WHERE jobid = $j AND status IN ('succeeded', 'failed')"
		  ) eq '1';
		$N{$name}{node}->safe_psql('postgres', "SELECT cron.unschedule($j)");
		$ended{$name} = 1;
	}
	usleep(200_000);
}

foreach my $name (@names)
{
	my $node = $N{$name}{node};
	my $j    = $N{$name}{jobid};
	(my $run = $RUN) =~ s/__J__/$j/;
	ok($ended{$name}, "$name: the first run ended");
	my ($status, $msg, $jpid) = split /\|/, $node->safe_psql('postgres', $run), 3;
	my $log = slurp_file($node->logfile, $N{$name}{logpos});

	if ($N{$name}{budget} == 0 && !$N{$name}{bgw})
	{
		# (2) refused by jobber=0
		is($status, 'failed', "$name: the refused run is 'failed'");
		is($msg, 'connection failed',
			"$name: return_message is pg_cron's own 'connection failed' (1.4 does not keep libpq's text)"
		);
		like(
			$log,
			qr/FATAL:\s+53300: too many connections for role "jobber"/,
			"$name: the server log has the 53300 FATAL for jobber");
		like(
			$log,
			qr/role_guard budget "jobber=0" is full \(0 of 0 sessions\)/,
			"$name: ... with role_guard's DETAIL");
		like($log, qr/cron job $j connection failed/,
			"$name: pg_cron logs the failed run");
		is_deeply(
			usage_of($node, 'jobber', qw(connections rejected)),
			{ connections => 0, rejected => 1 },
			"$name: one rejection of jobber counted, no place held");
		my @ev = events_where($node, { event => 'rejected', rolname => 'jobber' });
		is( join(';', map { "$_->{application_name}|$_->{client_addr}" } @ev),
			'pg_cron|127.0.0.1',
			"$name: one 'rejected' event, application_name pg_cron, from 127.0.0.1");
	}
	elsif (!$N{$name}{bgw})
	{
		# (2) admitted by jobber=1, (3) not reaped while running
		is("$status|$msg", 'succeeded|1 row',
			"$name: the run succeeded");
		is($jpid, $N{$name}{jobpid}, "$name: job_pid is the session seen running");
		is_deeply(
			usage_of($node, 'jobber', qw(connections rejected reaped)),
			{ connections => 0, rejected => 0, reaped => 0 },
			"$name: jobber: place released, nothing rejected or reaped");
		unlike($log, reap_log_re('jobber', $N{$name}{jobpid}, 'idle'),
			"$name: no reap LOG line for the job");
		no_event_ok($node, { rolname => 'jobber' },
			"$name: no role_guard event for jobber");
	}
	else
	{
		# (4) background worker: neither counted, refused nor reaped
		is("$status|$msg|$jpid", "succeeded|SELECT 1|$N{$name}{jobpid}",
			"$name: the background-worker run succeeded despite jobber=0");
		# the one rejection is the ordinary psql login above
		is_deeply(
			usage_of($node, 'jobber', qw(connections rejected reaped)),
			{ connections => 0, rejected => 1, reaped => 0 },
			"$name: jobber: only the psql login rejected, nothing counted or reaped");
		is(count_matches($log, qr/too many connections for role "jobber"/),
			1, "$name: one 53300 for jobber in the log (the psql login)");
		my @ev = events_where($node, { rolname => 'jobber' });
		is( join(';', map { "$_->{event}|" . ($_->{pid} == $jpid ? 'job' : 'other') } @ev),
			'rejected|other',
			"$name: no role_guard event for the job (one, for the psql login)");
	}
}

# ---------------------------------------------------------------------------
# (1) again, after a minute or more under '*=1s': the launcher is the same
# process, never reaped, never counted.
# ---------------------------------------------------------------------------
foreach my $name (@names)
{
	my $node = $N{$name}{node};
	my $pid  = $N{$name}{launcher};
	is( $node->safe_psql(
			'postgres',
			"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'"),
		$pid,
		sprintf('%s: the launcher (pid %d) is still there after %.0f s under *=1s',
			$name, $pid, time - $scheduled));
	my $log = slurp_file($node->logfile, $N{$name}{logpos});
	unlike($log, qr/role_guard: terminating session of role "[^"]*" \(pid $pid\)/,
		"$name: no reap LOG line for the launcher");
	is_deeply(
		usage_of($node, $su, qw(reaped rejected)),
		{ reaped => 0, rejected => 0 },
		"$name: $su: nothing reaped or rejected");
	is($node->safe_psql('postgres', $COUNTS),
		'usage=1 clients=1',
		"$name: role_guard still counts only the client backend");
	no_event_ok($node, { pid => $pid }, "$name: no role_guard event for the launcher");
	unlike($log, qr/pg_cron launcher.*(?:exited|terminated)/,
		"$name: the launcher never exited");
}

$N{$_}{node}->stop foreach @names;
done_testing();
