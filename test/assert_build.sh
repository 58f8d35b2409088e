#!/usr/bin/env bash
# The suites on an assert-enabled PostgreSQL, and under valgrind: CI's
# assert-build step (.ci/run) and `make check-assert` / `make
# check-valgrind` (CONTRIBUTING.md, "Debug builds").
#
#   bash test/assert_build.sh                    # CI: every suite below, then valgrind
#   bash test/assert_build.sh --valgrind-subset  # valgrind on a subset only (quicker)
#   bash test/assert_build.sh --valgrind-only    # the valgrind part alone
#
# The server: test/lib/assert_build.sh's (--enable-cassert --enable-debug,
# -DUSE_VALGRIND; built once, cached).  presence is built against it from
# a copy of the tree (the tree's own build stays the host's).  Then:
#   regress, isolation, pgTAP   make installcheck's suites and pg_prove, on
#                               one cluster; server log without TRAP or crash
#   integration                 the files of row.c, the commit step, the
#                               background worker and the launcher
#                               (ASSERT_INTEGRATION below), each its own
#                               clusters; their logs without TRAP or crash
#   fuzz                        test/fuzz/sql_args.py: every SQL function's
#                               arguments, random; only clean errors
#   valgrind                    memcheck (PostgreSQL's valgrind.supp,
#                               --trace-children=yes) over all of pg_regress and
#                               isolation (or VALGRIND_REGRESS and
#                               VALGRIND_ISOLATION): the suites pass and no
#                               error has a frame in our code
# Last line "N passed, N failed" (one per test, one per log check).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VALGRIND=all
ONLY_VALGRIND=0
for arg in "$@"; do
	case $arg in
	--valgrind-subset) VALGRIND=subset ;;
	--valgrind-only) ONLY_VALGRIND=1 ;;
	*) echo "usage: $0 [--valgrind-subset] [--valgrind-only]" >&2; exit 2 ;;
	esac
done

# valgrind's subset (--valgrind-subset; about 2 minutes here, the whole
# about 4): the row changes without the executor, the commit step and the
# wire format.
VALGRIND_REGRESS="presence_row_paths presence_api presence_errors"
VALGRIND_ISOLATION="row_insert row_changes serializable_write_skew wire_format"
ASSERT_INTEGRATION="test/integration/t/01_worker.t test/integration/t/02_expiry.t
	test/integration/t/07_bulk_prune.t test/integration/t/13_churn.t
	test/integration/t/16_missing_database.t"

. "$ROOT/test/lib/deps.sh"
ensure_packages valgrind python3-psycopg "${PRESENCE_BUILD_PACKAGES[@]}" || exit 1
prefix=$(bash "$ROOT/test/lib/assert_build.sh") || {
	echo "assert build failed"
	echo "0 passed, 1 failed"
	exit 1
}
export PG_BINDIR=$prefix/bin PG_CONFIG=$prefix/bin/pg_config PATH=$prefix/bin:$PATH
. "$ROOT/test/lib/cluster.sh"

OUT=${PRESENCE_ASSERT_OUT:-$ROOT/test/out/assert}
rm -rf "$OUT"
mkdir -p "$OUT"
passed=0
failed=0
summary=()
record() {
	passed=$((passed + $2))
	failed=$((failed + $3))
	summary+=("$(printf '%-14s %4d passed, %d failed' "$1" "$2" "$3")")
}

# A copy of the tree, built and installed against the assert build; the
# postgres user reads it (pg_regress's output goes to $OUT).
work=$(mktemp -d /tmp/presence-assert.XXXXXX)
trap 'cluster_stop "$work/c"; rm -rf "$work"' EXIT
tar -C "$ROOT" --exclude=./.git --exclude=node_modules --exclude=./test/out \
	--exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - . | tar -C "$work" -xf -
[ "$(id -u)" = 0 ] && chown -R postgres: "$work" "$OUT"
make -s -C "$work" PG_CONFIG="$PG_CONFIG" >"$OUT/build.log" 2>&1 &&
	make -s -C "$work" PG_CONFIG="$PG_CONFIG" install >>"$OUT/build.log" 2>&1 || {
	cat "$OUT/build.log"
	echo "0 passed, 1 failed"
	exit 1
}

# regress_counts LOG: "passed failed" from pg_regress's last lines.
regress_counts() {
	local n m
	if n=$(grep -oE 'All [0-9]+ tests passed' "$1" | grep -oE '[0-9]+'); then
		echo "$n 0"
	elif read -r m n < <(grep -oE '[0-9]+ of [0-9]+ tests failed' "$1" | grep -oE '[0-9]+' | xargs); then
		echo "$((n - m)) $m"
	else
		echo "0 1"
	fi
}

# installcheck SUITE-NAME LOG MAKE-ARGS...: one of make installcheck's
# suites from the copy, recorded.
installcheck() {
	local name=$1 log=$2 p f
	shift 2
	make -s -C "$work" installcheck PG_CONFIG="$PG_CONFIG" TAP_TESTS= "$@" >"$log" 2>&1
	read -r p f < <(regress_counts "$log")
	record "$name" "$p" "$f"
	((f == 0)) || { tail -n 30 "$log"; find "$work" -name regression.diffs -exec head -n 100 {} \;; }
}

