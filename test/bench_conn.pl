#!/usr/bin/perl
# test/bench_conn.pl: raw PostgreSQL protocol-3 client for test/bench.
# Trust authentication only (the bench's servers use it); core Perl only.
#
#   bench_conn.pl hold HOST PORT USER DB COUNT MAXSECS
#       Open COUNT sessions one after the other, print "ready COUNT" (or
#       "failed N: message" and exit 1), then keep them idle until SIGTERM
#       (or SIGINT/SIGHUP) arrives or MAXSECS pass; then close them.
#   bench_conn.pl reapdelay HOST PORT USER DB TRIALS MAXSECS [JITTER]
#       TRIALS times: wait a random time up to JITTER seconds (so that the
#       trials do not lock onto the reaper's rhythm: give the reap
#       interval), open a session, run "SELECT 1", note the moment its
#       ReadyForQuery arrives (the session is idle from then on), and wait
#       (at most MAXSECS) for the server to end the session.  Prints
#       "delay_ms X" per trial (the time from idle to the server's goodbye),
#       or "timeout" / "failed: message".
#   bench_conn.pl holdroles HOST PORT DB USERS COUNT MAXSECS [PARALLEL]
#       Open COUNT sessions, their users taken in turn from USERS (a comma
#       list, or @FILE with one name a line), at most PARALLEL (default 2)
#       logging in at a time, all from this one process (select() on up to
#       COUNT sockets; raise `ulimit -n` above COUNT first).  Print "ready
#       COUNT SECONDS" (or "failed N: message" and exit 1), then hold them
#       idle as "hold" does.
#   bench_conn.pl logins HOST PORT DB USERS COUNT PARALLEL
#       COUNT logins, users in turn from USERS, PARALLEL at a time; each
#       session ends as soon as it is ready.  Prints "done ok N failed M
#       SECONDS" and the first failure's message.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);

my $mode = shift // '';
my ($host, $port, $user, $db, $count, $maxsecs, $jitter) = @ARGV;
$jitter //= 0;
if ($mode eq 'holdroles' || $mode eq 'logins')
{
	many_main($mode, @ARGV);
	exit 0;
}
die "usage: $0 hold|reapdelay HOST PORT USER DB COUNT MAXSECS [JITTER]\n"
  unless $mode =~ /^(hold|reapdelay)$/ && defined $maxsecs
  && $count =~ /^\d+$/ && $maxsecs =~ /^\d+(\.\d+)?$/
  && $jitter =~ /^\d+(\.\d+)?$/;
$| = 1;

# Read exactly $n bytes, waiting at most until $deadline.
sub read_n
{
	my ($s, $n, $deadline) = @_;
	my $buf = '';
	my $sel = IO::Select->new($s);
	while (length($buf) < $n)
	{
		my $left = $deadline - time();
		return undef if $left <= 0;
		next unless $sel->can_read($left);
		my $got = sysread($s, $buf, $n - length($buf), length($buf));
		return undef unless $got;    # EOF or error
	}
	return $buf;
}

# One backend message: (type, payload), or () on EOF/timeout.
sub read_msg
{
	my ($s, $deadline) = @_;
	my $hdr = read_n($s, 5, $deadline);
	return () unless defined $hdr;
	my ($type, $len) = unpack('a1 N', $hdr);
	my $body = $len > 4 ? read_n($s, $len - 4, $deadline) : '';
	return () unless defined $body;
	return ($type, $body);
}

