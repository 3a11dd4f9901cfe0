#!/usr/bin/perl
# test/hold_sessions.pl HOST PORT DB ROLE N: open N sessions of ROLE to DB
# (protocol 3, trust authentication) from this one process, print
# "admitted A refused R" and the first refusal's message, then hold the
# admitted sessions until standard input closes.  Used by test/demo to fill
# a server without starting one psql per session.
use strict;
use warnings;
use IO::Socket::INET;

my ($host, $port, $db, $role, $n) = @ARGV;
die "usage: $0 HOST PORT DB ROLE N\n" unless defined $n;

my (@held, $refused, $first_error);
$refused = 0;
for (1 .. $n)
{
	my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp')
	  or die "connect: $!\n";
	my $params = join('', map { "$_\0" } ('user', $role, 'database', $db,
		'application_name', 'hold_sessions')) . "\0";
	print $sock pack('N N', 8 + length($params), 196608) . $params;
	my ($buf, $ready, $error) = ('', 0, undef);
	while (!$ready && !defined $error)
	{
		my $got = sysread($sock, $buf, 65536, length($buf));
		last unless $got;
		while (length($buf) >= 5)
		{
			my ($type, $len) = unpack('a N', $buf);
			last if length($buf) < 1 + $len;
			my $body = substr($buf, 5, $len - 4);
			substr($buf, 0, 1 + $len) = '';
			$ready = 1 if $type eq 'Z';
			if ($type eq 'E')
			{
				my %f = map { substr($_, 0, 1) => substr($_, 1) } grep { length } split(/\0/, $body);
				$error = "$f{S}: $f{M}" . (defined $f{D} ? "\nDETAIL:  $f{D}" : '');
			}
		}
	}
	if ($ready) { push @held, $sock; }
	else
	{
		$refused++;
		$first_error //= $error // 'connection closed';
		close $sock;
	}
}
print "admitted " . scalar(@held) . " refused $refused\n";
print "first refusal: $first_error\n" if defined $first_error;
$| = 1;
1 while <STDIN>;
print $_ pack('a N', 'X', 4) for @held;
