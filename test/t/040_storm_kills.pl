
# Copyright: see README.md.
#
# Budgets stay exact while sessions die at random.  Rounds of 80 forked psql
# clients, released together by a barrier file, log in over 127.0.0.1
# against tight budgets of every kind (role, default, group, database,
# role-in-database).  Admitted clients hold their session for a random
# 0.5-4 s, so rounds overlap and new logins race against sessions that are
# ending.  Meanwhile the test kills sessions: SIGKILL of admitted psql
# clients (client_connection_check_interval makes their backends notice),
# pg_terminate_backend of random backends, and once a SIGKILL of a backend,
# which makes the postmaster crash and restart; the storm goes on after it.
#
# A sampler (a forked child with a superuser session over the Unix socket,
# which is never refused) polls every ~50 ms and records role_guard's counts
# (role_guard_budgets.connections, role_guard_usage.connections) and the
# client backends in pg_stat_activity.  What is asserted for every sample:
#
#   - role_guard's own counts never exceed any budget.  This is exact: the
#     check and the charge happen under one lock.
#   - pg_stat_activity never shows more sessions than a budget allows,
#     counting only sessions that were not being torn down.  A backend is
#     charged before it appears in pg_stat_activity (its PgBackendStatus
#     entry is published at the end of InitPostgres, after authentication),
#     but it gives its place back in a before_shmem_exit callback, while its
#     pg_stat_activity entry is cleared later, in an on_shmem_exit callback.
#     In between, a new login may already have taken the place, so a raw
#     pg_stat_activity count may exceed a budget by the number of sessions
#     in teardown.  A session that is still listed $STABLE (0.5) s later
#     was not in teardown at the sample, so the sessions of a sample that
#     are seen again >= $STABLE s later must fit within every budget.  (How
#     often raw counts went over is only reported.)
#   - role_guard counts every session that pg_stat_activity shows neither
#     starting nor ending: for each entry, the sessions of a sample that an
#     earlier sample listed already and that are seen again >= $STABLE s
#     after it are no more than role_guard's count.  (A backend is charged
#     before pg_stat_activity lists it, so one listed by an earlier sample
#     was counted before this sample read role_guard; role_guard is read
#     before pg_stat_activity in the sampler's query, so a session that
#     finishes starting in between may legitimately be missing from its
#     count.  A start time older than the sample is not enough: under the
#     storm a backend may take more than half a second from its fork, its
#     backend_start, to its authentication.)  This catches counts that drift
#     low, e.g. a place given back twice, which would let budgets be
#     exceeded while role_guard's own counts look fine.
#
# Afterwards: every client was admitted, refused with role_guard's message
# naming an entry that applies to it with "(N of N sessions)", or killed or
# terminated by the test (clients caught by the crash excepted); refusals
# seen by clients = refusals in the server log = role_guard's rejected
# counters since the crash-restart, per role and per entry; peaks within
# budgets; and once everything settles, role_guard_usage.connections and
# role_guard_budgets.connections equal what pg_stat_activity shows.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use List::Util qw(sum0);
use POSIX qw(:sys_wait_h);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT file_text fork_at_barrier open_barrier);

my $ROUNDS     = 7;      # rounds of simultaneous logins
my $PER_ROUND  = 80;     # clients per round, all released at once
my $ROUND_GAP  = 2.0;    # seconds between the starts of two rounds
my $CRASH_AT   = 4;      # the round during which a backend is SIGKILLed
my $STABLE     = 0.5;    # seconds a session must outlive a sample: see above
my $SAMPLE_GAP = 0.05;   # seconds between two samples

my $node = rg_node(
	'stormkill',
	conf => qq{max_connections = 250
client_connection_check_interval = '100ms'
restart_after_crash = on
});
my $su = $node->safe_psql('postgres', 'SELECT current_user');

# Budgets.  The bootstrap superuser (the sampler, the harness) gets a roomy
# entry of its own so that it is not under '*'.
my %budget = (
	's1'         => 5,
	's2'         => 3,
	'+pool'      => 6,
	'@stormdb'   => 8,
	's3@stormdb' => 2,
	'*'          => 3,
);
my $budgets =
  's1=5, s2=3, +pool=6, @stormdb=8, s3@stormdb=2, *=3, ' . entry_text($su) . '=1000';
