
# Copyright: see README.md.
#
# Memory across restarts (role_guard.save) and peaks by window:
#  A. counters, peaks, windows and events are the same after pg_ctl stop
#     -m fast and start, and the file is gone once read;
#  B. nothing is read after -m immediate;
#  C. a corrupt, truncated, empty, foreign-version, oversized, foreign or
#     another cluster's file each start cleanly, empty, with one LOG line;
#  D. role_guard.save = off writes and reads nothing (and removes a file
#     left from before, unread);
#  E. the windows under a test clock (test builds only): hours in which a
#     session was held without a login show it, the 24-hour and 31-day
#     windows forget what is older, a clock stepped back counts once;
#  F. a standby keeps its own file;
#  G. advice on a workload; H. active places in the windows and the advice;
#  I. logins that waited for a +group or @db entry raise that entry.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT raw_hold_ok raw_close c_new c_wait c_close
  rg_standby wait_log);

my $budgets = 'app=2, waiter=1, +grp=3, @limdb=5, idle=4, clk=5, *=10';
my $node = rg_node(
	'memory',
	init    => { allows_streaming => 1 },
	budgets => $budgets,
	conf    => "role_guard.login_waits = 'waiter=20s'\nmax_connections = 40\n");
my $savefile = $node->data_dir . '/pg_stat/role_guard.stat';

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
CREATE ROLE app LOGIN;
CREATE ROLE waiter LOGIN;
CREATE ROLE grp NOLOGIN;
CREATE ROLE g1 LOGIN IN ROLE grp;
CREATE ROLE g2 LOGIN IN ROLE grp;
CREATE ROLE idle LOGIN;
CREATE ROLE dbuser LOGIN;
CREATE ROLE clk LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
CREATE DATABASE limdb;
});

# The workload: app refused once at 2, waiter admitted after a wait, the
# group's members refused at 3, two sessions in limdb.
sub workload
{
	my @held = map { raw_hold_ok($node, 'app', 'postgres', "app session $_") } 1 .. 2;
	my ($ret) = try_login($node, tcp_connstr($node, 'app'));
	isnt($ret, 0, 'app: third session refused');
	raw_close($_) for @held;

	my $w1 = raw_hold_ok($node, 'waiter', 'postgres', 'waiter: first session');
	my $w2 = c_new($node, 'waiter');
	ok( poll_until(
			$node,
			"SELECT waiting FROM role_guard_usage WHERE rolname = 'waiter'", '1'),
		'waiter: second login waits');
	raw_close($w1);
	is(c_wait($w2, 30), 'admitted', 'waiter: admitted after waiting');
	c_close($w2);

	@held = (
		raw_hold_ok($node, 'g1', 'postgres', 'g1 session 1'),
		raw_hold_ok($node, 'g1', 'postgres', 'g1 session 2'),
		raw_hold_ok($node, 'g2', 'postgres', 'g2 session 1'));
	($ret) = try_login($node, tcp_connstr($node, 'g2'));
	isnt($ret, 0, 'g2: refused by +grp=3');
	raw_close($_) for @held;

	@held = map { raw_hold_ok($node, 'dbuser', 'limdb', "limdb session $_") } 1 .. 2;
	raw_close($_) for @held;
	return;
}

# What must survive a restart, as text (the bootstrap superuser's own
# counters move with these very queries: left out).
sub state_text
{
	return $node->safe_psql(
		'postgres', q{
SELECT 'usage', rolname, peak, rejected, would_reject, statements, waited,
       wait_timeouts, last_rejected
FROM role_guard_usage WHERE rolname <> 'postgres' AND (peak > 0 OR rejected > 0)
UNION ALL
SELECT 'budget', entry, budget, rejected, would_reject, NULL, NULL, NULL, NULL
FROM role_guard_budgets
ORDER BY 1, 2;
SELECT * FROM role_guard_windows() WHERE name <> 'postgres' ORDER BY kind, name;
SELECT at, event, rolname, datname, client_addr, application_name, pid, detail
FROM role_guard_events ORDER BY at, pid;
SELECT rolname, budget, peak_24h, peak_31d, rejected_31d, waited_31d,
       suggested_budget, reason
FROM role_guard_advice WHERE rolname <> 'postgres' ORDER BY rolname;
SELECT role_guard_suggested_budgets();
});
}

