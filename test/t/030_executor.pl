
# Copyright: see README.md.
#
# The executor and utility hooks: role_guard_usage.statements counts each
# top-level statement of a role's sessions exactly once (simple and extended
# protocol, multi-statement strings, functions, DO blocks, EXPLAIN ANALYZE,
# CREATE TABLE AS, cursors, errors, cancels, statement_timeout, parallel
# query), active_statements is 1 while a statement runs and 0 again after
# every way it can end, sessions stay under their login role after SET ROLE,
# and role_guard_reset() zeroes the count.  A mixed workload of a few
# hundred statements with errors and cancels must leave no drift.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT run_pgbench);

# Budgets only so that app and other always have a row in role_guard_usage.
my $node = rg_node('executor', budgets => 'app=20, other=20');
my $su = $node->safe_psql('postgres', 'SELECT current_user');

$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE other LOGIN;
GRANT other TO app;
CREATE EXTENSION role_guard;
CREATE SCHEMA s AUTHORIZATION app;
SET ROLE app;
CREATE TABLE s.t (x int);
INSERT INTO s.t SELECT generate_series(1, 1000);
CREATE TABLE s.zero (x int);
INSERT INTO s.zero VALUES (0);
CREATE TABLE s.big (x int);
INSERT INTO s.big SELECT generate_series(1, 200000);
ANALYZE s.t, s.zero, s.big;
-- three queries inside: counted once with the statement that calls it
CREATE FUNCTION s.f3() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE r bigint;
BEGIN
	SELECT count(*) INTO r FROM s.t;
	SELECT count(*) INTO r FROM s.t WHERE x > 10;
	PERFORM x FROM s.t LIMIT 1;
	RETURN r;
END$$;
-- waits for advisory lock 1 (shared), then returns or fails
CREATE FUNCTION s.wait_lock(fail boolean) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock_shared(1);
	PERFORM count(*) FROM s.t;
	IF fail THEN
		RAISE EXCEPTION 'wait_lock failed on purpose';
	END IF;
	RETURN 1;
END$$;
CREATE PROCEDURE s.p3() LANGUAGE plpgsql AS $$
BEGIN
	PERFORM count(*) FROM s.t;
	INSERT INTO s.t VALUES (-1);
	DELETE FROM s.t WHERE x = -1;
END$$;
RESET ROLE;
GRANT USAGE ON SCHEMA s TO other;
GRANT SELECT ON s.t TO other;
});

sub tcp { return tcp_connstr($node, @_); }

