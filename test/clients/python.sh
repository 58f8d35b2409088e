#!/usr/bin/env bash
# The Python client's tests (clients/python): the conformance cases of
# test/conformance and unit tests (no database), then the integration tests
# against a cluster of its own (port PY_PG_PORT, 55460; presence preloaded,
# swept every 200 ms, diffs signed) that the tests restart.  Assumes the
# extension is built and installed.  Last line: "N passed, N failed".
#
#   bash test/clients/python.sh                       # all of them
#   bash test/clients/python.sh tests.test_worker     # some (unittest names)
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/clients/python
cd "$ROOT"
. test/lib/cluster.sh

# Debian's Python and psycopg (never PyPI): /usr/bin/python3 also where
# another python3 comes first on PATH.
ensure_packages python3 python3-psycopg >/dev/null || { echo "apt-get install python3-psycopg failed"; echo "0 passed, 1 failed"; exit 1; }
echo "clients/python: ${PYTHON:-/usr/bin/python3} $(${PYTHON:-/usr/bin/python3} -c 'import sys, psycopg; print(sys.version.split()[0], "psycopg", psycopg.__version__)')"
PYTHON=${PYTHON:-/usr/bin/python3}
CLUSTER=${PY_CLUSTER:-/tmp/presence-py}
PORT=${PY_PG_PORT:-55460}
KEY=py-test-signing-key

trap 'cluster_stop "$CLUSTER"' EXIT
if signing_key_file "$KEY" "$CLUSTER.signing-key" &&
	cluster_start "$CLUSTER" "$PORT" \
	"shared_preload_libraries = 'presence'" \
	"presence.database = 'postgres'" \
	"presence.sweep_interval = '200ms'" \
	"presence.signing_key_file = '$CLUSTER.signing-key'" &&
	psql -Xq -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION presence'; then
	export PY_IT_CLUSTER=$CLUSTER PY_IT_KEY=$KEY PY_IT_AS_POSTGRES=$([ "$(id -u)" = 0 ] && echo 1 || echo 0)
else
	echo "could not start the test cluster: integration tests fail" >&2
	export PY_IT_CLUSTER=
fi
export PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH} PYTHON
cd "$HERE" && "$PYTHON" tests/run.py "$@"
rc=$?
cluster_log_has_crash "$CLUSTER" && { echo "the server log shows a crash" >&2; tail -n 20 "$CLUSTER/server.log"; echo "0 passed, 1 failed"; exit 1; }
exit $rc
