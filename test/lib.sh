# shellcheck shell=bash
# test/lib.sh: functions shared by test/run and test/demo.  Sourced, not run.
#
# Everything here runs as root: packages and `make install` need root, while
# PostgreSQL itself (initdb, pg_ctl, pg_regress, prove) refuses to run as root
# and is run as the `postgres` OS user on a scratch copy of the tree.
#
# Per-version support is one function rg_setup_pgNN each: it makes sure the
# packages are there and sets RG_PG_CONFIG (and RG_MAKE_ARGS, extra make
# variables every make against that version gets).  15 is Debian 12's own;
# 17 and 18 are assembled by test/pgversions.sh (embedded-postgres servers,
# Debian trixie/sid headers, a pg_config stand-in).  test/run and test/demo
# pick a version up through rg_setup_version.

# Repository root, whatever the caller's cwd.
RG_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
RG_PG_USER=postgres
RG_PG_CONFIG=
RG_PG_BINDIR=
RG_MAKE_ARGS=()
# shellcheck disable=SC2034  # used by test/run and test/demo
RG_SCRATCH=
RG_SCRATCH_DIRS=()
RG_SCRATCH_BINDIRS=()	# the version's bindir, for each of RG_SCRATCH_DIRS

rg_say() { printf '%s\n' "$*"; }
rg_section() { printf '\n======== %s ========\n' "$*"; }
rg_warn() { printf 'WARNING: %s\n' "$*" >&2; }
rg_die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

rg_require_root() {
	[ "$(id -u)" -eq 0 ] ||
		rg_die "$(basename "$0") must run as root (it installs packages and the extension; the servers run as '$RG_PG_USER')"
}

# Run a command as the postgres OS user, keeping the caller's environment
# (runuser keeps it except HOME/SHELL/USER/LOGNAME) and PATH explicitly;
# TMPDIR is one postgres can write (pg_regress and the TAP tests put their
# sockets there), chosen by rg_stage_tree.
RG_PG_TMPDIR=/tmp
rg_as_pg() {
	runuser -u "$RG_PG_USER" -- env "PATH=$PATH" "TMPDIR=$RG_PG_TMPDIR" "$@"
}

