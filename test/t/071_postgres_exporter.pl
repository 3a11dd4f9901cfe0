
# Copyright: see README.md.
#
# The postgres_exporter queries in README.md: the YAML block that follows
# the line "<!-- postgres_exporter queries -->" is taken from the README
# itself, given to the real prometheus-postgres-exporter (0.11, Debian 12)
# as its --extend.query-path, and what the exporter publishes on
# /metrics (scraped over 127.0.0.1 from this process) is compared with
# role_guard_usage and role_guard_summary read at the same time.  The
# exporter connects as a role that is only a member of pg_monitor.
#
# Environment:
#   RG_README    the README to read (default: ../../README.md from this
#                file; rgtap copies only test/, so pass it there, e.g.
#                RG_README=/work/main/README.md rgtap test/t/071_postgres_exporter.pl)
#   RG_EXPORTER  the exporter binary (default: prometheus-postgres-exporter
#                or postgres_exporter in PATH, or /usr/bin/...); the test is
#                skipped when there is none.
#
# Phases: 1 sessions, refusals, a monitor-mode login, a superuser denial,
# a reap, an eviction and a waiting login, then the exporter started and
# compared; 2 a reload ('*' makes budgeted finite) and a session gone,
# compared again; 3 an exporter whose role is not in pg_monitor publishes
# no role_guard metrics.

use strict;
use warnings;

use Cwd qw(abs_path);
use FindBin;
use lib $FindBin::RealBin;

use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT monitor_session c_new c_close);

my $t_start = time;

# ===========================================================================
# The exporter and the README block
# ===========================================================================

my $exporter = $ENV{RG_EXPORTER};
if (!defined $exporter)
{
	foreach my $name ('prometheus-postgres-exporter', 'postgres_exporter')
	{
		foreach my $dir (split(/:/, $ENV{PATH} // ''), '/usr/bin',
			'/usr/local/bin')
		{
			if (-x "$dir/$name")
			{
				$exporter = "$dir/$name";
				last;
			}
		}
		last if defined $exporter;
	}
}
plan skip_all => 'no prometheus-postgres-exporter (set RG_EXPORTER)'
  unless defined $exporter && -x $exporter;

my $readme = $ENV{RG_README} // "$FindBin::RealBin/../../README.md";
BAIL_OUT("README not found at $readme (set RG_README; rgtap copies only test/)")
  unless -r $readme;
$readme = abs_path($readme);
note "README: $readme; exporter: $exporter";

# The fenced block right after the marker line (blank lines between allowed).
sub readme_block
{
	my ($text) = @_;
	return $1
	  if $text =~ /^<!--\s*postgres_exporter queries\s*-->[ \t]*\n(?:[ \t]*\n)*```ya?ml[ \t]*\n(.*?)^```[ \t]*$/ms;
	return undef;
}

my $yaml = readme_block(slurp_file($readme));
ok(defined $yaml,
	'README has a ```yaml block after <!-- postgres_exporter queries -->')
  or BAIL_OUT('no postgres_exporter block in README');

my $tmp   = PostgreSQL::Test::Utils::tempdir;
my $qfile = "$tmp/role_guard_queries.yaml";
{
	open(my $fh, '>', $qfile) or die "cannot write $qfile: $!";
	print $fh $yaml;
	close($fh);
}

# What the test expects the block to publish: the columns of each query.
my @usage_gauges   = qw(connections budget reserved waiting);
my @usage_counters = qw(rejected would_reject superuser_denied reaped evicted statements);
my @usage_cols     = (@usage_gauges, @usage_counters);
my @summary_cols =
  qw(max_connections connections headroom budgeted reserved reserved_unused waiting overcommitted);

# ===========================================================================
# The server
# ===========================================================================

my $budgets = 'app=2, waiter=1, idler=1';
my $node    = rg_node(
	'exporter',
	budgets => $budgets,
	conf    => qq{max_connections = 40
role_guard.reservations = 'crit=2'
role_guard.idle_timeouts = 'reapme=1s'
role_guard.reap_interval = '200ms'
role_guard.login_waits = 'waiter=60s'
role_guard.evict_idle = 'idler=1s'
role_guard.superuser_deny_hosts = '127.0.0.1'
});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION role_guard;
CREATE ROLE app LOGIN;
CREATE ROLE crit LOGIN;
CREATE ROLE reapme LOGIN;
CREATE ROLE idler LOGIN;
CREATE ROLE waiter LOGIN;
CREATE ROLE remote_su LOGIN SUPERUSER;
CREATE ROLE exporter LOGIN IN ROLE pg_monitor;
CREATE ROLE nomon LOGIN;
});

