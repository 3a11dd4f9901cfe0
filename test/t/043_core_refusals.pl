
# Copyright: see README.md.
#
# Logins that core refuses after ClientAuthentication_hook must not touch a
# budget: a role without CONNECT on the database (CONNECT through a group
# does count), a NOLOGIN role (trust, md5 and SCRAM), a database that does
# not exist, a database with ALLOW_CONNECTIONS false, and a replication
# connection (physical and logical) of a role without REPLICATION.  For
# each:
#  (a) the client gets core's own error, never 53300 nor role_guard's
#      DETAIL, even when every budget entry that would apply is full;
#  (b) a storm of such logins does not take the one free place a
#      legitimate role needs (the "6 of 60 logins of alice refused" report);
#  (c) nothing is counted as rejected for the doomed role;
#  (d) no place is left held.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use POSIX qw(:sys_wait_h);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT file_text raw_hold_ok raw_close raw_result
  write_hba no_event_ok);

my $node = rg_node(
	'core_refusals',
	start => 0,
	conf  => "wal_level = replica\nmax_wal_senders = 12\n"
	  . "max_connections = 40\n");

# pg_hba.conf from scratch: the password roles first, then trust.
write_hba($node, <<'EOT');
local all all trust
local replication all trust
host all nolog_pw 127.0.0.1/32 md5
host all nolog_scram 127.0.0.1/32 scram-sha-256
host replication nolog_pw 127.0.0.1/32 md5
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
EOT
$node->start;

my $su       = $node->safe_psql('postgres', 'SELECT current_user');
my $su_entry = entry_text($su);

$node->safe_psql(
	'postgres', q{
CREATE ROLE pool NOLOGIN;
CREATE ROLE produsers NOLOGIN;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE carol LOGIN;
CREATE ROLE dave LOGIN;
CREATE ROLE norepl LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
CREATE ROLE nolog_t NOLOGIN;
SET password_encryption = 'md5';
CREATE ROLE nolog_pw NOLOGIN PASSWORD 'pw_secret';
SET password_encryption = 'scram-sha-256';
CREATE ROLE nolog_scram NOLOGIN PASSWORD 'scram_secret';
GRANT pool TO alice, nolog_t, nolog_pw, nolog_scram, dave, norepl;
GRANT produsers TO carol;
CREATE DATABASE prod;
REVOKE CONNECT ON DATABASE prod FROM PUBLIC;
GRANT CONNECT ON DATABASE prod TO alice;
GRANT CONNECT ON DATABASE prod TO produsers;
CREATE DATABASE closeddb ALLOW_CONNECTIONS false;
CREATE EXTENSION role_guard;
});

my @doomed_roles = qw(bob nolog_t nolog_pw nolog_scram dave norepl);
my $walsender_re =
  qr/must be superuser or replication role to start walsender|permission denied to start WAL sender/;

# The doomed logins: connection string extras, core's SQLSTATE and message.
my %kinds = (
	noconnect => {
		user  => 'bob',
		db    => 'prod',
		state => '42501',
		msg   => qr/permission denied for database "prod"/
	},
	nologin_trust => {
		user  => 'nolog_t',
		db    => 'postgres',
		state => '28000',
		msg   => qr/role "nolog_t" is not permitted to log in/
	},
	nologin_trust_prod => {
		user  => 'nolog_t',
		db    => 'prod',
		state => '28000',
		msg   => qr/role "nolog_t" is not permitted to log in/
	},
	nologin_md5 => {
		user     => 'nolog_pw',
		db       => 'postgres',
		password => 'pw_secret',
		state    => '28000',
		msg      => qr/role "nolog_pw" is not permitted to log in/
	},
	nologin_scram => {
		user     => 'nolog_scram',
		db       => 'postgres',
		password => 'scram_secret',
		state    => '28000',
		msg      => qr/role "nolog_scram" is not permitted to log in/
	},
	nosuchdb => {
		user  => 'dave',
		db    => 'nosuchdb',
		state => '3D000',
		msg   => qr/database "nosuchdb" does not exist/
	},
	closeddb => {
		user  => 'dave',
		db    => 'closeddb',
		state => '55000',
		msg   => qr/database "closeddb" is not currently accepting connections/
	},
	physical => {
		user        => 'norepl',
		db          => 'postgres',
		replication => 'true',
		state       => '42501',
		msg         => $walsender_re
	},
	logical => {
		user        => 'norepl',
		db          => 'postgres',
		replication => 'database',
		state       => '42501',
		msg         => $walsender_re
	},
	logical_prod => {
		user        => 'norepl',
		db          => 'prod',
		replication => 'database',
		state       => '42501',
		msg         => $walsender_re
	},);

