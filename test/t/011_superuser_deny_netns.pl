
# Copyright: see README.md.
#
# role_guard.superuser_deny_hosts against a real second host: a network
# namespace joined to this machine by a veth pair (test/netns.sh), so the
# server sees TCP clients from two different addresses.  The server listens
# on 127.0.0.1 and on the host side of the pair; the namespace's address is
# listed; a superuser from the namespace is refused (28000), the same
# superuser from 127.0.0.1 and over the Unix socket is admitted, a plain role
# from the namespace is admitted.
#
# The TAP tests run as the postgres OS user, which cannot enter a namespace.
# So the namespace is made beforehand, as root, by test/netns.sh, which also
# starts (inside the namespace, as postgres) a relay from a Unix socket that
# postgres can reach to the server's TCP port:
#
#   eval "$(test/netns.sh up rg_sudeny 10.213.7.1 10.213.7.2)"   # as root
#   ... prove (RG_NETNS_NAME, _SERVER, _CLIENT, _PORT, _SOCKDIR passed on) ...
#   test/netns.sh down rg_sudeny                                 # as root
#
# Without RG_NETNS_*: if this user can create namespaces itself (`ip netns
# add` works: CAP_SYS_ADMIN and CAP_NET_ADMIN), the test runs test/netns.sh
# itself (10.213.7.5/10.213.7.6); otherwise it skips, saying why.  Only
# addresses on that veth pair and 127.0.0.1 are ever used.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT superuser_denied_ok admitted_quietly_ok
  denied_counters_ok set_deny_hosts_ok write_hba);

my $netns_sh = "$FindBin::RealBin/../netns.sh";

# `ip`, also when /usr/sbin is not in PATH.
sub find_ip
{
	foreach my $d (split(/:/, $ENV{PATH} // ''), qw(/usr/sbin /sbin /usr/bin /bin))
	{
		return "$d/ip" if $d ne '' && -x "$d/ip";
	}
	return undef;
}

# A namespace that should be usable is not: fail (visibly), do not skip.
sub give_up
{
	my ($why) = @_;
	fail('second host (network namespace) usable');
	diag($why);
	done_testing();
	exit 0;
}

my %ns;
my $self_made;    # namespace made by this test (to take down at the end)
my $how_to = q{as root, before prove: eval "$(test/netns.sh up rg_sudeny 10.213.7.1 10.213.7.2)"; after: test/netns.sh down rg_sudeny};

if (grep { defined $ENV{"RG_NETNS_$_"} && $ENV{"RG_NETNS_$_"} ne '' }
	qw(NAME SERVER CLIENT PORT SOCKDIR))
{
	# Announced by whoever ran test/netns.sh up: it must be usable, else
	# that is a failure, not a skip.
	foreach my $k (qw(NAME SERVER CLIENT PORT SOCKDIR))
	{
		$ns{ lc $k } = $ENV{"RG_NETNS_$k"};
	}
	my @missing =
	  grep { !defined $ns{ lc $_ } || $ns{ lc $_ } eq '' }
	  qw(NAME SERVER CLIENT PORT SOCKDIR);
	my $sockfile = ($ns{sockdir} // '') . '/.s.PGSQL.' . ($ns{port} // '');
	give_up('RG_NETNS_' . join(', RG_NETNS_', @missing) . ' not set')
	  if @missing;
	give_up("RG_NETNS_*: no relay socket $sockfile (did test/netns.sh up succeed?)")
	  unless -S $sockfile;
	note "using namespace $ns{name} announced by RG_NETNS_*";
}
else
{
	my $ip = find_ip();
	plan skip_all =>
	  "network namespaces need root: no `ip` command; $how_to"
	  unless defined $ip;
	my $probe = "rg_probe_$$";
	my $list  = `$ip netns list 2>&1`;
	my $err   = $? == 0 ? `$ip netns add $probe 2>&1` : $list;
	if ($? != 0)
	{
		chomp $err;
		plan skip_all =>
		  "network namespaces need root (uid $>: `ip netns add` says: $err); RG_NETNS_* not set; $how_to";
	}
	system($ip, 'netns', 'del', $probe);

	# We may make namespaces: make our own, on its own /30.
	my $user = getpwuid($>);
	%ns = (
		name    => "rg011_$$",
		server  => '10.213.7.5',
		client  => '10.213.7.6',
		port    => PostgreSQL::Test::Cluster::get_free_port(),
		sockdir => "/tmp/rg_netns.rg011_$$");
	my $out =
	  `$netns_sh up $ns{name} $ns{server} $ns{client} $ns{port} $ns{sockdir} $user`;
	give_up("`ip netns add` works, but test/netns.sh up failed (status $?)")
	  if $? != 0;
	$self_made = $ns{name};
	note "made namespace $ns{name} with test/netns.sh";
}

END
{
	my $rc = $?;
	system($netns_sh, 'down', $self_made, $ns{sockdir}) if defined $self_made;
	$? = $rc;
}

my ($client, $server, $port, $sockdir) = @ns{qw(client server port sockdir)};
note "server $server:$port and 127.0.0.1:$port; client $client via $sockdir";

# The port is fixed by the relay: it must be free here.
foreach my $a ('127.0.0.1', $server)
{
	give_up("port $port is not free on $a: the relay of test/netns.sh forwards "
		  . "to that port; give test/netns.sh up another PORT")
	  unless PostgreSQL::Test::Cluster::can_bind($a, $port);
}

my $node = PostgreSQL::Test::Cluster->new('netns', port => $port);
$node->init;
# PG18: connect_fails with log_like waits for the DEBUG2 report of the
# backend's exit (PostgreSQL::Test::Cluster), so the log needs debug2 there.
my $log_level = $node->pg_version >= 18 ? 'debug2' : 'info';
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'role_guard'
listen_addresses = '127.0.0.1, $server'
log_error_verbosity = verbose
log_min_messages = $log_level
wal_level = replica
max_wal_senders = 4
role_guard.superuser_deny_hosts = '$client'
});
write_hba($node, <<"EOT");
local   all          all                   trust
local   replication  all                   trust
host    replication  all    $client/32     trust
host    replication  all    127.0.0.1/32   trust
host    all          all    $client/32     trust
host    all          all    127.0.0.1/32   trust
EOT
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE ROLE su1 LOGIN SUPERUSER;
CREATE ROLE plain LOGIN;
CREATE ROLE supgroup NOLOGIN SUPERUSER;
CREATE ROLE middle NOLOGIN;
CREATE ROLE member_m LOGIN;
GRANT supgroup TO middle;
GRANT middle TO member_m;
CREATE EXTENSION role_guard;
});