# statements/active_statements of a role, as role_guard_usage shows them
sub counts
{
	my ($role) = @_;
	my $r = usage_of($node, $role // 'app', 'statements', 'active_statements');
	return "$r->{statements}/$r->{active_statements}";
}

sub statements_of
{
	my ($role) = @_;
	return usage_of($node, $role // 'app', 'statements')->{statements};
}

sub active_sql
{
	my ($role) = @_;
	$role //= 'app';
	return
	  "SELECT active_statements FROM role_guard_usage WHERE rolname = '$role'";
}

# Waits for advisory lock 1, then ends normally and prints no row (so that
# a statement started with send() leaves nothing in the session's output).
my $wait_ok = 'SELECT x FROM s.wait_lock(false) AS x WHERE x = 0';

# Expected statements of app since the last reset.
my $expected = 0;

sub reset_counts
{
	$node->safe_psql('postgres', 'SELECT role_guard_reset()');
	$expected = 0;
}

# One psql -c as app over TCP; $n statements expected from it.
sub app_c
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($sql, $n, %opts) = @_;
	my ($ret, $out, $err) =
	  try_login($node, tcp('app') . ($opts{extra} // ''), $sql);
	if ($opts{fails})
	{
		isnt($ret, 0, "psql -c fails as it should: $sql");
		like($err, $opts{fails}, "error message: $sql") if ref $opts{fails};
	}
	else
	{
		is($ret, 0, "psql -c runs: $sql") or diag "stderr: $err";
	}
	$expected += $n;
	return $out;
}

sub pgbench_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($mode, $script, $xacts, $n) = @_;
	my ($ok, $out, $err, $exc) =
	  run_pgbench($node, tcp('app'), $mode, $xacts, $script);
	ok($ok, "pgbench -M $mode ran $xacts transactions")
	  or diag "stdout: $out\nstderr: $err\n$exc";
	like($out, qr/number of transactions actually processed: $xacts\b/,
		"pgbench -M $mode: all transactions processed");
	$expected += $n;
	return;
}

# ---------------------------------------------------------------------------
# 1. A known workload, statement by statement.
# ---------------------------------------------------------------------------
reset_counts();
is(counts(), '0/0', 'after reset: app has no statements');

app_c('SELECT 1', 1) for 1 .. 5;
is(statements_of(), $expected, 'five psql -c SELECTs count 5');

app_c('SELECT 1; SELECT 2; SELECT 3', 3);
is(statements_of(), $expected, 'a three-statement string counts 3');

app_c('SELECT s.f3()', 1);
is(statements_of(), $expected,
	'a PL/pgSQL function with three queries counts once');

app_c(q{DO $$BEGIN PERFORM s.f3(); PERFORM count(*) FROM s.t; END$$}, 1);
is(statements_of(), $expected, 'a DO block counts once');

app_c('CALL s.p3()', 1);
is(statements_of(), $expected, 'CALL of a procedure counts once');

my $plan = app_c('EXPLAIN (ANALYZE, COSTS OFF) SELECT s.f3()', 1);
like($plan, qr/Execution Time/, 'EXPLAIN ANALYZE ran');
is(statements_of(), $expected, 'EXPLAIN ANALYZE counts once');

app_c('CREATE TABLE s.ctas AS SELECT s.f3() AS n, x FROM s.t', 1);
app_c('DROP TABLE s.ctas', 1);
is(statements_of(), $expected,
	'CREATE TABLE AS and DROP TABLE count once each');

app_c('BEGIN; SELECT 1; SET LOCAL work_mem = 1000; COMMIT', 4);
is(statements_of(), $expected,
	'BEGIN, SELECT, SET, COMMIT in one string count 4');

app_c(
	'BEGIN; DECLARE c CURSOR FOR SELECT x FROM s.t; FETCH 10 FROM c; '
	  . 'FETCH 10 FROM c; MOVE 5 IN c; CLOSE c; COMMIT',
	7);
is(statements_of(), $expected,
	'a cursor: DECLARE, two FETCHes, MOVE, CLOSE count once each');

app_c('COPY s.zero TO STDOUT', 1);
is(statements_of(), $expected, 'COPY TO STDOUT counts once');

# extended query protocol: Parse/Bind/Execute per statement, and prepared
pgbench_ok('extended',
	"SELECT count(*) FROM s.t WHERE x > 5;\nSELECT s.f3();\n\\set v 3\nSELECT :v;\n",
	10, 30);
is(statements_of(), $expected,
	'pgbench -M extended: 10 x 3 statements count 30');
pgbench_ok('prepared',
	"SELECT count(*) FROM s.t WHERE x > 5;\nSELECT s.f3();\n",
	10, 20);
is(statements_of(), $expected,
	'pgbench -M prepared: 10 x 2 statements count 20');
is(counts(), "$expected/0", 'no statement active after the workload');

# errors at run time count once
app_c('SELECT 1/x FROM s.zero', 1, fails => qr/division by zero/);
is(statements_of(), $expected, 'a statement that errors counts once');
app_c('SELECT 1; SELECT 1/x FROM s.zero; SELECT 3',
	2, fails => qr/division by zero/);
is(statements_of(), $expected,
	'a string whose second statement errors counts 2 (the third never runs)'
);
app_c('SELECT s.wait_lock(true)', 1, fails => qr/failed on purpose/);
is(statements_of(), $expected,
	'a function that raises counts once');
is(counts(), "$expected/0", 'no statement active after the errors');

# ---------------------------------------------------------------------------
# 2. active_statements while a statement runs, and after each way it ends.
#    The superuser holds advisory lock 1; app's statements wait on it.
# ---------------------------------------------------------------------------
my $locker = bg_session($node, sock_connstr($node, $su));
ok($locker->connected, 'superuser session for the advisory lock');
my $sa = hold_ok($node, 'app', 'postgres', 'app session A');
$expected += 1;    # its SELECT pg_backend_pid()
my $sapid = $sa->backend_pid;

sub lock_held
{
	$locker->query('SELECT pg_advisory_lock(1)');
	return;
}

sub lock_free
{
	$locker->query('SELECT pg_advisory_unlock_all()');
	return;
}

# Start $sql in session A (it blocks), see it active, end it with &$end,
# see active_statements back to 0.
sub running_then_ended_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name, $sql, $end, %opts) = @_;
	my $before = statements_of();
	$sa->send($sql);
	$expected += 1;
	ok(poll_until($node, active_sql(), '1'),
		"$name: active_statements is 1 while it runs");
	is_deeply(usage_of($node, 'app', 'active', 'statements'),
		{ active => 1, statements => $before + 1 },
		"$name: session active, statement counted at its start");
	$end->();
	ok(poll_until($node, active_sql(), '0'),
		"$name: active_statements back to 0 after it ended");
	my $state = $opts{state} // 'idle';
	my $r = usage_of($node, 'app', 'active', 'idle', 'idle_in_transaction');
	is_deeply(
		$r,
		{
			active              => 0,
			idle                => $state eq 'idle' ? 1 : 0,
			idle_in_transaction => $state eq 'idle' ? 0 : 1
		},
		"$name: session is $state afterwards");
	return;
}

