
# Copyright: see README.md.
#
# RoleGuardTest -- shared helpers for role_guard's TAP tests (test/t/*.pl).
#
# Every wait in here is bounded in time ($RoleGuardTest::wait_seconds, 30 s
# by default, PG_TEST_TIMEOUT_DEFAULT if that is smaller) so a broken server
# makes a test fail, not hang.  Only 127.0.0.1 and the node's Unix socket are
# ever used.
#
# Load it from a test file with:
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use RoleGuardTest;
#
# Helpers that few tests need, or whose names could clash with a test's
# own, are exported only on request (@EXPORT_OK), e.g.
#   use RoleGuardTest qw(:DEFAULT wait_log);

package RoleGuardTest;

use strict;
use warnings FATAL => 'all';

use Digest::MD5 qw(md5_hex);
use Digest::SHA ();
use IO::Socket::IP;
use MIME::Base64 ();
use Exporter 'import';
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use Time::Local qw(timegm);

our @EXPORT = qw(
  rg_node tcp_connstr sock_connstr set_conf set_budgets wait_setting
  try_login poll_until poll_login_ok bg_session raw_login
  refused_ok admitted_ok log_pos log_since count_matches
  usage_of budget_of hold_ok entry_text
);
our @EXPORT_OK = qw(
  wait_log rg_standby file_text fork_at_barrier open_barrier run_pgbench
  superuser_denied_ok admitted_quietly_ok denied_counters_ok set_deny_hosts_ok
  activity_state watch_sessions reaped_in_time_ok not_early_ok reap_log_re
  ts_epoch client_gone_ok still_there_ok connect_fails_log_level
  raw_hold_ok raw_close raw_result write_hba events_where event_is
  no_event_ok monitor_session reset_stats c_new c_send_startup c_write
  c_update c_wait_any c_wait c_wait_all c_hold_ok c_close c_text
  inject_arm inject_wait inject_wake scram_login scram_result pid_gone_ok
);

our $wait_seconds = 30;
$wait_seconds = $PostgreSQL::Test::Utils::timeout_default
  if $PostgreSQL::Test::Utils::timeout_default < $wait_seconds;

# Injection points (test builds only, src/inject.h): inject_arm($node,
# 'name') makes the next backend that reaches RG_INJECT("name") stop there;
# inject_wait($node, 'name') waits until one has, and returns its pid;
# inject_wake($node, 'name', $pid) lets it go on.
sub _inject_dir
{
	my ($node) = @_;
	my $dir = $node->data_dir . '/rg_inject';
	mkdir $dir unless -d $dir;
	return $dir;
}

sub inject_arm
{
	my ($node, $name) = @_;
	my $f = _inject_dir($node) . "/$name";
	open(my $fh, '>', $f) or die "cannot arm $f: $!";
	close $fh;
	return;
}

sub inject_wait
{
	my ($node, $name, $secs) = @_;
	my $dir = _inject_dir($node);
	my $deadline = time + ($secs // $wait_seconds);
	while (1)
	{
		opendir(my $dh, $dir) or die "cannot read $dir: $!";
		my @held = grep { /^\Q$name\E\.\d+$/ } readdir($dh);
		closedir $dh;
		return ($held[0] =~ /\.(\d+)$/)[0] if @held;
		last if time > $deadline;
		usleep(20_000);
	}
	diag "no backend reached injection point $name";
	return undef;
}

sub inject_wake
{
	my ($node, $name, $pid) = @_;
	my $f = _inject_dir($node) . "/$name.$pid";
	unlink $f or die "cannot wake $f: $!";
	return;
}

# Wait until the node's backend $pid has exited (its process slot is free
# then: core counts a backend's slot until its very end); an assertion.
sub pid_gone_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($pid, $name) = @_;
	my $deadline = time + $wait_seconds;
	usleep(10_000) while kill(0, $pid) && time < $deadline;
	return ok(!kill(0, $pid), $name);
}

# A node with role_guard preloaded, listening on its Unix socket and on
# 127.0.0.1, SQLSTATEs in the server log (log_error_verbosity = verbose
# writes "FATAL:  53300: message").  %opts: budgets => '...', conf => '...'
# (more postgresql.conf lines), init => {...} (arguments for init), start =>
# 0 to leave it stopped, connect_fails => 1 when the test uses
# superuser_denied_ok (see connect_fails_log_level).
sub rg_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	my $budgets = $opts{budgets} // '';
	my $log_level =
	  $opts{connect_fails} ? connect_fails_log_level($node) : 'info';
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'role_guard'
listen_addresses = '127.0.0.1'
log_error_verbosity = verbose
log_min_messages = $log_level
role_guard.budgets = '$budgets'
} . ($opts{conf} // ''));
	$node->append_conf('pg_hba.conf',
		"host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust"
	);
	$node->start unless defined $opts{start} && !$opts{start};
	return $node;
}

# Replace the node's pg_hba.conf with $text (before it starts, or reload).
sub write_hba
{
	my ($node, $text) = @_;
	my $hba = $node->data_dir . '/pg_hba.conf';
	open(my $fh, '>', $hba) or die "cannot write $hba: $!";
	print $fh $text;
	close($fh);
	return;
}

sub _q
{
	my ($v) = @_;
	$v =~ s/\\/\\\\/g;
	$v =~ s/'/\\'/g;
	return "'$v'";
}

# libpq connection strings: over TCP to 127.0.0.1, or over the Unix socket.
sub tcp_connstr
{
	my ($node, $user, $db) = @_;
	return _connstr('127.0.0.1', $node, $user, $db);
}

sub sock_connstr
{
	my ($node, $user, $db) = @_;
	return _connstr(_q($node->host), $node, $user, $db);
}

sub _connstr
{
	my ($host, $node, $user, $db) = @_;
	$db //= 'postgres';
	return
	    "host=$host port="
	  . $node->port
	  . ' user='
	  . _q($user)
	  . ' dbname='
	  . _q($db)
	  . ' connect_timeout=20';
}

# Byte offset of the end of the server log, for log_since().
sub log_pos
{
	my ($node) = @_;
	return -s $node->logfile;
}

sub log_since
{
	my ($node, $pos) = @_;
	return slurp_file($node->logfile, $pos);
}

# Wait (bounded) until the server log after $pos matches $re; returns the
# log text after $pos, or undef (with a diag) on timeout.
sub wait_log
{
	my ($node, $re, $pos, $secs) = @_;
	$secs //= $wait_seconds;
	my $deadline = time + $secs;
	while (1)
	{
		my $text = log_since($node, $pos);
		return $text if $text =~ $re;
		last if time > $deadline;
		usleep(50_000);
	}
	diag "wait_log gave up after ${secs}s waiting for $re";
	return undef;
}

sub count_matches
{
	my ($text, $re) = @_;
	my $n = 0;
	$n++ while $text =~ /$re/g;
	return $n;
}

# The log_min_messages that PostgreSQL::Test::Cluster's connect_fails with
# log_like needs: from PostgreSQL 18 on it waits for the DEBUG2 report of
# the backend's exit.
sub connect_fails_log_level
{
	my ($node) = @_;
	return $node->pg_version >= 18 ? 'debug2' : 'info';
}

