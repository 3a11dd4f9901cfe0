
# Copyright: see README.md.
#
# The reaper on a streaming pair.  role_guard is preloaded on a primary and
# on its hot standby; each has its own settings.
#
#   - the reaper runs on the standby (it starts at consistent state) and
#     shows in the standby's pg_stat_activity;
#   - an idle session on the standby is reaped per the standby's settings
#     (sb_r=1500ms there, 60s on the primary), and role_guard_usage on the
#     standby counts it; the primary's '*' does not reach the standby;
#   - on the primary, '*=1s' covers the replication role: the walsender
#     streaming to the standby and an idle replication connection (waiting
#     for its client, as an idle session does) are never reaped, while a
#     plain session of a role under '*' is; after many intervals the same
#     walsender still streams and replication still works.
#
# reap_interval = 300ms on both.  Only the nodes' Unix sockets are used.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT rg_standby activity_state watch_sessions
  reaped_in_time_ok not_early_ok reap_log_re ts_epoch client_gone_ok
  still_there_ok);

my $INTERVAL = 0.3;    # role_guard.reap_interval, seconds
my $SLACK    = 2.0;    # scheduling slack on a loaded 2-core machine

# ---------------------------------------------------------------------------
# The nodes
# ---------------------------------------------------------------------------
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'role_guard'
log_timezone = 'UTC'
log_min_messages = info
log_error_verbosity = verbose
max_connections = 20
role_guard.reap_interval = '300ms'
role_guard.idle_timeouts = 'postgres=0, sb_r=60s, *=1s'
role_guard.idle_in_transaction_timeouts = 'postgres=0, *=1s'
});
$primary->start;
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
CREATE ROLE repl LOGIN REPLICATION;
CREATE ROLE sb_r LOGIN;
CREATE ROLE p_r LOGIN;
CREATE TABLE rep_t (i int);
GRANT SELECT ON rep_t TO sb_r, p_r;
});
my $standby = rg_standby(
	$primary, 'standby',
	conf => q{role_guard.idle_timeouts = 'postgres=0, sb_r=1500ms'
role_guard.idle_in_transaction_timeouts = ''
});

my %mon;
for my $node ($primary, $standby)
{
	$mon{ $node->name } = bg_session($node, sock_connstr($node, 'postgres'));
	die "monitor session on " . $node->name . " did not start"
	  unless $mon{ $node->name }->connected;
}

sub mq
{
	my ($node, $sql) = @_;
	my $out = $mon{ $node->name }->query($sql);
	die "monitor session on " . $node->name . " lost" unless defined $out;
	return $out;
}

sub usage
{
	my ($node, $role, @cols) = @_;
	my $list = join(", ", map { "coalesce($_\::text, '<null>')" } @cols);
	my $out  = mq($node, "SELECT $list FROM role_guard_usage WHERE rolname = '$role'");
	return $out eq '' ? '<norow>' : $out;
}

sub open_session
{
	my ($node, $role, $name, $extra) = @_;
	return hold_ok($node, $role, 'postgres', "$name: session of $role logged in",
		via   => 'socket',
		extra => $extra);
}

# Run the session's last statement and note when its idle period began.
sub arm
{
	my ($name, $node, $s, %c) = @_;
	my $t_s = time;
	my $out = $s->query('SELECT 1');
	my $t0  = time;
	my $pid = $s->backend_pid // 0;
	my ($sc, $state) = activity_state(\&mq, $node, $pid);
	is($state, 'idle', "$name: session is idle");
	return { %c, name => $name, node => $node, s => $s, pid => $pid,
		t_s => $t_s, t0 => $t0, sc => $sc };
}

# Watch reap cases and live cases on both nodes at once, then check them.
sub watch
{
	my ($reap, $live, %pos) = @_;
	watch_sessions($reap, $live, \&mq, interval => $INTERVAL, slack => $SLACK);
	for my $c (@$reap)
	{
		my $n   = $c->{name};
		my $log = log_since($c->{node}, $pos{ $c->{node}->name });
		reaped_in_time_ok($c, $SLACK);
		next unless defined $c->{gone_t};
		not_early_ok($c, 'machine too slow');
		my $limit = sprintf('%.1f', $c->{limit});
		my $re    = reap_log_re($c->{role}, $c->{pid}, 'idle');
		if (ok($log =~ $re, "$n: LOG line on " . $c->{node}->name . " names role, pid, idle time and limit"))
		{
			my ($ts, $idle, $lim) = ($1, $2, $3);
			is($lim, $limit, "$n: LOG line gives limit $limit s");
			cmp_ok(ts_epoch($ts) - $c->{sc}, '>=', $c->{limit} - 0.1,
				"$n: reaped (server clock) no earlier than the limit after state_change")
			  if $c->{sc} ne '';
		}
		else
		{
			diag "role_guard log lines:\n" . join("\n", grep { /role_guard/ } split /\n/, $log);
		}
		client_gone_ok($c);
	}
	for my $c (@$live)
	{
		still_there_ok($c, log_since($c->{node}, $pos{ $c->{node}->name }));
	}
	return;
}

