
# Copyright: see README.md.
#
# The shared membership cache (src/members.c): a login finds its role's
# groups in shared memory, not in pg_auth_members.  Every way a membership,
# a group's name or its SUPERUSER attribute can change must reach the next
# login: GRANT, REVOKE, a GRANT to a group in between, RENAME, DROP ROLE,
# ALTER ROLE SUPERUSER, a GRANT whose transaction is still open while the
# role logs in (read before the commit, then committed), PREPARE TRANSACTION
# and COMMIT PREPARED, a cache much smaller than the number of roles
# (role_guard.max_roles = 16), a role in more groups than are cached (70),
# and a standby replaying a GRANT.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use RoleGuardTest qw(:DEFAULT set_deny_hosts_ok rg_standby
  superuser_denied_ok admitted_quietly_ok);

my $node = rg_node(
	'members',
	connect_fails => 1,
	conf => "wal_level = replica\nmax_wal_senders = 4\n"
	  . "max_prepared_transactions = 2\nrole_guard.max_roles = 16\n");

my $su       = $node->safe_psql('postgres', 'SELECT current_user');
my $su_entry = entry_text($su);

$node->safe_psql(
	'postgres', q{
CREATE ROLE u LOGIN;
CREATE ROLE v LOGIN;
CREATE ROLE w LOGIN;
CREATE ROLE s LOGIN;
CREATE ROLE big LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
CREATE ROLE grp NOLOGIN;
CREATE ROLE grp2 NOLOGIN;
CREATE ROLE mid NOLOGIN;
CREATE ROLE gdrop NOLOGIN;
CREATE ROLE sg NOLOGIN;
CREATE ROLE many NOLOGIN;
CREATE EXTENSION role_guard;
});

sub tcp { return tcp_connstr($node, @_); }

# No session of $user is left.
sub gone_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($n, $user) = @_;
	ok( poll_until(
			$n, "SELECT count(*) FROM pg_stat_activity WHERE usename = '$user'",
			'0'),
		"$user: no session left");
	return;
}

# A login of $role refused by the full entry +$group=$limit.
sub group_full_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($n, $connstr, $name, $role, $group, $used, $limit) = @_;
	refused_ok(
		$n, $connstr, $name,
		role  => $role,
		entry => "+$group=$limit",
		used  => $used,
		limit => $limit);
	return;
}

# Run SQL in a background session; ok when it ran without an error.  No
# trailing semicolon: an empty statement after COMMIT would start a new
# transaction, whose start reads the invalidation queue and so would bump
# the cache's generation in this backend, hiding a missing bump at commit.
sub tx_ok
{
	my ($s, $sql, $name) = @_;
	my $before = length($s->stderr);
	my $out    = $s->query($sql);
	ok(defined $out && length($s->stderr) == $before, $name)
	  or diag 'stderr: ' . $s->stderr;
	return;
}

# member count of a +group entry's role, as role_guard_budgets shows it
sub group_used
{
	my ($n, $g) = @_;
	my $v = budget_of($n, "+$g", 'connections')->{connections};
	return $v eq '<norow>' ? 'none' : $v;
}

ok(set_budgets($node, "+grp=1, +grp3=1, +gdrop=5, +many=20, +g70=1, $su_entry=100"),
	'group budgets loaded');

# ---------------------------------------------------------------------------
# GRANT and REVOKE after the role's memberships were cached
# ---------------------------------------------------------------------------
admitted_ok($node, tcp('u'), 'u, in no group, logs in (its groups cached)');
admitted_ok($node, tcp('u'), 'u again, from the cache');
$node->safe_psql('postgres', 'GRANT grp TO u');
my $s1 = hold_ok($node, 'u', 'postgres', 'u holds a session after GRANT grp');
is(group_used($node, 'grp'), '1', 'the session counts in +grp right after GRANT');
group_full_ok($node, tcp('u'), 'second u after GRANT grp', 'u', 'grp', 1, 1);
$node->safe_psql('postgres', 'REVOKE grp FROM u');
my $s2 = hold_ok($node, 'u', 'postgres', 'u gets in after REVOKE grp (cached as member before)');
is(group_used($node, 'grp'), '1', 'only the session from before REVOKE counts in +grp');
$s1->quit;
$s2->quit;
gone_ok($node, 'u');
is(group_used($node, 'grp'), '0', '+grp count back to 0');

