
# Copyright: see README.md.
#
# role_guard works only through shared_preload_libraries.  Every other way
# of loading it gives one clear message and locks nobody out:
#  - LOAD 'role_guard' in a session: an ERROR, the session goes on;
#  - CREATE EXTENSION role_guard without preloading: an ERROR, nothing
#    created;
#  - session_preload_libraries = 'role_guard' (in postgresql.conf, or ALTER
#    ROLE ... SET): the library is loaded before the session's error
#    handling exists, where an ERROR would become FATAL and refuse every
#    login; instead each login gets a WARNING with the same message and
#    goes on (superusers over the socket and TCP, and other roles alike).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest;

my $msg = qr/role_guard must be loaded via shared_preload_libraries/;

my $node = PostgreSQL::Test::Cluster->new('load_paths');
$node->init;
$node->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'\n");
$node->append_conf('pg_hba.conf', "host all all 127.0.0.1/32 trust\n");
$node->start;
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
my $su = $node->safe_psql('postgres', 'SELECT current_user');

# LOAD: an ERROR, and the session goes on.
my ($ret, $out, $err) = $node->psql('postgres',
	"LOAD 'role_guard';\nSELECT 'still here';",
	on_error_stop => 0);
like($err, qr/ERROR:\s+$msg/, 'LOAD: an ERROR with the message');
like($err, qr/HINT:\s+Add role_guard to shared_preload_libraries/,
	'LOAD: the HINT says what to do');
is($out, 'still here', 'LOAD: the session goes on');

# CREATE EXTENSION: an ERROR, nothing created.
($ret, $out, $err) = $node->psql('postgres',
	"CREATE EXTENSION role_guard;\nSELECT count(*) FROM pg_extension WHERE extname = 'role_guard';",
	on_error_stop => 0);
like($err, qr/ERROR:\s+$msg/, 'CREATE EXTENSION: an ERROR with the message');
is($out, '0', 'CREATE EXTENSION: nothing created, the session goes on');

# session_preload_libraries: every login still gets in, with a WARNING.
$node->append_conf('postgresql.conf',
	"session_preload_libraries = 'role_guard'\n");
$node->reload;
foreach my $login (
	[ 'superuser over the socket', $su,   sock_connstr($node, $su) ],
	[ 'superuser over TCP',        $su,   tcp_connstr($node, $su) ],
	[ 'app over TCP',              'app', tcp_connstr($node, 'app') ])
{
	my ($what, $user, $connstr) = @$login;
	my $deadline = time + $RoleGuardTest::wait_seconds;
	# the reload reaches new backends once the postmaster has read it
	while (1)
	{
		($ret, $out, $err) =
		  try_login($node, $connstr, 'SELECT current_user');
		last if $ret != 0 || $err =~ $msg || time > $deadline;
		usleep(50_000);
	}
	is($ret, 0, "session_preload_libraries: $what logs in") or diag $err;
	is($out, $user, "session_preload_libraries: $what: the session runs");
	like($err, qr/WARNING:\s+$msg/,
		"session_preload_libraries: $what gets the message as a WARNING");
	unlike($err, qr/FATAL/, "session_preload_libraries: $what: no FATAL");
}

# The same through ALTER ROLE ... SET for one role.
$node->append_conf('postgresql.conf', "session_preload_libraries = ''\n");
$node->reload;
$node->safe_psql('postgres',
	"ALTER ROLE app SET session_preload_libraries = 'role_guard'");
($ret, $out, $err) = try_login($node, tcp_connstr($node, 'app'), 'SELECT 42');
is($ret, 0, 'ALTER ROLE app SET session_preload_libraries: app logs in')
  or diag $err;
is($out, '42', 'ALTER ROLE ... SET: the session runs');
like($err, qr/WARNING:\s+$msg/, 'ALTER ROLE ... SET: a WARNING');

$node->stop;
done_testing();
