
# Copyright: see README.md.
#
# A chaos soak: many clients log in and out for a while (60 s on
# PostgreSQL 15, 20 s on later versions; RG_SOAK_SECONDS for a longer run)
# as roles with role, +group, @db and name@db budgets, a reservation, login
# waits, eviction, idle and idle-in-transaction limits, holding their
# sessions for random times (some idle in a transaction, some busy), while
# a chaos actor terminates sessions, SIGKILLs one backend (a crash-restart),
# reloads changed reservations and limits, and creates and drops roles.
#
# Invariants, checked all along and at the end:
#  - role_guard's counts are never above a budget (the largest value the
#    entry had in any configuration the run uses: lowering a budget on
#    reload ends nobody);
#  - after quiescence (every client gone), role_guard's counts equal
#    pg_stat_activity's, per role and in total (no leak either way):
#    checked halfway (after the crash-restart) and at the end;
#  - only the SQLSTATEs the contract names reach clients, and a login that
#    the reservation covers is never refused by role_guard, never gets
#    core's "too many clients", and never core's reserved-slot refusal
#    three times in a row (core may refuse it for a moment while logins
#    role_guard has not decided yet are in flight: the documented guarantee
#    is that a retry gets in), but while the server restarts after the
#    crash;
#  - no PANIC, no TRAP, no crash but the one caused.
# It prints its figures: logins tried, admitted, refused by reason, waits,
# evictions, reaps, kills, reloads.  All randomness comes from one seed,
# printed (RG_SOAK_SEED to replay a run).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IO::Select;
use List::Util qw(max sum0);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest
  qw(:DEFAULT c_new c_update c_write c_close log_pos log_since);

my $seed = $ENV{RG_SOAK_SEED} // 20261207;
srand($seed);

# ---------------------------------------------------------------------------
# The server and its roles.  30 connections, 3 of them for superusers: 27
# slots for 28 clients, so core's own limit is reached too.
# ---------------------------------------------------------------------------
my %config = (
	A => {
		'role_guard.budgets' =>
		  '+web=8, app1=5, batch=4, crit=4, rpt@soakdb=3, @soakdb=10, bulk=12, *=3',
		'role_guard.reservations'                   => 'crit=3',
		'role_guard.idle_timeouts'                  => 'batch=3s',
		'role_guard.idle_in_transaction_timeouts'   => 'batch=2s, +web=4s',
		'role_guard.evict_idle'                     => '+web=2s',
		'role_guard.login_waits'                    => 'app1=2s, rpt=1s, bulk=500ms',
	},
	B => {
		'role_guard.budgets' =>
		  '+web=7, app1=4, batch=3, crit=4, rpt@soakdb=2, @soakdb=9, bulk=10, *=2',
		'role_guard.reservations'                   => 'crit=2',
		'role_guard.idle_timeouts'                  => 'batch=2s',
		'role_guard.idle_in_transaction_timeouts'   => 'batch=1500ms, +web=3s',
		'role_guard.evict_idle'                     => '+web=1500ms',
		'role_guard.login_waits'                    => 'app1=1s, rpt=2s',
	});
# the most each entry allows in any configuration
my %most = (
	'+web' => 8,
	app1 => 5,
	batch => 4,
	crit => 4,
	'rpt@soakdb' => 3,
	'@soakdb' => 10,
	bulk => 12,
	'*' => 3);
# a crit login is covered while crit holds fewer than this (the smaller
# reservation): the client keeps crit's logins in flight below it
my $crit_covered = 2;

my $node = rg_node(
	'chaos_soak',
	conf => "max_connections = 30\n"
	  . "superuser_reserved_connections = 3\n"
	  . "role_guard.reap_interval = '200ms'\n"
	  . "role_guard.max_waiting_logins = 4\n"
	  . "restart_after_crash = on\n"
	  . "log_min_messages = warning\n"
	  . join('', map { "$_ = '$config{A}{$_}'\n" } sort keys %{ $config{A} }));
