
# Copyright: see README.md.
#
# role_guard.active_budgets and role_guard.active_waits: at most N
# transactions in progress, a FIFO wait, refusal 53400; the views' active
# columns, events with query_id, the 1.1 -> 1.2 update.
#
# Sections: 1 what takes a place (SET and BEGIN do not; idle in transaction
# keeps it) and the refusal; 2 waiting (wait event, woken at the release);
# 3 cancel, statement_timeout and terminate while waiting; 4 FIFO across
# two roles of one +group; 5 exit paths (error, PREPARE TRANSACTION,
# terminate, client gone while waiting); 6 functions, DO, procedures that
# COMMIT; 7 never more than N under 24 clients, and pgbench 16 clients on 4
# with no failure; 8 query_id = pg_stat_statements.queryid; 9 monitor
# mode; 10 the 1.1 -> 1.2 update; 12 reloads (a transaction open at a
# reload never takes a place in the middle of its work; a budget raised or
# removed, or monitor mode, lets a waiting statement in at once), a
# statement waiting for its own entry holds no place of a +group entry with
# room, SET CONSTRAINTS, the refusals of the "*" row, and never more than N
# seen through transaction-level advisory locks; 11 SIGKILL (crash-restart);
# 13 VACUUM of two tables keeps its place through its own commits; CREATE
# INDEX CONCURRENTLY does not (no cycle with a statement waiting for it);
# 14 a superuser over the Unix socket never waits (counted, logged), over
# TCP it is bound.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT events_where run_pgbench);

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $pgss = -e "$pkglibdir/pg_stat_statements.so";

my $node = rg_node(
	'active',
	conf => qq{max_connections = 80
max_prepared_transactions = 5
restart_after_crash = on
compute_query_id = on
} . ($pgss ? "shared_preload_libraries = 'role_guard, pg_stat_statements'\n" : '')
	  . qq{role_guard.active_budgets = 'tenant=2, +grp=1, \@limdb=1, solo=1, many=3, pb=4'
role_guard.active_waits = 'tenant=0, dbuser=0, solo=0'
});

$node->safe_psql(
	'postgres', q{
CREATE ROLE tenant LOGIN;
CREATE ROLE grp NOLOGIN;
CREATE ROLE ga LOGIN IN ROLE grp;
CREATE ROLE gb LOGIN IN ROLE grp;
CREATE ROLE dbuser LOGIN;
CREATE ROLE solo LOGIN;
CREATE ROLE many LOGIN;
CREATE ROLE pb LOGIN;
CREATE ROLE late LOGIN;
CREATE ROLE lg NOLOGIN;
CREATE ROLE lr LOGIN IN ROLE lg;
CREATE ROLE lt LOGIN IN ROLE lg;
CREATE ROLE star LOGIN;
CREATE ROLE never LOGIN;
CREATE DATABASE limdb;
CREATE EXTENSION role_guard;
CREATE TABLE spans (t0 timestamptz, t1 timestamptz);
CREATE TABLE rg_probe_qid (x int);
CREATE TABLE twophase (x int);
CREATE TABLE witness (n bigint);
GRANT ALL ON spans, rg_probe_qid, twophase, witness TO PUBLIC;
});
$node->safe_psql('postgres', 'CREATE EXTENSION pg_stat_statements') if $pgss;

my $v = $node->safe_psql('postgres', 'SHOW server_version_num');

sub tcp
{
	my ($user, $db) = @_;
	return tcp_connstr($node, $user, $db);
}

sub session_of
{
	my ($user, $db) = @_;
	my $s = bg_session($node, tcp($user, $db));
	die "no session for $user: " . $s->stderr unless $s->connected;
	return $s;
}

sub active_of
{
	my ($role) = @_;
	return usage_of($node, $role, qw(active_budget active_transactions
		  statements_waiting statements_waited statements_rejected would_wait));
}

# Wait until the role's active_transactions and statements_waiting are these.
sub counts_are
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($role, $held, $waiting, $name) = @_;
	ok( poll_until(
			$node,
			"SELECT active_transactions || '/' || statements_waiting FROM role_guard_usage WHERE rolname = '$role'",
			"$held/$waiting"),
		$name);
}

# Wait until the backend waits for an active place (its wait event).
sub waits_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($pid, $name) = @_;
	my $want = $v >= 170000 ? 'Extension/RoleGuardActiveWait' : 'Extension/Extension';
	ok( poll_until(
			$node,
			"SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity WHERE pid = $pid",
			$want),
		$name);
}

# ===========================================================================
# 1. What takes a place; idle in transaction keeps it; the refusal
# ===========================================================================
# sessions that wait later: a session's first query needs a place too
my $h1 = session_of('tenant');
my $h2 = session_of('tenant');
my $w  = session_of('tenant');
my $w2 = session_of('tenant');
my $w3 = session_of('tenant');
$h1->query('BEGIN');
$h1->query("SET work_mem = '8MB'");
$h1->query('SHOW work_mem');
counts_are('tenant', 0, 0, 'BEGIN, SET and SHOW take no active place');
$h1->query('SELECT 1');
counts_are('tenant', 1, 0, 'the first real statement takes a place');
$h2->query('BEGIN');
$h2->query('SELECT 1');
counts_are('tenant', 2, 0, 'two transactions hold places, idle in transaction');

my $lpos = log_pos($node);
my ($ret, $out, $err) =
  try_login($node, tcp('tenant'), 'SELECT count(*) FROM rg_probe_qid');
isnt($ret, 0, 'a third transaction is refused at once (active_waits 0)');
like($err, qr/ERROR:  too many active transactions for role "tenant"/,
	'the message');
like(log_since($node, $lpos),
	qr/ERROR:  53400: too many active transactions for role "tenant"/,
	'SQLSTATE 53400');
like(
	$err,
	qr/DETAIL:  role_guard active budget "tenant=2" is full \(2 of 2 transactions in progress\); the statement waited 0\.0 s \(role_guard\.active_waits\)\./,
	'the DETAIL names the entry, its use and the wait');
($ret, $out, $err) = try_login($node, tcp('tenant'),
	"BEGIN; SET work_mem = '4MB'; SHOW work_mem; COMMIT; DISCARD PLANS");
is($ret, 0, 'transaction control, SET, SHOW and DISCARD run while full')
  or diag $err;
