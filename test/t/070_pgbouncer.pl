
# Copyright: see README.md.
#
# role_guard behind PgBouncer.  PgBouncer opens its server connections as
# the client's role (or the user a [databases] entry forces), over TCP from
# its own address, so budgets, reaping and superuser denial apply to those
# server connections.  One node, one PgBouncer (started here as the OS user
# running the test, its own ini, port, Unix socket directory, log and pid
# file in the node's directory; stopped at the end), connecting to the node
# over 127.0.0.1.
#
#   1. transaction pooling, budget app=3 < default_pool_size = 10, 20
#      pgbench clients: server connections of app never above 3 (sampled
#      from pg_stat_activity and role_guard_usage, peak = 3), no client
#      transaction fails (PgBouncer queues them), PgBouncer's 4th server
#      login is refused with 53300 once per server_login_retry and logged
#      by both sides;
#   2. the same with PgBouncer's max_user_connections = 3 = the budget: no
#      refusal at all;
#   3. session pooling: a 4th client session gets past PgBouncer's login
#      and waits; it gets "query_wait_timeout" after query_wait_timeout (3 s),
#      never later;
#   4. a fresh pool (never logged in) whose role's budget is full: the
#      client gets the refusal's text at login, as PgBouncer's 08P01,
#      without DETAIL; a 2nd client waits for server_login_retry (1 s) and
#      gets the same; with server_login_retry = 10 the 2nd gets
#      query_wait_timeout after 3 s;
#   5. reaping (idle_timeouts 1 s, reap_interval 200ms, server_idle_timeout
#      600): PgBouncer notices the reaped idle server connection, and the
#      next query of the same client runs on a new one (transaction
#      pooling); in session pooling the client gets role_guard's FATAL and
#      is disconnected;
#   5b. server_idle_timeout = 1 s below the idle limit (5 s): PgBouncer
#      closes the connection itself, no reap; and the app pool of section 1
#      (last server login refused), once emptied, fast-fails its first
#      client ("server login has been failing, try again later
#      (server_login_retry)") although the budget has room, then recovers;
#   6. superuser_deny_hosts = '127.0.0.1/32': a superuser through PgBouncer
#      (TCP or PgBouncer's Unix socket, client role or forced user) is
#      denied, the server sees PgBouncer's address; a PgBouncer entry that
#      connects over the node's Unix socket is not.
#
# Every client call is bounded (PgBouncer's query_wait_timeout = 3 s,
# server_connect_timeout = 5 s, and our own timeouts).  Skipped when
# /usr/sbin/pgbouncer (or $PGBOUNCER) or pgbench is missing.  About 25 s.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT monitor_session events_where);

my $PGBOUNCER = $ENV{PGBOUNCER} // '/usr/sbin/pgbouncer';
plan skip_all => "no PgBouncer at $PGBOUNCER" unless -x $PGBOUNCER;
my ($PGBENCH) = grep { -x } (map { "$_/pgbench" } split /:/, $ENV{PATH} // ''),
  '/usr/lib/postgresql/15/bin/pgbench';
plan skip_all => 'no pgbench' unless $PGBENCH;

my $t_start = time;
my $SLACK   = 5;     # scheduling slack, s
my $QWT     = 3;     # PgBouncer query_wait_timeout, s
my $BENCH_S = 4;     # pgbench -T

my $node = rg_node(
	'pgb',
	budgets => 'app=3, capped=3, sess=3, idler=3, sessidle=3, tidy=3, nobody=0',
	conf    => qq{
max_connections = 40
role_guard.reap_interval = '200ms'
role_guard.idle_timeouts = 'idler=1s, sessidle=1s, tidy=5s'
});
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
CREATE ROLE app LOGIN;
CREATE ROLE capped LOGIN;
CREATE ROLE sess LOGIN;
CREATE ROLE idler LOGIN;
CREATE ROLE sessidle LOGIN;
CREATE ROLE nobody LOGIN;
CREATE ROLE tidy LOGIN;
CREATE ROLE admin_su LOGIN SUPERUSER;
});

# ---------------------------------------------------------------------------
# PgBouncer
# ---------------------------------------------------------------------------
my %pgb;

