
# Copyright: see README.md.
#
# role_guard.reservations: connection slots kept free for roles and groups.
#
# A small server: max_connections = 40, superuser_reserved_connections = 3,
# so 37 slots for logins without special privileges; reservations
# 'crit=4, +ops=3' keep 7 of them, and the role storm (no budget, no
# reservation) can hold at most 37 - 7 = 30 sessions.
#
# Storms are raw protocol-3 logins from this one process: every client's
# TCP connection is opened first (the postmaster forks a backend for each,
# which waits for its startup packet), then, after a pause, every startup
# packet is written in one tight loop -- the barrier -- and the answers are
# read as they come.  Admitted clients hold their sessions.
#
# Core refusals.  80 logins at once on 40 process slots: some logins find
# no PGPROC ("sorry, too many clients already", InitProcess, before
# role_guard's hook) and some are refused by core's own check after the
# hook ("remaining connection slots are reserved for non-replication
# superuser connections", when fewer than superuser_reserved_connections
# PGPROCs are free because backends being refused still hold theirs).
# These are not role_guard's doing; a client that gets one is counted
# separately and, where the test says so, tries again (a storm client: up
# to 10 times), so that every storm client ends either admitted or refused
# by role_guard.  Storm clients that must stay "at most" (phase 2) do not
# retry.
#
# Superusers and core's superuser_reserved_connections (phase 4).  Core
# does not set PGPROCs aside: every session, a superuser's included, takes
# one from the same free list, and core refuses a non-superuser when fewer
# than superuser_reserved_connections would remain free.  So:
#   - a superuser over TCP is refused by role_guard while reservations have
#     unused places and the other 30 slots are taken (it would take one of
#     the slots kept for them), but once the reservations are all used it
#     gets in through core's superuser slots (role_guard has nothing left
#     to protect);
#   - a superuser over the Unix socket (superuser_socket_exempt = on) is
#     admitted even then, and its session then takes one of the slots the
#     reservations keep: role_guard still admits the 7th reserved login
#     (it fills an unused place), but core refuses it ("remaining connection
#     slots are reserved for non-replication superuser connections")
#     because only superuser_reserved_connections PGPROCs would remain.  The
#     socket exception costs a reserved place while the superuser stays;
#     the place comes back when it leaves.
#   - with superuser_socket_exempt = off the socket superuser is refused by
#     role_guard like anyone.
#
# Phases: 1 storm alone, then the reserved roles fill their places;
# 2a the window between role_guard's decision and core's check, made to
# happen with pause points; 2b reserved and unreserved logins in one storm; 3 reservations covering
# one another; 4 superusers; 5 replication connections; 6 exit paths and a
# crash-restart; 7 reloads; 8 monitor mode.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use List::Util qw(shuffle);
use Socket qw(SOCK_STREAM);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use RoleGuardTest qw(:DEFAULT wait_log events_where no_event_ok c_new c_wait
  c_close c_text inject_arm inject_wait inject_wake pid_gone_ok);

my $t_start = time;
my $SLOTS   = 40 - 3;    # slots for logins without special privileges

# ===========================================================================
# Raw logins held from this process
# ===========================================================================

# Core's refusals (PostgreSQL 15 wording, and 16+).
my $CORE_FULL = qr/^sorry, too many clients already$/;
my $CORE_RESERVED =
  qr/^remaining connection slots are reserved for (?:non-replication superuser connections|roles with the SUPERUSER attribute|roles with privileges of the "pg_use_reserved_connections" role)$/;
my $RG_MSG_RE = qr/^remaining connection slots are reserved(?! for non-replication| for roles with the SUPERUSER| for roles with privileges)/;

my $node;    # set below; the helpers use it

# A client: one login to make (and maybe retry).  %o: db, via ('tcp' or
# 'socket'), replication ('true' or 'database'), retries (how many times a
# core refusal is tried again), app (application_name).
sub client
{
	my ($user, %o) = @_;
	return {
		user        => $user,
		db          => $o{db} // 'postgres',
		via         => $o{via} // 'tcp',
		replication => $o{replication},
		retries     => $o{retries} // 0,
		app         => $o{app} // 'rg50',
		core        => {},    # core refusals seen, by kind
		attempts    => 0,
		state       => 'new',
	};
}

sub c_open
{
	my ($c) = @_;
	my $sock;
	if ($c->{via} eq 'socket')
	{
		$sock = IO::Socket::UNIX->new(
			Type => SOCK_STREAM,
			Peer => $node->host . '/.s.PGSQL.' . $node->port);
	}
	else
	{
		$sock = IO::Socket::INET->new(
			PeerAddr => '127.0.0.1',
			PeerPort => $node->port,
			Proto    => 'tcp',
			Timeout  => 10);
	}
	$c->{attempts}++;
	$c->{buf} = '';
	delete @$c{qw(pid err why)};
	if (!$sock)
	{
		$c->{state} = 'other';
		$c->{why}   = "connect: $!";
		return 0;
	}
	$c->{sock}  = $sock;
	$c->{state} = 'open';
	return 1;
}

