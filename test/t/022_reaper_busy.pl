
# Copyright: see README.md.
#
# The reaper and sessions that have just done long work.  A session is idle
# only while its backend waits for the client's next command (outside COPY
# FROM STDIN), and its idle time starts when that wait began, whatever the
# statement did inside; role_guard_usage.statements grows by one per
# statement the client sent, whatever ran inside it.
#
# Each case runs ~3.5-4 s of work that is not a plain top-level executor
# statement, with both limits 2 s and reap_interval = 200ms:
#   prune         SELECT pg_sleep(4) FROM pt WHERE k = f(): initial partition
#                 pruning at executor start-up runs the SQL function f()
#   portal_iit    extended protocol, the JDBC setFetchSize pattern in a
#                 transaction block: Bind/Execute P1 with a row limit, Sync;
#                 another Parse/Bind/Execute/Sync; Execute P1 again (the 4 s
#                 fetch), Sync
#   portal_idle   the same interleaving with no Sync in between, outside a
#                 transaction block, the other statement's portal closed
#                 (Close) before P1 runs again
#   portal_pipe   the same, the other statement's portal left open
#   spi           a plpgsql function doing SPI, then returning
#   cursor        DECLARE CURSOR, FETCH 1, then a long FETCH ALL in a block
#   trigger       an AFTER ROW trigger doing long work
#   explain       EXPLAIN ANALYZE of a long query
#   deferred      a deferred constraint trigger doing long work at COMMIT
#   deferred_auto the same at the end of an autocommit INSERT
#   ext_exec      Parse/Bind/Execute/Sync, the Execute long
#   ext_plan      Parse/Bind/Execute/Sync, the Bind long (planning folds an
#                 IMMUTABLE plpgsql function)
#   ext_bind      Parse/Bind/Execute/Sync, the Bind long (a parameter of a
#                 domain whose CHECK runs a SQL function, then a slow one)
#   ext_bind_only Parse/Bind/Sync of an INSERT (whose executor does not
#                 start at Bind), the Bind long, no Execute
# The trigger functions and the domain's CHECK also call a SQL function
# (SECURITY DEFINER, so not inlined) from a plpgsql simple expression or
# from the Bind: a query run outside the executor's top-level statement.
#
# Every case runs in four sessions at once, each of its own role:
# track_activities on (plain role) or off (superuser role, SET in the
# session: no session setting can switch reaping off, either way), and
#   a: idle 0.8 s after the long work, then a query on it must still work;
#      left idle from there, it must be reaped;
#   b: left idle right after the long work.
# Then: seen alive until limit - 0.5 s after it went idle, gone by limit +
# interval + slack, the reaper's LOG line gives an idle time that counts
# from when it went idle (not from before the long work), the server log has
# the backend's FATAL with SQLSTATE 57P05 (idle) or 25P03 (idle in
# transaction), and role_guard_usage.statements grew by exactly the number
# of statements the client sent.
#
# All sessions are opened first and wait on an advisory lock the monitor
# holds (busy, so not reaped), then start together.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT wait_log reap_log_re ts_epoch monitor_session);

my $LIMIT    = 2.0;    # both limits, every case role
my $INTERVAL = 0.2;    # role_guard.reap_interval
my $SLACK    = 2.0;    # scheduling slack on a loaded 2-core machine
my $IDLE_A   = 0.8;    # variant a: idle this long before its query
my $GATE     = 'SELECT pg_advisory_lock_shared(2202), pg_advisory_unlock_shared(2202)';

# the fetch: row 1 at once, rows 2..5 one second each
my $PQ = 'SELECT g, pg_sleep(CASE WHEN g = 1 THEN 0 ELSE 1 END) FROM generate_series(1, 5) g';
my $CQ = 'SELECT g, pg_sleep(CASE WHEN g = 1 THEN 0 ELSE 0.9 END) FROM generate_series(1, 5) g';

# ---------------------------------------------------------------------------
# The cases.  proto: psql (simple protocol, one Query per statement) or
# wire (RoleGuardTest::Wire).  psql: sql is the statements, run in order
# after the gate (the last one is the long work).  wire: batches, a sub
# giving the messages (after the gate) and nz, the ReadyForQuery messages
# they bring.  stmts: statements the client sent (gate not included);
# undef: not checked.  check: the output (psql) or [rows, status] (wire).
# ---------------------------------------------------------------------------
my $slowint_oid;

