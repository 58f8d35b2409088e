#!/usr/bin/env bash
# bench/shards.sh -- presence over PL/Proxy: the write path (track ->
# set_status -> untrack, bench/pgbench/write_ext.sql) straight on one
# server, through presence_proxy over 1 shard, and over 3 shards
# (docs/scaling.md, BENCHMARKS.md "Shards").  As root, in isolation:
#
#   bash test/isolated.sh bash bench/shards.sh
#
# Builds and installs the extension, starts a proxy cluster (port 55470)
# and three shard clusters (55471-55473) on this machine, runs each side
# for BENCH_SECONDS (10) per round, BENCH_ROUNDS (3) rounds, sides
# alternating, at each of BENCH_SHARD_CLIENTS ("2 8") pgbench clients (the
# side "routed": the clients spread over the shards, each calling its
# shard straight, for the topics the proxy's partition map puts there), and
# writes bench/out/shards.tsv and bench/out/shards.md.  Every cluster here
# shares this machine's cores: see docs/scaling.md for what that shows.
set -eu -o pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_SHARD_CLIENTS:-"2 8"}
DIR=/tmp/presence-bench-shards

cd "$ROOT"
. test/shards/lib.sh
shards_has_plproxy || { echo "bench/shards.sh: no PL/Proxy for PostgreSQL $PRESENCE_PG_MAJOR" >&2; exit 1; }
make -s >/dev/null && make -s install >/dev/null
mkdir -p "$OUT/shards"
trap shards_stop EXIT
shards_start "$DIR" 55470 3 "synchronous_commit = off" "presence.worker_ttl = 3600" \
	"shared_buffers = 256MB" "max_wal_size = 4GB" >/dev/null
# proxy1: one partition, shard 0; proxy3: three, one per shard.
shards_proxy_db proxy1 presence modular 1 >/dev/null
shards_proxy_db proxy3 presence >/dev/null
PROXY_SOCK=$DIR/proxy/sock

# The CPU time of a cluster so far, in clock ticks: its postmaster's own
# and reaped children's (the benchmark's backends, once they have exited)
# plus its live children's.
cluster_ticks() {
	local pm pid t=0
	pm=$(head -n 1 "$1/data/postmaster.pid")
	for pid in $pm $(ps -o pid= --ppid "$pm"); do
		[ -r "/proc/$pid/stat" ] || continue
		t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
		[ "$pid" = "$pm" ] && t=$((t + $(awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$pid/stat")))
	done
	echo "$t"
}
all_ticks() { # proxy shard0 shard1 shard2
	echo "$(cluster_ticks "$DIR/proxy") $(cluster_ticks "$DIR/shard0") $(cluster_ticks "$DIR/shard1") $(cluster_ticks "$DIR/shard2")"
}

# run SIDE CLIENTS ROUND: one pgbench run; a line of shards.tsv.
run() {
	local side=$1 c=$2 r=$3 host port db f tps before after
	case $side in
	direct) host=$(shard_sock 0) port=$(shard_port 0) db=presence ;;
	proxy-1) host=$PROXY_SOCK port=55470 db=proxy1 ;;
	proxy-3) host=$PROXY_SOCK port=55470 db=proxy3 ;;
	esac
	f=$OUT/shards/$side-c$c-r$r.txt
	before=$(all_ticks)
	if [ "$side" = routed ]; then
		tps=$(routed "$c" "$f") || return 1
	else
		PGHOST=$host PGPORT=$port "$PG_BINDIR/pgbench" -n -M prepared -c "$c" -j 2 -T "$SECS" \
			-f "$BENCH/pgbench/write_ext.sql" "$db" >"$f" 2>&1 || { cat "$f" >&2; return 1; }
		tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$f" | head -n 1)
	fi
	after=$(all_ticks)
	# CPU per cycle, us: proxy, and the shards together.
	read -r p0 s0a s1a s2a <<<"$before"
	read -r p1 s0b s1b s2b <<<"$after"
	awk -v side="$side" -v c="$c" -v r="$r" -v tps="$tps" -v secs="$SECS" -v hz="$(getconf CLK_TCK)" \
		-v p=$((p1 - p0)) -v s=$((s0b - s0a + s1b - s1a + s2b - s2a)) \
		-v d0=$((s0b - s0a)) -v d1=$((s1b - s1a)) -v d2=$((s2b - s2a)) \
		'BEGIN { n = tps * secs; printf "%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%d\t%d\t%d\n", side, c, r, tps,
		         p / hz * 1e6 / n, s / hz * 1e6 / n, d0, d1, d2 }'
}