my $su = $node->safe_psql('postgres', 'SELECT current_user');
$node->safe_psql(
	'postgres', q{
CREATE DATABASE soakdb;
CREATE ROLE web NOLOGIN;
CREATE ROLE app1 LOGIN IN ROLE web;
CREATE ROLE app2 LOGIN IN ROLE web;
CREATE ROLE batch LOGIN;
CREATE ROLE crit LOGIN;
CREATE ROLE rpt LOGIN;
CREATE ROLE bulk LOGIN;
CREATE ROLE mix LOGIN;
});
$node->safe_psql('postgres', 'CREATE EXTENSION role_guard');

my $seconds = $ENV{RG_SOAK_SECONDS}
  // ($node->safe_psql('postgres', 'SHOW server_version_num') >= 160000
	? 20
	: 60);
diag "chaos soak: $seconds s, seed $seed (RG_SOAK_SEED=$seed to replay)";

# ---------------------------------------------------------------------------
# Figures and failures.
# ---------------------------------------------------------------------------
my %fig = map { $_ => 0 } qw(tried admitted reloads terminations kills
  roles_created roles_dropped quiescence_checks samples);
my %refused;     # reason => count
my %ended;       # how admitted sessions ended => count
my @failures;    # invariant violations, each a line

sub fail_inv
{
	my ($what) = @_;
	push @failures, sprintf('%.1f s: %s', time - $main::t0, $what);
	diag "INVARIANT: $what" if @failures <= 20;
	return;
}

# The server as the superuser over the socket (exempt from budgets).
# Returns stdout, or undef when it could not answer (crash-restart; psql
# refused while the server restarts may exit before it reads the query,
# and IPC::Run then dies writing it, EPIPE: CI on 18 saw that once).
sub sql
{
	my ($q) = @_;
	my $timed_out;
	my ($ret, $out, $err) = eval {
		$node->psql(
			'postgres', $q,
			timeout   => 60,
			timed_out => \$timed_out);
	};
	return defined $ret && $ret == 0 && !$timed_out ? $out : undef;
}

# ---------------------------------------------------------------------------
# Clients.  Each of 28 places runs one login after another: a role (and
# database) at random, held for a random time as idle, busy, chatty or idle
# in a transaction; then closed, and another.  Two places are crit's.
# ---------------------------------------------------------------------------
my @kinds = (
	([ 'app1',  'postgres' ]) x 5,
	([ 'app2',  'postgres' ]) x 5,
	([ 'batch', 'postgres' ]) x 3,
	([ 'rpt',   'soakdb' ]) x 3,
	([ 'bulk',  'postgres' ]) x 6,
	([ 'mix',   'soakdb' ]) x 3,
	([ 'tmp',   'postgres' ]) x 1);
my @places = map { { n => $_, crit => $_ < $crit_covered } } 0 .. 27;
my @tmp_roles;    # tmp roles that exist now, oldest first
my $tmp_next = 1;
my $crash_at;     # when the backend was SIGKILLed
my $crash_over;   # when a login first got in after it
my $paused = 0;   # no new logins (quiescence checks)

sub in_crash_window
{
	my ($t) = @_;
	return defined $crash_at && $t >= $crash_at
	  && (!defined $crash_over || $t <= $crash_over + 1);
}

sub query
{
	my ($c, $sql) = @_;
	return c_write($c, pack('a N', 'Q', 4 + length($sql) + 1) . "$sql\0");
}

sub start_login
{
	my ($p) = @_;
	my ($user, $db) =
	  $p->{crit} ? ('crit', 'postgres') : @{ $kinds[ int(rand(@kinds)) ] };
	if ($user eq 'tmp')
	{
		return unless @tmp_roles;
		$user = $tmp_roles[ int(rand(@tmp_roles)) ];
	}
	$fig{tried}++;
	my $c = eval { c_new($node, $user, db => $db, app => "soak$p->{n}") };
	if (!$c)
	{
		$refused{'no connection (server restarting)'}++;
		fail_inv("cannot connect outside the crash-restart: $@")
		  unless in_crash_window(time);
		$p->{next} = time + 0.2;
		return;
	}
	$p->{c} = $c;
	return;
}

