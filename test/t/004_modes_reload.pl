
# Copyright: see README.md.
#
# role_guard.mode (monitor logs and counts what enforce would refuse; off
# neither refuses nor logs, but keeps counting), reloads of the budgets
# (a bad value keeps the old policy, a good one applies to the next login,
# a lowered budget leaves sessions already in alone), and a bad value at
# start-up stopping the server.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT wait_log);

my $node = rg_node('modes', budgets => 'app=1');
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE EXTENSION role_guard;
});

sub tcp { return tcp_connstr($node, @_); }

my $would = qr/role_guard: connection of role "app" would be refused/;

# ---------------------------------------------------------------------------
# Settings: every policy setting is reloadable, max_roles needs a restart,
# and no session can change the policy for itself.
# ---------------------------------------------------------------------------
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(name || ':' || context || ':' || boot_val, ',' ORDER BY name)
		  FROM pg_settings
		  WHERE name IN ('role_guard.mode', 'role_guard.budgets', 'role_guard.max_roles')}
	),
	'role_guard.budgets:sighup:,role_guard.max_roles:postmaster:1024,role_guard.mode:sighup:enforce',
	'contexts and defaults of the budget settings');
my ($ret, $out, $err) =
  $node->psql('postgres', q{SET role_guard.budgets = ''});
like($err, qr/parameter "role_guard.budgets" cannot be changed now/,
	'SET cannot change the budgets');
($ret, $out, $err) = try_login($node, tcp('app') . q{ options='-c role_guard.mode=off'});
isnt($ret, 0, 'PGOPTIONS cannot switch role_guard off for a session');

# ---------------------------------------------------------------------------
# monitor
# ---------------------------------------------------------------------------
ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'mode = monitor');
my @s = (hold_ok($node, 'app', 'postgres', 'monitor: first session'));
my $detail = 'role_guard budget "app=1" is full (1 of 1 sessions).';
admitted_ok($node,
	tcp('app'),
	'monitor: a login over budget is admitted',
	log_like => [qr/LOG:\s+(?:\w{5}: )?$would[^\n]*\n[^\n]*DETAIL:\s+\Q$detail\E/],
	log_unlike => [qr/FATAL:\s+(?:\w{5}: )?too many connections/]);
push @s, hold_ok($node, 'app', 'postgres', 'monitor: second session held');
is_deeply(
	usage_of($node, 'app', 'budget', 'connections', 'rejected', 'would_reject'),
	{ budget => 1, connections => 2, rejected => 0, would_reject => 2 },
	'monitor: sessions counted, would_reject counted, nothing rejected');
is_deeply(
	budget_of($node, 'app', 'connections', 'rejected', 'would_reject'),
	{ connections => 2, rejected => 0, would_reject => 2 },
	'monitor: role_guard_budgets would_reject');

# ---------------------------------------------------------------------------
# off: admits without logging, still counts
# ---------------------------------------------------------------------------
ok(set_conf($node, 'role_guard.mode' => 'off'), 'mode = off');
admitted_ok($node,
	tcp('app'),
	'off: a login over budget is admitted',
	log_unlike => [ qr/role_guard:/, qr/too many connections/ ]);
push @s, hold_ok($node, 'app', 'postgres', 'off: third session held');
is_deeply(
	usage_of($node, 'app', 'connections', 'rejected', 'would_reject'),
	{ connections => 3, rejected => 0, would_reject => 2 },
	'off: sessions still counted, nothing else');

# Back to enforce with 3 sessions in: the count kept in off is used.
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'mode = enforce');
refused_ok(
	$node, tcp('app'), 'enforce again: counts kept while off',
	role  => 'app',
	entry => 'app=1',
	used  => 3,
	limit => 1);
$_->quit for @s;
ok(poll_until($node,
		q{SELECT connections FROM role_guard_usage WHERE rolname = 'app'}, '0'),
	'all app sessions gone');