# Run $sql over $connstr with psql -c (nothing written to psql's stdin, so
# a login refused before psql reads its input cannot end in EPIPE).
# Returns (exit code, stdout, stderr); never dies on a refused login.
sub try_login
{
	my ($node, $connstr, $sql) = @_;
	$sql //= 'SELECT 1';
	my ($out, $err) = ('', '');
	my $ret;
	eval {
		IPC::Run::run(
			[
				'psql', '-XAtq', '-w', '-v', 'ON_ERROR_STOP=1',
				'-d', $connstr, '-c', $sql
			],
			'<', '/dev/null', '>', \$out, '2>', \$err,
			IPC::Run::timeout($wait_seconds));
		$ret = $? >> 8;
	};
	if ($@)
	{
		$err .= "\n$@";
		$ret = -1;
	}
	chomp $out;
	chomp $err;
	return ($ret, $out, $err);
}

# Poll $sql over the node's socket as the bootstrap superuser until it
# returns $expected; true when it did, false (with a diag) after $secs.
sub poll_until
{
	my ($node, $sql, $expected, $secs) = @_;
	$secs //= $wait_seconds;
	my $connstr =
	  'host=' . _q($node->host) . ' port=' . $node->port . ' dbname=postgres';
	my $deadline = time + $secs;
	my ($ret, $out, $err);
	while (1)
	{
		($ret, $out, $err) = try_login($node, $connstr, $sql);
		return 1 if $ret == 0 && $out eq $expected;
		last if time > $deadline;
		usleep(50_000);
	}
	diag "poll_until gave up after ${secs}s: $sql\n"
	  . "expected: $expected\ngot: $out\nstderr: $err";
	return 0;
}

# Retry a login over $connstr until one succeeds; true if one did.
sub poll_login_ok
{
	my ($node, $connstr, $secs) = @_;
	$secs //= $wait_seconds;
	my $deadline = time + $secs;
	my ($ret, $out, $err);
	while (1)
	{
		($ret, $out, $err) = try_login($node, $connstr, 'SELECT 1');
		return 1 if $ret == 0;
		last if time > $deadline;
		usleep(100_000);
	}
	diag "poll_login_ok gave up after ${secs}s: $connstr: $err";
	return 0;
}

# Append settings to postgresql.conf, reload, and wait until a new session
# sees every new value (new backends are forked by the postmaster, so once
# one shows the value the postmaster has processed the reload).
sub set_conf
{
	my ($node, %settings) = @_;
	my $text = '';
	foreach my $k (sort keys %settings)
	{
		(my $v = $settings{$k}) =~ s/'/''/g;
		$text .= "$k = '$v'\n";
	}
	$node->append_conf('postgresql.conf', $text);
	$node->reload;
	my $ok = 1;
	foreach my $k (sort keys %settings)
	{
		$ok &&= wait_setting($node, $k, $settings{$k});
	}
	return $ok;
}

sub set_budgets
{
	my ($node, $budgets) = @_;
	return set_conf($node, 'role_guard.budgets' => $budgets);
}

sub wait_setting
{
	my ($node, $name, $value) = @_;
	(my $lit = $name) =~ s/'/''/g;
	return poll_until($node, "SELECT current_setting('$lit')", $value);
}

# The row of role_guard_usage (or role_guard_budgets) as a hash of the
# columns asked for; values as psql prints them ('' for NULL).
sub usage_of
{
	my ($node, $rolname, @cols) = @_;
	return _row($node,
		"SELECT __C__ FROM role_guard_usage WHERE rolname = " . _sqlstr($rolname),
		@cols);
}

sub budget_of
{
	my ($node, $entry, @cols) = @_;
	return _row($node,
		"SELECT __C__ FROM role_guard_budgets WHERE entry = " . _sqlstr($entry),
		@cols);
}

sub _sqlstr
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

sub _row
{
	my ($node, $sql, @cols) = @_;
	my $sep = '|';
	my $list = join(", ", map { "coalesce(" . $_ . "::text, '<null>')" } @cols);
	$sql =~ s/__C__/$list/;
	my $out = $node->safe_psql('postgres', $sql);
	my %h;
	my @v = split(/\Q$sep\E/, $out, -1);
	if ($out eq '')
	{
		$h{$_} = '<norow>' for @cols;
		return \%h;
	}
	@h{@cols} = @v;
	return \%h;
}

# The columns of role_guard_events that events_where reads.
my @event_cols =
  qw(event rolname datname client_addr application_name pid detail);

# The rows of role_guard_events that match %$where, in the view's order
# (newest first), each a hash of @event_cols ('<null>' for NULL,
# client_addr as host() writes it).  %$where: column => value, or column
# => [values] for any of them; {} for every row.
sub events_where
{
	my ($node, $where) = @_;
	my $list = join(', ',
		map { $_ eq 'client_addr' ? "coalesce(host($_), '<null>')" : "coalesce(${_}::text, '<null>')" }
		  @event_cols);
	my @cond;
	foreach my $k (sort keys %$where)
	{
		my $v = $where->{$k};
		push @cond,
		  ref $v eq 'ARRAY'
		  ? "$k IN (" . join(', ', map { _sqlstr($_) } @$v) . ')'
		  : "$k = " . _sqlstr($v);
	}
	my $out = $node->safe_psql(
		'postgres',
		"SELECT $list FROM role_guard_events"
		  . (@cond ? ' WHERE ' . join(' AND ', @cond) : ''),
		extra_params => [ '-F', "\t" ]);
	my @rows;
	foreach my $line (split /\n/, $out)
	{
		my %h;
		@h{@event_cols} = split(/\t/, $line, -1);
		push @rows, \%h;
	}
	return @rows;
}

# An events_where row in one line, for a diag.
sub _event_text
{
	my ($row) = @_;
	return join(' ', map { "$_=$row->{$_}" } @event_cols);
}

# One test: exactly one role_guard_events row matches %$where (as in
# events_where, e.g. { pid => $pid, event => 'reaped_idle' }), and each
# column in %$want is what it says there: a string it equals, or a regex
# it matches.  The rows that match are in the diag when it fails.
sub event_is
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $where, $want, $name) = @_;
	my @rows = events_where($node, $where);
	my $ok   = @rows == 1;
	foreach my $k (sort keys %$want)
	{
		last unless $ok;
		die "event_is: no column $k" unless exists $rows[0]{$k};
		my $v = $rows[0]{$k};
		$ok = ref $want->{$k} eq 'Regexp' ? $v =~ $want->{$k} : $v eq $want->{$k};
	}
	ok($ok, $name)
	  or diag scalar(@rows) . " matching rows:\n"
	  . join("\n", map { _event_text($_) } @rows);
	return $ok;
}

# One test: no role_guard_events row matches %$where (as in
# events_where).
sub no_event_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $where, $name) = @_;
	return is(join("\n", map { _event_text($_) } events_where($node, $where)),
		'', $name);
}

# The messages role_guard must give.  %w: role => 'app' or db => 'limdb'
# (or both, for a role@database entry), entry => 'app=1', used => 1,
# limit => 1.
sub _primary
{
	my (%w) = @_;
	return qq{too many connections for role "$w{role}" in database "$w{db}"}
	  if defined $w{role} && defined $w{db};
	return qq{too many connections for role "$w{role}"} if defined $w{role};
	return qq{too many connections for database "$w{db}"};
}

sub _detail
{
	my (%w) = @_;
	return
	  qq{role_guard budget "$w{entry}" is full ($w{used} of $w{limit} sessions).};
}

