
# Copyright: see README.md.
#
# The reaper on a streaming pair.  role_guard is preloaded on a primary and
# on its hot standby; each has its own settings.
#
#   - the reaper runs on the standby (it starts at consistent state) and
#     shows in the standby's pg_stat_activity;
#   - an idle session on the standby is reaped per the standby's settings
#     (sb_r=1500ms there, 60s on the primary), and role_guard_usage on the
#     standby counts it; the primary's '*' does not reach the standby;
#   - on the primary, '*=1s' covers the replication role: the walsender
#     streaming to the standby and an idle replication connection (waiting
#     for its client, as an idle session does) are never reaped, while a
#     plain session of a role under '*' is; after many intervals the same
#     walsender still streams and replication still works.
#
# reap_interval = 300ms on both.  Only the nodes' Unix sockets are used.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use Time::Local qw(timegm);

my $INTERVAL = 0.3;    # role_guard.reap_interval, seconds
my $SLACK    = 2.0;    # scheduling slack on a loaded 2-core machine
my $WAIT     = 30;     # upper bound of any single wait
$WAIT = $PostgreSQL::Test::Utils::timeout_default
  if $PostgreSQL::Test::Utils::timeout_default < $WAIT;

# ---------------------------------------------------------------------------
# A psql reading SQL from a pipe.
# ---------------------------------------------------------------------------
package ReapSession;

use IPC::Run;
use Time::HiRes qw(usleep time);

sub new
{
	my ($class, $connstr, %o) = @_;
	my $self =
	  bless { in => '', out => '', err => '', n => 0, name => $o{name} },
	  $class;
	local %ENV = %ENV;
	$ENV{$_} = $o{env}{$_} for keys %{ $o{env} // {} };
	$self->{h} = IPC::Run::start([ 'psql', '-XAtq', '-w', '-d', $connstr, '-f', '-' ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err});
	my $pid = $self->query('SELECT pg_backend_pid()');
	$self->{pid} = $pid if defined $pid && $pid =~ /^\d+$/;
	return $self;
}

sub pid { return $_[0]->{pid}; }
sub err { return $_[0]->{err}; }

# Queue $sql followed by an \echo marker; returns the marker.
sub start_query
{
	my ($self, $sql) = @_;
	my $marker = "__rg_done_" . ++$self->{n};
	$self->{out} = '';
	$self->{in} .= "$sql;\n\\echo $marker\n";
	eval { $self->{h}->pump_nb if $self->{h}->pumpable; };
	return $marker;
}

# Wait for the marker; the output before it (chomped), or undef if psql
# exited or $secs passed.
sub wait_query
{
	my ($self, $marker, $secs) = @_;
	my $deadline = time + ($secs // $WAIT);
	while ($self->{out} !~ /^\Q$marker\E$/m)
	{
		return undef unless $self->{h}->pumpable;
		eval { $self->{h}->pump_nb; };
		next if $self->{out} =~ /^\Q$marker\E$/m;
		return undef if time > $deadline;
		usleep(5_000);
	}
	my $out = $self->{out};
	$out =~ s/\n?^\Q$marker\E\n?//m;
	chomp $out;
	return $out;
}

sub query
{
	my ($self, $sql, $secs) = @_;
	return undef unless $self->{h}->pumpable;
	return $self->wait_query($self->start_query($sql), $secs);
}

# Send raw text to psql's stdin (COPY data, say).
sub send_raw
{
	my ($self, $text) = @_;
	$self->{in} .= $text;
	eval { $self->{h}->pump_nb if $self->{h}->pumpable; };
	return;
}

sub finish
{
	my ($self) = @_;
	return if $self->{done};
	$self->{done} = 1;
	$self->{in} .= "\\q\n" if $self->{h}->pumpable;
	my $deadline = time + 10;
	while ($self->{h}->pumpable && time < $deadline)
	{
		eval { $self->{h}->pump_nb; };
		usleep(10_000);
	}
	if   ($self->{h}->pumpable) { $self->{h}->kill_kill; }
	else                        { eval { $self->{h}->finish; }; }
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local ($@, $?);
	eval { $self->{h}->kill_kill if !$self->{done} && $self->{h}->pumpable; };
	return;
}

package main;

# ---------------------------------------------------------------------------
# The nodes
# ---------------------------------------------------------------------------
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'role_guard'
log_timezone = 'UTC'
log_min_messages = info
log_error_verbosity = verbose
max_connections = 20
role_guard.reap_interval = '300ms'
role_guard.idle_timeouts = 'postgres=0, sb_r=60s, *=1s'
role_guard.idle_in_transaction_timeouts = 'postgres=0, *=1s'
});
$primary->start;
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
CREATE ROLE repl LOGIN REPLICATION;
CREATE ROLE sb_r LOGIN;
CREATE ROLE p_r LOGIN;
CREATE TABLE rep_t (i int);
GRANT SELECT ON rep_t TO sb_r, p_r;
});
# A cold file-system copy rather than $primary->backup: that needs a
# pg_basebackup of the server's major, which test/run has only for 15 (the
# 17 and 18 servers come without client programs, see test/pgversions.sh).
$primary->stop;
$primary->backup_fs_cold('bk');
$primary->start;

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
my ($phost, $pport) = ($primary->host, $primary->port);
$standby->append_conf(
	'postgresql.conf', qq{
primary_conninfo = 'host=''$phost'' port=$pport user=repl application_name=standby'
role_guard.idle_timeouts = 'postgres=0, sb_r=1500ms'
role_guard.idle_in_transaction_timeouts = ''
});
$standby->start;

