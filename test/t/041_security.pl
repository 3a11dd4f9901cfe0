
# Copyright: see README.md.
#
# What an unauthenticated client, or a session, can learn from or do to
# role_guard.
#
#   1. Clients that fail authentication (a wrong password with
#      scram-sha-256, a pg_hba.conf "reject" line, no pg_hba.conf line at
#      all) get PostgreSQL's own error, never a role_guard message, and move
#      no counter (role_guard_usage, role_guard_budgets, role_guard_events,
#      role_guard_global_stats), although the budgets of those roles are
#      full and 127.0.0.1 is in role_guard.superuser_deny_hosts.  The same
#      roles with the right password do hit role_guard.
#   2. No session can change a role_guard setting: SET, SET LOCAL,
#      set_config(), ALTER ROLE / ALTER DATABASE / ALTER ROLE IN DATABASE
#      ... SET and PGOPTIONS at login all fail or are ignored, for every
#      setting; a budget still refuses and a superuser is still denied
#      afterwards.  A non-superuser cannot ALTER SYSTEM them.
#   3. The views, the functions behind them and role_guard_reset() are
#      closed to PUBLIC (42501) and readable by pg_monitor; role_guard_reset()
#      works for a superuser and for a role granted EXECUTE on it.
#   4. The settings are read by superusers and pg_read_all_settings only
#      (GUC_SUPERUSER_ONLY): for a plain role SHOW and current_setting() fail
#      with 42501 and pg_settings has no role_guard row (but the read-only
#      library_version, which is no policy); a pg_monitor member (which
#      includes pg_read_all_settings) reads each value.
#
# Only 127.0.0.1 and the node's Unix socket are used.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT write_hba);

my %conf = (
	'role_guard.mode' => 'enforce',
	'role_guard.budgets' =>
	  'pwrole=1, rejrole=1, nohba=1, full=1, pwsuper=1, rejsuper=1, nohbasuper=1, postgres=100, *=10',
	'role_guard.idle_timeouts'                => 'idler=1h',
	'role_guard.idle_in_transaction_timeouts' => 'idler=2h',
	'role_guard.reap_interval'                => '2s',
	'role_guard.superuser_deny_hosts'         => '127.0.0.1/32',
	'role_guard.max_roles'                    => '512',
	'role_guard.event_log_size'               => '200',
	'role_guard.reservations'                 => 'pwrole=1',
	'role_guard.superuser_socket_exempt'      => 'on',
	'role_guard.login_waits'                  => 'idler=1s',
	'role_guard.max_waiting_logins'           => '5',
	'role_guard.evict_idle'                   => 'idler=1h',
	'role_guard.active_budgets'               => 'idler=50',
	'role_guard.active_waits'                 => 'idler=1s',
	'role_guard.auth_failure_limit'           => '100',
	'role_guard.auth_failure_window'          => '2min',
	'role_guard.auth_block_time'              => '5min',
	'role_guard.max_auth_blocks'              => '64',
	'role_guard.auth_block_exempt_hosts'      => '10.9.0.0/16',
	'role_guard.superuser_deny_covers'        => 'pg_execute_server_program',
	'role_guard.save'                         => 'on',
);
# What a session tries to set each of them to.
my %attempt = (
	'role_guard.mode'                         => 'off',
	'role_guard.budgets'                      => 'full=100',
	'role_guard.idle_timeouts'                => '*=0',
	'role_guard.idle_in_transaction_timeouts' => '*=0',
	'role_guard.reap_interval'                => '1h',
	'role_guard.superuser_deny_hosts'         => '10.0.0.0/8',
	'role_guard.max_roles'                    => '64',
	'role_guard.event_log_size'               => '0',
	'role_guard.reservations'                 => '',
	'role_guard.superuser_socket_exempt'      => 'off',
	'role_guard.login_waits'                  => '*=1h',
	'role_guard.max_waiting_logins'           => '1000',
	'role_guard.evict_idle'                   => '',
	'role_guard.active_budgets'               => '*=1',
	'role_guard.active_waits'                 => '*=0',
	'role_guard.auth_failure_limit'           => '0',
	'role_guard.auth_failure_window'          => '1h',
	'role_guard.auth_block_time'              => '1s',
	'role_guard.max_auth_blocks'              => '16',
	'role_guard.auth_block_exempt_hosts'      => 'all',
	'role_guard.superuser_deny_covers'        => '',
	'role_guard.save'                         => 'off',
);
my @settings = sort keys %conf;

