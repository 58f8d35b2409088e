#!/usr/bin/env bash
# Runs CMD on this machine, from the top of the repository, as if alone:
# in its own network namespace (only lo: fixed ports such as 55432 or 55438
# never meet another run's), with a private /tmp and /dev/shm, and with
# private copies of the PostgreSQL major's lib and extension directories
# mounted over the real ones, so `make install` (which run_all.sh and
# the demos do) changes nothing outside.  Needs root.
#
#   bash test/isolated.sh make install    # a no-op outside, in effect
#   bash test/isolated.sh bash -c 'make -s install && bash test/e2e/run.sh'
#
# No network: what CMD installs with apt-get or npm must be there already.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || { echo "usage: test/isolated.sh CMD..." >&2; exit 2; }
. "$ROOT/test/lib/deps.sh"
libdir=$("$PG_CONFIG" --pkglibdir) sharedir=$("$PG_CONFIG" --sharedir)/extension
exec unshare --mount --propagation private --net --ipc --fork -- bash -c '
	set -e
	root=$1 libdir=$2 sharedir=$3
	shift 3
	ip link set lo up
	mount -t tmpfs -o mode=1777 tmpfs /tmp
	mount -t tmpfs -o mode=1777 tmpfs /dev/shm
	for d in "$libdir" "$sharedir"; do
		mkdir -p "/tmp/.isolated$d"
		cp -a "$d/." "/tmp/.isolated$d/"
		mount --bind "/tmp/.isolated$d" "$d"
	done
	cd "$root"
	exec "$@"
' isolated "$ROOT" "$libdir" "$sharedir" "$@"
