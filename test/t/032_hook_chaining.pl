
# Copyright: see README.md.
#
# Hook chaining: role_guard shares the executor and utility hooks with
# pg_stat_statements, auto_explain and pgaudit.  In both load orders
# (role_guard last, so its hooks run first, and role_guard first) a known
# workload must give pg_stat_statements' right call counts, auto_explain's
# plans and pgaudit's AUDIT lines, and role_guard's own statements and
# active_statements; a budget still refuses.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT run_pgbench);

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
foreach my $lib (qw(pg_stat_statements auto_explain pgaudit))
{
	plan skip_all => "$lib is not installed"
	  unless -e "$pkglibdir/$lib.so";
}

my @orders = (
	[ 'rg_last',  'pg_stat_statements, auto_explain, pgaudit, role_guard' ],
	[ 'rg_first', 'role_guard, pg_stat_statements, auto_explain, pgaudit' ],);

foreach my $o (@orders)
{
	my ($name, $libs) = @$o;
	run_order($name, $libs);
}
done_testing();

sub run_order
{
	my ($name, $libs) = @_;
	my $node = rg_node(
		"chain_$name",
		budgets => 'app=3',
		conf    => qq{
shared_preload_libraries = '$libs'
pg_stat_statements.track = 'all'
pg_stat_statements.track_utility = on
auto_explain.log_min_duration = 0
pgaudit.log = 'read, write'
pgaudit.log_catalog = off
});
	my $su = $node->safe_psql('postgres', 'SELECT current_user');
	is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
		$libs, "$name: shared_preload_libraries = '$libs'");

	$node->safe_psql(
		'postgres', q{
CREATE EXTENSION role_guard;
CREATE EXTENSION pg_stat_statements;
CREATE EXTENSION pgaudit;
CREATE ROLE app LOGIN;
CREATE SCHEMA s AUTHORIZATION app;
SET ROLE app;
CREATE TABLE s.t (x int);
INSERT INTO s.t SELECT generate_series(1, 100);
CREATE TABLE s.zero (x int);
INSERT INTO s.zero VALUES (0);
CREATE FUNCTION s.f3() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE r bigint;
BEGIN
	SELECT count(*) INTO r FROM s.t;
	SELECT count(*) INTO r FROM s.t WHERE x > 50;
	PERFORM x FROM s.t LIMIT 1;
	RETURN r;
END$$;
RESET ROLE;
});

	my $tcp = tcp_connstr($node, 'app');
	my $appid = $node->safe_psql('postgres', "SELECT 'app'::regrole::oid");

	$node->safe_psql('postgres',
		'SELECT pg_stat_statements_reset(); SELECT role_guard_reset()');
	my $pos = log_pos($node);
	my $expected = 0;

	# -----------------------------------------------------------------
	# The workload, from app.
	# -----------------------------------------------------------------
	my $ok = 1;
	for (1 .. 5)
	{
		my ($r) = try_login($node, $tcp, 'SELECT count(*) FROM s.t WHERE x > 0');
		$ok &&= $r == 0;
	}
	for (1 .. 3)
	{
		my ($r) = try_login($node, $tcp, 'INSERT INTO s.t VALUES (7)');
		$ok &&= $r == 0;
	}
	for (1 .. 2)
	{
		my ($r) = try_login($node, $tcp, 'SELECT s.f3()');
		$ok &&= $r == 0;
	}
	{
		my ($r) = try_login($node, $tcp,
			q{DO $$BEGIN PERFORM s.f3(); END$$});
		$ok &&= $r == 0;
	}
	ok($ok, "$name: workload ran");
	$expected += 5 + 3 + 2 + 1;

	my ($ret, $out, $err) = try_login($node, $tcp, 'SELECT 1/x FROM s.zero');
	like($err, qr/division by zero/, "$name: a statement fails");
	$expected += 1;

	my (undef, $bout, $berr, $bexc) =
	  run_pgbench($node, $tcp, 'prepared', 10, "SELECT max(x) FROM s.t;\n");
	like($bout, qr/number of transactions actually processed: 10\b/,
		"$name: pgbench -M prepared ran 10 statements")
	  or diag "$berr\n$bexc";
	$expected += 10;

	# -----------------------------------------------------------------
	# role_guard
	# -----------------------------------------------------------------
	is_deeply(
		usage_of($node, 'app', 'statements', 'active_statements'),
		{ statements => $expected, active_statements => 0 },
		"$name: role_guard counts $expected statements, none active");

	# -----------------------------------------------------------------
	# pg_stat_statements
	# -----------------------------------------------------------------
	my $pgss = $node->safe_psql(
		'postgres', qq{
SELECT toplevel, calls, query FROM pg_stat_statements
WHERE userid = $appid AND query !~* 'pg_backend_pid|^DO'
ORDER BY query, toplevel});
	my %calls;
	foreach my $line (split /\n/, $pgss)
	{
		my ($top, $calls, $query) = split(/\|/, $line, 3);
		$calls{"$top|$query"} = $calls;
	}
	is($calls{'t|SELECT count(*) FROM s.t WHERE x > $1'},
		5, "$name: pg_stat_statements: 5 calls of the SELECT");
	is($calls{'t|INSERT INTO s.t VALUES ($1)'},
		3, "$name: pg_stat_statements: 3 calls of the INSERT");
	is($calls{'t|SELECT s.f3()'},
		2, "$name: pg_stat_statements: 2 top-level calls of s.f3()");
	my @nested = grep { /^f\|SELECT count\(\*\)\s+FROM s\.t WHERE x > \$1$/ } keys %calls;
	is(join(',', map { $calls{$_} } @nested),
		'3', "$name: pg_stat_statements: 3 nested calls (2 SELECT + 1 DO)")
	  or diag $pgss;
	is($calls{'t|SELECT max(x) FROM s.t'},
		10, "$name: pg_stat_statements: 10 calls from pgbench -M prepared");
	is(scalar(grep { /zero/ } keys %calls), 0,
		"$name: pg_stat_statements: the failed statement is not there")
	  or diag $pgss;

	# -----------------------------------------------------------------
	# auto_explain and pgaudit, in the server log
	# -----------------------------------------------------------------
	my $log = log_since($node, $pos);
	is(count_matches($log,
			qr/plan:\n[^\n]*Query Text: SELECT count\(\*\) FROM s\.t WHERE x > 0\n/),
		5, "$name: auto_explain logged 5 plans of the SELECT");
	is(count_matches($log, qr/plan:\n[^\n]*Query Text: INSERT INTO s\.t VALUES \(7\)\n/),
		3, "$name: auto_explain logged 3 plans of the INSERT");
	is(count_matches($log, qr/plan:\n[^\n]*Query Text: SELECT max\(x\) FROM s\.t;?\n/),
		10, "$name: auto_explain logged 10 plans from pgbench");
	is(count_matches($log, qr/Query Text: SELECT count\(\*\)\s+FROM s\.t WHERE x > 50/),
		0, "$name: auto_explain logged no plan of the nested queries "
		  . "(log_nested_statements is off: its nesting level is right)");
	is(count_matches($log,
			qr/AUDIT: SESSION,\d+,\d+,READ,SELECT,,,SELECT count\(\*\) FROM s\.t WHERE x > 0,/),
		5, "$name: pgaudit logged 5 READ lines for the SELECT");
	is(count_matches($log,
			qr/AUDIT: SESSION,\d+,\d+,WRITE,INSERT,,,INSERT INTO s\.t VALUES \(7\),/),
		3, "$name: pgaudit logged 3 WRITE lines for the INSERT");
	is(count_matches($log, qr/AUDIT: SESSION,\d+,\d+,READ,SELECT,,,SELECT max\(x\) FROM s\.t;?,/),
		10, "$name: pgaudit logged 10 READ lines from pgbench");

	# -----------------------------------------------------------------
	# active_statements through the chain: cancel, statement_timeout,
	# an error in a savepoint.
	# -----------------------------------------------------------------
	$node->safe_psql('postgres', 'SELECT role_guard_reset()');
	my $active_sql =
	  "SELECT active_statements FROM role_guard_usage WHERE rolname = 'app'";
	my $s = hold_ok($node, 'app', 'postgres', "$name: app session");
	my $spid = $s->backend_pid;
	$s->send('SELECT pg_sleep(60)');
	ok(poll_until($node, $active_sql, '1'), "$name: pg_sleep active");
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($spid)");
	ok(poll_until($node, $active_sql, '0'), "$name: 0 after the cancel");
	is($s->query("SET statement_timeout = '300ms'"), '', "$name: SET");
	is($s->query('SELECT pg_sleep(10)'), '', "$name: statement_timeout");
	is($s->query('RESET statement_timeout'), '', "$name: RESET");
	is($s->query('BEGIN'), '', "$name: BEGIN");
	is($s->query('SAVEPOINT a'), '', "$name: SAVEPOINT");
	is($s->query('SELECT 1/x FROM s.zero'), '', "$name: error in the savepoint");
	is($s->query('ROLLBACK TO a'), '', "$name: ROLLBACK TO");
	is($s->query('SELECT s.f3()'), '50', "$name: s.f3()");
	is($s->query('COMMIT'), '', "$name: COMMIT");
	like($s->stderr, qr/canceling statement due to user request/,
		"$name: the cancel was seen");
	like($s->stderr, qr/canceling statement due to statement timeout/,
		"$name: the timeout was seen");
	is_deeply(
		usage_of($node, 'app', 'statements', 'active_statements'),
		{ statements => 11, active_statements => 0 },
		"$name: 11 statements, none active, after cancel, timeout, savepoint"
	);
	my $pgss_sleep = $node->safe_psql('postgres',
		"SELECT calls FROM pg_stat_statements WHERE userid = $appid AND toplevel AND query = 'SELECT s.f3()'"
	);
	is($pgss_sleep, '3', "$name: pg_stat_statements counted the later s.f3()");

	# -----------------------------------------------------------------
	# A budget still refuses.
	# -----------------------------------------------------------------
	my $s2 = hold_ok($node, 'app', 'postgres', "$name: app session 2");
	my $s3 = hold_ok($node, 'app', 'postgres', "$name: app session 3");
	refused_ok(
		$node, $tcp, "$name: budget app=3",
		role  => 'app',
		entry => 'app=3',
		used  => 3,
		limit => 3);
	$_->quit for ($s, $s2, $s3);
	ok(poll_login_ok($node, $tcp), "$name: admitted again after quitting");

	$node->stop;
	return;
}
