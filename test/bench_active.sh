#!/usr/bin/env bash
# test/bench_active.sh: what active budgets (role_guard.active_budgets) cost.
#
# Run as root, from any directory, with PostgreSQL installed as test/run
# does it (RG_PG15_ROOT for a private copy of PostgreSQL 15):
#   RG_PG15_ROOT=/path/pg15 test/bench_active.sh [--rounds N] [--secs S]
# It builds role_guard from this tree as a production build (no
# -DRG_INJECTION_POINTS: test/run's build has the tests' pause points, a
# rename() and two snprintf() per statement, some 1 400 instructions) and
# installs it there first.
#
# It is a measurement, not a test: it prints figures beside their goals and
# exits 0 whatever they are.  Two data directories from the same binaries
# (stock: nothing preloaded; rg: role_guard preloaded), Unix socket only,
# fsync off, pgbench -i -s 1, and then:
#   A. a budget that never fills (active_budgets 'bench=1000'): pgbench -S
#      -M prepared -c 16 -j 2 on each, in rounds that alternate the order
#      (stock rg, rg stock, ...), median tps and rg/stock; while rg runs,
#      pg_stat_activity sampled every 10 ms for backends waiting on the
#      "role_guard active" LWLock (contention of the take/give-back lock);
#   B. a full budget of 4 ('bench=4', no active_waits: wait until served):
#      32 clients against 4 clients alone, rg/rg (the queue's cost when it
#      moves), alternating order.  The transactions are BEGIN; the -S
#      SELECT; END (three round trips, the place held across them): a
#      single -S statement holds its place some 30 us, and on a small
#      machine the clients then rarely have more than 4 in progress at
#      once, so the budget would never bind and nothing would be measured.
#      The statements that waited (role_guard_usage.statements_waited) are
#      printed beside the figures: 0 there means the queue did not form.
#      32 clients on 'bench=1000' (no queue) tell what 32 clients cost the
#      machine by themselves, apart from the queue.  Each run also reads
#      /proc/stat before and after: the machine's busy CPU time per
#      transaction (all processes, pgbench too) and the share left idle,
#      so what the queue costs is told apart from what its wake-up latency
#      leaves unused: the CPU of one hand-over is the busy time per
#      transaction of 32 clients on 4 places less that of 32 on 'bench=1000';
#   B2. the same three runs with transactions that each hold their place
#      about 1 ms (BEGIN; a sum over 5 000 rows by index; END): what the
#      hand-over costs against transactions of a size an active budget is
#      for (a noisy tenant's);
#   B3. the same three runs with transactions that hold their place 2 ms
#      while the client works between two statements (pgbench's \sleep:
#      idle in transaction, no CPU of the server's): on 2 cores B and B2
#      share the CPU between the 4 places and the hand-overs, so that
#      what the queue's wake-up latency alone costs shows here;
#   B4. B's transactions with 8 and 16 clients on 4 places, beside B's 4
#      and 32: how the throughput and the CPU per transaction move with the
#      length of the line;
#   C. the wake-up delay: 32 clients on 'bench=4' with log_min_messages =
#      debug2, the same transactions, each statement served after a wait
#      logs how long after its place was granted it ran (release -> the
#      next waiter's start): median, 99th percentile and max;
#   D. instructions (valgrind --tool=callgrind, --toggle-collect on the
#      hooks): per pgbench -S -M prepared transaction, rg_active_take and
#      rg_active_xact_end inclusive, with 'bench=1000' (never fills).  The
#      same random seed on every side: the same keys, so the same index
#      descents (with a seed of its own each run, stock alone moved by
#      some 60 instructions per transaction from run to run).
set -u
RG_REPO=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=4
SECS=5
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift ;;
	--secs) SECS=$2; shift ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
ROOT=${RG_PG15_ROOT:-}
BIN=$ROOT/usr/lib/postgresql/15/bin
[ -x "$BIN/postgres" ] || { echo "no $BIN/postgres: build and install with test/run first" >&2; exit 1; }
PGBENCH=$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)