lock_held();
running_then_ended_ok('normal end',
	$wait_ok, sub { lock_free(); });
is($sa->query('SELECT 41 + 1'), '42', 'session A still works');
$expected += 1;

lock_held();
running_then_ended_ok('error', 'SELECT s.wait_lock(true)',
	sub { lock_free(); });

running_then_ended_ok(
	'pg_cancel_backend',
	'SELECT pg_sleep(60)',
	sub {
		$node->safe_psql('postgres', "SELECT pg_cancel_backend($sapid)");
	});
is($sa->query('SELECT 1'), '1', 'session A works after the cancel');
$expected += 1;
like($sa->stderr, qr/canceling statement due to user request/,
	'the client saw the cancel');

is($sa->query("SET statement_timeout = '3s'"), '', 'statement_timeout set');
$expected += 1;
lock_held();
running_then_ended_ok(
	'statement_timeout',
	'SELECT pg_advisory_lock(1)',
	sub {
		# the timeout ends it; keep the lock until then
		poll_until($node, active_sql(), '0', 10);
	});
lock_free();
is($sa->query('RESET statement_timeout'), '', 'statement_timeout reset');
$expected += 1;
like($sa->stderr, qr/canceling statement due to statement timeout/,
	'the client saw the statement timeout');

# inside a transaction block: the error leaves it aborted
is($sa->query('BEGIN'), '', 'BEGIN');
$expected += 1;
lock_held();
running_then_ended_ok('error inside a transaction block',
	'SELECT s.wait_lock(true)', sub { lock_free(); },
	state => 'idle_in_transaction');
is($sa->query('ROLLBACK'), '', 'ROLLBACK');
$expected += 1;

# inside a savepoint: cancel, then an error
is($sa->query('BEGIN'),          '', 'BEGIN');
is($sa->query('SAVEPOINT sp1'),  '', 'SAVEPOINT');
$expected += 2;
running_then_ended_ok(
	'cancel inside a savepoint',
	'SELECT pg_sleep(60)',
	sub {
		$node->safe_psql('postgres', "SELECT pg_cancel_backend($sapid)");
	},
	state => 'idle_in_transaction');
is($sa->query('ROLLBACK TO sp1'), '', 'ROLLBACK TO SAVEPOINT');
$expected += 1;
lock_held();
running_then_ended_ok('error inside a savepoint',
	'SELECT s.wait_lock(true)', sub { lock_free(); },
	state => 'idle_in_transaction');
