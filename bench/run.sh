#!/usr/bin/env bash
# bench/run.sh -- the presence benchmark suite, one command, from a clean
# clone, as root (see BENCHMARKS.md for what it measures and one run's
# figures).
#
#   bash bench/run.sh
#
# Installs the Debian packages it needs (idempotent), builds and installs
# the extension, builds bench/listener, starts its own throwaway cluster
# (/tmp/presence-bench, port 55435), runs every benchmark, prints the
# figures and stops the cluster on exit.  Raw results go to bench/out/:
# write.tsv, reads.tsv, sweep.tsv, prune.tsv, history-stmt.tsv, delivery-*.txt, plans-*.txt,
# the pgbench outputs, results.md (the tables of BENCHMARKS.md) and
# summary.txt.  About 25 minutes with the defaults.
#
# Knobs (environment): BENCH_SECONDS (10, per pgbench write run),
# BENCH_ROUNDS (5, main write comparison), BENCH_EXTRA_ROUNDS (3, growth,
# listener and diagnostic phases), BENCH_READ_SECONDS (4),
# BENCH_DELIVERY_SECONDS (15), BENCH_DELIVERY_RATE (1000 diffs/s),
# BENCH_PROFILE (1: a perf profile of the extension's write path when perf
# works here; 0: skip), BENCH_FANOUT_SECONDS (5), BENCH_FANOUT_LISTENERS
# ("1 4 16 64"), BENCH_PHASES (default "write growth listen diag fanout
# delivery reads bgworker history profile scale"; scale is bench/scale.sh,
# on its own cluster, with its BENCH_SCALE_* knobs).
set -eu -o pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out
CLUSTER=${BENCH_CLUSTER:-/tmp/presence-bench}
PORT=${BENCH_PORT:-55435}
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-5}
XROUNDS=${BENCH_EXTRA_ROUNDS:-3}
READ_SECS=${BENCH_READ_SECONDS:-4}
DELIVERY_SECS=${BENCH_DELIVERY_SECONDS:-15}
DELIVERY_RATE=${BENCH_DELIVERY_RATE:-1000}
PROFILE=${BENCH_PROFILE:-1}
PHASES=${BENCH_PHASES:-"write growth listen diag fanout delivery reads bgworker history profile scale"}
FANOUT_SECS=${BENCH_FANOUT_SECONDS:-5}
FANOUT_NS=${BENCH_FANOUT_LISTENERS:-"1 4 16 64"}
DB=presence_bench

CONF=(
	"shared_preload_libraries = 'presence'"
	# The background worker serves the default database, where the
	# extension is not installed, so it idles: the benchmarks run in
	# presence_bench and time sweeping and pruning themselves.
	"presence.database = 'postgres'"
	"presence.worker_ttl = 3600"
	"synchronous_commit = off"
	"shared_buffers = 1GB"
	"max_wal_size = 8GB"
	"checkpoint_timeout = 30min"
)

cd "$ROOT"
. test/lib/deps.sh
. test/lib/cluster.sh
PGBIN=$PG_BINDIR

started_at=$(date +%s)
note() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }

# --- 1. packages, build, listener ------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT/write" "$OUT/reads" "$OUT/delivery"
note "packages"
ensure_packages make gcc "postgresql-$PRESENCE_PG_MAJOR" \
	"postgresql-server-dev-$PRESENCE_PG_MAJOR" libpq-dev
note "building and installing the extension"
{ make -C "$ROOT" && make -C "$ROOT" install; } >"$OUT/build.log" 2>&1 || {
	tail -n 40 "$OUT/build.log" >&2
	echo "bench: the extension did not build; see $OUT/build.log" >&2
	exit 1
}
cc -O2 -Wall -I"$("$PG_CONFIG" --includedir)" -o "$OUT/listener" \
	"$BENCH/listener.c" -L"$("$PG_CONFIG" --libdir)" -lpq

# --- 2. cluster -------------------------------------------------------------
LISTENER_PIDS=()
cleanup() {
	local pid
	for pid in "${LISTENER_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	[ -n "${PERF_PID:-}" ] && kill "$PERF_PID" 2>/dev/null || true
	cluster_stop "$CLUSTER"
}
trap cleanup EXIT
note "starting the cluster in $CLUSTER (port $PORT)"
cluster_start "$CLUSTER" "$PORT" "${CONF[@]}"
export PGDATABASE=$DB
psql -qX -d postgres -c "CREATE DATABASE $DB"
PSQL=(psql -qX -v ON_ERROR_STOP=1)
"${PSQL[@]}" -c 'CREATE EXTENSION presence'
"${PSQL[@]}" -f "$BENCH/plpgsql_reference.sql" 2>/dev/null
"${PSQL[@]}" -f "$BENCH/floor.sql" 2>/dev/null
"${PSQL[@]}" -f "$BENCH/plpgsql_minimal.sql" 2>/dev/null
"${PSQL[@]}" -f "$BENCH/sql/copy_shapes.sql"
sh "$BENCH/sql/ref_plain.sh" | "${PSQL[@]}"
"${PSQL[@]}" -f "$BENCH/sql/write_setup.sql" >/dev/null

