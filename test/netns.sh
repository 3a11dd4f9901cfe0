#!/usr/bin/env bash
# test/netns.sh: a second host for test/t/011_superuser_deny_netns.pl (over
# IPv4) and test/t/012_link_local.pl (over IPv6 link-local addresses).
#
# Run as root (or with CAP_SYS_ADMIN + CAP_NET_ADMIN):
#
#   test/netns.sh up NAME HOSTADDR PEERADDR [PORT [SOCKDIR [OWNER]]]
#   test/netns.sh up6 NAME [PORT [SOCKDIR [OWNER]]]
#   test/netns.sh down NAME [SOCKDIR]
#
# `up` makes network namespace NAME joined to this host by a veth pair:
# HOSTADDR/30 on the host side, PEERADDR/30 inside the namespace (both
# addresses private to this pair, e.g. 10.213.7.1 and 10.213.7.2; nothing is
# routed anywhere else, no NAT, no forwarding is turned on).  Inside the
# namespace it starts a small forwarder, running as OWNER (default postgres):
# it listens on the Unix socket SOCKDIR/.s.PGSQL.PORT (SOCKDIR default
# /tmp/rg_netns.NAME, owned by OWNER, mode 0700; PORT default 9432, outside the ephemeral and test-node port ranges) and
# relays each connection over TCP to HOSTADDR:PORT.  A client that cannot
# enter the namespace (the TAP test runs as postgres) connects with libpq's
# host=SOCKDIR port=PORT, and the server on HOSTADDR:PORT sees a TCP client
# from PEERADDR: a real second host.
#
# `up` prints the settings the test reads, ready for eval:
#   eval "$(test/netns.sh up rg_sudeny 10.213.7.1 10.213.7.2)"
#   ... prove ... (011 reads RG_NETNS_NAME/CLIENT/SERVER/PORT/SOCKDIR) ...
#   test/netns.sh down rg_sudeny
#
# `up6` does the same with a veth pair that has IPv6 link-local addresses
# only: fe80::1/64 on the host side, fe80::2/64 inside the namespace (no
# automatic addresses, no IPv4, no route beyond the pair).  PORT defaults
# to 9433; the forwarder relays to [fe80::1%<namespace side>]:PORT, so a
# server on this host listening on 'fe80::1%<host side>' sees a TCP client
# from fe80::2, a link-local second host.  It prints RG_NETNS6_NAME, IFNAME
# (the host side), SERVER, CLIENT, PORT and SOCKDIR, which 012 reads.
#
# `down` stops the processes inside the namespace (only those), deletes the
# namespace (which deletes the veth pair) and removes SOCKDIR.  Both are
# idempotent: `up` first clears what an earlier `up NAME` left.  Progress and
# errors go to stderr; the exit status is non-zero on failure.
set -euo pipefail

SERVER_LL=fe80::1
CLIENT_LL=fe80::2

say() { printf 'netns.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

check_name() {
	[[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}$ ]] || die "bad namespace name '$1'"
}

check_v4() {
	local a=$1 o
	[[ $a =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
		die "'$a' is not an IPv4 address"
	for o in "${BASH_REMATCH[@]:1}"; do
		[ "$o" -le 255 ] || die "'$a' is not an IPv4 address"
	done
}

# veth names (at most 15 bytes): rgh<hash>/rgn<hash> from the namespace name.
veth_names() {
	local h
	h=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
	h=$(printf '%08x' "$h")
	VETH_HOST=rgh$h
	VETH_NS=rgn$h
}

netns_exists() {
	local list
	list=$(ip netns list 2>/dev/null || true)
	awk -v n="$1" '$1 == n { found = 1 } END { exit !found }' <<<"$list"
}

# The relay, run inside the namespace.  Arguments: socket path, TCP host,
# TCP port, owner, pid file, lifetime in seconds.
# The relay itself: test/netns_forwarder.pl.
FORWARDER=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/netns_forwarder.pl

cmd_down() {
	local name=$1 sockdir=${2:-/tmp/rg_netns.$1} pids pid
	check_name "$name"
	veth_names "$name"
	if netns_exists "$name"; then
		# Only the processes inside this namespace (the forwarder and its
		# children), by pid.
		pids=$(ip netns pids "$name" 2>/dev/null || true)
		for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
		for _ in $(seq 1 50); do
			pids=$(ip netns pids "$name" 2>/dev/null || true)
			[ -z "$pids" ] && break
			sleep 0.1
		done
		for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
		ip netns del "$name"
		say "namespace $name deleted"
	fi
	if ip link show "$VETH_HOST" >/dev/null 2>&1; then
		ip link del "$VETH_HOST"
	fi
	case $sockdir in
	/tmp/rg_netns.*) rm -rf -- "$sockdir" ;;
	*) rm -f -- "$sockdir"/.s.PGSQL.* "$sockdir"/forwarder.pid "$sockdir"/forwarder.log ;;
	esac
}

