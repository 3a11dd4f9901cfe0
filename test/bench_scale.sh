# shellcheck shell=bash
# shellcheck disable=SC2154  # variables and functions come from test/bench
# test/bench_scale.sh: `test/bench --scale`, role_guard on a big server,
# side by side with stock PostgreSQL.  Sourced by test/bench once it has
# built role_guard, made its temporary directory and chosen two ports; uses
# test/bench's helpers (admin_psql, make_cluster, write_preload, pm_cpu,
# record/values/med, ...) and its cleanup (servers, helper processes, and
# the EXTRA_CLEANUP commands: the uprobes and tracefs mount made here).
#
# The big server (both data directories, the same catalogs):
#   max_connections 2000; role_guard.max_roles 10000 (the counter table
#   must hold 10 000 roles: it holds max_roles + 3 x MaxBackends counters);
#   roles s001..s100 (LOGIN, each in two of the groups sg051..sg200),
#   sg001..sg200 (groups), grpuser (LOGIN, member of sg001..sg050),
#   u00001..u10000 (LOGIN), bench, reapme; database bench (pgbench -i -s 1).
# role_guard's policy there:
#   budgets: 10 000 entries: +sg001..+sg200 (200 +group entries), s001..s100,
#     bench, grpuser, reapme, *, and u00001..u09696;
#   reservations: 100 entries: s001..s090=16, +sg151..+sg160=20 (1 640
#     places; the held sessions leave 100 of them unused, so every login
#     checks the free slots);
#   idle_timeouts '*=1h' (nothing reaped: the reaper scans every session),
#   reap_interval 10s (100ms in S4), superuser_deny_hosts a list that never
#   matches.
#
# Sections:
#   S1  crossed-over login and statement rates, both servers at once with
#       1 500 idle sessions each held open by one perl process
#       (test/bench_conn.pl holdroles, 15 per role s001..s100), and on the
#       role_guard side 10 000 roles u* logged in once (so that 10 000
#       roles are in its counter table); pgbench -C -S as bench (one budget
#       entry) and as grpuser (50 groups, each with a +group entry), and
#       pgbench -S -M prepared.  Orientations alternate (role_guard in the
#       stock directory, then in the rg directory; both restarted).
#   S2  the views with 1 500 sessions and over 10 000 roles in the counter
#       table: time per query (pgbench -t, per-query latencies), and how
#       long the view holds role_guard's lock each time it takes it (a
#       part of the counter array, then the slots), from uprobes at the
#       return of each LWLockAcquire and at each LWLockRelease call in
#       rg_snapshot (perf probe; page faults taken under the lock from the
#       same record); and how long a role change holds the lock
#       exclusively (rg_reserve_apply, which a role change makes the next
#       login or reaper scan run).
#   S3  shared memory from pg_shmem_allocations at this size, and at the
#       defaults (max_connections 100, role_guard with no settings):
#       role_guard's named entries plus its hash tables' elements (the
#       growth of "<anonymous>" over the stock server's), against the
#       README's formula.
#   S4  the reaper with 1 500 sessions: CPU per scan at reap_interval
#       100ms (schedstat), delay past a 1 s limit.
#   S5  a login at the default policy (role_guard preloaded, no settings)
#       on a server at the defaults: crossed-over login rates, server CPU
#       and minor page faults per login, both servers restarted for every
#       run (faults per login depend on the layout ASLR draws at each start:
#       the mean over 8 starts, 4 with --quick); the faults by mapping and
#       by code (perf record -e minor-faults -d, one server at a time) in
#       the first two.
#   S6  callgrind: the login hook (rg_ClientAuthentication and
#       rg_release_at_exit, inclusive) at the defaults with its breakdown
#       and the whole login against stock; on the small server (the README
#       budget; 50 +group entries) and on the big one (the policy above,
#       max_connections 2000, 100 sessions held: 1 500 under valgrind do
#       not fit this machine).

SC_MAXCONN=2000
SC_ROLES=100
SC_UROLES=10000
SC_MAX_ROLES=10000
SC_CG_SESSIONS=100
SC_PAIRS=1
if [ "$QUICK" = 1 ]; then
	SC_RUNS=${ROUNDS_GIVEN:-1}
	SC_S5_ORIENT=4
	SC_SCRAPES=20
	SC_VIEW_N=2
	SC_FAULT_LOGINS=100
else
	SC_RUNS=${ROUNDS_GIVEN:-3}
	SC_S5_ORIENT=8
	SC_SCRAPES=40
	SC_VIEW_N=3
	SC_FAULT_LOGINS=200
fi
SC=$BENCH_DIR/sc
mkdir -p "$SC"
chmod 755 "$SC"
declare -A SC_HOLD_PID=()
PROBE_GROUP=rgbench$$
PROBES_ADDED=0
TRACEFS_MOUNTED=0
HAVE_PERF=0
command -v perf >/dev/null 2>&1 && HAVE_PERF=1

# ---- the policy -----------------------------------------------------------------

seq -f 's%03g' 1 "$SC_ROLES" >"$SC/users.s"
seq -f 'u%05g' 1 "$SC_UROLES" >"$SC/users.u"
chmod 644 "$SC"/users.*
{
	for ((i = 1; i <= 200; i++)); do printf '+sg%03d=1000, ' "$i"; done
	for ((i = 1; i <= SC_ROLES; i++)); do printf 's%03d=20, ' "$i"; done
	printf 'bench=1000, grpuser=1000, reapme=100, *=10'
	for ((i = 1; i <= 10000 - 200 - SC_ROLES - 4; i++)); do printf ', u%05d=5' "$i"; done
	echo
} >"$SC/budgets"
{
	for ((i = 1; i <= 90; i++)); do printf 's%03d=16, ' "$i"; done
	for ((i = 151; i <= 160; i++)); do printf '+sg%03d=20' "$i"; [ "$i" -lt 160 ] && printf ', '; done
	echo
} >"$SC/reservations"
SC_NENTRIES=$(tr ',' '\n' <"$SC/budgets" | grep -c '=')
SC_NGROUPENTRIES=$(tr ',' '\n' <"$SC/budgets" | grep -c '+')
SC_NRESERV=$(tr ',' '\n' <"$SC/reservations" | grep -c '=')

# sc_conf_big SIDE IDLE INTERVAL: role_guard's settings on the big server
sc_conf_big() {
	rg_as_pg tee "${DATA[$1]}/role_guard_bench.conf" >/dev/null <<-EOF
		role_guard.max_roles = $SC_MAX_ROLES
		role_guard.budgets = '$(cat "$SC/budgets")'
		role_guard.reservations = '$(cat "$SC/reservations")'
		role_guard.idle_timeouts = '${2:-*=1h}'
		role_guard.reap_interval = '${3:-10s}'
		role_guard.superuser_deny_hosts = '$DENY_HOSTS'
	EOF
}
# sc_conf_default SIDE: no settings at all
sc_conf_default() { rg_as_pg tee "${DATA[$1]}/role_guard_bench.conf" </dev/null >/dev/null; }
# sc_conf_spec SIDE: the small server's example budget (README)
sc_conf_spec() {
	echo "role_guard.budgets = '$SPEC_BUDGET, bench=1000'" | rg_as_pg tee "${DATA[$1]}/role_guard_bench.conf" >/dev/null
}
# sc_conf_grp SIDE: example budget plus a +group entry for each of grpuser's 50 groups
sc_conf_grp() {
	{
		printf "role_guard.budgets = '%s, bench=1000, grpuser=1000" "$SPEC_BUDGET"
		for ((i = 1; i <= 50; i++)); do printf ', +sg%03d=1000' "$i"; done
		echo "'"
	} | rg_as_pg tee "${DATA[$1]}/role_guard_bench.conf" >/dev/null
}

# ---- servers ----------------------------------------------------------------------