# Write pgbouncer.ini and userlist.txt in the node's directory (%o:
# server_login_retry, default 1; server_idle_timeout, default 600).  The
# port is chosen once.
sub pgb_write_ini
{
	my (%o) = @_;
	my $retry = $o{server_login_retry}  // 1;
	my $idle  = $o{server_idle_timeout} // 600;
	my $dir   = $node->basedir . '/pgbouncer';
	mkdir $dir;
	my $port    = $pgb{port} // PostgreSQL::Test::Cluster::get_free_port();
	my $pgport  = $node->port;
	my $sockdir = $node->host;
	open(my $fh, '>', "$dir/userlist.txt") or die "userlist.txt: $!";
	print $fh qq{"$_" ""\n}
	  for qw(app capped sess idler sessidle tidy nobody admin_su pgb_admin);
	close $fh;
	# The tested pair that README's "Behind PgBouncer" shows: txn with
	# budget app=3 (and capped=3 with max_user_connections = 3).
	open($fh, '>', "$dir/pgbouncer.ini") or die "pgbouncer.ini: $!";
	print $fh <<"EOT";
[databases]
txn     = host=127.0.0.1 port=$pgport dbname=postgres pool_mode=transaction
sess    = host=127.0.0.1 port=$pgport dbname=postgres pool_mode=session
su      = host=127.0.0.1 port=$pgport dbname=postgres user=admin_su
su_sock = host=$sockdir port=$pgport dbname=postgres user=admin_su

[users]
capped = max_user_connections=3

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/userlist.txt
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
admin_users = pgb_admin
pool_mode = transaction
default_pool_size = 10
max_client_conn = 200
query_wait_timeout = $QWT
server_login_retry = $retry
server_connect_timeout = 5
server_idle_timeout = $idle
EOT
	close $fh;
	return ($dir, $port);
}

# Start PgBouncer in the foreground (IPC::Run), as the OS user running the
# test; wait (at most 15 s) until it accepts TCP.
sub pgb_start
{
	my ($dir, $port) = pgb_write_ini();
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ $PGBOUNCER, "$dir/pgbouncer.ini" ],
		'<', '/dev/null', '>', \$out, '2>', \$err);
	%pgb = (
		dir  => $dir,
		port => $port,
		h    => $h,
		log  => "$dir/pgbouncer.log",
		err  => \$err);
	my $deadline = time + 15;
	while (time < $deadline)
	{
		my $s = IO::Socket::INET->new(
			PeerAddr => '127.0.0.1',
			PeerPort => $port,
			Proto    => 'tcp');
		if ($s)
		{
			close $s;
			return 1;
		}
		eval { $h->pump_nb };
		usleep(50_000);
	}
	die "PgBouncer did not start: $err";
}

# Rewrite the ini with %o (server_login_retry, server_idle_timeout) and
# RELOAD; wait until SHOW CONFIG has the new values.
sub pgb_reload
{
	my (%o) = @_;
	pgb_write_ini(%o);
	my ($ret, $out, $err) =
	  try_login($node, pgb_connstr('pgb_admin', 'pgbouncer'), 'RELOAD');
	die "PgBouncer RELOAD failed: $err" if $ret != 0;
	my $deadline = time + 10;
	while (time < $deadline)
	{
		($ret, $out, $err) = try_login($node, pgb_connstr('pgb_admin', 'pgbouncer'),
			'SHOW CONFIG');
		return 1 unless grep { $out !~ /^$_\|$o{$_}\|/m } keys %o;
		usleep(50_000);
	}
	die "PgBouncer did not take the new settings: $out";
}

# SIGTERM (immediate shutdown), at most 10 s, then SIGKILL.  Returns true
# when it exited by itself.
sub pgb_stop
{
	return 1 unless $pgb{h};
	my $h = delete $pgb{h};
	eval { $h->signal('TERM') };
	my $deadline = time + 10;
	while ($h->pumpable && time < $deadline)
	{
		eval { $h->pump_nb };
		usleep(50_000);
	}
	my $clean = !$h->pumpable;
	eval { $h->kill_kill } unless $clean;
	eval { $h->finish };
	return $clean;
}
END { local $?; pgb_stop(); }