# One login over $connstr that role_guard must refuse: psql fails, its
# stderr has the primary message and the DETAIL, and the server log has
# "FATAL:  53300: <primary>" followed by the DETAIL.
sub refused_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $connstr, $name, %w) = @_;
	my $primary = _primary(%w);
	my $detail  = _detail(%w);
	my $pos     = log_pos($node);
	my ($ret, $out, $err) = try_login($node, $connstr, 'SELECT 1');
	isnt($ret, 0, "$name: login refused");
	like(
		$err,
		qr/FATAL:\s+\Q$primary\E\n\s*DETAIL:\s+\Q$detail\E/,
		"$name: client gets message and DETAIL");
	my $log = log_since($node, $pos);
	like(
		$log,
		qr/FATAL:\s+53300: \Q$primary\E\n[^\n]*DETAIL:\s+\Q$detail\E/,
		"$name: server log has FATAL 53300 with DETAIL");
	return $ret != 0;
}

# One login over $connstr that must be admitted.  %opts: log_like and
# log_unlike, lists of regexes for the server log written meanwhile.
sub admitted_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $connstr, $name, %opts) = @_;
	my $pos = log_pos($node);
	my ($ret, $out, $err) = try_login($node, $connstr, 'SELECT 42');
	is($ret . ':' . $out, '0:42', "$name: login admitted")
	  or diag "stderr: $err";
	if ($opts{log_like} || $opts{log_unlike})
	{
		my $log = log_since($node, $pos);
		like($log, $_, "$name: log matches") for @{ $opts{log_like} // [] };
		unlike($log, $_, "$name: log does not match")
		  for @{ $opts{log_unlike} // [] };
	}
	return $ret == 0;
}

# Background session: psql reading SQL from a pipe.
sub bg_session
{
	my ($node, $connstr, %opts) = @_;
	return RoleGuardTest::Session->new($connstr, %opts);
}

# Open a background session over TCP (or over the socket with
# via => 'socket') and check that it got in.  Returns the session.
sub hold_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $user, $db, $name, %opts) = @_;
	my $via = delete $opts{via} // 'tcp';
	my $connstr =
	  $via eq 'socket'
	  ? sock_connstr($node, $user, $db)
	  : tcp_connstr($node, $user, $db);
	$connstr .= " $opts{extra}" if defined $opts{extra};
	my $s = bg_session($node, $connstr, %opts);
	ok($s->connected, $name) or diag "stderr: " . $s->stderr;
	return $s;
}

# A role name as role_guard shows it in an entry: bare when it is a plain
# lower-case identifier, else double-quoted.
sub entry_text
{
	my ($name) = @_;
	return $name if $name =~ /^[a-z_][a-z0-9_\$]*$/;
	(my $q = $name) =~ s/"/""/g;
	return qq{"$q"};
}

