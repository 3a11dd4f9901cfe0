
# Copyright: see README.md.
#
# role_guard.login_waits and role_guard.max_waiting_logins: a login that a
# full budget refuses waits for a place instead.
#
# Waiters are raw protocol-3 logins made from this process without
# waiting for their answer (RoleGuardTest's c_new): the startup packet is
# written and the socket read later.  A waiter's AuthenticationOk (and
# ReadyForQuery) comes only once role_guard admits it, so the time its
# ReadyForQuery arrives is the time it got its place.  Holders are such
# logins too, ended with a Terminate message at a time the test knows.
#
# Sections: 1 admission latency (place freed -> waiter's ReadyForQuery);
# 2 FIFO order, the views and the process title while waiting; 3 timeout;
# 4 max_waiting_logins; 5 a waiter terminated; 6 a waiter whose client
# closes its socket; 7 monitor mode; 8 reservations; 9
# authentication_timeout; 10 holder SIGKILLed (crash-restart); 11 100
# simultaneous logins against a budget of 5; 12 a login waiting for its own
# role's place holds back no place of a +group entry with room.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IO::Select;
use List::Util qw(max sum);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT monitor_session events_where event_is
  reset_stats c_new c_send_startup c_write c_update c_wait_any c_wait
  c_hold_ok c_close c_text wait_log);

my $t_start = time;

my $node = rg_node(
	'waiting',
	budgets => 'app=1',
	conf    => qq{max_connections = 130
restart_after_crash = on
role_guard.login_waits = 'app=10s'
role_guard.max_waiting_logins = 100
});
my $SLOTS = 130 - 3;    # max_connections - superuser_reserved_connections

$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE crit LOGIN;
CREATE EXTENSION role_guard;
});

my $mon = monitor_session($node);

# ===========================================================================
# What the server shows
# ===========================================================================

sub summary_waiting
{
	return $mon->query_or_die('SELECT waiting FROM role_guard_summary');
}

# Wait (at most $secs, $RoleGuardTest::wait_seconds by default) until
# role_guard_summary.waiting is $n; returns what it was last.
sub wait_waiting
{
	my ($n, $secs) = @_;
	my $deadline = time + ($secs // $RoleGuardTest::wait_seconds);
	my $got;
	while (1)
	{
		$got = summary_waiting();
		last if $got eq $n || time > $deadline;
		usleep(10_000);
	}
	return $got;
}

# One test: role_guard_summary.waiting becomes $n (within $secs).
sub waiting_is
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($n, $name, $secs) = @_;
	return is(wait_waiting($n, $secs), $n, $name);
}

sub app_usage
{
	my (@cols) = @_;
	my $out = $mon->query_or_die('SELECT '
		  . join(", ", map { "coalesce(${_}::text, '<null>')" } @cols)
		  . " FROM role_guard_usage WHERE rolname = 'app'");
	my %h;
	@h{@cols} = split /\|/, $out, -1;
	return \%h;
}

# Backends of this node whose process title says they wait for a place:
# client port => pid.
sub waiting_titles
{
	my $pm = $node->{_pid};
	my %t;
	foreach my $line (split /\n/, `ps -o pid=,ppid=,args= --ppid $pm`)
	{
		next unless $line =~ /^\s*(\d+)\s+\d+\s+(.*)$/;
		my ($pid, $args) = ($1, $2);
		$t{$1} = $pid
		  if $args =~ /127\.0\.0\.1\((\d+)\) waiting for a place \(role_guard\)/;
	}
	return \%t;
}

my $DETAIL_FULL = 'role_guard budget "app=1" is full (1 of 1 sessions).';

