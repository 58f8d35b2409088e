#!/usr/bin/env bash
# End-to-end test of examples/gateway: two gateways on one database with the
# presence extension, pages in headless Chromium (Debian's chromium, driven
# by playwright-core; no browser download), the agent script, raw WebSocket
# and SQL clients.  See test/e2e/gateway.test.js for the cases.  Then,
# where PL/Proxy is installed, the gateways in shard mode against a
# presence_proxy database over three shards (test/e2e/shards.test.js).
#
# Assumes the extension is built and installed (make && make install).
# Installs chromium (apt) and the gateway's npm packages (npm ci) when they
# are missing, starts its own cluster on port 55438 and stops it on exit.
# Last line: "N passed, N failed".  Exits non-zero on any failure.
#
# UPDATE_SCREENSHOT=1 also refreshes examples/gateway/screenshot.png.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. test/lib/cluster.sh
. test/lib/deps.sh
. test/shards/lib.sh

CLUSTER=${E2E_CLUSTER:-/tmp/presence-e2e}
PG_PORT=${E2E_PG_PORT:-55438}
SWEEP_MS=200
ART=/tmp/presence-e2e-artifacts
GW_DIR=$ROOT/examples/gateway

fail_setup() {
	echo "e2e setup failed: $*" >&2
	echo "0 passed, 1 failed"
	exit 1
}

cleanup() {
	local f pid
	for f in "$ART"/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
		rm -f "$f"
	done
	cluster_stop "$CLUSTER"
	shards_stop
}
trap cleanup EXIT