my $node = PostgreSQL::Test::Cluster->new('security');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'role_guard'\n"
	  . "listen_addresses = '127.0.0.1'\n"
	  . "log_error_verbosity = verbose\n"
	  . "log_min_messages = info\n"
	  . join('', map { "$_ = '$conf{$_}'\n" } @settings));
write_hba($node, <<'EOT');
local   all  all                                                  trust
host    all  pwrole,pwsuper                          127.0.0.1/32 scram-sha-256
host    all  rejrole,rejsuper                        127.0.0.1/32 reject
host    all  plain,mon,granted,full,su2,idler        127.0.0.1/32 trust
EOT
$node->start;
my $su = $node->safe_psql('postgres', 'SELECT current_user');
die "the bootstrap superuser must be postgres for this test's budgets"
  unless $su eq 'postgres';

$node->safe_psql(
	'postgres', q{
SET password_encryption = 'scram-sha-256';
CREATE ROLE pwrole LOGIN PASSWORD 'right-pw';
CREATE ROLE pwsuper LOGIN SUPERUSER PASSWORD 'right-pw';
CREATE ROLE rejrole LOGIN;
CREATE ROLE rejsuper LOGIN SUPERUSER;
CREATE ROLE nohba LOGIN;
CREATE ROLE nohbasuper LOGIN SUPERUSER;
CREATE ROLE full LOGIN;
CREATE ROLE su2 LOGIN SUPERUSER;
CREATE ROLE plain LOGIN;
CREATE ROLE mon LOGIN IN ROLE pg_monitor;
CREATE ROLE granted LOGIN;
CREATE ROLE idler LOGIN;
CREATE DATABASE otherdb;
CREATE EXTENSION role_guard;
});

sub tcp
{
	my ($user, $extra) = @_;
	return tcp_connstr($node, $user) . ($extra ? " $extra" : '');
}

# psql as $connstr with verbose errors (SQLSTATEs); (ret, out, err).
sub run_sql
{
	my ($connstr, $sql, %o) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGOPTIONS} = $o{pgoptions} if defined $o{pgoptions};
	my @cmd = ('psql', '-XAtq', '-w', '-v', 'VERBOSITY=verbose', '-d', $connstr);
	push @cmd, map { ('-c', $_) } (ref $sql ? @$sql : ($sql));
	my $ret;
	eval {
		IPC::Run::run(\@cmd, '<', '/dev/null', '>', \$out, '2>', \$err,
			IPC::Run::timeout($RoleGuardTest::wait_seconds));
		$ret = $? >> 8;
	};
	if ($@) { $err .= "\n$@"; $ret = -1; }
	chomp $out;
	chomp $err;
	return ($ret, $out, $err);
}

sub as_user
{
	my ($user, $sql, %o) = @_;
	return run_sql(sock_connstr($node, $user), $sql, %o);
}

# ---------------------------------------------------------------------------
# 1. Failed authentication learns nothing and moves nothing
# ---------------------------------------------------------------------------
# Fill the budget of every role used below with one session over the socket
# (trusted there; superusers are never refused over the socket).
my %held;
foreach my $r (qw(pwrole rejrole nohba full pwsuper rejsuper nohbasuper))
{
	$held{$r} = hold_ok($node, $r, 'postgres', "$r holds its one place", via => 'socket');
}
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(entry || ':' || connections || '/' || budget, ' ' ORDER BY entry)
		  FROM role_guard_budgets
		 WHERE entry NOT IN ('postgres', '*') AND kind NOT LIKE 'active%'}),
	'full:1/1 nohba:1/1 nohbasuper:1/1 pwrole:1/1 pwsuper:1/1 rejrole:1/1 rejsuper:1/1',
	'the budgets of those roles are full');

# Everything a failed login could move, except the asking superuser's own
# row (its socket sessions come and go).
my $counters_sql = q{
SELECT 'U ' || string_agg(format('%s:%s:%s:%s:%s:%s:%s', rolname, connections, peak,
                                 rejected, would_reject, superuser_denied,
                                 coalesce(last_rejected::text, '-')), ' ' ORDER BY rolname)
  FROM role_guard_usage WHERE rolname <> current_user
UNION ALL
SELECT 'B ' || string_agg(format('%s:%s:%s:%s', entry, connections, rejected, would_reject),
                          ' ' ORDER BY entry)
  FROM role_guard_budgets WHERE entry NOT IN ('postgres', '*')
UNION ALL
SELECT 'D ' || string_agg(format('%s:%s:%s', rolname, would_deny, superuser_denied), ' ' ORDER BY rolname)
  FROM role_guard_role_stats() WHERE rolname <> current_user
UNION ALL
SELECT 'E ' || count(*) || ':' || coalesce(max(at)::text, '-') FROM role_guard_events
UNION ALL
SELECT 'G ' || replication_connections || ':' || default_rejected || ':' || default_would_reject
  FROM role_guard_global_stats()};