# sc_start SIDE [SERVER OPTIONS]
sc_start() {
	local side=$1 opts=${2:-}
	if ! rg_as_pg "$RG_PG_BINDIR/pg_ctl" -D "${DATA[$side]}" -l "$BENCH_DIR/$side.log" \
		-w -t 300 ${opts:+-o "$opts"} start >/dev/null 2>&1; then
		server_log_tail "$side" 30
		rg_die "the $side server did not start"
	fi
}

# sc_restart ON CONF [OPTIONS]: both servers restarted; ON's preloads
# role_guard with the settings CONF writes, the other none (--aa: role_guard
# with no settings)
sc_restart() {
	local on=$1 conf=$2 opts=${3:-} off=stock side
	[ "$on" = stock ] && off=rg
	stop_server stock
	stop_server rg
	"$conf" "$on"
	rg_as_pg rm -f "${DATA[$off]}/role_guard_bench.conf"
	write_preload "$on" on
	if [ "$AA" = 1 ]; then write_preload "$off" on; else write_preload "$off" off; fi
	sc_start stock "$opts"
	sc_start rg "$opts"
	sleep 1
	for side in stock rg; do BASE_CHILDREN[$side]=$(pm_children "$side"); done
	[ "$(admin_psql "$on" -d postgres -Atc 'SHOW shared_preload_libraries')" = role_guard ] ||
		rg_warn "the $on server does not preload role_guard"
}

# sc_hold SIDE COUNT USERFILE [PARALLEL]: COUNT idle sessions from one perl
# process, in the background (sc_hold_wait waits for them)
sc_hold() {
	local side=$1 n=$2 users=$3 par=${4:-2}
	: >"$SC/hold.$side.out"
	(
		ulimit -n $((n + 256))
		exec perl "$HELPER" holdroles 127.0.0.1 "${PORT[$side]}" bench "@$users" "$n" 7200 "$par"
	) >"$SC/hold.$side.out" 2>&1 &
	SC_HOLD_PID[$side]=$!
	HELPER_PIDS+=("$!")
}
sc_hold_wait() {
	local side=$1 i
	for ((i = 0; i < 6000; i++)); do
		grep -q '^ready' "$SC/hold.$side.out" 2>/dev/null && break
		grep -q '^failed' "$SC/hold.$side.out" 2>/dev/null && break
		kill -0 "${SC_HOLD_PID[$side]}" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q '^ready' "$SC/hold.$side.out"; then
		rg_warn "$side: could not hold the sessions: $(head -n 2 "$SC/hold.$side.out")"
		server_log_tail "$side" 5 >&2
		return 1
	fi
	return 0
}
# sc_unhold SIDE: close the held sessions, wait until their backends are gone
sc_unhold() {
	local side=$1 pid=${SC_HOLD_PID[$1]:-} i
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	SC_HOLD_PID[$side]=
	for ((i = 0; i < 600; i++)); do
		[ "$(sc_count_bench_sessions "$side")" = 0 ] && return 0
		sleep 0.1
	done
}
sc_count_bench_sessions() {
	admin_psql "$1" -d postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'role_guard_bench'" 2>/dev/null
}

# ---- pgbench, both servers at once ----------------------------------------------

# sc_pgbench SIDE login|stmt USER SECS: "TPS CPU FAULTS" (see run_pgbench)
sc_pgbench() {
	local side=$1 kind=$2 user=$3 secs=$4 out rc=0 tps ntx cpu0 cpu1
	wait_quiet "$side" "${BASE_CHILDREN[$side]}" >&2
	cpu0=$(pm_cpu "$side")
	local args=(-n -S -c "$CLIENTS" -j "$CLIENTS" -T "$secs" -h 127.0.0.1 -p "${PORT[$side]}" -U "$user" bench)
	if [ "$kind" = login ]; then args=(-C "${args[@]}"); else args=(-M prepared "${args[@]}"); fi
	out=$SC/pgbench.$side.out
	timeout -k 5 $((secs + 120)) "$RG_PG_BINDIR/pgbench" "${args[@]}" >"$out" 2>&1 || rc=$?
	wait_quiet "$side" "${BASE_CHILDREN[$side]}" >&2
	cpu1=$(pm_cpu "$side")
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -n 1)
	ntx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out" | head -n 1)
	if [ "$rc" -ne 0 ] || [ -z "$tps" ] || grep -q 'aborted' "$out"; then
		{
			echo "pgbench $side $kind $user failed (status $rc):"
			tail -n 5 "$out" | sed 's/^/    /'
			server_log_tail "$side" 5
		} >&2
		echo NA NA NA
		return 0
	fi
	echo "$tps $(awk -v a="$cpu0" -v b="$cpu1" -v n="${ntx:-0}" -v hz="$CLK_TCK" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		if (x[1] == "NA" || y[1] == "NA" || n == 0) print "NA NA"
		else printf "%.1f %.2f\n", (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) / n }')"
}

# sc_sim KEY KIND USER SECS ON: both servers at once; records under KEY
# (.on/.off rates, .ratio.ON, cpu and flt the same way, fltd = on - off)
sc_sim() {
	local key=$1 kind=$2 user=$3 secs=$4 on=$5 off=stock p
	local t_on c_on f_on t_off c_off f_off
	[ "$on" = stock ] && off=rg
	sc_pgbench stock "$kind" "$user" "$secs" >"$SC/sim.stock" &
	p=$!
	sc_pgbench rg "$kind" "$user" "$secs" >"$SC/sim.rg"
	wait "$p"
	[ -n "$key" ] || return 0
	read -r t_on c_on f_on <"$SC/sim.$on"
	read -r t_off c_off f_off <"$SC/sim.$off"
	record "$key.on" "$t_on"
	record "$key.off" "$t_off"
	record "$key.ratio.$on" "$(ratio "$t_on" "$t_off")"
	record "${key}cpu.on" "$c_on"
	record "${key}cpu.off" "$c_off"
	record "${key}cpu.ratio.$on" "$(ratio "$c_on" "$c_off")"
	record "${key}flt.on" "$f_on"
	record "${key}flt.off" "$f_off"
	record "${key}fltd" "$(awk -v a="$f_on" -v b="$f_off" 'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%.2f\n", a - b }')"
	echo "$key: with role_guard $t_on/${c_on}us/${f_on}flt, without $t_off/${c_off}us/${f_off}flt"
}

sc_gm() { # geometric mean of the values under the keys
	local k
	for k in "$@"; do values "$k"; done | grep -E '^[0-9.]+$' |
		awk '$1 > 0 { s += log($1); n++ } END { if (n == 0) print "NA"; else printf "%.3f\n", exp(s / n) }'
}

# ---- uprobes (perf probe) -----------------------------------------------------------

sc_probe_cleanup() {
	[ "$PROBES_ADDED" = 1 ] && perf probe -q -d "$PROBE_GROUP:*" >/dev/null 2>&1
	[ "$TRACEFS_MOUNTED" = 1 ] && umount /sys/kernel/tracing 2>/dev/null
	PROBES_ADDED=0
	TRACEFS_MOUNTED=0
}
EXTRA_CLEANUP+=(sc_probe_cleanup)

