
# Copyright: see README.md.
#
# Budgets and superuser denial on a hot standby.  role_guard is preloaded
# on a primary and on its streaming standby, each with its own budgets and
# deny list in its own postgresql.conf (the standby's settings are appended
# after the copy of the primary's that init_from_backup makes):
#
#   primary: app=3, other=0, @limdb=3, repl=5;  deny 10.0.0.0/8
#   standby: app=1, @limdb=1;                   deny 127.0.0.1/32
#
#   - on the standby a role budget and a database budget refuse with 53300
#     and role_guard's DETAIL, and a superuser over TCP is denied with 28000
#     while admitted over the socket; the standby's role_guard_usage,
#     role_guard_budgets and role_guard_events show it;
#   - the primary's policy does not reach the standby (other=0 refuses only
#     on the primary, app=3 there while the standby holds app to 1) and the
#     standby's does not reach the primary (superusers are admitted from
#     127.0.0.1 there, and its counters and events show nothing of the
#     standby's refusals);
#   - the walsender is counted on the primary, and replication keeps
#     working throughout.
#
# Only 127.0.0.1 and the nodes' Unix sockets are used.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT rg_standby);

my $common = q{
shared_preload_libraries = 'role_guard'
listen_addresses = '127.0.0.1'
log_error_verbosity = verbose
log_min_messages = info
};
my $p_budgets = 'app=3, other=0, @limdb=3, repl=5, postgres=100, *=10';
my $s_budgets = 'app=1, @limdb=1, postgres=100, *=10';

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $common . qq{
role_guard.budgets = '$p_budgets'
role_guard.superuser_deny_hosts = '10.0.0.0/8'
});
$primary->append_conf('pg_hba.conf',
	"host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust");
$primary->start;
my $su = $primary->safe_psql('postgres', 'SELECT current_user');
die "the bootstrap superuser must be postgres for this test's budgets"
  unless $su eq 'postgres';
$primary->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE other LOGIN;
CREATE ROLE third LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
CREATE DATABASE limdb;
CREATE TABLE rep_t (i int);
CREATE EXTENSION role_guard;
});
my $standby = rg_standby(
	$primary, 'standby',
	conf => qq{role_guard.budgets = '$s_budgets'
role_guard.superuser_deny_hosts = '127.0.0.1/32'
});
$primary->wait_for_catchup($standby, 'replay');

# ---------------------------------------------------------------------------
# Each node has its own settings
# ---------------------------------------------------------------------------
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');
is( $primary->safe_psql(
		'postgres',
		q{SELECT usename || ':' || state FROM pg_stat_replication
		  WHERE application_name = 'standby'}),
	'repl:streaming',
	'the standby streams from the primary as repl');
is($standby->safe_psql('postgres', 'SHOW role_guard.budgets'),
	$s_budgets, "the standby has its own budgets");
is($standby->safe_psql('postgres', 'SHOW role_guard.superuser_deny_hosts'),
	'127.0.0.1/32', "the standby has its own deny list");
is($primary->safe_psql('postgres', 'SHOW role_guard.budgets'),
	$p_budgets, "the primary keeps its budgets");

my $entries_sql = q{SELECT string_agg(entry || '=' || budget, ', ' ORDER BY entry)
                    FROM role_guard_budgets};
is($standby->safe_psql('postgres', $entries_sql),
	'*=10, @limdb=1, app=1, postgres=100',
	"the standby's role_guard_budgets lists the standby's entries");
is($primary->safe_psql('postgres', $entries_sql),
	'*=10, @limdb=3, app=3, other=0, postgres=100, repl=5',
	"the primary's role_guard_budgets lists the primary's entries");
is( $primary->safe_psql('postgres',
		q{SELECT connections FROM role_guard_usage WHERE rolname = 'repl'}),
	'1', "the primary counts the walsender under repl");

# ---------------------------------------------------------------------------
# Role budget on the standby (app=1) and on the primary (app=3)
# ---------------------------------------------------------------------------
my $s_app = hold_ok($standby, 'app', 'postgres', 'standby: app holds its one place');
refused_ok(
	$standby, tcp_connstr($standby, 'app'), 'standby: role budget app=1',
	role  => 'app',
	entry => 'app=1',
	used  => 1,
	limit => 1);