is(active_of('tenant')->{statements_rejected}, '1', 'statements_rejected counts it');
my @ev = events_where($node, { event => 'active_rejected', rolname => 'tenant' });
is(scalar @ev, 1, 'one active_rejected event');
like($ev[0]{detail} // '', qr/"tenant=2" is full/, 'its detail');
is( $node->safe_psql(
		'postgres',
		"SELECT kind || ' ' || budget || ' ' || connections || ' ' || rejected FROM role_guard_budgets WHERE entry = 'tenant' AND kind LIKE 'active%'"
	),
	'active_role 2 2 1',
	'role_guard_budgets: the active entry, its places held and refusals');

# @db: the database's count, and its message
my $d1 = session_of('dbuser', 'limdb');
$d1->query('BEGIN; SELECT 1');
($ret, $out, $err) = try_login($node, tcp('dbuser', 'limdb'), 'SELECT 1');
like(
	$err,
	qr/ERROR:  too many active transactions for database "limdb".*"\@limdb=1" is full \(1 of 1/s,
	'@db entry: message names the database');
$d1->query('COMMIT');

# ===========================================================================
# 2. Waiting: the wait event, woken when a place frees
# ===========================================================================
ok(set_conf($node, 'role_guard.active_waits' => 'tenant=60s, dbuser=0, solo=0'),
	'active_waits tenant=60s');
my $wpid = $w->backend_pid;
my $m = $w->start_query('SELECT 42');
waits_ok($wpid, 'a waiting statement shows wait event RoleGuardActiveWait');
is( $node->safe_psql('postgres', "SELECT state FROM pg_stat_activity WHERE pid = $wpid"),
	'active', 'and state active');
counts_are('tenant', 2, 1, 'statements_waiting 1');
$h1->query('COMMIT');
is($w->wait_query($m), '42', 'the waiter runs when a place frees');
counts_are('tenant', 1, 0, 'the place went to the waiter (its statement is done)');
is(active_of('tenant')->{statements_waited}, '1', 'statements_waited 1');

# ===========================================================================
# 3. Cancel, statement_timeout and terminate while waiting
# ===========================================================================
$h1->query('BEGIN');
$h1->query('SELECT 1');
counts_are('tenant', 2, 0, 'full again');
$m = $w->start_query('SELECT 43');
waits_ok($wpid, 'waiting');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($wpid)");
$w->wait_query($m);
like($w->stderr, qr/canceling statement due to user request/, 'pg_cancel_backend ends the wait');
counts_are('tenant', 2, 0, 'cancelled: no trace in the counts');

$m = $w->start_query("SET statement_timeout = '300ms'; SELECT 44");
$w->wait_query($m);
like($w->stderr, qr/canceling statement due to statement timeout/,
	'statement_timeout ends the wait');
counts_are('tenant', 2, 0, 'timed out: no trace in the counts');
$w->query('RESET statement_timeout');

$m = $w->start_query('SELECT 45');
waits_ok($wpid, 'waiting again');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($wpid)");
ok(poll_until($node, "SELECT count(*) FROM pg_stat_activity WHERE pid = $wpid", '0'),
	'pg_terminate_backend ends the waiter');
counts_are('tenant', 2, 0, 'terminated: no trace in the counts');

# the line still works: a waiter is served after all that
$m = $w2->start_query('SELECT 46');
waits_ok($w2->backend_pid, 'a new waiter');
$h2->query('COMMIT');
is($w2->wait_query($m), '46', 'is served at the next release');

# client gone while waiting
$h2->query('BEGIN');
$h2->query('SELECT 1');
counts_are('tenant', 2, 0, 'full');
my $w3pid = $w3->backend_pid;
$w3->start_query('SELECT 47');
waits_ok($w3pid, 'waiting');
my $pos = log_pos($node);
$w3->kill_client;
ok(poll_until($node, "SELECT count(*) FROM pg_stat_activity WHERE pid = $w3pid", '0'),
	'a waiter whose client went away ends at once');
counts_are('tenant', 2, 0, 'client gone: no trace in the counts');
$h1->query('COMMIT');
$h2->query('COMMIT');
counts_are('tenant', 0, 0, 'all places back');

# ===========================================================================
# 4. FIFO across two roles of one +group (grp=1)
# ===========================================================================
ok(set_conf($node, 'role_guard.active_waits' => 'dbuser=0, solo=0'),
	'no active_waits for the group: wait until cancelled');
my $gh  = session_of('ga');
my $wa  = session_of('ga');
my $wb  = session_of('gb');
my $wa2 = session_of('ga');
$gh->query('BEGIN');
$gh->query('SELECT 1');
$wa->query('BEGIN');
my $ma = $wa->start_query("SELECT 'a'");
waits_ok($wa->backend_pid, 'ga waits first');
my $mb;
$wb->query('BEGIN');
$mb = $wb->start_query("SELECT 'b'");
waits_ok($wb->backend_pid, 'gb waits second');
my $ma2 = $wa2->start_query("SELECT 'a2'");
waits_ok($wa2->backend_pid, 'ga waits third');
$gh->query('COMMIT');
is($wa->wait_query($ma), 'a', 'the first waiter gets the place');
waits_ok($wb->backend_pid, 'the second (another role) still waits');
waits_ok($wa2->backend_pid, 'the third (same role as the first) still waits');
$wa->query('COMMIT');
is($wb->wait_query($mb), 'b', 'then the second, of the other role, before the third');
waits_ok($wa2->backend_pid, 'the third still waits while the second holds it');
$wb->query('COMMIT');
is($wa2->wait_query($ma2), 'a2', 'then the third');
counts_are('ga', 0, 0, 'the group count is empty again');

# A full count at the head of the line does not hold up the waiter of
# another count behind it: the walk that gives a place stops early only
# once every count with waiters is full.
$gh->query('BEGIN');
$gh->query('SELECT 1');
$wa->query('BEGIN');
my $mf = $wa->start_query("SELECT 'f'");
waits_ok($wa->backend_pid, 'ga waits, its group full');
my ($t1, $t2, $t3) = map { session_of('tenant') } 1 .. 3;
$_->query('BEGIN') for ($t1, $t2, $t3);
$_->query('SELECT 1') for ($t1, $t2);
my $m3 = $t3->start_query("SELECT 't3'");
waits_ok($t3->backend_pid, 'tenant waits behind the group waiter');
$t1->query('COMMIT');
is($t3->wait_query($m3), 't3',
	'the place tenant frees goes to its waiter, past the group waiter ahead in line');
waits_ok($wa->backend_pid, 'the group waiter still waits: its count is full');
$gh->query('COMMIT');
is($wa->wait_query($mf), 'f', 'and gets the group place when it frees');
$_->query('COMMIT') for ($wa, $t2, $t3);
counts_are('ga',     0, 0, 'group count empty');
counts_are('tenant', 0, 0, 'tenant count empty');

# A statement that waited sees what was committed while it waited (READ
# COMMITTED: a snapshot taken once it has its place, not the one its portal
# took before the wait); under REPEATABLE READ the transaction's snapshot
# is the one taken before the wait.  A plain statement, EXECUTE of a
# prepared one, a cursor (DECLARE waits, FETCH reads) and COPY (query).
$node->safe_psql('postgres',
	'CREATE TABLE fresh (x int); GRANT ALL ON fresh TO PUBLIC; INSERT INTO fresh VALUES (1)');
my $n_fresh = 1;
$wa->query('PREPARE rg_fresh (int) AS SELECT count(*) FROM fresh WHERE x > $1');
my %fresh_sql = (
	plain    => 'SELECT count(*) FROM fresh',
	prepared => 'EXECUTE rg_fresh (0)',
	cursor   => 'DECLARE rg_c CURSOR FOR SELECT count(*) FROM fresh; FETCH rg_c',
	copy     => 'COPY (SELECT count(*) FROM fresh) TO STDOUT');
for my $case (
	['READ COMMITTED', 'plain'],
	['READ COMMITTED', 'prepared'],
	['READ COMMITTED', 'cursor'],
	['READ COMMITTED', 'copy'],
	['REPEATABLE READ', 'plain'])
{
	my ($iso, $proto) = @$case;
	$gh->query('BEGIN');
	$gh->query('SELECT 1');
	$wa->query("BEGIN ISOLATION LEVEL $iso");
	my $mq = $wa->start_query($fresh_sql{$proto});
	waits_ok($wa->backend_pid, "$iso, $proto: waits for the group place");
	$node->safe_psql('postgres', 'INSERT INTO fresh VALUES (1)');
	$n_fresh++;
	$gh->query('COMMIT');
	my $want = $iso eq 'READ COMMITTED' ? $n_fresh : $n_fresh - 1;
	is($wa->wait_query($mq), $want,
		$iso eq 'READ COMMITTED'
		? "$iso, $proto: the waiter sees the row committed while it waited"
		: "$iso: the transaction's snapshot is the one taken before the wait");
	$wa->query('COMMIT');
}
is($wa->query('SELECT count(*) FROM fresh'), $n_fresh, 'and every row afterwards');
counts_are('ga', 0, 0, 'group count empty again');

# A statement that waited on a snapshot its caller pushed at an outer level
# (read-only SPI: a function folded by the planner, one called from a
# procedure's expression after a COMMIT) keeps it: replacing it at the
# inner level let an aborted subtransaction (an EXCEPTION block) take it
# off the stack, and the caller's pop then found the stack empty.
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION rg_imm(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
DECLARE r int;
BEGIN
  SELECT x INTO STRICT r FROM fresh WHERE x = -$1;
  RETURN r;
EXCEPTION WHEN no_data_found THEN RETURN 0;
END $$;
CREATE FUNCTION rg_stable() RETURNS int STABLE LANGUAGE plpgsql AS $$
DECLARE r int;
BEGIN
  SELECT x INTO STRICT r FROM fresh WHERE x = -1;
  RETURN r;
EXCEPTION WHEN no_data_found THEN RETURN 7;
END $$;
CREATE PROCEDURE rg_proc() LANGUAGE plpgsql AS $$
DECLARE v int;
BEGIN
  COMMIT;
  v := rg_stable();
  INSERT INTO fresh VALUES (-v);
END $$;
});
my $wapid = $wa->backend_pid;
$gh->query('BEGIN');
$gh->query('SELECT 1');
$wa->query('BEGIN');
my $mi = $wa->start_query('SELECT rg_imm(1)');
waits_ok($wapid, 'a function folded by the planner waits for the place');
$gh->query('COMMIT');
is($wa->wait_query($mi), '0', 'and runs: its EXCEPTION block caught no_data_found');
is($wa->query('SELECT 1'), '1', 'the session goes on');
$wa->query('COMMIT');
# the procedure's expression after its COMMIT waits behind gb
$gh->query('BEGIN');
$gh->query('SELECT 1');
my $mp = $wa->start_query('CALL rg_proc()');
waits_ok($wapid, 'CALL waits for the place');
$wb->query('BEGIN');
my $mb2 = $wb->start_query("SELECT 'b2'");
waits_ok($wb->backend_pid, 'gb waits behind it');
$gh->query('COMMIT');
is($wb->wait_query($mb2), 'b2', "the procedure's COMMIT gives the place to gb");
waits_ok($wapid, "the procedure's expression after its COMMIT waits");
$wb->query('COMMIT');
is($wa->wait_query($mp), '', 'the procedure ends');
is($wa->query('SELECT count(*) FROM fresh WHERE x = -7'), '1',
	'its function ran (EXCEPTION block) and its INSERT committed');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $wapid"),
	'1', 'the same backend: no crash');