sub counters { return $node->safe_psql('postgres', $counters_sql); }

my $rg_text = qr/role_guard|too many connections|superuser may not log in/i;
my @failing = (
	[
		'wrong password (scram-sha-256)', 'pwrole', 'password=wrong-pw',
		qr/FATAL:\s+(28P01: )?password authentication failed for user "pwrole"/
	],
	[
		'wrong password, superuser', 'pwsuper', 'password=wrong-pw',
		qr/FATAL:\s+(28P01: )?password authentication failed for user "pwsuper"/
	],
	[
		'pg_hba.conf reject', 'rejrole', '',
		qr/FATAL:\s+(28000: )?pg_hba.conf rejects connection for host "127.0.0.1", user "rejrole"/
	],
	[
		'pg_hba.conf reject, superuser', 'rejsuper', '',
		qr/FATAL:\s+(28000: )?pg_hba.conf rejects connection for host "127.0.0.1", user "rejsuper"/
	],
	[
		'no pg_hba.conf line', 'nohba', '',
		qr/FATAL:\s+(28000: )?no pg_hba.conf entry for host "127.0.0.1", user "nohba"/
	],
	[
		'no pg_hba.conf line, superuser', 'nohbasuper', '',
		qr/FATAL:\s+(28000: )?no pg_hba.conf entry for host "127.0.0.1", user "nohbasuper"/
	]);

my $before = counters();
my $pos    = log_pos($node);
foreach my $f (@failing)
{
	my ($name, $user, $extra, $want) = @$f;
	my $all_ok = 1;
	my $last   = '';
	for my $n (1 .. 3)
	{
		my ($ret, $out, $err) = run_sql(tcp($user, $extra), 'SELECT 1');
		$last = $err;
		$all_ok &&= $ret != 0 && $err =~ $want && $err !~ $rg_text;
	}
	ok($all_ok, "$name: 3 logins get PostgreSQL's own error, nothing from role_guard")
	  or diag $last;
}
is(counters(), $before, 'failed authentication moved no role_guard counter or event');
my $log = log_since($node, $pos);
my $rg_log = qr/role_guard:|role_guard budget|role_guard\.superuser_deny_hosts|too many connections|superuser may not log in/;
unlike($log, $rg_log, 'the server log has no role_guard message for them');
foreach my $f (@failing)
{
	my ($name, $user, $extra, $want) = @$f;
	is(count_matches($log, qr/FATAL:\s+\d\d[0-9A-Z]\d\d: [^\n]*user "$user"/), 3,
		"$name: the server log has PostgreSQL's 3 FATALs");
}
like($log, qr/FATAL:\s+28P01: password authentication failed for user "pwrole"/,
	'the failed password is logged with 28P01');

# The same roles, authenticated, do meet role_guard.
$pos = log_pos($node);
my ($ret, $out, $err) = run_sql(tcp('pwrole', 'password=right-pw'), 'SELECT 1');
like(
	$err,
	qr/FATAL:\s+too many connections for role "pwrole"\n\s*DETAIL:\s+role_guard budget "pwrole=1" is full \(1 of 1 sessions\)\./,
	'pwrole with the right password: refused by its full budget');
($ret, $out, $err) = run_sql(tcp('pwsuper', 'password=right-pw'), 'SELECT 1');
like($err, qr/FATAL:\s+password authentication failed for user "pwsuper"/,
	'pwsuper with the right password: denied, as a failed password (scram-sha-256)');
isnt(counters(), $before, '(and those two do move the counters)');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(rolname || ':' || rejected || ':' || superuser_denied, ' ' ORDER BY rolname)
		  FROM role_guard_usage WHERE rolname IN ('pwrole', 'pwsuper')}),
	'pwrole:1:0 pwsuper:0:1',
	'role_guard_usage counts one refusal and one denial');

