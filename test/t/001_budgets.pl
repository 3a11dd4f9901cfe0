
# Copyright: see README.md.
#
# role_guard connection budgets: each kind of entry refuses at its limit
# with the contract's message, DETAIL and SQLSTATE; the tightest entry is
# the one named; superusers over the Unix socket are admitted (and logged)
# but refused over TCP; replication connections count against role budgets.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest;

my $node = rg_node(
	'budgets',
	conf => "wal_level = replica\nmax_wal_senders = 4\n");

my $su = $node->safe_psql('postgres', 'SELECT current_user');
my $su_entry = entry_text($su);

$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE other LOGIN;
CREATE ROLE readers LOGIN;
CREATE ROLE mid NOLOGIN;
CREATE ROLE r1 LOGIN;
CREATE ROLE r2 LOGIN;
CREATE ROLE multi LOGIN;
CREATE ROLE "Mixed Case" LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
GRANT readers TO r1;
GRANT readers TO mid;
GRANT mid TO r2;
GRANT readers TO multi;
CREATE DATABASE limdb;
CREATE EXTENSION role_guard;
});

sub tcp { return tcp_connstr($node, @_); }

# ---------------------------------------------------------------------------
# name=N, with folding of unquoted names and a quoted mixed-case name.
# The superuser gets a roomy entry of its own so that the harness's
# socket sessions never show up under "*" below.
# ---------------------------------------------------------------------------
ok(set_budgets($node, qq{APP=1, "Mixed Case"=1, $su_entry=100}),
	'role budgets loaded');

is( join(',',
		sort split(/\n/,
			$node->safe_psql(
				'postgres',
				q{SELECT entry || ':' || kind || ':' || budget
				  FROM role_guard_budgets}))),
	join(',', sort ('"Mixed Case":role:1', "$su_entry:role:100", 'app:role:1')),
	'role_guard_budgets lists entries with folded and quoted names');

admitted_ok($node, tcp('app'), 'app with room');
my $s_app = hold_ok($node, 'app', 'postgres', 'app holds its one place');
is(usage_of($node, 'app', 'budget', 'connections')->{connections},
	'1', 'role_guard_usage counts the held app session');
refused_ok(
	$node, tcp('app'), 'role budget app=1',
	role  => 'app',
	entry => 'app=1',
	used  => 1,
	limit => 1);

