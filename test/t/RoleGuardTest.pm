
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

package RoleGuardTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(
  rg_node tcp_connstr sock_connstr set_conf set_budgets wait_setting
  try_login poll_until poll_login_ok bg_session raw_login
  refused_ok admitted_ok log_pos log_since count_matches
  usage_of budget_of hold_ok entry_text
);
our @EXPORT_OK = qw(wait_log);

our $wait_seconds = 30;
$wait_seconds = $PostgreSQL::Test::Utils::timeout_default
  if $PostgreSQL::Test::Utils::timeout_default < $wait_seconds;

# A node with role_guard preloaded, listening on its Unix socket and on
# 127.0.0.1, SQLSTATEs in the server log (log_error_verbosity = verbose
# writes "FATAL:  53300: message").  %opts: budgets => '...', conf => '...'
# (more postgresql.conf lines), init => {...} (arguments for init), start =>
# 0 to leave it stopped.
sub rg_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} });
	my $budgets = $opts{budgets} // '';
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'role_guard'
listen_addresses = '127.0.0.1'
log_error_verbosity = verbose
log_min_messages = info
role_guard.budgets = '$budgets'
} . ($opts{conf} // ''));
	$node->append_conf('pg_hba.conf',
		"host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust"
	);
	$node->start unless defined $opts{start} && !$opts{start};
	return $node;
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
	$db //= 'postgres';
	return
	    'host=127.0.0.1 port='
	  . $node->port
	  . ' user='
	  . _q($user)
	  . ' dbname='
	  . _q($db)
	  . ' connect_timeout=20';
}

sub sock_connstr
{
	my ($node, $user, $db) = @_;
	$db //= 'postgres';
	return
	    'host='
	  . _q($node->host)
	  . ' port='
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

# A hand-made protocol-3 login over TCP (trust authentication).  Returns a
# hash: sock (open socket when admitted), pid (backend pid from
# BackendKeyData), sqlstate/message/detail when an ErrorResponse came.
sub raw_login
{
	my ($node, $user, $db) = @_;
	$db //= 'postgres';
	my %r;
	my $sock = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $node->port,
		Proto    => 'tcp',
		Timeout  => 10) or die "raw_login: cannot connect: $!";
	my $params = "user\0$user\0database\0$db\0application_name\0rg_raw\0\0";
	my $pkt = pack('NN', 8 + length($params), 196608) . $params;
	syswrite($sock, $pkt) == length($pkt) or die "raw_login: short write";
	my $sel      = IO::Select->new($sock);
	my $buf      = '';
	my $deadline = time + $wait_seconds;
	while (time < $deadline)
	{
		# Parse whole messages from $buf.
		while (length($buf) >= 5)
		{
			my ($type, $len) = unpack('a N', $buf);
			last if length($buf) < 1 + $len;
			my $body = substr($buf, 5, $len - 4);
			$buf = substr($buf, 1 + $len);
			if ($type eq 'K')
			{
				($r{pid}) = unpack('N', $body);
			}
			elsif ($type eq 'E')
			{
				foreach my $f (split(/\0/, $body))
				{
					next if $f eq '';
					my $code = substr($f, 0, 1);
					my $val  = substr($f, 1);
					$r{sqlstate} = $val if $code eq 'C';
					$r{message}  = $val if $code eq 'M';
					$r{detail}   = $val if $code eq 'D';
					$r{severity} = $val if $code eq 'V';
				}
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

package RoleGuardTest::Session;

use strict;
use warnings FATAL => 'all';

use IPC::Run;
use Time::HiRes qw(usleep time);

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
	my @cmd = ('psql', '-XAtq', '-w', '-d', $connstr, '-f', '-');
	$self->{h} = IPC::Run::start(\@cmd, '<', \$self->{in}, '>',
		\$self->{out}, '2>', \$self->{err});
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

sub connected   { return $_[0]->{connected}; }
sub backend_pid { return $_[0]->{backend_pid}; }
sub stderr      { return $_[0]->{err}; }

# Run $sql, return its output (chomped), or undef if psql went away or the
# wait timed out.
sub query
{
	my ($self, $sql, $secs) = @_;
	$secs //= $RoleGuardTest::wait_seconds;
	return undef unless $self->{h}->pumpable;
	my $n      = ++$self->{n};
	my $marker = "rg_session_done_$n";
	$self->{out} = '';
	$self->{in} .= "$sql;\n\\echo $marker\n";
	my $deadline = time + $secs;
	while ($self->{out} !~ /^\Q$marker\E$/m)
	{
		return undef unless $self->{h}->pumpable;
		eval { $self->{h}->pump_nb; };
		return undef if time > $deadline;
		usleep(5_000) if $self->{out} !~ /^\Q$marker\E$/m;
	}
	my $out = $self->{out};
	$out =~ s/\n?^\Q$marker\E\n?//m;
	chomp $out;
	return $out;
}

# Send $sql without waiting for its result.
sub send
{
	my ($self, $sql) = @_;
	$self->{in} .= "$sql;\n";
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