# From the namespace (through the relay); from 127.0.0.1 and over the socket
# with tcp_connstr and sock_connstr.
sub from_ns
{
	my ($user, $extra) = @_;
	return "host=$sockdir port=$port user=$user dbname=postgres connect_timeout=20"
	  . (defined $extra ? " $extra" : '');
}

sub from_lo   { return tcp_connstr($node, @_); }
sub from_sock { return sock_connstr($node, @_); }

my $addrs = q{SELECT host(inet_client_addr()) || ' ' || host(inet_server_addr())};
my %denied;

sub denied_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($role, $connstr, $host, $name, $member_of) = @_;
	superuser_denied_ok($node, $connstr, $name,
		role      => $role,
		host      => $host,
		member_of => $member_of);
	$denied{$role}++;
	return;
}

# Admitted, and the server saw the client at $from.
sub admitted_from_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($connstr, $from, $name) = @_;
	admitted_quietly_ok($node, $connstr, $name,
		sql    => $addrs,
		stdout => qr/^\Q$from\E /);
	return;
}

sub counters_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name) = @_;
	denied_counters_ok($node, $name, \%denied, qw(su1 plain member_m));
	return;
}

# --- the second host is real ----------------------------------------------
$node->connect_ok(
	from_ns('plain'),
	"plain role from the namespace: admitted, server sees $client -> $server",
	sql             => $addrs,
	expected_stdout => qr/^\Q$client $server\E$/,
	log_unlike      => [qr/role_guard: superuser login/]);

# --- the namespace's address listed ---------------------------------------
denied_ok('su1', from_ns('su1'), $client,
	"superuser from the namespace ($client listed): refused");
denied_ok('member_m', from_ns('member_m'), $client,
	'indirect member of a superuser role from the namespace: refused',
	'supgroup');
denied_ok('su1', from_ns('su1', 'replication=true'), $client,
	'superuser replication connection from the namespace: refused');
admitted_from_ok(from_lo('su1'), '127.0.0.1',
	'same superuser from 127.0.0.1: admitted');
admitted_from_ok(from_lo('member_m'), '127.0.0.1',
	'same member from 127.0.0.1: admitted');
$node->connect_ok(
	from_sock('su1'),
	'same superuser over the Unix socket: admitted',
	sql             => 'SELECT 42',
	expected_stdout => qr/^42$/,
	log_unlike      => [qr/role_guard: superuser login/]);
admitted_from_ok(from_ns('plain'), $client,
	'plain role from the namespace: admitted, nothing logged');
counters_ok("with $client listed");

# --- the server's own address on the pair listed: the client's address is
# --- what matches, not the address it connected to.
set_deny_hosts_ok($node, $server);
admitted_from_ok(from_ns('su1'), $client,
	"only the server side $server listed: superuser from $client admitted");

# --- a /30 written with host bits (the client's own address): covers it.
set_deny_hosts_ok($node, "$client/30");
denied_ok('su1', from_ns('su1'), $client,
	"$client/30 listed (host bits ignored): superuser from the namespace refused");
admitted_from_ok(from_lo('su1'), '127.0.0.1',
	"$client/30 listed: superuser from 127.0.0.1 admitted");

# --- the other way round: 127.0.0.1 listed, the namespace is not.
set_deny_hosts_ok($node, '127.0.0.1');
admitted_from_ok(from_ns('su1'), $client,
	'127.0.0.1 listed: superuser from the namespace admitted');
denied_ok('su1', from_lo('su1'), '127.0.0.1',
	'127.0.0.1 listed: superuser from 127.0.0.1 refused');

# --- monitor: the namespace login is admitted and the would-be line logged.
set_deny_hosts_ok($node, $client);
ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'reload with mode = monitor');
$node->connect_ok(
	from_ns('su1'),
	'monitor: superuser from the namespace admitted',
	sql             => $addrs,
	expected_stdout => qr/^\Q$client $server\E$/,
	log_like => [
		qr/role_guard: superuser login would be refused: role "su1", host "\Q$client\E"/
	],
	log_unlike => [qr/may not log in/]);
counters_ok('at the end');

$node->stop;
done_testing();
