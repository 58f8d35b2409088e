#!/usr/bin/env bash
# ALTER EXTENSION presence UPDATE from 1.0 to 1.1 with live state, then the
# whole SQL suite on the updated installation.
#
#   bash test/upgrade/extension_update.sh      (as root; builds and installs)
#
# 1. A cluster (port 55450) preloaded with the library (the 1.1 .so, as a
#    server is after a package upgrade), presence.database = app; in app,
#    CREATE EXTENSION presence VERSION '1.0'.
# 2. State made by real calls: a connection-bound worker whose connection
#    stays open (it also LISTENs), a leased worker, heartbeat rows (one
#    registered by presence_track, one written as Tep writes it), humans
#    and agents in several topics, statuses, a topic that emptied, a long
#    topic; seqs advanced by those calls.
# 3. ALTER EXTENSION presence UPDATE; then: version 1.1, the three tables
#    row for row as before, no worker dead, the extension's objects equal
#    to a fresh CREATE EXTENSION presence (1.1) in another database,
#    presence_channel works, the open session goes on with seq+1, topic
#    delivery on presence_channel()'s channel, the background worker still
#    resets statuses and prunes the closed connection's worker.
# 4. The suites of test/run_all.sh run IN app, the database where the
#    update happened (pg_regress and pg_isolation_regress with
#    --use-existing --dbname=app, pg_prove -d app), on the same cluster
#    restarted without the preload (as run_all.sh's cluster is).  pg_regress
#    makes its databases from template0, so a template1 carrying the
#    update would not reach it; --use-existing is what makes the suites use
#    the updated extension rather than a fresh CREATE EXTENSION.  The
#    pg_extension row's oid is checked unchanged afterwards.
#
# Last line "N passed, N failed" (the suites' tests counted one by one);
# exit status non-zero on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PRESENCE_ROOT=$ROOT
. test/lib/cluster.sh
. test/upgrade/lib.sh

DIR=${PRESENCE_UPGRADE_DIR:-/tmp/presence-upgrade-update}
PORT=${PRESENCE_UPGRADE_PORT:-55450}
OUT=$ROOT/test/out/upgrade/extension_update
trap 'sess_cleanup; cluster_stop "$DIR"' EXIT
trap 'exit 130' INT TERM

ensure_packages "${PRESENCE_BUILD_PACKAGES[@]}" || upgrade_setup_fail "packages"
build_and_install || upgrade_setup_fail "build and install"
rm -rf "$OUT"
mkdir -p "$OUT/regress" "$OUT/isolation"
chmod -R a+rwX "$ROOT/test/out"

cluster_start "$DIR" "$PORT" || upgrade_setup_fail "cluster"
q -c "CREATE DATABASE app" -c "CREATE DATABASE fresh" || upgrade_setup_fail "databases"

# --- 1.0 -------------------------------------------------------------------
q -d app -c "CREATE EXTENSION presence VERSION '1.0'" || upgrade_setup_fail "CREATE EXTENSION VERSION '1.0'"
check "installed at 1.0" "1.0" "$(q -d app -c "SELECT extversion FROM pg_extension WHERE extname = 'presence'")"
check "1.0 has no presence_channel" "t" "$(q -d app -c "SELECT to_regproc('presence_channel') IS NULL")"
PATHS_SQL="SELECT source || ' -> ' || target || ': ' || coalesce(path, '(none)')
             FROM pg_extension_update_paths('presence') ORDER BY source, target"
check "pg_extension_update_paths at 1.0" "1.0 -> 1.1: 1.0--1.1
1.1 -> 1.0: (none)" "$(q -d app -c "$PATHS_SQL")"
check "1.0's members: 23 functions, 3 tables" "23 3" "$(q -d app -c "
	SELECT count(*) FILTER (WHERE classid = 'pg_proc'::regclass) || ' ' ||
	       count(*) FILTER (WHERE classid = 'pg_class'::regclass)
	  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
	   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'presence')")"

# The server as it runs after a package upgrade: the new library preloaded,
# the database still at 1.0.
cluster_restart_with "$DIR" "shared_preload_libraries = 'presence'" \
	"presence.database = 'app'" "presence.sweep_interval = '200ms'" ||
	upgrade_setup_fail "restart with the library preloaded"