sub c_send
{
	my ($c) = @_;
	my $params =
	    "user\0$c->{user}\0database\0$c->{db}\0"
	  . "application_name\0$c->{app}\0";
	$params .= "replication\0$c->{replication}\0" if defined $c->{replication};
	$params .= "\0";
	my $pkt = pack('NN', 8 + length($params), 196608) . $params;
	local $SIG{PIPE} = 'IGNORE';
	my $n = syswrite($c->{sock}, $pkt);
	if (($n // 0) != length($pkt))
	{
		$c->{state} = 'other';
		$c->{why}   = 'short write';
		close($c->{sock});
		return 0;
	}
	$c->{state} = 'sent';
	return 1;
}

sub classify
{
	my ($e) = @_;
	my $m = $e->{M} // '';
	return 'rg'
	  if ($e->{C} // '') eq '53300'
	  && ($e->{V} // '') eq 'FATAL'
	  && $m =~ $RG_MSG_RE
	  && ($e->{D} // '') =~ /role_guard\.reservations/;
	return 'core_full'     if $m =~ $CORE_FULL;
	return 'core_reserved' if $m =~ $CORE_RESERVED;
	return 'other';
}

sub err_text
{
	my ($c) = @_;
	return $c->{why} // 'no answer' unless $c->{err};
	my $e = $c->{err};
	return join(' ',
		$e->{V} // '?', $e->{C} // '?', $e->{M} // '',
		defined $e->{D} ? "DETAIL: $e->{D}" : ());
}

# Take the whole messages off the front of $c->{buf}, and act on them.
sub c_parse
{
	my ($c) = @_;
	while (length($c->{buf}) >= 5)
	{
		my ($type, $len) = unpack('a N', $c->{buf});
		last if length($c->{buf}) < 1 + $len;
		my $body = substr($c->{buf}, 5, $len - 4);
		substr($c->{buf}, 0, 1 + $len) = '';
		if ($type eq 'R')
		{
			my ($code) = unpack('N', $body);
			next if $code == 0;
			$c->{state} = 'other';
			$c->{why}   = "authentication request $code";
			close($c->{sock});
			return;
		}
		elsif ($type eq 'K')
		{
			($c->{pid}) = unpack('N', $body);
		}
		elsif ($type eq 'E')
		{
			my %e;
			foreach my $f (split(/\0/, $body))
			{
				next if $f eq '';
				$e{ substr($f, 0, 1) } = substr($f, 1);
			}
			$c->{err} = \%e;
			my $k = classify(\%e);
			if ($k =~ /^core_/)
			{
				$c->{core}{$k}++;
				$c->{state} = 'core';
			}
			else
			{
				$c->{state} = $k;
			}
			close($c->{sock});
			return;
		}
		elsif ($type eq 'Z')
		{
			$c->{state} = 'in';
			return;
		}
	}
	return;
}

# Run the logins of @$clients, all released at once (see the top), and
# wait for every answer.  Returns { in, rg, core, other: lists of clients
# by how they ended, seen: { rg, core_full, core_reserved, other: counts of
# every answer, retried ones included } }.
sub run_logins
{
	my ($clients, %o) = @_;
	c_open($_) for @$clients;
	# let the postmaster fork a backend for each connection
	usleep(($o{settle} // (@$clients > 1 ? 1.0 : 0)) * 1e6);
	c_send($_) for grep { $_->{state} eq 'open' } @$clients;
	my @retry;
	my $deadline = time + 60;
	while (time < $deadline)
	{
		my $now = time;
		foreach my $r (grep { $_->[0] <= $now } @retry)
		{
			c_open($r->[1]) && c_send($r->[1]);
		}
		@retry = grep { $_->[0] > $now } @retry;
		my @wait = grep { $_->{state} eq 'sent' } @$clients;
		last unless @wait || @retry;
		if (!@wait)
		{
			usleep(5_000);
			next;
		}
		my %by  = map { fileno($_->{sock}) => $_ } @wait;
		my $sel = IO::Select->new(map { $_->{sock} } @wait);
		foreach my $fh ($sel->can_read(0.05))
		{
			my $c   = $by{ fileno($fh) };
			my $got = sysread($fh, my $chunk, 65536);
			if (!$got)
			{
				$c->{state} = 'other';
				$c->{why}   = 'EOF without an error';
				close($fh);
				next;
			}
			$c->{buf} .= $chunk;
			c_parse($c);
			if ($c->{state} eq 'core' && $c->{retries} > 0)
			{
				$c->{retries}--;
				$c->{state} = 'retry';
				push @retry, [ time + 0.02 + rand(0.08), $c ];
			}
		}
	}
	my %r = (in => [], rg => [], core => [], other => [], seen => {});
	foreach my $c (@$clients)
	{
		if ($c->{state} =~ /^(?:sent|retry|open)$/)
		{
			$c->{why} = 'no answer within 60 s';
			$c->{state} = 'other';
			close($c->{sock}) if $c->{sock};
		}
		push @{ $r{ $c->{state} } }, $c;
		$r{seen}{$_} += $c->{core}{$_} for keys %{ $c->{core} };
		$r{seen}{ $c->{state} }++ if $c->{state} =~ /^(?:rg|other)$/;
	}
	$r{seen}{$_} //= 0 for qw(rg core_full core_reserved other);
	return \%r;
}

sub n { return scalar @{ $_[0] }; }

sub seen_text
{
	my ($r) = @_;
	return sprintf(
		'%d admitted, %d refused by role_guard, core refusals: %d "too many clients", %d "reserved for superusers" (%d not retried), %d other',
		n($r->{in}), n($r->{rg}), $r->{seen}{core_full},
		$r->{seen}{core_reserved}, n($r->{core}), n($r->{other}));
}

# A storm of $n logins of $user, each retrying core refusals up to $retries
# times; returns the run_logins result.
# After a burst: near the edge the logins of a burst see one another's
# process slots (role_guard checks core's free slots too, so a login is
# refused while logins in progress hold the slots the unused places need),
# and the last places may be left.  Logins one at a time take them, until
# one is refused by the count itself (no logins in progress named).
# Returns { in => [clients admitted], rg => refusals }.
sub storm_top_up
{
	my ($user, $name) = @_;
	my %t = (in => [], rg => 0);
	foreach my $try (1 .. 20)
	{
		my $r = storm($user, 1, 10, "$name #$try");
		push @{ $t{in} }, @{ $r->{in} };
		$t{rg} += n($r->{rg});
		next if n($r->{in});
		last unless n($r->{rg})
		  && ($r->{rg}[0]{err}{D} // '') =~ /logins still in progress hold more/;
		usleep(50_000);
	}
	return \%t;
}

# $n logins one after another (each answered before the next is sent):
# near the edge, logins sent at once would see one another's process slots
# and may all be refused.  One admitted among them is all the callers count:
# a login that meets a backend still exiting is refused, the next gets in.
sub storm_seq
{
	my ($user, $n, $name) = @_;
	my %r = (in => [], rg => []);
	foreach my $i (1 .. $n)
	{
		my $r = storm($user, 1, 10, "$name #$i");
		push @{ $r{in} }, @{ $r->{in} };
		push @{ $r{rg} }, @{ $r->{rg} };
	}
	return \%r;
}

sub storm
{
	my ($user, $n, $retries, $name) = @_;
	my $t0 = time;
	my $r  = run_logins([ map { client($user, retries => $retries) } 1 .. $n ]);
	note sprintf('%s: %s (%.1f s)', $name, seen_text($r), time - $t0);
	return $r;
}

# One login that must be admitted; returns its client (holding the session).
sub login_in
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $name, %o) = @_;
	my $c = client($user, %o);
	run_logins([$c]);
	ok($c->{state} eq 'in', "$name: admitted")
	  or diag "$name: " . err_text($c);
	return $c;
}

# One login that role_guard must refuse for reservations.
sub login_rg_refused
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $name, %o) = @_;
	my $c = client($user, %o);
	run_logins([$c]);
	ok($c->{state} eq 'rg',
		"$name: refused, FATAL 53300 remaining connection slots are reserved..., DETAIL names role_guard.reservations"
	) or diag "$name: " . ($c->{state} eq 'in' ? 'admitted' : err_text($c));
	return $c;
}

# End admitted clients' sessions (Terminate) and wait until their backends
# have closed the sockets (role_guard gives places back before that).
sub close_clients
{
	my @cs = grep { $_->{state} eq 'in' } @_;
	local $SIG{PIPE} = 'IGNORE';
	syswrite($_->{sock}, pack('a N', 'X', 4)) for @cs;
	my $deadline = time + 15;
	my %open = map { fileno($_->{sock}) => $_ } @cs;
	while (%open && time < $deadline)
	{
		my $sel = IO::Select->new(map { $_->{sock} } values %open);
		foreach my $fh ($sel->can_read(0.2))
		{
			my $got = sysread($fh, my $chunk, 65536);
			next if $got;
			my $c = delete $open{ fileno($fh) };
			close($fh);
			$c->{state} = 'closed';
		}
	}
	foreach my $c (values %open)
	{
		close($c->{sock});
		$c->{state} = 'closed';
	}
	return;
}

# The clients of @_ still in whose socket the server has closed.
sub gone
{
	my @gone;
	foreach my $c (grep { $_->{state} eq 'in' } @_)
	{
		my $sel = IO::Select->new($c->{sock});
		next unless $sel->can_read(0);
		my $got = sysread($c->{sock}, my $chunk, 65536);
		push @gone, $c unless $got;
	}
	return @gone;
}

sub sq
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

my $RESV_SQL =
  q{SELECT string_agg(entry || ' ' || kind || ' ' || reserved || '/' || connections || ' unused ' || unused, ', ' ORDER BY entry COLLATE "C") FROM role_guard_reservations};
my $SUMM_SQL =
  q{SELECT reserved || ' unused ' || reserved_unused FROM role_guard_summary};
my $STORM_SQL =
  q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'storm' AND backend_type = 'client backend'};

# Refusals by role_guard for reservations, and core's, in the log text.
my $LOG_RG =
  qr/FATAL:\s+53300: remaining connection slots are reserved for roles with role_guard reservations\n[^\n]*DETAIL:\s+[^\n]*role_guard\.reservations/;
my $LOG_CORE_FULL = qr/FATAL:\s+53300: sorry, too many clients already/;
my $LOG_CORE_RESERVED =
  qr/FATAL:\s+53300: remaining connection slots are reserved for (?:non-replication superuser connections|roles with the SUPERUSER attribute)/;

# ===========================================================================
# The server
# ===========================================================================
$node = rg_node(
	'reservations',
	init => { allows_streaming => 1 },
	conf => qq{max_connections = 40
superuser_reserved_connections = 3
max_wal_senders = 10
restart_after_crash = on
role_guard.reservations = 'crit=4, +ops=3'
});
my $su = sq('SELECT current_user');

$node->safe_psql(
	'postgres', q{
CREATE ROLE storm LOGIN;
CREATE ROLE crit LOGIN;
CREATE ROLE ops NOLOGIN;
CREATE ROLE other_grp NOLOGIN;
CREATE ROLE op1 LOGIN;
CREATE ROLE op2 LOGIN;
CREATE ROLE "both" LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
GRANT ops TO op1, op2, "both";
GRANT other_grp TO op1;
CREATE EXTENSION role_guard;
});

is(sq($RESV_SQL), '+ops group 3/0 unused 3, crit role 4/0 unused 4',
	'start: role_guard_reservations');
is(sq($SUMM_SQL), '7 unused 7', 'start: role_guard_summary reserved 7, reserved_unused 7');

# ===========================================================================
# Phase 1: 80 storm logins at once; then the reserved roles.
# ===========================================================================
my $pos = log_pos($node);
my $r1  = storm('storm', 80, 10, 'phase 1 storm');
my $top1 = storm_top_up('storm', 'phase 1 top-up');
my @storm = (@{ $r1->{in} }, @{ $top1->{in} });
is(scalar @storm, $SLOTS - 7, 'phase 1: storm holds exactly 40 - 3 - (4 + 3) = 30 sessions');
is(n($r1->{rg}), 80 - n($r1->{in}), 'phase 1: the other storm clients were refused by role_guard');
is(n($r1->{core}), 0, 'phase 1: no client was left with only core refusals');
is($r1->{seen}{other}, 0, 'phase 1: every answer was an admission, role_guard\'s refusal or core\'s')
  or diag join("\n", map { err_text($_) } @{ $r1->{other} });
is(sq($STORM_SQL), '30', 'phase 1: pg_stat_activity shows 30 storm sessions');
note 'a refusal: ' . err_text($r1->{rg}[0]) if n($r1->{rg});
# a refusal while storm is at 30 says so; one decided while other logins
# of the storm held process slots (role_guard checks core's free slots
# too) says that logins in progress hold more
is( scalar(grep { ($_->{err}{D} // '') =~ /^role_guard\.reservations keeps 7 connection slots free\b.*\b(?:30 of 37 slots are in use\.|\d+ of 37 slots are in use, and logins still in progress hold more\.)$/ } @{ $r1->{rg} }),
	n($r1->{rg}),
	'phase 1: every refusal\'s DETAIL says 7 slots kept, 30 of 37 in use (or logins in progress hold the rest)');
{
	my $log = log_since($node, $pos);
	is(count_matches($log, $LOG_RG), $r1->{seen}{rg} + $top1->{rg},
		'phase 1: server log has each role_guard refusal as FATAL 53300 with the DETAIL');
	is(count_matches($log, $LOG_CORE_FULL), $r1->{seen}{core_full},
		'phase 1: server log has core\'s "too many clients" refusals the clients saw');
	is(count_matches($log, $LOG_CORE_RESERVED), $r1->{seen}{core_reserved},
		'phase 1: server log has core\'s superuser-slot refusals the clients saw');
}
is_deeply(usage_of($node, 'storm', 'connections', 'rejected'),
	{ connections => 30, rejected => $r1->{seen}{rg} + $top1->{rg} },
	'phase 1: role_guard_usage for storm');
{
	my @ev = events_where($node, { event => 'rejected', rolname => 'storm' });
	is(scalar @ev, $r1->{seen}{rg} + $top1->{rg}, 'phase 1: one rejected event per refusal');
	is(scalar(grep { $_->{detail} =~ /role_guard\.reservations/ } @ev),
		scalar @ev, 'phase 1: every rejected event\'s detail names role_guard.reservations');
}
is(sq($SUMM_SQL), '7 unused 7', 'phase 1: reserved_unused still 7');

# The reserved roles get their places.
my @crit = map { login_in('crit', "phase 1: crit #$_") } 1 .. 4;
login_rg_refused('crit', 'phase 1: crit #5 (its reservation is used, the server is full for it)');
my @ops = (
	login_in('op1', 'phase 1: op1 #1'),
	login_in('op1', 'phase 1: op1 #2'),
	login_in('op2', 'phase 1: op2 #1'));
{
	# Reservations have nothing unused now, but the 38th session would
	# pass the 37 slots: role_guard refuses it itself (left to core, it
	# would get in whenever a reserved session ended before core's check,
	# and hold that session's place: see phase 2a).
	my $c = login_rg_refused('op2',
		'phase 1: a 4th ops member session is refused by role_guard (every slot in use)');
	push @ops, $c if $c->{state} eq 'in';
}
is(sq($RESV_SQL), '+ops group 3/3 unused 0, crit role 4/4 unused 0',
	'phase 1: role_guard_reservations crit 4/4, +ops 3/3, nothing unused');
is(sq($SUMM_SQL), '7 unused 0', 'phase 1: role_guard_summary reserved 7, reserved_unused 0');
is(sq($STORM_SQL), '30', 'phase 1: storm still holds 30');
is(usage_of($node, 'op2', 'rejected')->{rejected}, '1',
	'phase 1: the 4th ops session is counted as a role_guard rejection');

close_clients(@storm, @crit, @ops);
ok(poll_until($node, $SUMM_SQL, '7 unused 7'), 'phase 1: all gone, reserved_unused 7');

# ===========================================================================
# Phase 2a: the window between role_guard's decision (the login hook) and
# core's own check (InitPostgres, later), made to happen with the test
# build's pause points (src/inject.h) instead of hoped for in a storm.
# storm holds 30, crit 4, op2 2: one place of +ops=3 is unused.
#   1. op1 fills it and is held after role_guard's decision;
#   2. a storm login is held before role_guard's decision (a backend in
#      flight: it holds a process slot that role_guard does not count);
#   3. another storm login is decided while op1's place is charged (no
#      place unused) and held before core's check;
#   4. op1 meets core's check with 39 process slots taken: core refuses
#      it, and its place is unused again;
#   5. the storm login of 2 is refused by role_guard;
#   6. the storm login of 3 must not get in (before the fix role_guard let
#      it through with no slot check, core found the slot op1 left, and
#      storm held 31 with op1 locked out);
#   7. op1 gets its place.
# ===========================================================================

# inject_wait for a backend other than those of @skip (a point may hold
# one backend already).
sub inject_wait_other
{
	my ($name, @skip) = @_;
	my %skip = map { $_ => 1 } grep { defined } @skip;
	my $dir = $node->data_dir . '/rg_inject';
	my $deadline = time + 30;
	while (time < $deadline)
	{
		opendir(my $dh, $dir) or die "cannot read $dir: $!";
		my @held = grep { !$skip{$_} } map { /^\Q$name\E\.(\d+)$/ ? $1 : () } readdir($dh);
		closedir $dh;
		return $held[0] if @held;
		usleep(20_000);
	}
	diag "no other backend reached injection point $name";
	return undef;
}

# A c_new client refused by role_guard for reservations.
sub c_rg_refused_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($c, $name) = @_;
	c_wait($c, 30);
	return ok($c->{state} eq 'refused' && classify($c->{err}) eq 'rg', $name)
	  || diag c_text($c);
}

sq('SELECT role_guard_reset()');
{
	my @held = @{ storm('storm', 45, 10, 'phase 2a storm')->{in} };
	push @held, @{ storm_top_up('storm', 'phase 2a top-up')->{in} };
	is(scalar @held, 30, 'phase 2a: storm holds 30');
	push @held, map { login_in('crit', "phase 2a: crit #$_") } 1 .. 4;
	push @held, map { login_in('op2', "phase 2a: op2 #$_") } 1 .. 2;
	is(sq($SUMM_SQL), '7 unused 1', 'phase 2a: one place of +ops=3 unused');
	ok(poll_until($node, 'SELECT slots_used FROM role_guard_reserve_stats()', '37'),
		'phase 2a: 36 sessions (and this query\'s) use slots, no other backend');

	inject_arm($node, 'login-decided');
	my $op1 = c_new($node, 'op1');
	my $p1  = inject_wait($node, 'login-decided');
	ok($p1, 'phase 2a: op1 held after role_guard\'s decision');
	inject_arm($node, 'login-start');
	my $sa = c_new($node, 'storm');
	my $pa = inject_wait($node, 'login-start');
	ok($pa, 'phase 2a: storm login A held before role_guard\'s decision');
	inject_arm($node, 'login-decided');
	my $sb = c_new($node, 'storm');
	my $pb = inject_wait_other('login-decided', $p1);
	ok($pb, 'phase 2a: storm login B decided while op1 is charged, held before core\'s check');

	inject_wake($node, 'login-decided', $p1) if $p1;
	c_wait($op1, 30);
	ok($op1->{state} eq 'refused' && ($op1->{err}{M} // '') =~ $CORE_RESERVED,
		'phase 2a: op1 refused by core (39 process slots taken, two by logins in flight)')
	  or diag c_text($op1);
	pid_gone_ok($p1, 'phase 2a: op1\'s backend has exited') if $p1;
	inject_wake($node, 'login-start', $pa) if $pa;
	c_rg_refused_ok($sa, 'phase 2a: storm login A refused by role_guard');
	pid_gone_ok($pa, 'phase 2a: storm login A\'s backend has exited') if $pa;
	inject_wake($node, 'login-decided', $pb) if $pb;
	c_rg_refused_ok($sb,
		'phase 2a: storm login B refused by role_guard (decided with every slot in use, though no place was unused)');
	push @held, $sb if $sb->{state} eq 'admitted';
	pid_gone_ok($pb, 'phase 2a: storm login B\'s backend has exited')
	  if $pb && $sb->{state} ne 'admitted';

	# (core refusals tried again: backends in flight hold slots a moment)
	push @held, login_in('op1', 'phase 2a: op1 gets its place', retries => 20);
	is(sq($STORM_SQL), '30', 'phase 2a: storm still holds 30');
	is(sq($SUMM_SQL), '7 unused 0', 'phase 2a: every reserved place used');
	c_close($_) for grep { $_->{state} eq 'admitted' } $sb;
	close_clients(@held);
}
ok(poll_until($node, $SUMM_SQL, '7 unused 7'), 'phase 2a: all gone, reserved_unused 7');

# ===========================================================================
# Phase 2b: reserved and unreserved logins in one storm.
# ===========================================================================
sq('SELECT role_guard_reset()');
{
	my @cl = shuffle(
		(map { client('storm') } 1 .. 60),
		(map { client('crit', retries => 20) } 1 .. 4),
		(map { client($_, retries => 20) } qw(op1 op2 op1)));
	my $t0 = time;
	my $r  = run_logins(\@cl);
	my %in;
	$in{ $_->{user} }++ for @{ $r->{in} };
	note sprintf('phase 2b storm: %s (%.1f s); admitted: %s', seen_text($r),
		time - $t0, join(', ', map { "$_ $in{$_}" } sort keys %in));
	my @res = grep { $_->{user} ne 'storm' } @cl;
	is(scalar(grep { $_->{state} eq 'in' } @res), 7,
		'phase 2b: all 4 crit and all 3 ops logins admitted')
	  or diag join("\n", map { "$_->{user}: $_->{state} " . err_text($_) } grep { $_->{state} ne 'in' } @res);
	is(scalar(grep { $_->{user} ne 'storm' && $_->{state} eq 'rg' } @cl), 0,
		'phase 2b: no crit or ops login refused by role_guard');
	note sprintf('phase 2b: crit/ops logins retried after core refusals: %d',
		scalar(grep { $_->{attempts} > 1 } @res));
	cmp_ok($in{storm} // 0, '<=', 30, 'phase 2b: storm got at most 30');
	is($r->{seen}{other}, 0, 'phase 2b: every answer was an admission, role_guard\'s refusal or core\'s')
	  or diag join("\n", map { err_text($_) } @{ $r->{other} });
	is(sq($STORM_SQL), $in{storm} // 0, 'phase 2b: pg_stat_activity agrees on storm');
	is(sq($SUMM_SQL), '7 unused 0', 'phase 2b: reserved_unused 0');
	close_clients(@cl);
}
ok(poll_until($node, $SUMM_SQL, '7 unused 7'), 'phase 2b: all gone, reserved_unused 7');

# ===========================================================================
# Phase 3: reservations covering one another.
# ===========================================================================
ok(set_conf($node, 'role_guard.reservations' => 'crit=4, +ops=3, both=2'),
	'phase 3: reservations crit=4, +ops=3, both=2');
is(sq($SUMM_SQL), '9 unused 9', 'phase 3: reserved 9, reserved_unused 9');
{
	my @b = (login_in('both', 'phase 3: both #1'));
	is(sq($SUMM_SQL), '9 unused 7',
		'phase 3: one session of both fills both=2 and +ops=3: reserved_unused drops by 2');
	is(sq($RESV_SQL),
		'+ops group 3/1 unused 2, both role 2/1 unused 1, crit role 4/0 unused 4',
		'phase 3: role_guard_reservations after one session of both');
	push @b, login_in('both', 'phase 3: both #2');
	is(sq($SUMM_SQL), '9 unused 5', 'phase 3: a second one: reserved_unused 5');
	push @b, login_in('both', 'phase 3: both #3');
	is(sq($SUMM_SQL), '9 unused 4',
		'phase 3: a third one fills only +ops (both=2 is used): reserved_unused 4');
	push @b, login_in('op2', 'phase 3: op2 while +ops is used by both');
	is(sq($SUMM_SQL), '9 unused 4', 'phase 3: an op2 session over +ops: still 4');
	close_clients(@b);
}
ok(set_conf($node, 'role_guard.reservations' => 'crit=4, +ops=3'),
	'phase 3: reservations back to crit=4, +ops=3');
ok(poll_until($node, $SUMM_SQL, '7 unused 7'), 'phase 3: reserved_unused 7');

# ===========================================================================
# Phase 4: superusers.
# ===========================================================================
sq('SELECT role_guard_reset()');
@storm = @{ storm('storm', 45, 10, 'phase 4 storm')->{in} };
push @storm, @{ storm_top_up('storm', 'phase 4 top-up')->{in} };
is(scalar @storm, 30, 'phase 4: storm holds 30');
login_rg_refused($su, 'phase 4: superuser over TCP while reserved places are unused');
{
	my $s = login_in($su, 'phase 4: superuser over the Unix socket (superuser_socket_exempt = on)',
		via => 'socket');
	# The socket superuser's session takes a PGPROC like any: the 7th
	# reserved login is then refused by core (not by role_guard).
	@crit = map { login_in('crit', "phase 4: crit #$_ beside the socket superuser") } 1 .. 4;
	@ops = map { login_in($_, "phase 4: $_ beside the socket superuser") } qw(op1 op2);
	my $c = client('op1');
	run_logins([$c]);
	ok($c->{state} eq 'core' && $c->{err}{M} =~ $CORE_RESERVED,
		'phase 4: the 7th reserved login is refused by core while the socket superuser stays (it uses a slot the reservations keep)'
	) or diag 'got: ' . ($c->{state} eq 'in' ? 'admitted' : err_text($c));
	push @ops, $c if $c->{state} eq 'in';
	close_clients($s);
	push @ops, login_in('op1', 'phase 4: ... and admitted once the superuser has left')
	  unless $c->{state} eq 'in';
	is(sq($SUMM_SQL), '7 unused 0', 'phase 4: every reserved place used');
	# Nothing left to protect: a TCP superuser gets in through core's
	# superuser slots.
	my $t = login_in($su, 'phase 4: superuser over TCP once the reservations are all used');
	my $u = login_in($su, 'phase 4: superuser over the socket too', via => 'socket');
	close_clients($t, $u, @crit, @ops);
}
ok(poll_until($node, $SUMM_SQL, '7 unused 7'), 'phase 4: crit and ops gone, reserved_unused 7');

# superuser_socket_exempt = off: checked from a session opened before.
{
	my $mon = bg_session($node, sock_connstr($node, $su));
	ok($mon->connected, 'phase 4: a superuser session over the socket to watch from');
	$node->append_conf('postgresql.conf', "role_guard.superuser_socket_exempt = off\n");
	$node->reload;
	my $deadline = time + 30;
	my $v = '';
	while (time < $deadline)
	{
		$v = $mon->query('SHOW role_guard.superuser_socket_exempt') // '';
		last if $v eq 'off';
		usleep(50_000);
	}
	is($v, 'off', 'phase 4: superuser_socket_exempt = off after a reload');
	my $c = login_rg_refused($su, 'phase 4: superuser over the socket with superuser_socket_exempt = off',
		via => 'socket');
	is( $mon->query(
			qq{SELECT count(*) FROM role_guard_events WHERE event = 'rejected' AND rolname = '$su' AND detail LIKE '%role_guard.reservations%'}),
		'2',
		'phase 4: the TCP and the socket superuser refusals are rejected events naming role_guard.reservations');
	$node->append_conf('postgresql.conf', "role_guard.superuser_socket_exempt = on\n");
	$node->reload;
	$deadline = time + 30;
	while (time < $deadline)
	{
		$v = $mon->query('SHOW role_guard.superuser_socket_exempt') // '';
		last if $v eq 'on';
		usleep(50_000);
	}
	is($v, 'on', 'phase 4: superuser_socket_exempt back on');
	$mon->quit;
}
ok(wait_setting($node, 'role_guard.superuser_socket_exempt', 'on'),
	'phase 4: the socket superuser gets in again');

# ===========================================================================
# Phase 5: replication connections use walsender slots.
# ===========================================================================
my @repl = (
	login_in('repl', 'phase 5: logical replication connection while only reserved slots remain',
		replication => 'database'),
	login_in('repl', 'phase 5: physical replication connection while only reserved slots remain',
		replication => 'true'));
is(sq(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'}),
	'2', 'phase 5: two walsenders');
is(sq(q{SELECT slots_used FROM role_guard_reserve_stats()}), '31',
	'phase 5: walsenders use no slot (30 storm sessions + this query\'s)');
@crit = map { login_in('crit', "phase 5: crit #$_") } 1 .. 4;
@ops = map { login_in($_, "phase 5: $_") } qw(op1 op2 op2);
is(sq($SUMM_SQL), '7 unused 0', 'phase 5: the regular slots are all taken');
push @repl,
  login_in('repl', 'phase 5: logical replication connection with the regular slots full',
	replication => 'database'),
  login_in('repl', 'phase 5: physical replication connection with the regular slots full',
	replication => 'true');
is(usage_of($node, 'repl', 'rejected')->{rejected}, '0', 'phase 5: no rejection of repl');
close_clients(@crit, @ops, @repl[ 2, 3 ]);
ok(poll_until($node, $SUMM_SQL, '7 unused 7'), 'phase 5: crit and ops gone');

# ===========================================================================
# Phase 6: exit paths give places back; a crash-restart resets everything.
# (Two walsenders stay in throughout: they use no slot.)
# ===========================================================================
sq('SELECT role_guard_reset()');
login_rg_refused('storm', 'phase 6: storm is at its 30');
{
	my $c = shift @storm;
	close($c->{sock});    # the client vanishes: no Terminate
	$c->{state} = 'closed';
	ok(poll_until($node, $STORM_SQL, '29'), 'phase 6: the vanished client\'s session ended');
	pid_gone_ok($c->{pid}, 'phase 6: its backend has exited');
	my $r = storm_seq('storm', 4, 'phase 6 after a client vanished');
	is(n($r->{in}), 1, 'phase 6: a vanished client gives back exactly one place');
	is(n($r->{rg}), 3, 'phase 6: the other 3 refused by role_guard');
	push @storm, @{ $r->{in} };

	$c = shift @storm;
	is(sq("SELECT pg_terminate_backend($c->{pid})"), 't', 'phase 6: pg_terminate_backend of a storm session');
	ok(poll_until($node, $STORM_SQL, '29'), 'phase 6: the terminated session ended');
	close($c->{sock});
	$c->{state} = 'closed';
	pid_gone_ok($c->{pid}, 'phase 6: its backend has exited');
	$r = storm_seq('storm', 4, 'phase 6 after pg_terminate_backend');
	is(n($r->{in}), 1, 'phase 6: a terminated session gives back exactly one place');
	is(n($r->{rg}), 3, 'phase 6: the other 3 refused by role_guard');
	push @storm, @{ $r->{in} };
	is(sq($STORM_SQL), '30', 'phase 6: storm at 30 again');
}
{
	my $victim = $storm[0]{pid};
	my $cpos   = log_pos($node);
	ok(kill('KILL', $victim), 'phase 6: SIGKILL of a storm backend');
	ok(defined wait_log($node, qr/all server processes terminated; reinitializing/, $cpos),
		'phase 6: the postmaster reinitializes');
	ok(poll_until($node, 'SELECT 1', '1', 60), 'phase 6: the server accepts logins again');
	foreach my $c (grep { $_->{state} eq 'in' } @storm, @repl)
	{
		close($c->{sock});    # every backend was ended by the crash
		$c->{state} = 'closed';
	}
	is(sq($SUMM_SQL), '7 unused 7', 'phase 6: after the crash-restart reserved_unused is 7');
	is(sq($RESV_SQL), '+ops group 3/0 unused 3, crit role 4/0 unused 4',
		'phase 6: role_guard_reservations after the crash-restart');
	is(sq($STORM_SQL), '0', 'phase 6: no storm session left');
	my $r = storm('storm', 80, 10, 'phase 6 storm after the crash-restart');
	@storm = (@{ $r->{in} }, @{ storm_top_up('storm', 'phase 6 top-up')->{in} });
	is(scalar @storm, 30, 'phase 6: storm again gets exactly 30');
	is(n($r->{rg}), 80 - n($r->{in}), 'phase 6: the others refused by role_guard');
	is($r->{seen}{other}, 0, 'phase 6: no other outcome')
	  or diag join("\n", map { err_text($_) } @{ $r->{other} });
}

# ===========================================================================
# Phase 7: reloads.
# ===========================================================================
sq('SELECT role_guard_reset()');
ok(set_conf($node, 'role_guard.reservations' => 'crit=6, +ops=3'),
	'phase 7: reload crit=4 -> crit=6 while storm holds 30');
is(sq($STORM_SQL), '30', 'phase 7: storm sessions are not ended');
is(scalar(gone(@storm)), 0, 'phase 7: no storm client lost its connection');
is(sq($SUMM_SQL), '9 unused 9', 'phase 7: reserved 9, reserved_unused 9');
{
	my $r = storm('storm', 3, 10, 'phase 7 storm at crit=6');
	is(n($r->{rg}), 3, 'phase 7: new storm logins refused while crit has unused places');
	like($r->{rg}[0]{err}{D} // '', qr/keeps 9 connection slots free/,
		'phase 7: the DETAIL counts the 9 unused places');
	my @c = map { login_in('crit', "phase 7: crit #$_ of 6") } 1 .. 6;
	is(sq($SUMM_SQL), '9 unused 3', 'phase 7: reserved_unused 3 with 6 crit sessions');
	close_clients(@c);
}
ok(poll_until($node, $SUMM_SQL, '9 unused 9'), 'phase 7: crit gone');
ok(set_conf($node, 'role_guard.reservations' => 'crit=1, +ops=3'),
	'phase 7: reload crit=6 -> crit=1');
is(sq($SUMM_SQL), '4 unused 4', 'phase 7: reserved 4, reserved_unused 4');
{
	my $r = storm('storm', 6, 10, 'phase 7 storm at crit=1');
	my $top = storm_top_up('storm', 'phase 7 top-up');
	is(n($r->{in}) + n($top->{in}), 3, 'phase 7: storm takes the 3 freed slots (37 - 4 = 33)');
	is(n($r->{rg}), 6 - n($r->{in}), 'phase 7: and no more');
	push @storm, @{ $r->{in} }, @{ $top->{in} };
	is(sq($STORM_SQL), '33', 'phase 7: pg_stat_activity shows 33 storm sessions');
}
{
	my $ipos = log_pos($node);
	$node->append_conf('postgresql.conf', "role_guard.reservations = 'crit=100000, +ops=3'\n");
	$node->reload;
	my $log = wait_log($node,
		qr/invalid value for parameter "role_guard\.reservations": "crit=100000, \+ops=3"/, $ipos);
	ok(defined $log, 'phase 7: an invalid reload (crit=100000) is rejected with a LOG naming the value');
	like($log // '', qr/LOG:\s+(?:\w{5}: )?invalid value for parameter "role_guard\.reservations"/,
		'phase 7: ... at LOG level');
	note $1 if ($log // '') =~ /(DETAIL:[^\n]*)/;
	is(sq(q{SELECT current_setting('role_guard.reservations')}), 'crit=1, +ops=3',
		'phase 7: the old setting stays');
	is(sq($RESV_SQL), '+ops group 3/0 unused 3, crit role 1/0 unused 1',
		'phase 7: the old list stays in force in role_guard_reservations');
	login_rg_refused('storm', 'phase 7: storm still at its 33');
	# a valid line last again
	$node->append_conf('postgresql.conf', "role_guard.reservations = 'crit=1, +ops=3'\n");
	$node->reload;
}

# ===========================================================================
# Phase 8: monitor mode.
# ===========================================================================
ok(set_conf($node, 'role_guard.mode' => 'monitor'), 'phase 8: mode = monitor');
sq('SELECT role_guard_reset()');
{
	my $mpos = log_pos($node);
	my $r = storm('storm', 3, 0, 'phase 8 storm in monitor mode');
	is(n($r->{in}), 3, 'phase 8: nothing refused by reservations');
	push @storm, @{ $r->{in} };
	my $log = log_since($node, $mpos);
	is( count_matches($log,
			qr/LOG:\s+(?:\w{5}: )?role_guard: connection of role "storm" would be refused\n[^\n]*DETAIL:\s+role_guard\.reservations/),
		3, 'phase 8: three LOG lines "would be refused" with a DETAIL naming role_guard.reservations');
	unlike($log, qr/FATAL:\s+53300/, 'phase 8: no 53300 in the log');
	my @ev = events_where($node, { event => 'would_reject', rolname => 'storm' });
	is(scalar(grep { $_->{detail} =~ /role_guard\.reservations/ } @ev),
		3, 'phase 8: three would_reject events naming role_guard.reservations');
	no_event_ok($node, { event => 'rejected' }, 'phase 8: no rejected event');
	is_deeply(usage_of($node, 'storm', 'connections', 'rejected', 'would_reject'),
		{ connections => 36, rejected => 0, would_reject => 3 },
		'phase 8: role_guard_usage counts would_reject');
}

close_clients(@storm);
note sprintf('runtime %.1f s', time - $t_start);
$node->stop;
done_testing();
