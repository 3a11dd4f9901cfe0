
# Copyright: see README.md.
#
# The views of budget usage: their columns, who may read them (superusers
# and pg_monitor, not PUBLIC), role_guard_reset() (superuser only unless
# granted), and the live arithmetic of role_guard_summary.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest;

my $node = rg_node('views', budgets => 'app=1');
my $su = $node->safe_psql('postgres', 'SELECT current_user');
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE plain LOGIN;
CREATE ROLE mon LOGIN IN ROLE pg_monitor;
CREATE ROLE fresh LOGIN;
CREATE EXTENSION role_guard;
});

sub tcp { return tcp_connstr($node, @_); }

# Run $sql as $user over the socket with verbose errors; (ret, out, err).
sub as_user
{
	my ($user, $sql) = @_;
	my ($ret, $out, $err) = $node->psql(
		'postgres',
		"\\set VERBOSITY verbose\n$sql",
		connstr      => sock_connstr($node, $user),
		extra_params => ['-w'],
		timeout      => $RoleGuardTest::wait_seconds);
	return ($ret, $out // '', $err // '');
}

# ---------------------------------------------------------------------------
# Columns, exactly as the contract has them.
# ---------------------------------------------------------------------------
my %columns = (
	role_guard_usage =>
	  'rolname name, superuser boolean, budget integer, connections integer, '
	  . 'active integer, idle integer, idle_in_transaction integer, peak integer, '
	  . 'rejected bigint, would_reject bigint, superuser_denied bigint, reaped bigint, '
	  . 'statements bigint, active_statements integer, '
	  . 'last_rejected timestamp with time zone, idle_timeout interval, '
	  . 'idle_in_transaction_timeout interval, reserved integer, waiting integer, '
	  . 'waited bigint, wait_timeouts bigint, evicted bigint, '
	  . 'active_budget integer, active_transactions integer, '
	  . 'statements_waiting integer, statements_waited bigint, '
	  . 'statements_rejected bigint, would_wait bigint, auth_blocked bigint',
	role_guard_budgets =>
	  'entry text, kind text, budget integer, connections integer, '
	  . 'rejected bigint, would_reject bigint',
	role_guard_summary =>
	  'max_connections integer, superuser_reserved_connections integer, '
	  . 'budgeted integer, connections integer, headroom integer, '
	  . 'overcommitted boolean, reserved integer, reserved_unused integer, '
	  . 'waiting integer, suggested_budgeted integer, suggested_fits boolean',
	role_guard_reservations =>
	  'entry text, kind text, reserved integer, connections integer, unused integer',
	role_guard_auth_blocks =>
	  'client_addr inet, rolname text, failures integer, '
	  . 'first_failure timestamp with time zone, blocked_until timestamp with time zone');
foreach my $view (sort keys %columns)
{
	is( $node->safe_psql(
			'postgres', qq{
SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', '
                  ORDER BY attnum)
  FROM pg_attribute
 WHERE attrelid = '$view'::regclass AND attnum > 0 AND NOT attisdropped}),
		$columns{$view},
		"$view has the contract's columns");
}

# ---------------------------------------------------------------------------
# Privileges
# ---------------------------------------------------------------------------
foreach my $view (sort keys %columns)
{
	my ($ret, $out, $err) = as_user('plain', "SELECT count(*) FROM $view");
	isnt($ret, 0, "plain role cannot read $view");
	like($err, qr/ERROR:\s+42501: permission denied for (view|table|relation) $view/,
		"plain role: $view denied with 42501");

	($ret, $out, $err) = as_user('mon', "SELECT count(*) >= 0 FROM $view");
	is($ret . ':' . $out, '0:t', "pg_monitor member reads $view")
	  or diag $err;
}
my ($ret, $out, $err) = as_user('plain', 'SELECT role_guard_reset()');
like($err, qr/ERROR:\s+42501: permission denied for function role_guard_reset/,
	'plain role: role_guard_reset() denied with 42501');
($ret, $out, $err) = as_user('mon', 'SELECT role_guard_reset()');
like($err, qr/ERROR:\s+42501: permission denied for function role_guard_reset/,
	'pg_monitor member: role_guard_reset() denied with 42501');

# pg_monitor sees real numbers, not an empty shell.
my $s = hold_ok($node, 'app', 'postgres', 'app in');
($ret, $out, $err) = as_user('mon',
	q{SELECT connections FROM role_guard_usage WHERE rolname = 'app'});
is($out, '1', 'pg_monitor member sees the live count');

# ---------------------------------------------------------------------------
# Which roles role_guard_usage shows.
# ---------------------------------------------------------------------------
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM role_guard_usage WHERE rolname = 'fresh'}),
	'0',
	'a role with no budget, session or counter is not listed');
my $sp = hold_ok($node, 'fresh', 'postgres', 'fresh in');
is_deeply(
	usage_of($node, 'fresh', 'budget', 'connections'),
	{ budget => '<null>', connections => 1 },
	'a role with a session is listed, budget NULL');
$sp->quit;