# ---------------------------------------------------------------------------
# A membership of a group changes: u -> mid, then mid -> grp
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'GRANT mid TO u');
admitted_ok($node, tcp('u'), 'u, member of mid only (cached)');
$node->safe_psql('postgres', 'GRANT grp TO mid');
$s1 = hold_ok($node, 'u', 'postgres', 'u after GRANT grp TO mid');
is(group_used($node, 'grp'), '1', 'u counts in +grp through mid');
group_full_ok($node, tcp('u'), 'second u through mid', 'u', 'grp', 1, 1);
$s1->quit;
$node->safe_psql('postgres', 'REVOKE grp FROM mid; REVOKE mid FROM u');
gone_ok($node, 'u');

# ---------------------------------------------------------------------------
# RENAME of a group: the +entry matches the new name at once
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'GRANT grp2 TO u');
$s1 = hold_ok($node, 'u', 'postgres', 'u in grp2 (no budget): cached with the name grp2');
$s2 = hold_ok($node, 'u', 'postgres', 'a second u in grp2');
$s1->quit;
$s2->quit;
gone_ok($node, 'u');
$node->safe_psql('postgres', 'ALTER ROLE grp2 RENAME TO grp3');
$s1 = hold_ok($node, 'u', 'postgres', 'u after RENAME grp2 TO grp3');
group_full_ok($node, tcp('u'), 'second u after RENAME (+grp3=1)', 'u', 'grp3', 1, 1);
$s1->quit;
gone_ok($node, 'u');

# ---------------------------------------------------------------------------
# DROP ROLE of a group a cached role was in
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'GRANT gdrop TO v');
$s1 = hold_ok($node, 'v', 'postgres', 'v in gdrop');
is(group_used($node, 'gdrop'), '1', 'v counts in +gdrop');
$s1->quit;
gone_ok($node, 'v');
$node->safe_psql('postgres', 'DROP ROLE gdrop');
$s1 = hold_ok($node, 'v', 'postgres', 'v after DROP ROLE gdrop');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM role_guard_role_stats() WHERE member_connections > 0
		  AND roleid NOT IN (SELECT oid FROM pg_authid)}),
	'0',
	'no session is charged to the dropped group');
$s1->quit;
gone_ok($node, 'v');

# ---------------------------------------------------------------------------
# A GRANT in a transaction still open while the role logs in: the login
# reads the catalogs before the commit and must not keep that afterwards
# ---------------------------------------------------------------------------
my $tx = bg_session($node, sock_connstr($node, $su, 'postgres'));
tx_ok($tx, 'BEGIN; GRANT grp TO v', 'GRANT grp TO v in an open transaction');
$s1 = hold_ok($node, 'v', 'postgres', 'v logs in while the GRANT is not committed');
is(group_used($node, 'grp'), '0', 'v is not in grp yet');
$s1->quit;
gone_ok($node, 'v');
tx_ok($tx, 'COMMIT', 'GRANT committed');
$s1 = hold_ok($node, 'v', 'postgres', 'v after the commit');
is(group_used($node, 'grp'), '1', 'v counts in +grp after the commit');
group_full_ok($node, tcp('v'), 'second v after the commit', 'v', 'grp', 1, 1);
$s1->quit;
gone_ok($node, 'v');
tx_ok($tx, 'BEGIN; REVOKE grp FROM v', 'REVOKE in an open transaction');
$s1 = hold_ok($node, 'v', 'postgres', 'v logs in while the REVOKE is open');
is(group_used($node, 'grp'), '1', 'v still counts in +grp');
group_full_ok($node, tcp('v'), 'second v while the REVOKE is open', 'v', 'grp', 1, 1);
tx_ok($tx, 'ROLLBACK', 'REVOKE rolled back');
group_full_ok($node, tcp('v'), 'second v after the ROLLBACK', 'v', 'grp', 1, 1);
$s1->quit;
$node->safe_psql('postgres', 'REVOKE grp FROM v');
gone_ok($node, 'v');

