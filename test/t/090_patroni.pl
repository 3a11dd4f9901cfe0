
# Copyright: see README.md.
#
# role_guard on a Patroni cluster: one etcd member and three Patroni-managed
# PostgreSQL nodes on this machine (127.0.0.1 only, free ports, data under
# the test's scratch directory), shared_preload_libraries = 'role_guard' and
# the whole role_guard policy in the DCS (bootstrap.dcs.postgresql.parameters,
# later `patronictl edit-config`), never in a hand-edited postgresql.conf.
#
#   (1) the cluster forms: a leader and two streaming replicas, each with
#       the DCS policy in force (time to form it is printed);
#   (2) budgets hold per node: app=2 on the leader and on each replica at
#       the same time (6 sessions in all), the third login of each node is
#       refused; a superuser from an "application host" (127.0.0.2, listed
#       in role_guard.superuser_deny_hosts) is denied on every node;
#   (3) one `patronictl edit-config` changes budgets, reservations, idle
#       limits and eviction: every node enforces the new budget and reaps
#       by the new idle limit without a restart, within a few seconds
#       (printed per node); then the reservation holds on every node (and
#       one for Patroni's superuser keeps Patroni's own login possible), and
#       an eviction happens on every node;
#   (4) a minute (from the edit-config of (3) on) under
#       role_guard.idle_timeouts = '*=3s' and role_guard.evict_idle:
#       Patroni's own connection (its superuser, application_name Patroni)
#       is idle between its HA loops (loop_wait 5 s) and is reaped like any
#       session -- role_guard does not recognise Patroni -- and that is
#       harmless for HA: Patroni reconnects at its next query, its log has
#       no error, no leader change, no timeline change, the walsenders and
#       WAL receivers are the same processes all along and the replicas
#       keep replaying what the leader writes.  Not for load balancers: a
#       REST health check right after a reap answers 503 once (printed);
#   (5) a switchover with app's budget full on the candidate (two busy
#       sessions): the candidate refuses every app login before, during and
#       after its promotion, from the first login on; the old leader comes
#       back as a streaming replica, its replication connection admitted
#       while '*=0' refuses every role without an entry of its own;
#       Patroni's superuser has 'name=0' in idle_timeouts from here on, and
#       is not reaped again (the health checks answer 200 at the end);
#   (6) a hard failover: the leader's walsenders are stopped, a row is
#       written that no replica receives, then the leader's Patroni,
#       postmaster and walsenders are SIGKILLed.  A replica is promoted; its
#       role_guard_usage shows exactly the sessions it holds (per role,
#       walsenders included, the same as pg_stat_activity; its own app
#       session and none of the other nodes'), app's budget holds there;
#       the killed node's Patroni, started again, rejoins it with pg_rewind
#       (the diverged row is gone) and its walsender is admitted;
#   (7) all along, superuser_deny_hosts never stopped Patroni (its superuser
#       over TCP to localhost), pg_rewind (superuser over TCP) or
#       replication: no node counted a superuser denial but the probes'.
#
# A second cluster of three nodes without role_guard (scope "plain", formed
# during the minute of (4)) has its leader killed the same way at the same
# moment as (6): the failover times of both are printed side by side.
#
# Patroni drives PostgreSQL through the server's own pg_ctl, initdb,
# pg_controldata, pg_basebackup and pg_rewind: where the installation under
# test lacks one of the same major (17 and 18 in test/pgversions.sh's
# assembled trees) the test skips and says why.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use File::Basename qw(basename dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT raw_close raw_result wait_log ts_epoch c_new c_wait
  c_update c_write c_close c_text c_hold_ok);

