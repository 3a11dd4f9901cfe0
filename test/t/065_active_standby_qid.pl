
# Copyright: see README.md.
#
# Active budgets on a hot standby, and query_id on the events of reaped and
# evicted sessions (issue 24).
#
#   1. query_id on a session's end: a session reaped idle, one reaped idle
#      in a transaction and one evicted for a login carry, in their event,
#      the query identifier of the last top-level statement the session ran
#      (not an earlier one): the value pg_stat_activity.query_id showed for
#      the idle session, and pg_stat_statements.queryid of that statement
#      for that user and database (when pg_stat_statements is installed);
#      after a statement that failed in its planning, that statement's id,
#      as pg_stat_activity shows it.
#   2. A hot standby with its own role_guard.active_budgets ('app=1'), the
#      primary with 'app=3': read-only transactions on the standby take and
#      give back places (idle in transaction keeps it; a second one waits,
#      with the wait event, and runs when the first commits), while WAL
#      replay goes on (the startup process and the WAL receiver take none);
#      a write refused by recovery gives its place back at the error, even
#      inside a transaction block; a transaction ended by a recovery
#      conflict gives its place back and the waiter behind it runs;
#      active_waits 'app=0' refuses with 53400 and an active_rejected event
#      on the standby only; the primary's budget is its own (three app
#      transactions there at once).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT events_where rg_standby);

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $pgss = -e "$pkglibdir/pg_stat_statements.so";

my $primary = rg_node(
	'primary',
	init => { allows_streaming => 1 },
	budgets => 'idler3=1',
	conf => qq{compute_query_id = on
} . ($pgss ? "shared_preload_libraries = 'role_guard, pg_stat_statements'\n" : '')
	  . qq{role_guard.reap_interval = '100ms'
role_guard.evict_idle = 'idler3=1s'
role_guard.active_budgets = 'app=3'
});
$primary->safe_psql(
	'postgres', q{
CREATE ROLE idler1 LOGIN;
CREATE ROLE idler2 LOGIN;
CREATE ROLE idler3 LOGIN;
CREATE ROLE idler4 LOGIN;
CREATE ROLE idler5 LOGIN;
CREATE ROLE idler6 LOGIN;
CREATE ROLE app LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
CREATE EXTENSION role_guard;
CREATE TABLE qid_probe (x int);
CREATE TABLE rep_t (i int);
CREATE TABLE conflict_t (i int);
INSERT INTO rep_t VALUES (1);
INSERT INTO conflict_t VALUES (1);
GRANT ALL ON qid_probe, rep_t, conflict_t TO PUBLIC;
});
$primary->safe_psql('postgres', 'CREATE EXTENSION pg_stat_statements') if $pgss;

my $v = $primary->safe_psql('postgres', 'SHOW server_version_num');

sub session_of
{
	my ($node, $user) = @_;
	my $s = bg_session($node, tcp_connstr($node, $user, 'postgres'));
	die "no session for $user: " . $s->stderr unless $s->connected;
	return $s;
}

# ===========================================================================
# 1. query_id of the last top-level statement on reaped and evicted sessions
# ===========================================================================

# The session runs two statements, then is left as $state; returns the
# query_id pg_stat_activity shows for it then, and the first statement's.
sub last_statement
{
	my ($s, $first, $last, $state) = @_;
	my $pid = $s->backend_pid;
	$s->query($first);
	$s->query($last);
	ok( poll_until($primary, "SELECT state FROM pg_stat_activity WHERE pid = $pid", $state),
		"pid $pid is $state after its last statement");
	return $primary->safe_psql('postgres',
		"SELECT coalesce(query_id::text, 'null') FROM pg_stat_activity WHERE pid = $pid");
}

