
# Copyright: see README.md.
#
# Requests to end a session (the reaper's, a login's eviction) against a
# real termination that arrives at the same moment, and what is counted.
#
# The window: the reaper saw the session idle past its limit and sent its
# request, but the session started a statement before it could take it; it
# drops the request.  A pg_terminate_backend, or the postmaster's
# fast-shutdown SIGTERM, sent then must still end the session.  When
# requests travelled as SIGTERM, the kernel merged the two signals into one
# that looked like the reaper's, and the termination was dropped with the
# request: the session ran on, and a fast shutdown waited for it.
#
# Made deterministic with two pause points (test builds): the reaper is
# held after it saw the session idle and before it sends
# ("reaper-before-signal"); the session is held where a statement begins,
# before it counts as busy to role_guard, with every signal blocked
# ("statement-begin", as a process that is not scheduled: signals stay
# pending, and two of a kind are merged).
#
# Also: a dropped request is neither counted as a reap nor recorded as one
# (the reaper logs the drop); the reap that really ends the session later
# is counted once, with its event.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT inject_arm inject_wait inject_wake wait_log
  event_is no_event_ok events_where);

my $node = rg_node(
	'end_requests',
	conf => "role_guard.reap_interval = '100ms'\n"
	  . "role_guard.idle_timeouts = 'victim=1s'\n");
$node->safe_psql('postgres',
	"CREATE ROLE victim LOGIN; CREATE ROLE other LOGIN; CREATE EXTENSION role_guard;");

# Signals pending for a process (its own and its thread group's), as a
# number; 0 when none or the process is gone.
sub pending
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return 0;
	my $bits = 0;
	while (<$fh>)
	{
		$bits |= hex($1) if /^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)/;
	}
	close $fh;
	return $bits;
}

# Wait (bounded) until $cond->() is true; true if it became so.
sub wait_for
{
	my ($cond, $what) = @_;
	my $deadline = time + $RoleGuardTest::wait_seconds;
	while (time < $deadline)
	{
		return 1 if $cond->();
		usleep(20_000);
	}
	diag "gave up waiting: $what";
	return 0;
}

sub gone { my ($pid) = @_; return !kill(0, $pid); }

# A victim session with the reaper's request to end it pending, while it
# is held (signals blocked) starting SELECT pg_sleep(3600).
sub busy_with_request
{
	my ($what) = @_;
	my $w = RoleGuardTest::Wire->new($node, 'victim');
	inject_arm($node, 'reaper-before-signal');
	my $reaper = inject_wait($node, 'reaper-before-signal');
	ok($reaper, "$what: the reaper saw the session idle past 1 s");
	inject_arm($node, 'statement-begin');
	$w->send($w->query('SELECT pg_sleep(3600)'));
	is(inject_wait($node, 'statement-begin'),
		$w->pid, "$what: the session is held starting its statement");
	inject_wake($node, 'reaper-before-signal', $reaper);
	ok(wait_for(sub { pending($w->pid) != 0 }, 'request pending'),
		"$what: the reaper's request is pending in the session");
	return $w;
}

# The first ErrorResponse the session got, as "SQLSTATE message".
sub error_of
{
	my ($w) = @_;
	$w->poll(0);
	foreach my $m (@{ $w->{msgs} })
	{
		next unless $m->[0] eq 'E';
		my $f = RoleGuardTest::_error_fields($m->[1]);
		return "$f->{C} $f->{M}";
	}
	return '';
}

# ---------------------------------------------------------------------------
# 1. pg_terminate_backend at the same moment as a request the session drops.
# ---------------------------------------------------------------------------
my $w   = busy_with_request('terminate');
my $pid = $w->pid;
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"),
	't', 'terminate: pg_terminate_backend sent');
inject_wake($node, 'statement-begin', $pid);
ok(wait_for(sub { gone($pid) }, "pid $pid to end"),
	'terminate: the session ends (the termination is not dropped with the request)');