# A psql case: its statements @sql, each one counted; $check its output.
sub psql_case
{
	my ($name, $kind, $check, @sql) = @_;
	return {
		name  => $name,
		proto => 'psql',
		kind  => $kind,
		sql   => \@sql,
		stmts => scalar(@sql),
		check => $check,
	};
}

# A wire case left idle (not in a transaction block) after its one Sync:
# $msgs->($w) gives its messages, $rows the rows they bring.
sub wire_case
{
	my ($name, $stmts, $rows, $msgs) = @_;
	return {
		name  => $name,
		proto => 'wire',
		kind  => 'idle',
		stmts => $stmts,
		nz    => 1,
		msgs  => $msgs,
		check => [ $rows, 'I' ],
	};
}

# The messages of P1 fetched in two Executes ($PQ's row 1, then the rest)
# with the unnamed SELECT 2 between them, no Sync until the end; with
# $close, SELECT 2's portal is closed before P1 runs again.
sub portal_msgs
{
	my ($w, $close) = @_;
	return (
		$w->parse('S1', $PQ), $w->bind('P1', 'S1'), $w->execute('P1', 1),
		$w->parse('', 'SELECT 2'), $w->bind('', ''), $w->execute('', 0),
		$close ? $w->close_portal('') : (),
		$w->execute('P1', 0), $w->sync);
}

# The messages of one unnamed statement: Parse, Bind, Execute (none with
# $no_exec), Sync; with $param, its one parameter, a slowint, as text.
sub unnamed_msgs
{
	my ($w, $sql, $param, $no_exec) = @_;
	my @p = defined $param ? ($param) : ();
	return (
		$w->parse('', $sql, defined $param ? ($slowint_oid) : ()),
		$w->bind('', '', @p),
		$no_exec ? () : $w->execute('', 0),
		$w->sync);
}

my @CASES = (
	psql_case('prune', 'idle', qr/^\|t$/, 'SELECT pg_sleep(4) FROM pt WHERE k = f()'),
	{
		name  => 'portal_iit',
		proto => 'wire',
		kind  => 'idle in transaction',
		stmts => 3,      # BEGIN, the P1 query (two Executes), SELECT 2
		nz    => 3,
		msgs  => sub {
			my ($w) = @_;
			return (
				$w->parse('', 'BEGIN'), $w->bind('', ''), $w->execute('', 0),
				$w->parse('S1', $PQ),   $w->bind('P1', 'S1'),
				$w->describe_portal('P1'), $w->execute('P1', 1), $w->sync,
				$w->parse('', 'SELECT 2'), $w->bind('', ''), $w->execute('', 0),
				$w->sync,
				$w->execute('P1', 0), $w->sync);
		},
		check => [ '|t,1|,2,2|,3|,4|,5|', 'T' ],
	},
	wire_case('portal_idle', 2, '|t,1|,2,2|,3|,4|,5|', sub { portal_msgs($_[0], 1) }),
	wire_case('portal_pipe', 2, '|t,1|,2,2|,3|,4|,5|', sub { portal_msgs($_[0], 0) }),
	psql_case('spi', 'idle', qr/^\|t\n2$/, 'SELECT rg_spi_long()'),
	psql_case(
		'cursor', 'idle in transaction',
		qr/^\|t\n1\|\n2\|\n3\|\n4\|\n5\|$/,
		'BEGIN', "DECLARE c CURSOR FOR $CQ", 'FETCH 1 FROM c', 'FETCH ALL FROM c'),
	psql_case('trigger', 'idle', qr/^\|t$/, 'INSERT INTO trig_t VALUES (1)'),
	psql_case(
		'explain', 'idle',
		qr/^\|t\nResult .*actual time=3[5-9]\d\d/s,
		'EXPLAIN ANALYZE SELECT pg_sleep(3.5)'),
	psql_case('deferred', 'idle', qr/^\|t$/,
		'BEGIN', 'INSERT INTO def_t VALUES (1)', 'COMMIT'),
	psql_case('deferred_auto', 'idle', qr/^\|t$/, 'INSERT INTO def_t VALUES (2)'),
	wire_case('ext_exec', 1, '|t,', sub { unnamed_msgs($_[0], 'SELECT pg_sleep(3.5)') }),
	wire_case('ext_plan', 1, '|t,42', sub { unnamed_msgs($_[0], 'SELECT rg_slow_imm(41)') }),
	wire_case('ext_bind', 1, '|t,42',
		sub { unnamed_msgs($_[0], 'SELECT $1::int + 1', '41') }),
	# a statement bound, never executed: statements not checked
	wire_case('ext_bind_only', undef, '|t',
		sub { unnamed_msgs($_[0], 'INSERT INTO bind_t VALUES ($1::int)', '41', 1) }),
);