# A. fast stop and start: the same counters, windows, events, advice.
workload();
my $before = state_text();
like($before, qr/^usage\|app\|2\|1\|/m, 'A: app has peak 2 and one refusal');
like($before, qr/^role\|grp\|\d+\|\|0\|0\|3\|3\|0\|1\|0\|/m,
	'A: +grp member peak 3 and one refusal in its windows');
like($before, qr/^database\|limdb\|\|\d+\|2\|2\|/m, 'A: @limdb peak 2 in its windows');
$node->stop('fast');
ok(-e $savefile, 'A: fast stop wrote pg_stat/role_guard.stat');
my $pos = log_pos($node);
$node->start;
like(log_since($node, $pos), qr/role_guard: restored \d+ counters and \d+ events/,
	'A: start logs what it restored');
ok(!-e $savefile, 'A: the file is removed once read');
is(state_text(), $before, 'A: counters, peaks, windows, events and advice are the same');

# G. advice on that workload: a refused role (app), a waiting role
# (waiter), an unused entry (idle), a group (+grp, members g1, g2), a
# database (@limdb, dbuser).
sub advice_of
{
	my ($role) = @_;
	return $node->safe_psql('postgres',
		"SELECT budget || '|' || peak_31d || '|' || rejected_31d || '|' || waited_31d || '|' || suggested_budget FROM role_guard_advice WHERE rolname = '$role'"
	);
}
is(advice_of('app'),    '2|2|1|0|3',  'G: app refused at 2: suggested 3, above its budget');
is(advice_of('waiter'), '1|1|0|1|2',  'G: waiter waited at 1: suggested 2, above its budget');
is(advice_of('idle'),   '4|0|0|0|4',  'G: idle, unused entry: budget kept');
is(advice_of('g1'),     '10|2|0|0|3', 'G: g1 under "*": peak 2, suggested 3');
is(advice_of('g2'),     '10|1|1|0|13',
	'G: g2 refused (by +grp): suggested above its budget');
like(
	$node->safe_psql('postgres', "SELECT reason FROM role_guard_advice WHERE rolname = 'idle'"),
	qr/^No session, refusal or wait in the last 31 days: the budget is kept\./,
	'G: idle: the reason says it was not seen');
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM role_guard_advice WHERE suggested_budget < peak_31d OR active_budget IS NOT NULL OR active_peak_31d IS NOT NULL OR suggested_active_budget IS NOT NULL'
	),
	'0',
	'G: never below the peak; active columns NULL (no active_budgets setting)');
my $line = $node->safe_psql('postgres', 'SELECT role_guard_suggested_budgets()');
like($line, qr/^app=3, waiter=2, \+grp=4, \@limdb=3, idle=4, clk=5, \*=10, /,
	'G: the line keeps every entry in order: +grp raised past its refusal, @limdb to its peak');
like($line, qr/(^|, )g1=3(,|$)/,     'G: the line adds g1=3');
like($line, qr/(^|, )dbuser=3(,|$)/, 'G: the line adds dbuser=3');
# the line is counted as "budgeted" is, and compared with the slots
my ($sum, $fits) = split(/\|/,
	$node->safe_psql('postgres', 'SELECT suggested_budgeted, suggested_fits FROM role_guard_summary'));
my %entry = map { split(/=/, $_, 2) } split(/, /, $line);
my $expect = 0;
$expect += $entry{$_} // $entry{'*'}
  for split(/\n/, $node->safe_psql('postgres', 'SELECT rolname FROM pg_authid WHERE rolcanlogin'));
