#!/usr/bin/env bash
# bench/scale.sh -- issue 23's rows of BENCHMARKS.md: what a single call
# cannot amortise.  Run by bench/run.sh (phase "scale") or alone:
#
#   bash bench/scale.sh
#
# Starts its own cluster (/tmp/presence-bench-scale, port 55436; the
# extension must be installed), and writes bench/out/scale.tsv and
# bench/out/scale.md:
#   track     N entries (N/3 topics, 3 each) by presence_track_many in one
#             call vs one presence_track call (one commit) each
#   snapshot  T topics' snapshots by presence_snapshot_many vs one
#             presence_snapshot call each
#   rows      a topic of R entries: presence_snapshot_rows vs
#             presence_snapshot, time and the backend's peak memory
#   retention U topics used once and emptied: presence_topic_seq rows
#             before and after the background worker's retention pass
#   leave     the NOTIFY lock hold of one commit leaving L entries
#             (presence_worker_stop), and the worst wait of a writer
#             meanwhile
# Knobs: BENCH_SCALE_ENTRIES (30000), BENCH_SCALE_TOPICS (10000),
# BENCH_SCALE_ROOM (100000), BENCH_SCALE_USED (1000000),
# BENCH_SCALE_LEAVE (100000), BENCH_SCALE_ROUNDS (3).
set -eu -o pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out
CLUSTER=/tmp/presence-bench-scale
N=${BENCH_SCALE_ENTRIES:-30000}
T=${BENCH_SCALE_TOPICS:-10000}
R=${BENCH_SCALE_ROOM:-100000}
U=${BENCH_SCALE_USED:-1000000}
L=${BENCH_SCALE_LEAVE:-100000}
ROUNDS=${BENCH_SCALE_ROUNDS:-3}

cd "$ROOT"
. test/lib/cluster.sh
PGBIN=$PG_BINDIR
mkdir -p "$OUT/scale"
trap 'cluster_stop "$CLUSTER"' EXIT
cluster_start "$CLUSTER" 55436 "shared_preload_libraries = 'presence'" \
	"synchronous_commit = off" "shared_buffers = 256MB" "max_wal_size = 4GB" \
	"work_mem = 4MB" "presence.worker_ttl = 3600" \
	"presence.topic_retention = '1s'" "presence.sweep_interval = 200"
PSQL=(psql -qAtX -v ON_ERROR_STOP=1)
"${PSQL[@]}" -c 'CREATE EXTENSION presence'
: >"$OUT/scale.tsv"
note() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
row() { printf '%s\n' "$*" | tr ' ' '\t' >>"$OUT/scale.tsv"; note "$*"; }
# ms SQL...: the milliseconds of the last statement of one psql session
ms() { "${PSQL[@]}" -c '\timing on' "$@" | awk '/^Time: / {t = $2} END {print t}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.1f", a / b; else print "nan"}'; }
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
clear_worker() { "${PSQL[@]}" -c "SELECT presence_worker_stop('$1')" >/dev/null; }

# --- track: one call of N entries vs N calls -----------------------------------
ENTRIES=$OUT/scale/entries.json
"${PSQL[@]}" -c "SELECT jsonb_agg(jsonb_build_object('topic', 'room:' || i % $T, 'fd', i,
	'principal_id', 'user:' || i)) FROM generate_series(1, $N) i" >"$ENTRIES"