# The event's query_id is the last statement's, also in pg_stat_statements.
sub qid_ok
{
	my ($event, $pid, $user, $want, $text) = @_;
	ok( poll_until($primary,
			"SELECT count(*) FROM role_guard_events WHERE event = '$event' AND pid = $pid", '1'),
		"$event: one event for pid $pid");
	my $got = $primary->safe_psql('postgres',
		"SELECT coalesce(query_id::text, 'null') FROM role_guard_events WHERE event = '$event' AND pid = $pid");
	like($want, qr/^-?[1-9]\d*$/, "$event: pg_stat_activity showed a query_id");
	is($got, $want, "$event: query_id is pg_stat_activity.query_id of the last statement");
  SKIP:
	{
		skip 'pg_stat_statements is not installed', 1 unless $pgss;
		is( $primary->safe_psql(
				'postgres', qq{
SELECT string_agg(s.query, ' | ')
FROM role_guard_events e
JOIN pg_stat_statements s
  ON s.queryid = e.query_id
 AND s.userid = (SELECT oid FROM pg_roles WHERE rolname = e.rolname)
 AND s.dbid = (SELECT oid FROM pg_database WHERE datname = e.datname)
WHERE e.event = '$event' AND e.pid = $pid}),
			$text,
			"$event: joins pg_stat_statements on queryid, user and database: the last statement");
	}
	return;
}

my $s1 = session_of($primary, 'idler1');
my $pid1 = $s1->backend_pid;
my $first_qid = do
{
	$s1->query('SELECT count(*) FROM qid_probe WHERE x = 5');
	$primary->safe_psql('postgres', "SELECT query_id FROM pg_stat_activity WHERE pid = $pid1");
};
my $qid1 = last_statement($s1, 'SELECT 1 FROM qid_probe WHERE x = 6',
	'SELECT count(*) FROM qid_probe WHERE x > 7', 'idle');
isnt($qid1, $first_qid, 'the two statements have different query_ids');
# the limit once pg_stat_activity has been read: no race with the reaper
ok(set_conf($primary, 'role_guard.idle_timeouts' => 'idler1=1s'), 'idle_timeouts idler1=1s');
qid_ok('reaped_idle', $pid1, 'idler1', $qid1,
	'SELECT count(*) FROM qid_probe WHERE x > $1');
$s1->quit;

my $s2 = session_of($primary, 'idler2');
my $pid2 = $s2->backend_pid;
my $qid2 = last_statement($s2, 'BEGIN; SELECT count(*) FROM qid_probe WHERE x = 5',
	'SELECT max(x) FROM qid_probe WHERE x < 3', 'idle in transaction');
ok(set_conf($primary, 'role_guard.idle_in_transaction_timeouts' => 'idler2=1s'),
	'idle_in_transaction_timeouts idler2=1s');
qid_ok('reaped_idle_in_transaction', $pid2, 'idler2', $qid2,
	'SELECT max(x) FROM qid_probe WHERE x < $1');
$s2->quit;

# idler3=1 and evict_idle idler3=1s: a second login evicts the idle one
my $s3 = session_of($primary, 'idler3');
my $pid3 = $s3->backend_pid;
my $qid3 = last_statement($s3, 'SELECT count(*) FROM qid_probe WHERE x = 5',
	'SELECT min(x) FROM qid_probe WHERE x <> 9', 'idle');
ok( poll_until($primary,
		"SELECT now() - state_change > interval '1.3 s' FROM pg_stat_activity WHERE pid = $pid3",
		't'),
	'the idler3 session has been idle over its evict_idle time');
ok(poll_login_ok($primary, tcp_connstr($primary, 'idler3', 'postgres')),
	'a second idler3 login gets in by evicting the idle one');
qid_ok('evicted', $pid3, 'idler3', $qid3, 'SELECT min(x) FROM qid_probe WHERE x <> $1');
$s3->quit;

# A utility statement last: pg_stat_statements, loaded after role_guard,
# clears a utility statement's own id before role_guard's hook sees it;
# the event has the id pg_stat_activity shows.
my $s4 = session_of($primary, 'idler4');
my $pid4 = $s4->backend_pid;
my $qid4 = last_statement($s4, 'SELECT 1 FROM qid_probe WHERE x = 6', 'LISTEN qid_channel',
	'idle');
ok(set_conf($primary, 'role_guard.idle_timeouts' => 'idler4=1s'), 'idle_timeouts idler4=1s');
qid_ok('reaped_idle', $pid4, 'idler4', $qid4, 'LISTEN qid_channel');
$s4->quit;