is($sum, $expect, 'G: suggested_budgeted counts the line over the LOGIN roles');
is($fits, 'f', 'G: it does not fit 37 slots');
like(
	$node->safe_psql('postgres', "SELECT reason FROM role_guard_advice WHERE rolname = 'app'"),
	qr/The suggestions add up to $sum sessions, ${\($sum - 37)} more than the 37 connection slots/,
	'G: the reason says by how much');
# the line applied with ALTER SYSTEM and a reload
$node->safe_psql('postgres', "ALTER SYSTEM SET role_guard.budgets = '$line'");
$node->reload;
ok(wait_setting($node, 'role_guard.budgets', $line), 'G: the line is accepted on reload');
is( $node->safe_psql(
		'postgres', "SELECT string_agg(entry || '=' || budget, ', ' ORDER BY entry) FROM role_guard_budgets WHERE entry IN ('app', '+grp', '\@limdb')"
	),
	'+grp=4, @limdb=3, app=3',
	'G: role_guard_budgets shows the suggested values');
my @three = map { raw_hold_ok($node, 'app', 'postgres', "G: app session $_ under the line") } 1 .. 3;
my ($r4) = try_login($node, tcp_connstr($node, 'app'));
isnt($r4, 0, 'G: a fourth app session is refused under app=3');
raw_close($_) for @three;
# a policy whose suggestions fit
$node->safe_psql('postgres', "ALTER SYSTEM SET role_guard.budgets = 'app=2, *=1'");
$node->reload;
ok(wait_setting($node, 'role_guard.budgets', 'app=2, *=1'), 'G: app=2, *=1');
($sum, $fits) = split(/\|/,
	$node->safe_psql('postgres', 'SELECT suggested_budgeted, suggested_fits FROM role_guard_summary'));
ok($fits eq 't' && $sum <= 37, "G: its suggestions ($sum) fit the 37 slots");
$node->safe_psql('postgres', 'ALTER SYSTEM RESET role_guard.budgets');
$node->reload;
ok(wait_setting($node, 'role_guard.budgets', $budgets), 'G: budgets back');
# ALTER EXTENSION ... UPDATE from 1.1 gets the view and the columns
$node->safe_psql('postgres', 'CREATE DATABASE upd');
$node->safe_psql('upd', "CREATE EXTENSION role_guard VERSION '1.1'");
$node->safe_psql('upd', 'ALTER EXTENSION role_guard UPDATE');
is( $node->safe_psql(
		'upd',
		"SELECT extversion FROM pg_extension WHERE extname = 'role_guard'")
	  . ':'
	  . $node->safe_psql('upd',
		"SELECT suggested_budget FROM role_guard_advice WHERE rolname = 'app'")
	  . ':'
	  . $node->safe_psql('upd', 'SELECT suggested_fits IS NOT NULL FROM role_guard_summary'),
	'1.2:'
	  . $node->safe_psql('postgres',
		"SELECT suggested_budget FROM role_guard_advice WHERE rolname = 'app'")
	  . ':t',
	'G: ALTER EXTENSION UPDATE to 1.2: role_guard_advice and the summary columns');