cat >"$OUT/scale/track_one.sql" <<EOF
\set fd random(1, 2000000000)
SELECT presence_track('room:' || (:fd % $T), :fd, 'user:' || :fd, 'human', '', 'bench-one');
EOF
# The entries go as a literal, parsed by the call, as a client sends them.
cat >"$OUT/scale/track_many.sql" <<EOF
SELECT presence_worker_start('bench-many', '1 hour');
\\set j \`cat $ENTRIES\`
\\timing on
SELECT presence_track_many(:'j', 'bench-many');
EOF
for ((r = 1; r <= ROUNDS; r++)); do
	many=$(ms -f "$OUT/scale/track_many.sql")
	clear_worker bench-many
	"${PSQL[@]}" -c "SELECT presence_worker_start('bench-one', '1 hour')" >/dev/null
	one=$("$PGBIN/pgbench" -n -M prepared -c 1 -t "$N" -f "$OUT/scale/track_one.sql" 2>&1 |
		awk '/^tps = / {print $3}')
	clear_worker bench-one
	row track "$r" many_ms "$many" many_per_s "$(awk -v n="$N" -v t="$many" 'BEGIN {printf "%.0f", n / t * 1000}')" one_per_s "$one"
done

# --- snapshot: T topics in one call vs T calls -------------------------------------
"${PSQL[@]}" -f "$OUT/scale/track_many.sql" >/dev/null
cat >"$OUT/scale/snapshot_one.sql" <<EOF
\set t random(0, $((T - 1)))
SELECT presence_snapshot('room:' || :t);
EOF
for ((r = 1; r <= ROUNDS; r++)); do
	many=$(ms -c "SELECT count(*) FROM presence_snapshot_many(ARRAY(SELECT 'room:' || i FROM generate_series(0, $((T - 1))) i))")
	one=$("$PGBIN/pgbench" -n -M prepared -c 1 -t "$T" -f "$OUT/scale/snapshot_one.sql" 2>&1 |
		awk '/^tps = / {print $3}')
	row snapshot "$r" many_ms "$many" many_per_s "$(awk -v n="$T" -v t="$many" 'BEGIN {printf "%.0f", n / t * 1000}')" one_per_s "$one"
done
clear_worker bench-many

# --- rows: a room of R entries, as one value and as rows -----------------------------
# peak_kb SQL: the backend's peak resident memory less the shared memory it
# touched, in kB, after SQL, in a fresh session; and the SQL's ms.
peak_kb() {
	cat >"$OUT/scale/peak.sql" <<EOF
SELECT pg_backend_pid() AS pid \\gset
\\setenv BACKEND :pid
\\timing on
$1;
\\timing off
\\! awk '/VmHWM/ {h = \$2} /RssShmem/ {s = \$2} END {print "peak_kb", h - s}' /proc/\$BACKEND/status
EOF
	"${PSQL[@]}" -f "$OUT/scale/peak.sql" | awk '/^Time: / {t = $2} /^peak_kb/ {p = $2} END {print p, t}'
}
for size in $((R / 10)) "$R"; do
	"${PSQL[@]}" -c "SELECT presence_worker_start('bench-room', '1 hour')" \
		-c "SELECT presence_track_many((SELECT jsonb_agg(jsonb_build_object('topic', 'room:big', 'fd', i,
			'principal_id', 'user:' || i, 'meta', jsonb_build_object('name', 'User ' || i))) FROM generate_series(1, $size) i), 'bench-room')" >/dev/null
	for ((r = 1; r <= ROUNDS; r++)); do
		read -r kb t < <(peak_kb "SELECT length(presence_snapshot('room:big')::text)")
		row rows "$r" entries "$size" form value peak_kb "$kb" ms "$t"
		read -r kb t < <(peak_kb "SELECT count(*), sum(length(entry::text)) FROM presence_snapshot_rows('room:big')")
		row rows "$r" entries "$size" form rows peak_kb "$kb" ms "$t"
	done
	clear_worker bench-room
done

# --- leave: the lock hold of one commit leaving L entries ------------------------------
# A writer cycles on another topic meanwhile (pgbench -l); its worst
# latency while the leave commits is its wait.
cat >"$OUT/scale/writer.sql" <<'EOF'
\set fd random(1, 2000000000)
SELECT presence_track('other-room', :fd, 'user-w', 'human', '', 'bench-writer');
EOF
"${PSQL[@]}" -c "SELECT presence_worker_start('bench-writer', '1 hour')" >/dev/null
for ((r = 1; r <= ROUNDS; r++)); do
	"${PSQL[@]}" -c "SELECT presence_worker_start('bench-leave', '1 hour')" \
		-c "SELECT presence_track_many((SELECT jsonb_agg(jsonb_build_object('topic', 'room:' || i % 100, 'fd', i,
			'principal_id', 'user:' || i)) FROM generate_series(1, $L) i), 'bench-leave')" >/dev/null
	rm -f "$OUT/scale/writer-log".*
	# The statement leaves the entries; a writer then starts, and the COMMIT
	# sequences and queues the diffs: the writer's worst latency is its wait.
	cat >"$OUT/scale/leave.sql" <<EOF
BEGIN;
SELECT presence_worker_stop('bench-leave');
\\! "$PGBIN/pgbench" -n -M prepared -c 1 -T 4 -l --log-prefix="$OUT/scale/writer-log" -f "$OUT/scale/writer.sql" >/dev/null 2>&1 &
SELECT pg_sleep(1);
\\timing on
COMMIT;
EOF
	commit=$("${PSQL[@]}" -f "$OUT/scale/leave.sql" | awk '/^Time: / {t = $2} END {print t}')
	sleep 4
	worst=$(cat "$OUT/scale/writer-log".* | awk '{if ($3 > m) m = $3} END {printf "%.1f", m / 1000}')
	row leave "$r" entries "$L" commit_ms "$commit" writer_worst_ms "$worst"
	"${PSQL[@]}" -c "SELECT pg_notification_queue_usage()" >/dev/null
done
clear_worker bench-writer

# --- retention: U topics used once and emptied -----------------------------------------
"${PSQL[@]}" -c "SELECT presence_worker_start('bench-used', '1 hour')" >/dev/null
for ((k = 0; k < U; k += 100000)); do
	"${PSQL[@]}" -c "SELECT presence_track_many((SELECT jsonb_agg(jsonb_build_object('topic', 'doc:' || i, 'fd', i,
		'principal_id', 'user:' || i)) FROM generate_series($k, $((k + 99999 < U - 1 ? k + 99999 : U - 1))) i), 'bench-used')" \
		-c "SELECT presence_worker_stop('bench-used')" >/dev/null
done
before=$("${PSQL[@]}" -c "SELECT count(*) FROM presence_topic_seq")
start=$(date +%s.%N)
for _ in $(seq 600); do
	left=$("${PSQL[@]}" -c "SELECT count(*) FROM presence_topic_seq WHERE topic LIKE 'doc:%'")
	[ "$left" = 0 ] && break
	sleep 0.5
done
row retention 1 used "$U" rows_before "$before" rows_after "$left" \
	seconds "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')" \
	live_rows "$("${PSQL[@]}" -c "SELECT count(DISTINCT topic) FROM tep_presence")"

# --- summary ----------------------------------------------------------------------------
col() { awk -F'\t' -v w="$1" -v k="$2" '$1 == w {for (i = 3; i < NF; i += 2) if ($i == k) print $(i + 1)}' "$OUT/scale.tsv"; }
{
	echo "### Scale (issue 23): one run, $ROUNDS rounds, medians"
	echo
	echo "| what | one call | one call each | ratio |"
	echo "|---|---:|---:|---:|"
	m=$(col track many_per_s | median) o=$(col track one_per_s | median)
	echo "| $N entries tracked, entries/s ($(col track many_ms | median) ms in one call) | $m | $o | $(ratio "$m" "$o") |"
	m=$(col snapshot many_per_s | median) o=$(col snapshot one_per_s | median)
	echo "| $T topics' snapshots, topics/s ($(col snapshot many_ms | median) ms in one call) | $m | $o | $(ratio "$m" "$o") |"
	echo
	echo "| room | form | ms | backend peak memory less shared, kB |"
	echo "|---:|---|---:|---:|"
	awk -F'\t' '$1 == "rows" {print $4 "\t" $6 "\t" $10 "\t" $8}' "$OUT/scale.tsv" | sort -k1,1n -k2,2 |
		awk -F'\t' '{k = $1 FS $2; ms[k] = ms[k] " " $3; kb[k] = kb[k] " " $4; if (!(k in seen)) {seen[k] = 1; order[++n] = k}}
			END {for (i = 1; i <= n; i++) {split(order[i], p, FS); print "| " p[1] " | " p[2] " |" ms[order[i]] " |" kb[order[i]] " |"}}'
	echo
	echo "| leave of $L entries | commit (lock hold), ms | a writer's worst latency meanwhile, ms |"
	echo "|---|---:|---:|"
	echo "| median | $(col leave commit_ms | median) | $(col leave writer_worst_ms | median) |"
	echo
	echo "retention: $U topics used once and emptied: presence_topic_seq rows $(col retention rows_before) before, $(col retention rows_after) of them left after $(col retention seconds) s (presence.topic_retention = 1s); live topics: $(col retention live_rows)."
	echo
} >"$OUT/scale.md"
cat "$OUT/scale.md"