# sc_probes: uprobes in the servers' role_guard.so: after each of
# rg_snapshot's LWLockAcquire calls returns (snap_locked_N), at each of its
# LWLockRelease calls (snap_unlock_N: it holds the lock a part of the
# counter array at a time, then for the slots), and at entry and return of
# rg_reserve_apply.  False if perf or uprobes are not available.
sc_probes() {
	local so=$LIBDIR/role_guard.so dis acq rel a i=0
	[ "$HAVE_PERF" = 1 ] || return 1
	if ! [ -e /sys/kernel/tracing/uprobe_events ]; then
		mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null && TRACEFS_MOUNTED=1
	fi
	dis=$(objdump -d --no-show-raw-insn "$so" | awk '/<rg_snapshot>:/, /^$/')
	acq=$(awk '/call.*<LWLockAcquire@plt>/ { getline; sub(":", "", $1); print $1 }' <<<"$dis")
	rel=$(awk '/call.*<LWLockRelease@plt>/ { sub(":", "", $1); print $1 }' <<<"$dis")
	[ -n "$acq" ] && [ -n "$rel" ] || { rg_warn "rg_snapshot: no LWLockAcquire/LWLockRelease call found"; return 1; }
	PROBES_ADDED=1
	for a in $acq; do
		perf probe -q -x "$so" -a "$PROBE_GROUP:snap_locked_$i=0x$a" >/dev/null 2>&1 || { rg_warn "perf probe failed at 0x$a"; return 1; }
		i=$((i + 1))
	done
	i=0
	for a in $rel; do
		perf probe -q -x "$so" -a "$PROBE_GROUP:snap_unlock_$i=0x$a" >/dev/null 2>&1 || { rg_warn "perf probe failed at 0x$a"; return 1; }
		i=$((i + 1))
	done
	perf probe -q -x "$so" -a "$PROBE_GROUP:apply_in=rg_reserve_apply" >/dev/null 2>&1 &&
		perf probe -q -x "$so" -a "$PROBE_GROUP:apply_out=rg_reserve_apply%return" >/dev/null 2>&1 ||
		{ rg_warn "perf probe failed: $(perf probe -x "$so" -a "$PROBE_GROUP:x=rg_reserve_apply" 2>&1 | tail -n 1)"; return 1; }
	return 0
}

# sc_probe_intervals FILE FROM TO: from perf script output, per pid, the
# microseconds from each FROM event (a name beginning with FROM) to the next
# TO event of the same pid, with the page faults that pid took in between:
# "us faults" a line
sc_probe_intervals() {
	awk -v from="$2" -v to="$3" '
		{
			pid = $1; t = $2; sub(":", "", t); ev = $3; sub(":$", "", ev)
			n = split(ev, parts, ":"); ev = parts[n]
			if (ev ~ ("^" from)) { start[pid] = t; flt[pid] = 0 }
			else if (ev ~ /faults/) { if (pid in start) flt[pid]++ }
			else if (ev ~ ("^" to) && (pid in start)) {
				printf "%.1f %d\n", (t - start[pid]) * 1e6, flt[pid]; delete start[pid]
			}
		}' "$1"
}

# ---- setup ----------------------------------------------------------------------------

rg_section "scale: two servers with max_connections $SC_MAXCONN (stock: port ${PORT[stock]}, role_guard: port ${PORT[rg]})"
# shellcheck disable=SC2034  # make_cluster reads it
MAX_CONNECTIONS=$SC_MAXCONN
make_cluster stock
make_cluster rg
sc_conf_big rg
write_preload rg off # the objects first, role_guard from the first orientation
start_server stock
start_server rg
sc_setup_objects() {
	local side=$1
	admin_psql "$side" -d postgres -f - >"$SC/setup.$side.log" 2>&1 <<-EOF ||
		CREATE ROLE bench LOGIN;
		CREATE ROLE grpuser LOGIN;
		CREATE ROLE reapme LOGIN;
		CREATE DATABASE bench;
		DO \$\$
		BEGIN
			FOR i IN 1..200 LOOP
				EXECUTE format('CREATE ROLE sg%s NOLOGIN', lpad(i::text, 3, '0'));
			END LOOP;
			FOR i IN 1..$SC_ROLES LOOP
				EXECUTE format('CREATE ROLE s%s LOGIN IN ROLE sg%s, sg%s', lpad(i::text, 3, '0'),
					lpad((50 + i)::text, 3, '0'), lpad((150 + (i + 1) / 2)::text, 3, '0'));
			END LOOP;
			FOR i IN 1..50 LOOP
				EXECUTE format('GRANT sg%s TO grpuser', lpad(i::text, 3, '0'));
			END LOOP;
			FOR i IN 1..$SC_UROLES LOOP
				EXECUTE format('CREATE ROLE u%s LOGIN', lpad(i::text, 5, '0'));
			END LOOP;
		END
		\$\$;
	EOF
		{ cat "$SC/setup.$side.log"; rg_die "creating roles ($side) failed"; }
	"$RG_PG_BINDIR/pgbench" -i -s 1 -q -h "$SOCKDIR" -p "${PORT[$side]}" -U postgres bench \
		>>"$SC/setup.$side.log" 2>&1 || { cat "$SC/setup.$side.log"; rg_die "pgbench -i ($side) failed"; }
	admin_psql "$side" -d bench >>"$SC/setup.$side.log" 2>&1 <<-EOF ||
		GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC;
		VACUUM ANALYZE;
	EOF
		{ cat "$SC/setup.$side.log"; rg_die "GRANT ($side) failed"; }
}
# sc_create_views SIDE (role_guard preloaded there): the extension's objects
# from its scripts, with their functions in the private copy of the library
# the servers preload (CREATE EXTENSION would name the installed one, a
# second copy that refuses to load outside shared_preload_libraries)
SC_VIEWS_MADE=
sc_create_views() {
	local f
	for f in role_guard--1.0.sql role_guard--1.0--1.1.sql; do
		grep -v '^\\echo' "$RG_SCRATCH/sql/$f" | sed "s|MODULE_PATHNAME|$LIBDIR/role_guard|g"
	done | admin_psql "$1" -d bench >"$SC/views.$1.log" 2>&1 ||
		{ cat "$SC/views.$1.log"; rg_die "creating role_guard's views ($1) failed"; }
	SC_VIEWS_MADE+=" $1"
}
sc_setup_objects stock &
SETUP_PID=$!
sc_setup_objects rg
wait "$SETUP_PID" || rg_die "setting up the stock server failed"
PG_VERSION_TEXT=$(admin_psql stock -d postgres -Atc 'SHOW server_version')
CLK_TCK=$(getconf CLK_TCK)
declare -A BASE_CHILDREN=()
say "servers up, PostgreSQL $PG_VERSION_TEXT, role_guard $GIT_DESC (sources md5 $SRC_MD5); roles: $(admin_psql rg -d postgres -Atc 'SELECT count(*) FROM pg_roles')"
say "policy: $SC_NENTRIES budget entries ($SC_NGROUPENTRIES +group), $SC_NRESERV reservations, max_roles $SC_MAX_ROLES"