# ---------------------------------------------------------------------------
# 2. No session can change a setting
# ---------------------------------------------------------------------------
my $settings_sql = q{SELECT string_agg(name || '=' || setting, ' ' ORDER BY name)
                     FROM pg_settings WHERE name LIKE 'role_guard.%'};
my $policy_sql = q{SELECT string_agg(concat_ws(':', setting, entry, kind, rolname, datname, value),
                                     ' ' ORDER BY setting, entry) FROM role_guard_policy()};
my $settings0 = $node->safe_psql('postgres', $settings_sql);
my $policy0   = $node->safe_psql('postgres', $policy_sql);
like($settings0, qr/role_guard\.mode=enforce\b/, 'settings as postgresql.conf has them');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(DISTINCT source, ',') FROM pg_settings
		  WHERE name LIKE 'role_guard.%' AND context <> 'internal'}),
	'configuration file',
	'every role_guard setting comes from the configuration file');
is( $node->safe_psql(
		'postgres',
		q{SELECT context || ' ' || source FROM pg_settings
		  WHERE name = 'role_guard.library_version'}),
	'internal default',
	'role_guard.library_version is read only (internal), set by the library');

my $cannot = sub {
	my ($name) = @_;
	return qr/ERROR:\s+(?:55P02: parameter "\Q$name\E" cannot be changed now|55P02: parameter "\Q$name\E" cannot be changed without restarting the server|42501: permission denied to set parameter "\Q$name\E")/;
};

foreach my $name (@settings)
{
	my $v   = $attempt{$name};
	my $re  = $cannot->($name);
	my $orig = $node->safe_psql('postgres', "SELECT current_setting('$name')");
	is($orig, $conf{$name}, "$name is '$conf{$name}' to begin with");

	# SET, SET LOCAL and set_config() in a session, as a plain role and as
	# a superuser: four errors, and the session still has the old value.
	foreach my $user ('plain', 'su2')
	{
		my @sql = (
			"SET $name = '$v'",
			'BEGIN', "SET LOCAL $name = '$v'", 'ROLLBACK',
			"SELECT set_config('$name', '$v', false)",
			'BEGIN', "SELECT set_config('$name', '$v', true)", 'ROLLBACK',
			"SELECT current_setting('$name')",
			"SELECT count(*) FROM pg_settings WHERE name = '$name' AND source = 'session'");
		($ret, $out, $err) = as_user($user, \@sql);
		is(count_matches($err, $re), 4,
			"$name: SET, SET LOCAL and set_config() fail for $user")
		  or diag $err;
		# a plain role cannot read it either (part 4): no value, no row
		is($out, $user eq 'plain' ? '0' : "$conf{$name}\n0",
			"$name: $user still has the configured value");
	}

	# ALTER ROLE / DATABASE ... SET, as a superuser and as the role itself.
	my @alter = (
		"ALTER ROLE plain SET $name = '$v'",
		"ALTER ROLE ALL SET $name = '$v'",
		"ALTER DATABASE otherdb SET $name = '$v'",
		"ALTER ROLE plain IN DATABASE otherdb SET $name = '$v'",
		"ALTER ROLE ALL IN DATABASE postgres SET $name = '$v'");
	my $n_fail = 0;
	my $errs   = '';
	foreach my $sql (@alter)
	{
		($ret, $out, $err) = as_user('postgres', $sql);
		$n_fail++ if $ret != 0 && $err =~ $re;
		$errs .= "$sql: $err\n";
	}
	is($n_fail, scalar @alter,
		"$name: ALTER ROLE / DATABASE / ROLE IN DATABASE ... SET fail for a superuser")
	  or diag $errs;
	($ret, $out, $err) = as_user('plain', "ALTER ROLE plain SET $name = '$v'");
	isnt($ret, 0, "$name: ALTER ROLE ... SET fails for the role itself")
	  or diag $out;

	# PGOPTIONS at login: the login fails, or the setting is ignored.
	($ret, $out, $err) = run_sql(tcp('plain'),
		["SELECT current_setting('$name')"],
		pgoptions => "-c $name=$v");
	ok( ($ret != 0 && $err =~ /FATAL:\s+parameter "\Q$name\E" cannot be changed/)
		  || ($ret == 0 && $out eq $conf{$name}),
		"$name: PGOPTIONS='-c $name=$v' fails or is ignored")
	  or diag "ret $ret, out $out, err $err";

	# ... and cannot get a full role in, nor a superuser in from 127.0.0.1.
	($ret, $out, $err) = run_sql(tcp('full'), 'SELECT 1', pgoptions => "-c $name=$v");
	ok($ret != 0
		  && $err =~ /FATAL:\s+(?:too many connections for role "full"|parameter "\Q$name\E" cannot be changed)/,
		"$name: PGOPTIONS does not get a role past its full budget")
	  or diag "ret $ret, out $out, err $err";
	($ret, $out, $err) = run_sql(tcp('su2'), 'SELECT 1', pgoptions => "-c $name=$v");
	ok($ret != 0
		  && $err =~ /FATAL:\s+(?:a superuser may not log in from host "127.0.0.1"|parameter "\Q$name\E" cannot be changed)/,
		"$name: PGOPTIONS does not get a superuser in from a denied host")
	  or diag "ret $ret, out $out, err $err";

	# ALTER SYSTEM needs superuser (or a GRANT ALTER SYSTEM, not given).
	foreach my $user ('plain', 'mon')
	{
		my @sql = ("ALTER SYSTEM SET $name = '$v'", "ALTER SYSTEM RESET $name");
		my $n = 0;
		foreach my $sql (@sql)
		{
			($ret, $out, $err) = as_user($user, $sql);
			$n++
			  if $ret != 0
			  && $err =~ /ERROR:\s+42501: (?:permission denied to set parameter "\Q$name\E"|must be superuser)/;
		}
		is($n, 2, "$name: ALTER SYSTEM SET / RESET denied to $user with 42501")
		  or diag $err;
	}
}

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_db_role_setting, unnest(setconfig) c
		  WHERE c LIKE 'role_guard.%'}),
	'0',
	'pg_db_role_setting holds no role_guard setting');
