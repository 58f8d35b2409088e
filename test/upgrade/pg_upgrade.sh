#!/usr/bin/env bash
# pg_upgrade of a cluster that runs presence, from one PostgreSQL major to
# another installed side by side (Debian's /usr/lib/postgresql/N).
#
#   bash test/upgrade/pg_upgrade.sh [MAJOR_FROM [MAJOR_TO]]    (default 18 19)
#
# As root, where both majors and their server-dev packages are installed:
# the experimental chroot has 18 (sid's) and 19 (experimental's), e.g.
#   . test/lib/chroot.sh    # branch h9
#   chroot_run_isolated experimental bash -c 'cd /root/presence && bash test/upgrade/pg_upgrade.sh 18 19'
#
# 1. Builds and installs the extension for both majors (make clean between).
# 2. Old cluster (port 55452): preloaded, presence.database = app; in app,
#    presence 1.1, an app table, and live state by real calls (a
#    connection-bound worker with its connection open, a leased worker, a
#    heartbeat row, humans and agents, statuses, a topic that emptied).
# 3. Old cluster stopped; new cluster (port 55453) made by initdb with the
#    same settings; pg_upgrade as postgres (PRESENCE_UPGRADE_MODE, default
#    --link; --copy also works).
# 4. New cluster started without the preload: its major, the extension's
#    version, objects and privileges, and every row of the three tables and
#    the app table exactly as before; then restarted with the preload: the
#    background worker prunes the connection-bound worker (its connection
#    ended with the old server) with leave diffs continuing the seqs, keeps
#    the leased and heartbeat workers; a new diff continues its topic's seq.
# 5. pg_regress and the isolation specs run in app on the upgraded cluster
#    (--use-existing --dbname=app), without the preload.
#
# Last line "N passed, N failed"; exit status non-zero on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PRESENCE_ROOT=$ROOT
FROM=${1:-18}
TO=${2:-19}
OLD_BIN=/usr/lib/postgresql/$FROM/bin
NEW_BIN=/usr/lib/postgresql/$TO/bin
export PG_BINDIR=$OLD_BIN PG_CONFIG=$OLD_BIN/pg_config PRESENCE_PG_MAJOR=$FROM
. test/lib/cluster.sh
. test/upgrade/lib.sh

BASE=${PRESENCE_UPGRADE_DIR:-/tmp/presence-upgrade-pgu}
OLD_PORT=${PRESENCE_UPGRADE_PORT:-55452}
NEW_PORT=$((OLD_PORT + 1))
MODE=${PRESENCE_UPGRADE_MODE:---link}
OUT=$ROOT/test/out/upgrade/pg_upgrade-$FROM-$TO
trap 'sess_cleanup; PG_BINDIR=$NEW_BIN cluster_stop "$BASE/new"; PG_BINDIR=$OLD_BIN cluster_stop "$BASE/old"' EXIT
trap 'exit 130' INT TERM

echo "# pg_upgrade $FROM -> $TO ($MODE)"
for bin in "$OLD_BIN" "$NEW_BIN"; do
	[ -x "$bin/pg_ctl" ] && [ -x "$bin/pg_config" ] && [ -f "$("$bin/pg_config" --includedir-server)/postgres.h" ] ||
		upgrade_setup_fail "PostgreSQL and its server headers in $bin"
done
rm -rf "$OUT"
mkdir -p "$OUT/regress" "$OUT/isolation"
chmod -R a+rwX "$ROOT/test/out"

# --- build and install for both majors; the tree is left built for TO ---------
for bin in "$OLD_BIN" "$NEW_BIN"; do
	make -s clean PG_CONFIG="$bin/pg_config" >/dev/null 2>&1
	make -s PG_CONFIG="$bin/pg_config" >"$OUT/build-$(basename "$(dirname "$bin")").log" 2>&1 &&
		make -s install PG_CONFIG="$bin/pg_config" >>"$OUT/build-$(basename "$(dirname "$bin")").log" 2>&1 ||
		{ tail -n 20 "$OUT/build-$(basename "$(dirname "$bin")").log"; upgrade_setup_fail "build for $bin"; }
done
ok "built and installed for $FROM and $TO"

# --- the old cluster ------------------------------------------------------------
rm -rf "$BASE"
mkdir -p "$BASE"
chown postgres: "$BASE"
cluster_start "$BASE/old" "$OLD_PORT" || upgrade_setup_fail "old cluster"
q -c "CREATE DATABASE app" >/dev/null || upgrade_setup_fail "database app"
q -d app >/dev/null <<-'EOF' || upgrade_setup_fail "app schema"
	CREATE EXTENSION presence;
	CREATE TABLE rooms (id serial PRIMARY KEY, topic text NOT NULL UNIQUE);
	INSERT INTO rooms (topic) VALUES ('room:lobby'), ('room:ops'), ('room:gone');
EOF
cluster_restart_with "$BASE/old" "shared_preload_libraries = 'presence'" \
	"presence.database = 'app'" "presence.sweep_interval = '200ms'" \
	"presence.worker_ttl = '1h'" || upgrade_setup_fail "old cluster preloaded"