my $raw = raw_login($node, 'app');
is($raw->{sqlstate} // 'none', '53300', 'refusal carries SQLSTATE 53300');
is($raw->{severity} // 'none', 'FATAL', 'refusal is FATAL');
like($raw->{message} // '', qr/^too many connections for role "app"$/,
	'raw protocol: primary message');

admitted_ok($node, tcp('other'), 'a role with no entry is not limited');
is(budget_of($node, 'app', 'rejected')->{rejected},
	'2', 'role_guard_budgets.rejected counts both refusals');
is(usage_of($node, 'app', 'rejected')->{rejected},
	'2', 'role_guard_usage.rejected counts both refusals');
like(
	usage_of($node, 'app', 'last_rejected')->{last_rejected},
	qr/^\d{4}-/, 'last_rejected is set');

my $s_mixed =
  hold_ok($node, 'Mixed Case', 'postgres', '"Mixed Case" holds its place');
refused_ok(
	$node, tcp('Mixed Case'), 'quoted role budget',
	role  => 'Mixed Case',
	entry => '"Mixed Case"=1',
	used  => 1,
	limit => 1);
$s_mixed->quit;
$s_app->quit;
ok(poll_login_ok($node, tcp('app')), 'app admitted again after quitting');

# A budget of 0 refuses every login.
ok(set_budgets($node, "app=0, $su_entry=100"), 'app=0 loaded');
refused_ok(
	$node, tcp('app'), 'budget of zero',
	role  => 'app',
	entry => 'app=0',
	used  => 0,
	limit => 0);

# ---------------------------------------------------------------------------
# *=N: a per-role default for roles without an entry of their own.
# ---------------------------------------------------------------------------
ok(set_budgets($node, "app=3, *=1, $su_entry=100"), 'default budget loaded');
my $s_other = hold_ok($node, 'other', 'postgres', 'other holds one place');
refused_ok(
	$node, tcp('other'), 'default budget',
	role  => 'other',
	entry => '*=1',
	used  => 1,
	limit => 1);
my $s_r1 = hold_ok($node, 'r1', 'postgres',
	'the default is per role: r1 admitted while other is at 1');
my $s_app1 = hold_ok($node, 'app', 'postgres', 'app (own entry) 1st');
admitted_ok($node, tcp('app'),
	'a role with its own entry is not under the default');
is_deeply(budget_of($node, '*', 'kind', 'budget', 'connections'),
	{ kind => 'default', budget => 1, connections => 2 },
	'role_guard_budgets: "*" connections is the sum over the roles it covers'
);
$_->quit for ($s_other, $s_r1, $s_app1);

# ---------------------------------------------------------------------------
# +group=N: members direct and indirect, and the group role itself.
# ---------------------------------------------------------------------------
ok(set_budgets($node, '+readers=2'), 'group budget loaded');
$s_r1 = hold_ok($node, 'r1', 'postgres', 'direct member r1');
my $s_r2 = hold_ok($node, 'r2', 'postgres', 'indirect member r2');
is(budget_of($node, '+readers', 'kind', 'connections')->{connections},
	'2', 'group entry counts direct and indirect members');
refused_ok(
	$node, tcp('multi'), 'group budget, member',
	role  => 'multi',
	entry => '+readers=2',
	used  => 2,
	limit => 2);
refused_ok(
	$node, tcp('readers'), 'group budget, the group role itself',
	role  => 'readers',
	entry => '+readers=2',
	used  => 2,
	limit => 2);
admitted_ok($node, tcp('app'), 'non-member not limited by the group');
$s_r2->quit;
my $s_readers =
  hold_ok($node, 'readers', 'postgres', 'the group role itself logs in');
refused_ok(
	$node, tcp('r2'), 'group role\'s own session counts in its group',
	role  => 'r2',
	entry => '+readers=2',
	used  => 2,
	limit => 2);
$_->quit for ($s_r1, $s_readers);

# ---------------------------------------------------------------------------
# @db=N
# ---------------------------------------------------------------------------
ok(set_budgets($node, '@limdb=2'), 'database budget loaded');
my $s_d1 = hold_ok($node, 'app',   'limdb', 'app in limdb');
my $s_d2 = hold_ok($node, 'other', 'limdb', 'other in limdb');
refused_ok(
	$node, tcp('r1', 'limdb'), 'database budget',
	db    => 'limdb',
	entry => '@limdb=2',
	used  => 2,
	limit => 2);
admitted_ok($node, tcp('r1', 'postgres'),
	'other databases are not limited by @limdb');
is_deeply(budget_of($node, '@limdb', 'kind', 'connections'),
	{ kind => 'database', connections => 2 },
	'role_guard_budgets row for @limdb');
$_->quit for ($s_d1, $s_d2);

# ---------------------------------------------------------------------------
# name@db=N
# ---------------------------------------------------------------------------
ok(set_budgets($node, 'app@limdb=1'), 'role-in-database budget loaded');
$s_d1 = hold_ok($node, 'app', 'limdb', 'app in limdb');
refused_ok(
	$node, tcp('app', 'limdb'), 'role-in-database budget',
	role  => 'app',
	db    => 'limdb',
	entry => 'app@limdb=1',
	used  => 1,
	limit => 1);
admitted_ok($node, tcp('app', 'postgres'), 'app elsewhere is not limited');
admitted_ok($node, tcp('other', 'limdb'), 'other roles in limdb not limited');
is_deeply(budget_of($node, 'app@limdb', 'kind', 'connections'),
	{ kind => 'role_database', connections => 1 },
	'role_guard_budgets row for app@limdb');
$s_d1->quit;

# ---------------------------------------------------------------------------
# Several entries: the one with the least room is named; ties go role or
# default, then group, then database, then role@database.
# ---------------------------------------------------------------------------
ok(set_budgets($node, 'multi=5, +readers=1'), 'role and group budgets');
$s_r1 = hold_ok($node, 'r1', 'postgres', 'r1 fills +readers=1');
refused_ok(
	$node, tcp('multi'), 'room left in multi=5 but not in +readers=1',
	role  => 'multi',
	entry => '+readers=1',
	used  => 1,
	limit => 1);
$s_r1->quit;

ok(set_budgets($node, 'multi=3, +readers=3, @limdb=3, multi@limdb=3'),
	'four entries of 3');
my @m = map { hold_ok($node, 'multi', 'limdb', "multi in limdb #$_") } 1 .. 3;

my @order = (
	# budgets, expected entry, (used, limit), message
	[
		'multi=3, +readers=3, @limdb=3, multi@limdb=3',
		'multi=3', 3, 3, role => 'multi'
	],
	[
		'multi=4, +readers=3, @limdb=3, multi@limdb=3',
		'+readers=3', 3, 3, role => 'multi'
	],
	[
		'multi=4, +readers=4, @limdb=3, multi@limdb=3',
		'@limdb=3', 3, 3, db => 'limdb'
	],
	[
		'multi=4, +readers=4, @limdb=4, multi@limdb=3',
		'multi@limdb=3', 3, 3, role => 'multi', db => 'limdb'
	],
	[
		'multi=2, +readers=1, @limdb=3, multi@limdb=3',
		'+readers=1', 3, 1, role => 'multi'
	],
	[
		'multi=1, +readers=2, @limdb=2, multi@limdb=3',
		'multi=1', 3, 1, role => 'multi'
	],
	[
		'multi=9, +readers=9, @limdb=1, multi@limdb=2',
		'@limdb=1', 3, 1, db => 'limdb'
	],
	[ '*=3, +readers=3, @limdb=9', '*=3', 3, 3, role => 'multi' ],);
foreach my $case (@order)
{
	my ($budgets, $entry, $used, $limit, %msg) = @$case;
	ok(set_budgets($node, $budgets), "reloaded '$budgets'");
	refused_ok(
		$node,
		tcp('multi', 'limdb'),
		"'$budgets' names $entry",
		%msg,
		entry => $entry,
		used  => $used,
		limit => $limit);
}
$_->quit for @m;

# ---------------------------------------------------------------------------
# Superusers: admitted over the Unix socket past their budget (counted,
# logged), refused over TCP.
# ---------------------------------------------------------------------------
ok(set_budgets($node, "$su_entry=1"), 'superuser budget of 1');
admitted_ok($node, tcp($su),
	'superuser over TCP admitted while there is room');
my $s_su = hold_ok($node, $su, 'postgres', 'superuser holds one place',
	via => 'socket');
my $detail = qq{role_guard budget "$su_entry=1" is full (1 of 1 sessions).};
admitted_ok($node,
	sock_connstr($node, $su),
	'superuser over the Unix socket admitted past its budget',
	log_like => [
		qr/LOG:\s+(?:\w{5}: )?role_guard: superuser "\Q$su\E" admitted over budget[^\n]*\n[^\n]*DETAIL:\s+\Q$detail\E/
	]);
is_deeply(usage_of($node, $su, 'superuser', 'budget', 'connections'),
	{ superuser => 'true', budget => 1, connections => 2 },
	'superuser socket sessions are counted (held one + this query)');
refused_ok(
	$node, tcp($su), 'superuser over TCP refused like anyone',
	role  => $su,
	entry => "$su_entry=1",
	used  => 1,
	limit => 1);
$raw = raw_login($node, $su);
is($raw->{sqlstate} // 'none', '53300', 'superuser TCP refusal: 53300');
$s_su->quit;

# ---------------------------------------------------------------------------
# Replication connections count against role budgets, not database ones.
# ---------------------------------------------------------------------------
ok(set_budgets($node, 'repl=0'), 'repl=0');
refused_ok(
	$node,
	tcp('repl') . ' replication=true',
	'physical replication connection under a role budget',
	role  => 'repl',
	entry => 'repl=0',
	used  => 0,
	limit => 0);

ok(set_budgets($node, 'repl=1, @limdb=1'), 'repl=1, @limdb=1');
my $s_repl = hold_ok(
	$node, 'repl', 'limdb', 'replication connection admitted',
	extra     => 'replication=true',
	first_sql => 'IDENTIFY_SYSTEM');
is(usage_of($node, 'repl', 'connections')->{connections},
	'1', 'walsender counted for its role');
refused_ok(
	$node, tcp('repl'), 'normal login of repl while its walsender is in',
	role  => 'repl',
	entry => 'repl=1',
	used  => 1,
	limit => 1);
refused_ok(
	$node,
	tcp('repl') . ' replication=true',
	'second replication connection',
	role  => 'repl',
	entry => 'repl=1',
	used  => 1,
	limit => 1);
admitted_ok($node, tcp('app', 'limdb'),
	'a physical walsender does not take a place in @limdb');
$s_repl->quit;
ok(poll_login_ok($node, tcp('repl')),
	'walsender exit releases the place of repl');

$node->stop;
done_testing();