# sc_fault_record TAG USER ON: minor faults of each postmaster and its
# children (perf record -d, inherited by the backends it forks), one server
# at a time, over SC_FAULT_LOGINS logins of USER; per login by the mapping
# of the faulting address (flt.map.TAG.on|off: with role_guard, on the
# server ON, or without) and by the code that faulted (flt.sym.TAG.on|off)
sc_fault_record() {
	local tag=$1 user=$2 on=$3 side pm lbl
	[ "$HAVE_PERF" = 1 ] || return 0
	for side in stock rg; do
		if [ "$side" = "$on" ]; then lbl=on; else lbl=off; fi
		pm=$(postmaster_pid "$side")
		wait_quiet "$side" "${BASE_CHILDREN[$side]}"
		perf record -q -o "$SC/perf.flt.$tag.$lbl" -d -e minor-faults -c 1 -p "$pm" >/dev/null 2>"$SC/perf.flt.$tag.$lbl.err" &
		PERF_PID=$!
		HELPER_PIDS+=("$PERF_PID")
		sleep 1
		"$RG_PG_BINDIR/pgbench" -n -C -S -c 1 -j 1 -t "$SC_FAULT_LOGINS" -h 127.0.0.1 -p "${PORT[$side]}" -U "$user" bench >/dev/null 2>&1
		wait_quiet "$side" "${BASE_CHILDREN[$side]}"
		kill -INT "$PERF_PID" 2>/dev/null
		wait "$PERF_PID" 2>/dev/null
		perf report -i "$SC/perf.flt.$tag.$lbl" --stdio -n --mem-mode --sort dso_daddr 2>/dev/null |
			awk -v n="$SC_FAULT_LOGINS" '/^ *[0-9.]+%/ { d = $3; for (i = 4; i <= NF; i++) d = d "_" $i
				gsub(/PostgreSQL\.[0-9]+/, "dsm_segments", d); f[d] += $2 }
				END { for (d in f) printf "%.2f %s\n", f[d] / n, d }' >"$SC/flt.map.$tag.$lbl"
		perf report -i "$SC/perf.flt.$tag.$lbl" --stdio -n --sort dso,sym 2>/dev/null |
			awk -v n="$SC_FAULT_LOGINS" '/^ *[0-9.]+%/ { d = $3; for (i = 4; i <= NF; i++) d = d "_" $i; printf "%.2f %s\n", $2 / n, d }' >"$SC/flt.sym.$tag.$lbl"
		rm -f "$SC/perf.flt.$tag.$lbl"
	done
}
# sc_fault_combine TAG: the mean over the orientations recorded (TAG.oN):
# flt.KIND.TAG.rg (with role_guard) and .stock (without), so that the data
# directories' own difference cancels as in the rates
sc_fault_combine() {
	local tag=$1 kind lbl side files
	for kind in map sym; do
		for lbl in on off; do
			if [ "$lbl" = on ]; then side=rg; else side=stock; fi
			files=$(ls "$SC"/flt."$kind"."$tag".o*."$lbl" 2>/dev/null)
			[ -n "$files" ] || continue
			# shellcheck disable=SC2086  # a list of files
			awk -v n="$(wc -w <<<"$files")" '{ f[$2] += $1 } END { for (d in f) printf "%.2f %s\n", f[d] / n, d }' $files >"$SC/flt.$kind.$tag.$side"
		done
	done
}
# sc_fault_diff TAG map|sym N: the N largest differences per login
sc_fault_diff() {
	local a=$SC/flt.$2.$1.stock b=$SC/flt.$2.$1.rg
	[ -s "$a" ] && [ -s "$b" ] || return 0
	join -a1 -a2 -e 0 -o 0,1.1,2.1 -1 2 -2 2 <(sort -k2,2 "$a") <(sort -k2,2 "$b") 2>/dev/null |
		awk '{ printf "%+.2f %s %.2f %.2f\n", $3 - $2, $1, $2, $3 }' | sort -g -r | head -n "$3" |
		awk '{ printf "    %-52s stock %7.2f  role_guard %7.2f  diff %+7.2f\n", $2, $3, $4, $1 }'
	awk 'FNR == NR { x += $1; next } { y += $1 } END {
		printf "    %-52s stock %7.2f  role_guard %7.2f  diff %+7.2f\n", "(all)", x, y, y - x }' "$a" "$b"
}

# ---- S1: crossed-over rates at scale ----------------------------------------------------

NORIENT=$((2 * SC_PAIRS))
rg_section "S1: login and statement rates with $SESSIONS idle sessions held on each server, both at once, crossed over ($NORIENT orientations x $SC_RUNS runs, ${SECS}s, $CLIENTS clients each)"
for ((o = 0; o < NORIENT; o++)); do
	# the last orientation has role_guard in the rg directory: S2-S4 use it
	if (((NORIENT - 1 - o) % 2 == 0)); then on=rg; else on=stock; fi
	sc_restart "$on" sc_conf_big
	[ "$on" = rg ] && [[ $SC_VIEWS_MADE != *rg* ]] && sc_create_views rg
	t0=$(now_ms)
	sc_hold stock "$SESSIONS" "$SC/users.s" 2
	sc_hold rg "$SESSIONS" "$SC/users.s" 2
	if ! sc_hold_wait stock || ! sc_hold_wait rg; then rg_die "cannot hold $SESSIONS sessions"; fi
	say "orientation $((o + 1))/$NORIENT (role_guard in the $on directory): $SESSIONS sessions held on each server in $(($(now_ms) - t0)) ms"
	# 10 000 roles in role_guard's counter table: each logs in once (its peak stays)
	t0=$(now_ms)
	res=$(perl "$HELPER" logins 127.0.0.1 "${PORT[$on]}" bench "@$SC/users.u" "$SC_UROLES" 4 2>&1)
	say "  $SC_UROLES logins of roles u* on the role_guard side: $res ($(($(now_ms) - t0)) ms)"
	sleep 1
	for side in stock rg; do BASE_CHILDREN[$side]=$(pm_children "$side"); done
	sc_sim "" login bench 1 "$on"
	sc_sim "" stmt bench 1 "$on"
	for ((r = 0; r < SC_RUNS; r++)); do
		say "  run $((r + 1)): $(sc_sim sc_lb login bench "$SECS" "$on")"
		say "  run $((r + 1)): $(sc_sim sc_lg login grpuser "$SECS" "$on")"
		say "  run $((r + 1)): $(sc_sim sc_st stmt bench "$SECS" "$on")"
	done
	# where the extra page faults are at this size, bench and grpuser
	sc_fault_record "big.o$o" bench "$on"
	sc_fault_record "bigg.o$o" grpuser "$on"
	if ((o < NORIENT - 1)); then
		sc_unhold stock
		sc_unhold rg
	fi
done
sc_fault_combine big
sc_fault_combine bigg
SC_ROLE_ROWS=$(admin_psql rg -d bench -Atc 'SELECT count(*) FROM role_guard_usage')
say "role_guard side: $SC_ROLE_ROWS rows in role_guard_usage, $(sc_count_bench_sessions rg) bench sessions"

# ---- S2: the views ---------------------------------------------------------------------------

rg_section "S2: the views with $SESSIONS sessions and $SC_ROLE_ROWS role rows"
PROBES_OK=0
sc_probes && PROBES_OK=1
# sc_view_times KEY QUERY N: latency of N queries in one session (pgbench -l)
sc_view_times() {
	local key=$1 q=$2 n=$3 d
	d=$SC/view.$key
	mkdir -p "$d"
	chmod 777 "$d"
	echo "$q" >"$d/q.sql"
	(cd "$d" && "$RG_PG_BINDIR/pgbench" -n -c 1 -t "$n" -l -f q.sql -h 127.0.0.1 -p "${PORT[rg]}" -U postgres bench >"$d/out" 2>&1) ||
		{ rg_warn "pgbench $key: $(tail -n 2 "$d/out")"; return 0; }
	cat "$d"/pgbench_log.* | awk '{ printf "%.3f\n", $3 / 1000 }' >"$d/ms"
	while read -r v; do record "view.$key" "$v"; done <"$d/ms"
}
if [ "$PROBES_OK" = 1 ]; then
	perf record -q -o "$SC/perf.views" -a -e "$PROBE_GROUP:snap_locked_*" -e "$PROBE_GROUP:snap_unlock_*" \
		-e minor-faults -c 1 >/dev/null 2>"$SC/perf.views.err" &
	PERF_PID=$!
	HELPER_PIDS+=("$PERF_PID")
	sleep 2