ok(set_budgets($node, $budgets), 'storm budgets loaded');

$node->safe_psql(
	'postgres', q{
CREATE ROLE s1 LOGIN;
CREATE ROLE s2 LOGIN;
CREATE ROLE s3 LOGIN;
CREATE ROLE o1 LOGIN;
CREATE ROLE pool NOLOGIN;
CREATE ROLE poolmid NOLOGIN;
CREATE ROLE p1 LOGIN;
CREATE ROLE p2 LOGIN;
CREATE ROLE p3 LOGIN;
CREATE ROLE p4 LOGIN;
GRANT pool TO p1, p2, poolmid;
GRANT poolmid TO p3, p4;
CREATE DATABASE stormdb;
CREATE EXTENSION role_guard;
});

my @roles      = qw(s1 s2 s3 o1 p1 p2 p3 p4);
my @star_roles = qw(s3 o1 p1 p2 p3 p4);         # under '*'
my %in_pool    = map { $_ => 1 } qw(pool poolmid p1 p2 p3 p4);
my $rolelist   = join(',', map { "'$_'" } @roles);

# The entries that apply to a login of $role into $db.
sub applicable
{
	my ($role, $db) = @_;
	my @e = (exists $budget{$role} ? $role : '*');
	push @e, '+pool' if $in_pool{$role};
	if ($db eq 'stormdb')
	{
		push @e, '@stormdb';
		push @e, 's3@stormdb' if $role eq 's3';
	}
	return @e;
}

# Who logs in in each round, and where: [role, share of logins to stormdb].
# About 38 logins a round go to stormdb, so @stormdb=8 is always full; s3
# sends 10 of them, so it takes about 2 of the 8 places a round and fills
# s3@stormdb=2 in most rounds (role budgets cap the others below 8 each).
my @mix = (
	([ 's1', 0.5 ]) x 16,
	([ 's2', 0.5 ]) x 10,
	([ 's3', 1.0 ]) x 10,
	([ 'o1', 0.5 ]) x 8,
	map { ([ $_, 0.3 ]) x 9 } qw(p1 p2 p3 p4));
die "mix has " . scalar(@mix) . " clients" unless @mix == $PER_ROUND;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my %live;    # pid => 1 for forked processes not yet reaped

END
{
	# Never leave a forked client or the sampler behind.
	kill 'KILL', keys %live if %live;
}

# ---------------------------------------------------------------------------
# The sampler: a forked child with a superuser session over the Unix
# socket.  One line per sample in $tmp/samples:
#   S <server epoch> B<entry>=<n>... U<role>=<n>... P<pid>,<start>,<role>,<db>...
# and "GAP <epoch>" when its session was lost (the crash-restart).
# ---------------------------------------------------------------------------
my $sample_sql = qq{SELECT 'S ' || extract(epoch FROM clock_timestamp())::numeric(20,3)
 || ' ' || coalesce((SELECT string_agg('B' || entry || '=' || connections, ' ')
                     FROM role_guard_budgets WHERE kind <> 'default'), '')
 || ' ' || coalesce((SELECT string_agg('U' || rolname || '=' || connections, ' ')
                     FROM role_guard_usage WHERE rolname IN ($rolelist)), '')
 || ' ' || coalesce((SELECT string_agg('P' || pid || ',' || extract(epoch FROM backend_start)::numeric(20,3)
                                       || ',' || usename || ',' || datname, ' ')
                     FROM pg_stat_activity
                     WHERE backend_type = 'client backend' AND usename IN ($rolelist)), '')};

my $sampler_stop = "$tmp/sampler.stop";
my $samples_file = "$tmp/samples";
my $sampler_pid  = fork();
die "fork failed: $!" unless defined $sampler_pid;
if ($sampler_pid == 0)
{
	# Child: no Perl-level exit (END blocks would stop the node).
	eval {
		open(my $out, '>', $samples_file) or die "cannot write $samples_file: $!";
		$out->autoflush(1);
		my $deadline = time + 240;
		my $s;
		while (!-e $sampler_stop && time < $deadline)
		{
			if (!$s)
			{
				$s = RoleGuardTest::Session->new(sock_connstr($node, $su));
				if (!$s->connected)
				{
					$s = undef;
					usleep(100_000);
					next;
				}
			}
			my $line = $s->query($sample_sql, 10);
			if (!defined $line || $line !~ /^S /)
			{
				printf $out "GAP %.3f\n", time;
				eval { $s->kill_client; };
				$s = undef;
				next;
			}
			print $out "$line\n";
			usleep($SAMPLE_GAP * 1e6);
		}
		$s->quit if $s;
		close($out);
	};
	POSIX::_exit($@ ? 1 : 0);
}
$live{$sampler_pid} = 1;

# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------
my %client;    # pid => { round, i, role, db, app, hold, status, sig }
my %by_app;    # application_name => pid

# Fork one round of clients, held at a barrier until open_barrier().
sub launch_round
{
	my ($round) = @_;
	my $dir = "$tmp/round$round";
	mkdir $dir;
	foreach my $i (0 .. $PER_ROUND - 1)
	{
		my ($role, $p_storm) = @{ $mix[$i] };
		my $db   = rand() < $p_storm ? 'stormdb' : 'postgres';
		my $hold = sprintf("%.2f", 0.5 + rand(3.5));
		my $app  = "rg_storm_${round}_$i";
		my @cmd  = (
			'psql', '-XAtq', '-w',
			'-d', tcp_connstr($node, $role, $db) . " application_name=$app",
			'-c', "SELECT pg_sleep($hold)",
			'-c', "SELECT 'done'");
		my $pid = fork_at_barrier($dir, $i, @cmd);
		$live{$pid}   = 1;
		$by_app{$app} = $pid;
		$client{$pid} = {
			round => $round,
			i     => $i,
			role  => $role,
			db    => $db,
			app   => $app,
			hold  => $hold,
			dir   => $dir
		};
	}
	return $dir;
}

# Reap every client that has exited.
sub reap_clients
{
	foreach my $pid (keys %client)
	{
		next if defined $client{$pid}{status};
		my $r = waitpid($pid, WNOHANG);
		next unless $r == $pid;
		$client{$pid}{status} = $? >> 8;
		$client{$pid}{sig}    = $? & 127;
		delete $live{$pid};
	}
	return scalar grep { !defined $client{$_}{status} } keys %client;
}

sub sql
{
	my ($q) = @_;
	my ($ret, $out, $err) =
	  try_login($node, sock_connstr($node, $su), $q);
	return $ret == 0 ? $out : undef;
}

my (%sigkilled, $n_terminated);
$n_terminated = 0;

# SIGKILL $n psql clients whose sessions are in (state active, as seen in
# pg_stat_activity), chosen at random.
sub kill_clients
{
	my ($n) = @_;
	my $apps = sql(
		qq{SELECT application_name FROM pg_stat_activity
		   WHERE application_name LIKE 'rg\\_storm\\_%' AND state = 'active'
		   ORDER BY random() LIMIT $n});
	return 0 unless defined $apps;
	my $k = 0;
	foreach my $app (split /\n/, $apps)
	{
		my $pid = $by_app{$app} or next;
		next if defined $client{$pid}{status};
		if (kill('KILL', $pid))
		{
			$sigkilled{$pid} = 1;
			$k++;
		}
	}
	return $k;
}

# pg_terminate_backend of $n random storm backends.
sub terminate_backends
{
	my ($n) = @_;
	my $t = sql(
		qq{SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		   FROM (SELECT pid FROM pg_stat_activity
		         WHERE application_name LIKE 'rg\\_storm\\_%'
		         ORDER BY random() LIMIT $n) s});
	$n_terminated += $t if defined $t && $t =~ /^\d+$/;
	return $t // 0;
}

# Sleep $secs, reaping clients meanwhile.
sub nap
{
	my ($secs) = @_;
	my $until = time + $secs;
	while (time < $until)
	{
		reap_clients();
		usleep(20_000);
	}
	return;
}