# ---------------------------------------------------------------------------
# PREPARE TRANSACTION, then COMMIT PREPARED from another session
# ---------------------------------------------------------------------------
tx_ok($tx, q{BEGIN; GRANT grp TO w; PREPARE TRANSACTION 'rg_grant'},
	'GRANT grp TO w prepared');
$s1 = hold_ok($node, 'w', 'postgres', 'w logs in while the GRANT is prepared');
is(group_used($node, 'grp'), '0', 'w is not in grp yet');
$s1->quit;
gone_ok($node, 'w');
$node->safe_psql('postgres', q{COMMIT PREPARED 'rg_grant'});
$s1 = hold_ok($node, 'w', 'postgres', 'w after COMMIT PREPARED');
is(group_used($node, 'grp'), '1', 'w counts in +grp after COMMIT PREPARED');
$s1->quit;
$node->safe_psql('postgres', 'REVOKE grp FROM w');
gone_ok($node, 'w');
$tx->quit;

# ---------------------------------------------------------------------------
# ALTER ROLE ... SUPERUSER on a group: its members become deniable
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'GRANT sg TO s');
set_deny_hosts_ok($node, '127.0.0.1/32');
admitted_quietly_ok($node, tcp('s'), 's in a plain group: admitted from a denied host');
$node->safe_psql('postgres', 'ALTER ROLE sg SUPERUSER');
superuser_denied_ok($node, tcp('s'), 's after ALTER ROLE sg SUPERUSER',
	role => 's', host => '127.0.0.1', member_of => 'sg');
$node->safe_psql('postgres', 'ALTER ROLE sg NOSUPERUSER');
admitted_quietly_ok($node, tcp('s'), 's after ALTER ROLE sg NOSUPERUSER');
$node->safe_psql('postgres', 'REVOKE sg FROM s; ALTER ROLE sg SUPERUSER');
admitted_quietly_ok($node, tcp('s'), 's after REVOKE sg (sg a superuser)');
set_deny_hosts_ok($node, '');

# ---------------------------------------------------------------------------
# More roles than the cache holds (max_roles = 16): 30 roles in "many",
# each logging in twice; 20 held sessions fill +many=20, the next is refused
# ---------------------------------------------------------------------------
$node->safe_psql('postgres',
	join('', map { "CREATE ROLE m$_ LOGIN IN ROLE many;" } 1 .. 30));
my $fails = 0;
foreach my $round (1 .. 2)
{
	foreach my $i (1 .. 30)
	{
		my ($ret) = try_login($node, tcp("m$i"));
		$fails++ if $ret != 0;
	}
}
is($fails, 0, '60 logins of 30 roles through a cache of 16 entries');
my @held;
push @held, bg_session($node, tcp("m$_")) foreach 1 .. 20;
is(scalar(grep { $_->connected } @held), 20, '20 sessions of 20 roles held');
is(group_used($node, 'many'), '20', '+many counts 20');
group_full_ok($node, tcp('m21'), 'a 21st role in many', 'm21', 'many', 20, 20);
$_->quit foreach @held;
ok(poll_until($node, q{SELECT count(*) FROM pg_stat_activity WHERE usename ~ '^m[0-9]'}, '0'),
	'm* sessions gone');
is(group_used($node, 'many'), '0', '+many back to 0');

# ---------------------------------------------------------------------------
# A role in 70 groups, more than a cache entry holds: read each time
# ---------------------------------------------------------------------------
$node->safe_psql('postgres',
	join('', map { "CREATE ROLE g$_ NOLOGIN; GRANT g$_ TO big;" } 1 .. 70));
