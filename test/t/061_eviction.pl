
# Copyright: see README.md.
#
# role_guard.evict_idle: a login that a full budget entry would refuse
# ends the longest-idle session that the entry counts, of a role listed in
# evict_idle and idle (not in a transaction) at least its listed time, and
# takes its place.
#
# Sessions are raw protocol-3 logins (RoleGuardTest::Wire), so the test
# knows each backend's pid and sees the FATAL an evicted session's client
# gets.  Newcomers are raw logins too; two at once are started by opening
# both TCP connections first and then writing both startup packets in one
# go (the barrier).
#
# Sections: 1 the longest-idle session is the one ended (1b: one login
# ends one session, 8 rounds); 2 active sessions
# and sessions in a transaction are never ended; 3 a session idle less than
# its evict_idle time is not ended; 4 two newcomers at once for one
# evictable session (4b: for two, the first's held stopped: each ends
# one and gets in, in order; 4c: a reload while the login waits for the
# session it ended); 5 +group and @database entries; 6 monitor mode; 7 a
# role not listed in evict_idle; 8 a login refused by two full entries
# evicts nobody when no idle session is counted by both (one place would
# not admit it) and its DETAIL does not speak of a wait it did not make;
# 8b two full entries that both count an idle session: it is ended.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT monitor_session events_where event_is no_event_ok
  raw_result raw_close reset_stats c_new c_send_startup c_wait_all c_close
  c_text c_wait_any c_wait);

my $t_start = time;

my $node = rg_node(
	'eviction',
	budgets => 'idler=3',
	conf    => qq{role_guard.evict_idle = 'idler=1s'
});

$node->safe_psql(
	'postgres', q{
CREATE ROLE idler LOGIN;
CREATE ROLE other LOGIN;
CREATE ROLE plain LOGIN;
CREATE ROLE grp NOLOGIN;
CREATE ROLE g1 LOGIN IN ROLE grp;
CREATE ROLE g2 LOGIN IN ROLE grp;
CREATE DATABASE edb;
CREATE EXTENSION role_guard;
});

my $mon = monitor_session($node);

my $EVICT_MSG = 'terminating idle connection to make room for another login';

# ===========================================================================
# Helpers
# ===========================================================================

# An idle session of $user in $db (a Wire) that ran one statement; dies
# when refused.
sub idle_session
{
	my ($user, $db) = @_;
	my $w = RoleGuardTest::Wire->new($node, $user, $db);
	return $w;
}

# $n sessions of $user idle in a transaction (never evicted).
sub in_transaction
{
	my ($user, $n) = @_;
	my @w = map { idle_session($user) } 1 .. $n;
	for (@w)
	{
		$_->send($_->query('BEGIN; SELECT 1'));
		$_->wait_ready(1, 10) or die 'BEGIN failed';
	}
	return @w;
}

# Make the session active for a moment: its idle time starts now.
sub touch
{
	my ($w) = @_;
	$w->send($w->query('SELECT 1'));
	my $r = $w->wait_ready(1, 10);
	die "touch: no answer from pid " . $w->pid unless $r;
	return time;
}

# Of the pids @pids, those that pg_stat_activity still lists.
sub alive_pids
{
	my (@pids) = @_;
	return () unless @pids;
	return split /\n/,
	  $mon->query_or_die(
		    'SELECT pid FROM pg_stat_activity WHERE pid IN ('
		  . join(',', @pids)
		  . ') ORDER BY pid');
}

# Wait (at most $secs) until exactly the pids in @$want, of @$all, are
# alive; one test.
sub alive_is
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($all, $want, $name, $secs) = @_;
	my $deadline = time + ($secs // 5);
	my $exp = join(',', sort { $a <=> $b } @$want);
	my $got;
	while (1)
	{
		$got = join(',', alive_pids(@$all));
		last if $got eq $exp || time > $deadline;
		usleep(20_000);
	}
	return is($got, $exp, $name);
}