# ---------------------------------------------------------------------------
# The storm
# ---------------------------------------------------------------------------
my $t_storm = time;
my ($crash_pos, $crash_ok, %crash_hit) = (undef, 0);
foreach my $round (1 .. $ROUNDS)
{
	my $t_round = time;
	my $dir     = launch_round($round);
	open_barrier($dir);
	nap(0.7);
	my $k = kill_clients(3);
	my $t = terminate_backends(3);
	if ($round == $CRASH_AT)
	{
		nap(0.3);
		# a storm backend that is in now (on a loaded machine the round's
		# clients may still be starting: look again for up to 10 s)
		my $victim = '';
		my $deadline = time + 10;
		while ($victim eq '' && time < $deadline)
		{
			$victim = sql(
				q{SELECT pid FROM pg_stat_activity
				  WHERE application_name LIKE 'rg\_storm\_%' AND backend_type = 'client backend'
				  ORDER BY random() LIMIT 1}) // '';
			nap(0.1) if $victim eq '';
		}
		$crash_pos = log_pos($node);
		# the clients alive now are caught by the crash
		reap_clients();
		$crash_hit{$_} = 1 for grep { !defined $client{$_}{status} } keys %client;
		ok(defined $victim && $victim =~ /^\d+$/ && $victim > 1 && kill('KILL', $victim),
			"round $round: SIGKILL sent to a storm backend");
		$crash_ok = ok(
			defined RoleGuardTest::wait_log(
				$node, qr/all server processes terminated; reinitializing/,
				$crash_pos),
			"round $round: the postmaster reinitializes after the SIGKILL");
		ok(poll_until($node, 'SELECT 1', '1', 60),
			"round $round: the server accepts logins again");
		note sprintf("round %d: crash-restart took %.1fs", $round, time - $t_round);
		next;
	}
	nap(0.6);
	$k += kill_clients(2);
	$t += terminate_backends(2);
	note sprintf("round %d: %d clients SIGKILLed, %d backends terminated",
		$round, $k, $t);
	nap($ROUND_GAP - (time - $t_round)) if time - $t_round < $ROUND_GAP;
}

# Let every client finish (holds are at most 3 s), bounded.
my $deadline = time + 60;
while (reap_clients() > 0 && time < $deadline)
{
	usleep(50_000);
}
my @stuck = grep { !defined $client{$_}{status} } keys %client;
is(scalar @stuck, 0, 'every client finished');
kill 'KILL', @stuck if @stuck;
note sprintf("storm: %d clients in %.1fs", scalar(keys %client), time - $t_storm);

# Stop the sampler.
{
	open(my $fh, '>', $sampler_stop) or die;
	close($fh);
	my $deadline = time + 30;
	my $r = 0;
	until ($r == $sampler_pid || time > $deadline)
	{
		$r = waitpid($sampler_pid, WNOHANG);
		usleep(50_000) unless $r == $sampler_pid;
	}
	is($r == $sampler_pid ? $? >> 8 : -1, 0, 'the sampler finished cleanly');
	delete $live{$sampler_pid};
}