# Client routing (docs/scaling.md, "Routing in the client"): each client
# sends write_ext.sql's cycle straight to one shard, for that shard's
# topics of room:1..1000 as presence_partition_map() places them; the c
# clients are spread over the shards, one pgbench per shard at once.
for i in 0 1 2; do
	topics=$(PGHOST=$PROXY_SOCK PGPORT=55470 psql -AtX -d proxy3 -c "
		SELECT string_agg('room:' || i, ',' ORDER BY i) FROM generate_series(1, 1000) i, presence_partition_map() m
		 WHERE m.shard = $i AND m.shard = CASE m.mapping
		       WHEN 'modulo' THEN abs(presence_topic_hash('room:' || i) % m.partitions)
		       ELSE presence_topic_hash('room:' || i) & (m.partitions - 1) END")
	cat >"$OUT/shards/routed$i.sql" <<EOF
-- write_ext.sql's cycle on the topics of room:1..1000 on shard $i
\\set k random(1, $(echo "$topics" | tr ',' '\n' | wc -l))
\\set fd random(0, 2000000000)
SELECT presence_track(('{$topics}'::text[])[:k], :fd, 'user:' || :client_id, 'human', '', 'bench-w' || :client_id);
SELECT presence_set_status(('{$topics}'::text[])[:k], :fd, 'busy', 'in a meeting', 0, 'bench-w' || :client_id);
SELECT presence_untrack(('{$topics}'::text[])[:k], :fd, 'bench-w' || :client_id);
EOF
done
# routed CLIENTS FILE: the total cycles/s of the shards' pgbench runs.
routed() {
	local c=$1 f=$2 i n pids=()
	for i in 0 1 2; do
		n=$(((c + 2 - i) / 3))
		((n > 0)) || continue
		PGHOST=$(shard_sock $i) PGPORT=$(shard_port $i) "$PG_BINDIR/pgbench" -n -M prepared -c "$n" -j "$n" \
			-T "$SECS" -f "$OUT/shards/routed$i.sql" presence >"$f.$i" 2>&1 &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || { cat "$f".* >&2; return 1; }; done
	cat "$f".* >"$f"
	sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$f".* | awk '{s += $1} END {print s}'
}

printf 'side\tclients\tround\tcycles_s\tproxy_cpu_us\tshards_cpu_us\tticks_shard0\tticks_shard1\tticks_shard2\n' >"$OUT/shards.tsv"
for c in $CLIENTS; do
	for ((r = 1; r <= ROUNDS; r++)); do
		for side in direct proxy-1 proxy-3 routed; do
			run "$side" "$c" "$r" | tee -a "$OUT/shards.tsv"
		done
	done
done

# The table: medians over the rounds.
{
	echo "| clients | side | cycles/s (median) | range | diffs/s | proxy CPU us/cycle | shards' CPU us/cycle | shard CPU split |"
	echo "|---:|---|---:|---:|---:|---:|---:|---|"
	awk -F'\t' 'NR > 1 { k = $2 "\t" $1; v[k] = v[k] " " $4; p[k] = p[k] " " $5; s[k] = s[k] " " $6;
	                     t0[k] += $7; t1[k] += $8; t2[k] += $9; order[k] = NR }
		function med(str,   a, n, i, j, x) { n = split(str, a, " ");
			for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
			return a[int((n + 1) / 2)] }
		function lo(str,   a, n, i, m) { n = split(str, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
		function hi(str,   a, n, i, m) { n = split(str, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
		END { for (k in v) { split(k, kk, "\t"); tot = t0[k] + t1[k] + t2[k];
			split_ = tot ? sprintf("%d/%d/%d %%", 100 * t0[k] / tot, 100 * t1[k] / tot, 100 * t2[k] / tot) : "-";
			printf "%s\t| %s | %s | %d | %d-%d | %d | %s | %s | %s |\n", order[k], kk[1], kk[2], med(v[k]), lo(v[k]), hi(v[k]),
			       3 * med(v[k]), kk[2] == "direct" || kk[2] == "routed" ? "-" : med(p[k]), med(s[k]), split_ } }' "$OUT/shards.tsv" |
		sort -n | cut -f2-
} >"$OUT/shards.md"
echo
cat "$OUT/shards.md"
