
# Copyright: see README.md.
#
# role_guard_events allocates for the events the ring holds, not for the
# ring: with role_guard.event_log_size = 1000000 (the maximum; 528 bytes an
# entry, about 504 MiB of ring) a query of the empty ring, or of a ring with
# a few events, must not grow the backend by anything like that.
#
# How it is measured: the backend's own VmPeak (peak virtual memory size,
# /proc/self/status, read with pg_read_file in the same session) just before
# and just after the query.  An allocation of the ring's size is one malloc
# of about 504 MiB, which glibc serves with mmap: it raises VmPeak by that
# much even though an empty ring leaves its pages untouched (so the resident
# size, as log_statement_stats reports it, would not show it).  The view's
# catalog entries are loaded first (EXPLAIN), so the difference is the
# query's own.  Before the fix the difference was about 516,000 kB; the
# test allows 64 MiB.
#
# Then, while a child process makes refused logins, the view is read over
# and over: every read must succeed, show its events newest first and never
# fewer than the read before (the copy is sized from a count taken before the
# events are copied, and made again when more came meanwhile).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(usleep time);
use RoleGuardTest;

plan skip_all => 'needs /proc/self/status with VmPeak (Linux)'
  unless -r '/proc/self/status' && slurp_file('/proc/self/status') =~ /^VmPeak:/m;

my $node = rg_node(
	'events_memory',
	budgets => 'app=0',
	conf    => "role_guard.event_log_size = 1000000\n");
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE EXTENSION role_guard;
});
is($node->safe_psql('postgres', 'SHOW role_guard.event_log_size'),
	'1000000', 'event_log_size is 1000000');

my $vmpeak =
  q{SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmPeak:\s+(\d+) kB'))[1]::bigint};

# In one session: VmPeak, the view ($sql: one value), VmPeak again.
# Returns (kB the query added to VmPeak, the query's value).
sub peak_growth
{
	my ($sql) = @_;
	my $out = $node->safe_psql(
		'postgres', qq{
EXPLAIN SELECT * FROM role_guard_events;
$vmpeak;
$sql;
$vmpeak;
});
	my @l = grep { /^\d+$/ } split(/\n/, $out);
	die "unexpected output: $out" unless @l == 3;
	return ($l[2] - $l[0], $l[1]);
}

my $limit_kb = 64 * 1024;

my ($grew, $n) = peak_growth('SELECT count(*) FROM role_guard_events');
is($n, 0, 'the ring is empty');
cmp_ok($grew, '<', $limit_kb,
	'reading the empty 1000000-entry ring adds less than 64 MiB to the backend (VmPeak)');
note "VmPeak grew by $grew kB";

($grew, $n) = peak_growth('SELECT count(*) FROM (SELECT * FROM role_guard_events) e');
cmp_ok($grew, '<', $limit_kb, 'likewise for SELECT * on the empty ring');
note "VmPeak grew by $grew kB";

# A few events: the view shows them, and still allocates only for them.
for my $i (1 .. 3)
{
	my ($ret) = try_login($node, tcp_connstr($node, 'app'));
	isnt($ret, 0, "refused login $i of app");
}
($grew, $n) = peak_growth(q{SELECT count(*) FROM role_guard_events WHERE event = 'rejected'});
is($n, 3, 'three events in the 1000000-entry ring');
cmp_ok($grew, '<', $limit_kb, 'reading them adds less than 64 MiB');
note "VmPeak grew by $grew kB";

# --- reads while events are written ---------------------------------------
my $logins = 200;
my $pid    = fork();
die "fork failed: $!" unless defined $pid;
if ($pid == 0)
{
	for (1 .. $logins)
	{
		system('psql', '-XAtq', '-w', '-d', tcp_connstr($node, 'app'),
			'-c', 'SELECT 1', '-o', '/dev/null');
	}
	POSIX::_exit(0);
}

my $reader = bg_session($node,
	'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres');
ok($reader->connected, 'reader session');
my ($reads, $bad, $last) = (0, 0, 0);
my $deadline = time + 120;
while (time < $deadline)
{
	my $r = $reader->query(
		q{SELECT count(*) || ' ' || coalesce(bool_and(ordered), true)
		    FROM (SELECT at <= lag(at, 1, at) OVER (ORDER BY ord) AS ordered
		            FROM role_guard_events() WITH ORDINALITY AS e(at, event, rolname, datname,
		                 client_addr, application_name, pid, detail, ord)) s});
	$reads++;
	my ($count, $ordered) = split(' ', $r // '');
	if (!defined $ordered || $ordered ne 'true' || $count < $last)
	{
		$bad++;
		diag "read $reads: '" . ($r // 'undef') . "' after $last events; "
		  . $reader->stderr
		  if $bad <= 3;
	}
	$last = $count if defined $count && $count =~ /^\d+$/;
	if (waitpid($pid, POSIX::WNOHANG()) == $pid)
	{
		$pid = undef;
		last;
	}
}
if (defined $pid)
{
	kill('TERM', $pid);
	waitpid($pid, 0);
	fail('the refused logins ended within 120 s');
}
is($bad, 0, "$reads reads during $logins refused logins: each newest first, never fewer than before");
$reader->quit;
ok( poll_until(
		$node,
		q{SELECT count(*) FROM role_guard_events WHERE event = 'rejected'},
		3 + $logins),
	'all of them in the ring at the end');

$node->stop;
done_testing();
