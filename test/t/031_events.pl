
# Copyright: see README.md.
#
# role_guard_events: every kind of event appears once it is provoked, with
# its columns filled as they apply (role, database, client address or NULL
# for the Unix socket, application_name, pid, detail), newest first; the
# ring keeps the newest role_guard.event_log_size events (5: it wraps; 0:
# it keeps none while refusals still work); role_guard_reset() empties it;
# pg_monitor may read it, a plain role may not.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT events_where);

my $node = rg_node(
	'events',
	budgets => 'app=1, repl=0',
	conf    => "role_guard.reap_interval = '200ms'\n"
	  . "wal_level = replica\nmax_wal_senders = 4\n");
my $su = $node->safe_psql('postgres', 'SELECT current_user');

$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE boss SUPERUSER NOLOGIN;
CREATE ROLE member LOGIN IN ROLE boss;
CREATE ROLE plain LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
CREATE ROLE mon LOGIN IN ROLE pg_monitor;
CREATE DATABASE otherdb;
CREATE EXTENSION role_guard;
});

sub tcp  { return tcp_connstr($node, @_); }
sub sock { return sock_connstr($node, @_); }

# The rows of role_guard_events in the view's order, as hashes ('<null>'
# for NULL).
sub events
{
	return events_where($node, {});
}

sub newest
{
	my @rows = events();
	return $rows[0] // {};
}

sub count_of
{
	my ($kind) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM role_guard_events WHERE event = '$kind'");
}

# A login with PGAPPNAME set; (ret, out, err).
sub login_as_app
{
	my ($connstr, $appname, $sql) = @_;
	local $ENV{PGAPPNAME} = $appname;
	return try_login($node, $connstr, $sql // 'SELECT 1');
}

# The pid in the log line of the latest FATAL written after $pos.
sub fatal_pid
{
	my ($pos) = @_;
	my $log = log_since($node, $pos);
	my @pids = $log =~ /\[(\d+)\][^\n]*FATAL:/g;
	return $pids[-1] // 'none';
}

# Events expected in the view, newest first: "event:application_name".
my @expected;
my $ev;

$node->safe_psql('postgres', 'SELECT role_guard_reset()');
is(scalar(events()), 0, 'no events after reset');

# ---------------------------------------------------------------------------
# rejected: over TCP (client_addr 127.0.0.1) and over the Unix socket (NULL)
# ---------------------------------------------------------------------------
my $hold = hold_ok($node, 'app', 'postgres', 'app holds its one place',
	extra => 'application_name=holder');
my $pos = log_pos($node);
my ($ret, $out, $err) = login_as_app(tcp('app'), 'rg_tcp');
isnt($ret, 0, 'refused over TCP');
my $pid = fatal_pid($pos);
is_deeply(
	newest(),
	{
		event            => 'rejected',
		rolname          => 'app',
		datname          => 'postgres',
		client_addr      => '127.0.0.1',
		application_name => 'rg_tcp',
		pid              => $pid,
		detail => 'role_guard budget "app=1" is full (1 of 1 sessions).'
	},
	'rejected over TCP: every column');
isnt($pid, $hold->backend_pid, 'the pid is the refused backend\'s');
unshift @expected, 'rejected:rg_tcp';

($ret, $out, $err) = login_as_app(sock('app', 'otherdb'), 'rg_sock');
isnt($ret, 0, 'refused over the Unix socket');
is_deeply(
	newest(),
	{
		event            => 'rejected',
		rolname          => 'app',
		datname          => 'otherdb',
		client_addr      => '<null>',
		application_name => 'rg_sock',
		pid              => newest()->{pid},
		detail => 'role_guard budget "app=1" is full (1 of 1 sessions).'
	},
	'rejected over the socket: client_addr NULL, datname otherdb');
like(newest()->{pid}, qr/^[1-9]\d*$/, 'pid is set');
unshift @expected, 'rejected:rg_sock';

# no PGAPPNAME: psql's fallback_application_name
{
	delete local $ENV{PGAPPNAME};
	($ret, $out, $err) = try_login($node, tcp('app'));
}
isnt($ret, 0, 'refused without PGAPPNAME');
is(newest()->{application_name}, 'psql',
	'no PGAPPNAME: application_name is psql\'s fallback name');
unshift @expected, 'rejected:psql';
# a physical replication connection has no database: datname NULL
($ret, $out, $err) =
  login_as_app(tcp('repl') . ' replication=true', 'rg_repl', 'IDENTIFY_SYSTEM');
isnt($ret, 0, 'replication connection refused');
$ev = newest();
is_deeply(
	[ @$ev{qw(event rolname datname client_addr application_name detail)} ],
	[
		'rejected', 'repl', '<null>', '127.0.0.1', 'rg_repl',
		'role_guard budget "repl=0" is full (0 of 0 sessions).'
	],
	'rejected replication connection: datname NULL');
unshift @expected, 'rejected:rg_repl';
is(count_of('rejected'), 4, 'four rejected events');

# ---------------------------------------------------------------------------
# would_reject: monitor mode admits and records
# ---------------------------------------------------------------------------
ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'mode = monitor');
my $over = hold_ok($node, 'app', 'postgres', 'monitor: app admitted over budget',
	extra => 'application_name=rg_monitor');