# ---------------------------------------------------------------------------
# Clients' outcomes
# ---------------------------------------------------------------------------
my $refusal_re = qr/FATAL:\s+too many connections for (?:role "([^"]+)"(?: in database "([^"]+)")?|database "([^"]+)")\n\s*DETAIL:\s+role_guard budget "([^"]+)=(\d+)" is full \((\d+) of (\d+) sessions\)\./;
my %outcome;
my (@bad, @bad_refusal);
my $client_refusals = 0;
foreach my $pid (sort { $a <=> $b } keys %client)
{
	my $c   = $client{$pid};
	my $err = file_text("$c->{dir}/err.$c->{i}");
	my $out = file_text("$c->{dir}/out.$c->{i}");
	my $what;
	if (($c->{sig} // 0) == 9 && $sigkilled{$pid})
	{
		$what = 'sigkilled';
	}
	elsif (defined $c->{status} && $c->{status} == 0 && $out =~ /^done$/m)
	{
		$what = 'completed';
	}
	elsif ($err =~ $refusal_re)
	{
		my ($role, $rdb, $db, $entry, $limit, $used, $of) =
		  ($1, $2, $3, $4, $5, $6, $7);
		$what = 'refused';
		$client_refusals++;
		my %app = map { $_ => 1 } applicable($c->{role}, $c->{db});
		my $kind_ok =
		    $entry eq '@stormdb'   ? (defined $db && $db eq $c->{db})
		  : $entry eq 's3@stormdb' ? (($role // '') eq 's3' && ($rdb // '') eq 'stormdb')
		  :                          (($role // '') eq $c->{role} && !defined $rdb);
		push @bad_refusal, "$c->{app} ($c->{role} in $c->{db}): $err"
		  unless $app{$entry}
		  && $kind_ok
		  && $limit == $budget{$entry}
		  && $used == $limit
		  && $of == $limit;
	}
	elsif ($err =~ /FATAL:\s+terminating connection due to administrator command/)
	{
		$what = 'terminated';
	}
	elsif ($crash_hit{$pid})
	{
		$what = 'crash';
	}
	else
	{
		$what = 'other';
		push @bad, sprintf("%s (%s in %s): exit %s signal %s: %s",
			$c->{app}, $c->{role}, $c->{db}, $c->{status} // '?', $c->{sig} // '?',
			$err);
	}
	$outcome{$what}++;
}
note 'outcomes: ' . join(', ', map { "$_ $outcome{$_}" } sort keys %outcome);
cmp_ok(scalar(keys %client), '>=', 500, 'at least 500 login attempts');
is(scalar(@bad), 0,
	'every client was admitted, refused, or killed or terminated by the test')
  or diag join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]);
is(scalar(@bad_refusal), 0,
	'every refusal names an entry that applies, full at exactly its limit')
  or diag join("\n", @bad_refusal[ 0 .. ($#bad_refusal < 9 ? $#bad_refusal : 9) ]);
cmp_ok($outcome{completed} // 0, '>', 0, 'some clients were admitted and finished');
cmp_ok($client_refusals, '>', 0, 'some clients were refused');
cmp_ok(scalar(keys %sigkilled), '>', 0, 'some admitted clients were SIGKILLed');
cmp_ok($n_terminated, '>', 0, 'some backends were terminated');

# ---------------------------------------------------------------------------
# The server log and role_guard's counters
# ---------------------------------------------------------------------------
my $log = slurp_file($node->logfile);
my $split = $crash_pos;
if (defined $crash_pos)
{
	my $after = substr($log, $crash_pos);
	my $at = index($after, 'all server processes terminated; reinitializing');
	$split = $crash_pos + ($at >= 0 ? $at : 0);
}
else
{
	$split = length $log;
}
my $log_re =
  qr/FATAL:\s+53300: too many connections for [^\n]*\n[^\n]*DETAIL:\s+role_guard budget "([^"]+)=\d+" is full/;
my $log_refusals = 0;
my %log_entry;
while ($log =~ /$log_re/g)
{
	$log_entry{$1}++;
	$log_refusals++;
}
is($log_refusals, $client_refusals,
	'the server log has exactly the refusals the clients saw');

my $post = substr($log, $split);
my (%post_entry, $post_total);
$post_total = 0;
while ($post =~ /$log_re/g)
{
	$post_entry{$1}++;
	$post_total++;
}
note "refusals after the crash-restart: $post_total";
cmp_ok($post_total, '>', 0, 'logins were refused after the crash-restart too');
is( $node->safe_psql(
		'postgres',
		"SELECT coalesce(sum(rejected), 0) FROM role_guard_usage WHERE rolname IN ($rolelist)"),
	$post_total,
	'role_guard_usage.rejected adds up to the refusals logged since the crash-restart');
my %rg_entry = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres', 'SELECT entry, rejected FROM role_guard_budgets');
is_deeply(
	{ map { $_ => $rg_entry{$_} // 0 } keys %budget },
	{ map { $_ => $post_entry{$_} // 0 } keys %budget },
	'role_guard_budgets.rejected per entry = refusals naming it since the crash-restart');

# Peaks since the crash-restart are within the budgets.
my %peak = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres',
	"SELECT rolname, peak FROM role_guard_usage WHERE rolname IN ($rolelist)");
my @over_peak = grep {
	($peak{$_} // 0) > (exists $budget{$_} ? $budget{$_} : $budget{'*'})
} @roles;
is(scalar @over_peak, 0, 'no role peaked above its budget')
  or diag join(', ', map { "$_ peak $peak{$_}" } @over_peak);

# ---------------------------------------------------------------------------
# The samples
# ---------------------------------------------------------------------------
my (@samples, $gaps);
$gaps = 0;
foreach my $line (split /\n/, slurp_file($samples_file))
{
	if ($line =~ /^GAP /) { $gaps++; next; }
	my @f = split / /, $line;
	next unless @f >= 2 && $f[0] eq 'S';
	my %s = (t => $f[1], B => {}, U => {}, P => []);
	foreach my $f (@f[ 2 .. $#f ])
	{
		if    ($f =~ /^B(.+)=(\d+)$/) { $s{B}{$1} = $2; }
		elsif ($f =~ /^U(.+)=(\d+)$/) { $s{U}{$1} = $2; }
		elsif ($f =~ /^P(\d+),([\d.]+),([^,]+),(.*)$/)
		{
			push @{ $s{P} }, { key => "$1/$2", start => $2, role => $3, db => $4 };
		}
	}
	push @samples, \%s;
}
note sprintf("%d samples, %d gaps, over %.1fs", scalar @samples, $gaps,
	@samples ? $samples[-1]{t} - $samples[0]{t} : 0);
cmp_ok(scalar @samples, '>=', 100, 'the sampler took at least 100 samples');
cmp_ok($gaps, '>=', 1, 'the sampler lost its session in the crash and came back')
  if $crash_ok;

# The groups a session counts in, and their budgets.
sub groups_of
{
	my ($role, $db) = @_;
	my @g = exists $budget{$role} ? ($role) : ("*:$role");
	push @g, '+pool' if $in_pool{$role};
	if ($db eq 'stormdb')
	{
		push @g, '@stormdb';
		push @g, 's3@stormdb' if $role eq 's3';
	}
	return @g;
}

sub limit_of
{
	my ($g) = @_;
	return $g =~ /^\*:/ ? $budget{'*'} : $budget{$g};
}

my (%last_seen, %first_seen);
foreach my $s (@samples)
{
	foreach my $p (@{ $s->{P} })
	{
		$last_seen{ $p->{key} } = $s->{t}
		  if !defined $last_seen{ $p->{key} } || $last_seen{ $p->{key} } < $s->{t};
		$first_seen{ $p->{key} } = $s->{t}
		  if !defined $first_seen{ $p->{key} } || $first_seen{ $p->{key} } > $s->{t};
	}
}

my (@rg_over, @psa_over, @uncounted, %raw_over, %rg_max);
foreach my $s (@samples)
{
	# role_guard's counts
	my %rg = %{ $s->{B} };
	$rg{"*:$_"} = $s->{U}{$_} // 0 for @star_roles;
	$rg{$_} //= $s->{U}{$_} // 0 for qw(s1 s2);
	$rg{$_} //= 0 for qw(+pool @stormdb s3@stormdb);
	foreach my $g (keys %rg)
	{
		next if $g eq '*';
		my $lim = limit_of($g);
		next unless defined $lim;
		my $k = $g =~ /^\*:/ ? '*' : $g;
		$rg_max{$k} = $rg{$g} if ($rg_max{$k} // -1) < $rg{$g};
		push @rg_over, sprintf('%.3f: role_guard counts %s = %d > %d', $s->{t}, $g, $rg{$g}, $lim)
		  if $rg{$g} > $lim;
	}
	# pg_stat_activity: raw and stable counts
	my (%raw, %stable, %settled);
	foreach my $p (@{ $s->{P} })
	{
		my $st = $last_seen{ $p->{key} } >= $s->{t} + $STABLE;
		my $old = $first_seen{ $p->{key} } < $s->{t};
		foreach my $g (groups_of($p->{role}, $p->{db}))
		{
			$raw{$g}++;
			$stable{$g}++ if $st;
			$settled{$g}++ if $st && $old;
		}
	}
	foreach my $g (keys %settled)
	{
		push @uncounted,
		  sprintf('%.3f: pg_stat_activity shows %d sessions of %s that are neither starting nor ending; role_guard counts %d',
			$s->{t}, $settled{$g}, $g, $rg{$g} // 0)
		  if $settled{$g} > ($rg{$g} // 0);
	}
	foreach my $g (keys %raw)
	{
		my $lim = limit_of($g);
		my $k = $g =~ /^\*:/ ? '*' : $g;
		$raw_over{$k}++ if $raw{$g} > $lim;
		push @psa_over,
		  sprintf('%.3f: pg_stat_activity shows %s = %d (%d not in teardown) > %d; role_guard: %s',
			$s->{t}, $g, $raw{$g}, $stable{$g}, $lim, $rg{$g} // '?')
		  if ($stable{$g} // 0) > $lim;
	}
}
is(scalar @rg_over, 0, "role_guard's counts never exceeded a budget in any sample")
  or diag join("\n", @rg_over[ 0 .. ($#rg_over < 9 ? $#rg_over : 9) ]);
is(scalar @psa_over, 0,
	"pg_stat_activity never showed more sessions than a budget allows (sessions in teardown aside)"
) or diag join("\n", @psa_over[ 0 .. ($#psa_over < 9 ? $#psa_over : 9) ]);
is(scalar @uncounted, 0,
	"role_guard counted every session that pg_stat_activity shows neither starting nor ending")
  or diag join("\n", @uncounted[ 0 .. ($#uncounted < 9 ? $#uncounted : 9) ]);
note 'samples where raw pg_stat_activity counts exceeded a budget (sessions in teardown): '
  . (join(', ', map { "$_ $raw_over{$_}" } sort keys %raw_over) || 'none');
note 'highest role_guard counts seen: '
  . join(', ', map { "$_ $rg_max{$_}" } sort keys %rg_max);
note 'refusals naming each entry: '
  . join(', ', map { "$_ " . ($log_entry{$_} // 0) } sort keys %budget);
foreach my $e (sort keys %budget)
{
	ok(($rg_max{$e} // 0) == $budget{$e} || ($log_entry{$e} // 0) > 0,
		"the storm filled budget $e=$budget{$e} (seen full in a sample, or named in a refusal)");
}

# ---------------------------------------------------------------------------
# Settled: role_guard's counts equal pg_stat_activity's
# ---------------------------------------------------------------------------
my $settle_sql = q{
SELECT 'U|' || rolname || '|' || connections FROM role_guard_usage
UNION ALL
SELECT 'B|' || entry || '|' || connections FROM role_guard_budgets
UNION ALL
SELECT 'P|' || usename || '|' || coalesce(datname, '')
  FROM pg_stat_activity WHERE backend_type IN ('client backend', 'walsender')};
my %own = map { $_ => 1 } ('s1', 's2', $su);

sub canon
{
	my ($h) = @_;
	return join(',', map { "$_=$h->{$_}" } sort keys %$h);
}

my ($got, $want);
$deadline = time + 30;
while (1)
{
	my (%u, %b, @p);
	foreach my $row (split /\n/, $node->safe_psql('postgres', $settle_sql))
	{
		my ($k, $a, $n) = split /\|/, $row, 3;
		if    ($k eq 'U') { $u{$a} = $n; }
		elsif ($k eq 'B') { $b{$a} = $n; }
		elsif ($k eq 'P') { push @p, [ $a, $n ]; }
	}
	my (%pu, %pb);
	foreach my $p (@p)
	{
		my ($role, $db) = @$p;
		$pu{$role}++;
		$pb{$role}++ if $own{$role};
		$pb{'*'}++ unless $own{$role};
		$pb{'+pool'}++ if $in_pool{$role};
		$pb{'@stormdb'}++ if $db eq 'stormdb';
		$pb{'s3@stormdb'}++ if $db eq 'stormdb' && $role eq 's3';
	}
	$got  = { usage => \%u, budgets => \%b };
	$want = {
		usage   => { map { $_ => ($pu{$_} // 0) } (keys %u, keys %pu) },
		budgets => { map { $_ => ($pb{$_} // 0) } keys %b }
	};
	last
	  if (canon($got->{usage}) eq canon($want->{usage})
		&& canon($got->{budgets}) eq canon($want->{budgets}))
	  || time > $deadline;
	usleep(200_000);
}
is_deeply($got->{usage}, $want->{usage},
	'settled: role_guard_usage.connections = pg_stat_activity for every role');
is_deeply($got->{budgets}, $want->{budgets},
	'settled: role_guard_budgets.connections = pg_stat_activity for every entry');
is(sum0(map { $got->{usage}{$_} // 0 } @roles),
	0, 'settled: no storm role holds a place');

$node->stop;
done_testing();