$s1 = hold_ok($node, 'big', 'postgres', 'big, in 70 groups');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM role_guard_role_stats() s JOIN pg_authid a ON a.oid = s.roleid
		  WHERE a.rolname ~ '^g[0-9]+$' AND s.member_connections = 1}),
	'70',
	'each of the 70 groups counts the session');
group_full_ok($node, tcp('big'), 'second big (+g70=1)', 'big', 'g70', 1, 1);
$node->safe_psql('postgres', 'REVOKE g70 FROM big');
$s2 = hold_ok($node, 'big', 'postgres', 'big after REVOKE g70');
$s1->quit;
$s2->quit;

# ---------------------------------------------------------------------------
# The pool of groups' OIDs (max_roles x 8 = 128 here) fills up: each
# invalidation makes the next login store the role's 5 groups anew in the
# same hash entries, so after about 25 rounds the pool is full and the
# cache is emptied and filled again.  Counting stays exact through it.
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', q{
CREATE ROLE pooled LOGIN;
GRANT many TO pooled;
DO $$ BEGIN
  FOR i IN 1..4 LOOP
    EXECUTE format('CREATE ROLE %I NOLOGIN', 'pg' || i);
    EXECUTE format('GRANT %I TO pooled', 'pg' || i);
  END LOOP;
END $$;
CREATE ROLE pool_flip NOLOGIN;
});
my $pool_ok = 1;
for my $round (1 .. 32)
{
	# a membership change anywhere invalidates every entry
	$node->safe_psql('postgres',
		$round % 2 ? 'GRANT pool_flip TO u' : 'REVOKE pool_flip FROM u');
	my $s = bg_session($node, tcp('pooled'));
	$pool_ok &&= $s->connected;
	$pool_ok &&= group_used($node, 'many') eq '1';
	$s->quit;
	$pool_ok &&= poll_until($node,
		q{SELECT connections FROM role_guard_budgets WHERE entry = '+many'}, '0');
}
ok($pool_ok, '32 rounds of invalidation and login through a 128-OID pool: +many counted 1, then 0');
$s1 = hold_ok($node, 'pooled', 'postgres', 'pooled after the rounds');
is(group_used($node, 'many'), '1', 'pooled counts in +many');
$s1->quit;

# ---------------------------------------------------------------------------
# A standby: a GRANT replayed from the primary reaches the next login
# ---------------------------------------------------------------------------
# The primary's reaper reads the invalidation queue only every 10 s (the
# default interval), so above nothing but the login path's own rules made
# the changes reach the next login.  The standby's reads it every 200 ms.
my $standby = rg_standby($node, 'members_standby',
	conf => "role_guard.reap_interval = 200\n");
$node->wait_for_catchup($standby, 'replay');
admitted_ok($standby, tcp_connstr($standby, 'u'), 'standby: u logs in (cached, no group)');
$node->safe_psql('postgres', 'GRANT grp TO u');
$node->wait_for_catchup($standby, 'replay');
# the standby's reaper reads the invalidation queue every 200 ms: until it
# has, a login of u counts in no group; wait (bounded) for one that does
my $standby_deadline = time + $RoleGuardTest::wait_seconds;
while (1)
{
	my $probe = RoleGuardTest::raw_login($standby, 'u');
	my $used = group_used($standby, 'grp');
	RoleGuardTest::raw_close($probe->{sock});
	last if $used eq '1' || time > $standby_deadline;
	usleep(100_000);
}
$s1 = hold_ok($standby, 'u', 'postgres', 'standby: u after the GRANT was replayed');
is(group_used($standby, 'grp'), '1', 'standby: u counts in +grp');
group_full_ok($standby, tcp_connstr($standby, 'u'), 'standby: second u (+grp=1)', 'u', 'grp', 1, 1);
$s1->quit;
$standby->stop;

done_testing();