is($sa->query('ROLLBACK TO sp1'), '', 'ROLLBACK TO SAVEPOINT again');
is($sa->query('SELECT 7'),        '7', 'the transaction goes on');
is($sa->query('COMMIT'),          '', 'COMMIT');
$expected += 3;
is(counts(), "$expected/0",
	'statements exact and none active after every ending');

# two sessions of the role: active_statements is their sum
my $sb = hold_ok($node, 'app', 'postgres', 'app session B');
$expected += 1;
lock_held();
$sa->send($wait_ok);
$sb->send($wait_ok);
$expected += 2;
ok(poll_until($node, active_sql(), '2'),
	'two sessions running: active_statements is 2');
is(usage_of($node, 'app', 'active')->{active}, '2', 'both sessions active');
lock_free();
ok(poll_until($node, active_sql(), '0'), 'both ended: back to 0');
is($sa->query('SELECT 1'), '1', 'A in sync');
is($sb->query('SELECT 1'), '1', 'B in sync');
$expected += 2;
is(counts(), "$expected/0", 'two sessions: exact count, none active');

# ---------------------------------------------------------------------------
# 3. No drift: a mixed workload of ~200 statements over two sessions and
#    psql -c, with errors, cancels, timeouts, blocks and savepoints.
# ---------------------------------------------------------------------------
reset_counts();
my $sbpid = $sb->backend_pid;
my @sessions = ([ $sa, $sapid ], [ $sb, $sbpid ]);
my $issued = 0;
for my $i (1 .. 60)
{
	my ($s, $pid) = @{ $sessions[ $i % 2 ] };
	if ($i % 12 == 0)
	{
		# cancel a running statement
		$s->send('SELECT pg_sleep(60)');
		$issued++;
		poll_until($node,
			"SELECT wait_event FROM pg_stat_activity WHERE pid = $pid",
			'PgSleep', 10);
		$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
		$s->query('SELECT 1');
		$issued++;
	}
	elsif ($i % 12 == 6)
	{
		# statement_timeout, inside a block with a savepoint
		$s->query('BEGIN');
		$s->query("SET LOCAL statement_timeout = '50ms'");
		$s->query('SAVEPOINT a');
		$s->query('SELECT pg_sleep(5)');
		$s->query('ROLLBACK TO a');
		$s->query('SELECT count(*) FROM s.t');
		$s->query('COMMIT');
		$issued += 7;
	}
	elsif ($i % 5 == 0)
	{
		# an error in a block, then ROLLBACK
		$s->query('BEGIN');
		$s->query('SELECT 1/x FROM s.zero');
		$s->query('ROLLBACK');
		$issued += 3;
	}
	elsif ($i % 3 == 0)
	{
		$s->query('SELECT s.f3()');
		$s->query('SELECT 1/x FROM s.zero');
		$issued += 2;
	}
	else
	{
		$s->query("SELECT $i");
		$s->query('INSERT INTO s.t VALUES (0)');
		$s->query('DELETE FROM s.t WHERE x = 0');
		$issued += 3;
	}
	if ($i % 10 == 0)
	{
		my ($ret) = try_login($node, tcp('app'),
			'SELECT 1; SELECT 2; SELECT 1/x FROM s.zero');
		$issued += 3;
	}
}
cmp_ok($issued, '>=', 180, "mixed workload issued $issued statements");
ok(poll_until($node, active_sql(), '0'),
	'mixed workload: active_statements is 0');
is(statements_of(), $issued, 'mixed workload: statements is exact, no drift');
like($sa->stderr . $sb->stderr, qr/statement timeout/,
	'the workload did hit statement_timeout');

# ---------------------------------------------------------------------------
# 4. SET ROLE: the session stays under its login role.
# ---------------------------------------------------------------------------
reset_counts();
is($sa->query('SET ROLE other'),    '',      'A: SET ROLE other');
is($sa->query('SELECT current_user'), 'other', 'A runs as other');
$sa->query('SELECT 1') for 1 .. 3;
is_deeply(
	usage_of($node, 'app', 'statements', 'connections'),
	{ statements => 5, connections => 2 },
	'after SET ROLE other: statements counted under the login role app');