# The reference and the floor must write tables shaped like the
# extension's: same columns, constraints and indexes.
shape() {
	psql -AtX -c "
	SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) ||
	       CASE WHEN attnotnull THEN ' not null' ELSE '' END ||
	       coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
	  FROM pg_attribute a LEFT JOIN pg_attrdef d
	    ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	 WHERE a.attrelid = '$1'::regclass AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT 'constraint ' || pg_get_constraintdef(oid)
	  FROM pg_constraint WHERE conrelid = '$1'::regclass
	UNION ALL
	SELECT 'index ' || regexp_replace(pg_get_indexdef(indexrelid),
	                                  '^.* USING ', '')
	  FROM pg_index WHERE indrelid = '$1'::regclass
	ORDER BY 1"
}
SHAPE_NOTE="identical"
for copy in ref.tep_presence floor.tep_presence ref.tep_presence_worker \
	ref.presence_topic_seq floor.presence_topic_seq; do
	if ! diff <(shape "public.${copy#*.}") <(shape $copy) >"$OUT/shape-$copy.diff"; then
		SHAPE_NOTE="DIFFERENT (see bench/out/shape-*.diff)"
		note "warning: $copy is not shaped like public.${copy#*.}"
	fi
done

# --- 3. the machine -----------------------------------------------------------
PGVERSION=$(psql -AtX -c 'SHOW server_version')
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$ROOT" diff --quiet HEAD -- src presence--1.0.sql 2>/dev/null || echo ' (with uncommitted changes to src)')"
	echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
	echo "kernel: $(uname -r)"
	echo "postgresql: $PGVERSION"
	echo "settings: fsync = off (test/lib/cluster.sh); $(printf "%s; " "${CONF[@]}")"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"

# --- helpers ------------------------------------------------------------------
script_of() {
	case $1 in
	ext | ext+listener) echo write_ext.sql ;;
	ref | ref+listener) echo write_ref.sql ;;
	floor) echo write_floor.sql ;;
	floor+notify) echo write_floor_notify.sql ;;
	minimal) echo write_minimal.sql ;;
	floor-nc) echo write_floor_nocheck.sql ;;
	floor-nc+notify) echo write_floor_nocheck_notify.sql ;;
	sql) echo write_sql.sql ;;
	ref-plain) echo write_ref_plain.sql ;;
	esac
}

vacuum_all() {
	"${PSQL[@]}" -c 'VACUUM tep_presence, tep_presence_worker, presence_topic_seq,
		ref.tep_presence, ref.tep_presence_worker, ref.presence_topic_seq,
		floor.tep_presence, floor.presence_topic_seq, minimal.tep_presence,
		floor_nc.tep_presence' -c CHECKPOINT
}

# server_cpu_ticks: CPU time used so far by the whole server, in clock
# ticks: the postmaster's own and its reaped children's (backends that
# have exited), plus that of its live children.  Differences of it give
# the server's CPU per cycle, which other load on the machine disturbs far
# less than throughput.
server_cpu_ticks() {
	local pm
	pm=$(head -n 1 "$CLUSTER/data/postmaster.pid")
	{
		sed 's/^.*) //' "/proc/$pm/stat" | awk '{print $12 + $13 + $14 + $15}'
		for pid in $(ps --ppid "$pm" -o pid=); do
			sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}'
		done
	} | awk '{s += $1} END {print s}'
}
CLK_TCK=$(getconf CLK_TCK)

# pgb NAME SCRIPT CLIENTS SECONDS [pgbench args...]: "tps cpu_us_per_txn"
pgb() {
	local name=$1 script=$2 c=$3 t=$4 f cpu0 cpu1
	shift 4
	f=$OUT/write/$name.txt
	cpu0=$(server_cpu_ticks)
	if ! "$PGBIN/pgbench" -n -M prepared -c "$c" -j "$c" -T "$t" "$@" \
		-f "$BENCH/pgbench/$script" >"$f" 2>&1; then
		tail -n 20 "$f" >&2
		echo "bench: pgbench $name failed" >&2
		return 1
	fi
	sleep 0.2 # let the postmaster reap the backends
	cpu1=$(server_cpu_ticks)
	awk -v d=$((cpu1 - cpu0)) -v hz="$CLK_TCK" '
		/actually processed/ {split($NF, a, "/"); n = a[1]}
		/^tps = / {tps = $3}
		END {printf "%s %.1f\n", tps, n ? d * 1e6 / hz / n : 0}' "$f"
}

# start_listener NAME [listener args...]: runs bench/listener in the
# background until stop_listener; its summary goes to NAME.listener.
start_listener() {
	local name=$1
	shift
	rm -f "$OUT/ready"
	"$OUT/listener" -r "$OUT/ready" -i 100000 -d 3600 "$@" \
		>"$OUT/$name.listener" 2>&1 &
	LISTENER_PID=$!
	LISTENER_PIDS+=("$LISTENER_PID")
	for _ in $(seq 100); do
		[ -f "$OUT/ready" ] && return 0
		sleep 0.05
	done
	echo "bench: the listener did not start" >&2
	cat "$OUT/$name.listener" >&2
	return 1
}
stop_listener() {
	sleep 0.5
	kill -TERM "$LISTENER_PID" 2>/dev/null || true
	wait "$LISTENER_PID" || true
}

# kv FILE KEY: a key=value from a listener summary
kv() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