# ---------------------------------------------------------------------------
# role_guard_reset()
# ---------------------------------------------------------------------------
for (1 .. 2)
{
	refused_ok(
		$node, tcp('app'), "refusal $_ before reset",
		role  => 'app',
		entry => 'app=1',
		used  => 1,
		limit => 1);
}
ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'monitor for a moment');
admitted_ok($node, tcp('app'), 'would-be refusal before reset');
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'enforce again');
is_deeply(
	usage_of($node, 'app', 'peak', 'rejected', 'would_reject'),
	{ peak => 2, rejected => 2, would_reject => 1 },
	'counters before reset');
$s->quit;
ok(poll_until($node,
		q{SELECT connections FROM role_guard_usage WHERE rolname = 'app'}, '0'),
	'app gone before reset');
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
is_deeply(
	usage_of($node, 'app', 'connections', 'peak', 'rejected', 'would_reject',
		'last_rejected'),
	{
		connections   => 0,
		peak          => 0,
		rejected      => 0,
		would_reject  => 0,
		last_rejected => '<null>'
	},
	'role_guard_reset() clears rejected, would_reject, peak, last_rejected');
is_deeply(
	budget_of($node, 'app', 'rejected', 'would_reject'),
	{ rejected => 0, would_reject => 0 },
	'role_guard_reset() clears role_guard_budgets counters');

# Counting goes on after a reset, and a reset does not free places.
$s = hold_ok($node, 'app', 'postgres', 'app in after reset');
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
refused_ok(
	$node, tcp('app'), 'a reset does not forget sessions that are in',
	role  => 'app',
	entry => 'app=1',
	used  => 1,
	limit => 1);
is_deeply(
	usage_of($node, 'app', 'connections', 'rejected'),
	{ connections => 1, rejected => 1 },
	'counting goes on after a reset');

# The superuser may grant reset.
$node->safe_psql('postgres', 'GRANT EXECUTE ON FUNCTION role_guard_reset() TO mon');
($ret, $out, $err) = as_user('mon', 'SELECT role_guard_reset()');
is($ret, 0, 'role_guard_reset() can be granted') or diag $err;
is(usage_of($node, 'app', 'rejected')->{rejected},
	'0', 'the granted reset worked');

# ---------------------------------------------------------------------------
# role_guard_summary: LOGIN roles are the superuser, app, plain, mon, fresh.
# ---------------------------------------------------------------------------
my $max = $node->safe_psql('postgres', 'SHOW max_connections');
my $res = $node->safe_psql('postgres', 'SHOW superuser_reserved_connections');
ok(set_budgets($node, 'app=10, *=3'), 'budgets app=10, *=3');
my $row = $node->safe_psql('postgres',
	q{SELECT max_connections, superuser_reserved_connections, budgeted,
	         connections, headroom, overcommitted FROM role_guard_summary});
# app's session and the one asking are in.
is( $row,
	join('|', $max, $res, 10 + 4 * 3, 2, $max - $res - 2, 'f'),
	'summary: budgeted is app=10 plus 3 for each other LOGIN role');
ok(set_budgets($node, 'app=10'), 'budgets app=10 only');
is( $node->safe_psql('postgres',
		q{SELECT coalesce(budgeted::text, 'null') || ':' || overcommitted
		  FROM role_guard_summary}),
	'null:true',
	'summary: a LOGIN role without a budget makes budgeted NULL, overcommitted'
);
ok(set_budgets($node, "*=$max"), "budgets *=$max");
is( $node->safe_psql('postgres',
		q{SELECT budgeted || ':' || overcommitted FROM role_guard_summary}),
	(5 * $max) . ':true',
	'summary: more budgeted than max_connections is overcommitted');
$s->quit;

# ---------------------------------------------------------------------------
# headroom and overcommitted count the slots a login without special
# privileges may use, as the reservations do: on 16 and later
# reserved_connections is kept out too.
# ---------------------------------------------------------------------------
my $rres = 0;
if ($node->safe_psql('postgres', 'SHOW server_version_num') >= 160000)
{
	$rres = 3;
	$node->append_conf('postgresql.conf', "reserved_connections = $rres");
	$node->restart;
}
my $slots = $max - $res - $rres;
is($node->safe_psql('postgres',
		q{SELECT slots FROM role_guard_reserve_stats()}),
	$slots, "the reservations' slot count: max_connections - superuser_reserved_connections - reserved_connections ($rres)");
# budgeted one more than the slots: overcommitted, though below
# max_connections - superuser_reserved_connections when $rres > 0
ok(set_budgets($node, 'app=' . ($slots - 4 + 1) . ', *=1'),
	'budgets: one more than the slots in all');
is( $node->safe_psql('postgres',
		q{SELECT budgeted || ':' || connections || ':' || headroom || ':' || overcommitted
		  FROM role_guard_summary}),
	join(':', $slots + 1, 1, $slots - 1, 'true'),
	'summary: headroom is the slots less the sessions; one budgeted place past the slots is overcommitted');
ok(set_budgets($node, 'app=' . ($slots - 4) . ', *=1'),
	'budgets: exactly the slots in all');
is( $node->safe_psql('postgres',
		q{SELECT budgeted || ':' || overcommitted FROM role_guard_summary}),
	"$slots:false", 'summary: budgets that fit the slots are not overcommitted');

$node->stop;
done_testing();
