#!/usr/bin/env bash
# test/netns_ll.sh: a second host reached over IPv6 link-local addresses, for
# test/t/012_link_local.pl.  The IPv6 link-local counterpart of
# test/netns.sh (same namespace, veth and relay conventions).
#
# Run as root (or with CAP_SYS_ADMIN + CAP_NET_ADMIN):
#
#   test/netns_ll.sh up NAME [PORT [SOCKDIR [OWNER]]]
#   test/netns_ll.sh down NAME [SOCKDIR]
#
# `up` makes network namespace NAME joined to this host by a veth pair that
# has IPv6 link-local addresses only: fe80::1/64 on the host side, fe80::2/64
# inside the namespace (no automatic addresses, no IPv4, no route beyond the
# pair, no forwarding, no NAT).  Inside the namespace it starts a small
# forwarder, running as OWNER (default postgres): it listens on the Unix
# socket SOCKDIR/.s.PGSQL.PORT (SOCKDIR default /tmp/rg_netns.NAME, owned by
# OWNER, mode 0700; PORT default 9433) and relays each connection over TCP
# to [fe80::1%<namespace side>]:PORT.  A server on this host listening on
# 'fe80::1%<host side>' then sees a TCP client from fe80::2 (scope: the host
# side of the pair), a link-local second host.
#
# `up` prints the settings the test reads, ready for eval:
#   eval "$(test/netns_ll.sh up rg_ll)"
#   ... prove ... (012 reads RG_NETNS6_NAME/IFNAME/SERVER/CLIENT/PORT/SOCKDIR)
#   test/netns_ll.sh down rg_ll
#
# `down` is test/netns.sh's: it stops the processes inside the namespace
# (only those), deletes the namespace (and so the veth pair) and removes
# SOCKDIR.  Both are idempotent: `up` first clears what an earlier `up NAME`
# left.  Progress and errors go to stderr; the exit status is non-zero on
# failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
SERVER_LL=fe80::1
CLIENT_LL=fe80::2

say() { printf 'netns_ll.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

check_name() {
	[[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}$ ]] || die "bad namespace name '$1'"
}

# The veth names test/netns.sh gives namespace NAME (so that its `down`
# removes ours): rgh<hash>/rgn<hash>, at most 15 bytes.
veth_names() {
	local h
	h=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
	h=$(printf '%08x' "$h")
	VETH_HOST=rgh$h
	VETH_NS=rgn$h
}

# The relay, run inside the namespace.  Arguments: socket path, TCP host
# (a scoped link-local address), TCP port, owner, pid file, lifetime in s.
# The relay itself: test/netns_forwarder.pl.
FORWARDER=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/netns_forwarder.pl

cmd_down() {
	"$HERE/netns.sh" down "$@"
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

cmd_up() {
	local name=$1 port=${2:-9433} sockdir=${3:-/tmp/rg_netns.$1}
	local owner=${4:-postgres} lifetime=${RG_NETNS_LIFETIME:-14400} pid
	check_name "$name"
	if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1024 ] || [ "$port" -gt 65535 ]; then
		die "bad port '$port'"
	fi
	id -u "$owner" >/dev/null 2>&1 || die "no user '$owner'"
	[[ $sockdir == /* ]] || die "SOCKDIR must be an absolute path"
	command -v ip >/dev/null || die "ip (iproute2) not found"
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

	for _ in $(seq 1 50); do
		if ip -n "$name" -o link show "$VETH_NS" | grep -q 'state UP' &&
			ip -o link show "$VETH_HOST" | grep -q 'state UP'; then
			break
		fi
		sleep 0.1
	done
	wait_addr "$VETH_HOST" ip "$SERVER_LL" ||
		die "$SERVER_LL did not become usable on $VETH_HOST"
	wait_addr "$VETH_NS" "ip -n $name" "$CLIENT_LL" ||
		die "$CLIENT_LL did not become usable on $VETH_NS in $name"

	rm -rf -- "$sockdir"
	mkdir -m 0700 -- "$sockdir"
	chown "$owner" -- "$sockdir"
	setsid ip netns exec "$name" perl "$FORWARDER" \
		"$sockdir/.s.PGSQL.$port" "$SERVER_LL%$VETH_NS" "$port" "$owner" \
		"$sockdir/forwarder.pid" "$lifetime" \
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
	say "forwarder pid $pid (as $owner): $sockdir/.s.PGSQL.$port -> [$SERVER_LL%$VETH_NS]:$port from $CLIENT_LL"

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
	if [ $# -lt 2 ] || [ $# -gt 5 ]; then usage; fi
	shift
	cmd_up "$@"
	;;
down)
	if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
	shift
	cmd_down "$@"
	;;
*) usage ;;
esac