# A timed raw login: (result of raw_login, seconds it took).
sub timed_login
{
	my ($user, $db) = @_;
	my $t0 = time;
	my $r  = raw_login($node, $user, $db);
	return ($r, time - $t0);
}

# The client of an evicted session got FATAL 57P05 naming evict_idle.
sub evicted_client_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($w, $limit, $name) = @_;
	my $deadline = time + 10;
	$w->poll(0.2) until $w->is_eof || time > $deadline;
	my $e = $w->error($w->pending) // {};
	ok($w->is_eof, "$name: connection closed by the server");
	is(join(' | ', map { $e->{$_} // '' } qw(V C M D)),
		"FATAL | 57P05 | $EVICT_MSG | role_guard.evict_idle lets this role's sessions be ended after $limit s idle when their place is needed.",
		"$name: client got FATAL 57P05 with a DETAIL naming role_guard.evict_idle");
	return;
}

sub close_all
{
	my (@w) = @_;
	my @pids = map { $_->pid } @w;
	$_->terminate for @w;
	alive_is(\@pids, [], 'sessions closed');
	return;
}

sub evicted_count
{
	my ($role) = @_;
	my $v = $mon->query_or_die(
		"SELECT coalesce((SELECT evicted FROM role_guard_usage WHERE rolname = '$role'), 0)");
	return $v;
}

# Two logins at once (RoleGuardTest's c_new clients): both connections
# opened, then both startup packets written back to back.
sub two_at_once
{
	my (@users) = @_;
	my @c = map { c_new($node, $_, defer => 1) } @users;
	usleep(100_000);
	c_send_startup($_) for @c;
	return @c;
}

# ===========================================================================
# 1. The longest-idle session is the one ended.  idler=3, evict_idle
#    idler=1s.  Sessions A, B, C log in in that order and go idle in the
#    order B, A, C: B has been idle longest.
# ===========================================================================
reset_stats($mon);
my ($A, $B, $C) = map { idle_session('idler') } 1 .. 3;
my %name = ($A->pid => 'A', $B->pid => 'B', $C->pid => 'C');
touch($B);
usleep(250_000);
touch($A);
usleep(250_000);
my $t_last = touch($C);
usleep(1_200_000);    # all three idle > 1 s: B ~1.7 s, A ~1.45 s, C ~1.2 s
my @pids = map { $_->pid } $A, $B, $C;
my ($r, $el) = timed_login('idler');
ok($r->{sock}, 'longest idle: newcomer admitted') or diag raw_result($r);
# (fast: not the 5 s a login waits at most for the evicted session to go;
# generous, for a busy machine)
ok($el < 4, sprintf('longest idle: admitted without waiting it out (%.3f s)', $el));
alive_is(\@pids, [ $A->pid, $C->pid ],
	'longest idle: B, the longest idle, was ended; A and C are still there');
evicted_client_ok($B, '1.0', 'longest idle: B');
event_is($node, { event => 'evicted' },
	{
		pid      => $B->pid,
		rolname  => 'idler',
		datname  => 'postgres',
		detail   => qr/^Idle for (?:1\.[5-9]|[2-9]\.\d) s, role_guard\.evict_idle allows 1\.0 s; its place in "idler=3" is wanted by a login of role "idler"\.$/
	},
	'longest idle: one evicted event, with B\'s pid');
is(evicted_count('idler'), '1', 'longest idle: role_guard_usage.evicted = 1');
is($mon->query_or_die(q{SELECT connections FROM role_guard_usage WHERE rolname = 'idler'}),
	'3', 'longest idle: idler has 3 sessions');
raw_close($r->{sock});
close_all($A, $C);

# ===========================================================================
# 1b. One login ends one session: 8 rounds against three sessions idle
#     > 1 s, each round's newcomer staying as one of the three (and the
#     three made up again if a round ended more than one).
# ===========================================================================
my @sess = map { idle_session('idler') } 1 .. 3;
my @bad;
foreach my $round (1 .. 8)
{
	usleep(1_100_000);
	reset_stats($mon);
	my @before = map { $_->pid } @sess;
	my $nw = eval { RoleGuardTest::Wire->new($node, 'idler') };
	if (!$nw)
	{
		push @bad, "round $round: newcomer refused: $@";
		last;
	}
	usleep(200_000);    # a second session wrongly ended has gone by now
	my @ev    = events_where($node, { event => 'evicted' });
	my %alive = map { $_ => 1 } alive_pids(@before);
	my @gone  = grep { !$alive{$_} } @before;
	push @bad,
	  "round $round: sessions ended: @gone; evicted events for pids: "
	  . join(' ', map { $_->{pid} } @ev)
	  unless @gone == 1 && @ev == 1 && $ev[0]{pid} == $gone[0];
	@sess = ((grep { $alive{ $_->pid } } @sess), $nw);
	# a round that ended too many: fill the budget again for the next
	push @sess, idle_session('idler') while @sess < 3;
}
is(scalar(@bad), 0, 'one login, one session: 8 rounds, each ended exactly one session and recorded one evicted event')
  or diag join("\n", @bad);
$_->terminate for @sess;
ok(poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'idler'}, '0'),
	'one login, one session: idler back to 0');

