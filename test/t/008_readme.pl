# Copyright: see README.md.
#
# README.md is tested: every fenced block says what it is by its info
# string (test/README.md, "The README's code blocks"), and
#   ```ini   a postgresql.conf fragment: a server with role_guard preloaded
#            starts with it, and takes every setting it names from it;
#   ```sql   runs without error, each block in a new database where
#            CREATE EXTENSION role_guard ran, in the order of the README;
#   ```text, ```sh, ```yaml, ```dosini   output, shell, YAML, other files:
#            not run here (the YAML block is 071's).
# A block without an info string, or with another one, fails the test.
# Also: the library's version as README's check query shows it, the
# start-up LOG line, and what README says of a misspelled role_guard name.
#
#   RG_README    the README to read (default: ../../README.md from this file)
use strict;
use warnings FATAL => 'all';
use Cwd qw(abs_path);
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RoleGuardTest qw(:DEFAULT wait_log);

my $readme = $ENV{RG_README} // "$FindBin::RealBin/../../README.md";
BAIL_OUT("README not found at $readme (set RG_README)") unless -r $readme;
$readme = abs_path($readme);
my $control = "$FindBin::RealBin/../../role_guard.control";
$control = "$1/role_guard.control" if $readme =~ m{^(.*)/README\.md$} && !-r $control;
note "README: $readme";

# ---------------------------------------------------------------------------
# The blocks
# ---------------------------------------------------------------------------
my %kinds = map { $_ => 1 } qw(ini sql text sh yaml dosini);
my (@blocks, $open, $indent);
my $lineno = 0;
foreach my $line (split /\n/, slurp_file($readme))
{
	$lineno++;
	if (!$open)
	{
		next unless $line =~ /^( *)```(\S*)\s*$/;
		($indent, $open) = ($1, { info => $2, line => $lineno, text => '' });
		next;
	}
	if ($line =~ /^ *```\s*$/)
	{
		push @blocks, $open;
		undef $open;
		next;
	}
	(my $l = $line) =~ s/^\Q$indent\E//;
	$open->{text} .= "$l\n";
}
ok(!$open, 'every fenced block in the README is closed');
foreach my $b (@blocks)
{
	ok($kinds{ $b->{info} },
		"block at line $b->{line} has a known info string ('$b->{info}')");
}
my @ini = grep { $_->{info} eq 'ini' } @blocks;
my @sql = grep { $_->{info} eq 'sql' } @blocks;
cmp_ok(scalar(@ini), '>=', 3, scalar(@ini) . ' postgresql.conf blocks');
cmp_ok(scalar(@sql), '>=', 5, scalar(@sql) . ' SQL blocks');

# ---------------------------------------------------------------------------
# Every postgresql.conf block loads
# ---------------------------------------------------------------------------
my $node = rg_node('readme', start => 0);
my $block_file = $node->data_dir . '/readme_block.conf';
$node->append_conf('postgresql.conf', "include_if_exists = 'readme_block.conf'\n");

sub write_block
{
	my ($text) = @_;
	open(my $fh, '>', $block_file) or die "cannot write $block_file: $!";
	print $fh $text;
	close($fh);
	return;
}

foreach my $b (@ini)
{
	my @names = map { /^\s*([A-Za-z_][\w.]*)\s*=/ ? lc($1) : () } split /\n/, $b->{text};
	ok(@names, "ini block at line $b->{line} sets something");
	write_block($b->{text});
	my $pos = log_pos($node);
	if (!$node->start(fail_ok => 1))
	{
		fail("ini block at line $b->{line}: the server starts");
		diag log_since($node, $pos);
		next;
	}
	pass("ini block at line $b->{line}: the server starts");
	my $list = join(',', map { "'$_'" } @names);
	is( $node->safe_psql(
			'postgres',
			qq{SELECT string_agg(name, ',' ORDER BY name) FROM pg_settings
			   WHERE lower(name) IN ($list) AND sourcefile LIKE '%/readme_block.conf'}),
		join(',', sort @names),
		"ini block at line $b->{line}: every setting taken from it");
	unlike(log_since($node, $pos), qr/WARNING|invalid/,
		"ini block at line $b->{line}: no warning at start");
	$node->stop;
}

