# presence: PGXS build.  `make && make install`, then see README.md.

EXTENSION = presence
MODULE_big = presence
OBJS = src/presence.o src/query.o src/wire.o src/args.o src/change.o \
	src/entry.o src/liveness.o src/bgworker.o
DATA = presence--1.0.sql presence--1.0--1.1.sql
PGFILEDESC = "presence - who's-here registry with Tep-wire diffs"

PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wno-missing-field-initializers -Wno-sign-compare

# pg_regress: every sql/*.sql, against a running server (make installcheck).
REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --load-extension=presence

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The benchmark suite (BENCHMARKS.md); after the include, so that it is not
# the default target.
.PHONY: bench
bench:
	bash bench/run.sh