my $raw = raw_login($standby, 'app');
is($raw->{sqlstate} // 'none', '53300', 'standby: the refusal carries SQLSTATE 53300');

my @p_app = map { hold_ok($primary, 'app', 'postgres', "primary: app session $_ of 3 admitted") } 1 .. 3;
refused_ok(
	$primary, tcp_connstr($primary, 'app'), 'primary: role budget app=3',
	role  => 'app',
	entry => 'app=3',
	used  => 3,
	limit => 3);

# ---------------------------------------------------------------------------
# Database budget on the standby (@limdb=1) and on the primary (@limdb=3)
# ---------------------------------------------------------------------------
my $s_other = hold_ok($standby, 'other', 'limdb', 'standby: other holds the one limdb place');
refused_ok(
	$standby, tcp_connstr($standby, 'third', 'limdb'), 'standby: database budget @limdb=1',
	db    => 'limdb',
	entry => '@limdb=1',
	used  => 1,
	limit => 1);
admitted_ok($standby, tcp_connstr($standby, 'third', 'postgres'),
	'standby: third into another database is admitted');
my $p_third = hold_ok($primary, 'third', 'limdb', 'primary: third into limdb admitted (@limdb=3 there)');

# ---------------------------------------------------------------------------
# The primary's other=0 does not reach the standby
# ---------------------------------------------------------------------------
refused_ok(
	$primary, tcp_connstr($primary, 'other'), 'primary: other=0 refuses',
	role  => 'other',
	entry => 'other=0',
	used  => 0,
	limit => 0);
admitted_ok($standby, tcp_connstr($standby, 'other'),
	"standby: other is admitted (the primary's other=0 does not apply there)");

# ---------------------------------------------------------------------------
# Superuser denial on the standby only
# ---------------------------------------------------------------------------
my $pos = log_pos($standby);
my ($ret, $out, $err) = try_login($standby, tcp_connstr($standby, $su));
isnt($ret, 0, 'standby: a superuser over TCP from 127.0.0.1 is refused');
like($err, qr/FATAL:\s+a superuser may not log in from host "127.0.0.1"\n\s*DETAIL:\s+[^\n]*role_guard\.superuser_deny_hosts/,
	'standby: the superuser gets the denial and its DETAIL');
like(
	log_since($standby, $pos),
	qr/FATAL:\s+28000: a superuser may not log in from host "127.0.0.1"/,
	'standby: the server log has FATAL 28000');
$raw = raw_login($standby, $su);
is($raw->{sqlstate} // 'none', '28000', 'standby: the denial carries SQLSTATE 28000');
admitted_ok($standby, sock_connstr($standby, $su),
	'standby: the superuser is admitted over the Unix socket');
admitted_ok($primary, tcp_connstr($primary, $su),
	"primary: the superuser is admitted over TCP (the standby's deny list does not apply)");

# ---------------------------------------------------------------------------
# What each node's views show
# ---------------------------------------------------------------------------
my $usage_sql = q{SELECT string_agg(format('%s:%s:%s:%s', rolname, connections, rejected, superuser_denied),
                                    ' ' ORDER BY rolname)
                  FROM role_guard_usage WHERE rolname IN ('app', 'other', 'third', 'postgres', 'repl')};
# (postgres: one session, the one asking; polled, since the sessions of
# admitted_ok may still be ending)
ok( poll_until(
		$standby, $usage_sql,
		'app:1:2:0 other:1:0:0 postgres:1:0:2 repl:0:0:0 third:0:1:0'),
	"standby: role_guard_usage (connections:rejected:superuser_denied)");
ok( poll_until(
		$primary, $usage_sql,
		'app:3:1:0 other:0:1:0 postgres:1:0:0 repl:1:0:0 third:1:0:0'),
	"primary: role_guard_usage shows only the primary's sessions and refusals");
is( $standby->safe_psql(
		'postgres',
		q{SELECT string_agg(entry || ':' || connections || ':' || rejected, ' ' ORDER BY entry)
		  FROM role_guard_budgets WHERE entry IN ('app', '@limdb')}),
	'@limdb:1:1 app:1:2',
	'standby: role_guard_budgets (connections:rejected)');
is( $primary->safe_psql(
		'postgres',
		q{SELECT string_agg(entry || ':' || connections || ':' || rejected, ' ' ORDER BY entry)
		  FROM role_guard_budgets WHERE entry IN ('app', '@limdb', 'other')}),
	'@limdb:1:0 app:3:1 other:0:1',
	'primary: role_guard_budgets (connections:rejected)');

my $events_sql = q{SELECT string_agg(concat_ws('|', event, rolname, datname, client_addr, detail), E'\n'
                                     ORDER BY at, event, rolname)
                   FROM role_guard_events};
is( $standby->safe_psql('postgres', $events_sql),
	join("\n",
		'rejected|app|postgres|127.0.0.1|role_guard budget "app=1" is full (1 of 1 sessions).',
		'rejected|app|postgres|127.0.0.1|role_guard budget "app=1" is full (1 of 1 sessions).',
		'rejected|third|limdb|127.0.0.1|role_guard budget "@limdb=1" is full (1 of 1 sessions).',
		'superuser_denied|postgres|postgres|127.0.0.1|Role is a superuser; host "127.0.0.1" matches role_guard.superuser_deny_hosts.',
		'superuser_denied|postgres|postgres|127.0.0.1|Role is a superuser; host "127.0.0.1" matches role_guard.superuser_deny_hosts.'
	),
	"standby: role_guard_events has the standby's refusals and denials");
is( $primary->safe_psql('postgres', $events_sql),
	join("\n",
		'rejected|app|postgres|127.0.0.1|role_guard budget "app=3" is full (3 of 3 sessions).',
		'rejected|other|postgres|127.0.0.1|role_guard budget "other=0" is full (0 of 0 sessions).'),
	"primary: role_guard_events has only the primary's refusals");

# ---------------------------------------------------------------------------
# Places are given back on the standby; replication still works
# ---------------------------------------------------------------------------
$s_app->quit;
ok(poll_login_ok($standby, tcp_connstr($standby, 'app')),
	'standby: app admitted again once its session quit');
$s_other->quit;
ok( poll_until(
		$standby,
		q{SELECT string_agg(entry || ':' || connections, ' ' ORDER BY entry)
		  FROM role_guard_budgets WHERE entry IN ('app', '@limdb')},
		'@limdb:0 app:0'),
	'standby: app and @limdb back to 0');

$primary->safe_psql('postgres', 'INSERT INTO rep_t SELECT generate_series(1, 100)');
$primary->wait_for_catchup($standby, 'replay');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM rep_t'),
	'100', 'replication keeps working');
is( $primary->safe_psql(
		'postgres',
		q{SELECT state FROM pg_stat_replication WHERE application_name = 'standby'}),
	'streaming', 'the standby still streams');
is($standby->safe_psql('postgres', 'SELECT status FROM pg_stat_wal_receiver'),
	'streaming', "the standby's walreceiver is streaming");

$_->quit for @p_app, $p_third;
$standby->stop;
$primary->stop;
done_testing();