# ===========================================================================
# 2. Active sessions and sessions in a transaction are never ended.
# ===========================================================================
reset_stats($mon);
my $act = idle_session('idler');
my $iit = idle_session('idler');
my $abt = idle_session('idler');
$act->send($act->query('SELECT pg_sleep(4)'));
$iit->send($iit->query('BEGIN; SELECT 1'));
$iit->wait_ready(1, 10) or die 'BEGIN failed';
$abt->send($abt->query('BEGIN; SELECT 1/0'));
$abt->wait_ready(1, 10) or die 'BEGIN failed';
usleep(1_300_000);
@pids = map { $_->pid } $act, $iit, $abt;
is( $mon->query_or_die(
		'SELECT string_agg(state, \',\' ORDER BY pid) FROM pg_stat_activity WHERE pid IN ('
		  . join(',', sort { $a <=> $b } @pids) . ')'),
	join(',', map { { $act->pid => 'active', $iit->pid => 'idle in transaction', $abt->pid => 'idle in transaction (aborted)' }->{$_} }
		  sort { $a <=> $b } @pids),
	'busy: one active, one idle in transaction, one in an aborted transaction');
($r, $el) = timed_login('idler');
is(raw_result($r),
	'53300 too many connections for role "idler" DETAIL: role_guard budget "idler=3" is full (3 of 3 sessions).',
	'busy: newcomer refused with the plain budget DETAIL');
ok($el < 3, sprintf('busy: at once, not after an eviction wait (%.3f s)', $el));
alive_is(\@pids, \@pids, 'busy: none of the three was ended');
ok(set_conf($node, 'role_guard.login_waits' => 'idler=1s'), 'busy: login_waits idler=1s');
($r, $el) = timed_login('idler');
is(raw_result($r),
	'53300 too many connections for role "idler" DETAIL: role_guard budget "idler=3" is full (3 of 3 sessions). The login waited 1.0 s for a place (role_guard.login_waits).',
	'busy: with login_waits the newcomer waits and times out');
# (the DETAIL, measured by the server, says 1.0 s; the client's measure
# includes its scheduling on a busy machine)
ok($el > 0.9 && $el < 4, sprintf('busy: after ~1 s (%.2f s)', $el));
alive_is(\@pids, \@pids, 'busy: still none ended');
no_event_ok($node, { event => [ 'evicted', 'would_evict' ] }, 'busy: no eviction event');
is(evicted_count('idler'), '0', 'busy: role_guard_usage.evicted = 0');
ok(set_conf($node, 'role_guard.login_waits' => ''), 'login_waits cleared');
$iit->send($iit->query('COMMIT'));
$abt->send($abt->query('ROLLBACK'));
$mon->query_or_die('SELECT pg_cancel_backend(' . $act->pid . ')');
close_all($act, $iit, $abt);