sub connstr
{
	my ($node, $user, $extra) = @_;
	return "host='" . $node->host . "' port=" . $node->port
	  . " dbname=postgres user=$user connect_timeout=20" . ($extra // '');
}

my %mon;
for my $node ($primary, $standby)
{
	$mon{ $node->name } = ReapSession->new(connstr($node, 'postgres'), name => 'monitor');
	die "monitor session on " . $node->name . " did not start"
	  unless $mon{ $node->name }->pid;
}

sub mq
{
	my ($node, $sql) = @_;
	my $out = $mon{ $node->name }->query($sql);
	die "monitor session on " . $node->name . " lost" unless defined $out;
	return $out;
}

sub poll
{
	my ($node, $sql, $expected, $secs) = @_;
	my $deadline = time + ($secs // $WAIT);
	my $got;
	while (1)
	{
		$got = mq($node, $sql);
		return 1 if $got eq $expected;
		last if time > $deadline;
		usleep(100_000);
	}
	diag "gave up waiting on " . $node->name . " for $sql: got '$got', want '$expected'";
	return 0;
}

sub usage
{
	my ($node, $role, @cols) = @_;
	my $list = join(", ", map { "coalesce($_\::text, '<null>')" } @cols);
	my $out  = mq($node, "SELECT $list FROM role_guard_usage WHERE rolname = '$role'");
	return $out eq '' ? '<norow>' : $out;
}

sub ts_epoch
{
	my ($ts) = @_;
	my ($Y, $M, $D, $h, $m, $s, $f) =
	  $ts =~ /^(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)(\.\d+)?$/
	  or return undef;
	return timegm($s, $m, $h, $D, $M - 1, $Y) + ($f // 0);
}

sub open_session
{
	my ($node, $role, $name, $extra) = @_;
	my $s = ReapSession->new(connstr($node, $role, $extra), name => $name);
	ok($s->pid, "$name: session of $role logged in") or diag $s->err;
	return $s;
}

# Run the session's last statement and note when its idle period began.
sub arm
{
	my ($name, $node, $s, %c) = @_;
	my $t_s = time;
	my $out = $s->query('SELECT 1');
	my $t0  = time;
	my $pid = $s->pid // 0;
	my ($sc, $state) = split /\|/,
	  mq($node, "SELECT coalesce(extract(epoch FROM state_change)::text, ''), coalesce(state, '')
	             FROM pg_stat_activity WHERE pid = $pid"), -1;
	is($state, 'idle', "$name: session is idle");
	return { %c, name => $name, node => $node, s => $s, pid => $pid,
		t_s => $t_s, t0 => $t0, sc => $sc };
}

# Watch reap cases and live cases on both nodes at once, then check them.
sub watch
{
	my ($reap, $live, %pos) = @_;
	my $deadline = 0;
	for my $c (@$reap)
	{
		$c->{due} = $c->{t0} + $c->{limit} + $INTERVAL + $SLACK;
		$deadline = $c->{due} if $c->{due} > $deadline;
	}
	for my $c (@$live)
	{
		my $d = $c->{t0} + $c->{until};
		$deadline = $d if $d > $deadline;
	}
	my $hard = $deadline + 5;
	while (time < $hard)
	{
		my @rp = grep { !defined $_->{gone_t} } @$reap;
		my @lp =
		  grep { !defined $_->{gone_t} && ($_->{seen_q} // 0) < $_->{t0} + $_->{until} }
		  @$live;
		last unless @rp || @lp;
		last if !@rp && time > $deadline + 1;
		for my $node ($primary, $standby)
		{
			my @c = grep { $_->{node} == $node } @rp, @lp;
			next unless @c;
			my $t_q = time;
			my %alive = map { $_ => 1 } split /\n/,
			  mq($node, "SELECT pid FROM pg_stat_activity WHERE pid IN ("
				  . join(',', map { $_->{pid} } @c) . ")");
			my $t_e = time;
			for my $c (@c)
			{
				if ($alive{ $c->{pid} }) { $c->{seen_q} = $t_q; }
				else                     { $c->{gone_t} = $t_e; }
			}
		}
		usleep(50_000);
	}
	for my $c (@$reap)
	{
		my $n   = $c->{name};
		my $log = slurp_file($c->{node}->logfile, $pos{ $c->{node}->name });
		my $rel = sub { defined $_[0] ? sprintf('%.2f s', $_[0] - $c->{t0}) : 'never' };
		my $timing = "pid $c->{pid}, limit $c->{limit} s; after its last statement: "
		  . "last seen alive " . $rel->($c->{seen_q}) . ", seen gone " . $rel->($c->{gone_t});
		ok(defined $c->{gone_t} && $c->{gone_t} <= $c->{due},
			"$n: reaped within limit + interval + ${SLACK}s") or diag $timing;
		next unless defined $c->{gone_t};
		if (defined $c->{seen_q} && $c->{seen_q} >= $c->{t0} + $c->{limit} - 0.5)
		{
			pass("$n: still there at limit - 0.5 s");
		}
		elsif ($c->{gone_t} < $c->{t_s} + $c->{limit})
		{
			fail("$n: still there at limit - 0.5 s");
			diag "reaped before its limit: $timing";
		}
		else
		{
			pass("$n: still there at limit - 0.5 s (not observed: machine too slow)");
			diag $timing;
		}
		my $limit = sprintf('%.1f', $c->{limit});
		my $re =
		  qr/^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC \[\d+\] [^\n]*?LOG:\s+(?:\w{5}: )?role_guard: terminating session of role "\Q$c->{role}\E" \(pid $c->{pid}\): idle for ([\d.]+) s, limit ([\d.]+) s$/m;
		if (ok($log =~ $re, "$n: LOG line on " . $c->{node}->name . " names role, pid, idle time and limit"))
		{
			my ($ts, $idle, $lim) = ($1, $2, $3);
			is($lim, $limit, "$n: LOG line gives limit $limit s");
			cmp_ok(ts_epoch($ts) - $c->{sc}, '>=', $c->{limit} - 0.1,
				"$n: reaped (server clock) no earlier than the limit after state_change")
			  if $c->{sc} ne '';
		}
		else
		{
			diag "role_guard log lines:\n" . join("\n", grep { /role_guard/ } split /\n/, $log);
		}
		ok(!defined $c->{s}->query('SELECT 1', 10), "$n: the client's connection is gone");
		like($c->{s}->err, qr/FATAL:\s+terminating connection due to administrator command/,
			"$n: the client got FATAL terminating connection due to administrator command");
		$c->{s}->finish;
	}
	for my $c (@$live)
	{
		my $n   = $c->{name};
		my $log = slurp_file($c->{node}->logfile, $pos{ $c->{node}->name });
		ok(!defined $c->{gone_t} && ($c->{seen_q} // 0) >= $c->{t0} + $c->{until},
			sprintf("%s: still there %.1f s after its last statement", $n, $c->{until}))
		  or diag sprintf("seen alive at %s, gone at %s",
			  map { defined $_ ? sprintf('%.2f s', $_ - $c->{t0}) : 'never' } $c->{seen_q},
			  $c->{gone_t});
		unlike($log, qr/terminating session of role "[^"]*" \(pid $c->{pid}\)/,
			"$n: no LOG line terminating it");
	}
	return;
}

sub log_pos { return -s $_[0]->logfile; }

# ---------------------------------------------------------------------------
# 1. both reapers run; the standby streams from the primary as repl
# ---------------------------------------------------------------------------
is(mq($standby, 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
my $reaper = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'role_guard reaper'";
ok(poll($standby, $reaper, '1'), "the standby's pg_stat_activity shows one 'role_guard reaper'");
ok(poll($primary, $reaper, '1'), "the primary's pg_stat_activity shows one 'role_guard reaper'");
ok( poll(
		$primary,
		"SELECT usename || ':' || state FROM pg_stat_replication WHERE application_name = 'standby'",
		'repl:streaming'),
	'the standby streams from the primary as role repl');
my $wal_pid =
  mq($primary, "SELECT pid FROM pg_stat_replication WHERE application_name = 'standby'");
my $t_stream = time;
is( mq($primary,
		"SELECT coalesce(idle_timeout::text, '<null>') FROM role_guard_usage WHERE rolname = 'repl'"),
	'00:00:01', "repl's idle limit on the primary is '*' = 1 s");

# ---------------------------------------------------------------------------
# 2. sessions: on the standby per the standby's settings, on the primary
#    per the primary's; an idle replication connection on the primary
# ---------------------------------------------------------------------------
my %pos = (primary => log_pos($primary), standby => log_pos($standby));
my $sb   = open_session($standby, 'sb_r', 'standby: sb_r (1500ms there)');
my $sp   = open_session($standby, 'p_r',  'standby: p_r (no limit there)');
my $pb   = open_session($primary, 'sb_r', 'primary: sb_r (60s there)');
my $pp   = open_session($primary, 'p_r',  "primary: p_r ('*' = 1 s)");
my $repl = open_session($primary, 'repl', 'primary: idle replication connection',
	' replication=database');
# a plain session of repl: reaped like any other ('*'), so the reaper knows
# repl's limit; only its walsenders are spared
my $rp = open_session($primary, 'repl', 'primary: plain session of repl');
is(usage($standby, 'sb_r', 'idle_timeout'), '00:00:01.5', 'standby: usage shows sb_r 1.5 s');
is(usage($standby, 'p_r',  'idle_timeout'), '<null>',     'standby: usage shows p_r without limit');
is(usage($primary, 'sb_r', 'idle_timeout'), '00:01:00',   'primary: usage shows sb_r 60 s');

my @reap = (
	arm('standby: sb_r (1500ms there)', $standby, $sb, role => 'sb_r', limit => 1.5),
	arm("primary: p_r ('*' = 1 s)", $primary, $pp, role => 'p_r', limit => 1),
	arm('primary: plain session of repl', $primary, $rp, role => 'repl', limit => 1));
my @live = (
	arm('standby: p_r (no limit there)', $standby, $sp, until => 3.5),
	arm('primary: sb_r (60s there)', $primary, $pb, until => 3.5),
	arm('primary: idle replication connection', $primary, $repl, until => 3.5));
is( mq($primary, "SELECT backend_type || ':' || state || ':' || wait_event
                  FROM pg_stat_activity WHERE pid = " . $repl->pid),
	'walsender:idle:ClientRead',
	'the replication connection is a walsender, idle, waiting for its client');
watch(\@reap, \@live, %pos);
is(usage($standby, 'sb_r', 'reaped'), '1', 'standby: usage counts the reap of sb_r');
is(usage($primary, 'sb_r', 'reaped'), '0', 'primary: nothing counted for sb_r');
is(usage($primary, 'p_r',  'reaped'), '1', 'primary: usage counts the reap of p_r');
is(usage($primary, 'repl', 'reaped'), '1', 'primary: repl reaped once (the plain session)');

# ---------------------------------------------------------------------------
# 3. after many intervals: the same walsender streams, the idle replication
#    connection still answers, replication works
# ---------------------------------------------------------------------------
usleep(50_000) while time < $t_stream + 1 + 10 * $INTERVAL;
is( mq($primary,
		"SELECT pid || ':' || state FROM pg_stat_replication WHERE application_name = 'standby'"),
	"$wal_pid:streaming",
	sprintf('the same walsender still streams %.1f s later', time - $t_stream));
like($repl->query('IDENTIFY_SYSTEM'), qr/^\d+\|\d+\|[0-9A-F]+\/[0-9A-F]+\|postgres$/,
	'the idle replication connection still answers IDENTIFY_SYSTEM');
$primary->safe_psql('postgres', 'INSERT INTO rep_t SELECT generate_series(1, 10)');
$primary->wait_for_catchup($standby, 'replay');
is(mq($standby, 'SELECT count(*) FROM rep_t'), '10', 'replication still works');
my $plog = slurp_file($primary->logfile);
my $rpid = $repl->pid;
unlike($plog, qr/terminating session of role "[^"]*" \(pid (?:$wal_pid|$rpid)\)/,
	'the primary never terminated a walsender');
unlike($plog, qr/terminating session of role "postgres"/,
	'the primary never terminated a postgres session');
like(mq($standby, 'SELECT status FROM pg_stat_wal_receiver'), qr/^streaming$/,
	"the standby's walreceiver is streaming");

$repl->finish;
$_->finish for $sp, $pb, values %mon;
$standby->stop;
$primary->stop;
done_testing();