sess_open a app
sess_run a "SELECT presence_worker_start('gw-conn');
	SELECT presence_track('room:lobby', 1, 'user:alice');
	SELECT presence_track('room:lobby', 2, 'user:alice', 'agent_for', 'summarizer-bot');
	SELECT presence_set_status('room:lobby', 2, 'busy', 'summarizing', 0);
	SELECT presence_track('room:ops', 1, 'user:bob');" >"$OUT/a-setup.out"
q -d app >"$OUT/setup.out" <<-'EOF' || upgrade_setup_fail "populate"
	SELECT presence_worker_start('gw-lease', interval '1 hour');
	SELECT presence_track('room:lobby', 1, 'user:carol', worker_id => 'gw-lease');
	SELECT presence_set_status('room:lobby', 1, 'blocked', 'dnd', 0, worker_id => 'gw-lease');
	SELECT presence_track('room:ops', 7, 'user:dave', 'agent_for', 'triage-bot', worker_id => 'gw-tep');
	SELECT presence_track('room:gone', 1, 'user:erin', worker_id => 'gw-lease');
	SELECT presence_untrack('room:gone', 1, worker_id => 'gw-lease');
EOF
SEQ_SQL="SELECT topic || ' ' || seq FROM presence_topic_seq ORDER BY topic"
check "old: seqs advanced by the calls" "room:gone 2
room:lobby 5
room:ops 2" "$(q -d app -c "$SEQ_SQL")"
check "old: no worker dead (the connection-bound one is open)" "0" "$(q -d app -c "SELECT presence_prune_dead_workers()")"
BEFORE=$(presence_tables_dump app; q -d app -c "SELECT 'room', r.* FROM rooms r ORDER BY id")
MEMBERS_BEFORE=$(q -d app -c "$PRESENCE_MEMBERS_SQL")
EXT_BEFORE=$(q -d app -c "SELECT extversion || ' ' || extconfig::regclass[]::text FROM pg_extension WHERE extname = 'presence'")
printf '%s\n' "$BEFORE" >"$OUT/tables-before.txt"
# Stopped with the connection-bound worker's connection still open (a fast
# shutdown ends it), so that nothing prunes it before the upgrade.
PG_BINDIR=$OLD_BIN cluster_stop "$BASE/old"
sess_close a

# --- pg_upgrade --------------------------------------------------------------------
mkdir -p "$BASE/new/sock"
chown -R postgres: "$BASE/new"
_as_postgres "$NEW_BIN/initdb" -D "$BASE/new/data" -A trust -U postgres \
	-E UTF8 --locale=C.UTF-8 >"$BASE/new/initdb.log" 2>&1 || upgrade_setup_fail "initdb $TO"
{
	echo "port = $NEW_PORT"
	echo "unix_socket_directories = '$BASE/new/sock'"
	echo "listen_addresses = '127.0.0.1'"
	echo "fsync = off"
	echo "log_line_prefix = '%m [%p] %b '"
} >>"$BASE/new/data/postgresql.conf"
# pg_upgrade writes its logs under the new data directory and the current
# one: a directory postgres owns.
t0=$(date +%s)
# (runuser here, not _as_postgres, which runs from /.)
(cd "$BASE" && runuser -u postgres -- "$NEW_BIN/pg_upgrade" -b "$OLD_BIN" -B "$NEW_BIN" \
	-d "$BASE/old/data" -D "$BASE/new/data" -p "$OLD_PORT" -P "$NEW_PORT" \
	-s "$BASE/new/sock" $MODE) >"$OUT/pg_upgrade.log" 2>&1
rc=$?
if [ $rc = 0 ]; then
	ok "pg_upgrade $FROM -> $TO $MODE ($(($(date +%s) - t0)) s)"
else
	not_ok "pg_upgrade $FROM -> $TO $MODE (exit $rc)"
	tail -n 30 "$OUT/pg_upgrade.log" | sed 's/^/#   /'
	find "$BASE/new/data" -name '*.txt' -path '*pg_upgrade_output.d*' -exec tail -n 20 {} + 2>/dev/null | sed 's/^/#   /'
	upgrade_summary
	exit 1
fi

# --- the new cluster -------------------------------------------------------------
export PG_BINDIR=$NEW_BIN PG_CONFIG=$NEW_BIN/pg_config PRESENCE_PG_MAJOR=$TO
export PGHOST=$BASE/new/sock PGPORT=$NEW_PORT
_as_postgres "$NEW_BIN/pg_ctl" -D "$BASE/new/data" -l "$BASE/new/server.log" -w -t 60 start >/dev/null ||
	{ tail -n 20 "$BASE/new/server.log"; upgrade_setup_fail "start the upgraded cluster"; }
check "new: server major $TO" "$TO" "$(q -c "SELECT current_setting('server_version_num')::int / 10000")"
check "new: extension version and config tables as before" "$EXT_BEFORE" \
	"$(q -d app -c "SELECT extversion || ' ' || extconfig::regclass[]::text FROM pg_extension WHERE extname = 'presence'")"