sub kind_connstr
{
	my ($k) = @_;
	my $c = tcp_connstr($node, $k->{user}, $k->{db});
	$c .= " password=$k->{password}" if defined $k->{password};
	$c .= " replication=$k->{replication}" if defined $k->{replication};
	return $c;
}

# (a): one doomed login of kind $kn gets core's error, not role_guard's.
sub core_refusal_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($kn, $name) = @_;
	my $k   = $kinds{$kn};
	my $pos = log_pos($node);
	my ($ret, $out, $err) = try_login($node, kind_connstr($k), 'SELECT 1');
	my $log = log_since($node, $pos);
	my $ok  = $ret != 0 && $err =~ $k->{msg};
	ok($ok, "$name: client gets core's error ($k->{state})")
	  or diag "exit $ret, stderr: $err";
	unlike($err, qr/too many connections|role_guard/,
		"$name: no budget refusal, no role_guard DETAIL");
	like($log, qr/FATAL:\s+\Q$k->{state}\E: /,
		"$name: server log has FATAL $k->{state}");
	unlike($log, qr/FATAL:\s+53300:/, "$name: server log has no 53300");
	return;
}

# (c): no rejection counted for the doomed roles.
sub no_rejections_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name) = @_;
	my @got;
	foreach my $r (@doomed_roles)
	{
		my $u = usage_of($node, $r, 'rejected', 'would_reject');
		my ($rej, $wr) = map { $_ eq '<norow>' ? 0 : $_ } @$u{qw(rejected would_reject)};
		push @got, "$r=$rej/$wr";
	}
	is( join(' ', @got),
		join(' ', map { "$_=0/0" } @doomed_roles),
		"$name: role_guard_usage rejected/would_reject of the doomed roles");
	no_event_ok(
		$node,
		{ event => [ 'rejected', 'would_reject' ], rolname => \@doomed_roles },
		"$name: role_guard_events has no rejection of the doomed roles");
	return;
}

# (d): role_guard_budgets' connections, entry=n, sorted by entry.
my $budgets_sql =
  q{SELECT string_agg(entry || '=' || connections, ' ' ORDER BY entry)
      FROM role_guard_budgets};

sub expected_conns
{
	my (%c) = @_;
	return join(' ', map { "$_=$c{$_}" } sort keys %c);
}

# ===========================================================================
# Phase 1 (a): every entry that would apply to a doomed login is full.
# ===========================================================================
my $p1 =
    '@prod=3, +pool=2, bob=0, bob@prod=0, nolog_pw=0, @nosuchdb=0, '
  . '@closeddb=0, norepl@postgres=0, *=0, alice=100, carol=100, repl=100, '
  . "$su_entry=100";
ok(set_budgets($node, $p1), 'phase 1 budgets loaded');

# Legitimate logins first: the checks that core does must not refuse them.
admitted_ok($node, tcp_connstr($node, $su, 'prod'),
	'superuser without an explicit CONNECT grant gets into prod');
ok(poll_until($node, q{SELECT connections FROM role_guard_budgets WHERE entry = '@prod'}, '0'),
	'the superuser\'s session has left @prod');
my $s_repl = hold_ok(
	$node, 'repl', 'postgres', 'REPLICATION role: physical connection in',
	extra     => 'replication=true',
	first_sql => 'IDENTIFY_SYSTEM');
my $s_repl_l = hold_ok(
	$node, 'repl', 'postgres', 'REPLICATION role: logical connection in',
	extra     => 'replication=database',
	first_sql => 'IDENTIFY_SYSTEM');
is(usage_of($node, 'repl', 'connections')->{connections},
	'2', 'both replication connections are counted');
$s_repl->quit;
$s_repl_l->quit;

# Fill @prod=3 (alice twice, carol through her group's CONNECT) and +pool=2.
my @held = map { raw_hold_ok($node, 'alice', 'prod', "alice in prod #$_") } 1 .. 2;
push @held,
  raw_hold_ok($node, 'carol', 'prod', 'carol in prod: CONNECT through a group');