ok(wait_for(sub { $w->poll(0); $w->is_eof }, 'connection closed'),
	'terminate: its connection is closed');
like(error_of($w), qr/^57P01 terminating connection due to administrator command/,
	"terminate: the client gets core's 57P01");
if (!gone($pid))
{
	kill 'TERM', $pid;    # a SIGTERM of its own: let the rest run
	wait_for(sub { gone($pid) }, 'session to end on a second SIGTERM');
}
is($node->safe_psql('postgres',
		q{SELECT reaped FROM role_guard_usage WHERE rolname = 'victim'}),
	'0', 'terminate: the dropped request is not counted as a reap');

# ---------------------------------------------------------------------------
# 2. A dropped request alone: not counted, not recorded, logged as dropped;
#    the reap that ends the session later is counted once.
# ---------------------------------------------------------------------------
my $pos = log_pos($node);
$w   = busy_with_request('drop');
$pid = $w->pid;
inject_wake($node, 'statement-begin', $pid);
ok( wait_log(
		$node,
		qr/session of role "victim" \(pid $pid\) was busy again when asked to end, and goes on/,
		$pos),
	'drop: the reaper logs the dropped request');
ok(!gone($pid), 'drop: the busy session goes on');
is($node->safe_psql('postgres',
		q{SELECT reaped FROM role_guard_usage WHERE rolname = 'victim'}),
	'0', 'drop: the dropped request is not counted as a reap');
no_event_ok($node, { pid => $pid, event => 'reaped_idle' },
	'drop: no reaped_idle event for it');
# idle again: reaped within its limit, and counted once
is($node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)"),
	't', 'drop: its statement is cancelled');
ok(wait_for(sub { gone($pid) }, "pid $pid reaped"),
	'drop: idle again, the session is reaped');
ok(wait_for(sub { $w->poll(0); $w->is_eof }, 'connection closed'),
	'drop: its connection is closed');
is(join(',', map { RoleGuardTest::_error_fields($_->[1])->{C} }
		grep { $_->[0] eq 'E' } @{ $w->{msgs} }),
	'57014,57P05',
	'drop: the client saw its statement cancelled, then the reap (57P05)');
is($node->safe_psql('postgres',
		q{SELECT reaped FROM role_guard_usage WHERE rolname = 'victim'}),
	'1', 'drop: the reap that ended it is counted once');
event_is($node, { pid => $pid, event => 'reaped_idle' },
	{ rolname => 'victim', detail => qr/^Idle for \d+\.\d s, limit 1\.0 s\.$/ },
	'drop: one reaped_idle event, recorded by the session that ended');

# ---------------------------------------------------------------------------
# 3. A fast shutdown at the same moment as a request the session drops.
# ---------------------------------------------------------------------------
my $bystander = RoleGuardTest::Wire->new($node, 'other');
$w   = busy_with_request('fast shutdown');
$pid = $w->pid;
my $stop = fork();
die "fork: $!" unless defined $stop;
if ($stop == 0)
{
	exec('pg_ctl', '-D', $node->data_dir, '-m', 'fast', '-w', '-t', '300',
		'stop');
	exit 127;
}
# the postmaster signals every backend at once: the bystander's end says
# the shutdown SIGTERM has been sent to the held session too
ok(wait_for(sub { gone($bystander->pid) }, 'bystander to end'),
	'fast shutdown: the postmaster has sent its SIGTERM');
inject_wake($node, 'statement-begin', $pid);
ok(wait_for(sub { gone($pid) }, "pid $pid to end"),
	'fast shutdown: the held session ends');
kill 'TERM', $pid unless gone($pid);    # let the shutdown finish
my $rc;
ok(wait_for(sub { waitpid($stop, WNOHANG) == $stop && defined($rc = $?) },
		'pg_ctl stop'),
	'fast shutdown: pg_ctl stop returns');
is($rc >> 8, 0, 'fast shutdown: the server stopped');
$node->_update_pid(0);

done_testing();