is_deeply(
	newest(),
	{
		event            => 'would_reject',
		rolname          => 'app',
		datname          => 'postgres',
		client_addr      => '127.0.0.1',
		application_name => 'rg_monitor',
		pid              => $over->backend_pid,
		detail => 'role_guard budget "app=1" is full (1 of 1 sessions).'
	},
	'would_reject: every column, pid of the admitted session');
unshift @expected, 'would_reject:rg_monitor';
is(count_of('would_reject'), 1, 'one would_reject event');
$over->quit;
$hold->quit;

# ---------------------------------------------------------------------------
# superuser_denied and would_deny
# ---------------------------------------------------------------------------
ok( set_conf(
		$node,
		'role_guard.mode'                 => 'enforce',
		'role_guard.budgets'              => '',
		'role_guard.superuser_deny_hosts' => '127.0.0.1'),
	'superuser_deny_hosts = 127.0.0.1');
$pos = log_pos($node);
($ret, $out, $err) = login_as_app(tcp($su), 'rg_su');
isnt($ret, 0, 'superuser over TCP refused');
is_deeply(
	newest(),
	{
		event            => 'superuser_denied',
		rolname          => $su,
		datname          => 'postgres',
		client_addr      => '127.0.0.1',
		application_name => 'rg_su',
		pid              => fatal_pid($pos),
		detail =>
		  'Role is a superuser; host "127.0.0.1" matches role_guard.superuser_deny_hosts.'
	},
	'superuser_denied: every column');
unshift @expected, 'superuser_denied:rg_su';

($ret, $out, $err) = login_as_app(tcp('member', 'otherdb'), 'rg_member');
isnt($ret, 0, 'member of a superuser role over TCP refused');
$ev = newest();
is_deeply(
	[ @$ev{qw(event rolname datname client_addr application_name detail)} ],
	[
		'superuser_denied', 'member', 'otherdb', '127.0.0.1', 'rg_member',
		'Role is a member of superuser role "boss"; host "127.0.0.1" matches role_guard.superuser_deny_hosts.'
	],
	'superuser_denied for a member: the member variant of the detail');
unshift @expected, 'superuser_denied:rg_member';

($ret, $out, $err) = login_as_app(sock($su), 'rg_su_sock');
is($ret, 0, 'superuser over the Unix socket is not denied');
is(newest()->{application_name}, 'rg_member', '... and leaves no event');
is(count_of('superuser_denied'), 2, 'two superuser_denied events');

ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'mode = monitor');
my $mon_su = hold_ok($node, $su, 'postgres',
	'monitor: superuser over TCP admitted',
	extra => 'application_name=rg_would_deny');
is_deeply(
	newest(),
	{
		event            => 'would_deny',
		rolname          => $su,
		datname          => 'postgres',
		client_addr      => '127.0.0.1',
		application_name => 'rg_would_deny',
		pid              => $mon_su->backend_pid,
		detail =>
		  'Role is a superuser; host "127.0.0.1" matches role_guard.superuser_deny_hosts.'
	},
	'would_deny: every column');
unshift @expected, 'would_deny:rg_would_deny';
is(count_of('would_deny'), 1, 'one would_deny event');
$mon_su->quit;

# ---------------------------------------------------------------------------
# reaped_idle (TCP and socket), reaped_idle_in_transaction, would_reap
# ---------------------------------------------------------------------------
ok( set_conf(
		$node,
		'role_guard.mode'                 => 'enforce',
		'role_guard.superuser_deny_hosts' => '',
		'role_guard.idle_timeouts'        => 'app=1s'),
	'idle_timeouts = app=1s');

# Wait for the idle session $s to be reaped: an event of $kind for its pid.
sub reaped_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($s, $kind, $name) = @_;
	my $spid = $s->backend_pid;
	ok( poll_until(
			$node,
			"SELECT count(*) FROM role_guard_events WHERE event = '$kind' AND pid = $spid",
			'1'),
		"$name: $kind event for pid $spid");
	if ($kind ne 'would_reap')
	{
		ok( poll_until(
				$node,
				"SELECT count(*) FROM pg_stat_activity WHERE pid = $spid",
				'0'),
			"$name: the backend is gone");
		$s->kill_client;
	}
	return newest();
}