# log_check NAME FILE...: one check, passed when no server log shows an
# assertion failure (TRAP) or a crash.
log_check() {
	local name=$1 hits
	shift
	if [ $# = 0 ]; then
		echo "$name: no server log to check"
		record "$name" 0 1
		return
	fi
	hits=$(grep -lE 'TRAP: |terminated by signal|was terminated|PANIC' "$@" 2>/dev/null)
	if [ -z "$hits" ]; then
		record "$name" 1 0
	else
		record "$name" 0 1
		grep -hE -B2 -A8 'TRAP: |terminated by signal|PANIC' $hits | head -n 60
	fi
}

if [ "$ONLY_VALGRIND" = 0 ]; then
	echo "== assert build: regress, isolation, pgTAP ($prefix)"
	cluster_start "$work/c" 55480 || exit 1
	installcheck regress "$OUT/regress.log" ISOLATION= EXTRA_REGRESS_OPTS="--outputdir=$OUT/regress"
	installcheck isolation "$OUT/isolation.log" REGRESS= EXTRA_REGRESS_OPTS="--outputdir=$OUT/isolation"
	PGOPTIONS='-c client_min_messages=warning' psql -Xq -c 'CREATE DATABASE presence_tap' &&
		psql -Xq -d presence_tap -c 'CREATE EXTENSION presence' -c 'CREATE EXTENSION pgtap'
	pg_prove -d presence_tap test/pgtap/*.sql >"$OUT/pgtap.log" 2>&1
	rc=$?
	tests=$(grep -oE 'Tests=[0-9]+' "$OUT/pgtap.log" | grep -oE '[0-9]+' || echo 0)
	bad=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$OUT/pgtap.log" | awk '{split($2,a,"/"); s+=a[1]} END {print s+0}')
	((rc != 0 && bad == 0)) && bad=1
	record pgtap $((tests - bad)) "$bad"
	((rc == 0)) || tail -n 40 "$OUT/pgtap.log"

	echo "== assert build: fuzz"
	/usr/bin/python3 test/fuzz/sql_args.py --calls "${PRESENCE_FUZZ_CALLS:-3000}" >"$OUT/fuzz.log" 2>&1
	rc=$?
	if ((rc == 0)); then record fuzz 1 0; else record fuzz 0 1; fi
	tail -n 15 "$OUT/fuzz.log"
	cluster_stop "$work/c"
	log_check server-log "$work/c/server.log"
	cp "$work/c/server.log" "$OUT/server.log"

	echo "== assert build: integration"
	# shellcheck disable=SC2086
	PRESENCE_INTEG_LOGS=$OUT/integration bash test/integration/run.sh $ASSERT_INTEGRATION \
		>"$OUT/integration.log" 2>&1
	rc=$?
	line=$(tail -n 1 "$OUT/integration.log")
	if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
		p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
		((rc != 0 && f == 0)) && f=1
	else
		p=0 f=1
	fi
	record integration "$p" "$f"
	((rc == 0)) || tail -n 40 "$OUT/integration.log"
	log_check integ-logs $(find "$OUT/integration" -name '*.log' -path '*log/*')
fi

# valgrind: the server under memcheck, started through a wrapper that
# pg_ctl runs as its postgres (-p).
echo "== valgrind ($VALGRIND)"
vg=$OUT/valgrind
mkdir -p "$vg"
[ "$(id -u)" = 0 ] && chown postgres: "$vg"
cat >"$work/postgres-vg" <<EOF
#!/bin/sh
exec valgrind --quiet --trace-children=yes --leak-check=no --num-callers=30 --fullpath-after= \\
	--error-markers=VGERROR-BEGIN,VGERROR-END --gen-suppressions=all \\
	--suppressions=$prefix/valgrind.supp --log-file=$vg/%p.log \\
	$prefix/bin/postgres "\$@"
EOF
chmod 755 "$work/postgres-vg"
start=$(date +%s)
cluster_start "$work/c" 55481 || exit 1
_as_postgres "$PG_BINDIR/pg_ctl" -D "$work/c/data" -m fast -w -t 120 stop >/dev/null
_as_postgres "$PG_BINDIR/pg_ctl" -D "$work/c/data" -l "$work/c/server.log" \
	-p "$work/postgres-vg" -w -t 600 start >/dev/null || {
	cat "$work/c/server.log"
	exit 1
}
regress=(REGRESS="$VALGRIND_REGRESS")
isolation=(ISOLATION="$VALGRIND_ISOLATION")
[ "$VALGRIND" = all ] && regress=() isolation=()
installcheck vg-regress "$OUT/vg-regress.log" ISOLATION= "${regress[@]}" \
	EXTRA_REGRESS_OPTS="--outputdir=$OUT/vg-regress"
installcheck vg-isolation "$OUT/vg-isolation.log" REGRESS= "${isolation[@]}" \
	EXTRA_REGRESS_OPTS="--outputdir=$OUT/vg-isolation"
cluster_stop "$work/c"
cp "$work/c/server.log" "$OUT/vg-server.log"

# Each error valgrind reports sits between its markers; ours are those
# with a frame in our source files (full paths: --fullpath-after=) or in
# presence.so.
errors=$(cat "$vg"/*.log 2>/dev/null | grep -c 'VGERROR-BEGIN')
: >"$OUT/vg-ours.txt"
ours=$(cat "$vg"/*.log 2>/dev/null | awk -v out="$OUT/vg-ours.txt" -v src="$work/src/" '
	/VGERROR-BEGIN/ {e = ""; on = 1}
	on {e = e $0 "\n"}
	/VGERROR-END/ {on = 0; if (index(e, src) || e ~ /presence\.so/) {n++; printf "%s", e >out}}
	END {print n + 0}')
echo "valgrind: $errors errors reported in all, $ours with a frame in presence.so ($(($(date +%s) - start)) s; logs in $vg)"
if [ "$ours" = 0 ]; then record vg-our-code 1 0; else record vg-our-code 0 1; head -n 80 "$OUT/vg-ours.txt"; fi
log_check vg-server-log "$OUT/vg-server.log"

echo
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
