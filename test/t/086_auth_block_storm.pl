
# Copyright: see README.md.
#
# Login blocks under load and at the table's edge (SCRAM over TCP):
#  - a storm of 1 000 wrong-password logins from 8 parallel clients against
#    one (address, role) pair: at most auth_failure_limit + 8 of them reach
#    core's "password authentication failed" before the block holds (with
#    the table's lock, exactly the limit), every other one is refused as
#    blocked, and a ninth client logging in as another role all along is
#    admitted every time;
#  - a full table (role_guard.max_auth_blocks = 4) with far more distinct
#    pairs than it holds: never an error or a refusal of an unknown pair; a
#    spray of failures under new role names forgets counting pairs, never a
#    pair whose block is in force; only when every place holds a block is
#    the oldest block forgotten.
# The storm's figures are printed (note) for README's Performance section.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT write_hba scram_login scram_result);

my $su = (getpwuid($<))[0];

sub scram_node
{
	my ($name, $conf) = @_;
	my $node = rg_node(
		$name,
		start => 0,
		conf => qq{
password_encryption = 'scram-sha-256'
role_guard.auth_failure_window = '10min'
role_guard.auth_block_time = '10min'
$conf
});
	write_hba($node, qq{
local all "$su" trust
host all all 127.0.0.0/8 scram-sha-256
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION role_guard');
	return $node;
}

# --- the storm --------------------------------------------------------------
my $limit = 5;
my $clients = 8;
my $per_client = 125;
my $node = scram_node('storm', qq{
max_connections = 40
role_guard.auth_failure_limit = $limit
});
$node->safe_psql('postgres', q{
CREATE ROLE victim LOGIN PASSWORD 'victimpw';
CREATE ROLE bystander LOGIN PASSWORD 'bystanderpw';
});

my $dir = PostgreSQL::Test::Utils::tempdir();

# A child that runs $code and writes what it returns to $dir/$name.
sub child
{
	my ($name, $code) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	return $pid if $pid;
	my $out = eval { $code->() } // "died: $@";
	open(my $fh, '>', "$dir/$name.tmp") or POSIX::_exit(1);
	print $fh $out;
	close($fh);
	rename("$dir/$name.tmp", "$dir/$name");
	POSIX::_exit(0);
}

# The bystander: another role from the same address, logging in until the
# storm is over; "ok fail max_ms during" (during: admitted before the end).
my $bystander = child(
	'bystander',
	sub {
		my ($ok, $fail, $max, $during) = (0, 0, 0, 0);
		my $deadline = time + 300;
		while (time < $deadline)
		{
			my $stop = -e "$dir/stop";
			my $t0 = time;
			my $r = scram_login($node, 'bystander', 'bystanderpw');
			my $ms = (time - $t0) * 1000;
			$max = $ms if $ms > $max;
			if ($r->{admitted})
			{
				$ok++;
				$during++ unless $stop;
			}
			else
			{
				$fail++;
				print STDERR 'bystander: ' . scram_result($r) . "\n";
			}
			last if $stop;
		}
		return sprintf('%d %d %.0f %d', $ok, $fail, $max, $during);
	});

my $t0 = time;
my @storm;
foreach my $i (1 .. $clients)
{
	push @storm, child(
		"storm.$i",
		sub {
			my %n = (wrong => 0, blocked => 0, other => 0);
			for (1 .. $per_client)
			{
				my $r = scram_login($node, 'victim', "guess$i.$_");
				if (($r->{sqlstate} // '') eq '28P01')
				{
					$n{wrong}++;
				}
				elsif (($r->{sqlstate} // '') eq '28000'
					&& ($r->{message} // '') =~ /^too many failed logins/)
				{
					$n{blocked}++;
				}
				else
				{
					$n{other}++;
					print STDERR "storm $i: " . scram_result($r) . "\n";
				}
			}
			return "$n{wrong} $n{blocked} $n{other}";
		});
}
waitpid($_, 0) foreach @storm;
my $elapsed = time - $t0;
open(my $stop, '>', "$dir/stop") or die;
close($stop);
waitpid($bystander, 0);

my ($wrong, $blocked, $other) = (0, 0, 0);
foreach my $i (1 .. $clients)
{
	my @f = split(/ /, slurp_file("$dir/storm.$i"));
	is(scalar(@f), 3, "storm client $i reported") or diag "@f";
	$wrong += $f[0] // 0;
	$blocked += $f[1] // 0;
	$other += $f[2] // 0;
}
my ($b_ok, $b_fail, $b_max, $b_during) = split(/ /, slurp_file("$dir/bystander"));
my $total = $clients * $per_client;
note sprintf(
	'storm: %d wrong-password logins of one pair from %d clients in %.1f s (%.0f/s): '
	  . '%d reached "password authentication failed", %d refused as blocked, %d other; '
	  . 'bystander (other role, same address): %d admitted (%d during the storm), %d refused, slowest %d ms',
	$total, $clients, $elapsed, $total / $elapsed, $wrong, $blocked, $other,
	$b_ok, $b_during, $b_fail, $b_max);
is($wrong + $blocked + $other, $total, "all $total storm logins answered");
ok($wrong <= $limit + $clients,
	"at most limit + $clients = " . ($limit + $clients)
	  . " reached the password check's failure ($wrong)");
is($wrong, $limit, "with the table's lock, exactly the limit ($limit) did");
is($other, 0, 'every other storm login was refused as blocked');
is($b_fail, 0, 'the bystander was never refused');
ok($b_during >= 1, "the bystander was admitted during the storm ($b_during times)");
is(count_matches(log_since($node, 0),
		qr/FATAL:  28P01: password authentication failed for user "victim"/),
	$wrong, 'the server log has as many password failures as the clients saw');
is($node->safe_psql('postgres',
		q{SELECT failures || ' ' || (blocked_until IS NOT NULL)::text
		  FROM role_guard_auth_blocks WHERE rolname = 'victim'}),
	"$limit true", 'the view shows the block and the failures that began it');
$node->stop;

# --- a full table ------------------------------------------------------------
my $small = scram_node('small', q{
role_guard.auth_failure_limit = 3
role_guard.max_auth_blocks = 4
});
$small->safe_psql('postgres', q{CREATE ROLE keeper LOGIN PASSWORD 'keeperpw';
  CREATE ROLE plain LOGIN PASSWORD 'plainpw'});

sub small_pairs
{
	return $small->safe_psql('postgres',
		q{SELECT string_agg(rolname || ':' || failures
		    || CASE WHEN blocked_until IS NOT NULL THEN '!' ELSE '' END, ' '
		    ORDER BY rolname) FROM role_guard_auth_blocks});
}

sub fail_n
{
	my ($user, $n) = @_;
	my @r = map { scram_login($small, $user, 'wrong') } 1 .. $n;
	return scalar(grep { ($_->{sqlstate} // '') eq '28P01' } @r);
}

my $pos = log_pos($small);
is(fail_n('keeper', 3), 3, 'keeper: three failures');
is(small_pairs(), 'keeper:3!', 'keeper is blocked');
my $sprayed = 0;
$sprayed += fail_n("spray$_", 1) foreach 1 .. 40;
is($sprayed, 40, '40 more pairs (new role names), one failure each: all plain failures');
my $pairs = small_pairs();
like($pairs, qr/^keeper:3! (spray\d+:1 ?){3}$/,
	'the table holds 4 pairs: the block, and the newest counting ones')
  or diag $pairs;
is(scram_result(scram_login($small, 'keeper', 'keeperpw')) =~ /too many failed logins/
	  ? 1 : 0, 1, 'keeper is still refused with its password');
ok(scram_login($small, 'plain', 'plainpw')->{admitted},
	'another role is admitted while the table is full');

# every place a block: the next new pair forgets the oldest block
is(fail_n("block$_", 3), 3, "block$_: three failures") foreach 1 .. 3;
is(small_pairs(), 'block1:3! block2:3! block3:3! keeper:3!',
	'four blocks fill the table');
is(fail_n('newcomer', 1), 1, 'a new pair fails once');
is(small_pairs(), 'block1:3! block2:3! block3:3! newcomer:1',
	'... and the oldest block (keeper) was forgotten for it');
like(log_since($small, $pos),
	qr/LOG:  .*role_guard: login block of role "keeper" from host "127\.0\.0\.1" forgotten: every place of the table holds a block/,
	'a LOG line says which block was forgotten');
ok(scram_login($small, 'keeper', 'keeperpw')->{admitted},
	'keeper logs in again');
unlike(log_since($small, $pos), qr/(ERROR|WARNING|PANIC|TRAP)/,
	'no error or warning in the server log');
$small->stop;

done_testing();