# H. active places in the windows and the advice.  act (active budget 2)
# holds 2 transactions while a third statement waits; nact (3) is never
# used; app has no active budget.  The same after a fast restart.
$node->safe_psql('postgres', 'CREATE ROLE act LOGIN; CREATE ROLE nact LOGIN; CREATE ROLE ract LOGIN');
ok( set_conf(
		$node,
		'role_guard.active_budgets' => 'act=2, nact=3, ract=1',
		'role_guard.active_waits'   => 'act=60s, ract=0'),
	'H: active_budgets act=2, nact=3, ract=1');
{
	my @s = map { bg_session($node, tcp_connstr($node, 'act')) } 1 .. 3;
	$_->query('BEGIN; SELECT 1') for @s[0, 1];
	my $m = $s[2]->start_query('SELECT 42');
	ok( poll_until(
			$node,
			"SELECT active_transactions || '/' || statements_waiting FROM role_guard_usage WHERE rolname = 'act'",
			'2/1'),
		'H: act holds 2 places, a third statement waits');
	$s[0]->query('COMMIT');
	is($s[2]->wait_query($m), '42', 'H: the waiter runs when a place frees');
	$s[1]->query('COMMIT');
	$_->quit for @s;
	# ract: a statement refused at once while its one place is held
	my @r = map { bg_session($node, tcp_connstr($node, 'ract')) } 1 .. 2;
	$r[0]->query('BEGIN; SELECT 1');
	$r[1]->query('SELECT 2');
	like($r[1]->stderr, qr/too many active transactions for role "ract"/,
		'H: ract refused at once');
	$r[0]->query('COMMIT');
	$_->quit for @r;
}
my $ACTIVE_ROWS = q{SELECT string_agg(entry || ':' || kind || ':' || rejected || ':' || would_reject, ' ' ORDER BY entry) FROM role_guard_budgets WHERE kind LIKE 'active%'};
my $active_rows = $node->safe_psql('postgres', $ACTIVE_ROWS);
is( $active_rows,
	'act:active_role:0:0 nact:active_role:0:0 ract:active_role:1:0',
	'H: the active rows of role_guard_budgets count the refusal');
my $ACTIVE_SQL = q{SELECT rolname || ':' || coalesce(active_budget::text, '-') || '|' || coalesce(active_peak_31d::text, '-') || '|' || coalesce(suggested_active_budget::text, '-') FROM role_guard_advice WHERE rolname IN ('act', 'nact', 'app') ORDER BY rolname};
my $active_advice = $node->safe_psql('postgres', $ACTIVE_SQL);
is( $active_advice, "act:2|2|3\napp:-|-|-\nnact:3|0|3",
	'H: act peak 2 and waited: suggested 3, above its active budget; nact unused: kept; app: no active budget, NULL'
);
like(
	$node->safe_psql('postgres', "SELECT reason FROM role_guard_advice WHERE rolname = 'act'"),
	qr/ Active: statements waited or were refused 1 times at active budget 2, peak 2 transactions: suggested 3\./,
	'H: act\'s reason gives the active rule');
like(
	$node->safe_psql('postgres', "SELECT reason FROM role_guard_advice WHERE rolname = 'nact'"),
	qr/ Active: no transaction in the last 31 days: active budget 3 kept\./,
	'H: nact\'s reason says it was not seen');
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM role_guard_advice WHERE suggested_active_budget < active_peak_31d OR (active_budget IS NULL) <> (suggested_active_budget IS NULL)'
	),
	'0',
	'H: never below the active peak; a suggestion exactly where there is an active budget');
$node->restart;
is($node->safe_psql('postgres', $ACTIVE_SQL), $active_advice,
	'H: the same after a fast restart (active peaks and waits saved)');
is($node->safe_psql('postgres', $ACTIVE_ROWS), $active_rows,
	'H: and the active rows\' refusals (the active counts saved)');
ok( set_conf(
		$node,
		'role_guard.active_budgets' => '',
		'role_guard.active_waits'   => ''),
	'H: no active budgets again');
$before = state_text();

# B. immediate stop: nothing is written, nothing is read at the next start.
$pos = log_pos($node);
$node->stop('immediate');
ok(!-e $savefile, 'B: -m immediate writes no file');
$node->start;
my $log = log_since($node, $pos);
like($log, qr/role_guard: statistics not saved: the server did not shut down cleanly/,
	'B: the immediate shutdown logs that nothing was saved');
like(
	$log,
	qr/role_guard: (no saved statistics in|ignored file) "pg_stat\/role_guard.stat"/,
	'B: after -m immediate the start logs that nothing was read');
unlike($log, qr/role_guard: restored/, 'B: nothing restored');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM role_guard_windows() WHERE name <> 'postgres'")
	  . '/'
	  . $node->safe_psql('postgres', 'SELECT count(*) FROM role_guard_events'),
	'0/0',
	'B: no windows, no events');