# ---------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------
my (@roles, %case_of);
foreach my $c (@CASES)
{
	foreach my $mode ('on', 'off')
	{
		foreach my $v ('a', 'b')
		{
			my $role = "rg_$c->{name}_${mode}_$v";
			push @roles, $role;
			$case_of{$role} = { case => $c, mode => $mode, v => $v };
		}
	}
}
my $limits = join(', ', map { "$_=2s" } @roles);

my $node = rg_node(
	'reaper_busy',
	conf => qq{
log_timezone = 'UTC'
max_connections = 90
idle_session_timeout = '10min'
role_guard.reap_interval = '200ms'
});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
CREATE TABLE pt (k int, v text) PARTITION BY LIST (k);
CREATE TABLE pt_1 PARTITION OF pt FOR VALUES IN (1);
CREATE TABLE pt_2 PARTITION OF pt FOR VALUES IN (2);
INSERT INTO pt VALUES (1, 'one'), (2, 'two');
CREATE FUNCTION f() RETURNS int LANGUAGE sql STABLE SECURITY DEFINER AS 'SELECT 1';
CREATE FUNCTION rg_quick(int) RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
  AS 'SELECT $1 IS NOT NULL';
CREATE FUNCTION rg_spi_long() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  PERFORM pg_sleep(3.5);
  SELECT count(*) INTO n FROM pt;
  RETURN n;
END $$;
CREATE FUNCTION rg_slow_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF rg_quick(1) THEN
    PERFORM pg_sleep(3.5);
  END IF;
  RETURN NULL;
END $$;
CREATE TABLE trig_t (i int);
CREATE TRIGGER trig_slow AFTER INSERT ON trig_t FOR EACH ROW EXECUTE FUNCTION rg_slow_trg();
CREATE TABLE def_t (i int);
CREATE CONSTRAINT TRIGGER def_slow AFTER INSERT ON def_t DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION rg_slow_trg();
CREATE FUNCTION rg_slow_imm(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  PERFORM pg_sleep(3.5);
  RETURN $1 + 1;
END $$;
CREATE FUNCTION rg_slow_check(int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(3.5);
  RETURN true;
END $$;
CREATE DOMAIN slowint AS int CHECK (rg_quick(VALUE) AND rg_slow_check(VALUE));
GRANT SELECT ON pt TO PUBLIC;
CREATE TABLE bind_t (i int);
GRANT INSERT ON trig_t, def_t, bind_t TO PUBLIC;
});
foreach my $r (@roles)
{
	my $su = $case_of{$r}{mode} eq 'off' ? ' SUPERUSER' : '';
	$node->safe_psql('postgres', "CREATE ROLE $r LOGIN$su");
}
$slowint_oid = $node->safe_psql('postgres', "SELECT 'slowint'::regtype::oid");

# The monitor: postgres has no limit.
my $mon = monitor_session($node);
sub mq { return $mon->query_or_die(@_); }

like(mq('EXPLAIN (COSTS OFF) SELECT pg_sleep(4) FROM pt WHERE k = f()'),
	qr/Subplans Removed: 1/,
	'fixture: WHERE k = f() prunes pt at executor start-up');