is_deeply(
	usage_of($node, 'other', 'statements', 'connections', 'active'),
	{ statements => 0, connections => 0, active => 0 },
	'nothing counted under other');
lock_held();
$sa->send($wait_ok);
ok(poll_until($node, active_sql('app'), '1'),
	'a statement run under SET ROLE is active under app');
is(usage_of($node, 'other', 'active_statements')->{active_statements},
	'0', '... and not under other');
lock_free();
ok(poll_until($node, active_sql('app'), '0'), '... and ends under app');
is($sa->query('RESET ROLE'), '', 'A: RESET ROLE');
is(statements_of('app'), 7, 'app: 7 statements in all');

# a superuser session that SET ROLEs to app is not counted under app
my $before = statements_of('app');
my $su_before = statements_of($su);
is( $node->safe_psql(
		'postgres', 'SET ROLE app; SELECT current_user; SELECT 1; RESET ROLE'),
	"app\n1",
	'superuser: SET ROLE app and queries');
is(statements_of('app'), $before,
	'a superuser session under SET ROLE app adds nothing to app');
cmp_ok(statements_of($su), '>', $su_before,
	'... its statements go to the superuser');

# ---------------------------------------------------------------------------
# 5. Parallel query: the workers' executors are not counted.
# ---------------------------------------------------------------------------
reset_counts();
my $par =
    " options='-c max_parallel_workers_per_gather=2 -c parallel_setup_cost=0"
  . " -c parallel_tuple_cost=0 -c min_parallel_table_scan_size=0'";
my $explain = app_c(
	'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) '
	  . 'SELECT count(*) FROM s.big WHERE x % 7 = 1',
	1,
	extra => $par);
like($explain, qr/Workers Launched: [12]/, 'parallel workers were launched')
  or diag $explain;
is(app_c('SELECT count(*) FROM s.big WHERE x % 7 = 1', 1, extra => $par),
	'28572', 'parallel count(*) is right');
is(app_c('SELECT count(*) FROM s.big WHERE x % 7 = 1', 1, extra => $par),
	'28572', 'again');
is(counts(), "$expected/0", 'parallel query: each statement counted once');
is(usage_of($node, 'app', 'connections')->{connections},
	'2', 'parallel workers are not sessions of app');

# ---------------------------------------------------------------------------
# 6. role_guard_reset() zeroes statements, not active_statements.
# ---------------------------------------------------------------------------
app_c('SELECT 1', 1) for 1 .. 3;
cmp_ok(statements_of(), '>', 0, 'statements before reset');
lock_held();
$sa->send($wait_ok);
ok(poll_until($node, active_sql(), '1'), 'A running during the reset');
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
is(counts(), '0/1',
	'reset zeroed statements; the running statement is still active');
lock_free();
ok(poll_until($node, active_sql(), '0'), 'and ends normally after the reset');
is($sa->query('SELECT 1'), '1', 'one more statement');
is(statements_of(), '1', 'counting starts again from zero');

# ---------------------------------------------------------------------------
# 7. Statements that the planner or COMMIT runs for a top-level statement
#    are nested too: an IMMUTABLE function folded at plan time, a STABLE one
#    evaluated for an estimate, and a deferred trigger fired at COMMIT.
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', q{
SET ROLE app;
CREATE FUNCTION s.f3_immutable(int) RETURNS bigint LANGUAGE plpgsql IMMUTABLE
AS $$ BEGIN RETURN s.f3(); END $$;
CREATE FUNCTION s.f3_stable() RETURNS bigint LANGUAGE plpgsql STABLE
AS $$ BEGIN RETURN s.f3(); END $$;
CREATE TABLE s.log (x int);
CREATE TABLE s.d (x int);
CREATE FUNCTION s.log2() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO s.log VALUES (1);
	INSERT INTO s.log VALUES (2);
	RETURN NULL;