# check_common NAME PORT SOCKDIR OWNER: what both kinds of `up` need.
check_common() {
	check_name "$1"
	if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt 1024 ] || [ "$2" -gt 65535 ]; then
		die "bad port '$2'"
	fi
	[[ $3 == /* ]] || die "SOCKDIR must be an absolute path"
	id -u "$4" >/dev/null 2>&1 || die "no user '$4'"
	command -v ip >/dev/null || die "ip (iproute2) not found"
}

# wait_link_up NAME: wait (bounded, 5 s) until both ends of the pair are up.
wait_link_up() {
	for _ in $(seq 1 50); do
		if ip -n "$1" -o link show "$VETH_NS" | grep -q 'state UP' &&
			ip -o link show "$VETH_HOST" | grep -q 'state UP'; then
			return 0
		fi
		sleep 0.1
	done
}

# start_forwarder NAME PORT SOCKDIR OWNER TARGET FROM: the relay inside the
# namespace, from SOCKDIR/.s.PGSQL.PORT to TARGET:PORT; waits for its socket.
start_forwarder() {
	local name=$1 port=$2 sockdir=$3 owner=$4 target=$5 from=$6 pid
	rm -rf -- "$sockdir"
	mkdir -m 0700 -- "$sockdir"
	chown "$owner" -- "$sockdir"
	setsid ip netns exec "$name" perl "$FORWARDER" \
		"$sockdir/.s.PGSQL.$port" "$target" "$port" "$owner" \
		"$sockdir/forwarder.pid" "${RG_NETNS_LIFETIME:-14400}" \
		</dev/null >>"$sockdir/forwarder.log" 2>&1 &
	for _ in $(seq 1 100); do
		[ -S "$sockdir/.s.PGSQL.$port" ] && [ -s "$sockdir/forwarder.pid" ] && break
		sleep 0.1
	done
	if ! [ -S "$sockdir/.s.PGSQL.$port" ]; then
		cat "$sockdir/forwarder.log" >&2 || true
		die "the forwarder did not start"
	fi
	pid=$(cat "$sockdir/forwarder.pid")
	say "forwarder pid $pid (as $owner): $sockdir/.s.PGSQL.$port -> [$target]:$port from $from"
}

cmd_up() {
	local name=$1 hostaddr=$2 peeraddr=$3 port=${4:-9432} sockdir=${5:-/tmp/rg_netns.$1}
	local owner=${6:-postgres}
	check_common "$name" "$port" "$sockdir" "$owner"
	check_v4 "$hostaddr"
	check_v4 "$peeraddr"
	[ "$hostaddr" != "$peeraddr" ] || die "HOSTADDR and PEERADDR must differ"

	veth_names "$name"
	cmd_down "$name" "$sockdir" 2>/dev/null || true
	if ip -o addr show | awk -v a="$hostaddr" '$3 == "inet" && index($4, a "/") == 1 { f = 1 } END { exit !f }'; then
		die "$hostaddr is already on an interface of this host"
	fi

	ip netns add "$name"
	ip link add "$VETH_HOST" type veth peer name "$VETH_NS" netns "$name"
	ip addr add "$hostaddr/30" dev "$VETH_HOST"
	ip link set "$VETH_HOST" up
	ip -n "$name" link set lo up
	ip -n "$name" addr add "$peeraddr/30" dev "$VETH_NS"
	ip -n "$name" link set "$VETH_NS" up
	say "namespace $name: $VETH_NS $peeraddr/30 <-> $VETH_HOST $hostaddr/30"
	# no DAD for IPv4, but the link takes a moment to come up
	wait_link_up "$name"
	start_forwarder "$name" "$port" "$sockdir" "$owner" "$hostaddr" "$peeraddr"

	printf 'export RG_NETNS_NAME=%q\n' "$name"
	printf 'export RG_NETNS_SERVER=%q\n' "$hostaddr"
	printf 'export RG_NETNS_CLIENT=%q\n' "$peeraddr"
	printf 'export RG_NETNS_PORT=%q\n' "$port"
	printf 'export RG_NETNS_SOCKDIR=%q\n' "$sockdir"
}

# Wait (bounded, 5 s) until $2 (an `ip` prefix, e.g. "ip -n NAME") shows
# address $3 on interface $1 without the tentative flag.
wait_addr() {
	local dev=$1 ipcmd=$2 addr=$3 out
	for _ in $(seq 1 50); do
		out=$($ipcmd -6 -o addr show dev "$dev" 2>/dev/null || true)
		if grep -q " $addr/64 " <<<"$out" && ! grep -q tentative <<<"$out"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

cmd_up6() {
	local name=$1 port=${2:-9433} sockdir=${3:-/tmp/rg_netns.$1}
	local owner=${4:-postgres}
	check_common "$name" "$port" "$sockdir" "$owner"
	perl -MIO::Socket::IP -e 1 2>/dev/null || die "perl module IO::Socket::IP not found"
	[ -d /proc/sys/net/ipv6 ] || die "this kernel has no IPv6"

	veth_names "$name"
	cmd_down "$name" "$sockdir" 2>/dev/null || true

	ip netns add "$name"
	ip link add "$VETH_HOST" type veth peer name "$VETH_NS" netns "$name"
	# Only the addresses below: no automatic (EUI-64, stable-privacy) ones.
	ip link set "$VETH_HOST" addrgenmode none 2>/dev/null || true
	ip -n "$name" link set "$VETH_NS" addrgenmode none 2>/dev/null || true
	# IPv6 may be off by default (net.ipv6.conf.default.disable_ipv6): turn it
	# on for these two interfaces only.
	if [ -e "/proc/sys/net/ipv6/conf/$VETH_HOST/disable_ipv6" ]; then
		echo 0 >"/proc/sys/net/ipv6/conf/$VETH_HOST/disable_ipv6"
	fi
	ip netns exec "$name" sh -c \
		"f=/proc/sys/net/ipv6/conf/$VETH_NS/disable_ipv6; [ ! -e \$f ] || echo 0 >\$f"
	# nodad: usable at once (the pair has nobody else on it to clash with).
	ip addr add "$SERVER_LL/64" dev "$VETH_HOST" nodad
	ip link set "$VETH_HOST" up
	ip -n "$name" link set lo up
	ip -n "$name" addr add "$CLIENT_LL/64" dev "$VETH_NS" nodad
	ip -n "$name" link set "$VETH_NS" up
	say "namespace $name: $VETH_NS $CLIENT_LL/64 <-> $VETH_HOST $SERVER_LL/64"

	wait_link_up "$name"
	wait_addr "$VETH_HOST" ip "$SERVER_LL" ||
		die "$SERVER_LL did not become usable on $VETH_HOST"
	wait_addr "$VETH_NS" "ip -n $name" "$CLIENT_LL" ||
		die "$CLIENT_LL did not become usable on $VETH_NS in $name"

	start_forwarder "$name" "$port" "$sockdir" "$owner" "$SERVER_LL%$VETH_NS" "$CLIENT_LL"

	printf 'export RG_NETNS6_NAME=%q\n' "$name"
	printf 'export RG_NETNS6_IFNAME=%q\n' "$VETH_HOST"
	printf 'export RG_NETNS6_SERVER=%q\n' "$SERVER_LL"
	printf 'export RG_NETNS6_CLIENT=%q\n' "$CLIENT_LL"
	printf 'export RG_NETNS6_PORT=%q\n' "$port"
	printf 'export RG_NETNS6_SOCKDIR=%q\n' "$sockdir"
}

[ $# -ge 1 ] || usage
case $1 in
up)
	if [ $# -lt 4 ] || [ $# -gt 7 ]; then usage; fi
	shift
	cmd_up "$@"
	;;
up6)
	if [ $# -lt 2 ] || [ $# -gt 5 ]; then usage; fi
	shift
	cmd_up6 "$@"
	;;
down)
	if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
	shift
	cmd_down "$@"
	;;
*) usage ;;
esac
