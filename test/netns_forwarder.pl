#!/usr/bin/perl
# test/netns_forwarder.pl SOCKET HOST PORT OWNER PIDFILE LIFETIME: the relay
# that test/netns.sh (up and up6) starts inside a network namespace.
# Started as root, it becomes OWNER, listens on the Unix socket SOCKET
# (mode 0700 directory made by the caller), writes its pid to PIDFILE, and
# relays each connection over TCP to HOST:PORT (IPv4, or IPv6 with a zone:
# fe80::1%veth).  It exits after LIFETIME seconds or on SIGTERM; a relayed
# connection lives at most 600 s.
use strict;
use warnings;
use IO::Socket::UNIX;
use IO::Socket::IP;
use IO::Select;
use POSIX ();
use Socket qw(SOCK_STREAM);

my ($path, $host, $port, $owner, $pidfile, $lifetime) = @ARGV;
$0 = "rg_netns forwarder $path -> [$host]:$port";
if ($> == 0)
{
	my (undef, undef, $uid, $gid) = getpwnam($owner)
	  or die "forwarder: no user $owner\n";
	POSIX::setgid($gid) or die "forwarder: setgid: $!\n";
	$) = "$gid $gid";
	POSIX::setuid($uid) or die "forwarder: setuid: $!\n";
	die "forwarder: still root\n" if $> == 0 || $< == 0;
}
unlink $path;
umask 077;
my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $path, Listen => 64)
  or die "forwarder: listen on $path: $!\n";
open(my $pf, '>', "$pidfile.tmp") or die "forwarder: $pidfile: $!\n";
print $pf "$$\n";
close($pf);
rename("$pidfile.tmp", $pidfile) or die "forwarder: $pidfile: $!\n";
$SIG{CHLD} = 'IGNORE';
$SIG{ALRM} = sub { unlink $path; exit 0; };
alarm($lifetime);
$SIG{TERM} = sub { unlink $path; exit 0; };

sub relay
{
	my ($a, $b) = @_;
	my %peer = ($a => $b, $b => $a);
	my $sel = IO::Select->new($a, $b);
	my $deadline = time + 600;    # no relayed connection lives longer
	while (time < $deadline)
	{
		foreach my $r ($sel->can_read(5))
		{
			my $n = sysread($r, my $buf, 65536);
			return if !$n;
			my $off = 0;
			while ($off < $n)
			{
				my $w = syswrite($peer{$r}, $buf, $n - $off, $off);
				return if !defined $w;
				$off += $w;
			}
		}
	}
}

while (1)
{
	my $c = $l->accept or next;
	my $pid = fork;
	if (!defined $pid)
	{
		close($c);
		next;
	}
	if ($pid == 0)
	{
		$SIG{ALRM} = 'DEFAULT';
		$SIG{TERM} = 'DEFAULT';
		alarm(0);
		close($l);
		my $s = IO::Socket::IP->new(
			PeerHost => $host,
			PeerPort => $port,
			Proto    => 'tcp',
			Timeout  => 10);
		if (!$s)
		{
			warn "forwarder: connect to [$host]:$port: $@\n";
			POSIX::_exit(1);
		}
		relay($c, $s);
		POSIX::_exit(0);
	}
	close($c);
}