# ---------------------------------------------------------------------------
# 1. both reapers run; the standby streams from the primary as repl
# ---------------------------------------------------------------------------
is(mq($standby, 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
my $reaper = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'role_guard reaper'";
ok(poll_until($standby, $reaper, '1'), "the standby's pg_stat_activity shows one 'role_guard reaper'");
ok(poll_until($primary, $reaper, '1'), "the primary's pg_stat_activity shows one 'role_guard reaper'");
ok( poll_until(
		$primary,
		"SELECT usename || ':' || state FROM pg_stat_replication WHERE application_name = 'standby'",
		'repl:streaming'),
	'the standby streams from the primary as role repl');
my $wal_pid =
  mq($primary, "SELECT pid FROM pg_stat_replication WHERE application_name = 'standby'");
my $t_stream = time;
is( mq($primary,
		"SELECT coalesce(idle_timeout::text, '<null>') FROM role_guard_usage WHERE rolname = 'repl'"),
	'00:00:01', "repl's idle limit on the primary is '*' = 1 s");

# ---------------------------------------------------------------------------
# 2. sessions: on the standby per the standby's settings, on the primary
#    per the primary's; an idle replication connection on the primary
# ---------------------------------------------------------------------------
my %pos = (primary => log_pos($primary), standby => log_pos($standby));
my $sb   = open_session($standby, 'sb_r', 'standby: sb_r (1500ms there)');
my $sp   = open_session($standby, 'p_r',  'standby: p_r (no limit there)');
my $pb   = open_session($primary, 'sb_r', 'primary: sb_r (60s there)');
my $pp   = open_session($primary, 'p_r',  "primary: p_r ('*' = 1 s)");
my $repl = open_session($primary, 'repl', 'primary: idle replication connection',
	'replication=database');
# a plain session of repl: reaped like any other ('*'), so the reaper knows
# repl's limit; only its walsenders are spared
my $rp = open_session($primary, 'repl', 'primary: plain session of repl');
is(usage($standby, 'sb_r', 'idle_timeout'), '00:00:01.5', 'standby: usage shows sb_r 1.5 s');
is(usage($standby, 'p_r',  'idle_timeout'), '<null>',     'standby: usage shows p_r without limit');
is(usage($primary, 'sb_r', 'idle_timeout'), '00:01:00',   'primary: usage shows sb_r 60 s');

my @reap = (
	arm('standby: sb_r (1500ms there)', $standby, $sb, role => 'sb_r', limit => 1.5),
	arm("primary: p_r ('*' = 1 s)", $primary, $pp, role => 'p_r', limit => 1),
	arm('primary: plain session of repl', $primary, $rp, role => 'repl', limit => 1));
my @live = (
	arm('standby: p_r (no limit there)', $standby, $sp, until => 3.5),
	arm('primary: sb_r (60s there)', $primary, $pb, until => 3.5),
	arm('primary: idle replication connection', $primary, $repl, until => 3.5));
is( mq($primary, "SELECT backend_type || ':' || state || ':' || wait_event
                  FROM pg_stat_activity WHERE pid = " . $repl->backend_pid),
	'walsender:idle:ClientRead',
	'the replication connection is a walsender, idle, waiting for its client');
watch(\@reap, \@live, %pos);
is(usage($standby, 'sb_r', 'reaped'), '1', 'standby: usage counts the reap of sb_r');
is(usage($primary, 'sb_r', 'reaped'), '0', 'primary: nothing counted for sb_r');
is(usage($primary, 'p_r',  'reaped'), '1', 'primary: usage counts the reap of p_r');
is(usage($primary, 'repl', 'reaped'), '1', 'primary: repl reaped once (the plain session)');

# ---------------------------------------------------------------------------
# 3. after many intervals: the same walsender streams, the idle replication
#    connection still answers, replication works
# ---------------------------------------------------------------------------
usleep(50_000) while time < $t_stream + 1 + 10 * $INTERVAL;
is( mq($primary,
		"SELECT pid || ':' || state FROM pg_stat_replication WHERE application_name = 'standby'"),
	"$wal_pid:streaming",
	sprintf('the same walsender still streams %.1f s later', time - $t_stream));
like($repl->query('IDENTIFY_SYSTEM'), qr/^\d+\|\d+\|[0-9A-F]+\/[0-9A-F]+\|postgres$/,
	'the idle replication connection still answers IDENTIFY_SYSTEM');
$primary->safe_psql('postgres', 'INSERT INTO rep_t SELECT generate_series(1, 10)');
$primary->wait_for_catchup($standby, 'replay');
is(mq($standby, 'SELECT count(*) FROM rep_t'), '10', 'replication still works');
my $plog = slurp_file($primary->logfile);
my $rpid = $repl->backend_pid;
unlike($plog, qr/terminating session of role "[^"]*" \(pid (?:$wal_pid|$rpid)\)/,
	'the primary never terminated a walsender');
unlike($plog, qr/terminating session of role "postgres"/,
	'the primary never terminated a postgres session');
like(mq($standby, 'SELECT status FROM pg_stat_wal_receiver'), qr/^streaming$/,
	"the standby's walreceiver is streaming");

$repl->quit;
$_->quit for $sp, $pb, values %mon;
$standby->stop;
$primary->stop;
done_testing();
