
# Copyright: see README.md.
#
# The database cache and the database counts.
#
# Part A: role_guard answers "will core refuse this login for its
# database?" from a cache in shared memory (members.c).  Whatever the
# cache holds, once a statement that changes pg_database has committed,
# the next login sees the change, exactly as core does: CREATE, DROP and
# RENAME DATABASE, ALLOW_CONNECTIONS, REVOKE/GRANT CONNECT (to PUBLIC, to a
# role, through a group), and a REVOKE still uncommitted while logins read
# the catalog.  Every role's budget is full, so each login shows who had
# the say: a login core refuses gets core's SQLSTATE (role_guard stayed
# out: a stale "core admits" would give 53300), and a login core admits
# gets role_guard's 53300 (a stale "core refuses" would let it past the
# budget).
#
# Part B: database (@db) and role-in-database (name@db) counts are kept
# only once an entry names them.  A reload that adds such an entry while
# sessions are in counts them at once (the view before any login, the
# next login's check), sessions admitted before the count existed give
# their place back when they end, and a count kept after its entry went
# stays exact when the entry comes back.  Counts are kept by the
# database's OID, so a renamed database keeps them.
#
# Part C: the views copy the counter array a part at a time; with 1 200
# roles in it, every role is still there once.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT raw_hold_ok raw_close raw_result);

my $node = rg_node('database_cache', budgets => '');
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE boss LOGIN SUPERUSER;
CREATE ROLE grp NOLOGIN;
});
$node->safe_psql('postgres', "CREATE DATABASE $_") for qw(d1 d2 d3);

# Every role's budget full: one session each.
ok(set_budgets($node, 'alice=1, bob=1, boss=1'), 'budgets: one session each');
my @holders = map { raw_hold_ok($node, $_, 'postgres', "$_ holds its one place") }
  qw(alice bob boss);

# A login core must refuse with $state (role_guard says nothing).
sub core_refuses_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $db, $state, $name) = @_;
	my $r = raw_login($node, $user, $db);
	is($r->{sqlstate} // raw_result($r), $state, "$name: core's $state");
	raw_close($r->{sock}) if $r->{sock};
	return;
}

# A login core admits: role_guard judges it, and its full budget refuses.
sub in_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $db, $name) = @_;
	my $r = raw_login($node, $user, $db);
	is($r->{sqlstate} // raw_result($r), '53300', "$name: role_guard judges it");
	raw_close($r->{sock}) if $r->{sock};
	return;
}

# --- Part A: the cache follows every change of pg_database ---------------

# a database that does not exist yet: cached as missing, then created
core_refuses_ok('alice', 'later', '3D000', 'missing database');
core_refuses_ok('alice', 'later', '3D000', 'missing database, again (cached)');
$node->safe_psql('postgres', 'CREATE DATABASE later');
in_ok('alice', 'later', 'CREATE DATABASE seen at the next login');

# ALLOW_CONNECTIONS
in_ok('alice', 'd1', 'd1 before ALTER');
$node->safe_psql('postgres', 'ALTER DATABASE d1 ALLOW_CONNECTIONS false');
core_refuses_ok('alice', 'd1', '55000', 'ALLOW_CONNECTIONS false');
core_refuses_ok('boss', 'd1', '55000', 'ALLOW_CONNECTIONS false, superuser');
$node->safe_psql('postgres', 'ALTER DATABASE d1 ALLOW_CONNECTIONS true');
in_ok('alice', 'd1', 'ALLOW_CONNECTIONS true again');

# CONNECT: from PUBLIC, to a role, through a group
$node->safe_psql('postgres', 'REVOKE CONNECT ON DATABASE d1 FROM PUBLIC');
core_refuses_ok('alice', 'd1', '42501', 'REVOKE CONNECT FROM PUBLIC');
core_refuses_ok('alice', 'd1', '42501', 'REVOKE CONNECT FROM PUBLIC, again');
in_ok('boss', 'd1', 'a superuser needs no CONNECT');
$node->safe_psql('postgres', 'GRANT CONNECT ON DATABASE d1 TO bob');
in_ok('bob', 'd1', 'GRANT CONNECT TO bob');
core_refuses_ok('alice', 'd1', '42501', 'alice still without CONNECT');
$node->safe_psql('postgres',
	'GRANT CONNECT ON DATABASE d1 TO grp; GRANT grp TO alice');