counts_are('ga', 0, 0, 'group count empty after the functions');

# ===========================================================================
# 5. Exit paths give the place back
# ===========================================================================
my $e1 = session_of('tenant');
$e1->query('BEGIN');
$e1->query('SELECT 1');
counts_are('tenant', 1, 0, 'held');
$e1->query('SELECT 1/0');
counts_are('tenant', 0, 0, 'an error ends the transaction: place back (block still open)');
$e1->query('ROLLBACK');
$e1->query('BEGIN');
$e1->query('INSERT INTO twophase VALUES (1)');
counts_are('tenant', 1, 0, 'held');
$e1->query("PREPARE TRANSACTION 'rg_p1'");
counts_are('tenant', 0, 0, 'PREPARE TRANSACTION gives the place back');
$e1->query('BEGIN');
$e1->query('SELECT 1');
my $e2 = session_of('tenant');
$e2->query('BEGIN');
$e2->query('SELECT 1');
counts_are('tenant', 2, 0, 'full');
($ret, $out, $err) = try_login($node, tcp('tenant'), "COMMIT PREPARED 'rg_p1'");
is($ret, 0, 'COMMIT PREPARED runs while full (transaction control)') or diag $err;
$node->safe_psql('postgres', 'SELECT pg_terminate_backend(' . $e1->backend_pid . ')');
counts_are('tenant', 1, 0, 'a terminated holder gives its place back');
$e2->kill_client;
counts_are('tenant', 0, 0, 'a holder whose client went away gives it back');