# EXECUTE of a prepared statement last: with pg_stat_statements the id is
# the prepared query's (the executor reports it), without it EXECUTE's own.
my $s5 = session_of($primary, 'idler5');
my $pid5 = $s5->backend_pid;
my $qid5 = last_statement($s5,
	'PREPARE qid_p AS SELECT count(*) FROM qid_probe WHERE x < 42', 'EXECUTE qid_p', 'idle');
ok(set_conf($primary, 'role_guard.idle_timeouts' => 'idler5=1s'), 'idle_timeouts idler5=1s');
qid_ok('reaped_idle', $pid5, 'idler5', $qid5,
	'PREPARE qid_p AS SELECT count(*) FROM qid_probe WHERE x < $1');
$s5->quit;

# A last statement that fails in its planning (1/0 is folded there): it ran
# no executor, yet pg_stat_activity shows its id (parse analysis computed
# it), and the event carries that id, not the statement before's.
my $s6 = session_of($primary, 'idler6');
my $pid6 = $s6->backend_pid;
my $qid6 = last_statement($s6, 'SELECT 1 FROM qid_probe WHERE x = 6',
	'SELECT x / 0 FROM (SELECT 1 AS x) AS t', 'idle');
like($s6->stderr, qr/division by zero/, 'the last statement failed');
ok(set_conf($primary, 'role_guard.idle_timeouts' => 'idler6=1s'), 'idle_timeouts idler6=1s');
ok( poll_until($primary,
		"SELECT count(*) FROM role_guard_events WHERE event = 'reaped_idle' AND pid = $pid6", '1'),
	"reaped_idle: one event for pid $pid6");
like($qid6, qr/^-?[1-9]\d*$/, 'pg_stat_activity showed the failed statement\'s query_id');
is( $primary->safe_psql('postgres',
		"SELECT coalesce(query_id::text, 'null') FROM role_guard_events WHERE event = 'reaped_idle' AND pid = $pid6"),
	$qid6, 'reaped_idle after a statement that failed in its planning: its query_id, as pg_stat_activity shows');
$s6->quit;
ok(set_conf($primary, 'role_guard.idle_timeouts' => ''), 'idle_timeouts off');


# ===========================================================================
# 2. Hot standby with its own active budget
# ===========================================================================
my $standby = rg_standby(
	$primary, 'standby',
	conf => qq{role_guard.active_budgets = 'app=1'
role_guard.active_waits = ''
role_guard.idle_timeouts = ''
role_guard.idle_in_transaction_timeouts = ''
role_guard.evict_idle = ''
role_guard.budgets = ''
max_standby_streaming_delay = '100ms'
});
$primary->wait_for_catchup($standby, 'replay');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

sub s_counts_are
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($held, $waiting, $name) = @_;
	ok( poll_until(
			$standby,
			"SELECT active_transactions || '/' || statements_waiting FROM role_guard_usage WHERE rolname = 'app'",
			"$held/$waiting"),
		"standby: $name");
}

sub s_waits_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($pid, $name) = @_;
	my $want = $v >= 170000 ? 'Extension/RoleGuardActiveWait' : 'Extension/Extension';
	ok( poll_until(
			$standby,
			"SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity WHERE pid = $pid",
			$want),
		"standby: $name");
}

is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('startup', 'walreceiver') AND wait_event = 'RoleGuardActiveWait'"),
	'0', 'the startup process and the WAL receiver wait for nothing');

my $a1 = session_of($standby, 'app');
my $a2 = session_of($standby, 'app');
$a1->query('BEGIN');
s_counts_are(0, 0, 'BEGIN takes no place');
is($a1->query('SELECT count(*) FROM rep_t'), '1', 'standby: a read-only transaction reads');
s_counts_are(1, 0, 'the read-only transaction holds a place, idle in transaction');
is( $standby->safe_psql('postgres',
		"SELECT active_budget FROM role_guard_usage WHERE rolname = 'app'"),
	'1', "the standby's own active budget for app (1; the primary's is 3)");

my $m = $a2->start_query('SELECT count(*) FROM rep_t');
s_waits_ok($a2->backend_pid, 'a second read-only transaction waits');
s_counts_are(1, 1, 'one holds, one waits');

# replay goes on while a place is held and another waited for
$primary->safe_psql('postgres', 'INSERT INTO rep_t VALUES (2)');
$primary->wait_for_catchup($standby, 'replay');
ok(1, 'WAL replay reaches the standby while its budget is full and a statement waits');

