# Shared by the test/upgrade/ scripts: assertion counters, psql helpers and
# long-lived psql sessions.  Each script sources this, then calls
# upgrade_summary last (prints "N passed, N failed", exits non-zero on any
# failure).
#
#   . "$(dirname "$0")/lib.sh"
#   check 'extversion after the update' 1.1 "$(q -d app -c 'SELECT ...')"
#   sess_open a app; sess_run a "SELECT presence_worker_start('gw-a')"
#   upgrade_summary

UPGRADE_PASSED=0
UPGRADE_FAILED=0

ok() {
	UPGRADE_PASSED=$((UPGRADE_PASSED + 1))
	echo "ok - $1"
}

not_ok() {
	UPGRADE_FAILED=$((UPGRADE_FAILED + 1))
	echo "not ok - $1"
}

# check NAME EXPECTED ACTUAL
check() {
	if [ "$2" == "$3" ]; then
		ok "$1"
	else
		not_ok "$1"
		diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | sed 's/^/#   /' | head -n 40
	fi
}

# check_cmd NAME CMD...: passes when CMD exits 0 (its output shown if not).
check_cmd() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$name"
	else
		not_ok "$name"
		printf '%s\n' "$out" | tail -n 30 | sed 's/^/#   /'
	fi
}

# q PSQL-ARGS...: unaligned, tuples only, stops at the first error.
q() {
	psql -XAtq -v ON_ERROR_STOP=1 "$@"
}

# upgrade_summary: the last line, and the exit status.
upgrade_summary() {
	echo "$UPGRADE_PASSED passed, $UPGRADE_FAILED failed"
	((UPGRADE_FAILED == 0 && UPGRADE_PASSED > 0))
}

# upgrade_setup_fail WHAT: a setup step failed; counts as one failure.
upgrade_setup_fail() {
	not_ok "setup: $*"
	upgrade_summary
	exit 1
}

# Long-lived psql sessions (a connection-bound worker needs its connection
# to stay open; a LISTEN session collects notifications): psql reads a
# FIFO and writes a file.
UPGRADE_SESS_DIR=

# sess_open NAME DB
sess_open() {
	local name=$1 db=$2 fd
	[ -n "$UPGRADE_SESS_DIR" ] || UPGRADE_SESS_DIR=$(mktemp -d /tmp/presence-upgrade-sess.XXXXXX)
	mkfifo "$UPGRADE_SESS_DIR/$name.in"
	psql -XAtq -d "$db" <"$UPGRADE_SESS_DIR/$name.in" >"$UPGRADE_SESS_DIR/$name.out" 2>&1 &
	echo $! >"$UPGRADE_SESS_DIR/$name.pid"
	exec {fd}>"$UPGRADE_SESS_DIR/$name.in"
	printf -v "UPGRADE_SESS_FD_$name" %s "$fd"
}

# sess_run NAME SQL: runs SQL (one or more statements) in the session and
# prints what psql printed for it (notifications included).  Times out
# after 30 s.
sess_run() {
	local name=$1 sql=$2 fdvar=UPGRADE_SESS_FD_$1 out n i
	out=$UPGRADE_SESS_DIR/$name.out
	# The count lives in a file: a call inside $(...) runs in a subshell,
	# where a variable's increment would be lost and the next call would
	# wait for (and return) an earlier call's marker.
	n=$(($(cat "$UPGRADE_SESS_DIR/calls" 2>/dev/null || echo 0) + 1))
	echo "$n" >"$UPGRADE_SESS_DIR/calls"
	printf '%s\n\\echo __sess_done_%d\n' "$sql" "$n" >&"${!fdvar}"
	for ((i = 0; i < 300; i++)); do
		grep -qx "__sess_done_$n" "$out" && break
		sleep 0.1
	done
	awk -v n="$n" '
		/^__sess_done_[0-9]+$/ { if ($0 == "__sess_done_" n) exit; buf = ""; started = 1; next }
		{ buf = buf $0 "\n" }
		END { printf "%s", buf }' "$out"
}

# sess_close NAME: ends the session (psql exits at end of input).
sess_close() {
	local name=$1 fdvar=UPGRADE_SESS_FD_$1 pid
	[ -n "${!fdvar:-}" ] || return 0
	eval "exec ${!fdvar}>&-"
	printf -v "UPGRADE_SESS_FD_$name" %s ""
	pid=$(cat "$UPGRADE_SESS_DIR/$name.pid")
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}