fi
# the snapshot behind the views (each view takes one or more), then the views
sc_view_times rolestats 'SELECT count(*) FROM role_guard_role_stats();' "$SC_SCRAPES"
sc_view_times usage 'SELECT * FROM role_guard_usage;' "$SC_VIEW_N"
sc_view_times summary 'SELECT * FROM role_guard_summary;' "$SC_VIEW_N"
sc_view_times budgets 'SELECT * FROM role_guard_budgets;' 5
sc_view_times reservations 'SELECT * FROM role_guard_reservations;' 5
sc_view_times events 'SELECT * FROM role_guard_events;' 5
if [ "$PROBES_OK" = 1 ]; then
	kill -INT "$PERF_PID" 2>/dev/null
	wait "$PERF_PID" 2>/dev/null
	perf script -i "$SC/perf.views" -F pid,time,event 2>/dev/null >"$SC/perf.views.txt"
	sc_probe_intervals "$SC/perf.views.txt" snap_locked snap_unlock >"$SC/snap.holds"
	awk '{ print $1 / 1000 }' "$SC/snap.holds" | while read -r v; do record snaphold "$v"; done
	awk '{ print $2 }' "$SC/snap.holds" | while read -r v; do record snapflt "$v"; done
	say "lock held by the views' snapshots, per hold (a part of the counter array, or the slots): $(wc -l <"$SC/snap.holds") holds; ms: $(awk '{ print $1 / 1000 }' "$SC/snap.holds" | sort -n | awk '{ v[NR] = $1 } END { p = int(NR * 0.99); if (p < 1) p = 1; if (NR) printf "min %.3f median %.3f p99 %.3f max %.3f", v[1], v[int((NR + 1) / 2)], v[p], v[NR] }'); page faults $(awk '{ s += $2 } END { print s + 0 }' "$SC/snap.holds") in all"
	# a role change: the next login (or reaper scan) re-applies the
	# reservations (from the list of counters that hold one), under the
	# exclusive lock
	perf record -q -o "$SC/perf.apply" -a -e "$PROBE_GROUP:apply_in" -e "$PROBE_GROUP:apply_out__return" \
		-e minor-faults -c 1 >/dev/null 2>"$SC/perf.apply.err" &
	PERF_PID=$!
	HELPER_PIDS+=("$PERF_PID")
	sleep 2
	for ((i = 0; i < 5; i++)); do
		admin_psql rg -d postgres -c "ALTER ROLE reapme CONNECTION LIMIT $((100 + i))" >/dev/null
		"$RG_PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "${PORT[rg]}" -U bench -d bench -c 'SELECT 1' >/dev/null
		sleep 0.3
	done
	sleep 1
	kill -INT "$PERF_PID" 2>/dev/null
	wait "$PERF_PID" 2>/dev/null
	perf script -i "$SC/perf.apply" -F pid,time,event 2>/dev/null >"$SC/perf.apply.txt"
	sc_probe_intervals "$SC/perf.apply.txt" apply_in apply_out >"$SC/apply.holds"
	awk '{ print $1 / 1000 }' "$SC/apply.holds" | while read -r v; do record applyhold "$v"; done
	say "rg_reserve_apply after a role change (ms, page faults): $(awk '{ printf "%.3f/%d ", $1 / 1000, $2 }' "$SC/apply.holds")"
else
	rg_warn "no uprobes (perf missing or perf probe failed): the lock-hold figures are left out"
fi

# ---- S3: shared memory at this size ------------------------------------------------------

# sc_shmem SIDE: "named anonymous total" bytes: role_guard's named entries,
# the <anonymous> allocations, and everything allocated
sc_shmem() {
	admin_psql "$1" -d postgres -Atc "SELECT coalesce(sum(allocated_size) FILTER (WHERE name LIKE 'role_guard%'), 0),
		coalesce(sum(allocated_size) FILTER (WHERE name = '<anonymous>'), 0),
		sum(allocated_size) FILTER (WHERE name <> '<unused>') FROM pg_shmem_allocations" | tr '|' ' '
}
sc_shmem_entries() {
	admin_psql rg -d postgres -Atc "SELECT name || ': ' || allocated_size FROM pg_shmem_allocations WHERE name LIKE 'role_guard%' ORDER BY allocated_size DESC" | paste -sd ';' | sed 's/;/; /g'
}
# sc_formula: the README's formula for the rg server's settings, in bytes:
# "slots counters events caches total procs counters#"; the caches are the
# membership cache (an entry and 8 pool OIDs per max_roles) and the
# database cache (128 entries)
sc_formula() {
	admin_psql rg -d postgres -Atc "SELECT current_setting('max_connections')::int + current_setting('autovacuum_max_workers')::int + 1
		+ current_setting('max_worker_processes')::int + current_setting('max_wal_senders')::int,
		current_setting('max_prepared_transactions')::int, current_setting('role_guard.max_roles')::int,
		current_setting('role_guard.event_log_size')::int" | tr '|' ' ' |
		awk '{ mb = $1; procs = mb + 5 + $2; s = 616 * procs; c = 296 * ($3 + 3 * mb); e = 528 * $4; m = 144 * $3 + 13312
			printf "%d %d %d %d %d %d %d\n", s, c, e, m, s + c + e + m, procs, $3 + 3 * mb }'
}
# sc_shmem_figures KEY: record measured and formula figures under KEY
sc_shmem_figures() {
	local key=$1 rg_n rg_a rg_t st_a st_t f
	read -r rg_n rg_a rg_t <<<"$(sc_shmem rg)"
	read -r _ st_a st_t <<<"$(sc_shmem stock)"
	f=$(sc_formula)
	record "$key.named" "$rg_n"
	record "$key.hashelems" "$((rg_a - st_a))"
	record "$key.measured" "$((rg_n + rg_a - st_a))"
	record "$key.totaldiff" "$((rg_t - st_t))"
	record "$key.formula" "$(awk '{ print $5 }' <<<"$f")"
	record "$key.formula_parts" "$f"
	record "$key.entries" "$(sc_shmem_entries)"
	say "shared memory ($key): role_guard named entries $rg_n B, its hash elements (anonymous, over stock) $((rg_a - st_a)) B, total allocated over stock $((rg_t - st_t)) B; formula (slots counters events cache total procs counters#) $f"
	say "  entries: $(values "$key.entries")"
}
rg_section "S3: shared memory at max_connections $SC_MAXCONN, max_roles $SC_MAX_ROLES"
sc_shmem_figures shm_big

# ---- S4: the reaper with the sessions held ------------------------------------------------------

rg_section "S4: the reaper with $SESSIONS idle sessions (reap_interval ${REAP_INTERVAL_MS}ms)"
sc_reaper_pid() {
	admin_psql rg -d postgres -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'role_guard reaper'" 2>/dev/null | head -n 1
}
sc_reload_rg() {
	rg_as_pg "$RG_PG_BINDIR/pg_ctl" -D "${DATA[rg]}" reload >/dev/null 2>&1
	sleep 2 # the reaper reloads on its own SIGHUP, then resolves the sessions' limits
}
sc_conf_big rg '*=1h' "${REAP_INTERVAL_MS}ms"
sc_reload_rg
RPID=$(sc_reaper_pid)
if [ -n "$RPID" ]; then
	for ((w = 0; w < REAPER_WINDOWS; w++)); do
		a=$(cut -d' ' -f1 "/proc/$RPID/schedstat")
		t0=$(now_ms)
		sleep "$REAPER_SECS"
		b=$(cut -d' ' -f1 "/proc/$RPID/schedstat")
		t1=$(now_ms)
		record reaper.scale "$(awk -v d=$((b - a)) -v w=$((t1 - t0)) -v i="$REAP_INTERVAL_MS" 'BEGIN { printf "%.4f", d / (w / i) / 1e6 }')"
	done
	say "reaper CPU per scan (ms): $(values reaper.scale | tr '\n' ' ')"
else
	rg_warn "no reaper"
fi
sc_conf_big rg "*=1h, reapme=${IDLE_LIMIT_MS}ms" "${REAP_INTERVAL_MS}ms"
sc_reload_rg
timeout -k 5 $((DELAY_TRIALS * 15 + 30)) perl "$HELPER" reapdelay 127.0.0.1 "${PORT[rg]}" reapme bench \
	"$DELAY_TRIALS" 10 "$(awk -v i="$REAP_INTERVAL_MS" 'BEGIN { print i / 1000 }')" >"$SC/delay.out" 2>&1
sed -n 's/^delay_ms //p' "$SC/delay.out" | while read -r d; do
	record reapdelay.scale "$(awk -v d="$d" -v l="$IDLE_LIMIT_MS" 'BEGIN { printf "%.1f\n", d - l }')"
done
grep -v '^delay_ms' "$SC/delay.out" | head -n 3 | sed 's/^/reapdelay: /' >&2
say "reap delay past the limit (ms): $(values reapdelay.scale | tr '\n' ' ')"
sc_unhold stock
sc_unhold rg

# ---- S5: the default policy on a server at the defaults --------------------------------------