# True if Debian package $1 is installed ("install ok installed"; a package
# removed but not purged also answers `dpkg -s`, so the status is checked).
rg_pkg_installed() {
	dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

# Install whichever of the given Debian packages are missing; nothing at all
# (no apt-get update) when every one is already installed.
rg_ensure_packages() {
	local p missing=()
	for p in "$@"; do
		rg_pkg_installed "$p" || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		rg_say "packages: all present ($*)"
		return 0
	fi
	rg_say "packages: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q </dev/null || return 1
	apt-get install -y -q \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" </dev/null || return 1
	for p in "${missing[@]}"; do
		rg_pkg_installed "$p" || { rg_warn "package $p still not installed"; return 1; }
	done
}

# Packages every version needs to build and run the suites; pgbouncer and
# prometheus-postgres-exporter for the tests of role_guard beside them
# (test/t/07*.pl; Debian starts their default services, which the tests
# leave alone: they run their own on free ports).
RG_BASE_PACKAGES=(make gcc perl libipc-run-perl libkrb5-dev iproute2
	pgbouncer prometheus-postgres-exporter)

# Patroni 3.0 with its etcd client and one etcd 3.4 server, for the HA
# cluster test (test/t/090_patroni.pl, which runs its own etcd and Patronis
# on free ports and leaves Debian's services alone).  Optional: where they
# cannot be installed the test skips and says so, nothing else is lost.
RG_HA_PACKAGES=(patroni python3-etcd etcd-server)

# ---- per-version setup: install what is missing, set RG_PG_CONFIG ----------

rg_setup_pg15() {
	rg_ensure_packages "${RG_BASE_PACKAGES[@]}" \
		postgresql-15 postgresql-server-dev-15 postgresql-15-pgaudit \
		postgresql-15-cron || return 1
	RG_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
	[ -n "${RG_PG15_ROOT:-}" ] || return 0
	# A private copy (see test/run): PostgreSQL finds its libraries, share
	# files and headers relative to its own binaries, so the copy is a
	# whole installation that `make install` can write without touching
	# Debian's.
	local d
	for d in /usr/lib/postgresql/15 /usr/share/postgresql/15 /usr/include/postgresql/15; do
		if [ ! -d "$RG_PG15_ROOT$d" ]; then
			mkdir -p "$(dirname "$RG_PG15_ROOT$d")" && cp -a "$d" "$RG_PG15_ROOT$d" || return 1
		fi
	done
	[ -e "$RG_PG15_ROOT/usr/include/postgresql/libpq-fe.h" ] ||
		cp -a /usr/include/postgresql/*.h "$RG_PG15_ROOT/usr/include/postgresql/" 2>/dev/null || true
	RG_PG_CONFIG=$RG_PG15_ROOT/usr/lib/postgresql/15/bin/pg_config
}

# 17 and 18: see test/pgversions.sh.  Debian's 15 client (psql, pgbench)
# talks to them; libssl-dev and libkrb5-dev for the headers that their
# server headers include (built --with-openssl --with-gssapi).
# shellcheck source=test/pgversions.sh
. "$RG_REPO/test/pgversions.sh"

rg_setup_pg17() {
	rg_ensure_packages "${RG_BASE_PACKAGES[@]}" \
		postgresql-client-15 libssl-dev || return 1
	rg_pgv_setup 17
}

rg_setup_pg18() {
	rg_ensure_packages "${RG_BASE_PACKAGES[@]}" \
		postgresql-client-15 libssl-dev || return 1
	rg_pgv_setup 18
}

# rg_setup_version V: returns 0 and sets RG_PG_CONFIG/RG_PG_BINDIR, 2 if the
# version is not supported by this script, 1 if its setup failed.
rg_setup_version() {
	local v=$1
	if ! declare -F "rg_setup_pg$v" >/dev/null; then
		rg_say "PostgreSQL '$v' is not supported by test/lib.sh yet (no rg_setup_pg$v; supported: $(rg_supported_versions))"
		return 2
	fi
	RG_PG_CONFIG=
	RG_MAKE_ARGS=()
	"rg_setup_pg$v" || { rg_say "PostgreSQL $v: setup failed (see above)"; return 1; }
	if [ ! -x "$RG_PG_CONFIG" ]; then
		rg_say "PostgreSQL $v: no pg_config at '$RG_PG_CONFIG'"
		return 1
	fi
	RG_PG_BINDIR=$("$RG_PG_CONFIG" --bindir)
	rg_ensure_packages "${RG_HA_PACKAGES[@]}" ||
		rg_warn "could not install ${RG_HA_PACKAGES[*]}: test/t/090_patroni.pl will skip"
	rg_say "PostgreSQL $v: $("$RG_PG_CONFIG" --version) ($RG_PG_CONFIG)"
}

rg_supported_versions() {
	declare -F | sed -n 's/^declare -f rg_setup_pg\([0-9][0-9]*\)$/\1/p' | tr '\n' ' ' | sed 's/ $//'
}

# ---- scratch copy of the tree ------------------------------------------------

# rg_stage_tree: copy the repository (without .git and build/test products)
# into a new scratch directory owned by postgres; sets RG_SCRATCH and records
# it in RG_SCRATCH_DIRS for rg_cleanup_scratch.
rg_stage_tree() {
	local base dest=
	for base in "${TMPDIR:-/tmp}" /tmp /var/tmp; do
		# (not named after role_guard: from PG16 the server logs pg_hba.conf's
		# path, under this directory, and tests look for "role_guard" in logs)
		dest=$(mktemp -d "$base/rgtest.XXXXXX" 2>/dev/null) || continue
		chown "$RG_PG_USER:" "$dest" && chmod 755 "$dest"
		if rg_as_pg test -w "$dest" -a -x "$dest"; then
			RG_PG_TMPDIR=$base
			break
		fi
		rmdir "$dest"
		dest=
	done
	[ -n "$dest" ] || { rg_say "cannot make a scratch directory $RG_PG_USER can write"; return 1; }
	RG_SCRATCH_DIRS+=("$dest")
	RG_SCRATCH_BINDIRS+=("$RG_PG_BINDIR")
	# shellcheck disable=SC2034  # used by test/run and test/demo
	RG_SCRATCH=$dest
	# Build and test products are excluded at the top level only (where make
	# and pg_regress put them); object files wherever they are.
	tar -C "$RG_REPO" -cf - \
		--exclude=./.git --exclude=./tmp_check --exclude=./results \
		--exclude=./log --exclude=./regression.diffs --exclude=./regression.out \
		--exclude=./test/.cache \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		. | tar -C "$dest" -xf - || { rg_say "copying the tree to $dest failed"; return 1; }
	chown -R "$RG_PG_USER:" "$dest"
	rg_say "scratch copy: $dest"
}

# Stop any server still running from a data directory under $1 (left by a
# test that was killed), as postgres, with pg_ctl from bindir $2 (that of
# the version the scratch copy was made for), then remove $1.
rg_remove_scratch() {
	local dir=$1 bindir=${2:-$RG_PG_BINDIR} pidfile
	[ -n "$dir" ] && [ -d "$dir" ] || return 0
	while IFS= read -r pidfile; do
		[ -n "$pidfile" ] || continue
		rg_as_pg "$bindir/pg_ctl" -D "$(dirname "$pidfile")" stop -m immediate -w >/dev/null 2>&1 || true
	done < <(find "$dir" -name postmaster.pid -type f 2>/dev/null)
	rm -rf "$dir"
}

rg_cleanup_scratch() {
	local i
	for i in "${!RG_SCRATCH_DIRS[@]}"; do
		if [ "${RG_KEEP_SCRATCH:-0}" = 1 ]; then
			rg_say "kept scratch directory ${RG_SCRATCH_DIRS[$i]} (RG_KEEP_SCRATCH=1)"
		else
			rg_remove_scratch "${RG_SCRATCH_DIRS[$i]}" "${RG_SCRATCH_BINDIRS[$i]:-}"
		fi
	done
	RG_SCRATCH_DIRS=()
	RG_SCRATCH_BINDIRS=()
}

# ---- build and install -------------------------------------------------------

# rg_make_pg DIR ARGS...: make in DIR as postgres, against RG_PG_CONFIG.
rg_make_pg() {
	local dir=$1
	shift
	rg_as_pg make --no-print-directory -C "$dir" "PG_CONFIG=$RG_PG_CONFIG" "${RG_MAKE_ARGS[@]}" "$@"
}

# rg_build DIR [MAKE ARGS...], e.g. rg_build "$dir" PG_CFLAGS=-Werror
rg_build() {
	local dir=$1
	shift
	rg_make_pg "$dir" -j"$(nproc 2>/dev/null || echo 2)" "$@"
}

# rg_install DIR: make install, as root.
rg_install() {
	make --no-print-directory -C "$1" "PG_CONFIG=$RG_PG_CONFIG" "${RG_MAKE_ARGS[@]}" install
}

# ---- misc --------------------------------------------------------------------

# rg_free_port FROM TO: print a TCP port on 127.0.0.1 nobody listens on,
# starting at a random point of the range.
rg_free_port() {
	local from=$1 to=$2 n i p
	n=$((to - from + 1))
	for ((i = 0, p = from + RANDOM % n; i < n; i++, p = from + (p - from + 1) % n)); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# rg_parse_pg_regress FILE: print "PASSED FAILED" from pg_regress output.
# Understands PG <= 15 ("test foo ... ok 12 ms", "     foo ... FAILED") and
# PG >= 16 (TAP-like "ok 1 - foo 12 ms", "not ok 2 + foo"); the closing
# "All N tests passed." / "N of M tests failed." is used when present (it is
# pg_regress's own count); the per-test lines when it is missing (pg_regress
# died).  A test "failed (ignored)" counts as failed.
rg_parse_pg_regress() {
	awk '
	/^(test +| +)[^ ]+ +\.\.\. +ok( |$)/                { p++; next }
	/^(test +| +)[^ ]+ +\.\.\. +(FAILED|failed)( |$)/   { f++; next }
	/^ok +[0-9]+ +[-+] +[^ ]/                           { p++; next }
	/^not ok +[0-9]+ +[-+] +[^ ]/                       { f++; next }
	match($0, /All [0-9]+ tests passed/) {
		s = substr($0, RSTART, RLENGTH); split(s, a, " ")
		sp = a[2]; sf = 0; have = 1; next
	}
	match($0, /[0-9]+ of [0-9]+ tests failed/) {
		s = substr($0, RSTART, RLENGTH); split(s, a, " ")
		sf = a[1]; sp = a[3] - a[1]; have = 1; next
	}
	END {
		if (have) { p = sp; f = sf }
		printf "%d %d\n", p, f
	}' "$1"
}