sess_cleanup() {
	local f
	[ -n "$UPGRADE_SESS_DIR" ] || return 0
	for f in "$UPGRADE_SESS_DIR"/*.pid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	rm -rf "$UPGRADE_SESS_DIR"
}

# The SQL suites' own results, counted test by test (as test/run_all.sh
# counts them).
# add_regress_counts SUITE LOG RC: pg_regress / pg_isolation_regress.
add_regress_counts() {
	local suite=$1 log=$2 rc=$3 n m
	if n=$(grep -oE 'All [0-9]+ tests passed' "$log" | tail -n 1 | grep -oE '[0-9]+'); then
		UPGRADE_PASSED=$((UPGRADE_PASSED + n))
		echo "ok - $suite: all $n tests passed"
	elif read -r m n < <(grep -oE '[0-9]+ of [0-9]+ tests failed' "$log" | tail -n 1 | grep -oE '[0-9]+' | xargs); then
		UPGRADE_PASSED=$((UPGRADE_PASSED + n - m))
		UPGRADE_FAILED=$((UPGRADE_FAILED + m))
		echo "not ok - $suite: $m of $n tests failed"
		grep -E 'FAILED|failed \(' "$log" | sed 's/^/#   /' | head -n 20
	else
		not_ok "$suite: no result (rc $rc)"
		tail -n 20 "$log" | sed 's/^/#   /'
	fi
}

# add_pgtap_counts SUITE LOG RC: pg_prove's summary.
add_pgtap_counts() {
	local suite=$1 log=$2 rc=$3 tests failed
	tests=$(grep -oE 'Tests=[0-9]+' "$log" | grep -oE '[0-9]+' || echo 0)
	failed=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$log" | awk '{split($2,a,"/"); s+=a[1]} END {print s+0}')
	((rc != 0 && failed == 0)) && failed=1
	UPGRADE_PASSED=$((UPGRADE_PASSED + tests - failed))
	UPGRADE_FAILED=$((UPGRADE_FAILED + failed))
	if ((failed == 0)); then
		echo "ok - $suite: $tests assertions passed"
	else
		echo "not ok - $suite: $failed of $tests failed"
		tail -n 30 "$log" | sed 's/^/#   /'
	fi
}

# The extension as a catalog sees it, one line per member object: what it
# is, and for functions their definition and privileges, for tables their
# privileges, columns, constraints and indexes.  A NULL ACL is shown as
# the default it means (pg_upgrade leaves NULL where CREATE EXTENSION left
# the default spelled out).  Two databases whose
# extension was installed differently (1.0 then UPDATE, or CREATE at 1.1,
# or restored) compare equal when this output does.
PRESENCE_MEMBERS_SQL="
SELECT pg_describe_object(d.classid, d.objid, 0) || ' | ' ||
       coalesce((SELECT concat_ws(' | ', p.provolatile, p.prosecdef,
                                  p.proparallel, p.probin, p.prosrc,
                                  (SELECT string_agg(coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC') || ':' || a.privilege_type, ',' ORDER BY a.grantee, a.privilege_type) FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a), pg_get_function_arguments(p.oid),
                                  pg_get_function_result(p.oid))
                   FROM pg_proc p
                  WHERE d.classid = 'pg_proc'::regclass AND p.oid = d.objid),
                (SELECT concat_ws(' | ', c.relkind, (SELECT string_agg(coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC') || ':' || a.privilege_type, ',' ORDER BY a.grantee, a.privilege_type) FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a),
                         (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                            || ' ' || a.attnotnull
                                            || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
                                            ', ' ORDER BY a.attnum)
                            FROM pg_attribute a
                            LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                         (SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid), ', ' ORDER BY co.conname)
                            FROM pg_constraint co WHERE co.conrelid = c.oid),
                         (SELECT string_agg(pg_get_indexdef(i.indexrelid), ', ' ORDER BY pg_get_indexdef(i.indexrelid))
                            FROM pg_index i WHERE i.indrelid = c.oid))
                   FROM pg_class c
                  WHERE d.classid = 'pg_class'::regclass AND c.oid = d.objid),
                '')
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND e.extname = 'presence'
 ORDER BY 1"

# presence_tables_dump DB [ENTRY_COLUMNS]: every row of the three tables, in
# key order (of tep_presence, the columns given, all by default; of
# tep_presence_worker, the columns UPGRADE_WORKER_COLUMNS names, all by
# default; of presence_topic_seq, 1.0's: topic and seq).
presence_tables_dump() {
	q -d "$1" -c "SELECT 'entry', ${2:-t.*} FROM tep_presence t ORDER BY topic, worker_id, fd" \
		-c "SELECT 'worker', ${UPGRADE_WORKER_COLUMNS:-w.*} FROM tep_presence_worker w ORDER BY worker_id" \
		-c "SELECT 'seq', s.topic, s.seq FROM presence_topic_seq s ORDER BY topic"
}

# cluster_restart_with DIR [postgresql.conf line ...]: appends the lines
# (later lines win) and restarts.  With UPGRADE_CONF_DROP=REGEX, the lines
# matching it are removed first.
cluster_restart_with() {
	local dir=$1 line
	shift
	[ -z "${UPGRADE_CONF_DROP:-}" ] || sed -i -E "/${UPGRADE_CONF_DROP}/d" "$dir/data/postgresql.conf"
	for line in "$@"; do echo "$line"; done >>"$dir/data/postgresql.conf"
	_as_postgres "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
		-m fast -w -t 60 restart >/dev/null
}
