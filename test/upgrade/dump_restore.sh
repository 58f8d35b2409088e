#!/usr/bin/env bash
# pg_dump / pg_restore of an app database that uses presence.
#
#   bash test/upgrade/dump_restore.sh      (as root; builds and installs)
#
# A cluster (port 55451), database app: the app's own tables (a serial
# key, a foreign key, a view calling presence_count), and presence 1.1 with
# live state made by real calls (a connection-bound worker whose
# connection stays open during the dump, a leased worker, a heartbeat row,
# humans and agents in several topics, statuses, a topic that emptied).
# Dumped with pg_dump -Fc and restored with pg_restore into restored_c, and
# dumped as plain SQL and restored with psql into restored_p.
#
# What a restore keeps (presence--1.0--1.1.sql marks presence_topic_seq
# with pg_extension_config_dump, and only it):
#   - the app's tables, rows and sequences: all of them;
#   - presence_topic_seq: every row, so a topic's next diff after the
#     restore has the seq after the last one before it (seq never goes
#     back for a client holding an older seq);
#   - tep_presence and tep_presence_worker: nothing.  They describe
#     connections to the dumped server, which the restored one does not
#     have: restored rows would be ghosts until pruned (a leased worker's
#     for as long as its lease).  Clients take a fresh snapshot when they
#     reconnect, as after any loss of their LISTEN connection.
# The restored extension's objects and privileges equal the source's.
#
# Last line "N passed, N failed"; exit status non-zero on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PRESENCE_ROOT=$ROOT
. test/lib/cluster.sh
. test/upgrade/lib.sh

DIR=${PRESENCE_UPGRADE_DIR:-/tmp/presence-upgrade-dump}
PORT=${PRESENCE_UPGRADE_PORT:-55451}
OUT=$ROOT/test/out/upgrade/dump_restore
trap 'sess_cleanup; cluster_stop "$DIR"' EXIT
trap 'exit 130' INT TERM

ensure_packages "${PRESENCE_BUILD_PACKAGES[@]}" || upgrade_setup_fail "packages"
build_and_install || upgrade_setup_fail "build and install"
rm -rf "$OUT"
mkdir -p "$OUT"

cluster_start "$DIR" "$PORT" || upgrade_setup_fail "cluster"
q -c "CREATE DATABASE app" || upgrade_setup_fail "database app"

# --- the app database ---------------------------------------------------------
q -d app >/dev/null <<-'EOF' || upgrade_setup_fail "app schema"
	CREATE EXTENSION presence;
	CREATE TABLE rooms (id serial PRIMARY KEY, topic text NOT NULL UNIQUE);
	CREATE TABLE messages (id bigserial PRIMARY KEY,
	                       room_id integer NOT NULL REFERENCES rooms,
	                       body text NOT NULL);
	INSERT INTO rooms (topic) VALUES ('room:lobby'), ('room:ops'), ('room:gone');
	INSERT INTO messages (room_id, body)
	SELECT 1 + i % 3, 'message ' || i FROM generate_series(1, 50) i;
	-- An app object that depends on the extension: restored after it.
	CREATE VIEW room_occupancy AS
	SELECT r.topic, presence_count_global(r.topic) AS here,
	       presence_count_humans_global(r.topic) AS humans
	  FROM rooms r;
EOF

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
	SELECT presence_track('room:ops', 7, 'user:dave', worker_id => 'gw-tep');
	SELECT presence_track('room:gone', 1, 'user:erin', worker_id => 'gw-lease');
	SELECT presence_untrack('room:gone', 1, worker_id => 'gw-lease');
EOF
SEQS="room:gone 2
room:lobby 5
room:ops 2"
SEQ_SQL="SELECT topic || ' ' || seq FROM presence_topic_seq ORDER BY topic"
check "source: seqs advanced by the calls" "$SEQS" "$(q -d app -c "$SEQ_SQL")"
check "source: 5 entries, 3 workers" "5 3" \
	"$(q -d app -c "SELECT (SELECT count(*) FROM tep_presence) || ' ' || (SELECT count(*) FROM tep_presence_worker)")"

APP_SQL="SELECT 'room', r.* FROM rooms r ORDER BY id;
	SELECT 'message', m.* FROM messages m ORDER BY id;
	SELECT 'occupancy', o.* FROM room_occupancy o ORDER BY topic;"
q -d app -c "$PRESENCE_MEMBERS_SQL" >"$OUT/members-source.txt"
SOURCE_TABLES=$(presence_tables_dump app)