sub pgb_connstr
{
	my ($user, $db, $via) = @_;
	my $host = ($via // 'tcp') eq 'socket' ? $pgb{dir} : '127.0.0.1';
	return
	  "host=$host port=$pgb{port} user=$user dbname=$db connect_timeout=20";
}

sub pgb_log_pos { return -s $pgb{log} // 0; }

sub pgb_log_since
{
	my ($pos) = @_;
	return slurp_file($pgb{log}, $pos);
}

# Wait (bounded) until PgBouncer's log after $pos matches $re.
sub pgb_wait_log
{
	my ($re, $pos, $secs) = @_;
	my $deadline = time + ($secs // 10);
	while (time < $deadline)
	{
		my $t = pgb_log_since($pos);
		return $t if $t =~ $re;
		usleep(50_000);
	}
	return undef;
}

# SHOW POOLS on PgBouncer's admin console: { "db/user" => { col => value } }.
sub pgb_pools
{
	my ($out, $err) = ('', '');
	eval {
		IPC::Run::run(
			[
				'psql', '-XAq', '-w', '-d', pgb_connstr('pgb_admin', 'pgbouncer'),
				'-c', 'SHOW POOLS'
			],
			'<', '/dev/null', '>', \$out, '2>', \$err,
			IPC::Run::timeout(20));
	};
	my @lines = split /\n/, $out;
	my @cols = split /\|/, (shift(@lines) // '');
	my %p;
	foreach my $l (@lines)
	{
		next if $l =~ /^\(\d+ rows?\)$/;
		my %r;
		@r{@cols} = split /\|/, $l, -1;
		$p{"$r{database}/$r{user}"} = \%r;
	}
	return \%p;
}

# One client through PgBouncer over TCP, speaking protocol 3 by hand:
# startup packet, and if PgBouncer lets it in, one simple Query.  Returns
# { phase => 'login' | 'query' (where it ended), ok => 1 when the query
# completed, severity, sqlstate, message, detail (of an ErrorResponse),
# eof, timeout, secs (from the connect to the end) }.
sub pgb_client
{
	my ($user, $db, $sql, $secs) = @_;
	$secs //= 30;
	my $t0 = time;
	my %r = (phase => 'login');
	my $sock = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $pgb{port},
		Proto    => 'tcp',
		Timeout  => 10);
	return { error => "cannot connect: $!" } unless $sock;
	my $params = "user\0$user\0database\0$db\0\0";
	syswrite($sock, pack('NN', 8 + length($params), 196608) . $params);
	my $sel      = IO::Select->new($sock);
	my $buf      = '';
	my $deadline = $t0 + $secs;
	while (1)
	{
		while (length($buf) >= 5)
		{
			my ($type, $len) = unpack('a N', $buf);
			last if length($buf) < 1 + $len;
			my $body = substr($buf, 5, $len - 4);
			substr($buf, 0, 1 + $len) = '';
			if ($type eq 'E')
			{
				# S: severity as sent (PgBouncer sends no V)
				my %k = (C => 'sqlstate', M => 'message', D => 'detail', S => 'severity');
				foreach my $f (split /\0/, $body)
				{
					next if $f eq '';
					my $c = substr($f, 0, 1);
					$r{ $k{$c} } = substr($f, 1) if $k{$c};
				}
				$r{secs} = time - $t0;
				close $sock;
				return \%r;
			}
			if ($type eq 'Z')
			{
				if ($r{phase} eq 'login')
				{
					$r{phase} = 'query';
					syswrite($sock, pack('a N', 'Q', 5 + length($sql)) . "$sql\0");
				}
				else
				{
					$r{ok}   = 1;
					$r{secs} = time - $t0;
					syswrite($sock, pack('a N', 'X', 4));
					close $sock;
					return \%r;
				}
			}
		}
		if (time > $deadline)
		{
			$r{timeout} = 1;
			$r{secs}    = time - $t0;
			close $sock;
			return \%r;
		}
		next unless $sel->can_read(0.1);
		my $got = sysread($sock, my $chunk, 65536);
		if (!$got)
		{
			$r{eof}  = 1;
			$r{secs} = time - $t0;
			close $sock;
			return \%r;
		}
		$buf .= $chunk;
	}
}

sub client_text
{
	my ($r) = @_;
	return sprintf('%s: %s %s %s%s (%.2f s)',
		$r->{phase} // '?', $r->{severity} // '', $r->{sqlstate} // '',
		$r->{message} // ($r->{ok} ? 'ok' : $r->{eof} ? 'eof' : $r->{timeout} ? 'timeout' : $r->{error} // '?'),
		defined $r->{detail} ? " DETAIL: $r->{detail}" : '',
		$r->{secs} // -1);
}

pgb_start();
my $mon = monitor_session($node);
diag "PgBouncer " . (split /\n/, `$PGBOUNCER --version`)[0] . " on 127.0.0.1:$pgb{port}";

sub usage
{
	my ($role) = @_;
	return usage_of($node, $role,
		qw(budget connections idle peak rejected reaped superuser_denied));
}

# ---------------------------------------------------------------------------
# 1, 2. transaction pooling: 20 pgbench clients, budget 3, pool size 10
# ---------------------------------------------------------------------------

# pgbench -c 20 -T $BENCH_S through the txn entry as $user, sampling the
# role's server connections (pg_stat_activity, role_guard_usage) every
# ~20 ms and SHOW POOLS every ~10th sample.
sub bench_sampled
{
	my ($user) = @_;
	my $f = $node->basedir . "/bench_$user.sql";
	open(my $fh, '>', $f) or die "$f: $!";
	print $fh "BEGIN;\nSELECT pg_sleep(0.002);\nCOMMIT;\n";
	close $fh;
	my ($out, $err) = ('', '');
	my $ppos = pgb_log_pos();
	my $lpos = log_pos($node);
	my $t0   = time;
	my $h    = IPC::Run::start(
		[
			$PGBENCH, '-n', '-M', 'simple', '-c', '20', '-j', '4', '-T', $BENCH_S,
			'-f', $f, pgb_connstr($user, 'txn')
		],
		'<', '/dev/null', '>', \$out, '2>', \$err,
		IPC::Run::timeout($BENCH_S + 60));
	my %m = (act => 0, use => 0, samples => 0, cl_waiting => 0);
	while ($h->pumpable)
	{
		my ($a, $u) = split /\|/,
		  $mon->query_or_die(
			"SELECT (SELECT count(*) FROM pg_stat_activity WHERE usename = '$user'), "
			  . "(SELECT connections FROM role_guard_usage WHERE rolname = '$user')");
		$m{act} = $a if $a > $m{act};
		$m{use} = $u if $u > $m{use};
		if ($m{samples}++ % 10 == 5)
		{
			my $p = pgb_pools()->{"txn/$user"} // {};
			$m{cl_waiting} = $p->{cl_waiting}
			  if ($p->{cl_waiting} // 0) > $m{cl_waiting};
		}
		eval { $h->pump_nb };
		usleep(20_000);
	}
	my $rc = eval { $h->finish; $? >> 8 } // -1;
	$m{secs}   = time - $t0;
	$m{rc}     = $rc;
	$m{out}    = $out;
	$m{err}    = $err;
	$m{pgblog} = pgb_log_since($ppos);
	$m{log}    = log_since($node, $lpos);
	($m{xacts})  = $out =~ /number of transactions actually processed: (\d+)/;
	($m{failed}) = $out =~ /number of failed transactions: (\d+)/;
	$m{xacts}  //= 0;
	$m{failed} //= -1;
	return %m;
}

{
	my %m = bench_sampled('app');
	my $u = usage('app');
	diag sprintf(
		"1. txn pool, budget app=3, pool_size 10, 20 clients %ds: rc %d, %d transactions, %d failed; "
		  . "max sampled server connections %d (pg_stat_activity) / %d (role_guard_usage) over %d samples; "
		  . "max cl_waiting %d; role_guard_usage: connections %s, idle %s, peak %s, rejected %s",
		$BENCH_S, $m{rc}, $m{xacts}, $m{failed}, $m{act}, $m{use}, $m{samples},
		$m{cl_waiting}, $u->{connections}, $u->{idle}, $u->{peak},
		$u->{rejected});
	is($m{rc}, 0, 'app: pgbench through PgBouncer exits 0') or diag $m{err};
	is($m{failed}, 0, 'app: no failed transaction');
	cmp_ok($m{xacts}, '>', 100, 'app: transactions were processed');
	cmp_ok($m{samples}, '>=', 20, 'app: sampled during the run');
	cmp_ok($m{act}, '<=', 3, 'app: pg_stat_activity never shows more than 3 server connections');
	cmp_ok($m{use}, '<=', 3, 'app: role_guard_usage.connections never above 3');
	is($u->{peak}, '3', 'app: peak is exactly the budget');
	cmp_ok($m{cl_waiting}, '>', 0, 'app: PgBouncer queued clients (cl_waiting)');
	is($u->{connections} . '/' . $u->{idle}, '3/3',
		'app: after the run the 3 server connections stay in, idle in PgBouncer\'s pool');
	cmp_ok($u->{rejected}, '>=', 1, 'app: PgBouncer tried a 4th server login, refused');
	cmp_ok($u->{rejected}, '<=', $BENCH_S + 3,
		'app: at most about one refused login per server_login_retry (1 s)');
	my $n53300 = count_matches($m{log},
		qr/FATAL:  53300: too many connections for role "app"\n[^\n]*DETAIL:  role_guard budget "app=3" is full \(3 of 3 sessions\)\./);
	is($n53300, $u->{rejected}, 'app: one FATAL 53300 with DETAIL in the server log per refusal');
	my $nfail = count_matches($m{pgblog},
		qr/ERROR S: login failed: FATAL: too many connections for role "app"/);
	is($nfail, $u->{rejected}, 'app: PgBouncer logs each refused server login');
	my ($line) = $m{pgblog} =~ /^(.*ERROR S: login failed.*)$/m;
	diag "   PgBouncer log: " . ($line // '(none)');
	my @ev = events_where($node, { rolname => 'app', event => 'rejected' });
	is(scalar(@ev), $u->{rejected}, 'app: a rejected event per refusal');
	is(($ev[0]{client_addr} // '') . ' ' . ($ev[0]{detail} // ''),
		'127.0.0.1 role_guard budget "app=3" is full (3 of 3 sessions).',
		'app: the event has PgBouncer\'s address and the budget');
	my $b = budget_of($node, 'app', qw(budget connections rejected));
	is("$b->{budget}/$b->{connections}", '3/3', 'app: role_guard_budgets 3 of 3');
}

{
	my %m = bench_sampled('capped');
	my $u = usage('capped');
	diag sprintf(
		"2. txn pool, budget capped=3, max_user_connections 3: rc %d, %d transactions, %d failed; "
		  . "max server connections %d / %d; max cl_waiting %d; peak %s, rejected %s",
		$m{rc}, $m{xacts}, $m{failed}, $m{act}, $m{use}, $m{cl_waiting}, $u->{peak},
		$u->{rejected});
	is($m{rc} . '/' . $m{failed}, '0/0', 'capped: pgbench exits 0, no failed transaction')
	  or diag $m{err};
	cmp_ok($m{xacts}, '>', 100, 'capped: transactions were processed');
	cmp_ok($m{act}, '<=', 3, 'capped: never more than 3 server connections');
	is($u->{peak} . '/' . $u->{rejected}, '3/0',
		'capped: peak 3, and PgBouncer never tries a 4th login (rejected 0)');
	unlike($m{pgblog}, qr/login failed/, 'capped: no failed server login in PgBouncer\'s log');
}

# ---------------------------------------------------------------------------
# 3. session pooling: a 4th client session
# ---------------------------------------------------------------------------
{
	my @held;
	for my $i (1 .. 3)
	{
		my $s = bg_session($node, pgb_connstr('sess', 'sess'));
		ok($s->connected, "sess: client session $i through PgBouncer")
		  or diag $s->stderr;
		push @held, $s;
	}
	my $before = usage('sess')->{rejected};
	my $ppos   = pgb_log_pos();

	# the same 4th client twice at once: psql (for the text users see) and
	# by hand (for the SQLSTATE and the phase)
	my ($pout, $perr) = ('', '');
	my $tp = time;
	my $ph = IPC::Run::start(
		[ 'psql', '-XAtq', '-w', '-d', pgb_connstr('sess', 'sess'), '-c', 'SELECT 1' ],
		'<', '/dev/null', '>', \$pout, '2>', \$perr, IPC::Run::timeout(30));
	my $r = pgb_client('sess', 'sess', 'SELECT 1');
	eval { $ph->finish };
	my $pret = $? >> 8;
	my $psecs = time - $tp;
	diag "3. session pool, 4th session: by hand: " . client_text($r);
	diag sprintf("   psql: exit %d after %.2f s, stderr: %s", $pret, $psecs, $perr);
	is($r->{phase}, 'query', 'sess: PgBouncer lets the 4th client log in; its query waits');
	is(join(' ', map { $_ // '' } @$r{qw(severity sqlstate message)}),
		'FATAL 08P01 query_wait_timeout',
		'sess: the 4th client gets FATAL 08P01 query_wait_timeout');
	ok($r->{secs} >= $QWT - 0.5 && $r->{secs} <= $QWT + $SLACK,
		sprintf('sess: after query_wait_timeout (%.2f s, limit %d s)', $r->{secs}, $QWT));
	isnt($pret, 0, 'sess: psql fails too');
	like($perr, qr/^FATAL:  query_wait_timeout$/m, 'sess: psql shows FATAL:  query_wait_timeout');
	ok($psecs <= $QWT + $SLACK, sprintf('sess: psql done in %.2f s', $psecs));
	my $u = usage('sess');
	cmp_ok($u->{rejected} - $before, '>=', 1,
		'sess: PgBouncer retried the server login meanwhile, refused');
	cmp_ok($u->{connections}, '==', 3, 'sess: still 3 server connections');
	diag sprintf("   sess: %d refused server logins during the wait, connections %s, peak %s",
		$u->{rejected} - $before, $u->{connections}, $u->{peak});
	like(pgb_log_since($ppos), qr/closing because: query_wait_timeout/,
		'sess: PgBouncer logs "closing because: query_wait_timeout"');

	# one session leaves: a new client gets its server connection
	$held[0]->quit;
	my $t0 = time;
	my $r2 = pgb_client('sess', 'sess', 'SELECT 1', 20);
	ok($r2->{ok}, sprintf('sess: after one client left, a new one runs its query (%.2f s)', time - $t0))
	  or diag client_text($r2);
	$_->quit for @held;
}

# ---------------------------------------------------------------------------
# 4. a pool with no server connection, its role's budget full (nobody=0)
# ---------------------------------------------------------------------------
{
	my $ppos = pgb_log_pos();
	my $r1 = pgb_client('nobody', 'txn', 'SELECT 1', 20);
	my $r2 = pgb_client('nobody', 'txn', 'SELECT 1', 20);
	diag "4. empty pool, budget full (server_login_retry 1): 1st client: " . client_text($r1);
	diag "   2nd client at once: " . client_text($r2);
	is(join(' ', map { $_ // '' } @$r1{qw(phase severity sqlstate message)}),
		'login FATAL 08P01 too many connections for role "nobody"',
		'nobody: the client gets the refusal\'s text at login (PgBouncer\'s 08P01)');
	ok(!defined $r1->{detail}, 'nobody: without role_guard\'s DETAIL');
	ok($r1->{secs} < $SLACK, sprintf('nobody: at once (%.2f s)', $r1->{secs}));
	is(join(' ', map { $_ // '' } @$r2{qw(phase sqlstate message)}),
		'login 08P01 too many connections for role "nobody"',
		'nobody: 2nd client gets the same');
	ok($r2->{secs} >= 0.5 && $r2->{secs} < 1 + $SLACK,
		sprintf('nobody: 2nd after PgBouncer\'s server_login_retry, 1 s (%.2f s)', $r2->{secs}));
	my ($l) = pgb_log_since($ppos) =~ /^(.*server login failed.*)$/m;
	diag "   PgBouncer log: " . ($l // '(none)');

	# a long server_login_retry: query_wait_timeout bounds the wait
	pgb_reload(server_login_retry => 10);
	$r1 = pgb_client('nobody', 'sess', 'SELECT 1', 30);
	$r2 = pgb_client('nobody', 'sess', 'SELECT 1', 30);
	diag "   server_login_retry 10: 1st client: " . client_text($r1);
	diag "   2nd client at once: " . client_text($r2);
	is($r1->{message}, 'too many connections for role "nobody"', 'nobody, retry 10 s: 1st client refused');
	is(join(' ', map { $_ // '' } @$r2{qw(phase sqlstate message)}),
		'login 08P01 query_wait_timeout',
		'nobody, retry 10 s: 2nd client gets query_wait_timeout at login');
	ok($r2->{secs} >= $QWT - 0.5 && $r2->{secs} <= $QWT + $SLACK,
		sprintf('nobody, retry 10 s: after query_wait_timeout (%.2f s)', $r2->{secs}));
	is(usage('nobody')->{rejected}, '3', 'nobody: 3 refused server logins in all');
	pgb_reload(server_login_retry => 1);
}

# ---------------------------------------------------------------------------
# 5. reaping an idle server connection
# ---------------------------------------------------------------------------
{
	my $ppos = pgb_log_pos();
	my $c = bg_session($node, pgb_connstr('idler', 'txn'));
	ok($c->connected, 'idler: client through PgBouncer (transaction pooling)')
	  or diag $c->stderr;
	my $p1 = $c->backend_pid // 0;
	my $t0 = time;
	ok(poll_until($node,
		"SELECT count(*) FROM role_guard_events WHERE event = 'reaped_idle' AND pid = $p1",
		'1', 1 + 0.2 + $SLACK),
		'idler: the idle server connection is reaped');
	my $treap = time - $t0;
	my ($ev) = events_where($node, { pid => $p1, event => 'reaped_idle' });
	diag sprintf("5. reaped server connection pid %d (seen %.2f s after the query): client_addr %s, %s",
		$p1, $treap, $ev->{client_addr} // '', $ev->{detail} // '');
	my $pl = pgb_wait_log(qr/idler\@127\.0\.0\.1:\d+ closing because: server conn crashed\?/, $ppos, 10);
	ok(defined $pl, 'idler: PgBouncer notices and closes the server connection');
	diag "   PgBouncer log:\n" . join("\n", grep { /idler/ && /server|packet/ && !/login attempt/ } split /\n/, $pl // '');
	is(pgb_pools()->{'txn/idler'}{sv_idle}, '0', 'idler: no idle server connection left in the pool');
	my $t1 = time;
	my $p2 = $c->query('SELECT pg_backend_pid()');
	my $t2 = time - $t1;
	ok(defined $p2 && $p2 =~ /^\d+$/ && $p2 != $p1,
		sprintf('idler: the next query of the same client runs on a new server connection (%.2f s)', $t2))
	  or diag "got " . ($p2 // 'undef') . ": " . $c->stderr;
	is($c->stderr, '', 'idler: the client saw no error');
	diag sprintf("   next query: new backend pid %s in %.2f s", $p2 // '?', $t2);
	$c->quit;

	# session pooling: the client is linked to the server connection
	$ppos = pgb_log_pos();
	my $s = bg_session($node, pgb_connstr('sessidle', 'sess'));
	ok($s->connected, 'sessidle: client through PgBouncer (session pooling)') or diag $s->stderr;
	my $sp = $s->backend_pid // 0;
	ok(poll_until($node,
		"SELECT count(*) FROM role_guard_events WHERE event = 'reaped_idle' AND pid = $sp",
		'1', 1 + 0.2 + $SLACK),
		'sessidle: its server connection is reaped');
	ok(defined pgb_wait_log(qr/sessidle\@[^ ]+ closing because: server conn crashed\?/, $ppos, 10),
		'sessidle: PgBouncer closes the client too');
	my $out = $s->query('SELECT 1', 10);
	ok(!defined $out, 'sessidle: the client\'s next query fails');
	like($s->stderr,
		qr/FATAL:  terminating connection due to idle-session timeout\nDETAIL:  role_guard\.idle_timeouts allows this role 1\.0 s\.\n(?:.*\n)*.*FATAL:  server conn crashed\?/,
		'sessidle: the client gets role_guard\'s FATAL with DETAIL, then PgBouncer\'s "server conn crashed?"');
	diag "   session pooling, client stderr:\n" . $s->stderr;
	$s->quit;
}

# ---------------------------------------------------------------------------
# 5b. server_idle_timeout (1 s) below the role's idle limit (tidy=5s):
# PgBouncer closes the idle server connection itself, role_guard reaps
# nothing
# ---------------------------------------------------------------------------
{
	pgb_reload(server_idle_timeout => 1);
	my $ppos = pgb_log_pos();
	my $c = bg_session($node, pgb_connstr('tidy', 'txn'));
	ok($c->connected, 'tidy: client through PgBouncer') or diag $c->stderr;
	my $p1 = $c->backend_pid // 0;
	my $t0 = time;
	ok(poll_until($node, "SELECT count(*) FROM pg_stat_activity WHERE pid = $p1", '0', 4),
		'tidy: the server connection is gone before the 5 s limit');
	my $gone = time - $t0;
	like(pgb_log_since($ppos), qr/tidy\@127\.0\.0\.1:\d+ closing because: server idle timeout/,
		'tidy: PgBouncer closed it (server idle timeout)');
	is(scalar(events_where($node, { rolname => 'tidy' })), 0, 'tidy: no role_guard event');
	is(usage('tidy')->{reaped} . '/' . usage('tidy')->{connections}, '0/0',
		'tidy: reaped 0, connections 0');
	my $p2 = $c->query('SELECT pg_backend_pid()');
	ok(defined $p2 && $p2 =~ /^\d+$/ && $p2 != $p1, 'tidy: the next query runs on a new server connection')
	  or diag $c->stderr;
	diag sprintf("5b. server_idle_timeout 1 s < idle limit 5 s: server connection closed by PgBouncer %.2f s after the query, no reap", $gone);
	$c->quit;

	# The app pool (section 1) ended with refused logins; now it empties.
	# PgBouncer's fast-fail: the first client of a pool whose last server
	# login failed and that has no server connection is refused at once,
	# though the budget has room now; PgBouncer then opens one.
	ok(poll_until($node, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'", '0', 2 + $SLACK),
		'app: server_idle_timeout empties the pool');
	$ppos = pgb_log_pos();
	my $r1 = pgb_client('app', 'txn', 'SELECT 1', 20);
	diag "   app pool empty after refused logins, 1st client: " . client_text($r1);
	is(join(' ', map { $_ // '' } @$r1{qw(phase severity sqlstate message)}),
		'query FATAL 08P01 server login has been failing, try again later (server_login_retry)',
		'app: 1st client into the emptied pool logs in, its first query gets PgBouncer\'s fast-fail');
	ok($r1->{secs} < $SLACK, sprintf('app: at once (%.2f s)', $r1->{secs}));
	my ($fl) = pgb_log_since($ppos) =~ /^(.*server login has been failing.*)$/m;
	diag "   PgBouncer log: " . ($fl // '(none)');
	my $b4 = usage('app')->{rejected};
	ok(defined pgb_wait_log(qr/txn\/app\@127\.0\.0\.1:\d+ new connection to server/, $ppos, 10),
		'app: PgBouncer opens a server connection meanwhile');
	my $r2 = pgb_client('app', 'txn', 'SELECT 1', 20);
	ok($r2->{ok}, 'app: the next client gets in') or diag client_text($r2);
	diag sprintf("   next client: %s", client_text($r2));
	is(usage('app')->{rejected}, $b4, 'app: no new refusal');
}

# ---------------------------------------------------------------------------
# 6. superuser denial: the server sees PgBouncer's address
# ---------------------------------------------------------------------------
{
	ok(set_conf($node, 'role_guard.superuser_deny_hosts' => '127.0.0.1/32'),
		'superuser_deny_hosts = 127.0.0.1/32 (where PgBouncer runs)');
	my $ppos = pgb_log_pos();
	my $lpos = log_pos($node);
	my $want = 'a superuser may not log in from host "127.0.0.1"';

	my $r = pgb_client('admin_su', 'txn', 'SELECT 1', 20);
	diag "6. superuser through PgBouncer, by hand: " . client_text($r);
	is(join(' ', map { $_ // '' } @$r{qw(phase severity sqlstate message)}),
		"login FATAL 08P01 $want",
		'su: client as admin_su (TCP to PgBouncer) gets the denial\'s text at login');
	ok(!defined $r->{detail}, 'su: without the DETAIL');

	# forced user, client on PgBouncer's Unix socket: still 127.0.0.1 to the server
	my ($ret, $out, $err) = try_login($node, pgb_connstr('app', 'su', 'socket'), 'SELECT 1');
	diag "   client on PgBouncer's Unix socket, entry su (user=admin_su): psql: $err";
	isnt($ret, 0, 'su: client on PgBouncer\'s socket, forced user admin_su: refused');
	like($err, qr/FATAL:  \Q$want\E$/m, 'su: psql shows the denial');

	# PgBouncer -> node over the node's Unix socket: the administrators' door
	($ret, $out, $err) = try_login($node, pgb_connstr('app', 'su_sock'), 'SELECT current_user');
	is("$ret:$out", '0:admin_su',
		'su: an entry that connects over the node\'s Unix socket is never denied')
	  or diag $err;

	# a plain role through PgBouncer is admitted
	($ret, $out, $err) = try_login($node, pgb_connstr('app', 'txn'), 'SELECT current_user');
	is("$ret:$out", '0:app', 'su: plain role app still gets through') or diag $err;

	my $log = log_since($node, $lpos);
	is(count_matches($log, qr/FATAL:  28000: \Q$want\E\n[^\n]*DETAIL:  Role "admin_su" is a superuser, and role_guard\.superuser_deny_hosts lists this host\./),
		2, 'su: two FATAL 28000 with DETAIL in the server log');
	my @ev = events_where($node, { event => 'superuser_denied' });
	is(join(',', map { "$_->{rolname}\@$_->{client_addr}" } @ev),
		'admin_su@127.0.0.1,admin_su@127.0.0.1',
		'su: two superuser_denied events, both with PgBouncer\'s address');
	is(usage('admin_su')->{superuser_denied}, '2', 'su: superuser_denied = 2');
	my ($l) = pgb_log_since($ppos) =~ /^(.*server login failed.*)$/m;
	diag "   PgBouncer log: " . ($l // '(none)');
	diag "   event detail: " . ($ev[0]{detail} // '');
}

$mon->quit;
ok(pgb_stop(), 'PgBouncer stops on SIGTERM');
my $runtime = time - $t_start;
diag sprintf("runtime %.1f s", $runtime);
done_testing();