# --- live state, by real calls ----------------------------------------------
LONG="room:$(printf 'x%.0s' $(seq 60))"
sess_open a app
sess_run a "LISTEN tep_broadcast;
	SELECT presence_worker_start('gw-conn');
	SELECT presence_track('room:lobby', 1, 'user:alice');
	SELECT presence_track('room:lobby', 2, 'user:alice', 'agent_for', 'summarizer-bot');
	SELECT presence_track('room:ops', 1, 'user:bob');
	SELECT presence_set_status('room:lobby', 2, 'busy', 'summarizing #1234',
	       trunc(extract(epoch FROM now()))::bigint + 3600);" >"$OUT/a-setup.out"
q -d app >"$OUT/setup.out" <<-EOF || upgrade_setup_fail "populate"
	SELECT presence_worker_start('gw-lease', interval '1 hour');
	SELECT presence_track('room:lobby', 1, 'user:carol', worker_id => 'gw-lease');
	SELECT presence_track('$LONG', 3, 'user:carol', worker_id => 'gw-lease');
	SELECT presence_set_status('room:lobby', 1, 'busy', 'call', 0, worker_id => 'gw-lease');
	SELECT presence_clear_status('room:lobby', 1, worker_id => 'gw-lease');
	SELECT presence_heartbeat('gw-lease');
	SELECT presence_track('room:ops', 7, 'user:dave', 'agent_for', 'triage-bot', worker_id => 'gw-tep');
	SELECT presence_set_status('room:ops', 7, 'blocked', 'do not disturb', worker_id => 'gw-tep');
	INSERT INTO tep_presence_worker (worker_id, last_seen_ts)
	VALUES ('tep-1', trunc(extract(epoch FROM now()))::bigint)
	ON CONFLICT (worker_id) DO UPDATE SET last_seen_ts = EXCLUDED.last_seen_ts;
	SELECT presence_track('room:gone', 1, 'user:erin', worker_id => 'gw-lease');
	SELECT presence_untrack('room:gone', 1, worker_id => 'gw-lease');
	SELECT presence_track('room:gone', 2, 'user:erin', worker_id => 'gw-lease');
	SELECT presence_untrack_by_fd(2, worker_id => 'gw-lease');
EOF
check "seqs advanced by the calls" "room:gone 4
room:lobby 6
room:ops 3
$LONG 1" "$(q -d app -c "SELECT topic || ' ' || seq FROM presence_topic_seq ORDER BY topic")"
check "entries and workers before the update" "6 entries, workers gw-conn:bound gw-lease:leased gw-tep:heartbeat tep-1:heartbeat" \
	"$(q -d app -c "SELECT (SELECT count(*) FROM tep_presence) || ' entries, workers ' ||
		string_agg(worker_id || ':' || CASE WHEN backend_pid IS NOT NULL THEN 'bound'
		           WHEN lease IS NOT NULL THEN 'leased' ELSE 'heartbeat' END, ' ' ORDER BY worker_id)
		FROM tep_presence_worker")"
BEFORE=$(presence_tables_dump app)
printf '%s\n' "$BEFORE" >"$OUT/tables-before.txt"
# A role granted 1.0's presence_track keeps it across the update (the
# function is replaced by 1.1's, with meta).
q -d app -c "CREATE ROLE regress_upgrade_app" \
	-c "GRANT EXECUTE ON FUNCTION presence_track(text, integer, text, text, text, text),
	    presence_worker_start(text, interval),
	    presence_set_status(text, integer, text, text, bigint, text) TO regress_upgrade_app" >/dev/null
EXT_OID=$(q -d app -c "SELECT oid FROM pg_extension WHERE extname = 'presence'")

# --- the update -------------------------------------------------------------
check_cmd "ALTER EXTENSION presence UPDATE" q -d app -c "ALTER EXTENSION presence UPDATE"
check "version after the update" "1.1" "$(q -d app -c "SELECT extversion FROM pg_extension WHERE extname = 'presence'")"
check "pg_extension_update_paths at 1.1" "1.0 -> 1.1: 1.0--1.1
1.1 -> 1.0: (none)" "$(q -d app -c "$PATHS_SQL")"
# 1.1 adds tep_presence.meta and tep_presence_worker.owner: the rows
# compared are 1.0's columns.
ENTRY_10_COLUMNS="worker_id, topic, fd, principal_id, kind, agent_id, since_ts, status_state, status_note, status_until"
AFTER=$(UPGRADE_WORKER_COLUMNS="worker_id, last_seen_ts, backend_pid, backend_start, lease, lease_until" \
	presence_tables_dump app "$ENTRY_10_COLUMNS")
