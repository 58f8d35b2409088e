#!/usr/bin/env bash
# The shard suite (issue 13, docs/scaling.md): three shard clusters and one
# proxy cluster with PL/Proxy and presence_proxy, on ports 55470 (proxy)
# and 55471-55473 (shards).  Assumes `make install` was done; run as root
# (clusters as the postgres user) or as a user who may run PostgreSQL.
#
#   bash test/shards/run.sh
#
# Checks, each one counted:
#   - the proxy has every function of presence's API, same signature
#   - test/shards/sql/api.sql gives the same output on one server and
#     through the proxy, and test/shards/pgtap passes on both
#   - presence_shard(topic) names the shard that holds the topic's rows,
#     with modular_mapping and with the bitmask over a power of two
#   - the documented differences (connection-bound workers refused, no
#     transaction across calls)
#   - identity (issue 19): calls reach the shards as the calling role, so
#     another role's calls on a worker get 42501 through the proxy too; no
#     proxy function resolves a pg_temp type or table
#     (sql/presence_capture_types.sql)
#   - test/shards/t/*.t: cross-shard churn, a shard killed with -9, a lease
#     that lapses on every shard
# Last line: "N passed, N failed"; or, where PL/Proxy is not installed for
# this major, one line "skipped: ..." and exit status 77.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
. test/shards/lib.sh
OUT=${PRESENCE_SHARDS_OUT:-$ROOT/test/out/shards}
BASE=55470

if ! shards_has_plproxy; then
	echo "skipped: no PL/Proxy for PostgreSQL $PRESENCE_PG_MAJOR (Debian has no postgresql-$PRESENCE_PG_MAJOR-plproxy here)"
	exit 77
fi
perl -MDBD::Pg -e 1 2>/dev/null || {
	echo "setup failed: DBD::Pg missing (apt-get install libdbd-pg-perl)" >&2
	echo "0 passed, 1 failed"
	exit 1
}

rm -rf "$OUT"
mkdir -p "$OUT"
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }
check() { # check NAME CMD...: CMD's status
	local name=$1
	shift
	if "$@"; then ok "$name"; else not_ok "$name"; fi
}

DIR=/tmp/presence-shards
trap shards_stop EXIT
shards_start "$DIR" "$BASE" 3 || { echo "setup failed" >&2; echo "0 passed, 1 failed"; exit 1; }
PGHOST=$(shard_sock 0) PGPORT=$(shard_port 0) psql -Xq -v ON_ERROR_STOP=1 \
	-c 'CREATE DATABASE single' && PGHOST=$(shard_sock 0) PGPORT=$(shard_port 0) \
	psql -Xq -v ON_ERROR_STOP=1 -d single -c 'CREATE EXTENSION presence' &&
	shards_proxy_db proxy presence &&
	shards_proxy_db proxy_api api &&
	shards_proxy_db proxy_pow2 api bitmask 2 ||
	{ echo "setup failed" >&2; echo "0 passed, 1 failed"; exit 1; }

proxy_psql() { PGHOST=$DIR/proxy/sock PGPORT=$BASE psql -X "$@"; }
shard_psql() { local i=$1; shift; PGHOST=$(shard_sock "$i") PGPORT=$(shard_port "$i") psql -X "$@"; }

# 1. The same functions: name, arguments (with defaults), result.
fn_list='SELECT p.proname || '"'"'('"'"' || pg_get_function_arguments(p.oid) || '"'"') -> '"'"'
              || pg_get_function_result(p.oid)
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = '"'"'public'"'"' AND p.proname LIKE '"'"'presence\_%'"'"'
          ORDER BY 1'