DEFOPTS="-c max_connections=100"
# Minor faults per login depend on the address-space layout each postmaster
# draws at start (ASLR): the same stock server gives 786 to 793 faults per
# login from one start to the next (783.1 +- 0.2 with ASLR off), so this
# section restarts both servers for every run (a new draw each time),
# alternating the data directories, and averages.
rg_section "S5: a login at the default policy (role_guard preloaded, no settings), max_connections 100, both at once, crossed over, $SC_S5_ORIENT restarts"
for ((o = 0; o < SC_S5_ORIENT; o++)); do
	if (((SC_S5_ORIENT - 1 - o) % 2 == 0)); then on=rg; else on=stock; fi
	sc_restart "$on" sc_conf_default "$DEFOPTS"
	sc_sim "" login bench 1 "$on"
	say "  restart $((o + 1)) (role_guard in the $on directory): $(sc_sim sc_ld login bench "$SECS" "$on")"
	((o < 2)) && sc_fault_record "default.o$o" bench "$on"
done
sc_fault_combine default
rg_section "S3b: shared memory at the defaults (max_connections 100, role_guard with no settings)"
sc_shmem_figures shm_def

# ---- S6: callgrind -----------------------------------------------------------------------------

CG=$BENCH_DIR/cg
# sc_cg_total FILE, sc_cg_fn INCLFILE FUNCTION: as in test/bench's section 5
sc_cg_total() { awk '/^summary:/ { print $2; exit }' "$1"; }
sc_cg_fn() {
	awk -v fn="$2" '
		{ gsub(",", "", $1) }
		$0 ~ (":" fn " \\[") { if ($1 + 0 > best) best = $1 + 0 }
		END { print best + 0 }' "$1"
}
# sc_cg_callee TREEFILE CALLER CALLEE: inclusive Ir of CALLEE's calls from
# CALLER (callgrind_annotate --tree=calling)
sc_cg_callee() {
	awk -v caller="$2" -v callee="$3" '
		/^ *[0-9,]+ .*  \*  / { incaller = ($0 ~ (":" caller "( \\[|$)")) }
		incaller && /  >  / && $0 ~ (":" callee " \\(") { v = $1; gsub(",", "", v); sum += v }
		END { print sum + 0 }' "$1"
}
sc_cg_list() { find "$CG" -maxdepth 1 -regex ".*/$1\.[0-9]+" -printf '%f\n' | sort; }
# sc_cg_login SIDE NAME USER: one login (SELECT 1) while nothing else
# connects; leaves CG/SIDE.NAME (the profile) and .incl/.tree
sc_cg_login() {
	local side=$1 name=$2 user=$3 f i new
	wait_quiet "$side" "$SC_CG_BASE"
	sc_cg_list "$side" >"$CG/before"
	timeout -k 5 600 "$RG_PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "${PORT[$side]}" -U "$user" -d bench -c 'SELECT 1' >/dev/null 2>&1 ||
		rg_warn "callgrind login $side/$name failed"
	wait_quiet "$side" "$SC_CG_BASE"
	new=
	for ((i = 0; i < 300; i++)); do
		new=$(sc_cg_list "$side" | comm -13 "$CG/before" - | head -n 1)
		[ -n "$new" ] && grep -q '^totals:' "$CG/$new" 2>/dev/null && break
		sleep 0.1
	done
	[ -n "$new" ] || { rg_warn "no profile for $side/$name"; return 0; }
	cp "$CG/$new" "$CG/$side.$name"
	callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$CG/$new" >"$CG/$side.$name.incl" 2>/dev/null
	callgrind_annotate --inclusive=yes --tree=calling --threshold=100 --auto=no "$CG/$new" >"$CG/$side.$name.tree" 2>/dev/null
	record "cg.$side.$name.total" "$(sc_cg_total "$CG/$new")"
	record "cg.$side.$name.hook" "$(($(sc_cg_fn "$CG/$new.incl" rg_ClientAuthentication 2>/dev/null || echo 0) + 0))"
}
# sc_cg_server SIDE OPTIONS: the server under callgrind, collecting inside
# PostgresMain (each backend from just before authentication to its exit)
sc_cg_server() {
	local side=$1 opts=$2 i
	# shellcheck disable=SC2086  # opts: several words
	rg_as_pg valgrind --tool=callgrind -q --callgrind-out-file="$CG/$side.%p" \
		--collect-atstart=no --toggle-collect=PostgresMain \
		"$RG_PG_BINDIR/postgres" -D "${DATA[$side]}" $opts >"$BENCH_DIR/valgrind.$side.log" 2>&1 &
	HELPER_PIDS+=("$!")
	for ((i = 0; i < 900; i++)); do
		"$RG_PG_BINDIR/pg_isready" -q -h "$SOCKDIR" -p "${PORT[$side]}" -d postgres -U postgres && break
		sleep 0.2
	done
	"$RG_PG_BINDIR/pg_isready" -q -h "$SOCKDIR" -p "${PORT[$side]}" -d postgres -U postgres ||
		{ tail -n 20 "$BENCH_DIR/valgrind.$side.log"; rg_warn "the $side server did not start under valgrind"; return 1; }
	# warm-up: relcache init files, the membership cache
	for user in bench grpuser; do
		"$RG_PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "${PORT[$side]}" -U "$user" -d bench -c 'SELECT 1' >/dev/null 2>&1
	done
	sleep 2
	SC_CG_BASE=$(pm_children "$side")
}
# sc_cg_reload_rg CONF: new settings on the valgrind'd role_guard server
sc_cg_reload_rg() {
	"$1" rg
	rg_as_pg "$RG_PG_BINDIR/pg_ctl" -D "${DATA[rg]}" reload >/dev/null 2>&1
	sleep 3
	for user in bench grpuser; do
		"$RG_PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "${PORT[rg]}" -U "$user" -d bench -c 'SELECT 1' >/dev/null 2>&1
	done
	wait_quiet rg "$SC_CG_BASE"
}

if [ "$CALLGRIND" = 1 ]; then
	rg_section "S6: instruction counts (callgrind, one login at a time)"
	rg_as_pg mkdir -p "$CG"
	stop_server stock
	stop_server rg
	write_preload rg on
	write_preload stock off
	sc_conf_default rg
	say "callgrind: stock, max_connections 100"
	if sc_cg_server stock "-c max_connections=100"; then
		sc_cg_login stock def bench
		sc_cg_login stock grp grpuser
		stop_server stock
	fi
	say "callgrind: role_guard, max_connections 100: default policy, example budget, 50 +group entries"
	if sc_cg_server rg "-c max_connections=100"; then
		sc_cg_login rg def bench
		sc_cg_reload_rg sc_conf_spec
		sc_cg_login rg spec bench
		sc_cg_reload_rg sc_conf_grp
		sc_cg_login rg grp grpuser
		stop_server rg
	fi
	say "callgrind: role_guard, max_connections $SC_MAXCONN, the big policy, $SC_CG_SESSIONS sessions held (one per role s*)"
	sc_conf_big rg
	if sc_cg_server rg "-c max_connections=$SC_MAXCONN"; then
		sc_hold rg "$SC_CG_SESSIONS" "$SC/users.s" 2
		sc_hold_wait rg
		sleep 2
		SC_CG_BASE=$(pm_children rg)
		for user in bench grpuser; do
			"$RG_PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "${PORT[rg]}" -U "$user" -d bench -c 'SELECT 1' >/dev/null 2>&1
		done
		sc_cg_login rg bigb bench
		sc_cg_login rg bigg grpuser
		sc_unhold rg
		stop_server rg
	fi
fi

# ---- the report --------------------------------------------------------------------------------

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
OTHER_PG_END=$(count_procs -x postgres)

