
# Copyright: see README.md.
#
# The reaper: a background worker ("role_guard reaper") that terminates
# sessions idle, or idle in transaction (aborted blocks included), longer
# than their role's limit, within one role_guard.reap_interval of it.
#
#   - reaped in time, never before the limit, with the LOG line and the
#     client's FATAL; idle time counts from the last statement or from the
#     login; idle and idle in transaction have separate limits;
#   - active statements (pg_sleep, COPY FROM STDIN waiting for data) are
#     never touched, however long they run;
#   - SET / PGOPTIONS / ALTER ROLE ... SET idle_session_timeout = 0 and
#     SET track_activities = off exempt nothing;
#   - precedence: own entry > smallest +group entry > '*'; 0 means never;
#   - the worker is restarted when killed, re-reads its settings on reload,
#     and in monitor mode only logs;
#   - role_guard_usage: reaped, idle_timeout, idle_in_transaction_timeout,
#     active / idle / idle_in_transaction.
#
# Timing: reap_interval = 300ms, limits of 1-3 s.  "Reaped in time" means
# gone from pg_stat_activity by limit + interval + $SLACK after the client
# saw its last statement end.  "Not before the limit" is checked three ways:
# the session is seen alive at limit - 0.5 s (when the machine lets us look
# then), the LOG line's timestamp is at least the limit after the session's
# state_change, and the idle time the LOG line gives is at least the limit.
# Every wait is bounded.  Only the node's Unix socket is used.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT wait_log activity_state watch_sessions
  reaped_in_time_ok not_early_ok reap_log_re ts_epoch client_gone_ok
  still_there_ok monitor_session);

my $INTERVAL = 0.3;    # role_guard.reap_interval, seconds
my $SLACK    = 2.0;    # scheduling slack on a loaded 2-core machine
my $WAIT     = $RoleGuardTest::wait_seconds;    # upper bound of any single wait

# ---------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------
my @IDLE = (
	'idle1=1500ms', 'iit_r=60s',   'sleeper=1s', 'set_r=1s',
	'opt_r=1s',     'alt_r=1s',    'trk_r=1s',   'copy_r=1s',
	'own_r=3s',     '+g_small=2s', '+g_big=4s',  '+g_zero=0',
	'reload_r=3s',  'mon_r=1s');
my $IDLE = join(', ', @IDLE);

# role_guard.idle_timeouts with entries replaced or added (an entry may
# appear only once)
sub idle_with
{
	my (@more) = @_;
	my @e = @IDLE;
	foreach my $m (@more)
	{
		my ($k) = split /=/, $m;
		@e = grep { (split /=/)[0] ne $k } @e;
		push @e, $m;
	}
	return join(', ', @e);
}
my $IIT = 'iit_r=1s, abort_r=1s, copy_r=1s';

my $node = PostgreSQL::Test::Cluster->new('reaper');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'role_guard'
log_timezone = 'UTC'
log_min_messages = info
log_error_verbosity = verbose
max_connections = 40
idle_session_timeout = '10min'
role_guard.reap_interval = '300ms'
role_guard.idle_timeouts = '$IDLE'
role_guard.idle_in_transaction_timeouts = '$IIT'
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
CREATE ROLE idle1 LOGIN;
CREATE ROLE iit_r LOGIN;
CREATE ROLE abort_r LOGIN;
CREATE ROLE sleeper LOGIN;
CREATE ROLE set_r LOGIN;
CREATE ROLE opt_r LOGIN;
CREATE ROLE alt_r LOGIN;
ALTER ROLE alt_r SET idle_session_timeout = 0;
CREATE ROLE trk_r LOGIN SUPERUSER;
CREATE ROLE copy_r LOGIN;
CREATE ROLE nolim_r LOGIN;
CREATE ROLE g_small NOLOGIN;
CREATE ROLE g_big NOLOGIN;
CREATE ROLE g_zero NOLOGIN;
CREATE ROLE g_mid NOLOGIN IN ROLE g_small;
CREATE ROLE own_r LOGIN IN ROLE g_small;
CREATE ROLE two_r LOGIN IN ROLE g_big, g_mid;
CREATE ROLE zs_r LOGIN IN ROLE g_zero, g_big;
CREATE ROLE zero_r LOGIN IN ROLE g_zero;
CREATE ROLE star_r LOGIN;
CREATE ROLE exempt_r LOGIN;
CREATE ROLE reload_r LOGIN;
CREATE ROLE mon_r LOGIN;
CREATE TABLE copy_t (i int);
GRANT SELECT, INSERT ON copy_t TO copy_r;
});