shard_psql 0 -At -d api -c "$fn_list" | grep -v '^presence_entry_is_valid(' >"$OUT/functions.shard"
proxy_psql -At -d proxy -c "$fn_list" | grep -v -E '^presence_(shards?|partition_map|topic_hash)\(' >"$OUT/functions.proxy"
missing=$(comm -23 "$OUT/functions.shard" "$OUT/functions.proxy")
extra=$(comm -13 "$OUT/functions.shard" "$OUT/functions.proxy")
[ -n "$missing" ] && printf 'presence functions missing on the proxy (or with another signature):\n%s\n' "$missing"
[ -n "$extra" ] && printf 'proxy functions presence does not have (or with another signature):\n%s\n' "$extra"
check "the proxy has presence's $(wc -l <"$OUT/functions.shard") API functions, same signatures" \
	test -z "$missing$extra" -a -s "$OUT/functions.shard"

# 2. The API script: one server vs the proxy.
shard_psql 0 -d single -f test/shards/sql/api.sql >"$OUT/api.single" 2>&1
proxy_psql -d proxy_api -f test/shards/sql/api.sql >"$OUT/api.proxy" 2>&1
diff -u "$OUT/api.single" "$OUT/api.proxy" >"$OUT/api.diff"
check "test/shards/sql/api.sql: the proxy's output is one server's" test ! -s "$OUT/api.diff"
[ -s "$OUT/api.diff" ] && head -n 100 "$OUT/api.diff"
# ... and it did run (an error-free script, every function called).
check "api.sql ran without a psql-level error" bash -c "! grep -q 'ERROR' '$OUT/api.single'"
grep ERROR "$OUT/api.single" | head -n 5