is(budget_of($node, '@prod', 'connections')->{connections},
	'3', 'carol, admitted through her group\'s CONNECT, is counted in @prod');
refused_ok(
	$node,
	tcp_connstr($node, 'carol', 'prod'),
	'@prod=3 is full',
	db    => 'prod',
	entry => '@prod=3',
	used  => 3,
	limit => 3);
refused_ok(
	$node,
	tcp_connstr($node, 'alice', 'postgres'),
	'+pool=2 is full',
	role  => 'alice',
	entry => '+pool=2',
	used  => 2,
	limit => 2);

my @phase1 = (
	[ noconnect          => 'no CONNECT (@prod, bob=0, bob@prod=0 full)' ],
	[ nologin_trust      => 'NOLOGIN, trust (*=0, +pool full)' ],
	[ nologin_trust_prod => 'NOLOGIN, trust, into prod (*=0, +pool, @prod full)' ],
	[ nologin_md5        => 'NOLOGIN, md5 password (nolog_pw=0, +pool full)' ],
	[ nologin_scram      => 'NOLOGIN, SCRAM password (*=0, +pool full)' ],
	[ nosuchdb           => 'missing database (*=0, +pool, @nosuchdb=0 full)' ],
	[ closeddb           => 'ALLOW_CONNECTIONS false (*=0, +pool, @closeddb=0 full)' ],
	[ physical           => 'physical replication without REPLICATION (*=0, +pool full)' ],
	[ logical => 'logical replication without REPLICATION (*=0, +pool, norepl@postgres=0 full)' ],
	[ logical_prod => 'logical replication without REPLICATION into prod (@prod full too)' ],);
foreach my $c (@phase1)
{
	core_refusal_ok(@$c);
}
no_rejections_ok('phase 1');
my %want1 = (
	'*'               => 0,
	'+pool'           => 2,
	'@closeddb'       => 0,
	'@nosuchdb'       => 0,
	'@prod'           => 3,
	alice             => 2,
	bob               => 0,
	'bob@prod'        => 0,
	carol             => 1,
	nolog_pw          => 0,
	'norepl@postgres' => 0,
	repl              => 0,
	$su_entry         => 1);
ok(poll_until($node, $budgets_sql, expected_conns(%want1)),
	'phase 1: role_guard_budgets connections are the legitimate ones only');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(entry || '=' || rejected, ' ' ORDER BY entry)
		    FROM role_guard_budgets
		   WHERE entry IN ('*', 'bob', 'bob@prod', 'nolog_pw', '@nosuchdb',
		                   '@closeddb', 'norepl@postgres')}),
	'*=0 @closeddb=0 @nosuchdb=0 bob=0 bob@prod=0 nolog_pw=0 norepl@postgres=0',
	'phase 1: entries that only doomed logins met have rejected = 0');
raw_close($_) for @held;
ok(poll_until($node, q{SELECT connections FROM role_guard_budgets WHERE entry = '@prod'}, '0'),
	'phase 1: @prod back to 0');

# ===========================================================================
# Phase 2 (b): storms of doomed logins while a legitimate role logs in
# again and again against a budget with exactly one free place.
# ===========================================================================
my $tmp = PostgreSQL::Test::Utils::tempdir;
my %live;
END { kill 'KILL', keys %live if %live; }

# Fork one client per kind name in @$kn; each loops doomed logins until
# "$dir/stop" exists, $max attempts, or 20 s; one result line per attempt.
sub storm_start
{
	my ($dir, $max, @kn) = @_;
	mkdir $dir;
	my %kids;
	foreach my $i (0 .. $#kn)
	{
		my $k   = $kinds{ $kn[$i] };
		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0)
		{
			open(my $fh, '>', "$dir/out.$i") or POSIX::_exit(1);
			$fh->autoflush(1);
			my $deadline = time + 20;
			for (my $n = 0; $n < $max && time < $deadline && !-e "$dir/stop"; $n++)
			{
				my $r = eval {
					raw_login(
						$node, $k->{user}, $k->{db},
						password    => $k->{password},
						replication => $k->{replication});
				} // { error => "died: $@" };
				raw_close($r->{sock}) if $r->{sock};
				my $line = raw_result($r);
				$line =~ s/\n/ /g;
				print $fh "$line\n";
			}
			close $fh;
			POSIX::_exit(0);
		}
		$kids{$pid} = $i;
		$live{$pid} = 1;
	}
	# every client has made at least one attempt
	my $deadline = time + 15;
	usleep(10_000)
	  while time < $deadline && grep { !-s "$dir/out.$_" } 0 .. $#kn;
	return \%kids;
}