# ===========================================================================
# 6. A statement never waits for its own transaction
# ===========================================================================
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION rg_q() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  SELECT count(*) INTO n FROM pg_class;
  PERFORM count(*) FROM spans;
  RETURN n;
END $$;
CREATE PROCEDURE rg_p() LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO spans VALUES (now(), now());
  COMMIT;
  INSERT INTO spans VALUES (now(), now());
  COMMIT;
  PERFORM rg_q();
END $$;
GRANT EXECUTE ON FUNCTION rg_q() TO PUBLIC;
GRANT EXECUTE ON PROCEDURE rg_p() TO PUBLIC;
});
my $so = session_of('solo');
foreach my $sql ('SELECT rg_q() > 0', 'DO $$BEGIN PERFORM rg_q(); END$$',
	'CALL rg_p()',
	'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT rg_q()',
	'COPY (SELECT rg_q()) TO STDOUT',
	'BEGIN; SELECT rg_q(); SAVEPOINT s; SELECT rg_q(); ROLLBACK TO s; SELECT rg_q(); COMMIT')
{
	ok(defined $so->query($sql), "solo=1, active_waits 0: $sql");
}
is($so->stderr, '', 'none of them waited for (or was refused) its own place');
$so->quit;
counts_are('solo', 0, 0, 'solo holds nothing afterwards');

# ===========================================================================
# 7. Never more than N, measured from inside the transactions
# ===========================================================================
my $script = $node->basedir . '/spans.sql';
open(my $fh, '>', $script) or die;
print $fh q{BEGIN;
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
SELECT pg_sleep(0.002);
INSERT INTO spans VALUES (to_timestamp(:t0), clock_timestamp());
COMMIT;
};
close $fh;
$node->safe_psql('postgres', 'TRUNCATE spans');
my ($bout, $berr) = ('', '');
my $bok = IPC::Run::run(
	[ 'pgbench', '-n', '-c', '24', '-j', '4', '-t', '15', '-f', $script, tcp('many') ],
	'<', '/dev/null', '>', \$bout, '2>', \$berr,
	IPC::Run::timeout(180));
ok($bok, '24 clients on many=3 finish') or diag $berr;
my $max = $node->safe_psql(
	'postgres', q{
WITH e AS (
  SELECT t0 AS t, 1 AS d FROM spans UNION ALL SELECT t1, -1 FROM spans
), r AS (
  SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS n FROM e
) SELECT max(n) || ' ' || (SELECT count(*) FROM spans) FROM r});
my ($most, $rows) = split / /, $max;
is($rows, 24 * 15, 'every transaction recorded its span');
ok($most <= 3, "at most 3 transactions in progress at any instant (max $most)");
ok($most >= 2, "and they did run side by side (max $most)");

my $pbscript = $node->basedir . '/pb.sql';
open($fh, '>', $pbscript) or die;
print $fh "SELECT count(*) FROM rg_probe_qid;\n";
close $fh;
($bout, $berr) = ('', '');
$bok = IPC::Run::run(
	[ 'pgbench', '-n', '-M', 'prepared', '-c', '16', '-j', '4', '-t', '200', '-f', $pbscript, tcp('pb') ],
	'<', '/dev/null', '>', \$bout, '2>', \$berr,
	IPC::Run::timeout(180));
ok($bok, 'pgbench 16 clients on pb=4 exits 0') or diag $berr;
like($bout, qr/number of transactions actually processed: 3200\b/, 'all 3200 transactions processed');
unlike($bout, qr/number of failed transactions: [1-9]/, '0 failed transactions');
counts_are('pb', 0, 0, 'pb holds nothing afterwards');

