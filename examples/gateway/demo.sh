#!/usr/bin/env bash
# The gateway demo: a throwaway PostgreSQL cluster (port 55437) with the
# presence extension preloaded, and two WebSocket gateways on ports 8081
# and 8082 sharing it.  Prints the URLs to open, then runs until Ctrl-C,
# when it stops the gateways and the cluster.
#
#   bash examples/gateway/demo.sh
#
# Like the main demo, it installs what it needs (Debian's PostgreSQL and its
# headers, Node.js) and builds and installs the extension first.
#
# DEMO_SECONDS=N stops by itself after N seconds (for scripted checks).
set -u
GW_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$GW_DIR/../.." && pwd)
. "$ROOT/test/lib/cluster.sh"
. "$ROOT/test/lib/deps.sh"

CLUSTER=${DEMO_CLUSTER:-/tmp/presence-gateway-demo}
PG_PORT=${DEMO_PG_PORT:-55437}
PORTS=(8081 8082)
SWEEP=${DEMO_SWEEP:-500ms}

ensure_packages "${PRESENCE_BUILD_PACKAGES[@]}" curl || exit 1
command -v node >/dev/null || ensure_packages nodejs npm || exit 1
PRESENCE_ROOT=$ROOT build_and_install || { echo "building the extension failed" >&2; exit 1; }
if [ ! -d "$GW_DIR/node_modules/ws" ] || [ ! -d "$GW_DIR/node_modules/pg" ]; then
	(cd "$GW_DIR" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) || exit 1
fi
# The gateway runs on the Node client, which has its own pg.
if [ ! -d "$GW_DIR/../../clients/node/node_modules/pg" ]; then
	(cd "$GW_DIR/../../clients/node" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) || exit 1
fi
for p in "${PORTS[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "port $p is in use: stop what listens there first" >&2
		exit 1
	fi
done

pids=()
cleanup() {
	trap - EXIT INT TERM
	echo
	echo "stopping the gateways and the cluster"
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
	cluster_stop "$CLUSTER"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

cluster_start "$CLUSTER" "$PG_PORT" \
	"shared_preload_libraries = 'presence'" \
	"presence.database = 'postgres'" \
	"presence.sweep_interval = '$SWEEP'" || exit 1
psql -Xq -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION presence' || exit 1

for p in "${PORTS[@]}"; do
	PORT=$p GATEWAY_NAME=gw-$p node "$GW_DIR/gateway.js" &
	pids+=($!)
done
for p in "${PORTS[@]}"; do
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$p/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
done

cat <<MSG

presence gateway demo: two gateways, one database (sweep_interval $SWEEP)

  open    http://127.0.0.1:${PORTS[0]}/?user=alice     (gateway 1)
  and     http://127.0.0.1:${PORTS[1]}/?user=bob       (gateway 2)
  agent   node $GW_DIR/agent.js --url ws://127.0.0.1:${PORTS[1]} --for user:alice
  sql     psql -h $CLUSTER/sock -p $PG_PORT -U postgres -c 'SELECT * FROM tep_presence'
  kill -9 a gateway (pids ${pids[*]}): its users leave within 2 x $SWEEP

Ctrl-C stops everything.
MSG

if [ -n "${DEMO_SECONDS:-}" ]; then
	sleep "$DEMO_SECONDS" &
	wait $!
else
	wait -n "${pids[@]}"
	sleep 0.2 # a Ctrl-C also reaches the gateways: let its trap speak first
	echo "a gateway exited; stopping the rest" >&2
fi