sub storm_stop
{
	my ($dir, $kids) = @_;
	open(my $fh, '>', "$dir/stop") or die;
	close $fh;
	my $deadline = time + 40;
	while (%$kids && time < $deadline)
	{
		foreach my $pid (keys %$kids)
		{
			if (waitpid($pid, WNOHANG) == $pid)
			{
				delete $kids->{$pid};
				delete $live{$pid};
			}
		}
		usleep(20_000);
	}
	ok(!%$kids, 'storm clients all finished');
	return;
}

# $n logins of $user into $db, one after another, each ended (and its
# backend gone) before the next.  Returns the list of failures.
sub legit_loop
{
	my ($user, $db, $n) = @_;
	my @fail;
	foreach my $i (1 .. $n)
	{
		my $r = raw_login($node, $user, $db);
		if ($r->{sock}) { raw_close($r->{sock}); }
		else            { push @fail, "#$i: " . raw_result($r); }
	}
	return @fail;
}

# One storm round: $legit holds one place in $db (so the budget has exactly
# one free place), @kn storm, $legit logs in $n more times.
sub storm_round
{
	my ($name, $budgets, $legit, $db, $n, $max, $want, @kn) = @_;
	$node->safe_psql('postgres', 'SELECT role_guard_reset()');
	ok(set_budgets($node, $budgets), "$name: budgets '$budgets'");
	my $held = raw_hold_ok($node, $legit, $db, "$name: $legit holds one place");

	my $dir  = "$tmp/$name";
	my $t0   = time;
	my $kids = storm_start($dir, $max, @kn);
	my @fail = legit_loop($legit, $db, $n);
	storm_stop($dir, $kids);
	my $secs = time - $t0;

	is(scalar(@fail), 0,
		"$name: all $n logins of $legit admitted during the storm (no 53300)")
	  or diag "refused: " . join("\n", @fail[ 0 .. ($#fail > 9 ? 9 : $#fail) ]);

	my ($total, $n53300, @bad) = (0, 0);
	my %got;
	foreach my $i (0 .. $#kn)
	{
		my $k = $kinds{ $kn[$i] };
		foreach my $line (split /\n/, file_text("$dir/out.$i"))
		{
			$total++;
			$n53300++ if $line =~ /^53300 /;
			my ($st) = $line =~ /^(\S+)/;
			$got{"$kn[$i]:$st"}++;
			push @bad, "$kn[$i]: $line"
			  unless $line =~ /^\Q$k->{state}\E / && $line =~ $k->{msg};
		}
	}
	note sprintf("%s: %d doomed attempts in %.1f s: %s", $name, $total, $secs,
		join(', ', map { "$_ x$got{$_}" } sort keys %got));
	ok($total >= @kn * 5, "$name: the storm ran ($total doomed attempts)");
	is($n53300, 0, "$name: no doomed login got 53300");
	is(scalar(@bad), 0, "$name: every doomed login got core's own error")
	  or diag "first: $bad[0]";
	no_rejections_ok($name);
	ok(poll_until($node, $budgets_sql, expected_conns(%$want)),
		"$name: role_guard_budgets connections back to the one held place");
	raw_close($held);
	my %zero = map { $_ => 0 } keys %$want;
	ok(poll_until($node, $budgets_sql, expected_conns(%zero)),
		"$name: and to 0 when it leaves");
	return;
}

# The report's scenario: @prod=2, CONNECT on prod for alice only, four
# clients of bob (no CONNECT) looping.
storm_round('storm_noconnect', '@prod=2', 'alice', 'prod', 60, 400,
	{ '@prod' => 1 }, ('noconnect') x 4);

# Every doomed kind at once against +pool=2 and @prod=2 (alice, a member
# of pool, in prod: one place free in each).
storm_round(
	'storm_all_kinds', '@prod=2, +pool=2', 'alice', 'prod', 60, 400,
	{ '@prod' => 1, '+pool' => 1 },
	qw(noconnect nologin_trust_prod nologin_md5 nosuchdb closeddb physical
	  logical_prod));

$node->stop;
done_testing();
