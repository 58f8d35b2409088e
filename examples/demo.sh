#!/usr/bin/env bash
# The presence demo: a throwaway cluster with the extension preloaded, a
# LISTEN client printing decoded diffs as they arrive, and a short lobby
# scenario played by two app workers (gateways) over real connections.
set -eu
PRESENCE_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$PRESENCE_ROOT"
. test/lib/deps.sh
. test/lib/cluster.sh

ensure_packages "${PRESENCE_BUILD_PACKAGES[@]}"
build_and_install

DEMO=/tmp/presence-demo
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	cluster_stop "$DEMO"
}
trap cleanup EXIT

cluster_start "$DEMO" 55436 "shared_preload_libraries = 'presence'" \
	"presence.sweep_interval = '250ms'"
psql -Xq -c 'CREATE EXTENSION presence'

perl examples/listen.pl &
pids+=($!)

# A gateway = one long-lived connection fed through a fifo, so that its
# backend lives (and its connection-bound worker with it) until we drop it.
gateway() {
	local name=$1
	mkfifo "$DEMO/$name.in"
	psql -Xq -v ON_ERROR_STOP=1 -o /dev/null <"$DEMO/$name.in" &
	pids+=($!)
	eval "${name}_pid=$!"
	exec {fd}>"$DEMO/$name.in"
	eval "${name}_fd=$fd"
}
say() { printf '\n# %s\n' "$*"; }
send() { local fd="${1}_fd"; echo "$2" >&"${!fd}"; sleep 1; }

sleep 1
gateway gw1
gateway gw2
say "gateway gw-1 starts (connection-bound worker) and alice opens two tabs"
send gw1 "SELECT presence_worker_start('gw-1');"
send gw1 "SELECT presence_track('room:lobby', 1, 'alice'), presence_track('room:lobby', 2, 'alice');"
say "gateway gw-2 starts and bob joins"
send gw2 "SELECT presence_worker_start('gw-2');"
send gw2 "SELECT presence_track('room:lobby', 1, 'bob');"
say "an agent acting for alice joins and goes busy for 3 s"
send gw1 "SELECT presence_track('room:lobby', 3, 'alice', 'agent_for', 'summarizer-bot');"
send gw1 "SELECT presence_set_status('room:lobby', 3, 'busy', 'summarizing thread #1234', floor(extract(epoch FROM now()))::bigint + 3);"
say "alice closes her second tab"
send gw1 "SELECT presence_untrack_by_fd(2);"
say "the busy status expires: the background worker resets it (no call)"
sleep 3
say "gateway gw-2 dies: its connection drops, bob leaves by himself"
{ kill -9 "$gw2_pid" && wait "$gw2_pid"; } 2>/dev/null || true
sleep 1.5
say "who is here now (presence_list_global):"
psql -X -c "SELECT principal_id, kind, agent_id, fd, worker_id, status_state FROM presence_list_global('room:lobby')"