# A hand-made protocol-3 login over TCP, trust, md5 or SCRAM-SHA-256
# authentication.  %opts: replication ('true' or 'database': a walsender),
# password (the answer when the server asks for an MD5 password or SCRAM),
# host (the server's address, 127.0.0.1 by default, or '::1'), local (the
# client's own source address, e.g. 127.0.0.2), abandon => 'request' (hang
# up when asked for SASL, before answering) or 'continue' (after the
# server-first message), before_final and after_final (code called after
# the server-first message, before and after the client's final SCRAM
# message goes).  Returns a hash: codes (the authentication request
# codes received, in order), sock (open socket when admitted), pid (backend
# pid from BackendKeyData), severity/sqlstate/message/detail when an
# ErrorResponse came (and fields: all its fields by code, source file F,
# line L and routine R too), abandoned, else eof, timeout, or error (no
# connection, or an authentication request it cannot answer).
sub raw_login
{
	my ($node, $user, $db, %opts) = @_;
	$db //= 'postgres';
	my %r = (codes => []);
	my $sock = IO::Socket::IP->new(
		PeerHost => $opts{host} // '127.0.0.1',
		PeerPort => $node->port,
		($opts{local} ? (LocalHost => $opts{local}) : ()),
		Proto   => 'tcp',
		Timeout => 10);
	if (!$sock)
	{
		$r{error} = "raw_login: cannot connect: $@";
		return \%r;
	}
	my $params = "user\0$user\0database\0$db\0application_name\0rg_raw\0";
	$params .= "replication\0$opts{replication}\0"
	  if defined $opts{replication};
	$params .= "\0";
	my $pkt = pack('NN', 8 + length($params), 196608) . $params;
	if ((syswrite($sock, $pkt) // 0) != length($pkt))
	{
		$r{error} = 'raw_login: short write';
		close($sock);
		return \%r;
	}
	my %scram = (password => $opts{password} // '');
	my $sel      = IO::Select->new($sock);
	my $buf      = '';
	my $deadline = time + $wait_seconds;
	while (time < $deadline)
	{
		foreach my $m (_split_msgs(\$buf))
		{
			my ($type, $body) = @$m;
			if ($type eq 'R')
			{
				my ($code) = unpack('N', $body);
				push @{ $r{codes} }, $code;
				next if $code == 0 || $code == 12;
				if (($opts{abandon} // '') eq 'request' && $code == 10
					|| ($opts{abandon} // '') eq 'continue' && $code == 11)
				{
					$r{abandoned} = 1;
					close($sock);
					return \%r;
				}
				$opts{before_final}->() if $code == 11 && $opts{before_final};
				my $answer =
				  $code == 5
				  ? _md5_answer($user, $opts{password}, substr($body, 4, 4))
				  : _scram_answer(\%scram, $code, substr($body, 4));
				if (!defined $answer)
				{
					$r{error} = "raw_login: unsupported authentication request $code";
					close($sock);
					return \%r;
				}
				syswrite($sock, $answer);
				$opts{after_final}->() if $code == 11 && $opts{after_final};
			}
			elsif ($type eq 'K')
			{
				($r{pid}) = unpack('N', $body);
			}
			elsif ($type eq 'E')
			{
				my $e = _error_fields($body);
				my %key = (C => 'sqlstate', M => 'message', D => 'detail',
					V => 'severity');
				$r{ $key{$_} } = $e->{$_} foreach grep { defined $e->{$_} } keys %key;
				$r{fields} = $e;
				close($sock);
				return \%r;
			}
			elsif ($type eq 'Z')
			{
				$r{sock} = $sock;
				return \%r;
			}
		}
		next unless $sel->can_read(0.5);
		my $got = sysread($sock, my $chunk, 65536);
		if (!$got)
		{
			$r{eof} = 1;
			close($sock);
			return \%r;
		}
		$buf .= $chunk;
	}
	$r{timeout} = 1;
	close($sock);
	return \%r;
}

# The PasswordMessage answering an MD5 request with $salt.
sub _md5_answer
{
	my ($user, $password, $salt) = @_;
	my $h = 'md5' . md5_hex(md5_hex(($password // '') . $user) . $salt) . "\0";
	return pack('a N', 'p', 4 + length($h)) . $h;
}

# Take the whole protocol-3 messages off the front of $$buf: a list of
# [type, body].
sub _split_msgs
{
	my ($buf) = @_;
	my @msgs;
	while (length($$buf) >= 5)
	{
		my ($type, $len) = unpack('a N', $$buf);
		last if length($$buf) < 1 + $len;
		push @msgs, [ $type, substr($$buf, 5, $len - 4) ];
		substr($$buf, 0, 1 + $len) = '';
	}
	return @msgs;
}

# The fields of an ErrorResponse's body, by field code (C: SQLSTATE, M:
# message, D: detail, V: severity).
sub _error_fields
{
	my ($body) = @_;
	my %e;
	foreach my $f (split(/\0/, $body))
	{
		next if $f eq '';
		$e{ substr($f, 0, 1) } = substr($f, 1);
	}
	return \%e;
}

# raw_login's result in one line: 'admitted', "SQLSTATE message[ DETAIL:
# detail]", or what went wrong.
sub raw_result
{
	my ($r) = @_;
	return 'admitted' if $r->{sock};
	return ($r->{sqlstate} // '?') . ' ' . ($r->{message} // '')
	  . (defined $r->{detail} ? " DETAIL: $r->{detail}" : '')
	  if defined $r->{sqlstate};
	return $r->{error} // ($r->{eof} ? 'eof' : 'timeout');
}

# A raw_login (%opts as there) that must get in; returns its socket.
sub raw_hold_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $user, $db, $name, %opts) = @_;
	my $r = raw_login($node, $user, $db, %opts);
	ok($r->{sock}, $name) or diag raw_result($r);
	return $r->{sock};
}

# End an admitted raw session and wait (at most 10 s) until its backend
# has closed the socket: it gives its places back before that
# (before_shmem_exit).
sub raw_close
{
	my ($sock) = @_;
	return unless $sock;
	syswrite($sock, pack('a N', 'X', 4));
	my $sel      = IO::Select->new($sock);
	my $deadline = time + 10;
	while (time < $deadline)
	{
		next unless $sel->can_read(0.2);
		my $got = sysread($sock, my $chunk, 65536);
		last if !$got;
	}
	close($sock);
	return;
}

# ---------------------------------------------------------------------------
# Raw logins that do not wait for their answer: c_new opens a non-blocking
# TCP connection and writes the startup packet; the socket is read later
# (c_update, c_wait_any, c_wait), so many logins can be in flight from one
# process and the time each is answered is known.  A client is a hash:
# sock, port (its local port, which the backend's process title shows),
# user, pid (from BackendKeyData), t0 (startup packet written), state
# ('pending' until the login is answered, then 'admitted' at t_ready when
# ReadyForQuery came, 'refused' at t_done with err (an ErrorResponse's
# fields, see _error_fields), or 'eof' at t_done), msgs (the messages after
# the login's ReadyForQuery, [type, body] each), eof, closed.
# ---------------------------------------------------------------------------

# A login of $user into postgres.  %opts: app (application_name, rg_raw by
# default), db (the database, postgres by default), defer => 1 (connect
# only: c_send_startup sends the packet, e.g. for many logins at once).
sub c_new
{
	my ($node, $user, %opts) = @_;
	my $sock = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $node->port,
		Proto    => 'tcp',
		Timeout  => 10) or die "cannot connect: $!";
	$sock->blocking(0);
	my $c = {
		sock  => $sock,
		port  => $sock->sockport,
		user  => $user,
		app   => $opts{app} // 'rg_raw',
		db    => $opts{db}  // 'postgres',
		buf   => '',
		msgs  => [],
		state => 'pending',
	};
	c_send_startup($c) unless $opts{defer};
	return $c;
}

sub c_send_startup
{
	my ($c) = @_;
	my $params =
	  "user\0$c->{user}\0database\0$c->{db}\0application_name\0$c->{app}\0\0";
	$c->{t0} = time;
	return c_write($c, pack('NN', 8 + length($params), 196608) . $params);
}

# Write all of $data to the client's socket; false when the server has
# gone.
sub c_write
{
	my ($c, $data) = @_;
	local $SIG{PIPE} = 'IGNORE';
	while (length $data)
	{
		my $n = syswrite($c->{sock}, $data);
		if (!defined $n)
		{
			next if $!{EAGAIN};
			return 0;
		}
		substr($data, 0, $n) = '';
	}
	return 1;
}

# Read what has arrived (no wait) and advance the state.  Messages after
# the login's ReadyForQuery are kept in $c->{msgs}.
sub c_update
{
	my ($c) = @_;
	return if $c->{closed} || $c->{eof};
	while (1)
	{
		my $got = sysread($c->{sock}, my $chunk, 65536);
		if (!defined $got)
		{
			last if $!{EAGAIN} || $!{EWOULDBLOCK};
			$got = 0;    # ECONNRESET and the like: gone
		}
		if ($got == 0)
		{
			$c->{eof} = 1;
			last;
		}
		$c->{buf} .= $chunk;
	}
	my $now = time;
	foreach my $m (_split_msgs(\$c->{buf}))
	{
		my ($type, $body) = @$m;
		if ($c->{state} ne 'pending')
		{
			push @{ $c->{msgs} }, $m;
			next;
		}
		if ($type eq 'K')
		{
			($c->{pid}) = unpack('N', $body);
		}
		elsif ($type eq 'E')
		{
			$c->{err}    = _error_fields($body);
			$c->{state}  = 'refused';
			$c->{t_done} = $now;
		}
		elsif ($type eq 'Z')
		{
			$c->{state}   = 'admitted';
			$c->{t_ready} = $now;
		}
	}
	if ($c->{eof} && $c->{state} eq 'pending')
	{
		$c->{state}  = 'eof';
		$c->{t_done} = $now;
	}
	return;
}

# Wait (at most $secs) until one of @$cs is no longer pending; returns
# those that changed.
sub c_wait_any
{
	my ($cs, $secs) = @_;
	my $deadline = time + $secs;
	while (1)
	{
		my @p = grep { $_->{state} eq 'pending' } @$cs;
		return () unless @p;
		IO::Select->new(map { $_->{sock} } @p)->can_read(0.02);
		my @changed;
		foreach my $c (@p)
		{
			c_update($c);
			push @changed, $c if $c->{state} ne 'pending';
		}
		return @changed if @changed;
		return () if time > $deadline;
	}
}

# Wait (at most $secs, 15 by default) until $c is answered; returns its
# state.
sub c_wait
{
	my ($c, $secs) = @_;
	c_wait_any([$c], $secs // 15);
	return $c->{state};
}

# Wait (at most $secs in all) until none of @$cs is pending.
sub c_wait_all
{
	my ($cs, $secs) = @_;
	my $deadline = time + $secs;
	while (time < $deadline)
	{
		last unless c_wait_any($cs, $deadline - time);
	}
	return;
}

# A c_new login of $user that must get in (a holder); returns the client.
sub c_hold_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $user, $name) = @_;
	my $c = c_new($node, $user);
	is(c_wait($c), 'admitted', $name) or diag c_text($c);
	return $c;
}

# End a session with Terminate (a pending login: just close).
sub c_close
{
	my ($c) = @_;
	return if $c->{closed};
	c_write($c, pack('a N', 'X', 4)) if $c->{state} eq 'admitted';
	close($c->{sock});
	$c->{closed} = 1;
	return;
}

# A client in one line: "state STATE[, SQLSTATE message][, DETAIL: detail]".
sub c_text
{
	my ($c) = @_;
	my $e = $c->{err} // {};
	return "state $c->{state}"
	  . (defined $e->{C} ? ", $e->{C} $e->{M}" : '')
	  . (defined $e->{D} ? ", DETAIL: $e->{D}" : '');
}

# A streaming standby of $primary named $name, started.  It is made from
# a cold file-system copy rather than $primary->backup: that needs a
# pg_basebackup of the server's major, which test/run has only for 15 (the
# 17 and 18 servers come without client programs, see test/pgversions.sh),
# so $primary is stopped and started again.  It streams as role repl (the
# primary must have it, and let it in) with application_name $name.
# %opts: conf => more postgresql.conf lines for the standby.
sub rg_standby
{
	my ($primary, $name, %opts) = @_;
	$primary->stop;
	$primary->backup_fs_cold('bk');
	$primary->start;
	my $standby = PostgreSQL::Test::Cluster->new($name);
	$standby->init_from_backup($primary, 'bk', has_streaming => 1);
	my ($phost, $pport) = ($primary->host, $primary->port);
	$standby->append_conf(
		'postgresql.conf', qq{
primary_conninfo = 'host=''$phost'' port=$pport user=repl application_name=$name'
} . ($opts{conf} // ''));
	$standby->start;
	return $standby;
}

# The text of file $f, '' when there is none.
sub file_text
{
	my ($f) = @_;
	return -e $f ? slurp_file($f) : '';
}

# Simultaneous logins: fork a child that waits (at most 60 s) until the
# file "$dir/go" exists, then execs @cmd with its stdout and stderr going
# to "$dir/out.$i" and "$dir/err.$i".  Returns the child's pid;
# open_barrier($dir) lets every child waiting on $dir go.
sub fork_at_barrier
{
	my ($dir, $i, @cmd) = @_;
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	return $pid if $pid != 0;
	# Child: no Perl-level exit (END blocks would stop the node).
	open(STDOUT, '>', "$dir/out.$i") or POSIX::_exit(126);
	open(STDERR, '>', "$dir/err.$i") or POSIX::_exit(126);
	my $deadline = time + 60;
	select(undef, undef, undef, 0.005)
	  until -e "$dir/go" || time > $deadline;
	{
		no warnings 'exec';
		exec(@cmd);
	}
	POSIX::_exit(127);
}

sub open_barrier
{
	my ($dir) = @_;
	open(my $fh, '>', "$dir/go") or die "cannot create $dir/go: $!";
	close($fh);
	return;
}

# pgbench -n -M $mode -c 1 -t $xacts over $connstr, running the SQL script
# $script (written to a file in the node's directory).  Returns (true if
# pgbench ran and exited 0, its stdout, its stderr, the error if it could
# not be run or timed out).
sub run_pgbench
{
	my ($node, $connstr, $mode, $xacts, $script) = @_;
	my $f = $node->basedir . "/bench_$mode.sql";
	open(my $fh, '>', $f) or die "cannot write $f: $!";
	print $fh $script;
	close $fh;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run(
			[
				'pgbench', '-n', '-M', $mode, '-c', '1', '-t', $xacts,
				'-f', $f, $connstr
			],
			'<', '/dev/null', '>', \$out, '2>', \$err,
			IPC::Run::timeout($wait_seconds));
	};
	return ($ok, $out, $err, $@);
}

# ---------------------------------------------------------------------------
# role_guard.superuser_deny_hosts: connect_fails / connect_ok checks
# (PostgreSQL::Test::Cluster), exported on request.
# ---------------------------------------------------------------------------

# One login that role_guard must deny as a superuser's: the client gets the
# message and DETAIL, the server log has role_guard's LOG line and FATAL
# 28000 with the DETAIL.  %w: role, host (the client's address), member_of
# (the superuser role, for a member's DETAIL), app (application_name the
# LOG line must name; any when not given).
sub superuser_denied_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $connstr, $name, %w) = @_;
	my ($role, $host) = ($w{role}, $w{host});
	my $detail =
	  defined $w{member_of}
	  ? qq{Role "$role" is a member of superuser role "$w{member_of}", and role_guard.superuser_deny_hosts lists this host.}
	  : qq{Role "$role" is a superuser, and role_guard.superuser_deny_hosts lists this host.};
	my $app = defined $w{app} ? qr/\Q$w{app}\E/ : qr/[^"]*/;
	$node->connect_fails(
		$connstr, $name,
		expected_stderr =>
		  qr/FATAL:\s+a superuser may not log in from host "\Q$host\E"\n\s*DETAIL:\s+\Q$detail\E/,
		log_like => [
			qr/LOG:\s+(?:00000: )?role_guard: superuser login refused: role "\Q$role\E", host "\Q$host\E", application_name "$app"/,
			qr/FATAL:\s+28000: a superuser may not log in from host "\Q$host\E"\n[^\n]*DETAIL:\s+\Q$detail\E/,
		]);
	return;
}

# One login that must get in, with no role_guard superuser line in the
# log.  %o: sql (default SELECT 42), stdout (regex, default its 42).
sub admitted_quietly_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $connstr, $name, %o) = @_;
	$node->connect_ok(
		$connstr, $name,
		sql => $o{sql} // 'SELECT 42',
		expected_stdout => $o{stdout} // qr/^42$/,
		log_unlike => [ qr/role_guard: superuser login/, qr/may not log in/ ]
	);
	return;
}

# role_guard_usage.superuser_denied of each of @roles is what %$denied
# (role => expected count) says.
sub denied_counters_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $name, $denied, @roles) = @_;
	my (@got, @want);
	foreach my $r (@roles)
	{
		my $v = usage_of($node, $r, 'superuser_denied')->{superuser_denied};
		push @got,  "$r=" . ($v eq '<norow>' ? 0 : $v);
		push @want, "$r=" . ($denied->{$r} // 0);
	}
	is(join(' ', @got), join(' ', @want),
		"$name: role_guard_usage.superuser_denied per role");
	return;
}

sub set_deny_hosts_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($node, $value) = @_;
	ok(set_conf($node, 'role_guard.superuser_deny_hosts' => $value),
		"reload with superuser_deny_hosts = '$value'");
	return;
}

# ---------------------------------------------------------------------------
# The reaper: idle sessions watched until they go, exported on request.
#
# A case is one session's idle period, a hash: name, s (its Session), node,
# pid, t_s (client time before it sent its last statement, plus how long
# that statement takes at least), t0 (client time after the result), sc
# (its state_change, server epoch, '' if unknown); for a session that must
# be reaped: role, limit (s), kind ('idle' or 'idle in transaction'),
# after_reload (already idle past a limit that a reload just lowered); for
# one that must stay: until (s after t0).
# ---------------------------------------------------------------------------

# The monitor of a reaper test: a session of the bootstrap superuser
# (postgres) over the Unix socket, so never on a superuser_deny_hosts host;
# give postgres a 0 entry wherever a '*' idle limit is set.  Dies when it
# does not start; ask through its query_or_die.
sub monitor_session
{
	my ($node) = @_;
	my $mon = bg_session($node, sock_connstr($node, 'postgres'));
	die "monitor session did not start: " . $mon->stderr
	  unless $mon->connected;
	return $mon;
}

# Clear role_guard's counters and events (role_guard_reset()) through the
# session $mon (a monitor_session).
sub reset_stats
{
	my ($mon) = @_;
	$mon->query_or_die('SELECT role_guard_reset()');
	return;
}

# (state_change as a server epoch, state) of backend $pid, asked through
# $query->($node, $sql); '' for what pg_stat_activity does not give.
sub activity_state
{
	my ($query, $node, $pid) = @_;
	return split /\|/,
	  $query->(
		$node,
		"SELECT coalesce(extract(epoch FROM state_change)::text, ''), coalesce(state, '')
	      FROM pg_stat_activity WHERE pid = $pid"), -1;
}

# Watch the cases in @$reap (each must be gone from pg_stat_activity by its
# due time: t0 + limit + interval + slack, or t0 + interval + slack after a
# reload) and in @$live (each must still be there until s after t0), all
# at once, asking each case's node through $query->($node, $sql).  Sets
# due, seen_q (client time before the last query that saw it) and gone_t
# (client time after the first that did not).  %o: interval (the
# reap_interval, s), slack (s).
sub watch_sessions
{
	my ($reap, $live, $query, %o) = @_;
	my $deadline = 0;
	for my $c (@$reap)
	{
		# already idle past the limit when a reload lowered it: one interval
		$c->{due} =
		    $c->{t0}
		  + ($c->{after_reload} ? 0 : $c->{limit})
		  + $o{interval}
		  + $o{slack};
		$deadline = $c->{due} if $c->{due} > $deadline;
	}
	for my $c (@$live)
	{
		my $d = $c->{t0} + $c->{until};
		$deadline = $d if $d > $deadline;
	}
	# reap cases not done by their due time get watched a while longer, to
	# tell "late" from "never"
	my $hard = $deadline + 5;
	while (time < $hard)
	{
		my @rp = grep { !defined $_->{gone_t} } @$reap;
		my @lp =
		  grep { !defined $_->{gone_t} && ($_->{seen_q} // 0) < $_->{t0} + $_->{until} }
		  @$live;
		last unless @rp || @lp;
		last if !@rp && time > $deadline + 1;
		my (@nodes, %cases);
		for my $c (@rp, @lp)
		{
			push @nodes, $c->{node} unless $cases{ $c->{node} };
			push @{ $cases{ $c->{node} } }, $c;
		}
		for my $node (@nodes)
		{
			my @c   = @{ $cases{$node} };
			my $t_q = time;
			my %alive = map { $_ => 1 } split /\n/,
			  $query->(
				$node,
				"SELECT pid FROM pg_stat_activity WHERE pid IN ("
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
	return;
}

# When a reap case's session was seen, relative to its t0.
sub reap_timing
{
	my ($c) = @_;
	my $rel = sub { defined $_[0] ? sprintf('%.2f s', $_[0] - $c->{t0}) : 'never' };
	return "pid $c->{pid}, limit $c->{limit} s; after "
	  . ($c->{after_reload} ? "the reload" : "its last statement")
	  . ": last seen alive "
	  . $rel->($c->{seen_q}) . ", seen gone " . $rel->($c->{gone_t});
}

# The reap case's session went by its due time ($slack: as watched).
sub reaped_in_time_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($c, $slack) = @_;
	my $ok = ok(defined $c->{gone_t} && $c->{gone_t} <= $c->{due},
		"$c->{name}: reaped within limit + interval + ${slack}s")
	  or diag reap_timing($c);
	return $ok;
}

# Not reaped before its limit, as seen from the client: still there at
# limit - 0.5 s, or at least not gone before the limit had passed since it
# sent its last statement ($why: what to say when it was not seen then).
# Nothing to check after a reload lowered the limit.
sub not_early_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($c, $why) = @_;
	my $n = $c->{name};
	if ($c->{after_reload})
	{
		# the limit passed before the reload: nothing to check
	}
	elsif (defined $c->{seen_q} && $c->{seen_q} >= $c->{t0} + $c->{limit} - 0.5)
	{
		pass("$n: still there at limit - 0.5 s");
	}
	elsif (defined $c->{gone_t} && $c->{gone_t} < $c->{t_s} + $c->{limit})
	{
		fail("$n: still there at limit - 0.5 s");
		diag "reaped before its limit: " . reap_timing($c);
	}
	else
	{
		pass("$n: still there at limit - 0.5 s (not observed: $why)");
		diag reap_timing($c);
	}
	return;
}

# The reaper's LOG line for the session of $role with backend $pid, idle
# ($kind: 'idle' or 'idle in transaction'); captures its timestamp (UTC,
# as log_timezone = 'UTC' writes it), the idle time and the limit.
sub reap_log_re
{
	my ($role, $pid, $kind) = @_;
	return
	  qr/^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC \[\d+\] [^\n]*?LOG:\s+(?:\w{5}: )?role_guard: terminating session of role "\Q$role\E" \(pid $pid\): \Q$kind\E for ([\d.]+) s, limit ([\d.]+) s$/m;
}

# A log timestamp ('2024-01-02 03:04:05.678', UTC) as an epoch.
sub ts_epoch
{
	my ($ts) = @_;
	my ($Y, $M, $D, $h, $m, $s, $f) =
	  $ts =~ /^(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)(\.\d+)?$/
	  or return undef;
	return timegm($s, $m, $h, $D, $M - 1, $Y) + ($f // 0);
}

# The reaped session's client: its connection is gone, with the FATAL.
# Ends its psql.
sub client_gone_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($c) = @_;
	my $n = $c->{name};
	my $r = $c->{s}->query('SELECT 1', 10);
	ok(!defined $r, "$n: the client's connection is gone");
	# core's own idle-timeout message and a DETAIL naming role_guard's setting
	my $iit = ($c->{kind} // 'idle') eq 'idle in transaction';
	my ($msg, $setting) =
	  $iit
	  ? ('idle-in-transaction timeout', 'idle_in_transaction_timeouts')
	  : ('idle-session timeout', 'idle_timeouts');
	my $limit = sprintf('%.1f', $c->{limit});
	like($c->{s}->stderr,
		qr/FATAL:\s+terminating connection due to \Q$msg\E\nDETAIL:\s+role_guard\.\Q$setting\E allows this role \Q$limit\E s\./,
		"$n: the client got FATAL terminating connection due to $msg, with role_guard's DETAIL");
	$c->{s}->quit;
	return;
}

# A live case: seen until its time was up, and no LOG line terminating it
# in $log.
sub still_there_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($c, $log) = @_;
	my $n = $c->{name};
	ok(!defined $c->{gone_t} && ($c->{seen_q} // 0) >= $c->{t0} + $c->{until},
		sprintf("%s: still there %.1f s after its last statement", $n, $c->{until}))
	  or diag sprintf("seen alive at %s, gone at %s",
		  map { defined $_ ? sprintf('%.2f s', $_ - $c->{t0}) : 'never' } $c->{seen_q},
		  $c->{gone_t});
	unlike($log, qr/terminating session of role "[^"]*" \(pid $c->{pid}\)/,
		"$n: no LOG line terminating it");
	return;
}

# ---------------------------------------------------------------------------
# SCRAM-SHA-256 logins by hand (login blocks, test/t/085 and 086): every
# authentication request the server sends is kept, so that a test sees
# exactly what a client learns, and a client can leave at any step or come
# from another source address.
# ---------------------------------------------------------------------------

my %scram_salted;    # "password\0salt\0iterations" => SaltedPassword

# SCRAM's Hi(): PBKDF2 with HMAC-SHA-256 (RFC 5802), remembered per
# password, salt and iteration count (a storm of logins computes it once).
sub _scram_salted
{
	my ($password, $salt, $iter) = @_;
	my $k = join("\0", $password, $salt, $iter);
	return $scram_salted{$k} if exists $scram_salted{$k};
	my $u = Digest::SHA::hmac_sha256($salt . pack('N', 1), $password);
	my $hi = $u;
	for (2 .. $iter)
	{
		$u = Digest::SHA::hmac_sha256($u, $password);
		$hi ^= $u;
	}
	return $scram_salted{$k} = $hi;
}

# The client-final message for server-first $sfirst.
sub _scram_final
{
	my ($password, $cfirst_bare, $sfirst) = @_;
	my %f = map { /^(\w)=(.*)$/s ? ($1, $2) : () } split(/,/, $sfirst);
	my $salted =
	  _scram_salted($password, MIME::Base64::decode_base64($f{s}), $f{i});
	my $ckey = Digest::SHA::hmac_sha256('Client Key', $salted);
	my $without_proof = "c=biws,r=$f{r}";
	my $sig = Digest::SHA::hmac_sha256("$cfirst_bare,$sfirst,$without_proof",
		Digest::SHA::sha256($ckey));
	return "$without_proof,p=" . MIME::Base64::encode_base64($ckey ^ $sig, '');
}

# What the client writes after authentication request $code ($body after
# the code): undef when it has nothing to say.
sub _scram_answer
{
	my ($st, $code, $body) = @_;
	if ($code == 10)    # AuthenticationSASL: the mechanisms
	{
		$st->{cfirst_bare} = 'n=,r=' . MIME::Base64::encode_base64(
			join('', map { chr(int(rand(256))) } 1 .. 18), '');
		my $cfirst = "n,,$st->{cfirst_bare}";
		my $b = "SCRAM-SHA-256\0" . pack('N', length($cfirst)) . $cfirst;
		return pack('a N', 'p', 4 + length($b)) . $b;
	}
	if ($code == 11)    # AuthenticationSASLContinue: server-first
	{
		my $b = _scram_final($st->{password}, $st->{cfirst_bare}, $body);
		return pack('a N', 'p', 4 + length($b)) . $b;
	}
	return undef;
}

# One SCRAM login of $user with $password over TCP to $node (raw_login,
# %opts as there), the connection closed before it returns; the result as
# raw_login's, admitted => 1 when it got in.
sub scram_login
{
	my ($node, $user, $password, %opts) = @_;
	my $r = raw_login($node, $user, 'postgres', %opts, password => $password);
	if ($r->{sock})
	{
		$r->{admitted} = 1;
		syswrite($r->{sock}, pack('a N', 'X', 4));
		close(delete $r->{sock});
	}
	return $r;
}

# A scram_login result in one line: what the client saw.
sub scram_result
{
	my ($r) = @_;
	return 'auth[' . join(',', @{ $r->{codes} }) . '] '
	  . ($r->{admitted} ? 'admitted' : $r->{abandoned} ? 'abandoned' : raw_result($r));
}

package RoleGuardTest::Session;

use strict;
use warnings FATAL => 'all';

use IPC::Run;
use Time::HiRes qw(usleep time);

# A psql reading SQL from a pipe.  %opts: first_sql (run instead of SELECT
# pg_backend_pid() to see the login through), no_query => 1 (send nothing:
# connected and backend_pid stay unknown), env => { NAME => value } (for
# psql, e.g. PGOPTIONS).
sub new
{
	my ($class, $connstr, %opts) = @_;
	my $self = bless {
		in      => '',
		out     => '',
		err     => '',
		n       => 0,
		connstr => $connstr,
	}, $class;
	local %ENV = %ENV;
	$ENV{$_} = $opts{env}{$_} for keys %{ $opts{env} // {} };
	my @cmd = ('psql', '-XAtq', '-w', '-d', $connstr, '-f', '-');
	$self->{h} = IPC::Run::start(\@cmd, '<', \$self->{in}, '>',
		\$self->{out}, '2>', \$self->{err});
	return $self if $opts{no_query};
	if (defined $opts{first_sql})
	{
		# e.g. IDENTIFY_SYSTEM on a physical replication connection
		my $out = $self->query($opts{first_sql});
		$self->{connected} = 1 if defined $out && $out ne '';
	}
	else
	{
		my $pid = $self->query('SELECT pg_backend_pid()');
		if (defined $pid && $pid =~ /^\d+$/)
		{
			$self->{backend_pid} = $pid;
			$self->{connected}   = 1;
		}
	}
	if (!$self->{connected})
	{
		$self->{connected} = 0;
		$self->_reap;
	}
	return $self;
}

sub connected { return $_[0]->{connected}; }
sub stderr    { return $_[0]->{err}; }

# The backend's pid; a session started with no_query can be told it (found
# in pg_stat_activity, say).
sub backend_pid
{
	my ($self, $pid) = @_;
	$self->{backend_pid} = $pid if @_ > 1;
	return $self->{backend_pid};
}

# Queue $sql followed by an \echo marker; returns the marker.
sub start_query
{
	my ($self, $sql) = @_;
	my $marker = "rg_session_done_" . ++$self->{n};
	$self->{out} = '';
	$self->send_raw("$sql;\n\\echo $marker\n");
	return $marker;
}

# Wait for the marker; the output before it (chomped), or undef if psql
# exited or $secs passed.
sub wait_query
{
	my ($self, $marker, $secs) = @_;
	my $deadline = time + ($secs // $RoleGuardTest::wait_seconds);
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

# Run $sql, return its output (chomped), or undef if psql went away or the
# wait timed out.
sub query
{
	my ($self, $sql, $secs) = @_;
	return undef unless $self->{h}->pumpable;
	return $self->wait_query($self->start_query($sql), $secs);
}

# query() for a session the test cannot go on without (a monitor): dies
# when psql went away or the wait timed out.
sub query_or_die
{
	my ($self, $sql, $secs) = @_;
	my $out = $self->query($sql, $secs);
	die "monitor session lost: " . $self->stderr unless defined $out;
	return $out;
}

# Send $sql without waiting for its result.
sub send
{
	my ($self, $sql) = @_;
	$self->send_raw("$sql;\n");
	return;
}

# Send raw text to psql's stdin (COPY data, say).
sub send_raw
{
	my ($self, $text) = @_;
	$self->{in} .= $text;
	eval { $self->{h}->pump_nb if $self->{h}->pumpable; };
	return;
}

# Has psql exited (for instance because its backend was terminated)?
sub alive
{
	my ($self) = @_;
	eval { $self->{h}->pump_nb if $self->{h}->pumpable; };
	return $self->{h}->pumpable ? 1 : 0;
}

sub _reap
{
	my ($self) = @_;
	my $deadline = time + $RoleGuardTest::wait_seconds;
	while ($self->{h}->pumpable && time < $deadline)
	{
		eval { $self->{h}->pump_nb; };
		usleep(10_000);
	}
	if ($self->{h}->pumpable)
	{
		$self->{h}->kill_kill;
	}
	else
	{
		eval { $self->{h}->finish; };
	}
	$self->{done} = 1;
	return;
}

# \q and wait for psql to exit.
sub quit
{
	my ($self) = @_;
	return if $self->{done};
	$self->{in} .= "\\q\n" if $self->{h}->pumpable;
	$self->_reap;
	return;
}

# SIGKILL the psql client: the backend loses its client without a
# Terminate message.
sub kill_client
{
	my ($self) = @_;
	return if $self->{done};
	$self->{h}->signal('KILL');
	$self->_reap;
	return;
}

sub DESTROY
{
	my ($self) = @_;
	local ($@, $?);
	eval { $self->{h}->kill_kill if !$self->{done} && $self->{h}->pumpable; };
	return;
}

1;

# ===========================================================================
# RoleGuardTest::Wire: the extended query protocol over raw_login's socket
# (Parse/Bind/Describe/Execute/Close/Sync, simple Query), without waiting
# unless asked.
#
#   my $w = RoleGuardTest::Wire->new($node, $user);   # dies if refused
#   $w->send($w->parse('S1', 'SELECT $1::int', 23), $w->bind('P1', 'S1', '7'),
#            $w->execute('P1', 1), $w->sync);
#   my $msgs = $w->wait_ready(1);   # [[type, body], ...] up to 1 ReadyForQuery
#   $w->rows($msgs);                # DataRows, each as "col|col"
#   $w->error($msgs);               # the first ErrorResponse's fields, or undef
# poll() reads what has come without blocking and tells how many
# ReadyForQuery messages are waiting; is_eof() says the server closed.
# ===========================================================================
package RoleGuardTest::Wire;

use strict;
use warnings FATAL => 'all';

use IO::Select;
use Time::HiRes qw(time);

# A raw_login of $user into $db (postgres by default) that must get in.
sub new
{
	my ($class, $node, $user, $db) = @_;
	my $r = RoleGuardTest::raw_login($node, $user, $db);
	die "RoleGuardTest::Wire: login of $user refused: "
	  . RoleGuardTest::raw_result($r)
	  unless $r->{sock};
	return bless {
		sock => $r->{sock},
		pid  => $r->{pid},
		buf  => '',
		msgs => [],
		nz   => 0,
		eof  => 0,
	}, $class;
}

# The backend's pid; has the server closed the connection?
sub pid { return $_[0]->{pid}; }
sub is_eof { return $_[0]->{eof}; }

# One message: type byte, length, body.
sub _msg
{
	my ($type, $body) = @_;
	return $type . pack('N', 4 + length($body)) . $body;
}

# Message builders: each returns the bytes of one message.
sub parse
{
	my ($self, $stmt, $sql, @oids) = @_;
	return _msg('P', "$stmt\0$sql\0" . pack('n', scalar @oids) . join('', map { pack('N', $_) } @oids));
}

# Values as the protocol sends them: count, then each length and bytes
# (undef: NULL, length -1).
sub _values
{
	my @v = @_;
	return pack('n', scalar @v)
	  . join('', map { defined $_ ? pack('N', length($_)) . $_ : pack('l>', -1) } @v);
}

# Parameters in text format (undef: NULL); results in text format.
sub bind
{
	my ($self, $portal, $stmt, @params) = @_;
	return _msg('B', "$portal\0$stmt\0" . pack('n', 0) . _values(@params) . pack('n', 0));
}

sub describe_portal { my ($self, $portal) = @_; return _msg('D', "P$portal\0"); }
sub execute { my ($self, $portal, $max) = @_; return _msg('E', "$portal\0" . pack('N', $max // 0)); }
sub close_portal { my ($self, $portal) = @_; return _msg('C', "P$portal\0"); }
sub sync    { return _msg('S', ''); }
sub query   { my ($self, $sql) = @_; return _msg('Q', "$sql\0"); }

# A fast-path FunctionCall of function $oid, arguments and result in text
# format (undef: NULL): core answers with FunctionCallResponse (V) and
# ReadyForQuery, through neither the executor nor ProcessUtility.
sub function_call
{
	my ($self, $oid, @args) = @_;
	return _msg('F', pack('N', $oid) . pack('nn', 1, 0) . _values(@args) . pack('n', 0));
}

# Send the messages @msgs (no wait for an answer); false when the
# connection is gone.
sub send
{
	my ($self, @msgs) = @_;
	my $data = join('', @msgs);
	local $SIG{PIPE} = 'IGNORE';
	while (length $data)
	{
		my $n = syswrite($self->{sock}, $data);
		if (!defined $n || $n == 0)
		{
			$self->{eof} = 1;
			return 0;
		}
		substr($data, 0, $n) = '';
	}
	return 1;
}

# Read whatever has arrived (waiting at most $secs, 0 by default); returns
# the number of ReadyForQuery messages received and not yet taken.
sub poll
{
	my ($self, $secs) = @_;
	my $sel = IO::Select->new($self->{sock});
	while (!$self->{eof} && $sel->can_read($secs // 0))
	{
		my $got = sysread($self->{sock}, my $chunk, 65536);
		if (!$got)
		{
			$self->{eof} = 1;
			last;
		}
		$self->{buf} .= $chunk;
		$secs = 0;
	}
	foreach my $m (RoleGuardTest::_split_msgs(\$self->{buf}))
	{
		push @{ $self->{msgs} }, $m;
		$self->{nz}++ if $m->[0] eq 'Z';
	}
	return $self->{nz};
}

# Take the messages received up to and including the $n-th ReadyForQuery
# (1 by default) if they are all there, else undef.
sub take_ready
{
	my ($self, $n) = @_;
	$n //= 1;
	return undef if $self->{nz} < $n;
	my @out;
	my $z = 0;
	while (@{ $self->{msgs} })
	{
		my $m = shift @{ $self->{msgs} };
		push @out, $m;
		if ($m->[0] eq 'Z')
		{
			$self->{nz}--;
			last if ++$z == $n;
		}
	}
	return \@out;
}

# take_ready once the messages are all there (waiting at most $secs);
# undef on EOF or timeout (what came stays readable with pending()).
sub wait_ready
{
	my ($self, $n, $secs) = @_;
	$n //= 1;
	my $deadline = time + ($secs // $RoleGuardTest::wait_seconds);
	while ($self->poll(0.05) < $n)
	{
		return undef if $self->{eof} || time > $deadline;
	}
	return $self->take_ready($n);
}

# Messages received but not taken (after EOF, say).
sub pending { return $_[0]->{msgs}; }

# The DataRows in $msgs, each as "col|col" (NULL as '').
sub rows
{
	my ($self, $msgs) = @_;
	my @rows;
	foreach my $m (@$msgs)
	{
		next unless $m->[0] eq 'D';
		my $body = $m->[1];
		my $n = unpack('n', $body);
		my $off = 2;
		my @cols;
		for (1 .. $n)
		{
			my $len = unpack('l>', substr($body, $off, 4));
			$off += 4;
			if ($len < 0) { push @cols, ''; next; }
			push @cols, substr($body, $off, $len);
			$off += $len;
		}
		push @rows, join('|', @cols);
	}
	return @rows;
}

# Transaction status of the last ReadyForQuery in $msgs: I, T or E.
sub status
{
	my ($self, $msgs) = @_;
	my @z = grep { $_->[0] eq 'Z' } @$msgs;
	return @z ? $z[-1][1] : undef;
}

# The fields of the first ErrorResponse in $msgs by field code (C, M, ...),
# or undef.
sub error
{
	my ($self, $msgs) = @_;
	foreach my $m (@$msgs)
	{
		return RoleGuardTest::_error_fields($m->[1]) if $m->[0] eq 'E';
	}
	return undef;
}

# Send Terminate (unless the server closed) and close the socket.
sub terminate
{
	my ($self) = @_;
	return if $self->{closed};
	$self->send(_msg('X', '')) unless $self->{eof};
	close($self->{sock});
	$self->{closed} = 1;
	return;
}

1;
