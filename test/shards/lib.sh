# Shard clusters for the shard suite, the e2e test's shard mode and the
# shard benchmark (docs/scaling.md): N shard clusters with presence
# preloaded and one proxy cluster with PL/Proxy and presence_proxy.
#
#   . test/shards/lib.sh
#   shards_start DIR BASEPORT NSHARDS    # proxy on BASEPORT, shards after
#   shards_proxy_db NAME SHARD_DB [bitmask]  # a proxy database over them
#   shards_stop
#
# Each shard serves database "presence" (its background worker's
# presence.database) and has database "api", which no background worker
# touches (the API comparison's deterministic counts).  Partitions map one
# to a shard, with modular_mapping (PL/Proxy's bitmask needs a power of
# two; three servers are not one) unless bitmask is asked for.

. "$(dirname "${BASH_SOURCE[0]}")/../lib/cluster.sh"

SHARDS_DIR= SHARDS_PROXY_PORT= SHARDS_N=0

# shards_has_plproxy: PL/Proxy is installed for this major.
shards_has_plproxy() {
	[ -f "$("$PG_CONFIG" --sharedir)/extension/plproxy.control" ]
}

# shard_port I, shard_dir I: shard I's (0-based) port and cluster directory.
shard_port() { echo $((SHARDS_PROXY_PORT + 1 + $1)); }
shard_dir() { echo "$SHARDS_DIR/shard$1"; }
shard_sock() { echo "$(shard_dir "$1")/sock"; }

# shard_connstr I DB: the libpq string the proxy reaches shard I with.
shard_connstr() { echo "host=$(shard_sock "$1") port=$(shard_port "$1") dbname=$2"; }

# shards_start DIR BASEPORT NSHARDS [postgresql.conf line...] (for shards)
shards_start() {
	SHARDS_DIR=$1 SHARDS_PROXY_PORT=$2 SHARDS_N=$3
	shift 3
	local i
	for ((i = 0; i < SHARDS_N; i++)); do
		cluster_start "$(shard_dir $i)" "$(shard_port $i)" \
			"shared_preload_libraries = 'presence'" \
			"presence.database = 'presence'" \
			"presence.sweep_interval = '200ms'" \
			"restart_after_crash = on" "$@" || return 1
		psql -Xq -v ON_ERROR_STOP=1 -d postgres \
			-c 'CREATE DATABASE presence' -c 'CREATE DATABASE api' || return 1
		psql -Xq -v ON_ERROR_STOP=1 -d presence -c 'CREATE EXTENSION presence' || return 1
		psql -Xq -v ON_ERROR_STOP=1 -d api -c 'CREATE EXTENSION presence' || return 1
	done
	cluster_start "$SHARDS_DIR/proxy" "$SHARDS_PROXY_PORT" || return 1
}

# shards_proxy_db NAME SHARD_DB [bitmask [NPARTS]]: a proxy database NAME
# whose partitions are database SHARD_DB of the shards, one each (bitmask:
# the first NPARTS shards, a power of two, without modular_mapping).
shards_proxy_db() {
	local name=$1 db=$2 mode=${3:-modular} n=${4:-$SHARDS_N} i opts
	opts=()
	[ "$mode" = modular ] && opts+=("modular_mapping '1'")
	for ((i = 0; i < n; i++)); do
		opts+=("partition_$i '$(shard_connstr $i "$db")'")
	done
	local IFS=,
	PGHOST=$SHARDS_DIR/proxy/sock PGPORT=$SHARDS_PROXY_PORT \
		psql -Xq -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $name" &&
	PGHOST=$SHARDS_DIR/proxy/sock PGPORT=$SHARDS_PROXY_PORT \
		psql -Xq -v ON_ERROR_STOP=1 -d "$name" \
		-c 'CREATE EXTENSION presence_proxy CASCADE' \
		-c "CREATE SERVER presence FOREIGN DATA WRAPPER plproxy OPTIONS (${opts[*]})" \
		-c 'CREATE USER MAPPING FOR PUBLIC SERVER presence'
}

# shards_stop: every cluster shards_start started.
shards_stop() {
	local i
	[ -n "$SHARDS_DIR" ] || return 0
	cluster_stop "$SHARDS_DIR/proxy"
	for ((i = 0; i < SHARDS_N; i++)); do cluster_stop "$(shard_dir $i)"; done
}
