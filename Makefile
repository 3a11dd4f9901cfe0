# role_guard: PGXS build.  See README.md.
MODULE_big = role_guard
OBJS = src/role_guard.o src/policy.o src/guc.o src/shmem.o src/roles.o \
	src/auth.o src/authblock.o src/authwire.o src/queue.o src/reserve.o src/members.o src/executor.o src/active.o src/reaper.o src/ending.o src/events.o src/views.o src/inject.o src/deny.o \
	src/windows.o src/savefile.o src/persist.o src/advice.o
EXTENSION = role_guard
DATA = $(wildcard sql/role_guard--*.sql)
PGFILEDESC = "role_guard - per-role connection budgets, idle reaping, superuser host denial"

# pg_regress suite: sql/<name>.sql against expected/<name>.out, run on a
# throwaway server with role_guard preloaded (pg_cron's trick).
REGRESS = $(filter-out role_guard--%,$(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf --temp-instance=./tmp_check

# TAP suite: test/t/*.pl, each creating its own servers.
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

# The library reports the version it was built as (role_guard.library_version
# and the start-up LOG line): the control file's default_version.
RG_VERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(dir $(firstword $(MAKEFILE_LIST)))role_guard.control)
PG_CPPFLAGS += -DRG_LIBRARY_VERSION='"$(RG_VERSION)"'

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track header dependencies: every object depends on ours.
$(OBJS): $(wildcard src/*.h)