in_ok('alice', 'd1', 'CONNECT through a group');
$node->safe_psql('postgres', 'REVOKE grp FROM alice');
core_refuses_ok('alice', 'd1', '42501', 'group membership revoked');
$node->safe_psql('postgres', 'REVOKE CONNECT ON DATABASE d1 FROM bob');
core_refuses_ok('bob', 'd1', '42501', 'REVOKE CONNECT FROM bob');
$node->safe_psql('postgres', 'GRANT CONNECT ON DATABASE d1 TO PUBLIC');
in_ok('alice', 'd1', 'GRANT CONNECT TO PUBLIC');
in_ok('bob',   'd1', 'GRANT CONNECT TO PUBLIC, bob');

# A REVOKE not yet committed: logins meanwhile read (and may cache) the
# old state; once it commits, none is admitted.
my $tx = bg_session($node, sock_connstr($node, 'boss', 'postgres'));
$tx->query_or_die('BEGIN');
$tx->query_or_die('REVOKE CONNECT ON DATABASE d2 FROM PUBLIC');
in_ok('alice', 'd2', 'REVOKE uncommitted: core still admits');
in_ok('alice', 'd2', 'REVOKE uncommitted: admitted again');
$tx->query_or_die('COMMIT');
core_refuses_ok('alice', 'd2', '42501', 'REVOKE committed: the next login');
$tx->query_or_die('BEGIN');
$tx->query_or_die('GRANT CONNECT ON DATABASE d2 TO PUBLIC');
core_refuses_ok('alice', 'd2', '42501', 'GRANT uncommitted: still refused');
$tx->query_or_die('ROLLBACK');
core_refuses_ok('alice', 'd2', '42501', 'GRANT rolled back: still refused');
$tx->query_or_die('GRANT CONNECT ON DATABASE d2 TO PUBLIC');
in_ok('alice', 'd2', 'GRANT committed');
$tx->quit;

# RENAME and DROP
in_ok('alice', 'later', 'later before RENAME');
$node->safe_psql('postgres', 'ALTER DATABASE later RENAME TO renamed');
core_refuses_ok('alice', 'later', '3D000', 'old name after RENAME');
in_ok('alice', 'renamed', 'new name after RENAME');
$node->safe_psql('postgres', 'DROP DATABASE renamed');
core_refuses_ok('alice', 'renamed', '3D000', 'DROP DATABASE');

# only the logins core admits were counted, and no place is left held
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(rolname || ':' || rejected || ':' || connections, ' '
		                    ORDER BY rolname)
		  FROM role_guard_usage WHERE rolname IN ('alice', 'bob', 'boss')}),
	'alice:10:1 bob:2:1 boss:1:1',
	'refusals counted for the logins core admits only');
raw_close($_) for @holders;
ok(set_budgets($node, ''), 'budgets: none');

# --- Part B: database counts made when an entry names them ---------------

is($node->safe_psql('postgres', 'SELECT count(*) FROM role_guard_db_stats()'),
	'0', 'no database counter without an entry');
my @d1 = map { raw_hold_ok($node, 'alice', 'd1', "alice in d1 #$_") } 1 .. 2;
push @d1, raw_hold_ok($node, 'bob', 'd1', 'bob in d1');
my @d3 = map { raw_hold_ok($node, 'alice', 'd3', "alice in d3 #$_") } 1 .. 2;
is($node->safe_psql('postgres', 'SELECT count(*) FROM role_guard_db_stats()'),
	'0', 'still none while no entry names a database');

ok(set_budgets($node, '@d1=3, alice@d3=2'), 'reload: @d1=3, alice@d3=2');
is(budget_of($node, '@d1', 'connections')->{connections},
	3, '@d1 counts the sessions already in, before any login');
is(budget_of($node, 'alice@d3', 'connections')->{connections},
	2, 'alice@d3 likewise');
refused_ok($node, tcp_connstr($node, 'bob', 'd1'), 'bob into a full d1',
	db => 'd1', entry => '@d1=3', used => 3, limit => 3);