# ---------------------------------------------------------------------------
# A misspelled role_guard name, as the README says
# ---------------------------------------------------------------------------
my $text = slurp_file($readme);
write_block("role_guard.budget = 'app=1'\n");
my $pos = log_pos($node);
$node->start;
my $start_log = log_since($node, $pos);
like($start_log,
	qr/WARNING:\s+(?:\w{5}: )?invalid configuration parameter name "role_guard.budget", removing it\n[^\n]*DETAIL:\s+"role_guard" is now a reserved prefix\./,
	'a misspelled name at start-up: WARNING, removed');
ok( index($text, 'invalid configuration parameter name "role_guard.budget", removing it') >= 0
	  && index($text, '"role_guard" is now a reserved prefix.') >= 0,
	'README quotes the start-up message');
$pos = log_pos($node);
$node->reload;
my $reload_re = qr/(LOG|WARNING):\s+(?:\w{5}: )?(invalid configuration parameter name "role_guard.budget"[^\n]*)\n[^\n]*DETAIL:\s+([^\n]*)/;
my $reload_log = wait_log($node, $reload_re, $pos) // "";
ok($reload_log =~ $reload_re, 'a misspelled name on reload is logged');
my ($lvl, $msg, $det) = ($1 // '', $2 // '', $3 // '');
ok( index($text, "$lvl:  $msg") >= 0 && index($text, $det) >= 0,
	"README quotes the reload message ($lvl: $msg / $det)");
write_block('');
$node->reload;

# ---------------------------------------------------------------------------
# The library's version and its LOG line
# ---------------------------------------------------------------------------
$node->restart;
my ($version) = slurp_file($control) =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $version, "role_guard.control's default_version is $version");
my ($check) = grep { $_->{text} =~ /role_guard\.library_version/ } @sql;
ok($check, "README has a check query that reads role_guard.library_version");
my $check_out = $node->safe_psql('postgres', $check->{text});
is($check_out, "role_guard|$version|$version|1",
	'check query: preloaded, library and extension at the same version, one reaper');
is($node->safe_psql('postgres', 'SHOW role_guard.library_version'),
	$version, 'SHOW role_guard.library_version');
my ($ret, $out, $err) =
  $node->psql('postgres', "SET role_guard.library_version = '0'");
like($err, qr/cannot be changed/, 'role_guard.library_version cannot be SET');
$node->safe_psql('postgres', 'SELECT 1') for 1 .. 3;
$node->restart;
my $log = slurp_file($node->logfile);
my $loaded = qr/LOG:\s+(?:\w{5}: )?role_guard \Q$version\E loaded\n/;
my @starts = ($log =~ /database system is ready to accept connections/g);
my @lines  = ($log =~ /$loaded/g);
is(scalar(@lines), scalar(@starts),
	"one 'role_guard $version loaded' line per server start (" . scalar(@starts) . ')');
ok(index($text, "role_guard $version loaded") >= 0, 'README shows that line');

# ---------------------------------------------------------------------------
# Every SQL block runs
# ---------------------------------------------------------------------------
# a block that joins pg_stat_statements runs where it is installed
my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $pgss = -e "$pkglibdir/pg_stat_statements.so";
if ($pgss)
{
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'role_guard, pg_stat_statements'\n");
	$node->restart;
}
my $n = 0;
foreach my $b (@sql)
{
	$n++;
	my $db = "readme_$n";
	my $wants_pgss = $b->{text} =~ /pg_stat_statements/;
  SKIP:
	{
		skip "sql block at line $b->{line} needs pg_stat_statements", 2
		  if $wants_pgss && !$pgss;
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		$node->safe_psql($db, 'CREATE EXTENSION role_guard');
		$node->safe_psql($db, 'CREATE EXTENSION pg_stat_statements') if $wants_pgss;
		my ($r, $o, $e) = $node->psql($db, $b->{text},
			extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
		is($r, 0, "sql block at line $b->{line} runs") or diag $e;
		unlike($e, qr/ERROR|WARNING/, "sql block at line $b->{line}: no error or warning")
		  or diag $e;
	}
}

$node->stop;
done_testing();
