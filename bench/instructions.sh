#!/usr/bin/env bash
# bench/instructions.sh -- CPU instructions per write cycle (track ->
# set_status -> untrack), counted by valgrind's callgrind in a single-user
# backend: unlike timings, the count repeats to the instruction whatever
# else the machine is doing, so two builds compare exactly.
#
#   bash bench/instructions.sh [REV ...]     # default: HEAD
#
# Each REV (a git revision of this repository) is built in a worktree and
# installed; the extension's cycle (and, once, the careful and the minimal
# PL/pgSQL's)
# runs CYCLES times (BENCH_CYCLES, default 1000) in `postgres --single`
# on a fresh cluster with the write benchmark's background rows, after a
# warm-up of the same length.  Prints one line per side:
# "side instructions_per_cycle".  BENCH_SIGNING_KEY=KEY also counts each
# build with KEY in presence.signing_key_file ("ext@REV+signed"): a cycle is three
# diffs.  It installs each build in turn, so run it inside
# test/isolated.sh when other work shares the machine.
set -eu -o pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
CYCLES=${BENCH_CYCLES:-1000}
. "$ROOT/test/lib/deps.sh"
. "$ROOT/test/lib/cluster.sh"
ensure_packages valgrind >/dev/null
WORK=$(mktemp -d /tmp/presence-instr.XXXXXX)
chmod 755 "$WORK"
trap 'cluster_stop "$WORK/c"; rm -rf "$WORK"; git -C "$ROOT" worktree prune' EXIT

# The statements of CYCLES cycles of a side, one per line (single-user
# mode reads a statement per line).
cycles_sql() {
	local schema=$1
	awk -v n="$CYCLES" -v s="$schema" 'BEGIN {
		srand(42);
		for (i = 0; i < n; i++) {
			t = 1 + int(rand() * 1000); fd = int(rand() * 2000000000);
			printf "SELECT %spresence_track(%c%s%d%c, %d, %cuser:1%c, %chuman%c, %c%c, %cbench-w1%c);\n", s, 39, "room:", t, 39, fd, 39, 39, 39, 39, 39, 39, 39, 39;
			printf "SELECT %spresence_set_status(%c%s%d%c, %d, %cbusy%c, %cin a meeting%c, 0, %cbench-w1%c);\n", s, 39, "room:", t, 39, fd, 39, 39, 39, 39, 39, 39;
			printf "SELECT %spresence_untrack(%c%s%d%c, %d, %cbench-w1%c);\n", s, 39, "room:", t, 39, fd, 39, 39;
		}
	}'
}

# count SIDE SCHEMA: instructions per cycle of one side, from callgrind's
# total over (warm-up + measured) minus the warm-up alone.
count() {
	local side=$1 schema=$2 one two
	cycles_sql "$schema" >"$WORK/one.sql"
	{ cat "$WORK/one.sql"; cat "$WORK/one.sql"; } >"$WORK/two.sql"
	one=$(run_callgrind "$WORK/one.sql")
	two=$(run_callgrind "$WORK/two.sql")
	echo "$side $(((two - one) / CYCLES))"
}

run_callgrind() {
	local out=$WORK/callgrind.out
	chown postgres: "$WORK"
	runuser -u postgres -- valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$PG_BINDIR/postgres" --single -D "$WORK/c/data" presence_bench \
		<"$1" >/dev/null 2>"$WORK/valgrind.log"
	awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

first=1
for rev in "${@:-HEAD}"; do
	tree=$WORK/tree-$(git -C "$ROOT" rev-parse --short "$rev")
	git -C "$ROOT" worktree add -q --detach "$tree" "$rev"
	make -s -C "$tree" >/dev/null && make -s -C "$tree" install >/dev/null
	# A fresh cluster per build, shaped like bench/run.sh's.
	cluster_start "$WORK/c" 55436 >/dev/null
	psql -qX -d postgres -c 'CREATE DATABASE presence_bench'
	psql -qX -d presence_bench -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION presence' \
		-f "$BENCH/plpgsql_reference.sql" -f "$BENCH/floor.sql" \
		-f "$BENCH/plpgsql_minimal.sql" \
		-f "$BENCH/sql/copy_shapes.sql" -f "$BENCH/sql/write_setup.sql" >/dev/null 2>&1
	cluster_stop "$WORK/c"
	count "ext@$rev" ""
	if [ -n "${BENCH_SIGNING_KEY:-}" ]; then
		conf=$WORK/c/data/postgresql.conf
		cp "$conf" "$conf.unsigned"
		(umask 077 && echo "$BENCH_SIGNING_KEY" >"$WORK/c/signing-key")
		[ "$(id -u)" = 0 ] && chown postgres: "$WORK/c/signing-key"
		echo "presence.signing_key_file = '$WORK/c/signing-key'" >>"$conf"
		count "ext@$rev+signed" ""
		mv "$conf.unsigned" "$conf"
	fi
	if [ "$first" = 1 ]; then
		count "plpgsql-reference" "ref."
		count "plpgsql-minimal" "minimal."
		first=0
	fi
done