is( $node->safe_psql(
		'postgres', q{
SELECT r.rolsuper || ' ' || string_agg(g.rolname, ',' ORDER BY g.rolname)
  FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid
  JOIN pg_roles g ON g.oid = m.roleid
 WHERE r.rolname = 'exporter' GROUP BY r.rolsuper}),
	'false pg_monitor',
	'exporter is no superuser and a member of pg_monitor only');

my $mon = monitor_session($node);

# ===========================================================================
# Phase 1: something in every column
# ===========================================================================

my @app = map { hold_ok($node, 'app', 'postgres', "app session $_") } 1 .. 2;
$app[0]->query_or_die('SELECT 1') for 1 .. 3;
$app[1]->query_or_die('SELECT 2');
my ($ret) = try_login($node, tcp_connstr($node, 'app'));
isnt($ret, 0, 'third app login refused (app=2)');

ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'mode monitor');
admitted_ok($node, tcp_connstr($node, 'app'), 'monitor mode: third app login');
ok(set_conf($node, 'role_guard.mode' => 'enforce'), 'mode enforce');

($ret) = try_login($node, tcp_connstr($node, 'remote_su'));
isnt($ret, 0, 'superuser over 127.0.0.1 denied');

my $crit = hold_ok($node, 'crit', 'postgres', 'crit session');

my $reapme = hold_ok($node, 'reapme', 'postgres', 'reapme session');
ok(poll_until($node, q{SELECT reaped FROM role_guard_usage WHERE rolname = 'reapme'}, '1'),
	'reapme session reaped');

my $idler = hold_ok($node, 'idler', 'postgres', 'idler session');
usleep(1_300_000);
admitted_ok($node, tcp_connstr($node, 'idler'), 'idler login evicts the idle session');
ok(poll_until($node, q{SELECT evicted FROM role_guard_usage WHERE rolname = 'idler'}, '1'),
	'idler evicted = 1');

my $waiter = hold_ok($node, 'waiter', 'postgres', 'waiter session');
my $wlogin = c_new($node, 'waiter', app => 'rg71');
ok(poll_until($node, q{SELECT waiting FROM role_guard_usage WHERE rolname = 'waiter'}, '1'),
	'a waiter login waits');

# ===========================================================================
# The exporter and its /metrics
# ===========================================================================

# Start the exporter as $role; returns (handle, port, log file).
sub start_exporter
{
	my ($role, $tag) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $log  = "$PostgreSQL::Test::Utils::log_path/071_exporter_$tag.log";
	local %ENV = %ENV;
	$ENV{DATA_SOURCE_NAME} =
	  "postgresql://$role\@127.0.0.1:" . $node->port . '/postgres?sslmode=disable';
	my @cmd = (
		$exporter,
		"--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$qfile",
		'--disable-settings-metrics');
	note "starting @cmd (DATA_SOURCE_NAME=$ENV{DATA_SOURCE_NAME})";
	my $h = IPC::Run::start(\@cmd, '<', '/dev/null', '>', $log, '2>&1');
	return ($h, $port, $log);
}