# C. bad files: each starts cleanly and empty, with one LOG line.
my %bad = (
	corrupt => sub {
		my ($d) = @_;
		substr($d, length($d) - 10, 1) ^= "\x01";
		return $d;
	},
	truncated => sub { return substr($_[0], 0, length($_[0]) - 100) },
	empty     => sub { return '' },
	foreign_version => sub {
		my ($d) = @_;
		substr($d, 4, 4) = pack('L', 99);
		return $d;
	},
	oversized => sub { return $_[0] . ("\0" x 4096) },
	not_ours  => sub { return "PGDMP" . ("x" x 200) },
	record_size => sub {
		my ($d) = @_;
		substr($d, 8, 1) ^= "\x01";
		return $d;
	},
	# the header's system identifier (after ten 4-byte fields): another
	# cluster's file, whose counters would land on roles of the same OIDs
	foreign_cluster => sub {
		my ($d) = @_;
		substr($d, 40, 1) ^= "\x01";
		return $d;
	},);
my %why = (
	corrupt         => qr/its checksum does not match its contents/,
	truncated       => qr/it is truncated/,
	empty           => qr/it is empty/,
	foreign_version => qr/it has format 99, this server reads format \d+/,
	oversized       => qr/it has \d+ bytes, \d+ expected/,
	not_ours        => qr/it is not a role_guard save file/,
	record_size     => qr/its record sizes are not this build's/,
	foreign_cluster => qr/it was written by another cluster \(database system identifier \d+, this one's is \d+\)/);
foreach my $case (sort keys %bad)
{
	my ($ret) = try_login($node, tcp_connstr($node, 'app'), 'SELECT 1');
	is($ret, 0, "C $case: app logged in once");
	$node->stop('fast');
	ok(-e $savefile, "C $case: a file was written");
	my $data = slurp_file($savefile);
	open(my $fh, '>', $savefile) or die;
	binmode $fh;
	print $fh $bad{$case}->($data);
	close $fh;
	$pos = log_pos($node);
	$node->start;
	$log = log_since($node, $pos);
	my @lines = ($log =~ /(role_guard: ignored file "pg_stat\/role_guard.stat", starting empty: [^\n]*)/g);
	is(scalar(@lines), 1, "C $case: one LOG line");
	like($lines[0] // '', $why{$case}, "C $case: the LOG line says why");
	is( $node->safe_psql(
			'postgres', "SELECT count(*) FROM role_guard_usage WHERE rolname = 'app' AND peak > 0"),
		'0',
		"C $case: started empty");
	ok(!-e $savefile, "C $case: the bad file is removed");
}

# A FIFO in the file's place (whose open would wait for a writer, and the
# start with it) and a directory: the start goes on, empty, with one LOG
# line; a directory that stays makes the next clean stop say it could not
# save, leaving no temporary file.
foreach my $case ('fifo', 'directory')
{
	my ($ret) = try_login($node, tcp_connstr($node, 'app'), 'SELECT 1');
	is($ret, 0, "C $case: app logged in once");
	$node->stop('fast');
	unlink $savefile;
	if ($case eq 'fifo')
	{
		system('mkfifo', $savefile) == 0 or die "mkfifo: $!";
	}
	else
	{
		mkdir $savefile or die "mkdir: $!";
	}
	$pos = log_pos($node);
	$node->start;
	$log = log_since($node, $pos);
	my @lines = ($log =~ /(role_guard: ignored file "pg_stat\/role_guard.stat", starting empty: [^\n]*)/g);
	is(scalar(@lines), 1, "C $case: one LOG line");
	like($lines[0] // '', qr/it is not a regular file/, "C $case: the LOG line says why");
	is( $node->safe_psql(
			'postgres', "SELECT count(*) FROM role_guard_usage WHERE rolname = 'app' AND peak > 0"),
		'0',
		"C $case: started empty");
	next if $case eq 'fifo';
	$pos = log_pos($node);
	$node->stop('fast');
	like(log_since($node, $pos),
		qr/role_guard: statistics may not be saved: could not rename "pg_stat\/role_guard.stat.tmp" to "pg_stat\/role_guard.stat" durably/,
		"C $case: the clean stop says the statistics were not saved");
	ok(!-e "$savefile.tmp", "C $case: no temporary file left");
	rmdir $savefile or die "rmdir: $!";
	$node->start;
}

# D. role_guard.save = off: nothing written, nothing read; a file left from
# before is removed unread.
workload();
ok(set_conf($node, 'role_guard.save' => 'off'), 'D: role_guard.save = off');
$node->stop('fast');
ok(!-e $savefile, 'D: save = off: no file written');
$node->start;
is($node->safe_psql('postgres', 'SELECT count(*) FROM role_guard_events'),
	'0', 'D: save = off: nothing read');
ok(set_conf($node, 'role_guard.save' => 'on'), 'D: role_guard.save = on');
workload();
$node->stop('fast');
ok(-e $savefile, 'D: save = on: the file is written');
$node->append_conf('postgresql.conf', "role_guard.save = off\n");
$pos = log_pos($node);
$node->start;
ok(!-e $savefile, 'D: a start with save = off removes the file');
unlike(log_since($node, $pos), qr/role_guard: restored/, 'D: ... unread');
is($node->safe_psql('postgres', 'SELECT count(*) FROM role_guard_events'),
	'0', 'D: ... and starts empty');
ok(set_conf($node, 'role_guard.save' => 'on'), 'D: role_guard.save back on');

# E. the windows under the test clock (a shift in seconds in
# $PGDATA/rg_inject/clock_shift, read by test builds only).
my $shift_file = $node->data_dir . '/rg_inject/clock_shift';
mkdir $node->data_dir . '/rg_inject';

sub shift_clock
{
	my ($hours) = @_;
	open(my $fh, '>', $shift_file) or die;
	print $fh int($hours * 3600), "\n";
	close $fh;
	return;
}

sub clk_windows
{
	return $node->safe_psql('postgres',
		"SELECT peak_24h || '/' || peak_31d || '/' || rejected_31d FROM role_guard_windows() WHERE name = 'clk'"
	);
}

$node->safe_psql('postgres', 'SELECT role_guard_reset()');
shift_clock(0);
my @clk = map { raw_hold_ok($node, 'clk', 'postgres', "clk session $_") } 1 .. 2;
is(clk_windows(), '2/2/0', 'E: two sessions now');
shift_clock(3);
raw_close(pop @clk);
is(clk_windows(), '2/2/0', 'E: 3 h later, one left: the 24-hour peak is still 2');
shift_clock(26);
is(clk_windows(), '2/2/0', 'E: 26 h later: the hour of the exit is still in the window');
shift_clock(28);
is(clk_windows(), '1/2/0',
	'E: 28 h later: the hours after the exit, held without a login, show 1');
# the clock steps back 30 hours: a refusal counts once, peaks stay
ok(set_budgets($node, 'clk=1'), 'E: clk=1');
shift_clock(-2);
my ($ret) = try_login($node, tcp_connstr($node, 'clk'));
isnt($ret, 0, 'E: clk refused with the clock stepped back');
is(clk_windows(), '2/2/1',
	'E: clock back: the windows stay at the latest hour seen, the refusal counted once');
shift_clock(28);
is(clk_windows(), '1/2/1', 'E: clock forward again: still counted once');
shift_clock(24 * 40);
is(clk_windows(), '1/1/0', 'E: 40 days later: the held session is the peak, refusals forgotten');
raw_close(pop @clk);
shift_clock(24 * 80);
is(clk_windows(), '0/0/0', 'E: 80 days later, no session: nothing in the windows');
like(
	$node->safe_psql(
		'postgres',
		"SELECT suggested_budget || ':' || reason FROM role_guard_advice WHERE rolname = 'clk'"),
	qr/^1:No session, refusal or wait in the last 31 days: the budget is kept\./,
	'E: advice: clk unseen for 31 days keeps its budget, with the reason');
unlink $shift_file;
ok(set_budgets($node, $budgets), 'E: budgets back');

# F. a standby keeps its own file.
my $standby = rg_standby($node, 'memory_standby');
# a cold copy carries the primary's file (as it carries pg_stat/): start
# both from zero
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
$standby->safe_psql('postgres', 'SELECT role_guard_reset()');
my @sb = map { raw_hold_ok($standby, 'app', 'postgres', "standby: app session $_") } 1 .. 2;
($ret) = try_login($standby, tcp_connstr($standby, 'app'));
isnt($ret, 0, 'F: standby: app refused at 2');
raw_close($_) for @sb;
my $sb_file = $standby->data_dir . '/pg_stat/role_guard.stat';
my $sb_before = $standby->safe_psql('postgres',
	"SELECT peak, rejected FROM role_guard_usage WHERE rolname = 'app'");
is($sb_before, '2|1', 'F: standby counted app');
$standby->stop('fast');
ok(-e $sb_file, 'F: the standby wrote its own file');
ok(!-e $savefile, 'F: the primary (running) has none');
$standby->start;
is( $standby->safe_psql(
		'postgres', "SELECT peak, rejected FROM role_guard_usage WHERE rolname = 'app'"),
	$sb_before,
	'F: the standby read its own file back');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM role_guard_usage WHERE rolname = 'app' AND rejected > 0"),
	'0',
	"F: the primary does not have the standby's counts");
$standby->stop('fast');

# I. a login that waited for a place in a +group or @db entry counts for
# that entry too (member_waited_31d, waited_31d of the database), and the
# suggested line raises the entry as it does a role that waited
$node->safe_psql(
	'postgres', q{
CREATE ROLE wgrp NOLOGIN;
CREATE ROLE wa LOGIN IN ROLE wgrp;
CREATE ROLE wb LOGIN IN ROLE wgrp;
CREATE DATABASE wdb;
});
ok( set_conf(
		$node,
		'role_guard.budgets'     => "$budgets, +wgrp=1, \@wdb=1",
		'role_guard.login_waits' => 'waiter=20s, wb=20s, dbuser=20s'),
	'I: +wgrp=1, @wdb=1; wb and dbuser may wait');
my $ih = raw_hold_ok($node, 'wa', 'postgres', 'I: wa holds the place of +wgrp');
my $ic = c_new($node, 'wb');
ok(poll_until($node, "SELECT waiting FROM role_guard_usage WHERE rolname = 'wb'", '1'),
	'I: wb waits for +wgrp');
raw_close($ih);
is(c_wait($ic, 30), 'admitted', 'I: wb is admitted after waiting');
c_close($ic);
$ih = raw_hold_ok($node, 'app', 'wdb', 'I: app holds the place of @wdb');
$ic = c_new($node, 'dbuser', db => 'wdb');
ok(poll_until($node, "SELECT waiting FROM role_guard_usage WHERE rolname = 'dbuser'", '1'),
	'I: dbuser waits for @wdb');
raw_close($ih);
is(c_wait($ic, 30), 'admitted', 'I: dbuser is admitted after waiting');
c_close($ic);
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(kind || ' ' || name || ' ' || member_waited_31d || ' ' || waited_31d, ', ' ORDER BY name)
		  FROM role_guard_windows() WHERE name IN ('wgrp', 'wdb')}),
	'database wdb 0 1, role wgrp 1 0',
	'I: the waits are counted for the +group entry (its members) and the @db entry');
like($node->safe_psql('postgres', 'SELECT role_guard_suggested_budgets()'),
	qr/(^|, )\+wgrp=2, \@wdb=2(,|$)/,
	'I: the suggested line raises +wgrp=1 and @wdb=1 to 2');

done_testing();