# ===========================================================================
# 8. query_id = pg_stat_statements.queryid
# ===========================================================================
# tenant's active_rejected events whose query_id is pg_stat_statements'
# queryid of a statement of tenant in the event's database, that statement
# matching $where (on s.query)
sub pgss_joined
{
	my ($where) = @_;
	return $node->safe_psql('postgres', q{
SELECT count(*)
FROM role_guard_events e
JOIN pg_stat_statements s
  ON s.queryid = e.query_id
 AND s.userid = (SELECT oid FROM pg_roles WHERE rolname = 'tenant')
 AND s.dbid = (SELECT oid FROM pg_database WHERE datname = e.datname)
WHERE e.event = 'active_rejected' AND } . $where);
}
SKIP:
{
	skip 'pg_stat_statements is not installed', 20 unless $pgss;
	ok(set_conf($node, 'role_guard.active_waits' => 'tenant=0, dbuser=0, solo=0'),
		'tenant refused at once again');
	$h1->query('BEGIN; SELECT 1');
	$h2->query('BEGIN; SELECT 1');
	counts_are('tenant', 2, 0, 'full');
	($ret, $out, $err) =
	  try_login($node, tcp('tenant'), 'SELECT count(*) FROM rg_probe_qid WHERE x > 7');
	like($err, qr/too many active transactions/, 'refused');
	$h1->query('COMMIT');
	($ret, $out, $err) =
	  try_login($node, tcp('tenant'), 'SELECT count(*) FROM rg_probe_qid WHERE x > 7');
	is($ret, 0, 'the same statement runs once there is room');
	is(pgss_joined(q{s.query LIKE '%rg_probe_qid WHERE x >%'}),
		'1', 'the refusal event query_id joins pg_stat_statements on queryid, user and database');
	# a utility statement: pg_stat_statements, loaded after role_guard,
	# clears its own id before role_guard's hook sees it
	$h1->query('BEGIN; SELECT 1');
	counts_are('tenant', 2, 0, 'full again');
	($ret, $out, $err) = try_login($node, tcp('tenant'), 'LISTEN rg_probe_channel');
	like($err, qr/too many active transactions/, 'a utility statement refused');
	$h1->query('COMMIT');
	($ret, $out, $err) = try_login($node, tcp('tenant'), 'LISTEN rg_probe_channel');
	is($ret, 0, 'it runs once there is room');
	is(pgss_joined(q{s.query = 'LISTEN rg_probe_channel'}),
		'1', 'the utility refusal event query_id joins pg_stat_statements too');
	# EXECUTE, refused before the executor reports the prepared query's id
	# (pg_stat_statements clears the EXECUTE's own): the event carries the
	# prepared query's, pg_stat_statements' queryid for it, for an EXECUTE
	# sent alone and for one in a string of two statements
	my $x = session_of('tenant');
	$x->query('PREPARE rg_qx AS SELECT count(*) FROM rg_probe_qid WHERE x < 3');
	$h1->query('BEGIN; SELECT 1');
	counts_are('tenant', 2, 0, 'full for EXECUTE');
	$x->query('EXECUTE rg_qx');
	like($x->stderr, qr/too many active transactions/, 'EXECUTE refused');
	($ret, $out, $err) = try_login($node, tcp('tenant'),
		'PREPARE rg_qy AS SELECT count(*) FROM rg_probe_qid WHERE x < 3; EXECUTE rg_qy');
	like($err, qr/too many active transactions/, 'EXECUTE after PREPARE in one string refused');
	$h1->query('COMMIT');
	isnt($x->query('EXECUTE rg_qx') // '', '', 'EXECUTE runs once there is room');
	# while an EXECUTE waits, pg_stat_activity shows the prepared query's id
	ok(set_conf($node, 'role_guard.active_waits' => 'tenant=60s, dbuser=0, solo=0'),
		'tenant waits again');
	$h1->query('BEGIN; SELECT 1');
	counts_are('tenant', 2, 0, 'full while an EXECUTE waits');
	my $xm = $x->start_query('EXECUTE rg_qx');
	waits_ok($x->backend_pid, 'the EXECUTE waits');
	is( $node->safe_psql(
			'postgres',
			'SELECT a.query_id = s.queryid FROM pg_stat_activity a JOIN pg_stat_statements s'
			  . ' ON s.userid = a.usesysid AND s.dbid = a.datid WHERE a.pid = '
			  . $x->backend_pid
			  . q{ AND s.query LIKE '%rg_probe_qid WHERE x < $1'}),
		't',
		"pg_stat_activity shows the prepared query's id while it waits");
	$h1->query('COMMIT');
	isnt($x->wait_query($xm) // '', '', 'it runs when a place frees');
	ok(set_conf($node, 'role_guard.active_waits' => 'tenant=0, dbuser=0, solo=0'),
		'tenant refused at once again');
	$x->quit;
	is(pgss_joined(q{s.query LIKE '%rg_probe_qid WHERE x < $1'}),
		'2', 'both EXECUTE refusals join pg_stat_statements on the prepared query');
	$h2->query('COMMIT');
}
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM role_guard_events WHERE event = 'rejected' AND query_id IS NOT NULL"),
	'0',
	'login events have no query_id');

# ===========================================================================
# 9. Monitor mode: nothing waits, would_wait events
# ===========================================================================
ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'monitor mode');
$h1->query('BEGIN; SELECT 1');
$h2->query('BEGIN; SELECT 1');
($ret, $out, $err) = try_login($node, tcp('tenant'), 'SELECT 7');
is($ret, 0, 'monitor: a third transaction runs') or diag $err;
is(active_of('tenant')->{would_wait}, '1', 'would_wait counts it');
@ev = events_where($node, { event => 'would_wait', rolname => 'tenant' });
is(scalar @ev, 1, 'one would_wait event');
$h1->query('COMMIT');
$h2->query('COMMIT');
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'enforce again');

# ===========================================================================
# 10. ALTER EXTENSION role_guard UPDATE 1.1 -> 1.2
# ===========================================================================
$node->safe_psql('postgres', 'CREATE DATABASE upd');
$node->safe_psql('upd', "CREATE EXTENSION role_guard VERSION '1.1'");
is( $node->safe_psql('upd',
		"SELECT count(*) >= 0 FROM role_guard_usage, role_guard_events"),
	't', '1.1: its views answer');
is( $node->safe_psql('upd',
		"SELECT count(*) FROM pg_attribute WHERE attrelid = 'role_guard_events'::regclass AND attname = 'query_id'"),
	'0', '1.1: no query_id');
$node->safe_psql('upd', 'ALTER EXTENSION role_guard UPDATE');
is( $node->safe_psql('upd', "SELECT extversion FROM pg_extension WHERE extname = 'role_guard'"),
	'1.2', 'updated to 1.2');
is( $node->safe_psql('upd',
		"SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'role_guard_usage'::regclass AND attname IN ('active_budget','active_transactions','statements_waiting','statements_waited','statements_rejected','would_wait')"),
	'active_budget,active_transactions,statements_waiting,statements_waited,statements_rejected,would_wait',
	'1.2: role_guard_usage has the active columns');
is( $node->safe_psql('upd',
		"SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'role_guard_events'::regclass AND attname = 'query_id'"),
	'bigint', '1.2: role_guard_events.query_id bigint');
is( $node->safe_psql('upd',
		"SELECT active_budget FROM role_guard_usage WHERE rolname = 'tenant'"),
	'2', '1.2: active_budget of tenant');
is( $node->safe_psql('upd',
		"SELECT count(*) FROM role_guard_budgets WHERE kind LIKE 'active\\_%'"),
	'6', '1.2: one active_* row per active entry');

# ===========================================================================
# 12. Reloads, earlier waiters, SET CONSTRAINTS, "*", advisory locks
# ===========================================================================
my $base = 'tenant=2, +grp=1, @limdb=1, solo=1, many=3, pb=4';

ok(set_conf($node, 'role_guard.active_waits' => 'late=-0, lt=0, star=0'),
	'active_waits: late, lt and star refused at once ("-0" is 0)');
my $la = session_of('late');
my $lc = session_of('late');
$la->query('BEGIN; SELECT 1');
counts_are('late', 0, 0, 'late has no entry: its open transaction holds nothing');
ok(set_conf($node, 'role_guard.active_budgets' => "$base, late=1"),
	'late=1 by a reload while a late transaction is open');
# (a session reads a reload before its next command runs)
$lc->query('BEGIN; SELECT 1');
counts_are('late', 1, 0, 'a transaction begun after the reload takes the place');
is($la->query('SELECT 2'), '2',
	'the transaction open at the reload goes on without a place');