# ---------------------------------------------------------------------------
# Bad values on reload: the server keeps running with the old policy.
# ---------------------------------------------------------------------------
my $s1 = hold_ok($node, 'app', 'postgres', 'app=1 filled');
foreach my $case (
	[ 'app=3, oops=many', 'oops' ],
	[ 'app=3, readers=-1', 'readers' ],
	[ 'app=3, =4',        '=4' ],
	[ 'app=3, +=2',       '\+=2' ],
	[ 'app=3, lonely',    'lonely' ])
{
	my ($bad, $names) = @$case;
	my $pos = log_pos($node);
	$node->append_conf('postgresql.conf', "role_guard.budgets = '$bad'");
	$node->reload;
	my $log = wait_log($node,
		qr/invalid value for parameter "role_guard\.budgets"[^\n]*\n[^\n]*DETAIL:[^\n]*\n/,
		$pos);
	ok(defined $log, "bad reload '$bad': rejected in the log");
	like($log // '', qr/DETAIL:[^\n]*$names/,
		"bad reload '$bad': DETAIL names the bad entry");
	is($node->safe_psql('postgres', q{SELECT current_setting('role_guard.budgets')}),
		'app=1', "bad reload '$bad': the setting keeps its old value");
	refused_ok(
		$node, tcp('app'), "bad reload '$bad': old policy still enforced",
		role  => 'app',
		entry => 'app=1',
		used  => 1,
		limit => 1);
}

my $pos = log_pos($node);
$node->append_conf('postgresql.conf', "role_guard.mode = 'sometimes'");
$node->reload;
ok( defined wait_log(
		$node, qr/invalid value for parameter "role_guard\.mode"/, $pos),
	'bad mode on reload: rejected in the log');
refused_ok(
	$node, tcp('app'), 'bad mode on reload: still enforcing',
	role  => 'app',
	entry => 'app=1',
	used  => 1,
	limit => 1);
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'mode line repaired');

# ---------------------------------------------------------------------------
# A good reload applies to the next login.
# ---------------------------------------------------------------------------
ok(set_budgets($node, 'app=2'), 'raised to app=2');
my $s2 = hold_ok($node, 'app', 'postgres', 'app=2: second session admitted');
refused_ok(
	$node, tcp('app'), 'app=2: third refused',
	role  => 'app',
	entry => 'app=2',
	used  => 2,
	limit => 2);
my $s3;
ok(set_budgets($node, 'app=3'), 'raised to app=3');
$s3 = hold_ok($node, 'app', 'postgres', 'app=3: third session admitted');