# sc_goal VALUE OP LIMIT: met / MISSED / n/a
sc_goal() {
	awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
		if (v == "NA" || v == "") { print "n/a"; exit }
		if (op == ">=") ok = v + 0 >= l + 0
		else if (op == "<=") ok = v + 0 <= l + 0
		else ok = v + 0 < l + 0
		print ok ? "met" : "MISSED" }'
}
sc_row() { printf '%-58s %12s %12s %9s  %-22s %s\n' "$@"; }
sc_max() { values "$1" | grep -E '^-?[0-9.]+$' | sort -g | tail -n 1; }
sc_fmt() { awk -v v="$1" 'BEGIN { if (v == "NA" || v == "" || v == "-") print (v == "" ? "NA" : v); else if (v + 0 >= 1000) printf "%.0f\n", v; else printf "%.4g\n", v }'; }
sc_kib() { awk -v v="$1" 'BEGIN { if (v == "" || v == "NA") print "NA"; else printf "%.0f kB\n", v / 1024 }'; }
# sc_rate_row LABEL UNIT KEY: crossed-over rate, goal >= 0.99
sc_rate_row() {
	local r m
	r=$(sc_gm "$3.ratio.rg" "$3.ratio.stock")
	m=$({ values "$3.ratio.rg"; values "$3.ratio.stock"; } | median)
	sc_row "$1" "$(sc_fmt "$(med "$3.off")") $2" "$(sc_fmt "$(med "$3.on")") $2" "$r" ">= 0.99" "$(sc_goal "$r" ">=" 0.99) (median of runs $m)"
	sc_row "    server CPU per login/transaction (us)" "$(sc_fmt "$(med "${3}cpu.off")")" "$(sc_fmt "$(med "${3}cpu.on")")" "$(sc_gm "${3}cpu.ratio.rg" "${3}cpu.ratio.stock")" "" ""
	sc_row "    minor page faults per login/transaction" "$(sc_fmt "$(med "${3}flt.off")")" "$(sc_fmt "$(med "${3}flt.on")")" "+$(sc_fltd "$3")" "" ""
}
# sc_fltd KEY: extra faults, the mean over orientations of the mean per
# orientation (runs are recorded orientation after orientation)
sc_fltd() {
	values "${1}fltd" | awk -v r="$SC_RUNS" '$1 ~ /^-?[0-9.]+$/ { o = int((NR - 1) / r); s[o] += $1; n[o]++ }
		END { for (i in s) { t += s[i] / n[i]; k++ } if (k) printf "%.2f\n", t / k; else print "NA" }'
}
cgv() { values "cg.$1" | head -n 1; }
cg_hook() { # cg_hook SIDE.NAME: rg_ClientAuthentication + rg_release_at_exit
	local f=$CG/$1.incl
	[ -f "$f" ] || { echo NA; return 0; }
	echo $(($(sc_cg_fn "$f" rg_ClientAuthentication) + $(sc_cg_fn "$f" rg_release_at_exit)))
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b + 0 == 0) print "NA"; else printf "%.1f%%\n", 100 * a / b }'; }
dif() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || a == "" || b == "") print "NA"; else printf "%d\n", a - b }'; }

rg_section "role_guard at scale: results$([ "$AA" = 1 ] && echo " (A/A CALIBRATION: both sides preload role_guard)")"
printf '%-11s %s\n' \
	date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
	machine "$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)$(systemd-detect-virt 2>/dev/null | sed 's/^/, virt: /')" \
	PostgreSQL "$PG_VERSION_TEXT (same binaries for both sides: $RG_PG_BINDIR)" \
	role_guard "git $GIT_DESC, sources md5 $SRC_MD5" \
	server "max_connections $SC_MAXCONN, $SESSIONS idle sessions held per server by one perl process (15 per role over $SC_ROLES roles); role_guard: $SC_NENTRIES budget entries ($SC_NGROUPENTRIES +group), $SC_NRESERV reservations, max_roles $SC_MAX_ROLES, $SC_UROLES roles logged in once ($SC_ROLE_ROWS rows in role_guard_usage)" \
	run "$MODE_TEXT: $NORIENT crossed-over orientations x $SC_RUNS runs, pgbench -c $CLIENTS -j $CLIENTS, ${SECS}s per run, both servers at once, TCP 127.0.0.1, trust" \
	load "load average $LOAD_START at start, $LOAD_END at end; other postgres processes: $OTHER_PG_START at start, $OTHER_PG_END at end" \
	duration "$(($(date +%s) - BENCH_START)) s"
echo
sc_row "measurement" "stock" "role_guard" "ratio" "goal" ""
sc_row "-----------" "-----" "----------" "-----" "----" ""
sc_rate_row "S1 login rate, bench (1 entry), $SESSIONS sessions held" conn/s sc_lb
sc_rate_row "S1 login rate, grpuser (50 groups, +group each)" conn/s sc_lg
sc_rate_row "S1 statement rate (-S -M prepared), $SESSIONS held" tx/s sc_st
SC_RUNS_SAVE=$SC_RUNS
SC_RUNS=1
sc_rate_row "S5 login rate at the default policy, max_conn 100" conn/s sc_ld
SC_RUNS=$SC_RUNS_SAVE
FD=$(values sc_ldfltd | awk '$1 ~ /^-?[0-9.]+$/ { s += $1; n++ } END { if (n) printf "%.2f\n", s / n; else print "NA" }')
sc_row "S5   extra minor page faults per login (mean)" "" "+$FD" "" "< +9.4" "$(sc_goal "$FD" "<" 9.4) (per restart: $(values sc_ldfltd | tr '\n' ' '))"
if [ "$CALLGRIND" = 1 ]; then
	H_DEF=$(cg_hook rg.def)
	H_SPEC=$(cg_hook rg.spec)
	H_GRP=$(cg_hook rg.grp)
	H_BIGB=$(cg_hook rg.bigb)
	H_BIGG=$(cg_hook rg.bigg)
	T_DEF=$(cgv rg.def.total)
	T_STK=$(cgv stock.def.total)
	sc_row "S6 Ir login hook + exit callback, default policy" "" "$H_DEF" "" "< 5000" "$(sc_goal "$H_DEF" "<" 5000)"
	CR=$(sc_cg_fn "$CG/rg.def.incl" rg_database_refuses 2>/dev/null)
	sc_row "S6   rg_database_refuses (database cache)" "" "$CR" "$(pct "$CR" "$H_DEF")" "" ""
	v=$(sc_cg_callee "$CG/rg.def.tree" rg_database_refuses rg_database_fresh)
	sc_row "S6     pg_database read (a cache miss only)" "" "$v" "$(pct "$v" "$H_DEF")" "" ""
	v=$(($(sc_cg_callee "$CG/rg.def.tree" rg_database_refuses pg_database_aclcheck) + $(sc_cg_callee "$CG/rg.def.tree" rg_database_refuses object_aclcheck)))
	sc_row "S6     CONNECT aclcheck (PUBLIC without CONNECT only)" "" "$v" "$(pct "$v" "$H_DEF")" "" ""
	for fn in rg_counter_enter rg_members_resolve SearchSysCache1 LWLockAcquire rg_decide palloc0; do
		v=$(( $(sc_cg_callee "$CG/rg.def.tree" rg_admit "$fn") + $(sc_cg_callee "$CG/rg.def.tree" rg_ClientAuthentication "$fn") ))
		[ "$v" -gt 0 ] && sc_row "S6   $fn (from the hook)" "" "$v" "$(pct "$v" "$H_DEF")" "" ""
	done
	E=$(sc_cg_fn "$CG/rg.def.incl" rg_release_at_exit 2>/dev/null)
	sc_row "S6   rg_release_at_exit" "" "$E" "$(pct "$E" "$H_DEF")" "" ""
	sc_row "S6 Ir whole login (PostgresMain), default policy" "$T_STK" "$T_DEF" "$(ratio "$T_DEF" "$T_STK")" "" "net +$(dif "$T_DEF" "$T_STK") Ir"
	sc_row "S6 Ir login hook + exit, example budget, max_conn 100" "" "$H_SPEC" "" "" ""
	sc_row "S6 Ir login hook + exit, big server, bench" "" "$H_BIGB" "$(ratio "$H_BIGB" "$H_SPEC")" "<= 1.05 of example" "$(sc_goal "$(ratio "$H_BIGB" "$H_SPEC")" "<=" 1.05)"
	sc_row "S6 Ir login hook + exit, 50 +group, max_conn 100" "" "$H_GRP" "" "" ""
	sc_row "S6 Ir login hook + exit, big server, grpuser" "" "$H_BIGG" "$(ratio "$H_BIGG" "$H_GRP")" "<= 1.05 of small" "$(sc_goal "$(ratio "$H_BIGG" "$H_GRP")" "<=" 1.05)"
	for k in grp bigg; do
		v=$(sc_cg_fn "$CG/rg.$k.incl" rg_counter_track_members 2>/dev/null)
		sc_row "S6   rg_counter_track_members ($k)" "" "$v" "$(pct "$v" "$(cg_hook "rg.$k")")" "" ""
	done
	sc_row "S6 Ir whole login, grpuser (50 +group), max_conn 100" "$(cgv stock.grp.total)" "$(cgv rg.grp.total)" "$(ratio "$(cgv rg.grp.total)" "$(cgv stock.grp.total)")" "" ""