# ===========================================================================
# 1. Admission latency: holder ends at a known time, the waiter behind it
#    gets its ReadyForQuery.  Each round's waiter is the next round's holder.
# ===========================================================================
my $holder = c_hold_ok($node, 'app', 'latency: first holder in');
my @gaps;
my $rounds_ok = 0;
foreach my $round (1 .. 20)
{
	my $w = c_new($node, 'app');
	wait_waiting(1);
	c_update($w);
	if ($w->{state} ne 'pending')
	{
		diag "latency round $round: waiter not waiting: " . c_text($w);
		last;
	}
	my $t_end = time;
	c_write($holder, pack('a N', 'X', 4));
	c_wait($w, 10);
	close($holder->{sock});
	$holder->{closed} = 1;
	if ($w->{state} ne 'admitted')
	{
		diag "latency round $round: waiter not admitted: " . c_text($w);
		last;
	}
	push @gaps, $w->{t_ready} - $t_end;
	$rounds_ok++;
	$holder = $w;
}
is($rounds_ok, 20, 'latency: 20 rounds, each waiter admitted when its holder left');
my @sorted = sort { $a <=> $b } @gaps;
my $median = @sorted ? $sorted[ int(@sorted / 2) ] : 0;
my $maxgap = @sorted ? $sorted[-1] : 0;
diag sprintf(
	'wait latency, holder Terminate -> waiter ReadyForQuery, %d rounds: median %.1f ms, max %.1f ms, min %.1f ms',
	scalar @sorted, 1000 * $median, 1000 * $maxgap, 1000 * ($sorted[0] // 0));
ok(@sorted && $maxgap < 1.0, 'latency: max gap < 1 s (no polling)')
  or diag 'gaps: ' . join(' ', map { sprintf('%.3f', $_) } @gaps);
is(app_usage('connections', 'waiting')->{connections} . '/' . summary_waiting(),
	'1/0', 'latency: 1 app session, nobody waiting');

# ===========================================================================
# 2. FIFO: 10 waiters 50 ms apart, places freed one at a time.  The views
#    and the process titles while they wait.
# ===========================================================================
my @w;
foreach my $i (0 .. 9)
{
	push @w, c_new($node, 'app');
	# in line before the next one comes (its order is the point)
	wait_waiting($i + 1);
}
waiting_is(10, 'FIFO: role_guard_summary.waiting = 10');
is(app_usage('waiting')->{waiting}, '10', 'FIFO: role_guard_usage.waiting = 10 for app');
is(app_usage('connections')->{connections}, '1', 'FIFO: waiters are not counted as connections');
my $titles = waiting_titles();
is( join(',', sort { $a <=> $b } keys %$titles),
	join(',', sort { $a <=> $b } map { $_->{port} } @w),
	'FIFO: each waiter\'s backend has the process title "waiting for a place (role_guard)"');
is(scalar(grep { $_->{state} eq 'pending' } @w), 10, 'FIFO: all 10 still waiting');

my @order;
my $one_at_a_time = 1;
foreach my $step (0 .. 9)
{
	c_close($holder);
	my @got = c_wait_any(\@w, 10);
	# give any wrongly admitted second waiter a moment to show
	usleep(30_000);
	c_update($_) for @w;
	my @new = grep { $_->{state} ne 'pending' && !$_->{seen} } @w;
	$_->{seen} = 1 for @new;
	if (@new != 1 || $new[0]{state} ne 'admitted')
	{
		$one_at_a_time = 0;
		diag "FIFO step $step: " . join('; ', map { c_text($_) } @new);
		last unless @new;
	}
	my ($idx) = grep { $w[$_] == $new[0] } 0 .. $#w;
	push @order, $idx;
	$holder = $new[0];
}
ok($one_at_a_time, 'FIFO: each freed place admitted exactly one waiter');
is(join(',', @order), '0,1,2,3,4,5,6,7,8,9', 'FIFO: admitted in the order they arrived');
waiting_is(0, 'FIFO: nobody waiting afterwards');

# ===========================================================================
# 3. Timeout: login_waits app=1s.
# ===========================================================================
ok(set_conf($node, 'role_guard.login_waits' => 'app=1s'), 'timeout: login_waits = app=1s');
reset_stats($mon);
my $w = c_new($node, 'app', app => 'rg60');
c_wait($w, 10);
my $el = ($w->{t_done} // time) - $w->{t0};
is($w->{state}, 'refused', 'timeout: waiter refused') or diag c_text($w);
my $DETAIL_WAITED = $DETAIL_FULL
  . ' The login waited 1.0 s for a place (role_guard.login_waits).';
is(($w->{err}{C} // '') . ' ' . ($w->{err}{M} // ''),
	'53300 too many connections for role "app"', 'timeout: FATAL 53300, budget message');
is($w->{err}{D}, $DETAIL_WAITED, 'timeout: DETAIL says it waited 1.0 s');
ok($el > 0.95 && $el < 1.6, sprintf('timeout: refused after ~1 s (%.2f s)', $el));
event_is($node, { event => 'wait_timeout' },
	{ rolname => 'app', detail => $DETAIL_WAITED, application_name => 'rg60' },
	'timeout: one wait_timeout event');
is_deeply(app_usage('wait_timeouts', 'waited', 'waiting', 'rejected'),
	{ wait_timeouts => 1, waited => 0, waiting => 0, rejected => 1 },
	'timeout: role_guard_usage counts it');

# ===========================================================================
# 4. max_waiting_logins = 2: the third waiter is refused at once.
# ===========================================================================
ok( set_conf(
		$node,
		'role_guard.login_waits'        => 'app=10s',
		'role_guard.max_waiting_logins' => '2'),
	'max_waiting: login_waits app=10s, max_waiting_logins = 2');
my @two = (c_new($node, 'app'), c_new($node, 'app'));
waiting_is(2, 'max_waiting: two waiting');
$w = c_new($node, 'app');
c_wait($w, 10);
$el = ($w->{t_done} // time) - $w->{t0};
is($w->{state} . ' ' . ($w->{err}{C} // ''), 'refused 53300', 'max_waiting: third login refused');
ok($el < 0.3, sprintf('max_waiting: refused at once (%.3f s)', $el));
is( $w->{err}{D},
	'role_guard budget "app=1" is full (1 of 1 sessions, and 2 earlier logins waiting for a place).',
	'max_waiting: the budget DETAIL counts the logins waiting ahead');
is(join(',', map { $_->{state} } @two), 'pending,pending', 'max_waiting: the two still wait');
c_close($_) for @two;
waiting_is(0, 'max_waiting: the two left the line');
ok(set_conf($node, 'role_guard.max_waiting_logins' => '100'), 'max_waiting_logins = 100 again');

# ===========================================================================
# 5. A waiter terminated with pg_terminate_backend: the one behind it is not
#    blocked.
# ===========================================================================
my ($wa, $wb) = (c_new($node, 'app'));
wait_waiting(1);
$wb = c_new($node, 'app');
waiting_is(2, 'terminate: two waiting');
$titles = waiting_titles();
my $wa_pid = $titles->{ $wa->{port} };
ok($wa_pid, 'terminate: first waiter\'s pid found by its process title');
is($mon->query_or_die("SELECT pg_terminate_backend($wa_pid)"), 't',
	'terminate: pg_terminate_backend of the first waiter');
c_wait($wa, 10);
isnt($wa->{state}, 'admitted', 'terminate: terminated waiter not admitted');
note 'terminated waiter: ' . c_text($wa);
waiting_is(1, 'terminate: role_guard_summary.waiting back to 1');
is(app_usage('waiting')->{waiting}, '1', 'terminate: role_guard_usage.waiting 1');
my $t_end = time;
c_close($holder);
is(c_wait($wb, 5), 'admitted', 'terminate: the waiter behind it gets the freed place');
ok(defined $wb->{t_ready} && $wb->{t_ready} - $t_end < 1,
	'terminate: at once');
$holder = $wb;
waiting_is(0, 'terminate: nobody waiting');

# ===========================================================================
# 6. A waiter whose client closes its socket leaves the line at once.
# ===========================================================================
$wa = c_new($node, 'app');
wait_waiting(1);
$wb = c_new($node, 'app');
waiting_is(2, 'client gone: two waiting');
my $t_close = time;
close($wa->{sock});
$wa->{closed} = 1;
wait_waiting(1);
my $gone_s = time - $t_close;
# at once, not when its wait would end (a generous bound: a busy machine)
ok($gone_s < 5, sprintf('client gone: summary.waiting dropped to 1 in %.3f s', $gone_s));
$t_end = time;
c_close($holder);
is(c_wait($wb, 5), 'admitted', 'client gone: the queue moves on');
$holder = $wb;
waiting_is(0, 'client gone: nobody waiting');
is(app_usage('connections')->{connections}, '1', 'client gone: one app session');

# ===========================================================================
# 7. Monitor mode never waits.
# ===========================================================================
ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'monitor: mode = monitor');
$w = c_new($node, 'app');
c_wait($w, 10);
$el = ($w->{t_ready} // time) - $w->{t0};
is($w->{state}, 'admitted', 'monitor: over-budget login admitted');
ok($el < 0.5, sprintf('monitor: at once (%.3f s)', $el));
is(summary_waiting(), '0', 'monitor: nobody waited');
c_close($w);
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'mode = enforce again');
ok(poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'app'}, '1'),
	'monitor: back to the one holder');

# ===========================================================================
# 8. Reservations: a waiter holds a slot, so it may not wait on one the
#    reservations keep.
# ===========================================================================
# The monitor and the holder are the only sessions, once the short-lived
# sessions of set_conf and poll_until have gone (pg_stat_activity drops a
# backend after role_guard has given its place back).
sub settled_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name) = @_;
	my $deadline = time + $RoleGuardTest::wait_seconds;
	my $n;
	while (1)
	{
		$n = $mon->query_or_die(
			q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'});
		last if $n eq '2' || time > $deadline;
		usleep(10_000);
	}
	return is($n, '2', "$name: 2 client sessions (monitor, holder)");
}
settled_ok('reservations');
my $free = $SLOTS - 2;
ok(set_conf($node, 'role_guard.reservations' => 'crit=' . ($free - 1)),
	'reservations: all but one free slot reserved');
settled_ok('reservations, all but one');
$w = c_new($node, 'app');
waiting_is(1, 'reservations: with one unreserved slot the login waits');
c_close($w);
waiting_is(0, 'reservations: it left');
ok(set_conf($node, 'role_guard.reservations' => "crit=$free"),
	'reservations: every free slot reserved');
settled_ok('reservations, all');
$w = c_new($node, 'app');
c_wait($w, 10);
$el = ($w->{t_done} // time) - $w->{t0};
is($w->{state} . ' ' . ($w->{err}{C} // ''), 'refused 53300',
	'reservations: budget-blocked login refused') or diag c_text($w);
ok($el < 0.3, sprintf('reservations: at once, without waiting (%.3f s)', $el));
unlike($w->{err}{D} // '', qr/waited/, 'reservations: DETAIL says it did not wait');
note 'reservations refusal: ' . c_text($w);
is(summary_waiting(), '0', 'reservations: nobody waiting');
ok(set_conf($node, 'role_guard.reservations' => ''), 'reservations cleared');

# ===========================================================================
# 9. authentication_timeout = 2s, login_waits app=10s: role_guard refuses
#    first.
# ===========================================================================
ok( set_conf(
		$node,
		'authentication_timeout' => '2s',
		'role_guard.login_waits' => 'app=10s'),
	'auth timeout: authentication_timeout = 2s, login_waits app=10s');
reset_stats($mon);
my $pos = log_pos($node);
$w = c_new($node, 'app');
c_wait($w, 10);
$el = ($w->{t_done} // time) - $w->{t0};
is($w->{state} . ' ' . ($w->{err}{C} // ''), 'refused 53300',
	'auth timeout: refused by role_guard with 53300') or diag c_text($w);
like($w->{err}{D} // '',
	qr/^\Q$DETAIL_FULL\E The login waited 1\.[6-9] s for a place \(role_guard\.login_waits\)\.$/,
	'auth timeout: DETAIL says it waited ~1.8 s');
# (the server's own measure, in the DETAIL, says it was before the 2 s;
# the client's includes its scheduling on a busy machine)
ok($el > 1.5, sprintf('auth timeout: refused after waiting (%.2f s)', $el));
my $log = wait_log($node,
	qr/FATAL:\s+53300: too many connections for role "app"\n[^\n]*DETAIL:\s+\Q$DETAIL_FULL\E The login waited/,
	$pos);
ok(defined $log, 'auth timeout: server log has role_guard\'s FATAL');
unlike($log // '', qr/canceling authentication due to timeout/,
	'auth timeout: no "canceling authentication due to timeout" in the log');
is(app_usage('wait_timeouts')->{wait_timeouts}, '1', 'auth timeout: counted as a wait timeout');
ok(set_conf($node, 'authentication_timeout' => '1min'), 'authentication_timeout back to 1min');

# ===========================================================================
# 10. The holder SIGKILLed: crash-restart, the waiters go, everything at 0.
# ===========================================================================
ok($holder->{pid}, 'crash: holder\'s pid known');
@two = (c_new($node, 'app'), c_new($node, 'app'));
waiting_is(2, 'crash: two waiting');
$mon->quit;
ok(kill('KILL', $holder->{pid}), 'crash: SIGKILL sent to the holder\'s backend');
c_wait_any(\@two, 15);
c_wait($_, 15) for @two;
is(join(',', map { $_->{state} eq 'admitted' ? 'admitted' : 'gone' } @two),
	'gone,gone', 'crash: the waiters were disconnected');
note 'crash waiters: ' . join('; ', map { c_text($_) } @two);
c_close($_) for @two, $holder;
ok(poll_until($node, 'SELECT waiting FROM role_guard_summary', '0'),
	'crash: server back, role_guard_summary.waiting = 0');
$mon = monitor_session($node);
is_deeply(app_usage('connections', 'waiting'), { connections => 0, waiting => 0 },
	'crash: app has no connections and no waiters');
$holder = c_hold_ok($node, 'app', 'crash: a new holder gets in');
$w = c_new($node, 'app');
waiting_is(1, 'crash: waiting works after the restart');
$t_end = time;
c_close($holder);
is(c_wait($w, 5), 'admitted', 'crash: the waiter gets the freed place');
c_close($w);
ok(poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'app'}, '0'),
	'crash: app back to 0');

# ===========================================================================
# 11. 100 simultaneous logins against app=5, each session ~0.1 s.
# ===========================================================================
ok(set_budgets($node, 'app=5'), 'storm: budget app=5');
reset_stats($mon);
my @cl = map { c_new($node, 'app', defer => 1) } 1 .. 100;
usleep(300_000);    # the postmaster has forked a backend for each
c_send_startup($_) for @cl;    # the barrier
my $t_storm = time;
my ($admitted, $done, $failed, $max_conn, $max_wait) = (0, 0, 0, 0, 0);
my $t_sample = 0;
my $deadline = time + 60;
while (time < $deadline)
{
	my @open = grep { !$_->{closed} } @cl;
	last unless @open;
	IO::Select->new(map { $_->{sock} } @open)->can_read(0.02);
	foreach my $c (@open)
	{
		my $was = $c->{state};
		c_update($c);
		if ($was eq 'pending' && $c->{state} eq 'admitted')
		{
			$admitted++;
			c_write($c, pack('a N', 'Q', 4 + length('SELECT pg_sleep(0.1)') + 1)
				  . "SELECT pg_sleep(0.1)\0");
		}
		elsif ($c->{state} eq 'admitted' && grep { $_->[0] eq 'Z' } @{ $c->{msgs} })
		{
			$done++;
			c_close($c);
		}
		elsif ($c->{state} ne 'pending' && $c->{state} ne 'admitted')
		{
			$failed++;
			diag 'storm: ' . c_text($c);
			close($c->{sock});
			$c->{closed} = 1;
		}
		elsif ($c->{eof})
		{
			$failed++;
			diag 'storm: admitted session lost';
			close($c->{sock});
			$c->{closed} = 1;
		}
	}
	if (time - $t_sample > 0.1)
	{
		my ($n, $wt) = split /\|/,
		  $mon->query_or_die(
			q{SELECT u.connections, s.waiting FROM role_guard_usage u, role_guard_summary s WHERE u.rolname = 'app'});
		$max_conn = $n  if $n > $max_conn;
		$max_wait = $wt if $wt > $max_wait;
		$t_sample = time;
	}
}
note sprintf('storm: %d admitted, %d done, %d failed in %.1f s; sampled at most %d connections, %d waiting',
	$admitted, $done, $failed, time - $t_storm, $max_conn, $max_wait);
is($admitted, 100, 'storm: all 100 logins admitted eventually');
is($done,     100, 'storm: all 100 sessions ran their query');
ok($max_conn <= 5, "storm: sampled connections never above 5 ($max_conn)");
ok($max_wait > 0, "storm: logins were seen waiting ($max_wait)");
ok(poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'app'}, '0'),
	'storm: app back to 0');
my $u = app_usage('peak', 'waited', 'waiting', 'wait_timeouts', 'rejected');
note 'storm usage: ' . join(' ', map { "$_=$u->{$_}" } sort keys %$u);
ok($u->{peak} <= 5, "storm: usage.peak never above 5 ($u->{peak})");
ok($u->{waited} > 0, "storm: usage.waited > 0 ($u->{waited})");
is("$u->{waiting}/$u->{wait_timeouts}/$u->{rejected}", '0/0/0',
	'storm: nobody waiting now, no timeouts, no refusals');
is(summary_waiting(), '0', 'storm: role_guard_summary.waiting = 0');

# ===========================================================================
# 12. A login waiting for its own role's place (wo=1) holds back no place
#     of a +group entry with room (+wg=2): another member gets in at once,
#     and the waiter still gets the next place of its own.
# ===========================================================================
$node->safe_psql(
	'postgres', q{
CREATE ROLE wg NOLOGIN;
CREATE ROLE wo LOGIN IN ROLE wg;
CREATE ROLE wt LOGIN IN ROLE wg;
});
ok( set_conf(
		$node,
		'role_guard.budgets'     => 'app=1, wo=1, +wg=2',
		'role_guard.login_waits' => 'wo=20s'),
	'12: wo=1, +wg=2; wo may wait, wt may not');
my $h12 = c_new($node, 'wo');
is(c_wait($h12, 10), 'admitted', '12: a wo session holds wo=1 (and one place of +wg=2)');
my $w12 = c_new($node, 'wo');
ok(poll_until($node, q{SELECT waiting FROM role_guard_usage WHERE rolname = 'wo'}, '1'),
	'12: a second wo login waits for wo=1');
my $t12 = c_new($node, 'wt');
is(c_wait($t12, 10), 'admitted',
	'12: wt gets in at once: the waiting wo login waits for wo=1, not for +wg=2')
  or diag c_text($t12);
c_close($h12);
is(c_wait($w12, 30), 'admitted', '12: the wo waiter gets the place its own session freed')
  or diag c_text($w12);
c_close($_) for ($w12, $t12);
ok(poll_until($node, q{SELECT coalesce(sum(connections), 0) FROM role_guard_usage WHERE rolname IN ('wo', 'wt')}, '0'),
	'12: wo and wt hold nothing');
# but the entries that have been full for a waiter stay its own while it
# waits: with wo=1 and +wg=2 both full, a wo login waits for both; the +wg
# place freed meanwhile goes to no new wt login (else logins of two roles
# could take its entries' places in turn and keep it out)
my $a12 = c_new($node, 'wo');
is(c_wait($a12, 10), 'admitted', '12: a wo session (wo 1 of 1, +wg 1 of 2)');
my $b12 = c_new($node, 'wt');
is(c_wait($b12, 10), 'admitted', '12: a wt session (+wg 2 of 2)');
my $q12 = c_new($node, 'wo');
ok(poll_until($node, q{SELECT waiting FROM role_guard_usage WHERE rolname = 'wo'}, '1'),
	'12: a wo login waits, wo=1 and +wg=2 both full');
c_close($b12);
ok(poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'wt'}, '0'),
	'12: the wt session left: +wg has a place free');
my $n12 = c_new($node, 'wt');
c_wait($n12, 10);
is($n12->{state}, 'refused', '12: a new wt login is refused') or diag c_text($n12);
is($n12->{err}{D},
	'role_guard budget "+wg=2" is full (1 of 2 sessions, and 1 earlier login waiting for a place).',
	'12: ... the free +wg place is the waiting wo login\'s');
c_close($a12);
is(c_wait($q12, 30), 'admitted', '12: the wo login gets in when wo=1 has room') or diag c_text($q12);
c_close($_) for ($q12, $n12);
ok( set_conf(
		$node,
		'role_guard.budgets'     => 'app=1',
		'role_guard.login_waits' => 'app=10s'),
	'12: the settings of the start again');

$mon->quit;
$node->stop;
note sprintf('060_waiting: %.1f s', time - $t_start);
done_testing();