# 1. What the test needs: Debian's Chromium (never a downloaded browser),
# curl, and Node.js from Debian when the machine has none.
ensure_packages chromium curl || fail_setup "apt-get install chromium curl"
command -v node >/dev/null || ensure_packages nodejs npm || fail_setup "apt-get install nodejs npm"
# npm ci only when node_modules does not match package-lock.json.
if ! cmp -s "$GW_DIR/package-lock.json" "$GW_DIR/node_modules/.package-lock.json.e2e" 2>/dev/null; then
	(cd "$GW_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || fail_setup "npm ci"
	cp "$GW_DIR/package-lock.json" "$GW_DIR/node_modules/.package-lock.json.e2e"
fi
# The gateway runs on the Node client (clients/node), which has its own pg.
CLIENT_DIR=$ROOT/clients/node
if ! cmp -s "$CLIENT_DIR/package-lock.json" "$CLIENT_DIR/node_modules/.package-lock.json.ci" 2>/dev/null; then
	(cd "$CLIENT_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || fail_setup "npm ci (clients/node)"
	cp "$CLIENT_DIR/package-lock.json" "$CLIENT_DIR/node_modules/.package-lock.json.ci"
fi

# 2. Each pass: a fresh cluster with the extension preloaded, swept every
# 200 ms, its presence.delivery set to the pass's mode, and the gateways in
# that mode (broadcast: every diff on tep_broadcast; topic: each topic's own
# channel, LISTENed only while the topic has subscribers, and every diff
# signed).
rm -rf "$ART"
mkdir -p "$ART"
export PRESENCE_SWEEP_MS=$SWEEP_MS E2E_ARTIFACTS=$ART
[ "${UPDATE_SCREENSHOT:-0}" = 1 ] && export E2E_SCREENSHOT=$GW_DIR/screenshot.png
# Each test is bounded by E2E_TEST_TIMEOUT_MS (60 s; in the test files, as
# Node 18's runner has no --test-timeout), each pass by timeout(1).
# --test-concurrency (Node 20.10+) when there is one: Node 18 runs the two
# files side by side on a machine with more than 2 CPUs, which is harmless
# (units.test.js touches no port or database).
node_opts=()
node --help 2>/dev/null | grep -q -- '--test-concurrency' && node_opts+=(--test-concurrency=1)
echo "e2e: $(command -v node) $(node --version)"
rc=0
# The gateways under test (E2E_GATEWAYS): examples/gateway (Node.js) and
# examples/gateway_py (Python, on clients/python; Debian's aiohttp and
# psycopg), the same page, protocol and tests.
GATEWAYS=${E2E_GATEWAYS:-node python}
case " $GATEWAYS " in *" python "*)
	ensure_packages python3 python3-aiohttp python3-psycopg || fail_setup "apt-get install python3-aiohttp python3-psycopg" ;;
esac
for gw in $GATEWAYS; do
case $gw in
node) export E2E_GATEWAY_CMD= ;;
python) export E2E_GATEWAY_CMD="/usr/bin/python3 $ROOT/examples/gateway_py/gateway.py" ;;
*) fail_setup "unknown gateway $gw (E2E_GATEWAYS: node python)" ;;
esac
for mode in ${E2E_MODES:-broadcast topic}; do
	# The topic pass signs its diffs (presence.signing_key_file, a file only
	# the server's user may read) and its gateways verify them; the
	# broadcast pass is unsigned.
	key= keyfile=
	if [ "$mode" = topic ]; then
		key=e2e-signing-key keyfile=$CLUSTER.signing-key
		signing_key_file "$key" "$keyfile" || fail_setup "the signing key file"
	fi
	cluster_start "$CLUSTER" "$PG_PORT" \
		"shared_preload_libraries = 'presence'" \
		"presence.database = 'postgres'" \
		"presence.delivery = '$mode'" \
		"presence.signing_key_file = '$keyfile'" \
		"presence.sweep_interval = '${SWEEP_MS}ms'" || fail_setup "cluster_start"
	psql -Xq -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION presence' || fail_setup "CREATE EXTENSION presence"
	# The gateways connect as an app role with the README's one grant (taken
	# from README.md, so that it is what the README says: the statement from
	# its first line starting "GRANT " to the line ending "TO app;"), not as
	# the superuser (who is outside worker ownership).
	grant=$(awk '/^GRANT / { on = 1 } on { print } on && /TO app;$/ { exit }' "$ROOT/README.md" |
		sed 's/TO app;$/TO presence_e2e_app;/')
	[ -n "$grant" ] || fail_setup "the README's GRANT"
	psql -Xq -v ON_ERROR_STOP=1 -c 'CREATE ROLE presence_e2e_app LOGIN' -c "$grant" ||
		fail_setup "the app role"
	export E2E_GATEWAY_USER=presence_e2e_app

	# 3. The end-to-end tests (the gateway's unit tests are its own `npm test`,
	# examples/gateway/test/).
	start=$(date +%s)
	PRESENCE_DELIVERY=$mode PRESENCE_SIGNING_KEY=$key timeout 300 node --test "${node_opts[@]}" \
		--test-reporter=spec --test-reporter-destination=stdout \
		--test-reporter=tap --test-reporter-destination="$ART/results-$gw-$mode.tap" \
		test/e2e/gateway.test.js
	pass_rc=$?
	echo "e2e ($gw gateway, $mode delivery${key:+, signed}): node --test exited $pass_rc after $(($(date +%s) - start)) s; logs in $ART"

	if [ "$pass_rc" != 0 ]; then
		rc=$pass_rc
		for f in "$ART"/*.log; do
			[ -f "$f" ] || continue
			echo "---- tail of $f"
			tail -n 30 "$f"
		done
		echo "---- tail of $CLUSTER/server.log"
		tail -n 30 "$CLUSTER/server.log"
	fi
	cluster_log_has_crash "$CLUSTER" && { echo "the server log shows a crash" >&2; rc=1; }
	cluster_stop "$CLUSTER"
	unset E2E_SCREENSHOT
done
done
unset E2E_GATEWAY_CMD

# 4. Shard mode (docs/scaling.md): a presence_proxy database over three
# shards (ports 55474-55477), the gateways with PRESENCE_SHARDS=1, in
# broadcast then topic delivery; test/e2e/shards.test.js.  Where PL/Proxy is not installed, said and left
# out.
if [ "${E2E_SHARDS:-1}" = 1 ] && shards_has_plproxy; then
	for gw in $GATEWAYS; do
	E2E_GATEWAY_CMD=
	[ "$gw" = python ] && E2E_GATEWAY_CMD="/usr/bin/python3 $ROOT/examples/gateway_py/gateway.py"
	export E2E_GATEWAY_CMD
	for mode in ${E2E_SHARD_MODES:-broadcast topic}; do
		shards_start /tmp/presence-e2e-shards 55474 3 "presence.delivery = '$mode'" &&
			shards_proxy_db proxy presence || fail_setup "shard clusters"
		start=$(date +%s)
		PGHOST=/tmp/presence-e2e-shards/proxy/sock PGPORT=55474 PGDATABASE=proxy PGUSER=postgres \
			PRESENCE_DELIVERY=$mode timeout 300 node --test "${node_opts[@]}" \
			--test-reporter=spec --test-reporter-destination=stdout \
			--test-reporter=tap --test-reporter-destination="$ART/results-shards-$gw-$mode.tap" \
			test/e2e/shards.test.js
		pass_rc=$?
		echo "e2e (shards, $gw gateway, $mode delivery): node --test exited $pass_rc after $(($(date +%s) - start)) s; logs in $ART"
		if [ "$pass_rc" != 0 ]; then
			rc=$pass_rc
			for f in "$ART"/gw-shard-*.log; do
				[ -f "$f" ] && { echo "---- tail of $f"; tail -n 30 "$f"; }
			done
		fi
		shards_stop
	done
	done
elif [ "${E2E_SHARDS:-1}" = 1 ]; then
	echo "e2e (shards): skipped, no PL/Proxy for PostgreSQL $PRESENCE_PG_MAJOR"
fi

passed=$(cat "$ART"/results-*.tap 2>/dev/null | grep -E '^# pass [0-9]+$' | awk '{s += $3} END {print s + 0}')
failed=$(cat "$ART"/results-*.tap 2>/dev/null | grep -E '^# (fail|cancelled) [0-9]+$' | awk '{s += $3} END {print s + 0}')
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