my $idle = hold_ok($node, 'app', 'postgres', 'idle app session over TCP',
	extra => 'application_name=rg_idle');
# the event names the application_name the session logged in with
is($idle->query("SET application_name = 'changed_later'"), '',
	'the session changes its application_name');
$ev = reaped_ok($idle, 'reaped_idle', 'idle over TCP');
like(
	delete $ev->{detail},
	qr/^Idle for (\d+)\.\d s, limit 1\.0 s\.$/,
	'reaped_idle: detail');
is_deeply(
	$ev,
	{
		event            => 'reaped_idle',
		rolname          => 'app',
		datname          => 'postgres',
		client_addr      => '127.0.0.1',
		application_name => 'rg_idle',
		pid              => $idle->backend_pid
	},
	'reaped_idle over TCP: columns from the session\'s login');
unshift @expected, 'reaped_idle:rg_idle';

$idle = hold_ok($node, 'app', 'otherdb', 'idle app session over the socket',
	via   => 'socket',
	extra => 'application_name=rg_idle_sock');
$ev = reaped_ok($idle, 'reaped_idle', 'idle over the socket');
like(delete $ev->{detail}, qr/^Idle for \d+\.\d s, limit 1\.0 s\.$/,
	'reaped_idle (socket): detail');
is_deeply(
	$ev,
	{
		event            => 'reaped_idle',
		rolname          => 'app',
		datname          => 'otherdb',
		client_addr      => '<null>',
		application_name => 'rg_idle_sock',
		pid              => $idle->backend_pid
	},
	'reaped_idle over the socket: client_addr NULL, datname otherdb');
unshift @expected, 'reaped_idle:rg_idle_sock';
is(count_of('reaped_idle'), 2, 'two reaped_idle events');

ok( set_conf(
		$node,
		'role_guard.idle_timeouts'                => '',
		'role_guard.idle_in_transaction_timeouts' => 'app=1s'),
	'idle_in_transaction_timeouts = app=1s');
my $iit = hold_ok($node, 'app', 'postgres', 'app session for a transaction',
	extra => 'application_name=rg_iit');
$iit->query('BEGIN');
$iit->query('SELECT 1');
$ev = reaped_ok($iit, 'reaped_idle_in_transaction', 'idle in transaction');
like(
	delete $ev->{detail},
	qr/^Idle in transaction for \d+\.\d s, limit 1\.0 s\.$/,
	'reaped_idle_in_transaction: detail');
is_deeply(
	$ev,
	{
		event            => 'reaped_idle_in_transaction',
		rolname          => 'app',
		datname          => 'postgres',
		client_addr      => '127.0.0.1',
		application_name => 'rg_iit',
		pid              => $iit->backend_pid
	},
	'reaped_idle_in_transaction: columns');
unshift @expected, 'reaped_idle_in_transaction:rg_iit';

ok( set_conf(
		$node,
		'role_guard.mode'                         => 'monitor',
		'role_guard.idle_in_transaction_timeouts' => '',
		'role_guard.idle_timeouts'                => 'app=1s'),
	'monitor, idle_timeouts = app=1s');
my $wr = hold_ok($node, 'app', 'postgres', 'idle app session under monitor',
	extra => 'application_name=rg_would_reap');
$ev = reaped_ok($wr, 'would_reap', 'monitor');
like(delete $ev->{detail}, qr/^Idle for \d+\.\d s, limit 1\.0 s\.$/,
	'would_reap: detail');
is_deeply(
	$ev,
	{
		event            => 'would_reap',
		rolname          => 'app',
		datname          => 'postgres',
		client_addr      => '127.0.0.1',
		application_name => 'rg_would_reap',
		pid              => $wr->backend_pid
	},
	'would_reap: columns');
unshift @expected, 'would_reap:rg_would_reap';
usleep(1_000_000);
is(count_of('would_reap'), 1, 'one would_reap per idle period');
is($wr->query('SELECT 1'), '1', 'monitor: the session was left alone');
ok( set_conf(
		$node,
		'role_guard.mode'          => 'enforce',
		'role_guard.idle_timeouts' => ''),
	'enforce, no timeouts');
$wr->quit;

# ---------------------------------------------------------------------------
# All of them, newest first.
# ---------------------------------------------------------------------------
my @got = map { "$_->{event}:" . ($_->{application_name} eq '<null>' ? '' : $_->{application_name}) } events();
is_deeply(\@got, \@expected, 'every kind, newest first') or diag join("\n", @got);
my %kinds = map { (split /:/)[0] => 1 } @got;
is( join(',', sort keys %kinds),
	'reaped_idle,reaped_idle_in_transaction,rejected,superuser_denied,would_deny,would_reap,would_reject',
	'all seven kinds seen');
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM (SELECT at, lag(at) OVER () AS newer FROM role_guard_events) e WHERE at > newer'
	),
	'0',
	'"at" never increases down the view');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM role_guard_events WHERE at > now() OR at < now() - interval '5 min'"
	),
	'0',
	'"at" is the time of the event');