# ===========================================================================
# 3. A session idle less than its evict_idle time is not ended (evict_idle
#    idler=3s, checked after 0.8 s: margin for a busy machine); once it has
#    been, it is.
# ===========================================================================
reset_stats($mon);
ok(set_conf($node, 'role_guard.evict_idle' => 'idler=3s'), 'short idle: evict_idle idler=3s');
my @s = map { idle_session('idler') } 1 .. 3;
touch($_) for @s;
my $t_idle = time;
usleep(800_000);
@pids = map { $_->pid } @s;
($r, $el) = timed_login('idler');
is(raw_result($r),
	'53300 too many connections for role "idler" DETAIL: role_guard budget "idler=3" is full (3 of 3 sessions).',
	sprintf('short idle: idle %.1f s < 3 s: newcomer refused', time - $t_idle));
alive_is(\@pids, \@pids, 'short idle: none ended');
no_event_ok($node, { event => 'evicted' }, 'short idle: no evicted event');
usleep(1_000_000) while time < $t_idle + 3.2;
($r, $el) = timed_login('idler');
ok($r->{sock}, sprintf('short idle: idle %.1f s > 3 s: newcomer admitted', time - $t_idle))
  or diag raw_result($r);
alive_is(\@pids, [ grep { $_ != $pids[0] } @pids ],
	'short idle: then the longest idle (first touched) was ended');
raw_close($r->{sock});
close_all(@s[ 1, 2 ]);
$s[0]->terminate;
ok(set_conf($node, 'role_guard.evict_idle' => 'idler=1s'), 'evict_idle idler=1s again');

# ===========================================================================
# 4. Two newcomers at once, one evictable session.  Two sessions in a
#    transaction hold their places.
# ===========================================================================
reset_stats($mon);
my @tx = in_transaction('idler', 2);
my $ev = idle_session('idler');
usleep(1_200_000);
my @c = two_at_once('idler', 'idler');
c_wait_all(\@c, 8);
my @st = sort map { $_->{state} } @c;
is("@st", 'admitted refused', 'race: exactly one newcomer admitted, the other refused')
  or diag join('; ', map { c_text($_) } @c);
my ($loser) = grep { $_->{state} eq 'refused' } @c;
like($loser && $loser->{err}{D},
	qr/^role_guard budget "idler=3" is full \([23] of 3 sessions(?:, and 1 earlier login waiting for a place)?\)\.$/,
	'race: the loser got the budget DETAIL (the place is the winner\'s)');
note 'race: loser DETAIL: ' . ($loser ? $loser->{err}{D} : '');
alive_is([ $ev->pid, map { $_->pid } @tx ], [ map { $_->pid } @tx ],
	'race: the idle session was ended, the ones in a transaction stay');
is(scalar(events_where($node, { event => 'evicted' })), 1, 'race: one evicted event');
$ev->terminate;
c_close($_) for @c;

# The same with login_waits: the loser waits and gets the next place.
ok(set_conf($node, 'role_guard.login_waits' => 'idler=5s'), 'race: login_waits idler=5s');
poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'idler'}, '2');
$ev = idle_session('idler');
usleep(1_200_000);
reset_stats($mon);
@c = two_at_once('idler', 'idler');
# the winner gets in once the evicted session has gone; the loser waits
# 5 s for a place
my $race_deadline = time + 4.5;
c_wait_any(\@c, $race_deadline - time)
  while time < $race_deadline && !grep { $_->{state} eq 'admitted' } @c;
@st = sort map { $_->{state} } @c;
is("@st", 'admitted pending', 'race with waits: one admitted, the other waits')
  or diag join('; ', map { c_text($_) } @c);
is(scalar(events_where($node, { event => 'evicted' })), 1, 'race with waits: one evicted event');
my $t_free = time;
$tx[0]->send($tx[0]->query('COMMIT'));
$tx[0]->terminate;
c_wait_all(\@c, 5);
@st = sort map { $_->{state} } @c;
is("@st", 'admitted admitted', 'race with waits: the waiter gets the next place');
my ($late) = sort { $b->{t_ready} <=> $a->{t_ready} } @c;
ok($late->{t_ready} - $t_free < 1, 'race with waits: as soon as it was freed');
c_close($_) for @c;
$tx[1]->send($tx[1]->query('COMMIT'));
$ev->terminate;
$tx[1]->terminate;
ok(set_conf($node, 'role_guard.login_waits' => ''), 'login_waits cleared');
ok(poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'idler'}, '0'),
	'race: idler back to 0');