# ---------------------------------------------------------------------------
# What the test needs, or a skip that says what is missing.
# ---------------------------------------------------------------------------
sub in_path
{
	my ($prog) = @_;
	foreach my $d (split /:/, $ENV{PATH} // '')
	{
		return "$d/$prog" if -x "$d/$prog";
	}
	return undef;
}

my %BIN;
foreach my $p (qw(etcd patroni patronictl))
{
	$BIN{$p} = in_path($p)
	  or plan skip_all =>
	  "no $p on PATH (test/lib.sh installs Debian's patroni, python3-etcd and etcd-server)";
}
plan skip_all => 'python3 cannot import etcd (python3-etcd) for Patroni'
  unless system('python3', '-c', 'import etcd, patroni.dcs.etcd3') == 0;

my $BINDIR = `pg_config --bindir`;
chomp $BINDIR;
my ($MAJOR) = `pg_config --version` =~ /PostgreSQL (\d+)/;
plan skip_all => 'pg_config --bindir / --version gave nothing'
  unless $BINDIR && $MAJOR;
foreach my $tool (qw(pg_controldata pg_basebackup pg_rewind))
{
	my $v = `"$BINDIR/$tool" --version 2>&1`;
	my ($m) = $v =~ /\(PostgreSQL\) (\d+)/;
	plan skip_all =>
	  "Patroni cannot drive PostgreSQL $MAJOR here: it needs the server's own "
	  . "pg_controldata, pg_basebackup and pg_rewind, and $BINDIR/$tool is not "
	  . "PostgreSQL ${MAJOR}'s (test/pgversions.sh: the assembled tree has none of them)"
	  unless defined $m && $m == $MAJOR;
}

# ---------------------------------------------------------------------------
# Layout: ports, directories, the nodes.
# ---------------------------------------------------------------------------
my $SU = getpwuid($<);    # initdb's bootstrap superuser = Patroni's superuser
my $SUE = entry_text($SU);
my $BASE = PostgreSQL::Test::Utils::tempdir('patroni');
my $LOGDIR = $PostgreSQL::Test::Utils::log_path;
my $TESTNAME = basename($0, '.pl');
my $ETCD_CLIENT = PostgreSQL::Test::Cluster::get_free_port();
my $ETCD_PEER   = PostgreSQL::Test::Cluster::get_free_port();

my $TTL       = 15;
my $LOOP_WAIT = 5;    # > 3 s: Patroni's connection idles past '*=3s'
my $RETRY     = 5;

my $DENY = '127.0.0.2/32, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16';

# role_guard's policy at bootstrap (cluster "rg" only)
my %RG_PARAMS = (
	shared_preload_libraries        => 'role_guard',
	'role_guard.budgets'            => "app=2, replicator=5, $SUE=10, *=10",
	'role_guard.reap_interval'      => '500ms',
	'role_guard.superuser_deny_hosts' => $DENY,
);

# Both clusters: a small max_connections (the reservation check fills it),
# the log as the helpers read it.
my %PARAMS = (
	max_connections       => 30,
	max_wal_senders       => 10,
	max_replication_slots => 10,
	log_line_prefix       => '%m [%p] %q%a ',
	log_error_verbosity   => 'verbose',
	log_min_messages      => 'info',
	log_connections       => 'on',
	log_disconnections    => 'on',
	fsync                 => 'off',    # a test: no machine crash to survive
);

# scope => { name, nodes => [ { node, rest, conf, dir, patroni } ] }
my %CL;

sub make_cluster
{
	my ($scope, $prefix, $rg) = @_;
	my $c = { scope => $scope, rg => $rg, members => [] };
	foreach my $i (1 .. 3)
	{
		my $name = "$prefix$i";
		my $node = PostgreSQL::Test::Cluster->new($name,
			port => PostgreSQL::Test::Cluster::get_free_port());
		my $m = {
			name => $name,
			node => $node,
			rest => PostgreSQL::Test::Cluster::get_free_port(),
			dir  => "$BASE/$name",
			plog => "$LOGDIR/${TESTNAME}_patroni_$name.log",
		};
		mkdir $m->{dir} or die "mkdir $m->{dir}: $!";
		$m->{conf} = "$m->{dir}/patroni.yml";
		write_patroni_conf($c, $m);
		push @{ $c->{members} }, $m;
	}
	$CL{$scope} = $c;
	return $c;
}

# Patroni's configuration (JSON is YAML).
sub write_patroni_conf
{
	my ($c, $m) = @_;
	my $port = $m->{node}->port;
	my %dcs_params = (%PARAMS, $c->{rg} ? %RG_PARAMS : ());
	my $conf = {
		scope     => $c->{scope},
		name      => $m->{name},
		namespace => '/rg_test/',
		restapi   => {
			listen          => "127.0.0.1:$m->{rest}",
			connect_address => "127.0.0.1:$m->{rest}",
		},
		etcd3     => { hosts => ["127.0.0.1:$ETCD_CLIENT"] },
		bootstrap => {
			dcs => {
				ttl                     => $TTL,
				loop_wait               => $LOOP_WAIT,
				retry_timeout           => $RETRY,
				maximum_lag_on_failover => 16 * 1024 * 1024,
				postgresql              => {
					use_pg_rewind => JSON::PP::true,
					use_slots     => JSON::PP::true,
					parameters    => \%dcs_params,
				},
			},
			# 1MB WAL segments: less to write and to copy, same behaviour
			initdb => [
				{ encoding => 'UTF8' }, { locale => 'C' }, { 'wal-segsize' => '1' },
				'no-sync'
			],
		},
		postgresql => {
			listen          => "127.0.0.1:$port",
			connect_address => "127.0.0.1:$port",
			data_dir        => "$m->{dir}/data",
			bin_dir         => $BINDIR,
			pgpass          => "$m->{dir}/pgpass",
			basebackup      => [ 'no-sync', { checkpoint => 'fast' } ],
			authentication  => {
				superuser   => { username => $SU,          password => 'su-pw' },
				replication => { username => 'replicator', password => 'repl-pw' },
			},
			parameters => {
				unix_socket_directories => $m->{node}->host,
				logging_collector       => 'on',
				log_directory           => dirname($m->{node}->logfile),
				log_filename            => basename($m->{node}->logfile),
			},
			pg_hba => [
				'local all all trust',
				'host all all 127.0.0.0/8 trust',
				'host replication all 127.0.0.0/8 trust',
			],
		},
	};
	open(my $fh, '>', $m->{conf}) or die "$m->{conf}: $!";
	print $fh JSON::PP->new->canonical->pretty->encode($conf);
	close $fh;
	return;
}

# ---------------------------------------------------------------------------
# Processes: every one started here is stopped at the end, whatever happens.
# ---------------------------------------------------------------------------
my %PROC;    # label => IPC::Run handle
my @ORPHANS; # pids of killed postmasters' children, in case they linger

# Patroni and patronictl get an environment without the test's PG* variables
# (PGAPPNAME would replace Patroni's application_name).
sub clean_env
{
	my %e = %ENV;
	delete $e{$_} foreach grep { /^PG/ } keys %e;
	return %e;
}

# When this test is killed with SIGKILL (no END block then), its etcd and
# Patronis get SIGKILL too (util-linux setpriv --pdeathsig, where there is
# one); test/run then stops the postmasters it finds under the scratch
# directory.
my @PDEATH =
  system('setpriv --pdeathsig KILL -- true >/dev/null 2>&1') == 0
  ? ('setpriv', '--pdeathsig', 'KILL', '--')
  : ();

sub start_proc
{
	my ($label, $cmd, $log) = @_;
	local %ENV = clean_env();
	$PROC{$label} =
	  IPC::Run::start([ @PDEATH, @$cmd ], '<', '/dev/null', '>>', $log, '2>&1');
	return $PROC{$label};
}

sub proc_pid
{
	my ($label) = @_;
	my $h = $PROC{$label} or return undef;
	return $h->{KIDS}[0]{PID};
}

sub postmaster_pid
{
	my ($m) = @_;
	my $f = "$m->{dir}/data/postmaster.pid";
	return undef unless -e $f;
	open(my $fh, '<', $f) or return undef;
	my $pid = <$fh>;
	close $fh;
	chomp $pid if defined $pid;
	return ($pid && $pid =~ /^\d+$/ && kill(0, $pid)) ? $pid : undef;
}

sub wait_gone
{
	my ($secs, @pids) = @_;
	my $deadline = time + $secs;
	while (time < $deadline)
	{
		@pids = grep { kill(0, $_) } @pids;
		return 1 unless @pids;
		usleep(100_000);
	}
	return 0;
}

my $cleaned = 0;

# Wait (at most $secs) until our children @pids have exited, and reap
# them; true when all have.
sub reap_children
{
	my ($secs, @pids) = @_;
	my %left = map { $_ => 1 } @pids;
	my $deadline = time + $secs;
	while (%left)
	{
		foreach my $pid (keys %left)
		{
			my $r = waitpid($pid, POSIX::WNOHANG());
			delete $left{$pid} if $r == $pid || $r == -1;
		}
		last if !%left || time > $deadline;
		usleep(100_000);
	}
	return !%left;
}

# Stop a child process: SIGTERM, then SIGKILL after $grace seconds.
sub stop_children
{
	my ($grace, @labels) = @_;
	my @pids = grep { defined } map { proc_pid($_) } @labels;
	kill 'TERM', @pids if $grace;
	unless ($grace && reap_children($grace, @pids))
	{
		kill 'KILL', @pids;
		reap_children(10, @pids);
	}
	delete $PROC{$_} foreach @labels;
	return;
}

# The end, whatever happened: every Patroni, then every postmaster, then
# etcd.  The clusters are thrown away, so nothing is shut down gracefully
# (a Patroni on SIGTERM would checkpoint and stop its PostgreSQL, six at
# once on two cores, tens of seconds): Patroni gets SIGKILL first, so that
# none starts its PostgreSQL again, then each postmaster an immediate
# shutdown (SIGQUIT), SIGKILL for any process still there after that.
sub cleanup
{
	return if $cleaned++;
	stop_children(0, grep { /^patroni_/ } keys %PROC);
	my @pms = grep { defined } map { postmaster_pid($_) }
	  map { @{ $_->{members} } } values %CL;
	kill 'QUIT', @pms;
	wait_gone(20, @pms) or kill 'KILL', grep { kill(0, $_) } @pms;
	kill 'KILL', grep { kill(0, $_) } @ORPHANS;
	stop_children(10, 'etcd') if $PROC{etcd};
	return;
}

END
{
	local $?;
	cleanup();
}
$SIG{INT} = $SIG{TERM} = $SIG{HUP} = sub { cleanup(); exit 1; };

# ---------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------
my $HTTP = HTTP::Tiny->new(timeout => 5);

# Patroni's REST answer for /patroni (undef when it does not answer).
sub rest_status
{
	my ($m) = @_;
	my $r = $HTTP->get("http://127.0.0.1:$m->{rest}/patroni");
	return undef unless $r->{content} && $r->{content} =~ /^\{/;
	return eval { decode_json($r->{content}) };
}

# One query over the node's socket as the bootstrap superuser (exempt from
# budgets there); undef when the node does not answer.
sub q1
{
	my ($node, $sql) = @_;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run(
			[
				'psql', '-XAtq', '-w', '-v', 'ON_ERROR_STOP=1', '-h', $node->host,
				'-p', $node->port, '-d', 'postgres', '-c', $sql
			],
			'<', '/dev/null', '>', \$out, '2>', \$err,
			IPC::Run::timeout(20));
	};
	return undef unless $ok;
	chomp $out;
	return $out;
}

sub q_ok
{
	my ($node, $sql) = @_;
	my $r = q1($node, $sql);
	die "query failed on " . $node->name . ": $sql" unless defined $r;
	return $r;
}

# Poll $cond (a code ref) until it returns true; the time it took, or undef
# after $secs.
sub wait_for
{
	my ($secs, $cond, $what) = @_;
	my $t0 = time;
	while (1)
	{
		return time - $t0 if $cond->();
		last if time - $t0 > $secs;
		usleep(200_000);
	}
	diag "gave up after ${secs}s waiting for $what";
	return undef;
}

sub patronictl
{
	my ($c, @args) = @_;
	my ($out, $err) = ('', '');
	local %ENV = clean_env();
	my $ok = eval {
		IPC::Run::run([ $BIN{patronictl}, '-c', $c->{members}[0]{conf}, @args ],
			'<', '/dev/null', '>', \$out, '2>', \$err, IPC::Run::timeout(90));
	};
	return ($ok ? 0 : 1, $out, $err);
}

# patronictl edit-config of postgresql.parameters, started in the
# background (the caller may watch the nodes meanwhile): each value in
# single quotes, YAML's, so that '*=3s' is no alias.
sub edit_config_start
{
	my ($c, %set) = @_;
	my @args;
	foreach my $k (sort keys %set)
	{
		(my $v = $set{$k}) =~ s/'/''/g;
		push @args, '--pg', "$k='$v'";
	}
	my $out = '';
	local %ENV = clean_env();
	my $h = IPC::Run::start(
		[
			$BIN{patronictl}, '-c', $c->{members}[0]{conf}, 'edit-config',
			'--force', '--quiet', @args
		],
		'<', '/dev/null', '>', \$out, '2>&1', IPC::Run::timeout(90));
	return [ $h, \$out ];
}

sub edit_config_done_ok
{
	my ($job, $name) = @_;
	my ($h, $out) = @$job;
	my $ok = eval { $h->finish };
	ok($ok, "$name: patronictl edit-config") or diag $$out . ($@ // '');
	return;
}

sub edit_config_ok
{
	my ($c, $name, %set) = @_;
	edit_config_done_ok(edit_config_start($c, %set), $name);
	return;
}

# Each node's role: 'leader' (not in recovery), 'streaming' (a replica
# whose WAL receiver streams), 'replica' (in recovery, not streaming) or
# 'down'.
sub role_of
{
	my ($m) = @_;
	my $r = q1($m->{node},
		"SELECT CASE WHEN NOT pg_is_in_recovery() THEN 'leader' "
		  . "WHEN (SELECT status FROM pg_stat_wal_receiver) = 'streaming' "
		  . "THEN 'streaming' ELSE 'replica' END");
	return $r // 'down';
}

# (leader, replicas) once the cluster is one leader that Patroni also calls
# leader, with every other live member streaming from it; () otherwise.
sub formed
{
	my ($c, $nrep) = @_;
	my @live = grep { !$_->{dead} } @{ $c->{members} };
	my (@leaders, @reps);
	foreach my $m (@live)
	{
		my $r = role_of($m);
		push @leaders, $m if $r eq 'leader';
		push @reps,    $m if $r eq 'streaming';
	}
	return () unless @leaders == 1 && @reps == ($nrep // @live - 1);
	my $st = rest_status($leaders[0]) or return ();
	return () unless ($st->{role} // '') =~ /^(master|primary)$/;
	my $n = q1($leaders[0]{node},
		"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'");
	return () unless defined $n && $n == @reps;
	return ($leaders[0], \@reps);
}

sub start_patroni
{
	my ($m) = @_;
	start_proc("patroni_$m->{name}", [ $BIN{patroni}, $m->{conf} ], $m->{plog});
	return;
}

sub patroni_log_pos { return -s $_[0]{plog} // 0; }

sub patroni_log_since
{
	my ($m, $pos) = @_;
	return slurp_file($m->{plog}, $pos);
}

# A login of $user over TCP that a full budget entry must refuse: the
# client gets the message and the DETAIL, the server log has FATAL 53300
# with the DETAIL (waited for: the logging collector writes it a moment
# later).
sub budget_refused_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $user, $entry, $used, $limit, $name) = @_;
	my $primary = qq{too many connections for role "$user"};
	my $detail = qq{role_guard budget "$entry" is full ($used of $limit sessions).};
	my $pos = log_pos($node);
	my ($ret, $out, $err) = try_login($node, tcp_connstr($node, $user));
	isnt($ret, 0, "$name: login refused");
	like($err, qr/FATAL:\s+\Q$primary\E\n\s*DETAIL:\s+\Q$detail\E/,
		"$name: the client gets the message and the DETAIL");
	ok( defined wait_log(
			$node, qr/FATAL:\s+53300: \Q$primary\E\n[^\n]*DETAIL:\s+\Q$detail\E/,
			$pos),
		"$name: the server log has FATAL 53300 and the DETAIL");
	return;
}

# A session of $user kept busy (active, never idle: neither reaped nor
# evicted) for $secs seconds.
sub busy_hold_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $user, $secs, $name) = @_;
	my $c = c_hold_ok($node, $user, $name);
	my $q = "SELECT pg_sleep($secs)\0";
	c_write($c, pack('a N', 'Q', 4 + length($q)) . $q);
	return $c;
}

sub end_busy
{
	my ($node, @cs) = @_;
	my @pids = grep { defined } map { $_->{pid} } @cs;
	q1($node, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ('
		  . join(',', @pids) . ')')
	  if @pids;
	c_close($_) foreach @cs;
	return;
}

# The sessions role_guard counts, per role, and those pg_stat_activity
# lists (client backends and walsenders), in one statement.
my $USAGE_VS_ACTIVITY = q{
SELECT coalesce((SELECT string_agg(rolname || '=' || connections, ',' ORDER BY rolname)
                 FROM role_guard_usage WHERE connections > 0), '')
    || ' | ' ||
       coalesce((SELECT string_agg(usename || '=' || n, ',' ORDER BY usename)
                 FROM (SELECT usename, count(*) AS n FROM pg_stat_activity
                       WHERE backend_type IN ('client backend', 'walsender')
                       GROUP BY usename) s), '')};

sub usage_matches_activity
{
	my ($node) = @_;
	my $r = q1($node, $USAGE_VS_ACTIVITY) // '';
	my ($a, $b) = split / \| /, $r, -1;
	return (defined $b && $a eq $b, $r);
}

my %FIG;    # measured figures, printed at the end

my $T0 = time;
sub phase { note sprintf('---- %5.1f s: %s', time - $T0, $_[0]); return; }

# ===========================================================================
# etcd
# ===========================================================================
phase('etcd');
start_proc(
	'etcd',
	[
		$BIN{etcd},
		'--name'                        => 'rg-etcd',
		'--data-dir'                    => "$BASE/etcd",
		'--listen-client-urls'          => "http://127.0.0.1:$ETCD_CLIENT",
		'--advertise-client-urls'       => "http://127.0.0.1:$ETCD_CLIENT",
		'--listen-peer-urls'            => "http://127.0.0.1:$ETCD_PEER",
		'--initial-advertise-peer-urls' => "http://127.0.0.1:$ETCD_PEER",
		'--initial-cluster'             => "rg-etcd=http://127.0.0.1:$ETCD_PEER",
		'--initial-cluster-state'       => 'new',
		'--initial-cluster-token'       => "rg-test-$$",
	],
	"$LOGDIR/${TESTNAME}_etcd.log");
ok( defined wait_for(
		30,
		sub {
			my $r = $HTTP->get("http://127.0.0.1:$ETCD_CLIENT/health");
			$r->{success} && $r->{content} =~ /"health":\s*"true"/;
		},
		'etcd healthy'),
	'etcd is up');

# ===========================================================================
# (1) the cluster forms
# ===========================================================================
phase('(1) the cluster forms');
my $RG    = make_cluster('rg',    'n', 1);
my $PLAIN = make_cluster('plain', 'p', 0);
my @N = @{ $RG->{members} };

my $t_start = time;
start_patroni($_) foreach @N;
my ($leader, $reps);
my $t_form = wait_for(90, sub { ($leader, $reps) = formed($RG, 2); $leader },
	'the rg cluster to form');
ok(defined $t_form, 'a leader and two streaming replicas')
  or BAIL_OUT('the Patroni cluster did not form');
$FIG{form} = $t_form;
note sprintf('cluster formed %.1f s after the three Patronis started', $t_form);

my ($rc, $out, $err) = patronictl($RG, 'show-config');
like($out, qr/role_guard\.budgets:\s*['"]?app=2/,
	'the policy is in the DCS (patronictl show-config)');
foreach my $m (@N)
{
	is( q_ok($m->{node},
			"SELECT current_setting('shared_preload_libraries') || ' / ' || current_setting('role_guard.budgets')"
			  . " || ' / ' || current_setting('role_guard.superuser_deny_hosts')"),
		"role_guard / $RG_PARAMS{'role_guard.budgets'} / $DENY",
		"$m->{name}: role_guard loaded, the DCS policy in force");
}

q_ok(
	$leader->{node}, q{
CREATE EXTENSION role_guard;
CREATE ROLE app LOGIN;
CREATE ROLE idler LOGIN;
CREATE ROLE crit LOGIN;
CREATE ROLE other LOGIN;
CREATE ROLE dba SUPERUSER LOGIN;
CREATE TABLE soak(i int);
});
foreach my $m (@$reps)
{
	ok( poll_until(
			$m->{node},
			"SELECT count(*) FROM pg_roles WHERE rolname = 'other'", '1', 30),
		"$m->{name}: replica has replayed the roles");
}

# ===========================================================================
# (2) budgets per node; superuser denial from an application host
# ===========================================================================
phase('(2) budgets per node; superuser denial from an application host');
{
	my @held;
	foreach my $m (@N)
	{
		push @held, c_hold_ok($m->{node}, 'app', "$m->{name}: app session $_")
		  foreach 1 .. 2;
	}
	foreach my $m (@N)
	{
		budget_refused_ok($m->{node}, 'app', 'app=2', 2, 2,
			"$m->{name}: third app session");
		is(usage_of($m->{node}, 'app', 'connections')->{connections},
			2, "$m->{name}: role_guard_usage counts this node's 2 app sessions");
	}
	c_close($_) foreach @held;
	foreach my $m (@N)
	{
		my $r = raw_login($m->{node}, $SU, 'postgres', local => '127.0.0.2');
		is( ($r->{sqlstate} // '') . ' ' . ($r->{detail} // ''),
			'28000 ' . ($r->{detail} // ''),
			"$m->{name}: superuser from 127.0.0.2 (an application host) denied")
		  or diag raw_result($r);
		like($r->{detail} // '', qr/role_guard\.superuser_deny_hosts/,
			"$m->{name}: the DETAIL names role_guard.superuser_deny_hosts");
		ok(poll_until($m->{node},
				"SELECT connections FROM role_guard_usage WHERE rolname = 'app'", '0'),
			"$m->{name}: app's places given back");
	}
}

# ===========================================================================
# (3) patronictl edit-config reaches every node, no restart
# ===========================================================================
phase('(3) patronictl edit-config reaches every node, no restart');
# The minute of (4) starts here, with the edit-config that sets '*=3s' and
# eviction: what Patroni and replication are like now, to compare with at
# its end.
my %SOAK = (start => time);
$SOAK{t0}     = q_ok($leader->{node}, 'SELECT now()');
$SOAK{pl_pos} = { map { $_->{name} => patroni_log_pos($_) } @N };
$SOAK{tl} = q_ok($leader->{node}, 'SELECT timeline_id FROM pg_control_checkpoint()');
$SOAK{senders} = q_ok($leader->{node},
	"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_replication");
$SOAK{receiver} = {
	map { $_->{name} => q_ok($_->{node}, 'SELECT pid FROM pg_stat_wal_receiver') }
	  @$reps };
(undef, $SOAK{hist0}) = patronictl($RG, 'history', '-f', 'json');
# the plain cluster forms meanwhile
start_patroni($_) foreach @{ $PLAIN->{members} };
my %START;    # each node's postmaster start time: no restart may happen
$START{ $_->{name} } = q_ok($_->{node}, 'SELECT pg_postmaster_start_time()') foreach @N;
{
	my (%busy, %idle);
	foreach my $m (@N)
	{
		$busy{ $m->{name} } =
		  busy_hold_ok($m->{node}, 'app', 60, "$m->{name}: busy app session");
		$idle{ $m->{name} } = c_hold_ok($m->{node}, 'idler', "$m->{name}: idle session");
	}
	my $budgets = "app=1, replicator=5, $SUE=10, *=10";
	my $t0  = time;
	my $job = edit_config_start(
		$RG,
		'role_guard.budgets'       => $budgets,
		'role_guard.reservations'  => "crit=18, $SUE=3",
		'role_guard.idle_timeouts' => '*=3s',
		'role_guard.evict_idle'    => '*=500ms');
	my (%t_budget, %t_reap, %refusal, $t_edit);
	my $deadline = $t0 + 40;
	while (time < $deadline
		&& (keys(%t_budget) < @N || keys(%t_reap) < @N))
	{
		foreach my $m (@N)
		{
			my $n = $m->{name};
			if (!$t_budget{$n})
			{
				my $r = raw_login($m->{node}, 'app', 'postgres');
				if ($r->{sock}) { raw_close($r->{sock}); }
				elsif (($r->{sqlstate} // '') eq '53300')
				{
					$t_budget{$n} = time - $t0;
					$refusal{$n}  = $r->{detail} // '';
				}
			}
			if (!$t_reap{$n})
			{
				my $c = $idle{$n};
				c_update($c);
				my @e = grep { $_->[0] eq 'E' } @{ $c->{msgs} };
				$t_reap{$n} = time - $t0 if @e || $c->{eof};
			}
		}
		eval { $job->[0]->pump_nb };
		$t_edit //= time - $t0 unless $job->[0]->pumpable;
		usleep(100_000);
	}
	edit_config_done_ok($job, 'budgets, reservations, idle limits, eviction');
	$t_edit //= time - $t0;
	note sprintf('patronictl edit-config returned after %.1f s', $t_edit);
	$FIG{edit_ctl} = $t_edit;
	foreach my $m (@N)
	{
		my $n = $m->{name};
		ok(defined $t_budget{$n}, "$n: the new budget app=1 is enforced");
		is($refusal{$n}, 'role_guard budget "app=1" is full (1 of 1 sessions).',
			"$n: refused by the entry from the DCS");
		ok(defined $t_reap{$n}, "$n: the idle session is reaped by the new limit");
		# (patronictl itself, a Python program, takes seconds to start on a
		# loaded machine: the bound counts from its return)
		cmp_ok(($t_budget{$n} // 99) - $t_edit, '<', $LOOP_WAIT + 5,
			"$n: budget enforced within a few seconds of edit-config");
		$FIG{edit}{$n} = [ $t_budget{$n}, $t_reap{$n} ];
		note sprintf(
			'%s: edit-config enforced after %.1f s (budget), idle reap after %.1f s',
			$n, $t_budget{$n} // -1, $t_reap{$n} // -1);
		end_busy($m->{node}, $busy{$n});
		c_close($idle{$n});
	}
	foreach my $m (@N)
	{
		is(q_ok($m->{node}, 'SELECT pg_postmaster_start_time()'),
			$START{ $m->{name} }, "$m->{name}: no restart");
		is(q_ok($m->{node}, "SELECT count(*) FROM pg_settings WHERE pending_restart"),
			'0', "$m->{name}: nothing pending a restart");
	}
}

# The reservation on every node: 'other' logins are admitted until the
# free slots are down to the unused reserved places, then refused; crit and
# Patroni's superuser still get in.
foreach my $m (@N)
{
	my $node = $m->{node};
	is( q_ok($node,
			"SELECT string_agg(entry || '=' || reserved, ',' ORDER BY entry) FROM role_guard_reservations"
		),
		join(',', sort ("crit=18", "$SUE=3")),
		"$m->{name}: the reservations from the DCS");
	my (@others, $refused);
	foreach (1 .. 30)
	{
		my $c = c_new($node, 'other');
		c_wait($c);
		if ($c->{state} eq 'admitted') { push @others, $c; next; }
		$refused = $c;
		last;
	}
	ok($refused, "$m->{name}: an 'other' login is refused after "
		  . scalar(@others) . ' were admitted');
	like(c_text($refused // { state => 'none' }),
		qr/53300 remaining connection slots are reserved.*role_guard\.reservations/,
		"$m->{name}: refused for role_guard.reservations");
	my $crit = c_new($node, 'crit');
	is(c_wait($crit), 'admitted', "$m->{name}: crit gets in");
	# a superuser over TCP is no exception: without a reservation of its
	# own it is refused like any role, with one it gets in
	my $dba = raw_login($node, 'dba', 'postgres');
	is(($dba->{sqlstate} // '') . ' ' . ($dba->{message} // ''),
		'53300 remaining connection slots are reserved for roles with role_guard reservations',
		"$m->{name}: a superuser without a reservation is refused over TCP")
	  or diag raw_result($dba);
	raw_close($dba->{sock});
	my $su = raw_login($node, $SU, 'postgres');
	ok($su->{sock}, "$m->{name}: Patroni's superuser gets in over TCP (its reservation)")
	  or diag raw_result($su);
	raw_close($su->{sock});
	c_close($_) foreach @others, $crit, $refused // ();
}

# Eviction on every node: app=1 is full with an idle app session, a second
# app login ends it (idle >= 500ms) and gets in.
foreach my $m (@N)
{
	my $node = $m->{node};
	my $old  = c_hold_ok($node, 'app', "$m->{name}: app session to evict");
	ok(poll_until($node,
			"SELECT count(*) FROM pg_stat_activity WHERE pid = $old->{pid} AND state = 'idle' "
			  . "AND now() - state_change > interval '700ms'", '1'),
		"$m->{name}: it is idle");
	my $new = c_new($node, 'app');
	is(c_wait($new), 'admitted', "$m->{name}: a new app login gets in");
	wait_for(10, sub { c_update($old); $old->{eof} }, 'the evicted session to end');
	my ($e) = grep { $_->[0] eq 'E' } @{ $old->{msgs} };
	like($e ? $e->[1] : '', qr/C57P05.*make room/s,
		"$m->{name}: the idle session was evicted (57P05)");
	c_close($_) foreach $old, $new;
}

# ===========================================================================
# (4) a minute with an idle limit for every role, eviction on (from the
# edit-config of (3) on)
# ===========================================================================
phase('(4) the rest of a minute under idle limits');
{
	my ($soak_t0, $tl, $senders, $hist0) = @SOAK{qw(t0 tl senders hist0)};
	my %pl_pos   = %{ $SOAK{pl_pos} };
	my %receiver = %{ $SOAK{receiver} };
	my ($rows, $bad) = (0, '');
	my $t_end = $SOAK{start} + 60;
	while (time < $t_end && !$bad)
	{
		q_ok($leader->{node}, 'INSERT INTO soak VALUES (1)');
		$rows++;
		my $s = q1($leader->{node},
			"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_replication WHERE state = 'streaming'")
		  // 'none';
		$bad = "leader's walsenders $s, were $senders" if $s ne $senders;
		foreach my $m (@$reps)
		{
			my $r = q1($m->{node},
				"SELECT pid || ' ' || status FROM pg_stat_wal_receiver") // 'none';
			$bad = "$m->{name}: WAL receiver '$r', was $receiver{$m->{name}}"
			  if $r ne "$receiver{$m->{name}} streaming";
		}
		usleep(1_500_000);
	}
	is($bad, '', 'a minute: walsenders and WAL receivers never ended');
	note sprintf('%.1f s under the idle limits', time - $SOAK{start});
	foreach my $m (@$reps)
	{
		ok(poll_until($m->{node}, 'SELECT count(*) FROM soak', $rows),
			"$m->{name}: has replayed all $rows rows written in the minute");
	}
	foreach my $m (@N)
	{
		is(role_of($m), $m == $leader ? 'leader' : 'streaming',
			"$m->{name}: same role after the minute");
		is(q_ok($m->{node}, 'SELECT timeline_id FROM pg_control_checkpoint()'),
			$tl, "$m->{name}: same timeline");
		my ($ev) = q_ok($m->{node},
			"SELECT count(*) FROM role_guard_events WHERE event = 'reaped_idle' "
			  . "AND rolname = '$SU' AND application_name = 'Patroni' AND at >= '$soak_t0'");
		cmp_ok($ev, '>=', 1,
			"$m->{name}: Patroni's own connection was reaped in the minute ($ev times; role_guard does not recognise it)");
		$FIG{su_reaps}{ $m->{name} } = $ev;
		is( q_ok($m->{node},
				"SELECT count(*) FROM role_guard_events WHERE rolname = 'replicator'"),
			'0', "$m->{name}: nothing happened to the replication role");
		my $plog = patroni_log_since($m, $pl_pos{ $m->{name} });
		unlike($plog,
			qr/Error communicating|demot|promot|failover|Traceback|ERROR:/i,
			"$m->{name}: Patroni's log has no error, demotion or failover");
		like($plog, qr/establishing a new patroni connection/,
			"$m->{name}: Patroni reconnected after the reap");
		my $st = rest_status($m);
		is($st->{state} // '', 'running', "$m->{name}: Patroni reports running");
	}
	my ($rc2, $hist1) = patronictl($RG, 'history', '-f', 'json');
	is($hist1, $hist0, 'no failover in patronictl history');

	# What a load balancer sees: Patroni's REST API shares that connection
	# and its health checks do not retry, so the first check after a reap
	# fails (Patroni's behaviour, printed, not asserted; '$SUE=0' below
	# avoids it, and (7) checks the health checks then).
	my $m   = $reps->[0];
	my $sql = "SELECT count(*) FROM role_guard_events WHERE event = 'reaped_idle' "
	  . "AND rolname = '$SU' AND application_name = 'Patroni'";
	my $n0 = q_ok($m->{node}, $sql);
	if (defined wait_for(3 * $LOOP_WAIT, sub { q_ok($m->{node}, $sql) > $n0 },
			"a reap of Patroni's connection on $m->{name}"))
	{
		my $r1 = $HTTP->get("http://127.0.0.1:$m->{rest}/replica");
		my $r2 = $HTTP->get("http://127.0.0.1:$m->{rest}/replica");
		my ($state) = ($r1->{content} // '') =~ /"state":\s*"(\w+)"/;
		$FIG{health} = sprintf(
			'GET /replica on %s right after a reap of its connection: %s (state %s), the next one: %s',
			$m->{name}, $r1->{status}, $state // '?', $r2->{status});
		note $FIG{health};
	}
}

# ===========================================================================
# (5) switchover
# ===========================================================================
phase('(5) switchover');
my $POLICY = "app=2, replicator=5, $SUE=10, *=0";
edit_config_ok(
	$RG, 'the policy for switchover and failover',
	'role_guard.budgets'       => $POLICY,
	'role_guard.idle_timeouts' => "*=3s, $SUE=0",
	'role_guard.reservations'  => '');
foreach my $m (@N)
{
	ok( poll_until(
			$m->{node},
			"SELECT current_setting('role_guard.budgets') || ' / ' || current_setting('role_guard.idle_timeouts')",
			"$POLICY / *=3s, $SUE=0"),
		"$m->{name}: the new policy reached the node");
}
# From here on no reap of Patroni's connection: the reapers apply a reload
# within one reap_interval (500ms), the nodes share this machine's clock.
my $SU_LEFT_ALONE = q_ok($leader->{node}, "SELECT now() + interval '500ms'");
{
	my $old  = $leader;
	my $cand = $reps->[0];
	my @busy = map {
		busy_hold_ok($cand->{node}, 'app', 90, "$cand->{name}: busy app session $_ before the switchover")
	} 1 .. 2;
	my $opos = patroni_log_pos($old);
	my %tally;
	my ($promoted_at, $first_after);
	my $h;
	{
		local %ENV = clean_env();
		$h = IPC::Run::start(
			[
				$BIN{patronictl}, '-c', $old->{conf}, 'switchover', '--leader',
				$old->{name}, '--candidate', $cand->{name}, '--force'
			],
			'<', '/dev/null', '>', \my $sw_out, '2>&1');
	}
	my $t_sw = time;
	my $after = 0;
	while (time < $t_sw + 60 && $after < 10)
	{
		my $r = raw_login($cand->{node}, 'app', 'postgres');
		my $res =
		  $r->{sock} ? 'admitted' : ($r->{sqlstate} // '') . ' ' . ($r->{detail} // '');
		raw_close($r->{sock}) if $r->{sock};
		$tally{$res}++;
		if ($promoted_at)
		{
			$first_after //= $res;
			$after++;
		}
		elsif ((q1($cand->{node}, 'SELECT pg_is_in_recovery()') // '') eq 'f')
		{
			$promoted_at = time;
		}
		usleep(50_000);
	}
	eval { $h->finish; };
	ok($promoted_at, "$cand->{name} was promoted by the switchover")
	  or BAIL_OUT('no switchover');
	note sprintf('switchover: %s promoted %.1f s after patronictl switchover started',
		$cand->{name}, $promoted_at - $t_sw);
	my $full = '53300 role_guard budget "app=2" is full (2 of 2 sessions).';
	$FIG{switchover} = join(', ', map { "$tally{$_} x $_" } sort keys %tally);
	is($first_after, $full, "$cand->{name}: its first app login as the leader is refused");
	is_deeply([ sort keys %tally ], [$full],
		"$cand->{name}: every app login before, during and after the promotion refused ("
		  . join(', ', map { "$tally{$_} x $_" } sort keys %tally) . ')');
	c_update($_) foreach @busy;
	is((grep { $_->{eof} } @busy) ? 'gone' : 'there', 'there', 'the busy sessions lived through the promotion');
	is(usage_of($cand->{node}, 'app', 'connections')->{connections},
		2, "$cand->{name}: counts its 2 app sessions as the leader");

	my ($l2, $r2);
	ok( defined wait_for(
			60, sub { ($l2, $r2) = formed($RG, 2); $l2 && $l2 == $cand },
			'the old leader to stream from the new one'),
		"$old->{name} rejoined as a streaming replica of $cand->{name}");
	($leader, $reps) = ($l2, $r2);
	my $olog = patroni_log_since($old, $opos);
	my ($rewind) = $olog =~ /(running pg_rewind from \S+)/;
	note "$old->{name} after the switchover: "
	  . ($rewind // 'no pg_rewind needed (clean shutdown, the candidate had all its WAL)');
	is( q_ok($cand->{node},
			"SELECT count(*) FROM pg_stat_replication WHERE application_name = '$old->{name}' AND state = 'streaming'"
		),
		'1',
		"$cand->{name}: the old leader's walsender is admitted while '*=0' refuses roles without an entry");
	budget_refused_ok($cand->{node}, 'other', '*=0', 0, 0,
		"$cand->{name}: '*=0' in force");
	end_busy($cand->{node}, @busy);
}

# ===========================================================================
# (6) hard failover, role_guard's cluster and the plain one at the same time
# ===========================================================================
phase("(6) hard failover, role_guard's cluster and the plain one at the same time");
my ($pleader, $preps);
ok(defined wait_for(60, sub { ($pleader, $preps) = formed($PLAIN, 2); $pleader },
		'the plain cluster to form'),
	'the plain cluster (no role_guard) formed meanwhile');

# the pids of $pid's children
sub children_of
{
	my ($pid) = @_;
	my @kids;
	opendir(my $dh, '/proc') or return ();
	foreach my $p (grep { /^\d+$/ } readdir $dh)
	{
		open(my $fh, '<', "/proc/$p/stat") or next;
		my $st = <$fh>;
		close $fh;
		push @kids, $p if $st && $st =~ /^\d+ \(.*\) \S (\d+)/ && $1 == $pid;
	}
	closedir $dh;
	return @kids;
}

# Stop the leader's walsenders, write what no replica will receive, then
# SIGKILL its Patroni, its postmaster and the walsenders.
sub crash_leader
{
	my ($m) = @_;
	my @senders = split /\n/,
	  q_ok($m->{node}, 'SELECT pid FROM pg_stat_replication');
	kill 'STOP', @senders;
	q_ok($m->{node}, 'CREATE TABLE lost_rows AS SELECT 1 AS i');
	my $pm      = postmaster_pid($m);
	my @kids    = children_of($pm);
	my $patroni = proc_pid("patroni_$m->{name}");
	kill 'KILL', $patroni, $pm, @senders;
	reap_children(10, $patroni);
	delete $PROC{"patroni_$m->{name}"};
	push @ORPHANS, @kids;
	$m->{dead} = 1;
	$m->{kids} = \@kids;
	return;
}

# The server's own promotion, from its log: seconds from "received promote
# request" to "database system is ready to accept connections" (undef if
# the log does not have both).
sub promotion_secs
{
	my ($m, $pos) = @_;
	my $ts  = qr/^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC \[\d+\] LOG:\s+(?:\w{5}: )?/m;
	my $log = wait_log($m->{node},
		qr/${ts}received promote request.*${ts}database system is ready to accept connections/s,
		$pos, 10)
	  // return undef;
	my ($t1, $t2) = $log =~
	  /${ts}received promote request.*?${ts}database system is ready to accept connections/s;
	return ts_epoch($t2) - ts_epoch($t1);
}

{
	my $old = $leader;
	my @held = map {
		[ $_, busy_hold_ok($_->{node}, 'app', 120, "$_->{name}: busy app session before the failover") ]
	} @$reps;
	my %lpos = map { $_->{name} => log_pos($_->{node}) } @N, @{ $PLAIN->{members} };

	crash_leader($old);
	my $t_rg = time;
	crash_leader($pleader);
	my $t_pl = time;

	my %new;    # scope => [member, seconds from the kill]
	my $deadline = time + 90;
	while (time < $deadline && keys(%new) < 2)
	{
		foreach my $c ($RG, $PLAIN)
		{
			next if $new{ $c->{scope} };
			foreach my $m (grep { !$_->{dead} } @{ $c->{members} })
			{
				next unless (q1($m->{node}, 'SELECT pg_is_in_recovery()') // '') eq 'f';
				$new{ $c->{scope} } = [ $m, time, $c == $RG ? $t_rg : $t_pl ];
				last;
			}
		}
		usleep(100_000);
	}
	ok($new{rg},    'role_guard cluster: a replica was promoted') or BAIL_OUT('no failover');
	ok($new{plain}, 'plain cluster: a replica was promoted');
	my $nl = $new{rg}[0];
	foreach my $scope (qw(rg plain))
	{
		next unless $new{$scope};
		my ($m, $at, $killed) = @{ $new{$scope} };
		$FIG{failover}{$scope} =
		  [ $at - $killed, promotion_secs($m, $lpos{ $m->{name} }) ];
	}

	# exactly the sessions it holds
	my ($ok, $seen);
	wait_for(20, sub { ($ok, $seen) = usage_matches_activity($nl->{node}); $ok },
		'role_guard_usage to match pg_stat_activity');
	ok($ok, "$nl->{name}: role_guard_usage = pg_stat_activity per role ($seen)");
	is(usage_of($nl->{node}, 'app', 'connections')->{connections},
		1, "$nl->{name}: app counts only its own session, none carried from elsewhere");
	my $second = c_hold_ok($nl->{node}, 'app', "$nl->{name}: a second app session");
	budget_refused_ok($nl->{node}, 'app', 'app=2', 2, 2,
		"$nl->{name}: third app session on the promoted node");
	c_close($second);
	end_busy($_->[0]{node}, $_->[1]) foreach @held;

	# the killed node comes back: pg_rewind, then a streaming replica
	ok(wait_gone(30, @{ $old->{kids} }), "$old->{name}: the killed postmaster's children are gone");
	my $opos = patroni_log_pos($old);
	$old->{dead} = 0;
	start_patroni($old);
	my ($l3, $r3);
	ok( defined wait_for(
			90, sub { ($l3, $r3) = formed($RG, 2); $l3 && $l3 == $nl },
			'the killed node to rejoin'),
		"$old->{name} rejoined as a streaming replica of $nl->{name}");
	($leader, $reps) = ($l3, $r3);
	my $olog = patroni_log_since($old, $opos);
	like($olog, qr/running pg_rewind from/, "$old->{name}: Patroni ran pg_rewind");
	unlike($olog, qr/pg_rewind: fatal|Failed to rewind/i, "$old->{name}: pg_rewind did not fail");
	is(q_ok($old->{node}, "SELECT to_regclass('lost_rows') IS NULL"),
		't', "$old->{name}: the diverged write is gone (rewound)");
	is( q_ok($nl->{node},
			"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"),
		'2', "$nl->{name}: both replicas' walsenders admitted");
	is(usage_of($nl->{node}, 'replicator', 'connections')->{connections},
		2, "$nl->{name}: and counted under replicator's own entry");
	my ($ok2, $seen2);
	wait_for(20, sub { ($ok2, $seen2) = usage_matches_activity($nl->{node}); $ok2 },
		'role_guard_usage to match pg_stat_activity');
	ok($ok2, "$nl->{name}: with both replicas back, role_guard_usage = pg_stat_activity ($seen2)");
}

# ===========================================================================
# (7) role_guard never stood in the way of Patroni, pg_rewind, replication
# ===========================================================================
phase('(7) role_guard never stood in the way of Patroni, pg_rewind, replication');
foreach my $m (@N)
{
	my $node = $m->{node};
	is( q_ok($node,
			"SELECT count(*) FROM role_guard_events WHERE rolname IN ('$SU', 'replicator') "
			  . "AND event <> 'reaped_idle' AND client_addr IS DISTINCT FROM '127.0.0.2'"),
		'0',
		"$m->{name}: no refusal or denial of Patroni's superuser or the replication role");
	is( q_ok($node,
			"SELECT count(*) FROM role_guard_events WHERE event IN ('superuser_denied', 'would_deny') "
			  . "AND client_addr <> '127.0.0.2'"),
		'0', "$m->{name}: superuser denials only for the application host");
	my $st = rest_status($m);
	is($st->{state} // '', 'running', "$m->{name}: Patroni reports running");
	my $check = $m == $leader ? 'primary' : 'replica';
	is($HTTP->get("http://127.0.0.1:$m->{rest}/$check")->{status},
		200, "$m->{name}: the load balancers' health check GET /$check answers 200");
}
# Patroni's connection left alone since '$SUE=0' (the killed node lost the
# events of its first life; its second is there)
foreach my $m (@N)
{
	is( q_ok($m->{node},
			"SELECT count(*) FROM role_guard_events WHERE event = 'reaped_idle' "
			  . "AND rolname = '$SU' AND at > '$SU_LEFT_ALONE'"),
		'0', "$m->{name}: Patroni's connection not reaped since '$SUE=0'");
}
{
	my $r = raw_login($leader->{node}, $SU, 'postgres', local => '127.0.0.2');
	is($r->{sqlstate} // raw_result($r), '28000',
		"$leader->{name}: the application host still denied after the failover");
}

# ===========================================================================
# Figures
# ===========================================================================
phase('end');
diag sprintf('Patroni cluster of 3 formed in %.1f s (ttl %d, loop_wait %d)',
	$FIG{form}, $TTL, $LOOP_WAIT);
foreach my $m (@N)
{
	my ($b, $r) = @{ $FIG{edit}{ $m->{name} } // [] };
	diag sprintf(
		'%s: after patronictl edit-config started: new budget enforced %.1f s, idle session reaped by the new limit %.1f s (patronictl returned after %.1f s)',
		$m->{name}, $b // -1, $r // -1, $FIG{edit_ctl} // -1);
}
diag sprintf("Patroni's connection reaped under '*=3s' in the minute: %s",
	join(', ', map { "$_ $FIG{su_reaps}{$_} times" } sort keys %{ $FIG{su_reaps} // {} }));
diag "switchover: app logins on the candidate: $FIG{switchover}" if $FIG{switchover};
diag $FIG{health} if $FIG{health};
foreach my $scope (qw(rg plain))
{
	my ($secs, $promo) = @{ $FIG{failover}{$scope} // [] };
	next unless defined $secs;
	diag sprintf(
		'failover %s: SIGKILL to a promoted replica %.1f s; the promotion itself (promote request to ready, server log) %s s',
		$scope eq 'rg' ? 'with role_guard   ' : 'without role_guard',
		$secs, defined $promo ? sprintf('%.3f', $promo) : '?');
}

done_testing();