# run_round PHASE ROUND CLIENTS SIDE...: one run of each side, the order
# rotated by the round so no side always goes first.
run_round() {
	local phase=$1 r=$2 c=$3
	shift 3
	local sides=("$@") n=$# i side name tps
	for ((i = 0; i < n; i++)); do
		side=${sides[$(((i + r) % n))]}
		name=$phase-c$c-r$r-$side
		vacuum_all
		if [[ $side == *+listener ]]; then
			start_listener "write/$name"
			read -r tps cpu < <(pgb "$name" "$(script_of "$side")" "$c" "$SECS")
			stop_listener
			local got sent
			got=$(kv "$OUT/write/$name.listener" received)
			sent=$(awk '/actually processed/ {split($NF, a, "/"); print a[1] * 3}' "$OUT/write/$name.txt")
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$r" "$side" "$c" "$sent" "$got" \
				"$(kv "$OUT/write/$name.listener" seq_gaps)" \
				"$(kv "$OUT/write/$name.listener" seq_backwards)" >>"$OUT/listen.tsv"
		else
			read -r tps cpu < <(pgb "$name" "$(script_of "$side")" "$c" "$SECS")
		fi
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$r" "$side" "$c" "$tps" "$cpu" >>"$OUT/write.tsv"
		note "$phase clients=$c round=$r $side: $tps cycles/s, server CPU $cpu us/cycle"
	done
}