check "new: the extension's objects and privileges as before" "$MEMBERS_BEFORE" "$(q -d app -c "$PRESENCE_MEMBERS_SQL")"
AFTER=$(presence_tables_dump app; q -d app -c "SELECT 'room', r.* FROM rooms r ORDER BY id")
printf '%s\n' "$AFTER" >"$OUT/tables-after.txt"
# gw-conn's connection ended with the old server: its worker is dead, and
# the old server that pg_upgrade starts (with its own postgresql.conf, so
# preloaded) already prunes it, with leave diffs (lobby 6, 7; ops 3).
check "new: entries, workers and the app's rows as before, minus the dead connection-bound worker's" \
	"$(printf '%s\n' "$BEFORE" | grep -v -e '^entry|gw-conn|' -e '^worker|gw-conn|' -e '^seq|')" \
	"$(printf '%s\n' "$AFTER" | grep -v '^seq|')"
check "new: seqs as before, plus the dead worker's leaves" "room:gone 2
room:lobby 7
room:ops 3" "$(q -d app -c "$SEQ_SQL")"
check "new: the C functions load on $TO (presence_channel, presence_count)" "presence:room:lobby 1" \
	"$(q -d app -c "SELECT presence_channel('room:lobby') || ' ' || presence_count_global('room:lobby')")"

# The preloaded worker on the upgraded data: gw-conn's connection ended
# with the old server, so its 3 entries leave (lobby 6, 7; ops 3).
UPGRADE_CONF_DROP= cluster_restart_with "$BASE/new" "shared_preload_libraries = 'presence'" \
	"presence.database = 'app'" "presence.sweep_interval = '200ms'" "presence.worker_ttl = '1h'" ||
	upgrade_setup_fail "restart the new cluster preloaded"
for _ in $(seq 100); do
	r=$(q -d app -c "SELECT string_agg(worker_id, ' ' ORDER BY worker_id) FROM tep_presence_worker")
	[ "$r" = "gw-lease gw-tep" ] && break
	sleep 0.1
done
check "new, preloaded: the leased and heartbeat workers are kept" "gw-lease gw-tep" "$r"
q -d app -c "SELECT presence_set_status('room:ops', 7, 'busy', 'brb',
	trunc(extract(epoch FROM now()))::bigint + 1, worker_id => 'gw-tep')" >/dev/null
for _ in $(seq 100); do
	r=$(q -d app -c "SELECT status_state FROM tep_presence WHERE topic = 'room:ops' AND fd = 7")
	[ "$r" = available ] && break
	sleep 0.1
done
check "new, preloaded: the background worker resets an expired status" "available" "$r"
check "new: seqs continued (ops: status, reset)" "room:gone 2
room:lobby 7
room:ops 5" "$(q -d app -c "$SEQ_SQL")"
out=$(q -d app -c "LISTEN tep_broadcast" -c "SELECT presence_track('room:lobby', 9, 'user:zoe', worker_id => 'gw-lease')" 2>&1)
check "new: a new diff carries room:lobby seq 8" "room:lobby 8" "$(printf '%s\n' "$out" |
	grep -o 'payload ".*" received' | sed -E 's/.*"topic":"([^"]*)".*"seq":([0-9]+).*/\1 \2/')"
check "new: no crash in the server log" "" "$(grep -E 'terminated by signal|PANIC' "$BASE/new/server.log")"

# --- the suites, in the upgraded database ------------------------------------------
UPGRADE_CONF_DROP='^(shared_preload_libraries|presence\.)' cluster_restart_with "$BASE/new" ||
	upgrade_setup_fail "restart the new cluster without preload"
echo "== pg_regress in app ($TO)"
make -s installcheck ISOLATION= TAP_TESTS= PG_CONFIG="$NEW_BIN/pg_config" \
	REGRESS_OPTS="--use-existing --dbname=app --outputdir=$OUT/regress" >"$OUT/regress.log" 2>&1
rc=$?
add_regress_counts "pg_regress in the upgraded database" "$OUT/regress.log" $rc
[ $rc = 0 ] || { [ -f "$OUT/regress/regression.diffs" ] && head -n 80 "$OUT/regress/regression.diffs"; }
echo "== isolation in app ($TO)"
specs=$(ls test/isolation/specs/*.spec | xargs -n1 basename | sed 's/\.spec$//')
"$("$NEW_BIN/pg_config" --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress" \
	--inputdir=test/isolation --launcher="$ROOT/test/isolation/normalize_epoch.sh" --outputdir="$OUT/isolation" --bindir="$NEW_BIN" \
	--use-existing --dbname=app $specs >"$OUT/isolation.log" 2>&1
rc=$?
add_regress_counts "isolation in the upgraded database" "$OUT/isolation.log" $rc
[ $rc = 0 ] || { [ -f "$OUT/isolation/regression.diffs" ] && head -n 80 "$OUT/isolation/regression.diffs"; }

upgrade_summary