is($la->stderr, '', 'no wait, no refusal in the middle of its work');
counts_are('late', 1, 0, 'still one place held');
$la->query('COMMIT');
$lc->query('COMMIT');
$la->query('BEGIN; SET CONSTRAINTS ALL DEFERRED');
counts_are('late', 0, 0, 'SET CONSTRAINTS takes no place');
$la->query('SELECT 1');
counts_are('late', 1, 0, 'its next statement does (the next transaction takes one)');
$la->query('COMMIT');

# a failed transaction block when a reload gives its role a budget: its
# ROLLBACK calls no transaction callback, and its next transaction takes
# a place all the same
ok(set_conf($node, 'role_guard.active_budgets' => $base), 'late has no entry');
$la->query('BEGIN; SELECT 1/0');
ok(set_conf($node, 'role_guard.active_budgets' => "$base, late=1"),
	'late=1 by a reload while a late transaction block has failed');
$la->query('SELECT 1');
$la->query('ROLLBACK');
$la->query('BEGIN; SELECT 1');
counts_are('late', 1, 0, 'the transaction after the ROLLBACK takes a place');
$la->query('COMMIT');

# A session ended while it holds a place and a transaction-level advisory
# lock: the place goes back once the lock is released (in the abort at
# exit), so the statement given it finds the lock free.
$la->query('BEGIN; SELECT pg_advisory_xact_lock(777)');
counts_are('late', 1, 0, 'late holds the place and lock 777');
ok(set_conf($node, 'role_guard.active_waits' => 'lt=0, star=0'), 'late waits with no limit');
$m = $lc->start_query('SELECT pg_try_advisory_xact_lock(777)');
waits_ok($lc->backend_pid, 'a second late statement waits for the place');
$node->safe_psql('postgres', 'SELECT pg_terminate_backend(' . $la->backend_pid . ')');
is($lc->wait_query($m, 30), 't', 'given the place, it finds lock 777 free');
$la->quit;
$la = session_of('late');
ok(set_conf($node, 'role_guard.active_waits' => 'late=0, lt=0, star=0'),
	'late refused at once again');

# CALL of a procedure that rolls back, over the extended protocol with a
# parameter: the portal's plan (and the statement) are gone when the hook
# comes back; the session goes on
$node->safe_psql('postgres', q{
CREATE PROCEDURE rg_rb(x int) LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO witness VALUES (x);
  ROLLBACK;
  INSERT INTO witness VALUES (x + 1);
END $$;
GRANT EXECUTE ON PROCEDURE rg_rb(int) TO PUBLIC});
my ($pok, $pout, $perr) = run_pgbench($node, tcp('late'), 'extended', 20,
	"\\set x random(1, 1000)\nCALL rg_rb(:x);\n");
ok($pok, 'pgbench -M extended: CALL of a procedure that rolls back, 20 times') or diag $perr;
like($pout, qr/number of failed transactions: 0\b|processed: 20\/20/, 'all 20 ran');
$node->safe_psql('postgres', 'TRUNCATE witness');
$la->query('BEGIN; SELECT 1');
counts_are('late', 1, 0, 'late holds its place again');

# a statement waiting when a reload raises or removes its budget runs
ok(set_conf($node, 'role_guard.active_waits' => 'lt=0, star=0'),
	'late waits with no limit');
my $lcpid = $lc->backend_pid;
$m = $lc->start_query('SELECT 43');
waits_ok($lcpid, 'a second late statement waits (late=1)');
ok(set_conf($node, 'role_guard.active_budgets' => "$base, late=2"),
	'late=2 by a reload while it waits');
is($lc->wait_query($m, 30), '43', 'the waiter runs at once: the new budget has room');
ok(set_conf($node, 'role_guard.active_budgets' => "$base, late=1"), 'late=1 again');
$m = $lc->start_query('SELECT 44');
waits_ok($lcpid, 'a late statement waits again');
ok(set_conf($node, 'role_guard.active_budgets' => $base),
	'late has no entry any more (a reload while it waits)');
is($lc->wait_query($m, 30), '44', 'the waiter runs at once: no budget limits it');
ok(set_conf($node, 'role_guard.active_budgets' => "$base, late=1"), 'late=1 again');
$la->query('COMMIT');
$la->query('BEGIN; SELECT 1');
$m = $lc->start_query('SELECT 45');
waits_ok($lcpid, 'a late statement waits once more');
ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'monitor mode while it waits');
is($lc->wait_query($m, 30), '45', 'the waiter runs at once');
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'enforce again');
$la->query('COMMIT');
counts_are('late', 0, 0, 'late holds nothing and waits for nothing');

# an earlier statement that waits for its own entry (lr=1) holds no place
# of a +group entry with room (+lg=2): another member runs at once
ok(set_conf($node, 'role_guard.active_budgets' => "$base, lr=1, +lg=2, never=7"),
	'lr=1, +lg=2, never=7');
is($node->safe_psql('postgres', "SELECT active_budget FROM role_guard_usage WHERE rolname = 'never'"),
	'7', 'role_guard_usage: the active budget of a role not seen since the start');
my $r1 = session_of('lr');
my $r2 = session_of('lr');
$r1->query('BEGIN; SELECT 1');
$m = $r2->start_query('SELECT 46');
waits_ok($r2->backend_pid, 'a second lr statement waits (lr=1)');
($ret, $out, $err) = try_login($node, tcp('lt'), 'SELECT 1');
is($ret, 0, 'lt runs at once: the waiting lr statement waits for lr=1, not for +lg=2, which has room')
  or diag $err;
$r1->query('COMMIT');
is($r2->wait_query($m, 30), '46', 'the earlier waiter runs');
# but a count that was full for a waiter stays held back for it while it
# waits: lr waits for lr=1 and +lg=2 (both full); the +lg place freed
# meanwhile goes to no later lt statement (otherwise lt and another role
# could take its counts' places in turn and keep it out)
my $lt1 = session_of('lt');
$r1->query('BEGIN; SELECT 1');
$lt1->query('BEGIN; SELECT 1');
$m = $r2->start_query('SELECT 47');
waits_ok($r2->backend_pid, 'an lr statement waits: lr=1 and +lg=2 are both full');
$lt1->query('COMMIT');
($ret, $out, $err) = try_login($node, tcp('lt'), 'SELECT 1');
like(
	$err,
	qr/DETAIL:  role_guard active budget "\+lg=2" is full \(1 of 2 transactions in progress, and 1 earlier statement waiting for a place\); the statement waited 0\.0 s/,
	'lt refused: the +lg place freed while lr waits is the waiter\'s');