END$$;
CREATE CONSTRAINT TRIGGER d_log AFTER INSERT ON s.d
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION s.log2();
});
reset_counts();
app_c('SELECT s.f3_immutable(1)', 1);
is(statements_of(), $expected,
	'an IMMUTABLE function evaluated by the planner counts once');
reset_counts();
app_c('SELECT count(*) FROM s.t WHERE x < s.f3_stable()', 1);
is(statements_of(), $expected,
	'a STABLE function evaluated for an estimate counts once');
reset_counts();
app_c('INSERT INTO s.d VALUES (1)', 1);
is(statements_of(), $expected,
	'an INSERT whose deferred trigger runs two queries at commit counts once'
);
reset_counts();
app_c('BEGIN; INSERT INTO s.d VALUES (1); COMMIT', 3);
is(statements_of(), $expected,
	'BEGIN; INSERT; COMMIT with a deferred trigger counts 3');
is(usage_of($node, 'app', 'active_statements')->{active_statements},
	'0', 'none active after them');

# ---------------------------------------------------------------------------
# 9. Errors that leave nested statements: the nesting level comes back to
#    where the (sub)transaction that caught the error began (the executor
#    hooks have no PG_TRY), so the statements after them are top-level
#    again and each counts once; a procedure's own ROLLBACK is no error
#    and leaves the level as it is.
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', q{
SET ROLE app;
CREATE FUNCTION s.inner_fail() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	PERFORM count(*) FROM s.t;
	RETURN 1 / (SELECT x FROM s.zero);
END$$;
-- an error two levels down, caught by an exception block (a subtransaction)
CREATE FUNCTION s.catch() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		PERFORM s.inner_fail();
	EXCEPTION WHEN division_by_zero THEN
		RETURN -1;
	END;
	RETURN 0;
END$$;
-- a COMMIT and a ROLLBACK inside, then more statements
CREATE PROCEDURE s.p_rollback() LANGUAGE plpgsql AS $$
BEGIN
	PERFORM count(*) FROM s.t;
	COMMIT;
	PERFORM count(*) FROM s.t;
	ROLLBACK;
	PERFORM count(*) FROM s.t;
	PERFORM s.catch();
END$$;
-- an error two levels down in a transaction begun inside the procedure
CREATE PROCEDURE s.p_fail() LANGUAGE plpgsql AS $$
BEGIN
	PERFORM count(*) FROM s.t;
	COMMIT;
	PERFORM s.inner_fail();
END$$;
RESET ROLE;
});
my $sn = bg_session($node, tcp('app'));
ok($sn->connected, 'nesting: a session of app');

# statements the session adds to app's count while it runs @sql
sub counted
{
	my (@sql) = @_;
	my $before = statements_of();
	$sn->query($_) for @sql;
	return statements_of() - $before;
}
is(counted('SELECT s.catch()', 'SELECT 1', 'SELECT 2'),
	3, 'an error caught two levels down: the statements after it count once each');
like($sn->query('SELECT s.catch()'), qr/^-1$/, 'the exception block caught it');
is(counted('SELECT s.inner_fail()', 'SELECT 1', 'SELECT 2'),
	3, 'an error two levels down that ends the statement: the next ones count');
is(counted('BEGIN', 'SELECT 1', 'SAVEPOINT a', 'SELECT s.inner_fail()',
		'ROLLBACK TO a', 'SELECT 2', 'COMMIT'),
	7, 'an error under a savepoint: every statement counts once');
is(counted('CALL s.p_rollback()', 'SELECT 1', 'SELECT 2'),
	3, 'a procedure that commits and rolls back inside counts once, and the next ones too');
is(counted('CALL s.p_fail()', 'SELECT 1', 'SELECT 2'),
	3, 'a procedure that fails after a COMMIT inside: the next statements count');
like($sn->stderr, qr/division by zero/, 'it failed');
ok( poll_until($node, active_sql(), '0'),
	'nesting: no statement left active');
$sn->quit;

$sa->quit;
$sb->quit;
$locker->quit;
$node->stop;
done_testing();