my $auto = slurp_file($node->data_dir . '/postgresql.auto.conf');
unlike($auto, qr/role_guard/, 'postgresql.auto.conf holds no role_guard setting');
$node->reload;
ok(poll_until($node, $settings_sql, $settings0), 'settings unchanged after a reload');
is($node->safe_psql('postgres', $policy_sql), $policy0,
	'role_guard_policy() unchanged');
($ret, $out, $err) = as_user('mon', $settings_sql);
is($out, $settings0, 'a new session of a pg_monitor member sees the configured settings');

# The effective policy still refuses.
refused_ok(
	$node, tcp('full'), 'afterwards, the full budget still refuses',
	role  => 'full',
	entry => 'full=1',
	used  => 1,
	limit => 1);
($ret, $out, $err) = run_sql(tcp('su2'), 'SELECT 1');
like($err, qr/FATAL:\s+a superuser may not log in from host "127.0.0.1"/,
	'afterwards, a superuser is still denied from 127.0.0.1');
($ret, $out, $err) = as_user('su2', 'SELECT 1');
is($ret . ':' . $out, '0:1', 'and still admitted over the socket');
is( $node->safe_psql(
		'postgres',
		q{SELECT idle_timeout || ' ' || idle_in_transaction_timeout
		  FROM role_guard_usage WHERE rolname = 'idler'}),
	'01:00:00 02:00:00',
	'the idle limits are the configured ones');

# ---------------------------------------------------------------------------
# 3. Views, functions and role_guard_reset(): closed to PUBLIC
# ---------------------------------------------------------------------------
my %read = (
	'view role_guard_usage'    => 'SELECT count(*) >= 0 FROM role_guard_usage',
	'view role_guard_budgets'  => 'SELECT count(*) >= 0 FROM role_guard_budgets',
	'view role_guard_summary'  => 'SELECT count(*) >= 0 FROM role_guard_summary',
	'view role_guard_events'   => 'SELECT count(*) >= 0 FROM role_guard_events',
	'function role_guard_role_stats' =>
	  'SELECT count(*) >= 0 FROM role_guard_role_stats()',
	'function role_guard_db_stats' =>
	  'SELECT count(*) >= 0 FROM role_guard_db_stats()',
	'function role_guard_policy' => 'SELECT count(*) >= 0 FROM role_guard_policy()',
	'function role_guard_global_stats' =>
	  'SELECT count(*) >= 0 FROM role_guard_global_stats()',
	'function role_guard_role_timeouts' =>
	  q{SELECT count(*) >= 0 FROM role_guard_role_timeouts('idler'::regrole)},
	'function role_guard_events' => 'SELECT count(*) >= 0 FROM role_guard_events()',
);
foreach my $what (sort keys %read)
{
	my ($kind, $obj) = split / /, $what;
	($ret, $out, $err) = as_user('plain', $read{$what});
	ok( $ret != 0
		  && $err =~ /ERROR:\s+42501: permission denied for (?:view|table|relation|function) \Q$obj\E/,
		"PUBLIC: $what denied with 42501") or diag $err;
	($ret, $out, $err) = as_user('mon', $read{$what});
	is($ret . ':' . $out, '0:t', "pg_monitor: $what readable") or diag $err;
}
($ret, $out, $err) =
  as_user('mon', q{SELECT connections FROM role_guard_usage WHERE rolname = 'full'});
