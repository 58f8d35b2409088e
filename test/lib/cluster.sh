# Throwaway PostgreSQL clusters for tests, the demo and benchmarks.
#
# PostgreSQL refuses to run as root, so initdb and the server run as the
# `postgres` system user with the data directory in a folder that user owns,
# on a private socket directory and port.  Clients run as the caller and
# connect through PGHOST/PGPORT/PGUSER, which cluster_start exports.
#
#   . test/lib/cluster.sh
#   cluster_start /tmp/mycluster 54329 "shared_preload_libraries = 'presence'"
#   psql -c 'select 1'
#   cluster_stop /tmp/mycluster

. "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

# _as_postgres CMD...: CMD as the postgres user when we are root.  From /:
# the caller's directory (a checkout in /root, say) need not be readable by
# postgres, and initdb and pg_ctl would print `could not change directory
# to "...": Permission denied` on every call.  Paths given must be absolute.
_as_postgres() {
	if [ "$(id -u)" = 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# cluster_start DIR PORT [postgresql.conf line ...]
cluster_start() {
	local dir port=$2
	dir=$(realpath -m "$1")
	shift 2
	rm -rf "$dir"
	mkdir -p "$dir/sock"
	[ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
	chmod 755 "$dir"
	_as_postgres "$PG_BINDIR/initdb" -D "$dir/data" -A trust -U postgres \
		-E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		return 1
	}
	{
		echo "port = $port"
		echo "unix_socket_directories = '$dir/sock'"
		echo "listen_addresses = '127.0.0.1'"
		echo "fsync = off"
		echo "max_connections = 100"
		echo "log_line_prefix = '%m [%p] %b '"
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
	_as_postgres "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
		-w -t 60 start >/dev/null || {
		cat "$dir/server.log" >&2
		return 1
	}
	export PGHOST="$dir/sock" PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
}

# signing_key_file KEY FILE: writes KEY to FILE as presence.signing_key_file
# requires it (mode 0600, owned by the server's user).  FILE must be outside
# a cluster's directory, which cluster_start empties.
signing_key_file() {
	rm -f "$2"
	(umask 077 && echo "$1" >"$2") || return 1
	if [ "$(id -u)" = 0 ]; then chown postgres: "$2"; fi
}

# cluster_reload DIR
cluster_reload() {
	_as_postgres "$PG_BINDIR/pg_ctl" -D "$1/data" reload >/dev/null
}

# cluster_stop DIR: fast shutdown; silent when it is not running.
cluster_stop() {
	[ -f "$1/data/postmaster.pid" ] || return 0
	_as_postgres "$PG_BINDIR/pg_ctl" -D "$1/data" -m fast -w -t 60 stop \
		>/dev/null 2>&1 || true
}

# cluster_log_has_crash DIR: true when the server log shows a crash.
cluster_log_has_crash() {
	grep -Eq 'terminated by signal|was terminated|server process .* exited with exit code [^01]|PANIC' \
		"$1/server.log"
}

# cluster_restart DIR: a fast restart (a new server run, so a new epoch).
cluster_restart() {
	_as_postgres "$PG_BINDIR/pg_ctl" -D "$1/data" -l "$1/server.log" -m fast \
		-w -t 60 restart >/dev/null
}
