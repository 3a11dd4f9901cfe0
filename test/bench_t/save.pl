
# Copyright: see README.md.
#
# test/bench_save's measurement (not a test: it asserts only that it ran):
# how long a clean shutdown takes to write role_guard's save file, and the
# next start to read it back, for 10 000 roles and 10 000 events, as the
# server itself reports them ("saved ... (X ms)", "restored ... (X ms)");
# the file's size; and role_guard's shared memory by part
# (pg_shmem_allocations) at role_guard.max_roles 1024 and 11 000.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../t";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use RoleGuardTest qw(:DEFAULT c_new c_wait_all c_close);

my $roles = $ENV{BENCH_ROLES} // 10000;

sub shmem
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT name || ': ' || allocated_size FROM pg_shmem_allocations
		  WHERE name LIKE 'role_guard%' ORDER BY name});
}

my $small = rg_node('shmem_default', budgets => '');
diag "shared memory at the defaults (max_roles 1024, max_connections "
  . $small->safe_psql('postgres', 'SHOW max_connections') . "):\n" . shmem($small);
$small->stop;

# every login of r1 .. rN refused by "*=0": one counter and one event each
# (refusals go to the ring's general part, three quarters of it: events.c)
my $ring = int($roles * 4 / 3) + 2;
my $node = rg_node(
	'save_bench',
	budgets => '*=0',
	conf    => "role_guard.max_roles = " . ($roles + 1000)
	  . "\nrole_guard.event_log_size = $ring\nmax_connections = 100\n");
diag "shared memory at max_roles " . ($roles + 1000) . ":\n" . shmem($node);
$node->safe_psql('postgres', 'CREATE EXTENSION role_guard');
$node->safe_psql('postgres',
	"DO \$\$ BEGIN FOR i IN 1..$roles LOOP EXECUTE format('CREATE ROLE %I LOGIN', 'r' || i); END LOOP; END \$\$");
my $t0 = time;
for (my $i = 1; $i <= $roles; $i += 40)
{
	my @cs = map { c_new($node, "r$_") } grep { $_ <= $roles } $i .. $i + 39;
	c_wait_all(\@cs, 60);
	c_close($_) for @cs;
}
diag sprintf("%d refused logins in %.1f s", $roles, time - $t0);
diag $node->safe_psql('postgres',
	"SELECT count(*) || ' roles with refusals, ' || (SELECT count(*) FROM role_guard_events) || ' events' FROM role_guard_usage WHERE rejected > 0");

my $pos = -s $node->logfile;
$node->stop('fast');
my $file = $node->data_dir . '/pg_stat/role_guard.stat';
diag "file: " . (-s $file) . " bytes";
$node->start;
my $log = slurp_file($node->logfile, $pos);
diag $1 while $log =~ /(role_guard: (saved|restored) [^\n]*)/g;
ok($log =~ /role_guard: restored/, 'the file was read back');
$node->stop;
done_testing();