fi
RS=$(med reaper.scale)
RSM=$(sc_max reaper.scale)
sc_row "S4 reaper CPU per scan, $SESSIONS sessions (median/max ms)" "" "$RS/$RSM" "" "< 2 ms" "$(sc_goal "$RSM" "<" 2)"
RD=$(med reapdelay.scale)
RDM=$(sc_max reapdelay.scale)
sc_row "S4 delay past a ${IDLE_LIMIT_MS}ms limit (median/max ms)" "" "$RD/$RDM" "" "<= ${REAP_INTERVAL_MS} ms" "$(sc_goal "$RDM" "<=" "$REAP_INTERVAL_MS")"
sc_row "S2 role_guard_role_stats() (C, under the usage view), ms" "" "$(med view.rolestats)/$(sc_max view.rolestats)" "" "" ""
for v in usage summary budgets reservations events; do
	sc_row "S2 role_guard_$v, time per query (median/max ms)" "" "$(med "view.$v")/$(sc_max "view.$v")" "" "" ""
done
if [ "$PROBES_OK" = 1 ]; then
	SH=$(sc_max snaphold)
	sc_row "S2 lock held per snapshot part (median/max ms)" "" "$(med snaphold)/$SH" "" "< 1 ms" "$(sc_goal "$SH" "<" 1)"
	sc_row "S2   page faults under the lock per hold (median)" "" "$(med snapflt)" "" "" ""
	AH=$(sc_max applyhold)
	sc_row "S2 lock held re-applying reservations after a role change" "" "$(med applyhold)/$AH" "" "< 1 ms" "$(sc_goal "$AH" "<" 1)"
fi
for k in shm_def shm_big; do
	M=$(values "$k.measured" | head -n 1)
	F=$(values "$k.formula" | head -n 1)
	lbl="defaults"
	[ "$k" = shm_big ] && lbl="max_conn $SC_MAXCONN, max_roles $SC_MAX_ROLES"
	if [ "$k" = shm_def ]; then
		sc_row "S3 shared memory, $lbl (measured/formula)" "" "$(sc_kib "$M")" "$(sc_kib "$F")" "< 1 MiB" "$(sc_goal "$M" "<" 1048576)"
	else
		sc_row "S3 shared memory, $lbl" "" "$(sc_kib "$M")" "$(sc_kib "$F")" "formula within 5%" "$(sc_goal "$(awk -v m="$M" -v f="$F" 'BEGIN { d = m - f; if (d < 0) d = -d; print d / m }')" "<=" 0.05)"
	fi
done
echo
echo "Shared memory by entry (allocated_size, bytes; the hash tables' elements are <anonymous>):"
# bytes per slot and per event from the named entries; per counter and per
# membership-cache entry from the hash elements at the two sizes (2 x 2)
read -r _ _ _ _ _ _ C1 <<<"$(values shm_def.formula_parts | head -n 1)"
read -r _ _ _ _ _ P2 C2 <<<"$(values shm_big.formula_parts | head -n 1)"
# less the database cache's 128 elements (13 312 B), the same at both sizes
A1=$(($(values shm_def.hashelems | head -n 1) - 13312))
A2=$(($(values shm_big.hashelems | head -n 1) - 13312))
echo "  measured per entry: slot $(awk -v a="$(values shm_big.entries | head -n 1 | sed -n 's/.*role_guard: \([0-9]*\).*/\1/p')" -v p="$P2" 'BEGIN { if (p) printf "%.0f", a / p }') B; $(awk -v a1="$A1" -v a2="$A2" -v c1="$C1" -v c2="$C2" -v m1=1024 -v m2="$SC_MAX_ROLES" 'BEGIN {
	d = c1 * m2 - c2 * m1; if (d == 0 || a1 == "" || a2 == "") { print "n/a"; exit }
	x = (a1 * m2 - a2 * m1) / d; y = (a1 - c1 * x) / m1
	printf "counter index entry %.0f B (the counters themselves are the named entry \"role_guard counters\"), membership-cache entry %.0f B (hash element included)", x, y }')"
for k in shm_def shm_big; do
	echo "  $k: $(values "$k.entries" | head -n 1); hash elements $(values "$k.hashelems" | head -n 1)"
	echo "  $k formula: $(values "$k.formula_parts" | head -n 1 | awk '{ printf "slots %d (%d procs x 616), counters %d (%d x 296), events %d, membership and database caches %d, total %d", $1, $6, $2, $7, $3, $4, $5 }')"
done
for tag in default big bigg; do
	[ -s "$SC/flt.map.$tag.rg" ] || continue
	case $tag in
	default) what="default policy, max_connections 100, bench" ;;
	big) what="big server ($SESSIONS sessions held), bench" ;;
	bigg) what="big server ($SESSIONS sessions held), grpuser (50 +group)" ;;
	esac
	echo
	echo "Minor page faults per login, $what ($SC_FAULT_LOGINS logins, perf record -d, one server at a time):"
	echo "  by mapping of the faulting address (zero_(deleted) = the main shared memory):"
	sc_fault_diff "$tag" map 6
	echo "  by the code that faulted (largest differences):"
	sc_fault_diff "$tag" sym 8
done
echo
echo "Notes: S1/S5 ratio = geometric mean over runs of (rate with role_guard / rate without) measured at the same"
echo "time, half the runs with role_guard in each data directory; stock/role_guard columns are median rates."
echo "Faults and CPU are per login (or transaction) over the postmaster and its exited children (/proc)."
echo "S6 hook Ir = inclusive rg_ClientAuthentication + rg_release_at_exit (callgrind inside PostgresMain); its"
echo "syscache look-up of the role (SearchSysCache1) fills the cache core reads next, so the whole-login"
echo "difference (net) is the cost a login really pays.  Big server under valgrind: $SC_CG_SESSIONS sessions held, not $SESSIONS."
echo "S2: lock hold from uprobes after rg_snapshot's LWLockAcquire and at its LWLockRelease; a login waits at"
echo "most that long for one scrape.  rg_reserve_apply runs (under the exclusive lock) in the first login or"
echo "reaper scan after any role or membership change (ALTER ROLE here)."
echo "Page faults per login move by several from one server start to the next (ASLR), so S5 averages over"
echo "restarts; S1's fault figures (and the by-mapping tables) come from $NORIENT starts only."
echo
echo "raw figures:"
for key in sc_lb.ratio.rg sc_lb.ratio.stock sc_lg.ratio.rg sc_lg.ratio.stock sc_st.ratio.rg sc_st.ratio.stock \
	sc_ld.ratio.rg sc_ld.ratio.stock sc_ldfltd sc_lbfltd sc_lgfltd reaper.scale reapdelay.scale snaphold snapflt applyhold \
	view.usage; do
	[ -f "$(result_file "$key")" ] && printf '  %-19s %s\n' "$key" "$(values "$key" | tr '\n' ' ')"
done