# ===========================================================================
# 4b. Two newcomers, two evictable sessions, the first one's not gone yet
#     (held stopped, SIGSTOP) when the second arrives: the second ends a
#     session of its own and waits in line behind the first; each gets a
#     place.  (Before, the second was refused: an earlier login waited.)
# ===========================================================================
reset_stats($mon);
{
	my ($tx) = in_transaction('idler', 1);
	my $ea = idle_session('idler');
	usleep(100_000);
	my $eb = idle_session('idler');
	usleep(1_200_000);    # both idle past idler=1s, $ea the longest
	kill 'STOP', $ea->pid;
	my $c1 = c_new($node, 'idler');
	ok(poll_until($node, q{SELECT waiting FROM role_guard_summary}, '1'),
		'4b the first newcomer waits for the session it ended (stopped)');
	my $c2 = c_new($node, 'idler');
	alive_is([ $ea->pid, $eb->pid ], [ $ea->pid ],
		'4b the second newcomer ended the other idle session');
	is(c_wait($c1, 5), 'admitted', '4b the first newcomer gets the place it freed first')
	  or diag c_text($c1);
	is($c2->{state}, 'pending', '4b the second waits for the stopped one\'s place');
	kill 'CONT', $ea->pid;
	is(c_wait($c2, 5), 'admitted', '4b ... and gets it once that one has gone')
	  or diag c_text($c2);
	alive_is([ $ea->pid, $eb->pid ], [], '4b both idle sessions ended');
	is(scalar(events_where($node, { event => 'evicted' })), 2, '4b two evicted events');
	$tx->send($tx->query('COMMIT'));
	$tx->terminate;
	c_close($_) for ($c1, $c2);
	ok(poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'idler'}, '0'),
		'4b idler back to 0');
}

# ===========================================================================
# 4c. A reload while a login waits for the session it ended (held stopped):
#     decided again, it keeps that session's place to wait for; it neither
#     ends another nor is refused (no login_waits: the eviction's 5 s).
# ===========================================================================
reset_stats($mon);
{
	my @tx = in_transaction('idler', 2);
	my $ea = idle_session('idler');
	usleep(1_200_000);
	kill 'STOP', $ea->pid;
	my $c1 = c_new($node, 'idler');
	ok(poll_until($node, q{SELECT waiting FROM role_guard_summary}, '1'),
		'4c the newcomer waits for the session it ended (stopped)');
	ok(set_conf($node, 'role_guard.budgets' => 'idler=3, zz=5'), '4c a reload meanwhile');
	usleep(500_000);
	c_wait_any([$c1], 0.1);
	is($c1->{state}, 'pending', '4c the newcomer still waits after the reload')
	  or diag c_text($c1);
	kill 'CONT', $ea->pid;
	is(c_wait($c1, 5), 'admitted', '4c ... and gets the place once that session has gone')
	  or diag c_text($c1);
	is(scalar(events_where($node, { event => 'evicted' })), 1, '4c one evicted event');
	for (@tx)
	{
		$_->send($_->query('COMMIT'));
		$_->terminate;
	}
	c_close($c1);
	ok(set_conf($node, 'role_guard.budgets' => 'idler=3'), '4c budgets back');
	ok(poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'idler'}, '0'),
		'4c idler back to 0');
}

# ===========================================================================
# 5. +group and @database entries: the session ended is one the full entry
#    counts, even when a session outside it has been idle longer.
# ===========================================================================
reset_stats($mon);
ok( set_conf(
		$node,
		'role_guard.budgets'    => '+grp=2, @edb=2',
		'role_guard.evict_idle' => '+grp=1s, idler=1s, other=1s'),
	'group: budgets +grp=2, @edb=2; evict_idle +grp=1s, idler=1s, other=1s');