$r1->query('COMMIT');
is($r2->wait_query($m, 30), '47', 'the waiter runs once lr=1 has room');
$lt1->quit;
$_->quit for ($r1, $r2);

# A reload that adds an entry while two statements wait: neither runs under
# the counts it resolved before (a place the walk gave it under them goes
# back), so +lg=1 is never exceeded.  The waiters read the reload newest
# first, so the later one's walk would otherwise serve the earlier one.
ok(set_conf($node, 'role_guard.active_budgets' => "$base, lr=1"), 'lr=1');
ok(set_conf($node, 'role_guard.active_waits' => 'lt=0, star=0'), 'lr waits with no limit');
my $ra = session_of('lr');
my $rw1 = session_of('lr');
my $rw2 = session_of('lr');
$ra->query('BEGIN; SELECT 1');
my $m1 = $rw1->start_query('BEGIN; SELECT 47');
waits_ok($rw1->backend_pid, 'the first lr waiter waits');
my $m2 = $rw2->start_query('BEGIN; SELECT 48');
waits_ok($rw2->backend_pid, 'the second lr waiter waits');
ok(set_conf($node, 'role_guard.active_budgets' => "$base, lr=2, +lg=1"),
	'lr=2, +lg=1 by a reload while both wait');
is($rw1->wait_query($m1, 30), '47', 'the first waiter runs (lr and +lg have room)');
waits_ok($rw2->backend_pid, 'the second still waits: +lg=1 is held');
$ra->query('COMMIT');
waits_ok($rw2->backend_pid, 'and still once the first holder commits');
is( $node->safe_psql('postgres',
		"SELECT connections FROM role_guard_budgets WHERE kind = 'active_group' AND entry = '+lg'"),
	'1', '+lg: one transaction in progress');
$rw1->query('COMMIT');
is($rw2->wait_query($m2, 30), '48', 'the second runs once the first commits');
$rw2->query('COMMIT');

# a refusal counts on the row of the entry its DETAIL names only
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
ok(set_conf($node, 'role_guard.active_budgets' => "$base, lr=5, +lg=1"), 'lr=5, +lg=1');
ok(set_conf($node, 'role_guard.active_waits' => 'lr=0, lt=0, star=0'), 'lr refused at once');
$ra->query('BEGIN; SELECT 1');
($ret, $out, $err) = try_login($node, tcp('lr'), 'SELECT 1');
like($err, qr/"\+lg=1" is full/, 'lr refused by +lg=1');
is( $node->safe_psql('postgres',
		"SELECT string_agg(entry || ' ' || rejected, ', ' ORDER BY entry) FROM role_guard_budgets WHERE entry IN ('lr', '+lg') AND kind LIKE 'active%'"),
	'+lg 1, lr 0', 'the refusal counts on +lg, not on lr');
$ra->query('COMMIT');
$_->quit for ($ra, $rw1, $rw2);

# the "*" row counts the refusals made under it, not the role's own entry's
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
ok(set_conf($node, 'role_guard.active_budgets' => "$base, star=1"), 'star=1');
my $st = session_of('star');
$st->query('BEGIN; SELECT 1');
($ret, $out, $err) = try_login($node, tcp('star'), 'SELECT 1');
like($err, qr/"star=1" is full/, 'star refused under its own entry');
$st->query('COMMIT');
ok(set_conf($node, 'role_guard.active_budgets' => '*=1'), 'only *=1');
is( $node->safe_psql('postgres',
		"SELECT rejected FROM role_guard_budgets WHERE kind = 'active_default'"),
	'0', 'the * row before any refusal under it: 0 (not the star= entry\'s)');
is($node->safe_psql('postgres', "SELECT active_budget FROM role_guard_usage WHERE rolname = 'never'"),
	'1', '... and its budget under *');
$st->query('BEGIN; SELECT 1');
($ret, $out, $err) = try_login($node, tcp('star'), 'SELECT 1');
like($err, qr/"\*=1" is full/, 'star refused under *');
is( $node->safe_psql('postgres',
		"SELECT rejected FROM role_guard_budgets WHERE kind = 'active_default'"),
	'1', 'the * row: one refusal, the one whose DETAIL named it');
$st->query('COMMIT');
$st->quit;
$la->quit;
$lc->quit;
ok(set_conf($node, 'role_guard.active_budgets' => $base), 'the budgets of the start');
ok(set_conf($node, 'role_guard.active_waits' => 'tenant=0, dbuser=0, solo=0'),
	'the waits of the start');

# Never more than N, seen through locks: each transaction takes a shared
# transaction-level advisory lock and records how many transactions hold
# it.  A place goes back once the locks are released, so no transaction
# ever sees more than many=3 (nor one that has given its place back).
$script = $node->basedir . '/witness.sql';
open($fh, '>', $script) or die;
print $fh q{BEGIN;
SELECT pg_advisory_xact_lock_shared(4242);
INSERT INTO witness SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted;
END;
};
close $fh;
($bout, $berr) = ('', '');
$bok = IPC::Run::run(
	[ 'pgbench', '-n', '-c', '12', '-j', '2', '-t', '60', '-f', $script, tcp('many') ],
	'<', '/dev/null', '>', \$bout, '2>', \$berr,
	IPC::Run::timeout(180));
ok($bok, '12 clients on many=3 finish') or diag $berr;
($most, $rows) = split / /, $node->safe_psql('postgres',
	q{SELECT max(n) || ' ' || count(*) FROM witness});
is($rows, 12 * 60, 'every transaction recorded what it saw');
ok($most <= 3, "no transaction saw more than 3 holding the lock (max $most)");
ok($most >= 2, "and they did run side by side (max $most)");

# ===========================================================================
# 11. SIGKILL of a holder: crash-restart, every count starts again
# ===========================================================================
my $k = session_of('tenant');
$k->query('BEGIN; SELECT 1');
counts_are('tenant', 1, 0, 'held');
kill 'KILL', $k->backend_pid;
ok(poll_until($node, 'SELECT 1', '1', 60), 'the server restarts after the crash');
counts_are('tenant', 0, 0, 'after crash-restart nothing is held');
$h1 = session_of('tenant');
$h2 = session_of('tenant');
$h1->query('BEGIN; SELECT 1');
$h2->query('BEGIN; SELECT 1');
($ret, $out, $err) = try_login($node, tcp('tenant'), 'SELECT 1');
like($err, qr/too many active transactions/, 'and the budget is enforced again');
$h1->query('COMMIT');
$h2->query('COMMIT');