printf '%s\n' "$AFTER" >"$OUT/tables-after.txt"
check "entries and workers (1.0's columns) and seqs unchanged, row for row" "$BEFORE" "$AFTER"
check "every live entry got meta '{}'" "6 6" \
	"$(q -d app -c "SELECT count(*) || ' ' || count(*) FILTER (WHERE meta = '{}') FROM tep_presence")"
check "the role granted 1.0's presence_track can execute 1.1's" "t" \
	"$(q -d app -c "SELECT has_function_privilege('regress_upgrade_app',
		'presence_track(text, integer, text, text, text, text, jsonb)', 'EXECUTE')")"
# Likewise 1.0's presence_worker_start (1.1's has takeover) and
# presence_set_status (1.1 adds the text, timestamptz and interval forms).
check "the role granted 1.0's worker_start and set_status can execute 1.1's forms" "t t t t t" \
	"$(q -d app -c "SELECT concat_ws(' ', VARIADIC array_agg(has_function_privilege('regress_upgrade_app', f, 'EXECUTE') ORDER BY f))
		FROM unnest(ARRAY['presence_worker_start(text, interval, boolean)',
		                  'presence_set_status(text, integer, text, text, bigint, text)',
		                  'presence_set_status(text, integer, text, text, text, text)',
		                  'presence_set_status(text, integer, text, text, timestamptz, text)',
		                  'presence_set_status(text, integer, text, text, interval, text)']) AS f")"
check "the update made the app role presence_app, with no maintenance function" "true false false false" \
	"$(q -d app -c "SELECT has_function_privilege('presence_app', 'presence_track(text, integer, text, text, text, text, jsonb)', 'EXECUTE')
		|| ' ' || has_function_privilege('presence_app', 'presence_prune_dead_workers()', 'EXECUTE')
		|| ' ' || has_function_privilege('presence_app', 'presence_sweep_expired_status()', 'EXECUTE')
		|| ' ' || has_function_privilege('presence_app', 'presence_history_maintain()', 'EXECUTE')")"
q -d app -c "DROP OWNED BY regress_upgrade_app" -c "DROP ROLE regress_upgrade_app" >/dev/null
# Owners of the 1.0 rows: a connection-bound worker whose backend runs
# belongs to that backend's role; leased and heartbeat rows have none
# (anyone granted the functions may use them, as in 1.0, until
# presence_worker_start registers them again).
check "owners after the update: the live bound worker's role, else none" \
	"gw-conn:postgres gw-lease:- gw-tep:- tep-1:-" \
	"$(q -d app -c "SELECT string_agg(worker_id || ':' || coalesce(owner::text, '-'), ' ' ORDER BY worker_id)
		FROM tep_presence_worker")"
check "a new row's owner defaults to its writer's role" "t" \
	"$(q -d app -c "BEGIN" -c "INSERT INTO tep_presence_worker (worker_id, last_seen_ts) VALUES ('tep-default', 1)" \
		-c "SELECT owner::text = current_user FROM tep_presence_worker WHERE worker_id = 'tep-default'" -c "ROLLBACK")"
check "no worker is dead after the update" "0" "$(q -d app -c "SELECT presence_prune_dead_workers()")"

# Updated = fresh: the same member objects, definitions and privileges.
q -d fresh -c "CREATE EXTENSION presence" || not_ok "CREATE EXTENSION presence (1.1) in fresh"
q -d app -c "$PRESENCE_MEMBERS_SQL" >"$OUT/members-updated.txt"
q -d fresh -c "$PRESENCE_MEMBERS_SQL" >"$OUT/members-fresh.txt"
check "the updated extension's objects = a fresh 1.1's (definitions, privileges)" \
	"$(cat "$OUT/members-fresh.txt")" "$(cat "$OUT/members-updated.txt")"
EXTCONFIG_SQL="SELECT coalesce(extconfig::regclass[]::text, '-') || ' ' || coalesce(extcondition::text, '-')
                 FROM pg_extension WHERE extname = 'presence'"
