
# Copyright: see README.md.
#
# role_guard_events with clients on IPv6 link-local addresses.  Such a
# client's numeric host carries a zone ("fe80::2%rgh1234abcd"), which the
# inet type does not take; role_guard must store and show the address as
# core's pg_stat_activity.client_addr does (no zone), and nothing in the
# event ring may ever make the view fail.
#
# The server listens only on a link-local address of a veth pair (and on
# its Unix socket, for the test's own queries); its pg_hba.conf admits
# fe80::/10.  From the link-local address: a plain role is admitted (its
# pg_stat_activity.client_addr is the reference), role app (budget app=0) is
# refused (53300), superuser su1 is refused (superuser_deny_hosts =
# 'fe80::/10', 28000), and an idle session of role idler is reaped; then
# `SELECT * FROM role_guard_events` works and each of those events shows
# the client's address without a zone, equal to the admitted session's
# pg_stat_activity.client_addr.
#
# Where the link-local second host comes from, in this order:
#  1. RG_NETNS6_NAME, _IFNAME, _SERVER, _CLIENT, _PORT, _SOCKDIR, as printed
#     by `test/netns.sh up6 NAME` run as root beforehand: a namespace on a
#     veth pair with fe80::1 (host side) and fe80::2 (namespace side), and a
#     relay, inside the namespace, from a Unix socket this user can reach to
#     [fe80::1]:PORT, so the server sees a TCP client from fe80::2:
#       eval "$(test/netns.sh up6 rg_ll)"   # as root
#       ... prove / rgtap 012_link_local.pl ...
#       test/netns.sh down rg_ll           # as root
#     Announced but unusable is a failure, not a skip.
#  2. Without them, if this user can make namespaces (`ip netns add` works),
#     the test runs test/netns.sh up6 itself.
#  3. Otherwise, if test/run's namespace for 011 is announced (RG_NETNS_*,
#     test/netns.sh), the kernel's own link-local address on the host side of
#     that veth pair: the server listens on it and the client connects to it
#     from this host, so the server sees a TCP client from that link-local
#     address (with the zone of that interface), which is what matters here.
#  4. Otherwise it skips, saying why.
# Only addresses on those private veth pairs and the Unix socket are used.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IO::Socket::IP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT superuser_denied_ok connect_fails_log_level
  write_hba);

my $netns_sh = "$FindBin::RealBin/../netns.sh";
my @keys = qw(NAME IFNAME SERVER CLIENT PORT SOCKDIR);