# Lowering below current use leaves the sessions in.
ok(set_budgets($node, 'app=1'), 'lowered to app=1 with 3 in');
is(join(',', map { $_->query('SELECT 7') // 'gone' } ($s1, $s2, $s3)),
	'7,7,7', 'lowered: the 3 sessions still work');
is_deeply(
	usage_of($node, 'app', 'budget', 'connections'),
	{ budget => 1, connections => 3 },
	'lowered: role_guard_usage shows connections over budget');
is_deeply(
	budget_of($node, 'app', 'budget', 'connections'),
	{ budget => 1, connections => 3 },
	'lowered: role_guard_budgets shows connections over budget');
refused_ok(
	$node, tcp('app'), 'lowered: new logins refused',
	role  => 'app',
	entry => 'app=1',
	used  => 3,
	limit => 1);
$s3->quit;
$s2->quit;
ok(poll_until($node,
		q{SELECT connections FROM role_guard_usage WHERE rolname = 'app'}, '1'),
	'lowered: back to 1 session');
refused_ok(
	$node, tcp('app'), 'lowered: at the new limit, still refused',
	role  => 'app',
	entry => 'app=1',
	used  => 1,
	limit => 1);
$s1->quit;
ok(poll_login_ok($node, tcp('app')), 'lowered: admitted once under it');

# Budgets removed altogether: nothing is limited.
ok(set_budgets($node, ''), 'budgets emptied');
@s = map { hold_ok($node, 'app', 'postgres', "no budget: session $_") } 1 .. 3;
$_->quit for @s;

# ---------------------------------------------------------------------------
# A bad value at start-up stops the start with the same message.
# ---------------------------------------------------------------------------
$node->stop;
$pos = log_pos($node);
$node->append_conf('postgresql.conf', "role_guard.budgets = 'app=1, oops=many'");
my $started = $node->start(fail_ok => 1);
ok(!$started, 'bad budgets at start-up: server does not start');
$node->stop if $started;
like(
	log_since($node, $pos),
	qr/invalid value for parameter "role_guard\.budgets"[^\n]*\n[^\n]*DETAIL:[^\n]*oops/,
	'bad budgets at start-up: the message names the bad entry');
$node->append_conf('postgresql.conf', "role_guard.budgets = 'app=1'");
ok($node->start(fail_ok => 1), 'repaired: server starts');
$s1 = hold_ok($node, 'app', 'postgres', 'after restart: app in');
refused_ok(
	$node, tcp('app'), 'after restart: app=1 enforced',
	role  => 'app',
	entry => 'app=1',
	used  => 1,
	limit => 1);
$s1->quit;

# Enum and integer settings: PostgreSQL would warn and start with the
# default; role_guard stops the start with the message a reload gives.
$node->stop;
foreach my $bad (
	[ "role_guard.mode = 'sometimes'", qr/invalid value for parameter "role_guard\.mode": "sometimes"/ ],
	[ "role_guard.reap_interval = '50ms'",
		qr/50 ms is outside the valid range for parameter "role_guard\.reap_interval" \(100 \.\. 2147483647\)/ ],
	[ "role_guard.max_roles = 8", qr/8 is outside the valid range for parameter "role_guard\.max_roles" \(16 \.\. 1000000\)/ ],
	[ "role_guard.event_log_size = 'lots'", qr/invalid value for parameter "role_guard\.event_log_size": "lots"/ ],
	[ "role_guard.superuser_socket_exempt = 'yse'",
		qr/parameter "role_guard\.superuser_socket_exempt" requires a Boolean value/ ],
	[ "role_guard.save = 'maybe'", qr/parameter "role_guard\.save" requires a Boolean value/ ])
{
	my ($line, $re) = @$bad;
	$pos = log_pos($node);
	$node->append_conf('postgresql.conf', $line);
	$started = $node->start(fail_ok => 1);
	ok(!$started, "$line at start-up: server does not start");
	$node->stop if $started;
	like(log_since($node, $pos), $re, "$line at start-up: PostgreSQL's message");
	$node->append_conf('postgresql.conf',
		"role_guard.mode = enforce\nrole_guard.reap_interval = '10s'\nrole_guard.max_roles = 1024\nrole_guard.event_log_size = 1000\nrole_guard.superuser_socket_exempt = off\nrole_guard.save = on");
}
ok($node->start(fail_ok => 1), 'repaired again: server starts');

# A bad boolean on reload: a LOG names the setting, the old value stays.
$pos = log_pos($node);
$node->append_conf('postgresql.conf', "role_guard.superuser_socket_exempt = 'maybe'");
$node->reload;
ok( wait_log(
		$node,
		qr/LOG:[^\n]*parameter "role_guard\.superuser_socket_exempt" requires a Boolean value/,
		$pos),
	'bad superuser_socket_exempt on reload: a LOG names it');
is($node->safe_psql('postgres', 'SHOW role_guard.superuser_socket_exempt'),
	'off', 'bad superuser_socket_exempt on reload: the old value stays');
is($node->safe_psql('postgres',
	q{SELECT string_agg(name || ':' || coalesce(min_val, '') || ':' || coalesce(max_val, '') || ':' || coalesce(array_to_string(enumvals, '/'), ''), ',' ORDER BY name)
	  FROM pg_settings WHERE name IN ('role_guard.mode', 'role_guard.reap_interval', 'role_guard.max_roles', 'role_guard.event_log_size')}),
	'role_guard.event_log_size:0:1000000:,role_guard.max_roles:16:1000000:,role_guard.mode:::enforce/monitor/off,role_guard.reap_interval:100:2147483647:',
	'pg_settings: real bounds and values');

$node->stop;
done_testing();