sub stop_exporter
{
	my ($h) = @_;
	$h->signal('TERM');
	my $deadline = time + 10;
	while ($h->pumpable && time < $deadline)
	{
		eval { $h->pump_nb };
		usleep(50_000);
	}
	eval { $h->kill_kill(grace => 2) };
	return;
}

# GET $path from 127.0.0.1:$port; the body, or undef.
sub http_get
{
	my ($port, $path) = @_;
	my $s = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $port,
		Proto    => 'tcp',
		Timeout  => 5) or return undef;
	print $s "GET $path HTTP/1.0\r\nHost: 127.0.0.1:$port\r\n\r\n";
	my $sel      = IO::Select->new($s);
	my $resp     = '';
	my $deadline = time + 20;
	while (time < $deadline)
	{
		next unless $sel->can_read(0.5);
		my $n = sysread($s, my $buf, 65536);
		last if !$n;
		$resp .= $buf;
	}
	close($s);
	return undef unless $resp =~ m{^HTTP/1\.\d 200 }s;
	$resp =~ s/^.*?\r\n\r\n//s;
	return $resp;
}

# /metrics as { name => { 'rolname=app' (the labels the test looks at, or
# '') => value } }, plus all labels of the first sample in $labels{name}.
my %labels;

sub scrape
{
	my ($port) = @_;
	my $body = http_get($port, '/metrics');
	return undef unless defined $body;
	my %m;
	foreach my $line (split /\n/, $body)
	{
		next if $line =~ /^#/ || $line !~ /\S/;
		my ($name, $lab, $val) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/
		  or next;
		my %l;
		while (($lab // '') =~ /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)
		{
			$l{$1} = $2;
		}
		$labels{$name} //= \%l;
		my $key = defined $l{rolname} ? "rolname=$l{rolname}" : '';
		$m{$name}{$key} = $val;
	}
	return \%m;
}

# Scrape until $pred->($metrics) holds; the last scrape (or undef).
sub scrape_until
{
	my ($port, $pred, $secs) = @_;
	my $deadline = time + ($secs // $RoleGuardTest::wait_seconds);
	my $m;
	while (1)
	{
		$m = scrape($port);
		return $m if $m && $pred->($m);
		last if time > $deadline;
		usleep(200_000);
	}
	return $m;
}

sub num
{
	my ($v) = @_;
	return undef unless defined $v;
	return 'NaN' if $v =~ /^[+-]?nan$/i;
	return $v + 0;
}

sub same
{
	my ($a, $b) = @_;
	return 0 unless defined $a && defined $b;
	$a = num($a);
	$b = num($b);
	return $a eq 'NaN' || $b eq 'NaN' ? $a eq $b : abs($a - $b) < 1e-9;
}

# The views as the monitor session reads them: usage { rolname => { col
# => value } } and summary { col => value }, NULL as NaN.
sub read_views
{
	my %usage;
	my $list = join(', ', map { "coalesce(${_}::text, 'NaN')" } @usage_cols);
	foreach my $line (split /\n/,
		$mon->query_or_die("SELECT rolname, $list FROM role_guard_usage"))
	{
		my ($r, @v) = split /\|/, $line, -1;
		@{ $usage{$r} }{@usage_cols} = @v;
	}
	my %summary;
	@summary{@summary_cols} = split /\|/,
	  $mon->query_or_die('SELECT '
		  . join(', ',
			map { $_ eq 'overcommitted' ? "coalesce(${_}::int::text, 'NaN')" : "coalesce(${_}::text, 'NaN')" }
			  @summary_cols)
		  . ' FROM role_guard_summary'), -1;
	return (\%usage, \%summary);
}

# Statement counts of the sessions that read the views while the test runs.
my %volatile = (postgres => 1, exporter => 1);

# Differences between a scrape and the views read right after it.
sub differences
{
	my ($m, $usage, $summary) = @_;
	my @d;
	my %seen;
	foreach my $r (sort keys %$usage)
	{
		foreach my $c (@usage_cols)
		{
			my $got = $m->{"role_guard_usage_$c"}{"rolname=$r"};
			my $want = $usage->{$r}{$c};
			if ($c eq 'statements' && $volatile{$r})
			{
				push @d, "$r $c: scraped " . ($got // 'none') . ", view $want"
				  unless defined $got && $got > 0 && $got <= $want;
				next;
			}
			push @d, "$r $c: scraped " . ($got // 'none') . ", view $want"
			  unless same($got, $want);
		}
	}
	foreach my $c (@usage_cols)
	{
		foreach my $k (keys %{ $m->{"role_guard_usage_$c"} // {} })
		{
			(my $r = $k) =~ s/^rolname=//;
			push @d, "role_guard_usage_$c has $k, not in the view"
			  unless $usage->{$r};
		}
	}
	foreach my $c (@summary_cols)
	{
		my $got = $m->{"role_guard_summary_$c"}{''};
		push @d,
		  "summary $c: scraped " . ($got // 'none') . ", view $summary->{$c}"
		  unless same($got, $summary->{$c});
	}
	return @d;
}

# Scrape and read the views until they agree; the differences left.
sub compare_until_same
{
	my ($port) = @_;
	my $deadline = time + $RoleGuardTest::wait_seconds;
	my (@d, $m, $u, $s);
	while (1)
	{
		$m = scrape($port);
		($u, $s) = read_views();
		@d = $m ? differences($m, $u, $s) : ('no scrape');
		last if !@d || time > $deadline;
		usleep(300_000);
	}
	return ($m, $u, $s, @d);
}

my ($exp, $port, $exp_log) = start_exporter('exporter', 'monitor');
my $m = scrape_until($port,
	sub { exists $_[0]->{role_guard_usage_connections}{'rolname=app'} });
ok($m && exists $m->{role_guard_usage_connections}{'rolname=app'},
	'exporter publishes role_guard_usage_connections{rolname="app"}')
  or diag 'exporter log: ' . (-e $exp_log ? slurp_file($exp_log) : '(none)');
is($m->{pg_up}{''}, '1', 'pg_up 1');
ok( (grep { $_ eq '0' } values %{ $m->{pg_exporter_user_queries_load_error} // {} })
	  && !(grep { $_ ne '0' } values %{ $m->{pg_exporter_user_queries_load_error} // {} }),
	'pg_exporter_user_queries_load_error 0');

# Every column of the block, of the type the README gives it.
my $body = http_get($port, '/metrics') // '';
foreach my $c (@usage_gauges)
{
	like($body, qr/^# TYPE role_guard_usage_$c gauge$/m, "role_guard_usage_$c is a gauge");
}
foreach my $c (@usage_counters)
{
	like($body, qr/^# TYPE role_guard_usage_$c counter$/m, "role_guard_usage_$c is a counter");
}
foreach my $c (@summary_cols)
{
	like($body, qr/^# TYPE role_guard_summary_$c gauge$/m, "role_guard_summary_$c is a gauge");
}
note 'labels of role_guard_usage_connections: '
  . join(', ', sort keys %{ $labels{role_guard_usage_connections} // {} });

my ($u, $s, @d);
($m, $u, $s, @d) = compare_until_same($port);
is(join("\n", @d), '', 'phase 1: /metrics agrees with role_guard_usage and role_guard_summary')
  or diag 'exporter log: ' . slurp_file($exp_log);
is($m->{pg_exporter_last_scrape_error}{''}, '0', 'phase 1: pg_exporter_last_scrape_error 0');

# The values the setup made, as the exporter publishes them.
my %want = (
	'connections rolname=app'       => 2,
	'budget rolname=app'            => 2,
	'rejected rolname=app'          => 1,
	'would_reject rolname=app'      => 1,
	'budget rolname=crit'           => 'NaN',
	'reserved rolname=crit'         => 2,
	'reserved rolname=app'          => 'NaN',
	'connections rolname=crit'      => 1,
	'superuser_denied rolname=remote_su' => 1,
	'reaped rolname=reapme'         => 1,
	'evicted rolname=idler'         => 1,
	'waiting rolname=waiter'        => 1,
	'connections rolname=waiter'    => 1,);
foreach my $k (sort keys %want)
{
	my ($c, $r) = split / /, $k;
	ok(same($m->{"role_guard_usage_$c"}{$r}, $want{$k}),
		"phase 1: role_guard_usage_$c\{$r} = $want{$k}")
	  or diag 'scraped ' . ($m->{"role_guard_usage_$c"}{$r} // 'none');
}
ok($m->{role_guard_usage_statements}{'rolname=app'} >= 4,
	'phase 1: role_guard_usage_statements{rolname="app"} >= 4');
ok($m->{role_guard_usage_connections}{'rolname=exporter'} >= 1,
	'phase 1: the exporter\'s own session counted');
my %sw = (
	max_connections => 40,
	budgeted        => 'NaN',
	overcommitted   => 1,
	reserved        => 2,
	reserved_unused => 1,
	waiting         => 1,);
foreach my $c (sort keys %sw)
{
	ok(same($m->{"role_guard_summary_$c"}{''}, $sw{$c}),
		"phase 1: role_guard_summary_$c = $sw{$c}")
	  or diag 'scraped ' . ($m->{"role_guard_summary_$c"}{''} // 'none');
}
ok( same(
		$m->{role_guard_summary_headroom}{''},
		40 - 3 - $m->{role_guard_summary_connections}{''}),
	'phase 1: headroom = 40 - 3 - connections');
note "exporter sessions: $u->{exporter}{connections}";

# ===========================================================================
# Phase 2: a reload and a session gone
# ===========================================================================

ok(set_budgets($node, "$budgets, *=5"), 'phase 2: budgets with *=5');
$app[1]->quit;
ok(poll_until($node, q{SELECT connections FROM role_guard_usage WHERE rolname = 'app'}, '1'),
	'phase 2: one app session left');
($m, $u, $s, @d) = compare_until_same($port);
is(join("\n", @d), '', 'phase 2: /metrics agrees with the views again');
ok(same($m->{role_guard_usage_connections}{'rolname=app'}, 1),
	'phase 2: role_guard_usage_connections{rolname="app"} = 1');
ok(same($m->{role_guard_usage_budget}{'rolname=crit'}, 5),
	'phase 2: role_guard_usage_budget{rolname="crit"} = 5 (from *)');
ok($m->{role_guard_summary_budgeted}{''} =~ /^\d+$/,
	'phase 2: role_guard_summary_budgeted is a number')
  or diag 'scraped ' . ($m->{role_guard_summary_budgeted}{''} // 'none');
ok(same($m->{role_guard_summary_overcommitted}{''}, 0),
	'phase 2: role_guard_summary_overcommitted = 0');

stop_exporter($exp);

# ===========================================================================
# Phase 3: without pg_monitor, no role_guard metrics
# ===========================================================================

my ($exp2, $port2, $log2) = start_exporter('nomon', 'nomon');
my $m2 = scrape_until($port2, sub { exists $_[0]->{pg_up} });
ok($m2 && exists $m2->{pg_up}, 'phase 3: exporter as nomon answers');
ok(!(grep { /^role_guard_/ } keys %{ $m2 // {} }),
	'phase 3: no role_guard_ metrics without pg_monitor');
like(slurp_file($log2), qr/permission denied/, 'phase 3: exporter logs permission denied');
stop_exporter($exp2);

c_close($wlogin);
$_->quit for grep { $_->alive } ($app[0], $crit, $waiter);
note sprintf('runtime %.1f s', time - $t_start);
$node->stop;
done_testing();
