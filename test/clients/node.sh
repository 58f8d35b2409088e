#!/usr/bin/env bash
# The Node.js client's tests (clients/node): its unit tests (the conformance
# cases of test/conformance, no database), then its integration tests
# against a cluster of its own (port 55444): presence preloaded, swept every
# 200 ms, presence.delivery = both, every diff signed.
#
# Assumes the extension is built and installed. Installs Node.js (Debian)
# when missing and the client's npm packages (npm ci) when they do not
# match its package-lock.json. Last line: "N passed, N failed".
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. test/lib/deps.sh
. test/lib/cluster.sh

CLUSTER=${CLIENTS_NODE_CLUSTER:-/tmp/presence-clients-node}
PORT=${CLIENTS_NODE_PORT:-55444}
KEY=clients-node-signing-key
OUT=${CLIENTS_NODE_OUT:-/tmp/presence-clients-node-out}
DIR=$ROOT/clients/node

fail_setup() {
	echo "clients/node setup failed: $*" >&2
	echo "0 passed, 1 failed"
	exit 1
}
trap 'cluster_stop $CLUSTER' EXIT

command -v node >/dev/null || ensure_packages nodejs npm || fail_setup "apt-get install nodejs npm"
if ! cmp -s "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json.ci" 2>/dev/null; then
	(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || fail_setup "npm ci"
	cp "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json.ci"
fi
rm -rf "$OUT"
mkdir -p "$OUT"
echo "clients/node: $(command -v node) $(node --version)"

node_opts=()
node --help 2>/dev/null | grep -q -- '--test-concurrency' && node_opts+=(--test-concurrency=1)

rc=0
(cd "$DIR" && node --test "${node_opts[@]}" --test-reporter=spec --test-reporter-destination=stdout \
	--test-reporter=tap --test-reporter-destination="$OUT/unit.tap" test/*.test.js) || rc=1

signing_key_file "$KEY" "$CLUSTER.signing-key" || fail_setup "the signing key file"
cluster_start "$CLUSTER" "$PORT" \
	"shared_preload_libraries = 'presence'" \
	"presence.delivery = 'both'" \
	"presence.signing_key_file = '$CLUSTER.signing-key'" \
	"presence.sweep_interval = '200ms'" || fail_setup "cluster_start"
psql -Xq -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION presence' || fail_setup "CREATE EXTENSION presence"
PRESENCE_IT_CLUSTER=$CLUSTER PRESENCE_SIGNING_KEY=$KEY timeout 300 node --test "${node_opts[@]}" \
	--test-reporter=spec --test-reporter-destination=stdout \
	--test-reporter=tap --test-reporter-destination="$OUT/integration.tap" \
	"$DIR"/test/integration/*.test.js || rc=1
if cluster_log_has_crash "$CLUSTER"; then
	echo "the server log shows a crash" >&2
	rc=1
fi
[ "$rc" = 0 ] || tail -n 40 "$CLUSTER/server.log"

passed=$(cat "$OUT"/*.tap 2>/dev/null | grep -E '^# pass [0-9]+$' | awk '{s += $3} END {print s + 0}')
failed=$(cat "$OUT"/*.tap 2>/dev/null | grep -E '^# (fail|cancelled) [0-9]+$' | awk '{s += $3} END {print s + 0}')
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