# median PHASE SIDE CLIENTS [COLUMN]: median cycles/s (or, with column 6,
# server CPU us per cycle) over the rounds
median() {
	awk -F'\t' -v p="$1" -v s="$2" -v c="$3" -v k="${4:-5}" '$1 == p && $3 == s && $4 == c {print $k}' \
		"$OUT/write.tsv" | sort -g | awk '{v[NR] = $1} END {
			if (NR == 0) print "nan";
			else if (NR % 2) printf "%.0f\n", v[(NR + 1) / 2];
			else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
spread() {
	awk -F'\t' -v p="$1" -v s="$2" -v c="$3" '$1 == p && $3 == s && $4 == c {print $5}' \
		"$OUT/write.tsv" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f-%.0f", lo, hi}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}'; }

: >"$OUT/write.tsv"
: >"$OUT/listen.tsv"
MD=$OUT/results.md
: >"$MD"
: >"$OUT/summary.txt"

# --- 4. write path ----------------------------------------------------------------
if has_phase write; then
	note "write path: warm-up"
	for side in ext minimal ref floor floor-nc floor-nc+notify; do
		pgb "warmup-$side" "$(script_of $side)" 2 3 >/dev/null
	done
	for ((r = 1; r <= ROUNDS; r++)); do
		run_round main "$r" 2 ext minimal ref floor floor-nc floor-nc+notify
	done
fi
if has_phase growth; then
	for c in 1 4 8; do
		for ((r = 1; r <= XROUNDS; r++)); do
			run_round growth "$r" "$c" ext minimal ref floor floor-nc+notify
		done
	done
fi
if has_phase listen; then
	for ((r = 1; r <= XROUNDS; r++)); do
		run_round listen "$r" 2 ext ext+listener ref ref+listener
	done
fi
if has_phase diag; then
	for ((r = 1; r <= XROUNDS; r++)); do
		run_round diag "$r" 2 floor floor+notify sql ref ref-plain
	done
fi

# --- fan-out: N gateway listeners, each interested in 1/N of the topics ---------
# Modes: broadcast (presence.delivery = broadcast, every listener on
# tep_broadcast), topic (presence.delivery = topic, listener i LISTENs the
# channels of room:k for k = i + 1 mod N) and unrelated (broadcast, the
# listeners LISTEN a channel nothing is sent on: the cost of being woken).
# The writers spread over all 1000 topics; 2 clients, sides alternating.
: >"$OUT/fanout.tsv"
fanout_run() {
	local r=$1 mode=$2 n=$3 name i files=() tps cpu got=0 pids=() delivery=broadcast
	name=fanout-r$r-$mode-$n
	[ "$mode" = topic ] && delivery=topic
	psql -qX -d postgres -c "ALTER DATABASE $DB SET presence.delivery = '$delivery'"
	vacuum_all
	mkdir -p "$OUT/fanout"
	for ((i = 0; i < n; i++)); do
		local args=(-C tep_broadcast)
		if [ "$mode" = topic ]; then
			psql -AtX -c "SELECT presence_channel('room:' || k) FROM generate_series(1, 1000) k
			              WHERE (k - 1) % $n = $i" >"$OUT/fanout/$name-$i.channels"
			args=(-F "$OUT/fanout/$name-$i.channels")
		elif [ "$mode" = unrelated ]; then
			args=(-C unrelated)
		fi
		rm -f "$OUT/fanout/$name-$i.ready"
		"$OUT/listener" -r "$OUT/fanout/$name-$i.ready" -i 3600 -d 3600 "${args[@]}" \
			>"$OUT/fanout/$name-$i.out" 2>&1 &
		pids+=($!)
		LISTENER_PIDS+=($!)
	done
	for ((i = 0; i < n; i++)); do
		for _ in $(seq 200); do
			[ -f "$OUT/fanout/$name-$i.ready" ] && break
			sleep 0.05
		done
	done
	read -r tps cpu < <(pgb "$name" write_ext.sql 2 "$FANOUT_SECS")
	sleep 0.5
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	for ((i = 0; i < n; i++)); do
		got=$((got + $(kv "$OUT/fanout/$name-$i.out" received)))
	done
	local sent
	sent=$(awk '/actually processed/ {split($NF, a, "/"); print a[1] * 3}' "$OUT/write/$name.txt")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$mode" "$n" "$tps" "$cpu" "$sent" "$got" >>"$OUT/fanout.tsv"
	note "fanout round=$r $mode listeners=$n: $tps cycles/s, server CPU $cpu us/cycle, $got of $sent diffs delivered"
}
if has_phase fanout; then
	combos=("none 0")
	for n in $FANOUT_NS; do
		for mode in broadcast topic unrelated; do combos+=("$mode $n"); done
	done
	for ((r = 1; r <= XROUNDS; r++)); do
		for ((i = 0; i < ${#combos[@]}; i++)); do
			fanout_run "$r" ${combos[$(((i + r) % ${#combos[@]}))]}
		done
	done
	psql -qX -d postgres -c "ALTER DATABASE $DB RESET presence.delivery"
fi

# --- 5. delivery latency --------------------------------------------------------------
if has_phase delivery; then
	for side in ext ref; do
		note "delivery: $side at $DELIVERY_RATE diffs/s"
		vacuum_all
		start_listener "delivery/$side" -L -o "$OUT/delivery/$side.raw.tsv"
		"$PGBIN/pgbench" -n -M prepared -c 2 -j 2 -R "$DELIVERY_RATE" -T "$DELIVERY_SECS" \
			-f "$BENCH/pgbench/latency_$side.sql" >"$OUT/delivery/$side.pgbench.txt" 2>&1
		stop_listener
		note "delivery $side: $(cat "$OUT/delivery/$side.listener")"
	done
fi

# --- 6. reads, sweep, prune at 100k and 1M rows -------------------------------------------
# Two databases hold the two sizes side by side, so every comparison of
# 100k with 1M alternates between them within the run.
RDB_100k=presence_r100k
RDB_1m=presence_r1m
# read_bench STAGE NAME ROUND: one pgbench client for READ_SECS, logged
read_bench() {
	local stage=$1 name=$2 round=$3 db prefix=$OUT/reads/$1-$2
	db=RDB_$stage
	PGDATABASE=${!db} "$PGBIN/pgbench" -n -M prepared -c 1 -j 1 -T "$READ_SECS" -l \
		--log-prefix="$prefix-r$round" -f "$BENCH/pgbench/read_$name.sql" >"$prefix-r$round.txt" 2>&1
}
# read_stats STAGE NAME: median and p99 latency (us) over all its rounds
read_stats() {
	cat "$OUT/reads/$1-$2"-r?.[0-9]* | awk '{print $3}' | sort -n | awk -v st="$1" -v nm="$2" '
		{v[NR] = $1} END {printf "%s\t%s\t%d\t%d\t%d\n", st, nm, NR, v[int((NR + 1) / 2)], v[int(NR * 0.99)]}' \
		>>"$OUT/reads.tsv"
}
# timed DB SQL: "result milliseconds" of one statement
timed() {
	psql -AtX -v ON_ERROR_STOP=1 -d "$1" -c '\timing on' -c "$2" |
		awk '/^Time: / {ms = $2} /^[0-9]+$/ {rows = $1} END {print rows, ms}'
}
sweep_bench() {
	local stage=$1 fd=$2 db res
	db=RDB_$stage
	"${PSQL[@]}" -d "${!db}" -v fd="$fd" -f "$BENCH/sql/sweep_setup.sql"
	res=$(timed "${!db}" 'SELECT presence_sweep_expired_status()')
	printf '%s\t%s\t%s\n' "$stage" "$fd" "${res// /$'\t'}" >>"$OUT/sweep.tsv"
	note "sweep at $stage: $res (rows ms)"
}
prune_bench() {
	local stage=$1 wid=$2 n=$3 db res
	db=RDB_$stage
	"${PSQL[@]}" -d "${!db}" -v wid="$wid" -v n="$n" -f "$BENCH/sql/prune_setup.sql"
	res=$(timed "${!db}" 'SELECT presence_prune_dead_workers()')
	printf '%s\t%s\t%s\t%s\n' "$stage" "$wid" "$n" "${res// /$'\t'}" >>"$OUT/prune.tsv"
	note "prune at $stage, worker with $n entries: $res (rows ms)"
}
: >"$OUT/reads.tsv"
: >"$OUT/sweep.tsv"
: >"$OUT/prune.tsv"
if has_phase reads; then
	note "reads: loading 100k and 1M rows"
	for stage in 100k 1m; do
		db=RDB_$stage
		psql -qX -d postgres -c "CREATE DATABASE ${!db}"
		"${PSQL[@]}" -d "${!db}" -c 'CREATE EXTENSION presence'
		"${PSQL[@]}" -d "${!db}" -f "$BENCH/sql/reads_load_100k.sql" >"$OUT/reads/load-$stage.txt"
		[ "$stage" = 1m ] &&
			"${PSQL[@]}" -d "${!db}" -f "$BENCH/sql/reads_load_1m.sql" >>"$OUT/reads/load-$stage.txt"
		psql -AtX -d "${!db}" -c "SELECT pg_size_pretty(pg_table_size('tep_presence')) || ' heap, ' ||
			pg_size_pretty(pg_indexes_size('tep_presence')) || ' indexes'" >"$OUT/reads/size-$stage.txt"
	done
	for round in 1 2 3; do
		for name in list_global count_global list_sql count_sql; do
			if ((round % 2)); then order="100k 1m"; else order="1m 100k"; fi
			for stage in $order; do read_bench "$stage" "$name" "$round"; done
		done
	done
	for stage in 100k 1m; do
		for name in list_global count_global list_sql count_sql; do read_stats "$stage" "$name"; done
		db=RDB_$stage
		"${PSQL[@]}" -d "${!db}" -f "$BENCH/sql/plans.sql" >"$OUT/plans-$stage.txt" 2>&1
	done
	note "reads: $(awk -F'\t' '{printf "%s %s %dus; ", $1, $2, $4}' "$OUT/reads.tsv")"
	for fd in 1 2 3; do
		if ((fd % 2)); then order="100k 1m"; else order="1m 100k"; fi
		for stage in $order; do sweep_bench "$stage" "$fd"; done
	done
	prune_bench 100k dead-10k-a 10000
	prune_bench 1m dead-10k-a 10000
	prune_bench 1m dead-10k-b 10000
	prune_bench 100k dead-10k-b 10000
	prune_bench 1m dead-100k 100000
	prune_bench 100k dead-100k 100000
fi

# --- 6b. the background worker's batches ---------------------------------------------------
# The background worker serves the database "postgres": install the
# extension there, give it 100k entries, then 10k expired statuses and a
# dead worker with 100k entries, and watch its diffs arrive.  Each batch
# commits its diffs at once, so the time between the first diffs of two
# consecutive bursts bounds one batch transaction.
# bursts FILE: "diffs bursts span_ms max_interval_ms median_interval_ms"
bursts() {
	local times=$OUT/bgworker/times.tmp
	cut -f1 "$1" | sort -n >"$times"
	awk 'NR == 1 {p = $1; print; next} $1 - p > 3000 {print} {p = $1}' "$times" |
		awk 'NR > 1 {print $1 - p} {p = $1}' | sort -n >"$times.iv"
	printf '%s %s %s %s %s\n' "$(wc -l <"$times")" "$(($(wc -l <"$times.iv") + 1))" \
		"$(awk 'NR == 1 {f = $1} {l = $1} END {printf "%.1f", (l - f) / 1000}' "$times")" \
		"$(awk '{m = $1} END {printf "%.1f", m / 1000}' "$times.iv")" \
		"$(awk '{v[NR] = $1} END {printf "%.1f", NR ? v[int((NR + 1) / 2)] / 1000 : 0}' "$times.iv")"
	rm -f "$times" "$times.iv"
}
: >"$OUT/bgworker.tsv"
if has_phase bgworker; then
	mkdir -p "$OUT/bgworker"
	note "background worker: loading 100k entries into the database it serves"
	BATCH=$(psql -AtX -d postgres -c 'SHOW presence.batch_size')
	"${PSQL[@]}" -d postgres -c 'CREATE EXTENSION presence'
	"${PSQL[@]}" -d postgres -f "$BENCH/sql/reads_load_100k.sql" >/dev/null
	start_listener bgworker/sweep -c dbname=postgres -n 10000 -d 120 -o "$OUT/bgworker/sweep.raw.tsv"
	"${PSQL[@]}" -d postgres -v fd=1 -f "$BENCH/sql/sweep_setup.sql"
	wait "$LISTENER_PID" || true
	printf 'sweep\t10000\t%s\n' "$(bursts "$OUT/bgworker/sweep.raw.tsv" | tr ' ' '\t')" >>"$OUT/bgworker.tsv"
	start_listener bgworker/prune -c dbname=postgres -n 100000 -d 300 -o "$OUT/bgworker/prune.raw.tsv"
	"${PSQL[@]}" -d postgres -v wid=dead-100k -v n=100000 -f "$BENCH/sql/prune_setup.sql"
	wait "$LISTENER_PID" || true
	printf 'prune\t100000\t%s\n' "$(bursts "$OUT/bgworker/prune.raw.tsv" | tr ' ' '\t')" >>"$OUT/bgworker.tsv"
	note "background worker: $(tr '\t\n' ' ;' <"$OUT/bgworker.tsv")"
fi

# --- 6c. what history costs per leave --------------------------------------------------
# The write path's cycle (track, set_status, untrack: one leave each) with
# presence.history off and on, alternating, the history emptied before
# each run; today's partition made first (the worker serves another
# database), so the rows go where they would in production.
if has_phase history; then
	note "history: off vs on"
	PGOPTIONS="-c presence.history=on" "${PSQL[@]}" -c 'SELECT presence_history_maintain()' >/dev/null
	for side in ext ext-history; do
		PGOPTIONS=$([ $side = ext-history ] && echo "-c presence.history=on") \
			pgb "warmup-$side" write_ext.sql 2 3 >/dev/null
	done
	for ((r = 1; r <= ROUNDS; r++)); do
		for side in $( ((r % 2)) && echo "ext ext-history" || echo "ext-history ext"); do
			"${PSQL[@]}" -c 'TRUNCATE presence_history'
			vacuum_all
			read -r tps cpu < <(PGOPTIONS=$([ $side = ext-history ] && echo "-c presence.history=on") \
				pgb "history-r$r-$side" write_ext.sql 2 "$SECS")
			printf '%s\t%s\t%s\t%s\t%s\t%s\n' history "$r" "$side" 2 "$tps" "$cpu" >>"$OUT/write.tsv"
			note "history round=$r $side: $tps cycles/s, server CPU $cpu us/cycle"
		done
	done
	HISTORY_ROWS=$(psql -AtX -c 'SELECT count(*) FROM presence_history')
	# The leave alone, inside one backend: 20000 entries untracked by one
	# statement (its diffs are sent at commit, outside the timing), off and
	# on alternating; the statement's time per entry.
	: >"$OUT/history-stmt.tsv"
	for ((r = 1; r <= ROUNDS; r++)); do
		for h in off on; do
			"${PSQL[@]}" -c "SELECT count(presence_track('room:' || (i % 100), i, 'user:' || i, worker_id => 'bench-h'))
				FROM generate_series(1, 20000) i" >/dev/null
			ms=$(psql -qAtX -c "SET presence.history = $h" -c '\timing on' \
				-c "SELECT count(presence_untrack('room:' || (i % 100), i, 'bench-h')) FROM generate_series(1, 20000) i" |
				awk '/^Time:/ {print $2}')
			printf '%s\t%s\t%s\n' "$r" "$h" "$ms" >>"$OUT/history-stmt.tsv"
			"${PSQL[@]}" -c 'TRUNCATE presence_history' -c 'VACUUM tep_presence, presence_topic_seq'
		done
	done
	note "history: one statement's untrack of 20000 entries, ms: $(tr '\t\n' ' ;' <"$OUT/history-stmt.tsv")"
fi

# --- 7. profile -------------------------------------------------------------------------
PROFILE_NOTE="not run"
if has_phase profile && [ "$PROFILE" = 1 ]; then
	if command -v perf >/dev/null && perf record -e cpu-clock -o "$OUT/perf.probe" -- true >/dev/null 2>&1; then
		note "profile: perf on the backends of a 2-client extension write run"
		# The server runs the presence.so built at the start (preloaded, so
		# inherited by every backend); a later make install elsewhere must
		# not make perf resolve symbols against another build.
		perf buildid-cache -a "$ROOT/presence.so" >/dev/null 2>&1 || true
		vacuum_all
		"$PGBIN/pgbench" -n -M prepared -c 2 -j 2 -T 14 -f "$BENCH/pgbench/write_ext.sql" \
			>"$OUT/profile.pgbench.txt" 2>&1 &
		PGB_PID=$!
		sleep 2
		pids=$(psql -AtX -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'pgbench' AND pid <> pg_backend_pid()")
		perf record -e cpu-clock -F 1999 --call-graph dwarf,16384 -p "$pids" -o "$OUT/perf.data" -- sleep 8 \
			>"$OUT/perf.record.log" 2>&1 || true
		wait "$PGB_PID" || true
		perf script -i "$OUT/perf.data" -F comm,pid,ip,sym 2>/dev/null |
			perl "$BENCH/profile_summary.pl" >"$OUT/profile.txt" || true
		rm -f "$OUT/perf.data" "$OUT/perf.probe"
		PROFILE_NOTE="bench/out/profile.txt"
	else
		PROFILE_NOTE="perf unavailable here"
	fi
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
echo "runtime: $(($(date +%s) - started_at)) s" >>"$OUT/env.txt"

# --- 8. report ----------------------------------------------------------------------------
{
	echo "### Machine"
	echo
	echo '```'
	cat "$OUT/env.txt"
	echo "table shape of ref/floor copies vs the extension's: $SHAPE_NOTE"
	echo '```'
	echo
} >>"$MD"

if grep -q "^main" "$OUT/write.tsv"; then
	e=$(median main ext 2) p=$(median main ref 2) f=$(median main floor 2)
	ec=$(median main ext 2 6) pc=$(median main ref 2 6) fc=$(median main floor 2 6)
	{
		echo "### Write path: track -> set_status -> untrack (2 clients, $ROUNDS rounds x ${SECS} s, sides alternating)"
		echo
		echo "| side | cycles/s (median) | range | diffs/s | server CPU per cycle, us (median) |"
		echo "|---|---:|---:|---:|---:|"
		echo "| extension | $e | $(spread main ext 2) | $((e * 3)) | $ec |"
		m=$(median main minimal 2) nc=$(median main floor-nc 2) nn=$(median main floor-nc+notify 2)
		echo "| minimal PL/pgSQL (DML + json_build_object + pg_notify; no checks, no seq, no CHECK) | $m | $(spread main minimal 2) | $((m * 3)) | $(median main minimal 2 6) |"
		echo "| PL/pgSQL reference (careful, full) | $p | $(spread main ref 2) | $((p * 3)) | $pc |"
		echo "| bare floor (DML only, with the CHECK) | $f | $(spread main floor 2) | - | $fc |"
		echo "| floor without the CHECK | $nc | $(spread main floor-nc 2) | - | $(median main floor-nc 2 6) |"
		echo "| floor without the CHECK + one pg_notify of the diff-sized JSON per statement | $nn | $(spread main floor-nc+notify 2) | $((nn * 3)) | $(median main floor-nc+notify 2 6) |"
		echo
		echo "throughput: extension / minimal PL/pgSQL = **$(ratio "$e" "$m")** (goal >= 1.3); extension / (floor without CHECK + NOTIFY) = **$(ratio "$e" "$nn")** (goal >= 0.9); extension / careful PL/pgSQL = $(ratio "$e" "$p"); extension / floor = $(ratio "$e" "$f"); extension / floor without CHECK = $(ratio "$e" "$nc")"
		echo
		echo "server CPU per cycle: PL/pgSQL / extension = **$(ratio "$pc" "$ec")**; floor / extension = **$(ratio "$fc" "$ec")**"
		echo
	} >>"$MD"
fi
if grep -q "^growth" "$OUT/write.tsv"; then
	{
		echo "### Growth: cycles/s by clients (median; 2 clients from the main comparison)"
		echo
		echo "| clients | extension | minimal PL/pgSQL | PL/pgSQL | floor | floor-nc + NOTIFY | ext/minimal | ext/PL | ext/floor | ext/(floor-nc + NOTIFY) | CPU us/cycle ext | minimal | PL | floor | floor-nc + NOTIFY |"
		echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for c in 1 2 4 8; do
			ph=growth
			[ "$c" = 2 ] && ph=main
			e=$(median $ph ext $c) m=$(median $ph minimal $c) p=$(median $ph ref $c) f=$(median $ph floor $c) nn=$(median $ph floor-nc+notify $c)
			echo "| $c | $e | $m | $p | $f | $nn | $(ratio "$e" "$m") | $(ratio "$e" "$p") | $(ratio "$e" "$f") | $(ratio "$e" "$nn") | $(median $ph ext $c 6) | $(median $ph minimal $c 6) | $(median $ph ref $c 6) | $(median $ph floor $c 6) | $(median $ph floor-nc+notify $c 6) |"
		done
		echo
	} >>"$MD"
fi
if grep -q "^listen" "$OUT/write.tsv"; then
	{
		echo "### A LISTENing connection during the write path (2 clients, median of $XROUNDS)"
		echo
		echo "| side | no listener | one listener | with/without | CPU us/cycle without | with | diffs sent | received | seq gaps | seq backwards |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for s in ext ref; do
			a=$(median listen $s 2) b=$(median listen $s+listener 2)
			ac=$(median listen $s 2 6) bc=$(median listen $s+listener 2 6)
			read -r sent got gaps back < <(awk -F'\t' -v s="$s+listener" '$3 == s {a += $5; b += $6; g += $7; k += $8} END {print a + 0, b + 0, g + 0, k + 0}' "$OUT/listen.tsv")
			echo "| $s | $a | $b | $(ratio "$b" "$a") | $ac | $bc | $sent | $got | $gaps | $back |"
		done
		echo
	} >>"$MD"
fi
if grep -q "^diag" "$OUT/write.tsv"; then
	f=$(median diag floor 2)
	{
		echo "### What NOTIFY and the seq cost: diagnostic sides (2 clients, median of $XROUNDS)"
		echo
		echo "| side | cycles/s | vs floor | server CPU us/cycle |"
		echo "|---|---:|---:|---:|"
		for s in floor floor+notify sql ref ref-plain; do
			v=$(median diag "$s" 2)
			echo "| $s | $v | $(ratio "$v" "$f") | $(median diag "$s" 2 6) |"
		done
		echo
		echo "floor+notify: the floor's DML plus one short pg_notify per statement. sql: entry change + seq upsert + JSON diff + pg_notify as one plain SQL statement per operation. ref-plain: the PL/pgSQL reference without SECURITY DEFINER and SET search_path."
		echo
	} >>"$MD"
fi
if [ -s "$OUT/fanout.tsv" ]; then
	fmed() {
		awk -F'\t' -v m="$1" -v n="$2" -v k="$3" '$2 == m && $3 == n {print $k}' "$OUT/fanout.tsv" |
			sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) printf "%.0f\n", v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
	}
	frange() {
		awk -F'\t' -v m="$1" -v n="$2" '$2 == m && $3 == n {print $4}' "$OUT/fanout.tsv" |
			sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f-%.0f", lo, hi}'
	}
	base=$(fmed none 0 4)
	{
		echo "### Fan-out: N listeners, each interested in 1/N of 1000 topics (extension cycle, 2 clients, ${FANOUT_SECS} s runs, median of $XROUNDS)"
		echo
		echo "| listeners | mode | cycles/s | range | vs no listener | server CPU us/cycle | deliveries per diff |"
		echo "|---:|---|---:|---:|---:|---:|---:|"
		echo "| 0 | - | $base | $(frange none 0) | 1.00 | $(fmed none 0 5) | - |"
		for n in $FANOUT_NS; do
			for mode in broadcast topic unrelated; do
				v=$(fmed "$mode" "$n" 4)
				d=$(awk -F'\t' -v m="$mode" -v n="$n" '$2 == m && $3 == n {s += $6; g += $7} END {if (s > 0) printf "%.2f", g / s; else print "nan"}' "$OUT/fanout.tsv")
				echo "| $n | $mode | $v | $(frange "$mode" "$n") | $(ratio "$v" "$base") | $(fmed "$mode" "$n" 5) | $d |"
			done
		done
		echo
		echo "broadcast: presence.delivery = broadcast, every listener on tep_broadcast. topic: presence.delivery = topic, each listener LISTENs its topics' channels. unrelated: broadcast delivery, the listeners LISTEN a channel nothing is sent on. Deliveries per diff: notifications received by all listeners / diffs sent."
		echo
	} >>"$MD"
fi
if [ -s "$OUT/reads.tsv" ]; then
	{
		echo "### Reads: latency of one call seen by one pgbench client, us (topic t42, 100 entries)"
		echo
		echo "| query | 100k median | 100k p99 | 1M median | 1M p99 | 1M / 100k |"
		echo "|---|---:|---:|---:|---:|---:|"
		for n in list_global count_global list_sql count_sql; do
			a=$(awk -F'\t' -v n=$n '$1 == "100k" && $2 == n {print $4}' "$OUT/reads.tsv")
			a99=$(awk -F'\t' -v n=$n '$1 == "100k" && $2 == n {print $5}' "$OUT/reads.tsv")
			b=$(awk -F'\t' -v n=$n '$1 == "1m" && $2 == n {print $4}' "$OUT/reads.tsv")
			b99=$(awk -F'\t' -v n=$n '$1 == "1m" && $2 == n {print $5}' "$OUT/reads.tsv")
			echo "| $n | $a | $a99 | $b | $b99 | $(ratio "$b" "$a") |"
		done
		echo
		echo "table sizes: 100k: $(cat "$OUT/reads/size-100k.txt"); 1M: $(cat "$OUT/reads/size-1m.txt")"
		echo
	} >>"$MD"
fi
if [ -s "$OUT/sweep.tsv" ]; then
	{
		echo "### Sweep and prune (each call is one transaction)"
		echo
		echo "| what | table rows | rows changed | ms | rows/s |"
		echo "|---|---:|---:|---:|---:|"
		sort -t$'\t' -k1,1 -s "$OUT/sweep.tsv" | awk -F'\t' '{printf "| sweep_expired_status (statuses of fd %s) | %s | %s | %.1f | %.0f |\n", $2, ($1 == "1m" ? "1M" : "100k"), $3, $4, $3 / $4 * 1000}'
		sort -t$'\t' -k1,1 -s "$OUT/prune.tsv" | awk -F'\t' '{printf "| prune_dead_workers (%s) | %s + %s | %s | %.1f | %.0f |\n", $2, ($1 == "1m" ? "1M" : "100k"), $3, $4, $5, $4 / $5 * 1000}'
		echo
	} >>"$MD"
fi
if grep -q "^history" "$OUT/write.tsv"; then
	off=$(median history ext 2) on=$(median history ext-history 2)
	offc=$(median history ext 2 6) onc=$(median history ext-history 2 6)
	{
		echo "### History: the write path with presence.history off and on (2 clients, $ROUNDS rounds x ${SECS} s, alternating)"
		echo
		echo "| presence.history | cycles/s (median) | range | server CPU per cycle, us (median) |"
		echo "|---|---:|---:|---:|"
		echo "| off | $off | $(spread history ext 2) | $offc |"
		echo "| on | $on | $(spread history ext-history 2) | $onc |"
		echo
		echo "on / off throughput = $(ratio "$on" "$off"); each cycle has one leave, so the difference of server CPU per cycle, $((onc - offc)) us, is what a leave's history row costs; the last run left ${HISTORY_ROWS:-?} rows."
		echo
		echo "| presence.history | one statement untracking 20000 entries, ms (median of $ROUNDS) | us per leave |"
		echo "|---|---:|---:|"
		for h in off on; do
			awk -F'\t' -v h=$h '$2 == h {print $3}' "$OUT/history-stmt.tsv" | sort -g |
				awk -v h=$h '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
					printf "| %s | %.0f | %.1f |\n", h, m, m * 1000 / 20000}'
		done
		echo
	} >>"$MD"
fi
if [ -s "$OUT/bgworker.tsv" ]; then
	{
		echo "### The background worker: batches of $BATCH rows, one transaction each (100k-entry table)"
		echo
		echo "| job | diffs | batches seen | first to last commit, ms | rows/s | longest interval between batch commits, ms | median, ms |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
		awk -F'\t' '{printf "| %s | %s | %s | %s | %.0f | %s | %s |\n", $1, $3, $4, $5, ($5 + $7 > 0 ? $3 / ($5 + $7) * 1000 : 0), $6, $7}' "$OUT/bgworker.tsv"
		echo
	} >>"$MD"
fi
if [ -s "$OUT/delivery/ext.listener" ]; then
	{
		echo "### Delivery: statement -> LISTEN client receipt at $DELIVERY_RATE diffs/s for ${DELIVERY_SECS} s, us"
		echo
		echo "| side | diffs received | p50 | p90 | p99 | p99.9 | max | seq gaps |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|"
		for s in ext ref; do
			l=$OUT/delivery/$s.listener
			[ -s "$l" ] || continue
			echo "| $s | $(kv "$l" received) | $(kv "$l" p50_us) | $(kv "$l" p90_us) | $(kv "$l" p99_us) | $(kv "$l" p999_us) | $(kv "$l" max_us) | $(kv "$l" seq_gaps) |"
		done
		echo
	} >>"$MD"
fi
if has_phase scale; then
	note "scale: bench/scale.sh (its own cluster)"
	if bash "$BENCH/scale.sh" >"$OUT/scale.log" 2>&1; then
		cat "$OUT/scale.md" >>"$MD"
	else
		tail -n 20 "$OUT/scale.log" >&2
		echo "bench: bench/scale.sh failed; see $OUT/scale.log" >&2
	fi
fi
echo "profile: $PROFILE_NOTE" >>"$MD"

cat "$MD" | tee -a "$OUT/summary.txt"
note "done in $(($(date +%s) - started_at)) s; raw results in $OUT"