check "the updated extension's config tables (pg_dump) = a fresh 1.1's" \
	"$(q -d fresh -c "$EXTCONFIG_SQL")" "$(q -d app -c "$EXTCONFIG_SQL")"
check "39 member functions after the update (presence_channel, presence_epoch, and 1.1's meta, history, principals, set_status's three new forms, many-calls and retention)" "39" "$(grep -c '^function ' "$OUT/members-updated.txt")"

# The 1.1 functions.
check "the updated database's snapshots carry presence_epoch()" "t" \
	"$(q -d app -c "SELECT presence_snapshot('room:lobby')::json ->> 'epoch' = presence_epoch() AND presence_epoch() ~ '^[0-9a-f]{16}\$'")"
check "presence_channel of a short topic" "presence:room:lobby" \
	"$(q -d app -c "SELECT presence_channel('room:lobby')")"
check "presence_channel of a long topic: hashed, same as a fresh 1.1" \
	"$(q -d fresh -c "SELECT presence_channel('$LONG')")" \
	"$(q -d app -c "SELECT presence_channel('$LONG')")"
check "presence_channel of a long topic: presence#<32 hex>:..., under 64 bytes" "t" \
	"$(q -d app -c "SELECT presence_channel('$LONG') ~ '^presence#[0-9a-f]{32}:room:x+\$'
	               AND octet_length(presence_channel('$LONG')) < 64")"
check "presence_channel not executable by PUBLIC" "f" \
	"$(q -d app -c "CREATE ROLE regress_upgrade_nobody" \
		-c "SELECT has_function_privilege('regress_upgrade_nobody', 'presence_channel(text)', 'EXECUTE')" \
		-c "DROP ROLE regress_upgrade_nobody")"

# The session opened before the update goes on: same worker, next seq.
out=$(sess_run a "SELECT presence_track('room:lobby', 3, 'user:alice');
	SELECT current_setting('presence.worker_id');")
check "the open session tracks after the update, as gw-conn" "t
gw-conn" "$(printf '%s\n' "$out" | grep -v '^Asynchronous')"
sleep 0.3
# The notification comes with the call's own output, or with the next.
notes=$(printf '%s\n' "$out" "$(sess_run a "SELECT;")" | grep -c '"topic":"room:lobby".*"seq":7,"worker_id":"gw-conn"')
check "its diff carries room:lobby seq 7" "1" "$notes"
# Every diff the session heard, per topic: 1, 2, 3 ... with no gap, across
# the update.
check "the diffs heard are seq 1..n per topic, across the update" "room:gone 1 2 3 4
room:lobby 1 2 3 4 5 6 7
room:ops 1 2 3
$LONG 1" "$(grep -o 'payload ".*" received' "$UPGRADE_SESS_DIR/a.out" |
	sed -E 's/.*"topic":"([^"]*)".*"seq":([0-9]+).*/\1 \2/' |
	awk '{s[$1] = s[$1] " " $2} END {for (t in s) print t s[t]}' | LC_ALL=C sort)"

# 1.1's meta on an entry made at 1.0: set in place, carried by the diff.
sess_run a "SELECT presence_set_meta('room:lobby', 1, '{\"name\": \"Alice\"}');" >"$OUT/a-meta.out"
check "presence_set_meta on an entry made at 1.0" "t" "$(grep -v '^Asynchronous' "$OUT/a-meta.out")"
sleep 0.3
sess_run a "SELECT;" >>"$OUT/a-meta.out"
check "its status diff carries seq 8 and the meta, then the epoch" "1" \
	"$(grep -cE '"kind":"status".*"seq":8,"worker_id":"gw-conn","meta":\{"name": "Alice"\},"epoch":"[0-9a-f]{16}"\}' "$OUT/a-meta.out")"
# History, on for one session: the leave of an entry made at 1.0.
q -d app -c "SET presence.history = on" -c "SELECT presence_untrack('room:ops', 7, 'gw-tep')" \
	-c "SELECT presence_track('room:ops', 7, 'user:dave', 'agent_for', 'triage-bot', worker_id => 'gw-tep')" >/dev/null
check "history records a session begun at 1.0" "room:ops user:dave triage-bot untrack" \
	"$(q -d app -c "SELECT topic || ' ' || principal_id || ' ' || agent_id || ' ' || reason FROM presence_history")"
check "presence_last_seen of a present principal is now" "t" \
	"$(q -d app -c "SELECT presence_last_seen('user:dave') = trunc(extract(epoch FROM now()))::bigint")"
q -d app -c "DELETE FROM presence_history" >/dev/null

# Topic delivery, with presence_channel's channel names.
sess_run a "LISTEN \"presence:room:ops\";
	SELECT 'LISTEN \"' || presence_channel('$LONG') || '\"' \\gexec" >/dev/null
q -d app -c "SET presence.delivery = 'topic'" \
	-c "SELECT presence_track('room:ops', 8, 'user:frank', worker_id => 'gw-tep')" \
	-c "SELECT presence_track('$LONG', 4, 'user:frank', worker_id => 'gw-tep')" >/dev/null
sleep 0.3
heard=$(sess_run a "SELECT;" | grep -oE 'notification "[^"]*"' | LC_ALL=C sort)
check "topic delivery on presence_channel()'s channels" "$(printf '%s\n' \
	"notification \"$(q -d app -c "SELECT presence_channel('$LONG')")\"" \
	'notification "presence:room:ops"' | LC_ALL=C sort)" "$heard"

