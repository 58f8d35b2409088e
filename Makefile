# presence: PGXS build.  `make && make install`, then see README.md.

EXTENSION = presence presence_proxy
MODULE_big = presence
OBJS = src/presence.o src/query.o src/wire.o src/args.o src/epoch.o src/change.o \
	src/row.o src/entry.o src/liveness.o src/history.o src/notify_guard.o \
	src/bgworker.o src/batch.o src/retention.o
DATA = presence--1.0.sql presence--1.0--1.1.sql presence_proxy--1.1.sql
PGFILEDESC = "presence - who's-here registry with Tep-wire diffs"

PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wno-missing-field-initializers -Wno-sign-compare

# make installcheck runs three suites, PGXS's own way (README.md, Tests):
#   REGRESS    pg_regress, every sql/*.sql against expected/, on the running
#              server (PGHOST, PGPORT)
#   ISOLATION  pg_isolation_regress, every test/isolation/specs/*.spec
#              against test/isolation/expected/, on the running server
#   TAP_TESTS  prove, every test/integration/t/*.t: each file starts its own
#              clusters (PostgreSQL::Test::Cluster; not as root)
# Naming one suite's tests on the command line runs only those, e.g.
#   make installcheck REGRESS=presence_api
#   make installcheck ISOLATION=seq_order
#   make installcheck PROVE_TESTS=test/integration/t/07_bulk_prune.t
# and an empty one drops that suite (make installcheck TAP_TESTS=).
REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --load-extension=presence
ISOLATION = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=presence \
	--launcher=$(abspath $(srcdir))/test/isolation/normalize_epoch.sh
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/integration/t/*.t))

presence_named := $(strip $(foreach v,REGRESS ISOLATION PROVE_TESTS,$(if $(filter command line,$(origin $(v))),$(strip $($(v))))))
ifneq ($(presence_named),)
ifneq ($(origin REGRESS),command line)
override REGRESS =
endif
ifneq ($(origin ISOLATION),command line)
override ISOLATION =
endif
ifneq ($(origin PROVE_TESTS),command line)
override TAP_TESTS =
endif
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The integration tests' helpers (PresenceTest.pm); after the include,
# which sets PG_PROVE_FLAGS.
PG_PROVE_FLAGS += -I $(srcdir)/test/integration/lib

# The benchmark suite (BENCHMARKS.md); after the include, so that it is not
# the default target.
.PHONY: bench
bench:
	bash bench/run.sh

# The suites on an assert-enabled PostgreSQL of the host's major, built
# once from Debian's source package and cached (test/lib/assert_build.sh),
# then pg_regress and isolation under valgrind: CI's step.  check-valgrind:
# the valgrind part alone (CONTRIBUTING.md, "Debug builds").
.PHONY: check-assert check-valgrind
check-assert:
	bash test/assert_build.sh
check-valgrind:
	bash test/assert_build.sh --valgrind-only

# The README's install walk-through and its two test commands on fresh
# minbase Debian 12 and 13 chroots, as root (test/fresh_debian.sh;
# downloads the packages each time).
.PHONY: check-fresh-debian
check-fresh-debian:
	bash test/fresh_debian.sh bookworm
	bash test/fresh_debian.sh trixie

# The PGXN release: presence-X.Y.Z.zip (X.Y: default_version of
# presence.control) in DISTDIR, made by git archive from HEAD, so only from
# a clean tree, after META.json passes test/meta_check.py (the PGXN meta
# spec, and the versions and files of this tree).
DISTDIR ?= .
.PHONY: dist
dist:
	@test -z "$$(git -C $(srcdir) status --porcelain)" || \
		{ echo "make dist: uncommitted changes (git archive takes HEAD); commit or stash them" >&2; exit 1; }
	python3 $(srcdir)/test/meta_check.py $(srcdir)
	@mkdir -p $(DISTDIR)
	name=$$(python3 $(srcdir)/test/meta_check.py --dist-name $(srcdir)) && \
	git -C $(srcdir) archive --format=zip --prefix=$$name/ -o $(abspath $(DISTDIR))/$$name.zip HEAD && \
	echo "$(DISTDIR)/$$name.zip"