$a1->query('COMMIT');
# (its snapshot was taken before it waited: it may not see the new row)
like($a2->wait_query($m), qr/^[12]$/, 'the waiter runs when the place is given back');
is($a2->query('SELECT count(*) FROM rep_t'), '2', 'the next transaction sees the replayed row');
s_counts_are(0, 0, 'every place given back');
is( $standby->safe_psql('postgres',
		"SELECT statements_waited FROM role_guard_usage WHERE rolname = 'app'"),
	'1', 'standby: statements_waited 1');

# a write refused by recovery gives its place back at the error
$a1->query('INSERT INTO rep_t VALUES (3)');
like($a1->stderr, qr/cannot execute INSERT in a read-only transaction/,
	'standby: a write is refused');
s_counts_are(0, 0, 'the refused write holds no place');
$a1->query('BEGIN');
$a1->query('SELECT 1 FROM rep_t LIMIT 1');
s_counts_are(1, 0, 'a transaction holds a place');
$a1->query('INSERT INTO rep_t VALUES (4)');
s_counts_are(0, 0, 'an error inside the block gives the place back before ROLLBACK');
is($a2->query('SELECT 5'), '5', 'another transaction gets the place meanwhile');
$a1->query('ROLLBACK');
s_counts_are(0, 0, 'nothing held after ROLLBACK');

# a transaction ended by a recovery conflict gives its place back
my $a3 = session_of($standby, 'app');
$a1->query('BEGIN');
is($a1->query('SELECT count(*) FROM conflict_t'), '1', 'a transaction reads conflict_t');
s_counts_are(1, 0, 'it holds the place (and a lock on conflict_t)');
$m = $a3->start_query('SELECT 6');
s_waits_ok($a3->backend_pid, 'a statement waits behind it');
$primary->safe_psql('postgres', 'DROP TABLE conflict_t');
is($a3->wait_query($m), '6',
	'the recovery conflict ends the holder and the waiter gets its place');
$primary->wait_for_catchup($standby, 'replay');
ok(1, 'replay went past the conflict');
ok( poll_until($standby,
		"SELECT confl_lock > 0 FROM pg_stat_database_conflicts WHERE datname = 'postgres'", 't'),
	'the holder was ended by a lock conflict with recovery');
s_counts_are(0, 0, 'no place left behind by the conflict');
$a1->quit;
$a1 = session_of($standby, 'app');

# a refusal at once on the standby only
ok(set_conf($standby, 'role_guard.active_waits' => 'app=0'), 'standby: active_waits app=0');
$a1->query('BEGIN');
$a1->query('SELECT 1');
s_counts_are(1, 0, 'full');
my ($ret, $out, $err) =
  try_login($standby, tcp_connstr($standby, 'app', 'postgres'), 'SELECT count(*) FROM rep_t');
like($err, qr/ERROR:  too many active transactions for role "app"/,
	'standby: refused with 53400');
like($err, qr/role_guard active budget "app=1" is full \(1 of 1 transactions in progress\)/,
	'standby: the DETAIL names the entry and its use');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM role_guard_events WHERE event = 'active_rejected' AND rolname = 'app' AND query_id IS NOT NULL"),
	'1', 'standby: one active_rejected event, with a query_id');
$a1->query('COMMIT');
s_counts_are(0, 0, 'given back');

# the primary keeps its own budget of 3
my @p = map { session_of($primary, 'app') } 1 .. 3;
$_->query('BEGIN; SELECT count(*) FROM rep_t') for @p;
ok( poll_until($primary,
		"SELECT active_transactions || '/' || statements_waiting FROM role_guard_usage WHERE rolname = 'app'",
		'3/0'),
	'primary: three app transactions at once (its own budget)');
$_->query('COMMIT') for @p;
is( $primary->safe_psql('postgres',
		"SELECT count(*) FROM role_guard_events WHERE event = 'active_rejected'"),
	'0', 'primary: none of the standby\'s refusals');
$primary->wait_for_catchup($standby, 'replay');
ok(1, 'replication works at the end');

$_->quit for (@p, $a1, $a2, $a3);
$standby->stop;
$primary->stop;
done_testing();