# ===========================================================================
# 13. A utility statement that runs transactions of its own (VACUUM of two
#     tables commits after each) keeps its place through its own commits,
#     to its end; an error in one of them gives it back
# ===========================================================================
ok(set_conf($node, 'role_guard.active_budgets' => $base), 'the base budgets again');
ok(set_conf($node, 'role_guard.active_waits' => 'tenant=0, dbuser=0, solo=0'),
	'solo is refused at once');
$node->safe_psql(
	'postgres', q{
CREATE TABLE vt1 (i int);
CREATE TABLE vt2 (i int);
INSERT INTO vt1 SELECT generate_series(1, 1000);
ALTER TABLE vt1 OWNER TO solo;
ALTER TABLE vt2 OWNER TO solo;
GRANT UPDATE ON vt2 TO star;
});
my $locker = session_of('star');
my $vac    = session_of('solo');

# Wait until the solo session waits for a heavyweight lock.
sub solo_lock_wait_ok
{
	my ($name) = @_;
	ok( poll_until(
			$node,
			q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'solo' AND wait_event_type = 'Lock'},
			'1'),
		$name)
	  or diag 'locker: ' . $locker->stderr . ' solo: ' . $vac->stderr;
}
$locker->query('BEGIN; LOCK TABLE vt2 IN ACCESS EXCLUSIVE MODE');
$m = $vac->start_query('VACUUM vt1, vt2');
solo_lock_wait_ok("VACUUM committed vt1's transaction and waits for vt2's lock in another");
counts_are('solo', 1, 0, 'VACUUM still holds its place after its own commits');
($ret, $out, $err) = try_login($node, tcp('solo'), 'SELECT 1');
like($err, qr/too many active transactions for role "solo"/,
	'so another solo statement is refused (solo=1)');
$locker->query('COMMIT');
ok(defined $vac->wait_query($m, 60), 'VACUUM ends');
counts_are('solo', 0, 0, 'its place goes back when it ends');
$vac->query('SET lock_timeout = 300');
$locker->query('BEGIN; LOCK TABLE vt2 IN ACCESS EXCLUSIVE MODE');
$vac->query('VACUUM vt1, vt2', 60);
like($vac->stderr, qr/lock timeout/, 'a VACUUM that fails in a later transaction of its own');
counts_are('solo', 0, 0, 'gives its place back');
$locker->query('COMMIT');
($ret, $out, $err) = try_login($node, tcp('solo'), 'SELECT 1');
is($ret, 0, 'and solo runs again') or diag $err;
# CREATE INDEX CONCURRENTLY waits for older transactions in its own later
# transactions: it gives its place back at its first own commit, so a
# statement of its role that waited for that place (holding a lock on the
# table from its parse analysis, which the index build then waits for)
# runs, and neither waits for the other until a timeout
ok(set_conf($node, 'role_guard.active_waits' => 'tenant=0, dbuser=0, solo=60s'),
	'solo waits up to 60 s');
$node->safe_psql('postgres', 'GRANT INSERT ON vt1 TO star; GRANT CREATE ON SCHEMA public TO solo');
$vac->query('RESET lock_timeout');
$locker->query('BEGIN; INSERT INTO vt1 VALUES (0)');
$m = $vac->start_query('CREATE INDEX CONCURRENTLY vt1_i ON vt1 (i)');
solo_lock_wait_ok('CREATE INDEX CONCURRENTLY waits for an older writer, after its first own commit');
my $writer = session_of('solo');
my $t0 = time;
is($writer->query(q{INSERT INTO vt1 VALUES (1) RETURNING 'inserted'}, 90), 'inserted',
	'a solo INSERT meanwhile runs (solo=1: the index build holds no place now)')
  or diag $writer->stderr;
ok(time - $t0 < 30, 'and does not wait for the active_waits limit');
$locker->query('COMMIT');
ok(defined $vac->wait_query($m, 60), 'the index build ends');
is($node->safe_psql('postgres',
		q{SELECT indisvalid FROM pg_index WHERE indexrelid = 'vt1_i'::regclass}),
	't', 'with a valid index');
counts_are('solo', 0, 0, 'nothing held afterwards');
$_->quit for ($locker, $vac, $writer);

# ===========================================================================
# 14. A superuser over the Unix socket never waits: counted, and logged
# ===========================================================================
{
	$node->safe_psql('postgres', 'CREATE ROLE boss LOGIN SUPERUSER');
	my $budgets = $node->safe_psql('postgres', 'SHOW role_guard.active_budgets');
	my $waits = $node->safe_psql('postgres', 'SHOW role_guard.active_waits');
	ok(set_conf($node,
			'role_guard.active_budgets' => "$budgets, boss=1",
			'role_guard.active_waits' => "$waits, boss=0"),
		'14 boss=1, refused at once');
	my $b1 = bg_session($node, sock_connstr($node, 'boss'));
	$b1->query('BEGIN; SELECT 1');
	counts_are('boss', 1, 0, '14 boss holds its place over the socket');
	my $pos = log_pos($node);
	my $b2 = bg_session($node, sock_connstr($node, 'boss'));
	$b2->query('BEGIN; SELECT 2');
	counts_are('boss', 2, 0,
		'14 a second boss transaction over the socket runs at once, counted');
	like(
		log_since($node, $pos),
		qr/LOG:  (?:00000: )?role_guard: superuser "boss" began a transaction over an active budget through the Unix socket\n.*DETAIL:  role_guard active budget "boss=1" is full \(1 of 1 transactions in progress\); a superuser over the Unix socket never waits \(role_guard\.superuser_socket_exempt\)\./,
		'14 logged, with a DETAIL that says why it did not wait');
	my ($ret, undef, $err) = try_login($node, tcp('boss'), 'SELECT 3');
	like($err, qr/ERROR:  too many active transactions for role "boss"/,
		'14 boss over TCP is bound: refused at once');
	$_->query('COMMIT') for ($b1, $b2);
	counts_are('boss', 0, 0, '14 both places given back');
	$_->quit for ($b1, $b2);
}

$_->quit for grep { $_->alive } ($h1, $h2, $w, $w2, $gh, $wa, $wb, $wa2, $d1);
$node->stop;
done_testing();