# ... and the pgTAP properties over random inputs, on both.
for db in single proxy_api; do
	if [ $db = single ]; then
		run_on() { shard_psql 0 "$@"; }
		host=$(shard_sock 0) port=$(shard_port 0)
	else
		run_on() { proxy_psql "$@"; }
		host=$DIR/proxy/sock port=$BASE
	fi
	run_on -Xq -d $db -c 'CREATE EXTENSION IF NOT EXISTS pgtap' >/dev/null 2>&1
	PGHOST=$host PGPORT=$port pg_prove -d $db test/shards/pgtap/*.sql >"$OUT/pgtap.$db" 2>&1
	check "pgTAP test/shards/pgtap on $db: $(grep -oE 'Tests=[0-9]+' "$OUT/pgtap.$db")" \
		grep -q '^Result: PASS' "$OUT/pgtap.$db"
	grep -q '^Result: PASS' "$OUT/pgtap.$db" || cat "$OUT/pgtap.$db"
done

# 3. presence_shard(topic): where the rows are.
placement() { # placement PROXYDB NSHARDS: mismatches, one a line
	local db=$1 n=$2 i t where
	proxy_psql -Atq -d "$db" -v ON_ERROR_STOP=1 \
		-c "SELECT presence_worker_start('place', '1 hour')" \
		-c "SELECT presence_track('place:' || i, 1, 'p') FROM generate_series(1, 60) i" >/dev/null || {
		echo "tracking failed"
		return
	}
	declare -A on=()
	for ((i = 0; i < n; i++)); do
		while read -r t; do on[$t]+="$(shard_connstr $i api);"; done < <(
			shard_psql "$i" -Atq -d api -c "SELECT topic FROM tep_presence WHERE worker_id = 'place'")
	done
	while IFS='|' read -r t where; do
		[ "${on[$t]:-}" = "$where;" ] || echo "$t: presence_shard says '$where', rows on '${on[$t]:-nowhere}'"
	done < <(proxy_psql -Atq -d "$db" -c "SELECT 'place:' || i, presence_shard('place:' || i) FROM generate_series(1, 60) i")
	proxy_psql -Atq -d "$db" -c "SELECT presence_worker_stop('place')" >/dev/null
}
for db in proxy_api:3 proxy_pow2:2; do
	bad=$(placement "${db%:*}" "${db#*:}")
	[ -n "$bad" ] && echo "$bad" | head -n 5
	check "presence_shard names the shard holding each of 60 topics (${db%:*}, ${db#*:} partitions)" test -z "$bad"
done
n_used=$(proxy_psql -Atq -d proxy_api -c "SELECT count(DISTINCT presence_shard('place:' || i)) FROM generate_series(1, 60) i")
check "60 topics spread over all 3 shards (got $n_used)" test "$n_used" = 3

# 3b. Client routing (docs/scaling.md, "Routing in the client"): the
# topics' shards computed from presence_partition_map() and
# presence_topic_hash(), each topic tracked straight on its shard, then
# read through the proxy: every write is where the proxy reads it.
client_routed() { # client_routed PROXYDB: mismatches, one a line
	local db=$1 connstr topics got
	declare -A by_shard=()
	while IFS='|' read -r t connstr; do by_shard[$connstr]+="'$t',"; done < <(
		proxy_psql -Atq -d "$db" -c "SELECT 'route:' || i, m.connstr
		  FROM generate_series(1, 60) i, presence_partition_map() m
		 WHERE m.shard = CASE m.mapping
		                 WHEN 'modulo' THEN abs(presence_topic_hash('route:' || i) % m.partitions)
		                 ELSE presence_topic_hash('route:' || i) & (m.partitions - 1) END")
	for connstr in "${!by_shard[@]}"; do
		topics=${by_shard[$connstr]%,}
		psql -X "$connstr" -Atq -v ON_ERROR_STOP=1 \
			-c "SELECT presence_track(t, 1, 'p', worker_id => 'routed') FROM unnest(ARRAY[$topics]) t" >/dev/null ||
			echo "tracking on $connstr failed"
	done
	got=$(proxy_psql -Atq -d "$db" -c "SELECT count(*) FROM generate_series(1, 60) i
	        WHERE (SELECT array_agg(worker_id) FROM presence_list_global('route:' || i)) = '{routed}'")
	[ "$got" = 60 ] || echo "the proxy reads $got of the 60 routed entries"
	got=$(proxy_psql -Atq -d "$db" -c "SELECT presence_clear('routed')")
	[ "$got" = 60 ] || echo "presence_clear through the proxy dropped $got"
}
for db in proxy_api proxy_pow2; do
	bad=$(client_routed "$db")
	[ -n "$bad" ] && echo "$bad" | head -n 5
	check "client-routed writes (presence_partition_map) are where the proxy reads them ($db)" test -z "$bad"
done
version_before=$(proxy_psql -Atq -d proxy_pow2 -c "SELECT DISTINCT version FROM presence_partition_map()")
version_after=$(proxy_psql -Atq -d proxy_pow2 -c "ALTER SERVER presence OPTIONS (ADD connection_lifetime '3600')" \
	-c "SELECT DISTINCT version FROM presence_partition_map()" \
	-c "ALTER SERVER presence OPTIONS (DROP connection_lifetime)")
check "the partition map's version changes with the server's options" \
	test -n "$version_before" -a "$version_before" != "$version_after"

# 4. The documented differences.
expect_state() { # expect_state SQLSTATE DB SQL
	local got
	got=$(proxy_psql -Atq -d "$2" -v VERBOSITY=sqlstate -c "$3" 2>&1 | grep -oE '[0-9A-Z]{5}$' | tail -n 1)
	[ "$got" = "$1" ] || { echo "$3: expected SQLSTATE $1, got '$got'"; return 1; }
}
check "no worker_id and no presence.worker_id: 0A000 (no connection-bound worker)" \
	expect_state 0A000 proxy_api "SELECT presence_track('t', 1, 'p')"
check "presence_worker_start(id) without a lease: 0A000" \
	expect_state 0A000 proxy_api "SELECT presence_worker_start('gw-x')"
check "presence_worker_start() without an id: 0A000" \
	expect_state 0A000 proxy_api "SELECT presence_worker_start(NULL, '1 minute')"
check "presence_epoch() through the proxy: 0A000 (each shard has its own)" \
	expect_state 0A000 proxy_api "SELECT presence_epoch()"
rolled=$(proxy_psql -Atq -d proxy_api -c "BEGIN" \
	-c "SELECT presence_track('tx:1', 1, 'p', worker_id => 'tx')" -c "ROLLBACK" \
	-c "SELECT presence_count_global('tx:1')" -c "SELECT presence_clear('tx')" | sed -n 2p)
check "a rolled-back proxy transaction leaves the shard's change (autocommit per call; got $rolled)" \
	test "$rolled" = 1

# Privileges and identity (issue 19): nothing for PUBLIC; GRANT
# presence_app (on the proxy: with presence_shard(s), USAGE on schema
# presence_proxy and its internal functions but the maintenance) and USAGE
# on the foreign server are all an app role needs on the proxy, and a
# login role of its name on each shard granted presence_app there.  Every
# call reaches the shards as the calling role, so ownership holds through
# the proxy as on one server.
for i in 0 1 2; do
	shard_psql $i -Xq -d postgres -v ON_ERROR_STOP=1 \
		-c 'CREATE ROLE app LOGIN' -c 'CREATE ROLE sec_a LOGIN' -c 'CREATE ROLE sec_b LOGIN' \
		-c 'CREATE ROLE regress_captor LOGIN' \
		-c 'GRANT presence_app TO app, sec_a, sec_b, regress_captor' >/dev/null
done
proxy_psql -Xq -d proxy_api -v ON_ERROR_STOP=1 -c 'CREATE ROLE app' -c 'CREATE ROLE stranger' \
	-c 'CREATE ROLE sec_a' -c 'CREATE ROLE sec_b' \
	-c 'GRANT presence_app TO app, sec_a, sec_b' \
	-c 'GRANT USAGE ON FOREIGN SERVER presence TO presence_app' >/dev/null
as_app=$(proxy_psql -Atq -d proxy_api -c 'SET ROLE app' \
	-c "SELECT presence_worker_start('app-gw', '1 minute')" \
	-c "SELECT presence_track('priv:1', 1, 'p') AND presence_count_global('priv:1') = 1
	           AND presence_shard('priv:1') IS NOT NULL
	           AND (SELECT count(*) FROM presence_partition_map()) = 3
	           AND presence_worker_stop() = 1" 2>&1 | tail -n 1)
check "an app role granted presence_app works through the proxy (got '$as_app')" test "$as_app" = t
check "the maintenance is not the app's: 42501" \
	expect_state 42501 proxy_api "SET ROLE app; SELECT presence_prune_dead_workers()"
check "the internal maintenance functions are not the app's: 42501" \
	expect_state 42501 proxy_api "SET ROLE app; SELECT presence_proxy.prune_dead_workers_on(0)"
check "a role without the GRANT: 42501" \
	expect_state 42501 proxy_api "SET ROLE stranger; SELECT presence_count_global('t')"

# sec_a's leased worker, through the proxy: on the shard it is sec_a's.
proxy_psql -Atq -d proxy_api -v ON_ERROR_STOP=1 -c 'SET ROLE sec_a' \
	-c "SELECT presence_worker_start('sec-gw', '1 hour')" \
	-c "SELECT presence_track('sec:1', 1, 'alice')" >/dev/null
owners=$(for i in 0 1 2; do shard_psql $i -Atq -d api -c "SELECT owner FROM tep_presence_worker WHERE worker_id = 'sec-gw'"; done | sort -u | xargs)
check "a worker started through the proxy belongs on every shard to the calling role (got '$owners')" \
	test "$owners" = sec_a
# sec_a's connection-bound worker, directly on sec:2's shard, kept open.
s2=$(proxy_psql -Atq -d proxy_api -c "SELECT shard FROM presence_shards() WHERE connstr = presence_shard('sec:2')")
shard_psql "$s2" -Atq -d api -c 'SET ROLE sec_a' -c "SELECT presence_track('sec:2', 1, 'alice')" \
	-c 'SELECT pg_sleep(60)' >/dev/null 2>&1 &
bound_pid=$!
bound=
for _ in $(seq 50); do
	bound=$(shard_psql "$s2" -Atq -d api -c "SELECT worker_id FROM tep_presence WHERE topic = 'sec:2'")
	[ -n "$bound" ] && break
	sleep 0.1
done
# Through the proxy, sec_b may not touch either (as on one server): 42501.
for call in "SELECT presence_set_status('sec:1', 1, 'busy', 'hacked', worker_id => 'sec-gw')" \
	"SELECT presence_untrack('sec:1', 1, worker_id => 'sec-gw')" \
	"SELECT presence_worker_stop('sec-gw')" \
	"SELECT presence_worker_start('sec-gw', '1 hour')" \
	"SELECT presence_proxy.set_status('sec:1', 1, 'busy', 'hacked', 0, 'sec-gw')" \
	"SELECT presence_worker_stop('$bound')"; do
	check "through the proxy as another role: $call: 42501" expect_state 42501 proxy_api "SET ROLE sec_b; $call"
done
left=$(for i in 0 1 2; do shard_psql $i -Atq -d api -c "SELECT topic || ':' || status_state FROM tep_presence WHERE topic LIKE 'sec:%'"; done | sort | xargs)
check "sec_a's entries are as they were (got '$left')" test "$left" = "sec:1:available sec:2:available"
kill "$bound_pid" 2>/dev/null
wait "$bound_pid" 2>/dev/null
proxy_psql -Atq -d proxy_api -c 'SET ROLE sec_a' -c "SELECT presence_worker_stop('sec-gw')" >/dev/null

# Capture (sql/presence_capture_types.sql): every function of
# presence_proxy, called by a role with a pg_temp domain over every type
# they name and a temp pg_foreign_server; none may resolve to them.
proxy_psql -d proxy_api -f sql/presence_capture_types.sql >"$OUT/capture.proxy" 2>&1
captured=$(sed -n '/^ *fn *| *who *| *what/,/^(/p' "$OUT/capture.proxy" | tail -n 1)
check "no proxy function resolves a pg_temp type or table (got '$captured')" test "$captured" = "(0 rows)"
[ "$captured" = "(0 rows)" ] || sed -n '/^ *fn *| *who *| *what/,/^(/p' "$OUT/capture.proxy" | head -n 20

# DROP EXTENSION and CREATE again: the extension's objects go and come
# back; the foreign server, the administrator's, stays.
again=$(proxy_psql -Atq -d proxy_pow2 -c 'DROP EXTENSION presence_proxy' \
	-c "SELECT count(*) FROM pg_namespace WHERE nspname = 'presence_proxy'" \
	-c 'CREATE EXTENSION presence_proxy' \
	-c "SELECT presence_track('again:1', 1, 'p', worker_id => 'again') AND presence_clear('again') = 1" 2>&1 | xargs)
check "DROP and CREATE EXTENSION presence_proxy (got '$again')" test "$again" = "0 t"

# 5. The Perl files: churn, kill -9, lease.
export PRESENCE_SHARDS_DIR=$DIR PRESENCE_SHARDS_BASE=$BASE PRESENCE_SHARDS_N=3 PG_BINDIR
prove -I test/shards/lib --verbose --timer test/shards/t/*.t >"$OUT/prove.log" 2>&1
rc=$?
cat "$OUT/prove.log"
tests=$(grep -oE '^Files=[0-9]+, Tests=[0-9]+' "$OUT/prove.log" | grep -oE '[0-9]+$' || echo 0)
tfailed=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$OUT/prove.log" | awk '{split($2,a,"/"); s+=a[1]} END {print s+0}')
((rc != 0 && tfailed == 0)) && tfailed=1
passed=$((passed + tests - tfailed)) failed=$((failed + tfailed))

for i in 0 1 2; do
	cp "$(shard_dir $i)/server.log" "$OUT/shard$i.log" 2>/dev/null
done
cp "$DIR/proxy/server.log" "$OUT/proxy.log" 2>/dev/null
echo "$passed passed, $failed failed"
((failed == 0))