is($out, '1', 'pg_monitor sees the live numbers');
foreach my $user ('plain', 'mon', 'granted')
{
	($ret, $out, $err) = as_user($user, 'SELECT role_guard_reset()');
	ok($ret != 0
		  && $err =~ /ERROR:\s+42501: permission denied for function role_guard_reset/,
		"$user: role_guard_reset() denied with 42501") or diag $err;
}
is( $node->safe_psql('postgres', q{SELECT count(*) > 0 FROM role_guard_events}),
	't', 'there are events before the reset');

my $cleared_sql = q{
SELECT (SELECT coalesce(sum(rejected + superuser_denied), 0) FROM role_guard_usage)
       || ':' || (SELECT count(*) FROM role_guard_events)
       || ':' || (SELECT coalesce(sum(rejected), 0) FROM role_guard_budgets)};
isnt($node->safe_psql('postgres', $cleared_sql), '0:0:0', 'counters are non-zero before the reset');
($ret, $out, $err) = as_user('su2', 'SELECT role_guard_reset()');
is($ret, 0, 'a superuser can run role_guard_reset()') or diag $err;
is($node->safe_psql('postgres', $cleared_sql), '0:0:0', "the superuser's reset cleared counters and events");

# A refusal and a denial, then the granted role resets.
refused_ok(
	$node, tcp('full'), 'a refusal after the reset',
	role  => 'full',
	entry => 'full=1',
	used  => 1,
	limit => 1);
run_sql(tcp('su2'), 'SELECT 1');
is($node->safe_psql('postgres', $cleared_sql), '2:2:1', 'counted again: a refusal, a denial, two events');
$node->safe_psql('postgres', 'GRANT EXECUTE ON FUNCTION role_guard_reset() TO granted');
($ret, $out, $err) = as_user('granted', 'SELECT role_guard_reset()');
is($ret, 0, 'a role granted EXECUTE can run role_guard_reset()') or diag $err;
is($node->safe_psql('postgres', $cleared_sql), '0:0:0', "the granted role's reset cleared them");
($ret, $out, $err) = as_user('granted', 'SELECT count(*) FROM role_guard_usage');
like($err, qr/ERROR:\s+42501:/, 'EXECUTE on reset does not open the views');
is( $node->safe_psql('postgres',
		q{SELECT connections FROM role_guard_usage WHERE rolname = 'full'}),
	'1', 'a reset does not free places');

# ---------------------------------------------------------------------------
# 4. The settings: superusers and pg_read_all_settings only
# ---------------------------------------------------------------------------
foreach my $name (@settings)
{
	foreach my $sql ("SHOW $name", "SELECT current_setting('$name')")
	{
		($ret, $out, $err) = as_user('plain', $sql);
		ok($ret != 0 && $err =~ /ERROR:\s+42501: [^\n]*examine "\Q$name\E"/,
			"plain role: $sql fails with 42501") or diag "$ret [$out] $err";
		($ret, $out, $err) = as_user('mon', $sql);
		ok($ret == 0 && $out ne '', "pg_monitor member: $sql answers")
		  or diag $err;
	}
}
($ret, $out, $err) = as_user('plain',
	q{SELECT string_agg(name, ',') FROM pg_settings WHERE name LIKE 'role_guard.%'});
is($out, 'role_guard.library_version',
	'plain role: pg_settings shows no role_guard setting but the library version');
($ret, $out, $err) = as_user('mon',
	q{SELECT count(*) FROM pg_settings WHERE name LIKE 'role_guard.%' AND setting IS NOT NULL});
cmp_ok($out, '>=', scalar(@settings), 'pg_monitor member: pg_settings shows every role_guard setting');
($ret, $out, $err) = as_user('mon', 'SHOW role_guard.superuser_deny_hosts');
is($out, '127.0.0.1/32', 'pg_monitor member: reads the deny list itself');

$_->quit for values %held;
$node->stop;
done_testing();