refused_ok($node, tcp_connstr($node, 'alice', 'd3'), 'alice into d3',
	role => 'alice', db => 'd3', entry => 'alice@d3=2', used => 2, limit => 2);
admitted_ok($node, tcp_connstr($node, 'bob', 'd3'), 'bob into d3');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(kind || ':' || coalesce(roleid::regrole::text, '-') || ':' ||
		         datname || ':' || connections || ':' || rejected, ' ' ORDER BY kind, datname)
		  FROM role_guard_db_stats()}),
	'database:-:d1:3:1 role_database:alice:d3:2:1',
	'role_guard_db_stats: the counts the entries named');

# a session admitted before its count existed gives its place back
raw_close(shift @d1);
ok(poll_until($node, q{SELECT connections FROM role_guard_budgets WHERE entry = '@d1'}, '2'),
	'@d1 at 2 after one of the earlier sessions ended');
push @d1, raw_hold_ok($node, 'bob', 'd1', 'bob into d1 again: the freed place');
refused_ok($node, tcp_connstr($node, 'bob', 'd1'), 'd1 full again',
	db => 'd1', entry => '@d1=3', used => 3, limit => 3);

# the entries go; their counts (which keep statistics) go on counting
ok(set_budgets($node, ''), 'reload: no entries');
push @d1, raw_hold_ok($node, 'bob', 'd1', 'bob into d1 with no entry');
raw_close($_) for splice(@d1, 0, 2);
ok(set_budgets($node, '@d1=2'), 'reload: @d1=2');
is(budget_of($node, '@d1', 'connections')->{connections},
	2, '@d1 back: 2 sessions, counted through the change');
refused_ok($node, tcp_connstr($node, 'alice', 'd1'), 'alice into d1 at 2 of 2',
	db => 'd1', entry => '@d1=2', used => 2, limit => 2);
raw_close($_) for @d1, @d3;
ok(poll_until($node, q{SELECT sum(connections) FROM role_guard_db_stats()}, '0'),
	'every database count back at 0');
admitted_ok($node, tcp_connstr($node, 'alice', 'd1'), 'alice into an empty d1');

# the counts are kept by the database's OID: a rename keeps them, and the
# views show the name it has now
$node->safe_psql('postgres', 'ALTER DATABASE d1 RENAME TO d1new');
is( $node->safe_psql(
		'postgres',
		q{SELECT datname || ':' || connections || ':' || rejected
		  FROM role_guard_db_stats() WHERE kind = 'database'}),
	'd1new:0:3',
	'role_guard_db_stats: the renamed database, with its refusals');
ok(set_budgets($node, '@d1new=1'), 'reload: @d1new=1');
my $one = raw_hold_ok($node, 'bob', 'd1new', 'bob into d1new');
refused_ok($node, tcp_connstr($node, 'alice', 'd1new'), 'alice into d1new at 1 of 1',
	db => 'd1new', entry => '@d1new=1', used => 1, limit => 1);
is(budget_of($node, '@d1new', 'rejected')->{rejected},
	4, '@d1new: the refusals counted before the rename and after');
raw_close($one);

# --- Part C: the views copy the counter array a part (512 places) at a time

$node->safe_psql('postgres',
	q{DO $$ BEGIN FOR i IN 1..1200 LOOP EXECUTE format('CREATE ROLE %I LOGIN', 'v' || i); END LOOP; END $$});
my $in = 0;
for my $i (1 .. 1200)
{
	my $r = raw_login($node, "v$i", 'postgres');
	$in++ if $r->{sock};
	raw_close($r->{sock});
}
is($in, 1200, '1200 roles logged in once each');
my @v = map { raw_hold_ok($node, 'v1100', 'postgres', "v1100 held #$_") } 1 .. 3;
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) || ' ' || sum(peak) || ' ' || sum(connections)
		  FROM role_guard_usage WHERE rolname ~ '^v[0-9]+$'}),
	'1200 1202 3',
	'role_guard_usage: every one of 1200 roles (over 3 parts), peaks and connections');
raw_close($_) for @v;

done_testing();