# A refused login: classify it, and check it against the contract.
sub refused_login
{
	my ($p, $c) = @_;
	my $e = $c->{err} // {};
	my ($code, $msg, $detail) = ($e->{C} // '', $e->{M} // '', $e->{D} // '');
	my $why;
	if ($code eq '53300' && $detail =~ /role_guard\.reservations/)
	{
		$why = 'role_guard: reserved slots';
	}
	elsif ($code eq '53300' && $detail =~ /^role_guard budget /)
	{
		$why = 'role_guard: budget'
		  . ($detail =~ /role_guard\.login_waits/ ? ' (after waiting)' : '');
	}
	elsif ($code eq '53300' && $msg =~ /^sorry, too many clients already/)
	{
		$why = 'core: too many clients';
	}
	elsif ($code eq '53300' && $msg =~ /^remaining connection slots are reserved/)
	{
		$why = 'core: reserved slots';
	}
	elsif ($code eq '57P03')
	{
		$why = 'server restarting (57P03)';
		fail_inv("57P03 outside the crash-restart: $msg")
		  unless in_crash_window($c->{t0});
	}
	elsif ($code eq '28000' && $c->{user} =~ /^tmp_/ && $msg =~ /does not exist/)
	{
		$why = 'dropped role (28000)';
	}
	elsif ($c->{state} eq 'eof'
		&& (in_crash_window($c->{t0}) || in_crash_window(time)))
	{
		$why = 'closed by the crash-restart';
	}
	else
	{
		$why = "unexpected: $code $msg";
		fail_inv("login of $c->{user}: $code $msg"
			  . ($detail ne '' ? " DETAIL: $detail" : '')
			  . " ($c->{state})");
	}
	if ($p->{crit} && !in_crash_window($c->{t0}) && !in_crash_window(time))
	{
		# Core may refuse a covered login its reserved slots for a moment
		# while other logins are in flight that role_guard has not decided
		# yet (authenticating: they hold process slots before its hook
		# runs); the documented guarantee is that a retry gets in.  So
		# core's reserved-slot refusal is retried at once, and it is a
		# violation when three tries in a row are refused, or when anything
		# else refuses it: core's "too many clients" never may.
		my $by_core = $why eq 'core: reserved slots';
		$fig{crit_core_retried}++ if $by_core;
		if (!$by_core || ++$p->{core_refusals} >= 3)
		{
			fail_inv("a crit login the reservation covers was refused"
				  . ($by_core ? " $p->{core_refusals} times in a row" : '')
				  . ": $code $msg"
				  . ($detail ne '' ? " DETAIL: $detail" : ''));
		}
		$p->{retry_now} = 1 if $by_core;
	}
	$refused{$why}++;
	return;
}

# An admitted session ended by the server: classify it.
sub ended_by_server
{
	my ($p, $c) = @_;
	my ($code, $msg) = ('', '');
	foreach my $m (@{ $c->{msgs} })
	{
		next unless $m->[0] eq 'E';
		my $f = RoleGuardTest::_error_fields($m->[1]);
		($code, $msg) = ($f->{C}, $f->{M}) if ($f->{V} // '') =~ /FATAL|PANIC/;
	}
	my $why;
	if ($code eq '57P05' && $msg =~ /make room/)
	{
		$why = 'evicted (57P05)';
	}
	elsif ($code eq '57P05')
	{
		$why = 'reaped idle (57P05)';
	}
	elsif ($code eq '25P03')
	{
		$why = 'reaped idle in transaction (25P03)';
	}
	elsif ($code eq '57P01')
	{
		$why = 'terminated (57P01)';
	}
	elsif ($code eq '57P02' || ($code eq '' && in_crash_window(time)))
	{
		$why = 'crash-restart';
	}
	else
	{
		$why = "unexpected: $code $msg";
		fail_inv("session of $c->{user} ended: '$code $msg'");
	}
	$ended{$why}++;
	return;
}

sub admitted
{
	my ($p, $c) = @_;
	$fig{admitted}++;
	$crash_over //= time if defined $crash_at && $c->{t0} > $crash_at;
	my $r = rand();
	$p->{until} = time + 0.2 + rand(5);
	$p->{mode} =
	    $r < 0.45 ? 'idle'
	  : $r < 0.65 ? 'iit'
	  : $r < 0.85 ? 'busy'
	  :             'chatty';
	if ($p->{mode} eq 'iit')
	{
		query($c, 'BEGIN; SELECT 1');
	}
	elsif ($p->{mode} eq 'busy')
	{
		query($c, sprintf('SELECT pg_sleep(%.2f)', 0.1 + rand(1.5)));
	}
	$p->{chat} = time + 0.3;
	return;
}

# One step of a place's client.
sub step
{
	my ($p, $now) = @_;
	my $c = $p->{c};
	if (!$c)
	{
		# crit's places start a login only once their last backend has
		# gone (its count given back): crit never holds more than its
		# places, so each of its logins is one the reservation covers
		return if $p->{crit} && $p->{last_pid} && kill(0, $p->{last_pid});
		delete $p->{last_pid};
		start_login($p) if !$paused && $now >= ($p->{next} // 0);
		return;
	}
	$p->{last_pid} = $c->{pid} if $c->{pid};
	c_update($c);
	if ($c->{state} eq 'pending')
	{
		fail_inv("login of $c->{user} unanswered for 90 s")
		  if $now - $c->{t0} > 90 && !$c->{stuck}++;
		return;
	}
	if ($c->{state} ne 'admitted')
	{
		refused_login($p, $c);
		c_close($c);
		delete $p->{c};
		$p->{next} = delete $p->{retry_now} ? $now : $now + rand(0.3);
		return;
	}
	if (!$p->{mode})
	{
		$p->{core_refusals} = 0;
		admitted($p, $c);
		return;
	}
	if ($c->{eof})
	{
		ended_by_server($p, $c);
		c_close($c);
		delete $p->{c};
		delete $p->{mode};
		$p->{next} = $now + rand(0.3);
		return;
	}
	if ($now >= $p->{until} || $paused)
	{
		$ended{'closed by its client'}++;
		c_close($c);
		delete $p->{c};
		delete $p->{mode};
		$p->{next} = $now + rand(0.5);
		return;
	}
	if ($p->{mode} eq 'chatty' && $now >= $p->{chat})
	{
		# one at a time: only once the previous answer came
		my $z = grep { $_->[0] eq 'Z' } @{ $c->{msgs} };
		if ($z >= ($p->{sent} // 0))
		{
			query($c, 'SELECT 1');
			$p->{sent} = $z + 1;
		}
		$p->{chat} = $now + 0.3;
	}
	return;
}

# ---------------------------------------------------------------------------
# Invariants sampled while it runs.
# ---------------------------------------------------------------------------
sub sample
{
	$fig{samples}++;
	my $rows = sql(
		q{SELECT 'role:' || rolname, connections FROM role_guard_usage
		  WHERE NOT superuser AND connections > 0
		  UNION ALL
		  SELECT entry, connections FROM role_guard_budgets WHERE kind <> 'default'});
	return unless defined $rows;
	foreach my $line (split /\n/, $rows)
	{
		my ($what, $n) = split /\|/, $line;
		my $limit;
		if ($what =~ /^role:(.*)$/)
		{
			my $role = $1;
			$limit = $most{$role} // $most{'*'};
		}
		else
		{
			$limit = $most{$what};
		}
		fail_inv("$what holds $n sessions, budget at most $limit")
		  if defined $limit && $n > $limit;
	}
	return;
}

# Close every client, wait until the server has no client session but the
# one asking, and compare role_guard's counts with pg_stat_activity's.
sub quiescence_check
{
	my ($when) = @_;
	$paused = 1;
	foreach my $p (@places)
	{
		next unless $p->{c};
		c_update($p->{c});
		$ended{'closed by its client'}++ if $p->{c}{state} eq 'admitted';
		c_close($p->{c});
		delete $p->{c};
		delete $p->{mode};
	}
	$fig{quiescence_checks}++;
	my $q = q{
WITH a AS (SELECT coalesce(usename, '?') AS rolname, count(*) AS n
           FROM pg_stat_activity WHERE backend_type = 'client backend'
           GROUP BY 1),
     u AS (SELECT rolname::text, connections AS n FROM role_guard_usage
           WHERE connections > 0)
SELECT coalesce(string_agg(coalesce(a.rolname, u.rolname) || ' activity '
                           || coalesce(a.n, 0) || ' role_guard ' || coalesce(u.n, 0),
                           ', ' ORDER BY 1), 'same')
       || '; total activity ' || (SELECT sum(n) FROM a)
       || ' role_guard ' || (SELECT connections FROM role_guard_summary)
FROM a FULL JOIN u ON a.rolname = u.rolname
WHERE a.n IS DISTINCT FROM u.n};
	my $deadline = time + 120;
	my $got = '';
	while (time < $deadline)
	{
		$got = sql($q) // 'no answer';
		last if $got =~ /^same; total activity (\d+) role_guard \1$/;
		usleep(200_000);
	}
	like($got, qr/^same; total activity (\d+) role_guard \1$/,
		"$when: after quiescence role_guard's counts equal pg_stat_activity's, per role and in total"
	);
	$paused = 0;
	return;
}

# Counters role_guard keeps (a crash-restart starts them again: the sum of
# what was read before it and at the end).
my %rg_before_crash;

sub rg_totals
{
	my $row = sql(
		q{SELECT sum(waited), sum(wait_timeouts), sum(evicted), sum(reaped),
		         sum(rejected) FROM role_guard_usage});
	return undef unless defined $row;
	my %t;
	@t{qw(waited wait_timeouts evicted reaped rejected)} =
	  map { $_ eq '' ? 0 : $_ } split /\|/, $row;
	return \%t;
}

# ---------------------------------------------------------------------------
# Chaos.
# ---------------------------------------------------------------------------
sub admitted_places
{
	return grep { $_->{c} && $_->{c}{state} eq 'admitted' && $_->{c}{pid} }
	  @places;
}

sub chaos_terminate
{
	my @a = admitted_places();
	return unless @a;
	my $pid = $a[ int(rand(@a)) ]{c}{pid};
	$fig{terminations}++ if defined sql("SELECT pg_terminate_backend($pid)");
	return;
}

sub chaos_reload
{
	my $name = $fig{reloads} % 2 ? 'A' : 'B';
	my $set = join('',
		map { "ALTER SYSTEM SET $_ = '$config{$name}{$_}';\n" }
		  sort keys %{ $config{$name} });
	$fig{reloads}++ if defined sql($set . "SELECT pg_reload_conf();");
	return;
}

sub chaos_roles
{
	my $name = 'tmp_' . $tmp_next++;
	if (defined sql("CREATE ROLE $name LOGIN"))
	{
		push @tmp_roles, $name;
		$fig{roles_created}++;
	}
	if (@tmp_roles > 3)
	{
		my $old = shift @tmp_roles;
		$fig{roles_dropped}++ if defined sql("DROP ROLE $old");
	}
	return;
}

sub chaos_kill
{
	my @a = admitted_places();
	return 0 unless @a;
	$rg_before_crash{$_} = 0 foreach qw(waited wait_timeouts evicted reaped rejected);
	my $t = rg_totals();
	%rg_before_crash = %$t if $t;
	my $pid = $a[ int(rand(@a)) ]{c}{pid};
	$crash_at = time;
	return 0 unless kill 'KILL', $pid;
	$fig{kills}++;
	diag sprintf('%.1f s: SIGKILL to backend %d (crash-restart)', time - $main::t0, $pid);
	return 1;
}

# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------
my $log_start = log_pos($node);
$main::t0 = time;
my $end        = $main::t0 + $seconds;
my $kill_at    = $main::t0 + $seconds * 0.35;
my $half       = $main::t0 + $seconds * 0.55;
# each chaos action: what it does, when first, and the gap before the
# next (at least, and a random part on top)
my @chaos = (
	{ act => \&chaos_terminate, next => $main::t0 + 1.5, gap => 0.5, rand => 2 },
	{ act => \&chaos_reload,    next => $main::t0 + 3,   gap => 2,   rand => 4 },
	{ act => \&chaos_roles,     next => $main::t0 + 2,   gap => 1,   rand => 3 },
	{ act => \&sample,          next => $main::t0 + 1,   gap => 0.5, rand => 1 });
my $half_done = 0;

while ((my $now = time) < $end)
{
	IO::Select->new(map { $_->{c}{sock} } grep { $_->{c} } @places)
	  ->can_read(0.02);
	$now = time;
	step($_, $now) foreach @places;
	if (!$fig{kills} && $now >= $kill_at)
	{
		$kill_at = $now + 0.5 unless chaos_kill();
	}
	foreach my $ch (grep { $now >= $_->{next} } @chaos)
	{
		$ch->{act}->();
		$ch->{next} = $now + $ch->{gap} + rand($ch->{rand});
	}
	if (!$half_done && $now >= $half && $fig{kills})
	{
		quiescence_check('halfway, after the crash-restart');
		$half_done = 1;
	}
}
quiescence_check('at the end');
sample();

# ---------------------------------------------------------------------------
# The server log: no PANIC, no TRAP, no crash but the one caused.
# ---------------------------------------------------------------------------
my $log = log_since($node, $log_start);
my @signals = $log =~ /was terminated by signal (\d+)/g;
is(join(',', grep { $_ != 9 } @signals), '',
	'no process ended by a signal but SIGKILL');
ok(@signals >= $fig{kills}, 'the SIGKILLed backend is in the server log');
is(scalar(() = $log =~ /\bPANIC:/g), 0, 'no PANIC in the server log');
is(scalar(() = $log =~ /\bTRAP:/g), 0, 'no TRAP (failed assertion) in the server log');
is(scalar(() = $log =~ /terminated by exception/g), 0, 'no process ended by an exception');
ok($fig{kills} >= 1, 'the chaos actor SIGKILLed a backend once');

is(scalar(@failures), 0, 'no invariant broken during the run')
  or diag join("\n", @failures > 50 ? (@failures[ 0 .. 49 ], '...') : @failures);

# ---------------------------------------------------------------------------
# Figures.
# ---------------------------------------------------------------------------
my $t = rg_totals() // {};
my %rg = map { $_ => ($rg_before_crash{$_} // 0) + ($t->{$_} // 0) }
  qw(waited wait_timeouts evicted reaped rejected);
my $refused_total = sum0(values %refused);
my $text = sprintf(
	"chaos soak figures (%d s, seed %d, PostgreSQL %s):\n"
	  . "  logins tried %d, admitted %d, refused %d\n"
	  . "%s"
	  . "  sessions ended:\n%s"
	  . "  role_guard's counters (summed across the crash-restart): waited %d, "
	  . "wait timeouts %d, evicted %d, reaped %d, rejected %d\n"
	  . "  chaos: terminations %d, SIGKILLs %d, reloads %d, roles created %d, dropped %d\n"
	  . "  covered logins refused by core for a moment and retried: %d\n"
	  . "  invariant samples %d, quiescence checks %d, violations %d",
	$seconds, $seed,
	$node->safe_psql('postgres', 'SHOW server_version'),
	$fig{tried}, $fig{admitted}, $refused_total,
	join('', map { "    refused: $_: $refused{$_}\n" } sort keys %refused),
	join('', map { "    $_: $ended{$_}\n" } sort keys %ended),
	@rg{qw(waited wait_timeouts evicted reaped rejected)},
	@fig{qw(terminations kills reloads roles_created roles_dropped)},
	$fig{crit_core_retried} // 0,
	@fig{qw(samples quiescence_checks)},
	scalar(@failures));
diag $text;
ok($fig{admitted} > 0 && $refused_total > 0, 'logins were admitted and refused');

$node->stop;
done_testing();