DIR=$(mktemp -d /tmp/rg_bench_active.XXXXXX)
chown postgres: "$DIR"
as_pg() { su postgres -s /bin/bash -c "$*"; }
# a production build of this tree, installed over test/run's
mkdir "$DIR/build"
cp -a "$RG_REPO/Makefile" "$RG_REPO/role_guard.control" "$RG_REPO/src" "$RG_REPO/sql" "$DIR/build/"
rm -f "$DIR"/build/src/*.o "$DIR"/build/*.so
chown -R postgres: "$DIR/build"
if ! as_pg "make -C $DIR/build PG_CONFIG=$BIN/pg_config" >"$DIR/build.log" 2>&1 ||
	! make -C "$DIR/build" "PG_CONFIG=$BIN/pg_config" install >>"$DIR/build.log" 2>&1; then
	cat "$DIR/build.log"
	exit 1
fi
if nm -D "$("$BIN/pg_config" --pkglibdir)/role_guard.so" | grep -q rg_inject; then
	echo "the installed role_guard.so has injection points" >&2
	exit 1
fi
cleanup() {
	for s in stock rg; do
		[ -d "$DIR/$s" ] && as_pg "$BIN/pg_ctl -D $DIR/$s -m immediate stop" >/dev/null 2>&1
	done
	rm -rf "$DIR"
}
trap cleanup EXIT

declare -A PORT=([stock]=5681 [rg]=5682)
for s in stock rg; do
	as_pg "$BIN/initdb -D $DIR/$s -A trust -U postgres" >/dev/null || exit 1
	cat >>"$DIR/$s/postgresql.conf" <<EOF
port = ${PORT[$s]}
listen_addresses = ''
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
max_connections = 100
shared_buffers = 64MB
autovacuum = off
EOF
done
cat >>"$DIR/rg/postgresql.conf" <<EOF
shared_preload_libraries = 'role_guard'
include_if_exists = 'active.conf'
EOF
set_active() { # set_active BUDGETS [LOGLEVEL]
	printf "role_guard.active_budgets = '%s'\nlog_min_messages = %s\n" "$1" "${2:-warning}" >"$DIR/rg/active.conf"
	chown postgres: "$DIR/rg/active.conf"
	[ -e "$DIR/rg/postmaster.pid" ] || return 0
	as_pg "$BIN/pg_ctl -D $DIR/rg reload" >/dev/null
	# a new backend forks from the postmaster: once one sees it, all will
	for ((i = 0; i < 100; i++)); do
		[ "$(rg_sql 'SHOW role_guard.active_budgets')" = "$1" ] && return 0
		sleep 0.1
	done
	echo "the reload of active_budgets = '$1' was not seen" >&2
	exit 1
}
rg_sql() { as_pg "$BIN/psql -X -At -h $DIR -p ${PORT[rg]} -d postgres -c \"$1\""; }
# the statements of bench that waited for their place so far
waited() { rg_sql "SELECT statements_waited FROM role_guard_usage WHERE rolname = 'bench'"; }
set_active 'bench=1000'
for s in stock rg; do
	as_pg "$BIN/pg_ctl -D $DIR/$s -l $DIR/$s.log -w start" >/dev/null || { tail "$DIR/$s.log"; exit 1; }
	as_pg "$BIN/psql -X -q -h $DIR -p ${PORT[$s]} -d postgres -c 'CREATE ROLE bench LOGIN SUPERUSER' -c 'CREATE DATABASE bench OWNER bench'"
	as_pg "$PGBENCH -q -i -s 1 -h $DIR -p ${PORT[$s]} -U bench bench" >/dev/null 2>&1
done
# over the Unix socket a superuser never waits: connect as a plain role
for s in stock rg; do
	as_pg "$BIN/psql -X -q -h $DIR -p ${PORT[$s]} -d bench -c 'ALTER ROLE bench NOSUPERUSER'"
done
rg_sql 'CREATE EXTENSION role_guard' >/dev/null
[ "$(rg_sql "SELECT rolsuper FROM pg_roles WHERE rolname = 'bench'")" = f ] || { echo "bench is still a superuser" >&2; exit 1; }
# B and C: the -S SELECT inside BEGIN .. END, the place held across three round trips
cat >"$DIR/xact.sql" <<'EOF'
\set aid random(1, 100000 * :scale)
BEGIN;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
END;
EOF
# B2: a transaction that holds its place about 1 ms
cat >"$DIR/heavy.sql" <<'EOF'
\set aid random(1, 100000 * :scale - 5000)
BEGIN;
SELECT sum(abalance) FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 4999;
END;
EOF
# B3: a transaction that holds its place 2 ms while its client works
# (idle in transaction), no CPU of the server's
cat >"$DIR/think.sql" <<'EOF'
\set aid random(1, 100000 * :scale)
BEGIN;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
\sleep 2 ms
END;
EOF
chmod 644 "$DIR/xact.sql" "$DIR/heavy.sql" "$DIR/think.sql"

tps() { # tps SIDE CLIENTS [SCRIPT]: -S, or the transactions in SCRIPT
	local script=-S
	[ -n "${3:-}" ] && script="-f $3"
	as_pg "$PGBENCH -n $script -M prepared -c $2 -j 2 -T $SECS -h $DIR -p ${PORT[$1]} -U bench bench" 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1
}
# busy and idle jiffies of the whole machine so far (/proc/stat, line cpu)
cpu_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat; }
# tps_cpu SIDE CLIENTS SCRIPT: "tps busy-us-per-transaction idle-percent"
tps_cpu() {
	local b0 i0 b1 i1 t
	read -r b0 i0 < <(cpu_jiffies)
	t=$(tps "$@")
	read -r b1 i1 < <(cpu_jiffies)
	awk -v t="${t:-0}" -v b=$((b1 - b0)) -v i=$((i1 - i0)) -v s="$SECS" -v hz="$(getconf CLK_TCK)" 'BEGIN {
		printf "%s %.1f %.1f\n", t, (t > 0 ? b * 1e6 / hz / (t * s) : 0), (b + i > 0 ? 100 * i / (b + i) : 0) }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "NA" }'; }

echo "== A. budget that never fills (bench=1000), pgbench -S -M prepared -c 16, $ROUNDS rounds x ${SECS}s"
: >"$DIR/a.stock"
: >"$DIR/a.rg"
: >"$DIR/a.samples.stock"
: >"$DIR/a.samples.rg"
for ((r = 0; r < ROUNDS; r++)); do
	if ((r % 2 == 0)); then order="stock rg"; else order="rg stock"; fi
	for s in $order; do
		# one sampler on either side (the same load on both): backends of
		# bench waiting on role_guard's active lock, and all active ones
		printf '%s\n\\watch 0.01\n' "SELECT count(*) FILTER (WHERE wait_event = 'role_guard active'), count(*) FROM pg_stat_activity WHERE usename = 'bench' AND state = 'active'" |
			as_pg "timeout $SECS $BIN/psql -X -At -h $DIR -p ${PORT[$s]} -d postgres" 2>/dev/null | grep '|' >>"$DIR/a.samples.$s" &
		sampler=$!
		tps "$s" 16 >>"$DIR/a.$s"
		wait "$sampler"
	done
done
A_STOCK=$(median <"$DIR/a.stock")
A_RG=$(median <"$DIR/a.rg")
echo "stock tps (median): $A_STOCK; role_guard: $A_RG; ratio $(ratio "$A_RG" "$A_STOCK") (goal >= 0.97)"
awk -F'|' '{ w += $1; n += $2 } END { printf "backends seen waiting on the \"role_guard active\" LWLock: %d of %d active-backend samples (%.2f%%)\n", w, n, n ? 100 * w / n : 0 }' "$DIR/a.samples.rg"

# full_budget SECTION SCRIPT: 4 clients on bench=4, 32 on bench=4, and 32
# on bench=1000 (no queue: what 32 clients cost this machine by
# themselves), alternating order; tps, CPU per transaction, idle share
full_budget() {
	local sec=$1 script=$2 run r order w0 f
	for run in 4 32 32free; do
		: >"$DIR/$sec.$run"
		: >"$DIR/$sec.waited.$run"
	done
	for ((r = 0; r < ROUNDS; r++)); do
		if ((r % 2 == 0)); then order="4 32 32free"; else order="32free 32 4"; fi
		for run in $order; do
			if [ "$run" = 32free ]; then set_active 'bench=1000'; else set_active 'bench=4'; fi
			w0=$(waited)
			tps_cpu rg "${run%free}" "$script" >>"$DIR/$sec.$run"
			echo $(($(waited) - w0)) >>"$DIR/$sec.waited.$run"
		done
	done
	for run in 4 32 32free; do
		for f in 1 2 3; do
			cut -d' ' -f$f "$DIR/$sec.$run" | median >"$DIR/$sec.$run.m$f"
		done
	done
	B4=$(cat "$DIR/$sec.4.m1")
	B32=$(cat "$DIR/$sec.32.m1")
	B32F=$(cat "$DIR/$sec.32free.m1")
	echo "4 clients: $B4 tps; 32 clients on 4 places: $B32 tps; ratio $(ratio "$B32" "$B4") (goal >= 0.95)"
	echo "32 clients, no queue (bench=1000): $B32F tps; 32 on 4 places against it: $(ratio "$B32" "$B32F")"
	echo "busy CPU per transaction (whole machine, pgbench too; median): 4 clients $(cat "$DIR/$sec.4.m2") us, 32 on 4 places $(cat "$DIR/$sec.32.m2") us, 32 without a queue $(cat "$DIR/$sec.32free.m2") us;" \
		"the queue's hand-over: $(awk -v a="$(cat "$DIR/$sec.32.m2")" -v b="$(cat "$DIR/$sec.32free.m2")" 'BEGIN { printf "%.1f", a - b }') us of CPU per transaction"
	echo "CPU left idle (median): 4 clients $(cat "$DIR/$sec.4.m3") %, 32 on 4 places $(cat "$DIR/$sec.32.m3") %, 32 without a queue $(cat "$DIR/$sec.32free.m3") %"
	echo "statements that waited, per round: 4 clients: $(paste -sd' ' "$DIR/$sec.waited.4"); 32 clients: $(paste -sd' ' "$DIR/$sec.waited.32"); 32 without a queue: $(paste -sd' ' "$DIR/$sec.waited.32free")"
}
echo "== B. full budget of 4 (bench=4): 32 clients against 4 clients alone, BEGIN; SELECT; END, $ROUNDS rounds x ${SECS}s"
full_budget b "$DIR/xact.sql"
echo "== B2. the same, transactions holding their place about 1 ms (BEGIN; a sum over 5 000 rows; END)"
full_budget b2 "$DIR/heavy.sql"
echo "== B3. the same, transactions holding their place 2 ms while the client works (BEGIN; SELECT; \\sleep 2 ms; END)"
full_budget b3 "$DIR/think.sql"

echo "== B4. the line's length: B's transactions, 8 and 16 clients on 4 places (4 alone and 32 from B)"
set_active 'bench=4'
for n in 8 16; do
	: >"$DIR/b4.$n"
	: >"$DIR/b4.waited.$n"
done
for ((r = 0; r < ROUNDS; r++)); do
	for n in 8 16; do
		w0=$(waited)
		tps_cpu rg "$n" "$DIR/xact.sql" >>"$DIR/b4.$n"
		echo $(($(waited) - w0)) >>"$DIR/b4.waited.$n"
	done
done
for n in 4 8 16 32; do
	if [ -e "$DIR/b4.$n" ]; then
		t=$(cut -d' ' -f1 "$DIR/b4.$n" | median)
		c=$(cut -d' ' -f2 "$DIR/b4.$n" | median)
		w=$(median <"$DIR/b4.waited.$n")
	else
		t=$(cat "$DIR/b.$n.m1")
		c=$(cat "$DIR/b.$n.m2")
		w=$(median <"$DIR/b.waited.$n")
	fi
	echo "$n clients: $t tps, $(ratio "$t" "$(cat "$DIR/b.4.m1")") of 4 alone; busy CPU per transaction $c us;" \
		"transactions that waited: $(awk -v w="$w" -v t="$t" -v s="$SECS" 'BEGIN { printf "%.0f", (t > 0 ? 100 * w / (t * s) : 0) }') %"
done

echo "== C. wake-up delay (release -> next waiter runs), 32 clients on bench=4, ${SECS}s"
set_active 'bench=4' debug2
pos=$(stat -c %s "$DIR/rg.log")
tps rg 32 "$DIR/xact.sql" >/dev/null
tail -c +"$((pos + 1))" "$DIR/rg.log" | sed -n 's/.*active place taken \([0-9]*\) us after it was granted.*/\1/p' >"$DIR/c.us"
n=$(wc -l <"$DIR/c.us")
sort -n "$DIR/c.us" | awk -v n="$n" '{ a[NR] = $1 } END {
	if (n == 0) { print "no waits logged"; exit }
	p = int(n * 0.99); if (p < 1) p = 1
	printf "waits: %d; delay median %d us, p99 %d us, max %d us\n", n, a[int((n + 1) / 2)], a[p], a[n] }'