sub statements_of
{
	my $out = mq("SELECT rolname || '=' || statements FROM role_guard_usage
	              WHERE rolname LIKE 'rg\\_%'");
	return map { split /=/ } split /\n/, $out;
}

# ---------------------------------------------------------------------------
# Open every session, each then waits at the gate
# ---------------------------------------------------------------------------
is(mq('SELECT pg_advisory_lock(2202)'), '', 'monitor holds the gate');
my $pos = log_pos($node);
my @S;
foreach my $role (@roles)
{
	my ($c, $mode, $v) = @{ $case_of{$role} }{qw(case mode v)};
	my $s = {
		role => $role,
		c    => $c,
		mode => $mode,
		v    => $v,
		name => "$c->{name} [track_activities $mode, " . ($v eq 'a' ? "query after ${IDLE_A}s" : 'left idle') . ']',
	};
	if ($c->{proto} eq 'psql')
	{
		$s->{ps} = bg_session($node, sock_connstr($node, $role));
		die "$role: session did not start: " . $s->{ps}->stderr unless $s->{ps}->connected;
		$s->{pid} = $s->{ps}->backend_pid;
		if ($mode eq 'off')
		{
			my $o = $s->{ps}->query('SET track_activities = off; SHOW track_activities');
			die "$role: SET track_activities failed: " . $s->{ps}->stderr
			  unless defined $o && $o eq 'off';
		}
	}
	else
	{
		$s->{w} = RoleGuardTest::Wire->new($node, $role);
		$s->{pid} = $s->{w}->pid;
		if ($mode eq 'off')
		{
			$s->{w}->send($s->{w}->query('SET track_activities = off'));
			my $m = $s->{w}->wait_ready(1, 10);
			die "$role: SET track_activities failed"
			  unless $m && !$s->{w}->error($m);
		}
	}
	push @S, $s;
}
my %before = statements_of();
foreach my $s (@S)
{
	my $c = $s->{c};
	$s->{before} = $before{ $s->{role} } // 0;
	if ($c->{proto} eq 'psql')
	{
		$s->{marker} = $s->{ps}->start_query(join(";\n", $GATE, @{ $c->{sql} }));
	}
	else
	{
		my $w = $s->{w};
		$w->send($w->query($GATE), $c->{msgs}->($w));
	}
}
# all at the gate: busy, waiting for the lock
my $pids = join(',', map { $_->{pid} } @S);
ok( poll_until(
		$node,
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid IN ($pids)",
		scalar(@S)),
	scalar(@S) . ' sessions wait at the gate');
ok(!grep({ !kill(0, $_->{pid}) } @S), 'none of them reaped while waiting at the gate');

# The limits now, once every session waits at the gate (opening 56
# sessions on a busy machine can take longer than the limits, and the
# first ones would be reaped idle before they reach the gate).  The
# reaper reads the reload at its next scan; the long work behind the gate
# takes 3.4 s and more.
ok( set_conf(
		$node,
		'role_guard.idle_timeouts'                => $limits,
		'role_guard.idle_in_transaction_timeouts' => $limits),
	'idle limits set');
is(mq("SELECT count(*) FROM role_guard_usage WHERE idle_timeout = '2s'
          AND idle_in_transaction_timeout = '2s' AND rolname LIKE 'rg\\_%'"),
	scalar(@roles), 'every case role has both limits, 2 s');

# ---------------------------------------------------------------------------
# Go: everyone runs its work together
# ---------------------------------------------------------------------------
my $t_go = time;
mq('SELECT pg_advisory_unlock(2202)');

# An ErrorResponse's fields (RoleGuardTest::Wire's error) in one line.
sub err_text
{
	my ($e) = @_;
	return "$e->{C}: $e->{M}";
}

# Non-blocking: has the long work ended?  Sets t_end, out, died.
sub poll_work
{
	my ($s) = @_;
	my $c = $s->{c};
	if ($c->{proto} eq 'psql')
	{
		my $out = $s->{ps}->wait_query($s->{marker}, 0);
		if (defined $out)
		{
			$s->{t_end} = time;
			$s->{out}   = $out;
		}
		elsif (!$s->{ps}->alive)
		{
			$s->{t_end} = time;
			$s->{died}  = 'psql exited: ' . $s->{ps}->stderr;
		}
	}
	else
	{
		my $w = $s->{w};
		my $nz = $w->poll(0);
		if ($nz >= 1 + $c->{nz})
		{
			$s->{t_end} = time;
			my $m = $w->take_ready(1 + $c->{nz});
			my $e = $w->error($m);
			$s->{out} = [ join(',', $w->rows($m)), $w->status($m) ];
			$s->{err} = err_text($e) if $e;
		}
		elsif ($w->is_eof)
		{
			$s->{t_end} = time;
			my $e = $w->error($w->pending);
			$s->{died} = 'connection closed' . ($e ? ': ' . err_text($e) : '');
		}
	}
	return;
}

# Variant a: a query on the session, blocking (at most 5 s); true if it
# worked.
sub query_on
{
	my ($s) = @_;
	if ($s->{c}{proto} eq 'psql')
	{
		my $r = $s->{ps}->query('SELECT 1', 5);
		return 1 if defined $r && $r eq '1';
		$s->{qerr} = $s->{ps}->stderr;
		return 0;
	}
	my $w = $s->{w};
	$w->send($w->query('SELECT 1'));
	my $m = $w->wait_ready(1, 5);
	return 1 if $m && join(',', $w->rows($m)) eq '1' && !$w->error($m);
	my $e = $w->error($m // $w->pending);
	$s->{qerr} = $e ? err_text($e) : 'no answer';
	return 0;
}

my $hard = $t_go + 60;
while (time < $hard)
{
	my $busy = 0;
	foreach my $s (@S)
	{
		next if $s->{final};
		$busy++;
		if (!defined $s->{t_end})
		{
			poll_work($s);
			next unless defined $s->{t_end};
			if ($s->{died})
			{
				$s->{final} = 1;
				next;
			}
			$s->{t_idle} = $s->{t_end} if $s->{v} eq 'b';
		}
		if ($s->{v} eq 'a' && !defined $s->{t_idle} && !$s->{final}
			&& time >= $s->{t_end} + $IDLE_A)
		{
			$s->{t_q} = time;
			if (query_on($s))
			{
				$s->{survived} = 1;
				$s->{t_idle}   = time;
			}
			else
			{
				$s->{survived} = 0;
				$s->{final}    = 1;
			}
		}
		$s->{final} = 1
		  if defined $s->{t_idle} && time > $s->{t_idle} + $LIMIT + $INTERVAL + $SLACK + 3;
	}
	last unless $busy;
	my @w = grep { !$_->{final} && defined $_->{t_idle} } @S;
	if (@w)
	{
		my $t_q = time;
		my %alive = map { $_ => 1 } split /\n/,
		  mq('SELECT pid FROM pg_stat_activity WHERE pid IN ('
			  . join(',', map { $_->{pid} } @w) . ')');
		my $t_e = time;
		foreach my $s (@w)
		{
			if ($alive{ $s->{pid} }) { $s->{seen} = $t_q; }
			else
			{
				$s->{gone}  = $t_e;
				$s->{final} = 1;
			}
		}
	}
	usleep(20_000);
}
my $took = time - $t_go;

# ---------------------------------------------------------------------------
# The checks, session by session
# ---------------------------------------------------------------------------
# the FATAL line of every session seen gone (written as it ends)
my $log;
my $log_deadline = time + $RoleGuardTest::wait_seconds;
while (1)
{
	$log = log_since($node, $pos);
	last
	  unless grep { defined $_->{gone} && $log !~ /\[$_->{pid}\] [^\n]*FATAL/ } @S;
	last if time > $log_deadline;
	usleep(50_000);
}
my %after = statements_of();

sub reap_line
{
	my ($pid) = @_;
	my @l = grep { /role_guard: (?:would )?terminat\w+ session of role "[^"]*" \(pid $pid\)/ } split /\n/, $log;
	return @l ? join("\n", @l) : "(no reaper LOG line for pid $pid)";
}

# When $s was last seen alive and first seen gone, after $what (it went
# idle then), and its reaper LOG lines.
sub seen_text
{
	my ($s, $what) = @_;
	my $rel = sub { defined $_[0] ? sprintf('%.2f s', $_[0] - $s->{t_idle}) : 'never' };
	return "pid $s->{pid}: last seen alive " . $rel->($s->{seen})
	  . ", seen gone " . $rel->($s->{gone}) . " after $what\n"
	  . reap_line($s->{pid});
}

foreach my $s (@S)
{
	my ($c, $n, $pid) = ($s->{c}, $s->{name}, $s->{pid});
	my $kind = $c->{kind};

	# the long work itself, never interrupted
	if (!ok(!$s->{died} && defined $s->{t_end}, "$n: the long work ran to its end"))
	{
		diag "pid $pid: " . ($s->{died} // 'did not end') . "\n" . reap_line($pid);
		next;
	}
	my $dur = $s->{t_end} - $t_go;
	if ($c->{proto} eq 'psql')
	{
		like($s->{out}, $c->{check}, "$n: its result");
		unlike($s->{ps}->stderr, qr/ERROR/, "$n: no error") or diag $s->{ps}->stderr;
	}
	else
	{
		is(join(' / ', @{ $s->{out} }), join(' / ', @{ $c->{check} }),
			"$n: its rows and transaction status");
		ok(!$s->{err}, "$n: no error") or diag $s->{err};
	}
	cmp_ok($dur, '>=', 3.4, sprintf("$n: the work took %.1f s", $dur));

	# variant a: idle a while, then a query
	if ($s->{v} eq 'a')
	{
		if (!ok($s->{survived},
			sprintf("$n: idle %.1f s after the long work, still there: a query on it works",
				$s->{t_q} - $s->{t_end})))
		{
			diag "pid $pid: $s->{qerr}\n" . reap_line($pid);
			next;
		}
	}

	# left idle (b: since the long work; a: since the query)
	my $what = $s->{v} eq 'a' ? 'the query' : 'the long work';
	ok( defined $s->{seen} && $s->{seen} >= $s->{t_idle} + $LIMIT - 0.5,
		"$n: not reaped early: still there at limit - 0.5 s after $what")
	  or diag seen_text($s, $what);
	ok(defined $s->{gone} && $s->{gone} <= $s->{t_idle} + $LIMIT + $INTERVAL + $SLACK,
		"$n: reaped within limit + interval + ${SLACK}s of $what")
	  or diag seen_text($s, $what);

	my $re = reap_log_re($s->{role}, $pid, $kind);
	if (ok($log =~ $re, "$n: reaper LOG line: $kind, limit 2.0 s"))
	{
		my ($ts, $idle, $lim) = ($1, $2, $3);
		my $since = ts_epoch($ts) - $s->{t_idle};
		ok( $lim eq '2.0' && $idle >= $LIMIT && $idle <= $since + 1.0,
			sprintf("$n: the LOG line's idle time is the time since it went idle (%.1f s)", $since))
		  or diag reap_line($pid);
	}
	else
	{
		diag reap_line($pid);
	}
	my ($code, $msg) =
	  $kind eq 'idle'
	  ? ('57P05', 'terminating connection due to idle-session timeout')
	  : ('25P03', 'terminating connection due to idle-in-transaction timeout');
	like($log, qr/\[$pid\] [^\n]*FATAL:\s+$code: \Q$msg\E/,
		"$n: server log has FATAL $code: $msg");
}

# statements: one per statement the client sent (the gate, the case's
# statements, variant a's query when it ran)
foreach my $s (@S)
{
	next unless defined $s->{c}{stmts} && defined $s->{t_end} && !$s->{died};
	my $want = 1 + $s->{c}{stmts} + ($s->{survived} ? 1 : 0);
	is(($after{ $s->{role} } // 0) - $s->{before}, $want,
		"$s->{name}: role_guard_usage.statements grew by $want (the gate, "
		  . "$s->{c}{stmts} of the case" . ($s->{survived} ? ', SELECT 1' : '') . ')');
}

note sprintf('the work and the reaping took %.1f s', $took);
foreach my $s (@S)
{
	$s->{ps}->quit if $s->{ps};
	$s->{w}->terminate if $s->{w};
}
$mon->quit;
$node->stop;
done_testing();
