# ensure_packages PKG...: installs the Debian packages that are missing
# (apt-get update first, once).  Idempotent and quiet when all are there.
ensure_packages() {
	local missing=()
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" ||
			missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	echo "installing: ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null &&
		apt-get install -y -q "${missing[@]}" >/dev/null
}

# The PostgreSQL to build and test against: Debian's packages of major
# version PRESENCE_PG_MAJOR (15 on Debian 12).  Its pg_config is named
# explicitly: Debian's /usr/bin/pg_config follows the newest server-dev
# package installed, which need not be this one.
PRESENCE_PG_MAJOR=${PRESENCE_PG_MAJOR:-15}
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/$PRESENCE_PG_MAJOR/bin}
PG_CONFIG=${PG_CONFIG:-$PG_BINDIR/pg_config}
export PRESENCE_PG_MAJOR PG_BINDIR PG_CONFIG

# The packages that building the extension and running its SQL and TAP
# suites need: pg_prove (libtap-parser-sourcehandler-pgtap-perl), DBD::Pg
# for the integration tests' LISTEN connections, IPC::Run for
# PostgreSQL::Test::Cluster (postgresql-server-dev's src/test/perl).
PRESENCE_BUILD_PACKAGES=(make gcc "postgresql-$PRESENCE_PG_MAJOR"
	"postgresql-server-dev-$PRESENCE_PG_MAJOR" libpq-dev
	"postgresql-$PRESENCE_PG_MAJOR-pgtap"
	libtap-parser-sourcehandler-pgtap-perl libdbd-pg-perl libipc-run-perl)

# build_and_install: make && make install of the extension at the repo top.
build_and_install() {
	make -s -C "$PRESENCE_ROOT" >/dev/null && make -s -C "$PRESENCE_ROOT" install >/dev/null
}