sub error_text
{
	my ($body) = @_;
	my %f;
	for my $field (split /\0/, $body)
	{
		next if $field eq '';
		$f{ substr($field, 0, 1) } = substr($field, 1);
	}
	return ($f{S} // 'ERROR') . ': ' . ($f{M} // '?');
}

# Read until ReadyForQuery; returns undef on success, an error text otherwise.
sub until_ready
{
	my ($s, $deadline) = @_;
	for (my $i = 0; $i < 100000; $i++)
	{
		my ($type, $body) = read_msg($s, $deadline);
		return 'connection closed or timed out' unless defined $type;
		return undef if $type eq 'Z';
		return error_text($body) if $type eq 'E';
		if ($type eq 'R')
		{
			my $code = unpack('N', $body);
			return "server asks for authentication method $code (the bench expects trust)"
			  if $code != 0;
		}
	}
	return 'too many messages';
}

sub pg_connect
{
	my ($timeout) = @_;
	my $s = IO::Socket::INET->new(
		PeerAddr => $host,
		PeerPort => $port,
		Proto    => 'tcp',
		Timeout  => $timeout)
	  or return (undef, "connect: $!");
	my $params = join("\0",
		user => $user, database => $db,
		application_name => 'role_guard_bench') . "\0\0";
	my $msg = pack('N N', 8 + length($params), 196608) . $params;
	syswrite($s, $msg) == length($msg) or return (undef, "write: $!");
	my $err = until_ready($s, time() + $timeout);
	return (undef, $err) if defined $err;
	return ($s, undef);
}

sub pg_query
{
	my ($s, $sql, $timeout) = @_;
	my $q = $sql . "\0";
	my $msg = 'Q' . pack('N', 4 + length($q)) . $q;
	syswrite($s, $msg) == length($msg) or return "write: $!";
	return until_ready($s, time() + $timeout);
}

sub pg_close
{
	my ($s) = @_;
	syswrite($s, 'X' . pack('N', 4));
	close($s);
}

my $stop = 0;
$SIG{TERM} = $SIG{INT} = $SIG{HUP} = sub { $stop = 1; };
$SIG{PIPE} = 'IGNORE';

if ($mode eq 'hold')
{
	my @socks;
	my $deadline = time() + $maxsecs;
	for (my $i = 0; $i < $count; $i++)
	{
		my ($s, $err) = pg_connect(30);
		if (!$s)
		{
			print "failed $i: $err\n";
			pg_close($_) for @socks;
			exit 1;
		}
		push @socks, $s;
		if ($stop || time() > $deadline)
		{
			print "failed $i: stopped\n";
			pg_close($_) for @socks;
			exit 1;
		}
	}
	print "ready $count\n";
	# sleep in short steps: a signal ends the wait at the next step
	for (my $i = 0; !$stop && $i < 100 * ($maxsecs + 1); $i++)
	{
		my $left = $deadline - time();
		last if $left <= 0;
		select(undef, undef, undef, $left > 0.2 ? 0.2 : $left);
	}
	pg_close($_) for @socks;
	exit 0;
}

# reapdelay
for (my $t = 0; $t < $count && !$stop; $t++)
{
	select(undef, undef, undef, rand($jitter)) if $jitter > 0;
	my ($s, $err) = pg_connect(30);
	if (!$s)
	{
		print "failed: $err\n";
		next;
	}
	$err = pg_query($s, 'SELECT 1', 30);
	my $idle_at = time();
	if (defined $err)
	{
		print "failed: $err\n";
		close($s);
		next;
	}
	my $sel = IO::Select->new($s);
	my $gone_at;
	while (!$stop)
	{
		my $left = $idle_at + $maxsecs - time();
		last if $left <= 0;
		if ($sel->can_read($left))
		{
			$gone_at = time();
			last;
		}
	}
	if (defined $gone_at)
	{
		printf "delay_ms %.1f\n", 1000 * ($gone_at - $idle_at);
		close($s);
	}
	else
	{
		print "timeout\n";
		pg_close($s);
	}
}
exit 0;

# ---- many sessions from one process (holdroles, logins) ----

# The users of a USERS argument: a comma list, or @FILE, one name a line.
sub user_list
{
	my ($spec) = @_;
	my @users;
	if ($spec =~ /^@(.*)$/)
	{
		open(my $fh, '<', $1) or die "cannot read $1: $!\n";
		@users = grep { length } map { s/\s+//gr } <$fh>;
		close($fh);
	}
	else
	{
		@users = grep { length } split(/,/, $spec);
	}
	die "no users in '$spec'\n" unless @users;
	return @users;
}

# Log in COUNT times (users in turn), PARALLEL at a time; keep the sessions
# (an array of sockets) if $keep.  Returns (ok, failed, first error, held).
sub open_many
{
	my ($h, $p, $db, $users, $count, $parallel, $keep, $timeout) = @_;
	my (%fly, @held, $first_err);
	my ($started, $ok, $failed) = (0, 0, 0);
	my $sel = IO::Select->new;
	while (($started < $count || %fly) && !$main::stop_many)
	{
		while ($started < $count && keys(%fly) < $parallel)
		{
			my $user = $users->[ $started % @$users ];
			$started++;
			my $s = IO::Socket::INET->new(
				PeerAddr => $h, PeerPort => $p, Proto => 'tcp', Timeout => $timeout);
			if (!$s)
			{
				$failed++;
				$first_err //= "connect: $!";
				next;
			}
			my $params = join("\0", user => $user, database => $db,
				application_name => 'role_guard_bench') . "\0\0";
			my $msg = pack('N N', 8 + length($params), 196608) . $params;
			syswrite($s, $msg);
			$fly{ fileno($s) } = { s => $s, buf => '', t => time() };
			$sel->add($s);
		}
		my @ready = $sel->can_read(1);
		for my $s (@ready)
		{
			my $c = $fly{ fileno($s) };
			my $got = sysread($s, $c->{buf}, 65536, length($c->{buf}));
			my $done;    # 'ok' or an error text
			if (!$got)
			{
				$done = 'connection closed';
			}
			while (!defined $done && length($c->{buf}) >= 5)
			{
				my ($type, $len) = unpack('a1 N', $c->{buf});
				last if length($c->{buf}) < 1 + $len;
				my $body = substr($c->{buf}, 5, $len - 4);
				substr($c->{buf}, 0, 1 + $len) = '';
				if ($type eq 'Z') { $done = 'ok'; }
				elsif ($type eq 'E') { $done = error_text($body); }
				elsif ($type eq 'R' && unpack('N', $body) != 0)
				{
					$done = 'server asks for a password (the bench expects trust)';
				}
			}
			next unless defined $done;
			$sel->remove($s);
			delete $fly{ fileno($s) };
			if ($done eq 'ok')
			{
				$ok++;
				if ($keep) { push @held, $s; }
				else { pg_close($s); }
			}
			else
			{
				$failed++;
				$first_err //= $done;
				close($s);
			}
		}
		# a login that takes far too long counts as failed
		for my $fd (keys %fly)
		{
			next if time() - $fly{$fd}{t} < $timeout;
			$sel->remove($fly{$fd}{s});
			close($fly{$fd}{s});
			delete $fly{$fd};
			$failed++;
			$first_err //= 'timed out';
		}
	}
	return ($ok, $failed, $first_err, \@held);
}

sub many_main
{
	my ($m, $h, $p, $db, $uspec, $count, @rest) = @_;
	my ($maxsecs, $parallel);
	if ($m eq 'holdroles') { ($maxsecs, $parallel) = @rest; }
	else { ($parallel) = @rest; }
	$parallel //= 2;
	die "usage: $0 holdroles HOST PORT DB USERS COUNT MAXSECS [PARALLEL] | logins HOST PORT DB USERS COUNT PARALLEL\n"
	  unless defined $count && $count =~ /^\d+$/ && $parallel =~ /^[1-9]\d*$/
	  && ($m eq 'logins' || (defined $maxsecs && $maxsecs =~ /^\d+$/));
	$| = 1;
	$main::stop_many = 0;
	$SIG{TERM} = $SIG{INT} = $SIG{HUP} = sub { $main::stop_many = 1; };
	$SIG{PIPE} = 'IGNORE';
	my @users = user_list($uspec);
	my $t0 = time();
	my ($ok, $failed, $err, $held) =
	  open_many($h, $p, $db, \@users, $count, $parallel, $m eq 'holdroles', 60);
	my $secs = time() - $t0;
	if ($m eq 'logins')
	{
		printf "done ok %d failed %d %.1f\n", $ok, $failed, $secs;
		print "first failure: $err\n" if defined $err;
		return;
	}
	if ($failed || $ok < $count)
	{
		print "failed $ok: " . ($err // 'stopped') . "\n";
		pg_close($_) for @$held;
		exit 1;
	}
	printf "ready %d %.1f\n", $ok, $secs;
	my $deadline = time() + $maxsecs;
	while (!$main::stop_many && time() < $deadline)
	{
		select(undef, undef, undef, 0.2);
	}
	pg_close($_) for @$held;
}