my $out  = idle_session('other');          # outside +grp, idle longest
my $gs1  = idle_session('g1');
my $gs2  = idle_session('g2');
touch($out);
usleep(200_000);
touch($gs2);
usleep(200_000);
touch($gs1);
usleep(1_200_000);
@pids = map { $_->pid } $out, $gs1, $gs2;
($r, $el) = timed_login('g1');
ok($r->{sock}, sprintf('group: g1 newcomer admitted (%.3f s)', $el)) or diag raw_result($r);
alive_is(\@pids, [ $out->pid, $gs1->pid ],
	'group: the longest-idle member of +grp (g2) was ended, not the longer-idle outsider');
evicted_client_ok($gs2, '1.0', 'group: g2 session');
event_is($node, { event => 'evicted' },
	{ pid => $gs2->pid, rolname => 'g2', detail => qr/its place in "\+grp=2" is wanted by a login of role "g1"/ },
	'group: evicted event names the g2 session and +grp=2');
raw_close($r->{sock});
close_all($out, $gs1);

reset_stats($mon);
my $outdb = idle_session('idler', 'postgres');    # outside @edb, idle longest
my $d1    = idle_session('idler', 'edb');
my $d2    = idle_session('other', 'edb');
touch($outdb);
usleep(200_000);
touch($d2);
usleep(200_000);
touch($d1);
usleep(1_200_000);
@pids = map { $_->pid } $outdb, $d1, $d2;
($r, $el) = timed_login('other', 'edb');
ok($r->{sock}, sprintf('database: newcomer in edb admitted (%.3f s)', $el)) or diag raw_result($r);
alive_is(\@pids, [ $outdb->pid, $d1->pid ],
	'database: the longest-idle session in edb was ended, not the longer-idle one in postgres');
evicted_client_ok($d2, '1.0', 'database: ended session');
event_is($node, { event => 'evicted' },
	{ pid => $d2->pid, rolname => 'other', datname => 'edb', detail => qr/its place in "\@edb=2"/ },
	'database: evicted event names it and @edb=2');
raw_close($r->{sock});
close_all($outdb, $d1);

# ===========================================================================
# 6. Monitor mode: nothing ended, a would_evict event, newcomer admitted.
# ===========================================================================
ok( set_conf(
		$node,
		'role_guard.mode'       => 'monitor',
		'role_guard.budgets'    => 'idler=3',
		'role_guard.evict_idle' => 'idler=1s'),
	'monitor: mode monitor, idler=3, evict_idle idler=1s');
reset_stats($mon);
@s = map { idle_session('idler') } 1 .. 3;
touch($s[1]);
usleep(200_000);
touch($s[0]);
touch($s[2]);
usleep(1_200_000);
@pids = map { $_->pid } @s;
my $mpos = log_pos($node);
($r, $el) = timed_login('idler');
ok($r->{sock}, 'monitor: newcomer admitted') or diag raw_result($r);
ok($el < 0.5, sprintf('monitor: at once (%.3f s)', $el));
usleep(300_000);
alive_is(\@pids, \@pids, 'monitor: no session ended');
event_is($node, { event => 'would_evict' },
	{ pid => $s[1]->pid, rolname => 'idler', detail => qr/role_guard\.evict_idle allows 1\.0 s/ },
	'monitor: one would_evict event naming the longest-idle session');
no_event_ok($node, { event => 'evicted' }, 'monitor: no evicted event');
like(log_since($node, $mpos),
	qr/LOG:  (?:00000: )?role_guard: session of role "idler" \(pid ${\ $s[1]->pid }\) would be ended to make room for a login of role "idler"/,
	'monitor: a LOG line names the session that would be ended');
is(evicted_count('idler'), '0', 'monitor: role_guard_usage.evicted = 0');
raw_close($r->{sock});
close_all(@s);
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'mode enforce again');