# The monitor: a superuser session that watches the others.  postgres has
# no entry (and gets postgres=0 once '*' is set), so it is never reaped.
my $mon = monitor_session($node);
sub mq { return $mon->query_or_die(@_); }

sub usage
{
	my ($role, @cols) = @_;
	my $list = join(", ", map { "coalesce($_\::text, '<null>')" } @cols);
	my $out  = mq("SELECT $list FROM role_guard_usage WHERE rolname = '$role'");
	return '<norow>' if $out eq '';
	return $out;
}

# %o: env (for psql)
sub open_session
{
	my ($role, $name, %o) = @_;
	return hold_ok($node, $role, 'postgres', "$name: session of $role logged in",
		via => 'socket', %o);
}

# A session's idle period begins: run its last statement $sql, note when
# (t_s before sending, t0 after the result) and its state and state_change.
# %c: role, kind ('idle' or 'idle in transaction'), limit (s), state (the
# pg_stat_activity state expected), floor (s the statement takes at least).
sub arm
{
	my ($name, $s, $sql, %c) = @_;
	my $t_s = time;
	my $out = $s->query($sql);
	my $t0  = time;
	return make_case($name, $s, $t_s + ($c{floor} // 0), $t0, out => $out, %c);
}

sub make_case
{
	my ($name, $s, $t_s, $t0, %c) = @_;
	my $pid = $s->backend_pid // 0;
	my ($sc, $state) = activity_state(sub { mq($_[1]) }, $node, $pid);
	is($state, $c{state}, "$name: session is '$c{state}'") if defined $c{state};
	return {
		%c,
		name  => $name,
		s     => $s,
		node  => $node,
		pid   => $pid,
		t_s   => $t_s,
		t0    => $t0,
		sc    => $sc,
		kind  => $c{kind} // 'idle',
		until => $c{until}, };
}

# Watch reap cases (@$reap: must be reaped in time, not early) and live
# cases (@$live: each must still be there $c->{until} s after its t0), all
# at once, then check each.  $pos: log position before the cases started.
sub watch
{
	my ($reap, $live, $pos) = @_;
	watch_sessions($reap, $live, sub { mq($_[1]) },
		interval => $INTERVAL,
		slack    => $SLACK);
	my $log = log_since($node, $pos);
	check_reaped($_, $log, $pos) for @$reap;
	check_alive($_, $log) for @$live;
	return;
}

my %reaped_seen;    # role => sessions seen reaped

sub check_reaped
{
	my ($c, $log, $pos) = @_;
	my $n = $c->{name};
	reaped_in_time_ok($c, $SLACK);
	if (!defined $c->{gone_t})
	{
		# never reaped: the checks below cannot apply
		my @lines = grep { /role_guard/ } split /\n/, $log;
		diag "role_guard log lines meanwhile:\n" . join("\n", @lines);
		$c->{s}->quit;
		return;
	}
	$reaped_seen{ $c->{role} }++;
	not_early_ok($c, 'machine too slow; the log checks below decide');

	# the LOG line; it is written before the signal
	my $kind  = $c->{kind};
	my $limit = sprintf('%.1f', $c->{limit});
	my $re    = reap_log_re($c->{role}, $c->{pid}, $kind);
	$log = wait_log($node, $re, $pos, 5) // $log if $log !~ $re;
	if (ok($log =~ $re, "$n: LOG line names role, pid, $kind time and limit"))
	{
		my ($ts, $idle, $lim) = ($1, $2, $3);
		is($lim, $limit, "$n: LOG line gives limit $limit s");
		cmp_ok($idle, '>=', $limit, "$n: LOG line's idle time is at least the limit");
		if ($c->{sc} ne '')
		{
			my $at = ts_epoch($ts);
			cmp_ok($at - $c->{sc}, '>=', $c->{limit} - 0.1,
				"$n: reaped (server clock) no earlier than the limit after state_change");
		}
	}
	else
	{
		my @lines = grep { /role_guard|\[$c->{pid}\]/ } split /\n/, $log;
		splice(@lines, 0, @lines - 20) if @lines > 20;
		diag "log lines meanwhile:\n" . join("\n", @lines);
	}
	is(count_matches($log, qr/terminating session of role "[^"]*" \(pid $c->{pid}\)/),
		1, "$n: one LOG line for the session");

	client_gone_ok($c);
	return;
}

sub check_alive
{
	my ($c, $log) = @_;
	$c->{log} = $log;    # the log up to now: before the SELECT 1 below
	still_there_ok($c, $log);
	is($c->{s}->query('SELECT 1', 10), '1', "$c->{name}: the session still works")
	  or diag $c->{s}->stderr;
	return;
}

# ---------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------
sub reaper_pid
{
	return mq("SELECT string_agg(pid::text, ',') FROM pg_stat_activity
	           WHERE backend_type = 'role_guard reaper'");
}
my $deadline = time + $WAIT;
my $rpid = reaper_pid();
while ($rpid !~ /^\d+$/ && time < $deadline)
{
	usleep(100_000);
	$rpid = reaper_pid();
}
like($rpid, qr/^\d+$/, "one 'role_guard reaper' in pg_stat_activity");
is( mq("SELECT string_agg(name || '=' || setting || coalesce(unit, '') || ':' || context, ' ' ORDER BY name)
        FROM pg_settings WHERE name IN ('role_guard.reap_interval', 'role_guard.idle_timeouts',
                                       'role_guard.idle_in_transaction_timeouts', 'role_guard.mode')"),
	"role_guard.idle_in_transaction_timeouts=$IIT:sighup role_guard.idle_timeouts=$IDLE:sighup "
	  . "role_guard.mode=enforce:sighup role_guard.reap_interval=300ms:sighup",
	'settings as configured, all reloadable');
my ($ret, $stdout, $stderr) =
  $node->psql('postgres', "SET role_guard.idle_timeouts = ''");
like($stderr, qr/cannot be changed now/, 'a session cannot SET the timeouts');

# ---------------------------------------------------------------------------
# 1. idle, idle in transaction (separate limits), aborted block, no limit
# ---------------------------------------------------------------------------
{
	my $pos = log_pos($node);
	my $a   = open_session('idle1',   'idle');
	my $b   = open_session('iit_r',   'idle in transaction');
	my $b2  = open_session('iit_r',   'idle, iit role');
	my $ab  = open_session('abort_r', 'aborted block');
	my $nl  = open_session('nolim_r', 'no limit');

	# a session that logs in and never sends a statement: idle from login
	my $t_l = time;
	my $lo  = bg_session($node, sock_connstr($node, 'idle1') . " application_name=rg_login_only",
		no_query => 1);
	my $lpid = '';
	while ($lpid eq '' && time < $t_l + $WAIT)
	{
		$lpid = mq("SELECT pid FROM pg_stat_activity
		            WHERE application_name = 'rg_login_only' AND state = 'idle'");
		usleep(20_000) if $lpid eq '';
	}
	ok($lpid =~ /^\d+$/, 'login only: session of idle1 logged in, sent nothing');
	$lo->backend_pid($lpid);
	my $lcase = make_case('login only, no statement', $lo, $t_l, time,
		role  => 'idle1',
		limit => 1.5,
		state => 'idle');

	is(usage('idle1', 'idle_timeout', 'idle_in_transaction_timeout'),
		'00:00:01.5|<null>', 'usage: idle1 timeouts');
	is(usage('iit_r', 'idle_timeout', 'idle_in_transaction_timeout'),
		'00:01:00|00:00:01', 'usage: iit_r timeouts (two limits)');
	is(usage('abort_r', 'idle_timeout', 'idle_in_transaction_timeout'),
		'<null>|00:00:01', 'usage: abort_r timeouts');
	is(usage('nolim_r', 'idle_timeout', 'idle_in_transaction_timeout', 'idle'),
		'<null>|<null>|1', 'usage: nolim_r has no timeouts, one idle session');

	my @reap = (
		arm('idle', $a, 'SELECT 1', role => 'idle1', limit => 1.5, state => 'idle'),
		arm('idle in transaction', $b, 'BEGIN; SELECT 1',
			role  => 'iit_r',
			kind  => 'idle in transaction',
			limit => 1,
			state => 'idle in transaction'),
		arm('aborted block', $ab, 'BEGIN; SELECT 1/0',
			role  => 'abort_r',
			kind  => 'idle in transaction',
			limit => 1,
			state => 'idle in transaction (aborted)'),
		$lcase);
	is(usage('iit_r', 'idle', 'idle_in_transaction', 'active'),
		'1|1|0', 'usage: iit_r has one idle and one idle-in-transaction session');
	is(usage('abort_r', 'idle_in_transaction'), '1',
		'usage: an aborted block counts as idle in transaction');
	my @live = (
		arm('idle, iit role', $b2, 'SELECT 1', until => 3, state => 'idle'),
		arm('no limit', $nl, 'SELECT 1', until => 3.5, state => 'idle'));
	watch(\@reap, \@live, $pos);

	is(usage('idle1', 'reaped', 'connections'), '2|0', 'usage: idle1 reaped = 2');
	is(usage('iit_r', 'reaped', 'connections'), '1|1', 'usage: iit_r reaped = 1');
	is(usage('abort_r', 'reaped'), '1', 'usage: abort_r reaped = 1');
	is(usage('nolim_r', 'reaped'), '0', 'usage: nolim_r reaped = 0');
	$_->quit for $b2, $nl;
}

# ---------------------------------------------------------------------------
# 2. a session cannot exempt itself
# ---------------------------------------------------------------------------
{
	my $pos = log_pos($node);
	my $s1 = open_session('set_r', 'SET idle_session_timeout = 0');
	my $s2 = open_session('opt_r', 'PGOPTIONS idle_session_timeout=0',
		env => { PGOPTIONS => '-c idle_session_timeout=0' });
	my $s3 = open_session('alt_r', 'ALTER ROLE SET idle_session_timeout = 0');
	my $s4 = open_session('trk_r', 'superuser SET track_activities = off');
	my @reap = (
		arm('SET idle_session_timeout = 0', $s1,
			'SET idle_session_timeout = 0; SHOW idle_session_timeout',
			role => 'set_r', limit => 1),
		arm('PGOPTIONS idle_session_timeout=0', $s2, 'SHOW idle_session_timeout',
			role => 'opt_r', limit => 1),
		arm('ALTER ROLE SET idle_session_timeout = 0', $s3, 'SHOW idle_session_timeout',
			role => 'alt_r', limit => 1),
		arm('superuser SET track_activities = off', $s4,
			'SET track_activities = off; SHOW track_activities',
			role => 'trk_r', limit => 1));
	is(join(',', map { $_->{out} } @reap), '0,0,0,off',
		'the sessions did switch idle_session_timeout / track_activities off');
	watch(\@reap, [], $pos);
	is(usage('trk_r', 'reaped', 'superuser'), '1|true', 'usage: superuser trk_r reaped = 1');
}

# ---------------------------------------------------------------------------
# 3. precedence: own entry over groups, smallest group, 0 in a group
# ---------------------------------------------------------------------------
{
	my $pos = log_pos($node);
	my $o  = open_session('own_r', 'own entry beats group');
	my $t  = open_session('two_r', 'smallest group wins');
	my $zs = open_session('zs_r',  'group 0 loses to another group');
	my $z  = open_session('zero_r', 'group 0 alone');
	my $st = open_session('star_r', 'no entry, no *');
	is(usage('own_r',  'idle_timeout'), '00:00:03', 'usage: own_r: own 3s over +g_small=2s');
	is(usage('two_r',  'idle_timeout'), '00:00:02',
		'usage: two_r: +g_small=2s (through g_mid) over +g_big=4s');
	is(usage('zs_r',   'idle_timeout'), '00:00:04', 'usage: zs_r: +g_big=4s over +g_zero=0');
	is(usage('zero_r', 'idle_timeout'), '<null>',   'usage: zero_r: +g_zero=0 means none');
	is(usage('star_r', 'idle_timeout'), '<null>',   'usage: star_r: no entry, no * means none');
	my @reap = (
		arm('own entry beats group', $o, 'SELECT 1', role => 'own_r', limit => 3),
		arm('smallest group wins',   $t, 'SELECT 1', role => 'two_r', limit => 2),
		arm('group 0 loses to another group', $zs, 'SELECT 1', role => 'zs_r', limit => 4));
	my @live = (arm('group 0 alone', $z, 'SELECT 1', until => 4.5));
	watch(\@reap, \@live, $pos);
	$_->quit for $z, $st;
}

# ---------------------------------------------------------------------------
# 4. active statements: pg_sleep longer than the limit; COPY FROM STDIN
#    waiting for its data
# ---------------------------------------------------------------------------
{
	my $pos = log_pos($node);
	my $sl  = open_session('sleeper', 'pg_sleep(4)');
	my $cp  = open_session('copy_r',  'COPY FROM STDIN');

	my $t_send = time;
	my $mk     = $sl->start_query('SELECT pg_sleep(4)');
	$cp->send_raw("COPY copy_t FROM STDIN;\n");
	# look at 2 s: both older than their 1 s limit, both busy
	usleep(50_000) while time < $t_send + 2.0;
	my $ps = join(',', map { $_->backend_pid } $sl, $cp);
	is( mq("SELECT string_agg(usename || ':' || state || ':' || coalesce(wait_event, ''), ',' ORDER BY usename)
	        FROM pg_stat_activity WHERE pid IN ($ps)"),
		'copy_r:active:ClientRead,sleeper:active:PgSleep',
		'both sessions active at 2 s (COPY waiting for the client)');
	is(usage('sleeper', 'active', 'idle'), '1|0', 'usage: sleeper active = 1');
	is(usage('copy_r',  'active', 'idle'), '1|0', 'usage: copy_r active = 1');

	my $out = $sl->wait_query($mk, $WAIT);
	my $t0  = time;
	is($out, '', 'pg_sleep(4) with an idle limit of 1 s ran to its end');
	my @reap = (
		make_case('after pg_sleep', $sl, $t_send + 4, $t0,
			role  => 'sleeper',
			limit => 1,
			state => 'idle'));

	# COPY: keep it waiting until 1 + 3 intervals + slack past its start
	usleep(50_000) while time < $t_send + 1 + 3 * $INTERVAL + $SLACK;
	is(mq("SELECT count(*) FROM pg_stat_activity WHERE pid = " . $cp->backend_pid),
		'1', 'COPY FROM STDIN waiting for data longer than the limit is not reaped (idle and idle-in-transaction limits 1 s)');
	push @reap,
	  arm('after COPY', $cp, "1\n2\n\\.\nSELECT count(*) FROM copy_t",
		role  => 'copy_r',
		limit => 1,
		state => 'idle');
	is($reap[-1]{out}, '2', 'the COPY then completed');
	watch(\@reap, [], $pos);
	my $log = slurp_file($node->logfile, $pos);
	is(count_matches($log, qr/role_guard: terminating session of role "(?:sleeper|copy_r)"/),
		2, 'one termination each, none while active');
}

# ---------------------------------------------------------------------------
# 5. the worker is restarted after pg_terminate_backend, and works
# ---------------------------------------------------------------------------
{
	my $old = reaper_pid();
	is(mq("SELECT pg_terminate_backend($old)"), 't', 'pg_terminate_backend on the reaper');
	my $t   = time;
	my $new = reaper_pid();
	while (($new eq '' || $new eq $old) && time < $t + $WAIT)
	{
		usleep(100_000);
		$new = reaper_pid();
	}
	my $took = time - $t;
	ok($new =~ /^\d+$/ && $new ne $old, "the reaper is back with a new pid ($old -> $new)");
	cmp_ok($took, '<=', 5, sprintf('... within 5 s (%.1f s)', $took));

	my $pos = log_pos($node);
	my $a   = open_session('idle1', 'idle, new worker');
	watch([ arm('idle, new worker', $a, 'SELECT 1', role => 'idle1', limit => 1.5) ],
		[], $pos);
	is(usage('idle1', 'reaped'), '3', 'usage: idle1 reaped = 3');
}

# ---------------------------------------------------------------------------
# 6. '*': applies to roles with no own or group entry; own 0 exempts; a
#    group 0 still means never.  Nothing but client sessions is touched.
# ---------------------------------------------------------------------------
{
	my $others = "SELECT string_agg(backend_type || ':' || pid, ',' ORDER BY pid)
	              FROM pg_stat_activity WHERE backend_type NOT IN ('client backend', 'autovacuum worker', 'parallel worker')";
	my $before = mq($others);
	ok(set_conf($node, 'role_guard.idle_timeouts' => idle_with('*=2s', 'exempt_r=0', 'postgres=0')),
		"reload: '*=2s, exempt_r=0, postgres=0' added");
	my $pos = log_pos($node);
	my $st  = open_session('star_r',   '* applies');
	my $ex  = open_session('exempt_r', 'own 0 beats *');
	my $z   = open_session('zero_r',   'group 0 beats *');
	my $nl  = open_session('nolim_r',  '* applies to nolim_r');
	is(usage('star_r',   'idle_timeout'), '00:00:02', 'usage: star_r gets *=2s');
	is(usage('exempt_r', 'idle_timeout'), '<null>',   'usage: exempt_r=0: none');
	is(usage('zero_r',   'idle_timeout'), '<null>',   'usage: zero_r: +g_zero=0: none');
	is(usage('own_r',    'idle_timeout'), '00:00:03', 'usage: own_r still 3s');
	my @reap = (
		arm('* applies', $st, 'SELECT 1', role => 'star_r', limit => 2),
		arm('* applies to nolim_r', $nl, 'SELECT 1', role => 'nolim_r', limit => 2));
	my @live = (
		arm('own 0 beats *',   $ex, 'SELECT 1', until => 4.5),
		arm('group 0 beats *', $z,  'SELECT 1', until => 4.5));
	watch(\@reap, \@live, $pos);
	is(mq($others), $before,
		'background workers, autovacuum, the reaper itself: all still there');
	$_->quit for $ex, $z;
}

# ---------------------------------------------------------------------------
# 7. reload: raising a limit spares a session already idle; lowering it
#    reaps the session
# ---------------------------------------------------------------------------
{
	my $pos = log_pos($node);
	my $s   = open_session('reload_r', 'reload');
	my $c   = arm('reload', $s, 'SELECT 1', role => 'reload_r', limit => 3);
	my $ok  = set_conf($node, 'role_guard.idle_timeouts' =>
		  idle_with('*=2s', 'exempt_r=0', 'postgres=0', 'reload_r=60s'));
	my $took = time - $c->{t0};
	ok($ok, sprintf('reload: reload_r=60s (%.1f s after the session went idle)', $took));
  SKIP:
	{
		skip "the reload took longer than the old limit of 3 s", 3 if $took > 2.5;
		$c->{until} = 3 + $INTERVAL + $SLACK;
		watch([], [$c], $pos);
	}
	is(usage('reload_r', 'idle_timeout', 'reaped'),
		'00:01:00|0', 'usage: reload_r now 60s, not reaped');
	$pos = log_pos($node);
	# the session is idle since the check above: wait past 1 s, lower its
	# limit to 1 s, and it goes within an interval of the reload
	$c = make_case('reload lowered', $s, 0, time,
		role         => 'reload_r',
		limit        => 1,
		after_reload => 1);
	usleep(50_000) while time < $c->{t0} + 1.2;
	ok(set_conf($node, 'role_guard.idle_timeouts' =>
		  idle_with('*=2s', 'exempt_r=0', 'postgres=0', 'reload_r=1s')),
		'reload: reload_r=1s');
	$c->{t0} = time;
	watch([$c], [], $pos);
	is(usage('reload_r', 'idle_timeout', 'reaped'), '00:00:01|1',
		'usage: reload_r 1s, reaped = 1');
}

# ---------------------------------------------------------------------------
# 8. monitor: logs "would terminate" once per idle period, terminates
#    nothing; back to enforce, the sessions are reaped
# ---------------------------------------------------------------------------
{
	ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'reload: mode = monitor');
	my $pos = log_pos($node);
	my $s   = open_session('mon_r', 'monitor');
	my $c   = arm('monitor', $s, 'SELECT 1', until => 1 + 5 * $INTERVAL + 1);
	my $pid = $s->backend_pid;
	my $would =
	  qr/LOG:\s+(?:\w{5}: )?role_guard: would terminate session of role "mon_r" \(pid $pid\): idle for ([\d.]+) s, limit 1\.0 s/;
	ok(defined wait_log($node, $would, $pos, 1 + $INTERVAL + $SLACK),
		'monitor: "would terminate" logged within limit + interval + slack');
	watch([], [$c], $pos);    # also runs SELECT 1: a new idle period
	is(count_matches($c->{log}, $would), 1, 'monitor: logged once for the idle period');
	my $log = wait_log($node, qr/$would(?:.|\n)*$would/, $pos, 1 + $INTERVAL + $SLACK) // '';
	is(count_matches($log, $would), 2, 'monitor: logged again for the next idle period');
	unlike($log, qr/terminating session of role "mon_r"/, 'monitor: nothing terminated');
	is(usage('mon_r', 'reaped', 'connections'), '0|1', 'usage: mon_r reaped = 0');

	# back to enforce: a fresh session of mon_r is reaped, and so should be
	# the one that was only reported in monitor mode
	# ($s is idle past its limit, and reported for this idle period)
	my $s2 = open_session('mon_r', 'enforce again, fresh session');
	$pos = log_pos($node);
	ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'reload: mode = enforce');
	my $c1 = make_case('enforce again, session reported in monitor mode', $s, 0, time,
		role         => 'mon_r',
		limit        => 1,
		after_reload => 1);
	my $c2 = arm('enforce again, fresh session', $s2, 'SELECT 1', role => 'mon_r', limit => 1);
	watch([ $c1, $c2 ], [], $pos);
}

# ---------------------------------------------------------------------------
# 9. the counters, all together
# ---------------------------------------------------------------------------
# (every session seen reaped above, per role: normally abort_r=1, alt_r=1,
# copy_r=1, idle1=3, iit_r=1, mon_r=2, nolim_r=1, opt_r=1, own_r=1,
# reload_r=1, set_r=1, sleeper=1, star_r=1, trk_r=1, two_r=1, zs_r=1)
is( mq("SELECT string_agg(rolname || '=' || reaped, ',' ORDER BY rolname)
        FROM role_guard_usage WHERE reaped > 0"),
	join(',', map { "$_=$reaped_seen{$_}" } sort keys %reaped_seen),
	'role_guard_usage.reaped: every session seen reaped, and no other');

$mon->quit;
$node->stop;
done_testing();