# --- dump (the connection-bound worker's session still open) ------------------
check_cmd "pg_dump -Fc" pg_dump -Fc -f "$OUT/app.dump" app
check_cmd "pg_dump (plain SQL)" pg_dump -f "$OUT/app.sql" app
pg_restore -l "$OUT/app.dump" >"$OUT/app.dump.list"
check "the custom dump's TABLE DATA: the app's tables and presence_topic_seq only" \
	"messages
presence_topic_seq
rooms" "$(awk '/ TABLE DATA / {print $(NF-1)}' "$OUT/app.dump.list" | LC_ALL=C sort)"
check "the plain dump copies presence_topic_seq, not tep_presence or tep_presence_worker" \
	"COPY public.messages
COPY public.presence_topic_seq
COPY public.rooms" "$(grep -oE '^COPY public\.[a-z_]+' "$OUT/app.sql" | LC_ALL=C sort)"
check "the plain dump has CREATE EXTENSION presence" "1" "$(grep -c '^CREATE EXTENSION IF NOT EXISTS presence ' "$OUT/app.sql")"
# The diff the source's state made: occupancy counts the live entries.
check "source: the view counts the live entries" "occupancy|room:gone|0|0
occupancy|room:lobby|3|2
occupancy|room:ops|2|2" "$(q -d app -c "SELECT 'occupancy', o.* FROM room_occupancy o ORDER BY topic")"

# --- restore ------------------------------------------------------------------
q -c "CREATE DATABASE restored_c" -c "CREATE DATABASE restored_p" || upgrade_setup_fail "target databases"
check_cmd "pg_restore into restored_c, no error" pg_restore --exit-on-error -d restored_c "$OUT/app.dump"
check_cmd "psql -f app.sql into restored_p, no error" q -d restored_p -f "$OUT/app.sql"

# The restored copies: restore_checks DB HOW
restore_checks() {
	local db=$1 how=$2 out
	check "$how: extension presence 1.1" "1.1" \
		"$(q -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'presence'")"
	q -d "$db" -c "$PRESENCE_MEMBERS_SQL" >"$OUT/members-$db.txt"
	check "$how: the extension's objects and privileges = the source's" \
		"$(cat "$OUT/members-source.txt")" "$(cat "$OUT/members-$db.txt")"
	check "$how: the app's rows, and the view" "$(q -d app -c "$APP_SQL" | grep -v '^occupancy')
occupancy|room:gone|0|0
occupancy|room:lobby|0|0
occupancy|room:ops|0|0" "$(q -d "$db" -c "$APP_SQL")"
	check "$how: the app's sequences go on" "4 51" \
		"$(q -d "$db" -c "SELECT nextval('rooms_id_seq') || ' ' || nextval('messages_id_seq')")"
	check "$how: no entries, no workers (live state is not restored)" "0 0" \
		"$(q -d "$db" -c "SELECT (SELECT count(*) FROM tep_presence) || ' ' || (SELECT count(*) FROM tep_presence_worker)")"
	check "$how: every topic's seq kept" "$SEQS" "$(q -d "$db" -c "$SEQ_SQL")"
	check "$how: the extension's config tables: presence_topic_seq" "{presence_topic_seq} {\"\"}" \
		"$(q -d "$db" -c "SELECT extconfig::regclass[]::text || ' ' || extcondition::text FROM pg_extension WHERE extname = 'presence'")"
	# The next diffs continue the seqs, on the wire too.
	out=$(q -d "$db" -c "LISTEN tep_broadcast" \
		-c "SELECT presence_track('room:lobby', 1, 'user:alice', worker_id => 'gw-new')" \
		-c "SELECT presence_track('room:fresh', 1, 'user:zoe', worker_id => 'gw-new')" 2>&1)
	check "$how: next diffs: room:lobby seq 6, a new topic seq 1" "room:lobby 6
room:fresh 1" "$(printf '%s\n' "$out" | grep -o 'payload ".*" received' |
		sed -E 's/.*"topic":"([^"]*)".*"seq":([0-9]+).*/\1 \2/')"
	check "$how: presence_snapshot after the restore" "6 1" \
		"$(q -d "$db" -c "SELECT (presence_snapshot('room:lobby')->>'seq') || ' ' ||
		                          json_array_length(presence_snapshot('room:lobby')->'entries')")"
	check "$how: nothing to prune, the new worker registered" "0 1" \
		"$(q -d "$db" -c "SELECT presence_prune_dead_workers() || ' ' || (SELECT count(*) FROM tep_presence_worker)")"
}
restore_checks restored_c "pg_restore -Fc"
restore_checks restored_p "plain SQL"

check "the source is unchanged by the dump" "$SOURCE_TABLES" "$(presence_tables_dump app)"
check "the source's connection-bound worker is still alive" "0" "$(q -d app -c "SELECT presence_prune_dead_workers()")"

upgrade_summary