# `ip`, also when /usr/sbin is not in PATH.
sub find_ip
{
	foreach my $d (split(/:/, $ENV{PATH} // ''), qw(/usr/sbin /sbin /usr/bin /bin))
	{
		return "$d/ip" if $d ne '' && -x "$d/ip";
	}
	return undef;
}

# A second host that should be usable is not: fail (visibly), do not skip.
sub give_up
{
	my ($why) = @_;
	fail('link-local second host usable');
	diag($why);
	done_testing();
	exit 0;
}

# Can a server listen on [$addr%$ifname]:$port?
sub can_bind_ll
{
	my ($addr, $ifname, $port) = @_;
	my $s = IO::Socket::IP->new(
		LocalHost => "$addr%$ifname",
		LocalPort => $port,
		Proto     => 'tcp',
		ReuseAddr => 1,
		Listen    => 1);
	return 0 unless $s;
	close($s);
	return 1;
}

# The link-local address (not tentative, not failed) on interface $ifname,
# from /proc/net/if_inet6; undef if none.
sub link_local_of
{
	my ($ifname) = @_;
	open(my $fh, '<', '/proc/net/if_inet6') or return undef;
	while (my $line = <$fh>)
	{
		my ($hex, undef, undef, $scope, $flags, $dev) = split(' ', $line);
		next unless defined $dev && $dev eq $ifname && $scope eq '20';
		next if hex($flags) & (0x40 | 0x08);    # tentative, DAD failed
		my $packed = pack('H32', $hex);
		close($fh);
		return Socket::inet_ntop(Socket::AF_INET6(), $packed);
	}
	close($fh);
	return undef;
}

my %ns;             # name ifname server client port sockdir (undef: direct)
my $self_made;      # namespace made by this test (to take down at the end)
my $how_to =
  q{as root, before prove: eval "$(test/netns.sh up6 rg_ll)"; after: test/netns.sh down rg_ll};

if (grep { defined $ENV{"RG_NETNS6_$_"} && $ENV{"RG_NETNS6_$_"} ne '' } @keys)
{
	$ns{ lc $_ } = $ENV{"RG_NETNS6_$_"} foreach @keys;
	my @missing = grep { !defined $ns{ lc $_ } || $ns{ lc $_ } eq '' } @keys;
	give_up('RG_NETNS6_' . join(', RG_NETNS6_', @missing) . ' not set')
	  if @missing;
	my $sockfile = "$ns{sockdir}/.s.PGSQL.$ns{port}";
	give_up("RG_NETNS6_*: no relay socket $sockfile (did test/netns.sh up6 succeed?)")
	  unless -S $sockfile;
	note "using namespace $ns{name} announced by RG_NETNS6_*";
}
else
{
	my $ip = find_ip();
	my $why;
	if (!defined $ip)
	{
		$why = 'no `ip` command';
	}
	else
	{
		my $probe = "rg_probe_$$";
		my $list  = `$ip netns list 2>&1`;
		my $err   = $? == 0 ? `$ip netns add $probe 2>&1` : $list;
		if ($? == 0)
		{
			system($ip, 'netns', 'del', $probe);
			my $user = getpwuid($>);
			%ns = (
				name    => "rg012_$$",
				port    => PostgreSQL::Test::Cluster::get_free_port(),
				sockdir => "/tmp/rg_netns.rg012_$$");
			my $out = `$netns_sh up6 $ns{name} $ns{port} $ns{sockdir} $user`;
			give_up("`ip netns add` works, but test/netns.sh up6 failed (status $?)")
			  if $? != 0;
			$self_made = $ns{name};
			foreach my $line (split /\n/, $out)
			{
				$ns{ lc $1 } = $2 if $line =~ /^export RG_NETNS6_(\w+)=(\S+)$/;
			}
			note "made namespace $ns{name} with test/netns.sh up6";
		}
		else
		{
			chomp $err;
			$why = "network namespaces need root (uid $>: `ip netns add` says: $err)";
		}
	}

	# 3: the host side of 011's veth pair, with its own link-local address.
	if (!%ns && defined $ip && ($ENV{RG_NETNS_SERVER} // '') ne '')
	{
		my $server4 = $ENV{RG_NETNS_SERVER};
		my ($ifname) =
		  map { (split ' ')[1] }
		  grep { (split ' ')[3] =~ m{^\Q$server4\E/} }
		  split(/\n/, `$ip -o -4 addr show 2>/dev/null`);
		my $ll;
		# (the kernel's address may still be in duplicate address detection)
		for (my $i = 0; defined $ifname && $i < 50; $i++)
		{
			$ll = link_local_of($ifname);
			last if defined $ll;
			select(undef, undef, undef, 0.1);
		}
		if (defined $ll)
		{
			%ns = (
				ifname => $ifname,
				server => $ll,
				client => $ll,
				port   => PostgreSQL::Test::Cluster::get_free_port());
			note "no RG_NETNS6_*: using $ll on $ifname, the host side of the "
			  . "veth pair of namespace $ENV{RG_NETNS_NAME} (RG_NETNS_*)";
		}
		else
		{
			$why .= "; RG_NETNS_SERVER $server4 is "
			  . (defined $ifname
				? "on $ifname, which has no usable link-local address"
				: 'on no interface here');
		}
	}
	$why .= '; no RG_NETNS_* (the namespace test/run makes for 011) either'
	  if !%ns && ($ENV{RG_NETNS_SERVER} // '') eq '';
	plan skip_all => "no IPv6 link-local second host: $why; RG_NETNS6_* not set; $how_to"
	  unless %ns;
}

END
{
	my $rc = $?;
	system($netns_sh, 'down', $self_made, $ns{sockdir}) if defined $self_made;
	$? = $rc;
}

my ($server, $client, $ifname, $port, $sockdir) =
  @ns{qw(server client ifname port sockdir)};
my $listen = "$server%$ifname";
note "server [$listen]:$port; client $client"
  . (defined $sockdir ? " via the relay in $sockdir" : ' on this host');

# The relay's port is fixed; our own can be chosen again.
if (!can_bind_ll($server, $ifname, $port))
{
	give_up("port $port is not free on [$listen]: give test/netns.sh up6 another PORT")
	  if defined $sockdir && !defined $self_made;
	for (1 .. 20)
	{
		$port = PostgreSQL::Test::Cluster::get_free_port();
		last if can_bind_ll($server, $ifname, $port);
	}
}

my $node = PostgreSQL::Test::Cluster->new('link_local', port => $port);
$node->init;
my $log_level = connect_fails_log_level($node);
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'role_guard'
listen_addresses = '$listen'
log_error_verbosity = verbose
log_min_messages = $log_level
role_guard.budgets = 'app=0'
role_guard.superuser_deny_hosts = 'fe80::/10'
role_guard.idle_timeouts = 'idler=1s'
role_guard.reap_interval = '200ms'
});
write_hba($node, <<"EOT");
local   all          all                   trust
host    all          all    fe80::/10      trust
EOT
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE ROLE su1 LOGIN SUPERUSER;
CREATE ROLE plain LOGIN;
CREATE ROLE app LOGIN;
CREATE ROLE idler LOGIN;
CREATE EXTENSION role_guard;
});

# A connection string from the link-local address.
sub from_ll
{
	my ($user) = @_;
	my $host = defined $sockdir ? $sockdir : $listen;
	return "host=$host port=$port user=$user dbname=postgres connect_timeout=20";
}

# The view, as the test's superuser over the Unix socket: (psql's exit
# code, stdout, stderr), never dying.
sub events_query
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	return ($ret, $out // '', $err // '');
}

# --- an admitted session from there: the reference ------------------------
my $held = bg_session($node, from_ll('plain'));
ok($held->connected, 'plain role from the link-local address: admitted')
  or diag 'stderr: ' . $held->stderr;
my $held_pid = $held->backend_pid // 0;
my $psa = $node->safe_psql('postgres',
	"SELECT client_addr FROM pg_stat_activity WHERE pid = $held_pid");
is($psa, $client,
	"pg_stat_activity.client_addr of the admitted session is $client");
is( $held->query(q{SELECT host(inet_client_addr())}),
	$client, "the session's own inet_client_addr() is $client");

# --- a refused login, a denied superuser, a reaped session ---------------
$node->safe_psql('postgres', 'SELECT role_guard_reset()');
refused_ok($node, from_ll('app'), 'app (budget 0) from the link-local address',
	role   => 'app',
	entry  => 'app=0',
	used   => 0,
	limit  => 0);
my ($ret, $out, $err) = events_query('SELECT count(*) FROM role_guard_events');
is($ret . ':' . $out . ':' . $err, '0:1:',
	'after one refusal from a link-local address the view works');

superuser_denied_ok($node, from_ll('su1'),
	'superuser from the link-local address: refused',
	role => 'su1',
	host => "$client%$ifname");

my $idler = bg_session($node, from_ll('idler'));
ok($idler->connected, 'idler from the link-local address: admitted');
ok( poll_until(
		$node,
		q{SELECT count(*) FROM role_guard_events WHERE event = 'reaped_idle'},
		'1'),
	'its idle session is reaped (reaped_idle event)');
$idler->quit;

# --- the view -------------------------------------------------------------
($ret, $out, $err) = events_query('SELECT * FROM role_guard_events');
is($ret, 0, 'SELECT * FROM role_guard_events works');
is($err, '', '... with no error');
is(scalar(split /\n/, $out), 3, '... and shows the three events');

($ret, $out, $err) = events_query(
	q{SELECT event || ' ' || rolname || ' ' || host(client_addr) || ' '
	         || family(client_addr) || ' ' || masklen(client_addr)
	    FROM role_guard_events});
is( $out,
	join("\n",
		"reaped_idle idler $client 6 128",
		"superuser_denied su1 $client 6 128",
		"rejected app $client 6 128"),
	"each event's client_addr is host $client (/128, no zone), newest first")
  or diag "stderr: $err";
ok($out ne '' && $out !~ /%/, 'no zone in client_addr');
($ret, $out, $err) = events_query(
	q{SELECT string_agg(DISTINCT client_addr::text, ' ') FROM role_guard_events});
is($out, "$client/128", "client_addr::text is $client/128") or diag "stderr: $err";

($ret, $out, $err) = events_query(
	qq{SELECT count(*) FROM role_guard_events e, pg_stat_activity a
	    WHERE a.pid = $held_pid AND e.client_addr = a.client_addr
	      AND e.client_addr::text = a.client_addr::text});
is($out, '3',
	"every event's client_addr equals the admitted session's pg_stat_activity.client_addr"
) or diag "stderr: $err";
($ret, $out, $err) = events_query(
	q{SELECT count(*) FROM role_guard_events WHERE client_addr << 'fe80::/10'});
is($out, '3', 'all three in fe80::/10') or diag "stderr: $err";

$held->quit;
$node->stop;
done_testing();