# The background worker (the preloaded 1.1 library) on the updated tables:
# an expiring status is reset, a closed connection's worker is pruned.
q -d app -c "SELECT presence_set_status('room:ops', 7, 'busy', 'brb',
	trunc(extract(epoch FROM now()))::bigint + 1, worker_id => 'gw-tep')" >/dev/null
sess_close a
for _ in $(seq 100); do
	r=$(q -d app -c "SELECT (SELECT status_state FROM tep_presence WHERE topic = 'room:ops' AND fd = 7)
		|| ' ' || (SELECT count(*) FROM tep_presence_worker WHERE worker_id = 'gw-conn')
		|| ' ' || (SELECT count(*) FROM tep_presence WHERE worker_id = 'gw-conn')")
	[ "$r" = "available 0 0" ] && break
	sleep 0.1
done
check "background worker: status reset, closed connection's worker and entries pruned" "available 0 0" "$r"
check "seqs after the worker's diffs" "room:gone 4
room:lobby 11
room:ops 9
$LONG 2" "$(q -d app -c "SELECT topic || ' ' || seq FROM presence_topic_seq ORDER BY topic")"

# --- the suites, in the updated database -------------------------------------
UPGRADE_CONF_DROP='^(shared_preload_libraries|presence\.)' cluster_restart_with "$DIR" || upgrade_setup_fail "restart without preload"
echo "== pg_regress in app"
make -s installcheck ISOLATION= TAP_TESTS= REGRESS_OPTS="--use-existing --dbname=app --outputdir=$OUT/regress" \
	>"$OUT/regress.log" 2>&1
rc=$?
add_regress_counts "pg_regress in the updated database" "$OUT/regress.log" $rc
[ $rc = 0 ] || { [ -f "$OUT/regress/regression.diffs" ] && head -n 80 "$OUT/regress/regression.diffs"; }

echo "== isolation in app"
specs=$(ls test/isolation/specs/*.spec | xargs -n1 basename | sed 's/\.spec$//')
"$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress" \
	--inputdir=test/isolation --launcher="$ROOT/test/isolation/normalize_epoch.sh" --outputdir="$OUT/isolation" --bindir="$PG_BINDIR" \
	--use-existing --dbname=app $specs >"$OUT/isolation.log" 2>&1
rc=$?
add_regress_counts "isolation in the updated database" "$OUT/isolation.log" $rc
[ $rc = 0 ] || { [ -f "$OUT/isolation/regression.diffs" ] && head -n 80 "$OUT/isolation/regression.diffs"; }

echo "== pgtap in app"
q -d app -c "CREATE EXTENSION IF NOT EXISTS pgtap" >/dev/null
pg_prove -d app test/pgtap/*.sql >"$OUT/pgtap.log" 2>&1
add_pgtap_counts "pgTAP in the updated database" "$OUT/pgtap.log" $?

check "the suites ran on the updated extension (same pg_extension row, 1.1)" "$EXT_OID 1.1" \
	"$(q -d app -c "SELECT oid || ' ' || extversion FROM pg_extension WHERE extname = 'presence'")"

upgrade_summary
