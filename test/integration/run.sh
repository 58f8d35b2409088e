#!/usr/bin/env bash
# Integration suite of the background worker (issue 3): starts its own
# clusters, runs test/integration/t/*.t (Perl TAP, DBD::Pg with a real
# LISTEN connection) and stops the clusters on exit.  Assumes `make
# install` was done.  Last line of output: "N passed, N failed" (TAP
# assertions); exit status non-zero on any failure.
#
#   main cluster   $PRESENCE_INTEG_DIR (/tmp/presence-integ), port
#                  $PRESENCE_INTEG_PORT (55433): preloaded, sweep_interval
#                  200ms, batch_size 1000
#   second cluster <dir>-2, port + 1: not preloaded at first; restarted by
#                  t/20 with the library preloaded, presence.database = appdb
#
# PRESENCE_INTEG_TESTS="test/integration/t/01_worker.t ..." runs a subset
# (t/19 expects the whole sequence).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
INTEG=$ROOT/test/integration

. "$ROOT/test/lib/cluster.sh"

# DBD::Pg (pg_notifies on a real LISTEN connection).
if ! perl -MDBD::Pg -e 1 2>/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q libdbd-pg-perl >/dev/null 2>&1 ||
			{ apt-get update -q >/dev/null 2>&1 &&
				DEBIAN_FRONTEND=noninteractive apt-get install -y -q libdbd-pg-perl >/dev/null 2>&1; }
	fi
	perl -MDBD::Pg -e 1 2>/dev/null || {
		echo "DBD::Pg is missing (apt-get install libdbd-pg-perl)" >&2
		echo "0 passed, 1 failed"
		exit 1
	}
fi

MAIN_DIR=${PRESENCE_INTEG_DIR:-/tmp/presence-integ}
MAIN_PORT=${PRESENCE_INTEG_PORT:-55433}
SECOND_DIR=$MAIN_DIR-2
SECOND_PORT=$((MAIN_PORT + 1))
STATE_DIR=$(mktemp -d /tmp/presence-integ-state.XXXXXX)

cleanup() {
	cluster_stop "$MAIN_DIR"
	cluster_stop "$SECOND_DIR"
	rm -rf "$STATE_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail_setup() {
	echo "setup failed: $*" >&2
	echo "0 passed, 1 failed"
	exit 1
}

# A plain cluster (no preload): SQL functions by hand; later restarted
# with the library preloaded and presence.database set to a database
# without the extension.
cluster_start "$SECOND_DIR" "$SECOND_PORT" || fail_setup "second cluster"

# The main cluster: preloaded, short intervals.
cluster_start "$MAIN_DIR" "$MAIN_PORT" \
	"shared_preload_libraries = 'presence'" \
	"presence.sweep_interval = '200ms'" \
	"presence.batch_size = 1000" \
	"log_min_messages = info" || fail_setup "main cluster"

export PRESENCE_MAIN_DIR=$MAIN_DIR PRESENCE_MAIN_PORT=$MAIN_PORT \
	PRESENCE_SECOND_DIR=$SECOND_DIR PRESENCE_SECOND_PORT=$SECOND_PORT \
	PRESENCE_STATE_DIR=$STATE_DIR PRESENCE_INTEG_ROOT=$INTEG PG_BINDIR

perl "$INTEG/harness.pl" ${PRESENCE_INTEG_TESTS:-"$INTEG"/t/*.t}