set_active 'bench=1000'

if command -v valgrind >/dev/null; then
	echo "== D. instructions per pgbench -S -M prepared transaction (callgrind, inside PostgresMain)"
	as_pg "$BIN/pg_ctl -D $DIR/rg -m fast stop" >/dev/null
	as_pg "$BIN/pg_ctl -D $DIR/stock -m fast stop" >/dev/null
	STOCK_IR=
	for run in stock "rg|" "rg|bench=1000"; do
		side=${run%%|*}
		conf=${run#*|}
		[ "$side" = rg ] && printf "role_guard.active_budgets = '%s'\n" "$conf" >"$DIR/rg/active.conf"
		rm -f "$DIR"/cg.*
		as_pg "valgrind --tool=callgrind -q --callgrind-out-file=$DIR/cg.%p --collect-atstart=no --toggle-collect=PostgresMain $BIN/postgres -D $DIR/$side" >"$DIR/vg.log" 2>&1 &
		for ((i = 0; i < 300; i++)); do
			"$BIN/pg_isready" -q -h "$DIR" -p "${PORT[$side]}" && break
			sleep 0.2
		done
		for t in 20 1020; do
			as_pg "$PGBENCH -n -S -M prepared --random-seed=7 -c 1 -t $t -h $DIR -p ${PORT[$side]} -U bench bench" >/dev/null 2>&1
		done
		as_pg "$BIN/pg_ctl -D $DIR/$side -m fast stop" >/dev/null 2>&1
		sleep 2
		tot=()
		take=()
		for f in "$DIR"/cg.*; do
			[ -e "$f" ] || continue
			case $f in *.incl) continue ;; esac
			callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$f" >"$f.incl" 2>/dev/null
			tot+=("$(awk '/^summary:/ { print $2; exit }' "$f")")
			take+=("$(awk '{ gsub(",", "", $1) } /rg_active_take |rg_active_xact_end / { s += $1 } END { print s + 0 }' "$f.incl")")
		done
		# the two largest profiles are the pgbench clients (20 and 1020 transactions)
		read -r small big < <(printf '%s\n' "${tot[@]}" | sort -n | tail -n 2 | tr '\n' ' ')
		read -r tsmall tbig < <(printf '%s\n' "${take[@]}" | sort -n | tail -n 2 | tr '\n' ' ')
		ir=$(((big - small) / 1000))
		if [ "$side" = stock ]; then
			STOCK_IR=$ir
			echo "stock: $ir Ir per transaction"
		else
			echo "role_guard, active_budgets='$conf': $ir Ir per transaction, $(ratio "$ir" "$STOCK_IR") of stock; rg_active_take + rg_active_xact_end: $(((tbig - tsmall) / 1000)) Ir"
		fi
	done
fi
exit 0
