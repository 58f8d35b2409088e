#!/usr/bin/env bash
# Integration suite of the background worker: `make installcheck`'s TAP
# part (PGXS TAP_TESTS: prove over test/integration/t/*.t, each file
# starting its own PostgreSQL::Test::Cluster), runnable as root.
# Assumes `make install` was done.
#
#   bash test/integration/run.sh                                 # every file
#   bash test/integration/run.sh test/integration/t/07_bulk_prune.t
#
# PostgreSQL::Test::Cluster will not initdb as root, so as root the suite
# runs as the postgres user on a copy of the tree that user owns (prove and
# the clusters write into tmp_check/ at its top).  Not as root it runs in
# place.  The TAP output and the clusters' server logs (tmp_check/log) are
# kept in $PRESENCE_INTEG_LOGS (test/out/integration).  Last line of output:
# "N passed, N failed" (TAP assertions); exit status non-zero on any failure.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
. "$ROOT/test/lib/deps.sh"
LOGS=${PRESENCE_INTEG_LOGS:-$ROOT/test/out/integration}

fail_setup() {
	echo "setup failed: $*" >&2
	echo "0 passed, 1 failed"
	exit 1
}

# DBD::Pg (pg_notifies on a real LISTEN connection), IPC::Run
# (PostgreSQL::Test::Cluster).
perl -MDBD::Pg -MIPC::Run -e 1 2>/dev/null ||
	{ [ "$(id -u)" = 0 ] && ensure_packages libdbd-pg-perl libipc-run-perl; } ||
	fail_setup "DBD::Pg or IPC::Run missing (apt-get install libdbd-pg-perl libipc-run-perl)"

work=$ROOT
as=()
if [ "$(id -u)" = 0 ]; then
	work=$(mktemp -d /tmp/presence-tap.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	tar -C "$ROOT" --exclude=./.git --exclude=node_modules --exclude=./test/out \
		--exclude=./tmp_check -cf - . | tar -C "$work" -xf - || fail_setup "copy of the tree"
	chown -R postgres: "$work"
	as=(runuser -u postgres --)
fi

rm -rf "$LOGS"
mkdir -p "$LOGS"
# $(PROVE_TESTS) unless told which files.
select=(REGRESS= ISOLATION=)
(($#)) && select=(PROVE_TESTS="$*")
start=$(date +%s)
"${as[@]}" make -C "$work" --no-print-directory installcheck PG_CONFIG="$PG_CONFIG" \
	"${select[@]}" PROVE_FLAGS="--verbose --timer" 2>&1 | tee "$LOGS/prove.log"
rc=${PIPESTATUS[0]}
echo "integration: prove exited $rc after $(($(date +%s) - start)) s; server logs in $LOGS"
[ -d "$work/tmp_check/log" ] && cp -r "$work/tmp_check/log" "$LOGS/"

# prove's summary: "Files=F, Tests=N, ..." and, per failed file, "Failed
# M/N subtests".  A file that died without a failed assertion counts as one.
tests=$(grep -oE '^Files=[0-9]+, Tests=[0-9]+' "$LOGS/prove.log" | grep -oE '[0-9]+$' || echo 0)
failed=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$LOGS/prove.log" | awk '{split($2,a,"/"); s+=a[1]} END {print s+0}')
((rc != 0 && failed == 0)) && failed=1
echo "$((tests - failed)) passed, $failed failed"
((rc == 0 && failed == 0))