# ===========================================================================
# 7. A role not listed in evict_idle is never ended.
# ===========================================================================
ok(set_conf($node, 'role_guard.budgets' => 'plain=2'), 'unlisted: budget plain=2 (evict_idle idler=1s)');
reset_stats($mon);
@s = map { idle_session('plain') } 1 .. 2;
usleep(1_300_000);
@pids = map { $_->pid } @s;
($r, $el) = timed_login('plain');
is(raw_result($r),
	'53300 too many connections for role "plain" DETAIL: role_guard budget "plain=2" is full (2 of 2 sessions).',
	'unlisted: newcomer refused');
ok($el < 0.5, sprintf('unlisted: at once (%.3f s)', $el));
alive_is(\@pids, \@pids, 'unlisted: nobody ended');
no_event_ok($node, { event => [ 'evicted', 'would_evict' ] }, 'unlisted: no eviction event');
close_all(@s);

# ===========================================================================
# 8. Two full entries: an eviction would admit nobody, so none is made.
# ===========================================================================
ok( set_conf(
		$node,
		'role_guard.budgets'    => '+grp=2, @edb=1',
		'role_guard.evict_idle' => 'g1=1s',
		'role_guard.login_waits' => ''),
	'two entries: budgets +grp=2, @edb=1, evict_idle g1=1s');
reset_stats($mon);
my $g1 = idle_session('g1');
my $g2 = idle_session('g2', 'edb');
usleep(1_300_000);
@pids = ($g1->pid, $g2->pid);
($r, $el) = timed_login('g2', 'edb');
like(raw_result($r), qr/^53300 too many connections for /,
	'two entries: the second login of g2 to edb is refused');
unlike(raw_result($r), qr/waited|login_waits/,
	'two entries: its DETAIL speaks of no wait');
ok($el < 2, sprintf('two entries: refused at once (%.3f s)', $el));
alive_is(\@pids, \@pids, 'two entries: the idle g1 session is not ended');
no_event_ok($node, { event => [ 'evicted', 'would_evict' ] },
	'two entries: no eviction event');
ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'two entries: monitor mode');
($r, $el) = timed_login('g2', 'edb');
ok($r->{sock}, 'two entries, monitor: admitted');
raw_close($r->{sock});
no_event_ok($node, { event => [ 'evicted', 'would_evict' ] },
	'two entries, monitor: no would_evict event either');
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'two entries: enforce again');
# one full entry again: now g1's place is the one thing in the way
ok(set_conf($node, 'role_guard.budgets' => '+grp=2'), 'one entry: budgets +grp=2');
($r, $el) = timed_login('g2', 'postgres');
ok($r->{sock}, 'one entry: the login is admitted') or diag raw_result($r);
alive_is(\@pids, [ $g2->pid ], 'one entry: the idle g1 session was ended for it');
raw_close($r->{sock});
close_all($g2);

# ===========================================================================
# 8b. Two full entries that both count one idle session: its place is a
#     place in each, so it is ended and the login admitted.  g1 and g2 idle
#     in edb; +grp=2 and @edb=2 are both full; g1's session is counted by
#     both (a member of grp, in edb).
# ===========================================================================
ok(set_conf($node, 'role_guard.budgets' => '+grp=2, @edb=2'),
	'two entries, one session in both: budgets +grp=2, @edb=2');
reset_stats($mon);
$g1 = idle_session('g1', 'edb');
$g2 = idle_session('g2', 'edb');
usleep(1_300_000);
@pids = ($g1->pid, $g2->pid);
($r, $el) = timed_login('g2', 'edb');
ok($r->{sock}, 'two entries, one session in both: the login is admitted')
  or diag raw_result($r);
alive_is(\@pids, [ $g2->pid ], 'two entries, one session in both: the idle g1 session was ended');
evicted_client_ok($g1, '1.0', 'two entries, one session in both');
raw_close($r->{sock});
close_all($g2);

$mon->quit;
$node->stop;
note sprintf('061_eviction: %.1f s', time - $t_start);
done_testing();