# ---------------------------------------------------------------------------
# Who may read it.
# ---------------------------------------------------------------------------
($ret, $out, $err) = try_login($node, sock('plain'), 'SELECT count(*) FROM role_guard_events');
isnt($ret, 0, 'a plain role cannot read role_guard_events');
like($err, qr/permission denied for view role_guard_events/, '... permission denied');
($ret, $out, $err) = try_login($node, sock('plain'), 'SELECT count(*) FROM role_guard_events()');
like($err, qr/permission denied for function role_guard_events/,
	'... nor call role_guard_events()');
($ret, $out, $err) = try_login($node, sock('mon'), 'SELECT count(*) FROM role_guard_events');
is("$ret:$out", '0:' . scalar(@expected), 'a pg_monitor member reads every event');
($ret, $out, $err) = try_login($node, sock('mon'), 'SELECT role_guard_reset()');
isnt($ret, 0, 'a pg_monitor member cannot reset');

# ---------------------------------------------------------------------------
# role_guard_reset() empties the ring; new events start afresh.
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
is(scalar(events()), 0, 'role_guard_reset() empties role_guard_events');
ok(set_budgets($node, 'app=0'), 'app=0');
login_as_app(tcp('app'), 'rg_after_reset');
is_deeply([ map { "$_->{event}:$_->{application_name}" } events() ],
	['rejected:rg_after_reset'], 'after reset: only the new event');

# ---------------------------------------------------------------------------
# event_log_size = 5: a quarter (at least one) is kept for security events
# (superuser denials), so refusals keep the 4 newest.
# ---------------------------------------------------------------------------
# (a clean restart keeps counters and events, role_guard.save: test 080;
# this part starts from none)
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
$node->append_conf('postgresql.conf', "role_guard.event_log_size = 5\n");
$node->restart;
is($node->safe_psql('postgres', 'SHOW role_guard.event_log_size'),
	'5', 'event_log_size = 5 after restart');
is(scalar(events()), 0, 'the ring starts empty');
for my $i (1 .. 12)
{
	my ($r) = login_as_app(tcp('app'), sprintf('rg_%02d', $i));
	isnt($r, 0, "refusal $i");
}
is(usage_of($node, 'app', 'rejected')->{rejected}, '12',
	'all 12 refusals counted');
is_deeply(
	[ map { "$_->{event}:$_->{application_name}" } events() ],
	[ map { sprintf('rejected:rg_%02d', $_) } reverse 9 .. 12 ],
	'the ring wrapped: the 4 newest refusals (one entry is for denials), newest first');
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM (SELECT at, lag(at) OVER () AS newer FROM role_guard_events) e WHERE at > newer'
	),
	'0',
	'wrapped ring: "at" never increases');
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
is(scalar(events()), 0, 'reset empties the wrapped ring');
login_as_app(tcp('app'), "rg_$_") for qw(13 14);
is_deeply(
	[ map { "$_->{event}:$_->{application_name}" } events() ],
	[ 'rejected:rg_14', 'rejected:rg_13' ],
	'after reset: the two new events only, no old ones');

# ---------------------------------------------------------------------------
# event_log_size = 0: no events kept, refusals still work.
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
$node->append_conf('postgresql.conf', "role_guard.event_log_size = 0\n");
$node->restart;
is($node->safe_psql('postgres', 'SHOW role_guard.event_log_size'),
	'0', 'event_log_size = 0 after restart');
ok(set_budgets($node, 'app=1'), 'app=1');
$hold = hold_ok($node, 'app', 'postgres', 'app holds its place');
refused_ok(
	$node, tcp('app'), 'event_log_size = 0: refusal',
	role  => 'app',
	entry => 'app=1',
	used  => 1,
	limit => 1);
ok(set_conf($node, 'role_guard.superuser_deny_hosts' => '127.0.0.1'),
	'superuser_deny_hosts');
($ret, $out, $err) = login_as_app(tcp($su), 'rg_su0');
like($err, qr/a superuser may not log in from host "127\.0\.0\.1"/,
	'event_log_size = 0: denial still works');
is(scalar(events()), 0, 'event_log_size = 0: no events kept');
is_deeply(usage_of($node, 'app', 'rejected'), { rejected => 1 },
	'the refusal is counted');
is_deeply(usage_of($node, $su, 'superuser_denied'), { superuser_denied => 1 },
	'the denial is counted');
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
is(scalar(events()), 0, 'reset with no ring');
$hold->quit;

$node->stop;
done_testing();
