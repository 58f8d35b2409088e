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

# _presence_default_pg_major: the major to use when PRESENCE_PG_MAJOR is
# not set, and (on stderr, once) why: the newest one installed with its
# server headers, else the newest server installed, else the one Debian's
# `postgresql` metapackage (or postgresql-server-dev-all) depends on here
# (15 on Debian 12, 17 on Debian 13, 18 on sid), after an apt-get update if
# the package lists are empty.
_presence_default_pg_major() {
	local d n= why= pkg
	for d in /usr/lib/postgresql/*/bin/postgres; do
		[ -x "$d" ] || continue
		d=${d%/bin/postgres}
		d=${d##*/}
		if [ -x "/usr/lib/postgresql/$d/bin/pg_config" ]; then
			n=$d why="installed, with its server headers"
		elif [ -z "$why" ] || [ "${why#installed,}" = "$why" ]; then
			n=$d why="installed"
		fi
	done 2>/dev/null
	if [ -z "$n" ]; then
		for pass in 1 2; do
			for pkg in postgresql postgresql-server-dev-all; do
				n=$(apt-cache depends "$pkg" 2>/dev/null |
					sed -n 's/^ *Depends: postgresql\(-server-dev\)\{0,1\}-\([0-9][0-9]*\)$/\2/p' |
					sort -n | tail -n 1)
				[ -n "$n" ] && why="what this system's '$pkg' package installs" && break 2
			done
			[ "$pass" = 1 ] && [ "$(id -u)" = 0 ] && apt-get update -q >/dev/null 2>&1 || break
		done
	fi
	if [ -z "$n" ]; then
		n=15 why="none installed and apt-cache knows none: the default of Debian 12"
	fi
	echo "PostgreSQL $n ($why; PRESENCE_PG_MAJOR=N chooses another)" >&2
	echo "$n"
}

# The PostgreSQL to build and test against: Debian's packages of major
# version PRESENCE_PG_MAJOR (default: see above).  Its pg_config is named
# explicitly: Debian's /usr/bin/pg_config follows the newest server-dev
# package installed, which need not be this one.
if [ -z "${PRESENCE_PG_MAJOR:-}" ]; then
	PRESENCE_PG_MAJOR=$(_presence_default_pg_major)
fi
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/$PRESENCE_PG_MAJOR/bin}
PG_CONFIG=${PG_CONFIG:-$PG_BINDIR/pg_config}
export PRESENCE_PG_MAJOR PG_BINDIR PG_CONFIG

# The packages that building the extension and running its SQL and TAP
# suites need: pg_prove (libtap-parser-sourcehandler-pgtap-perl), DBD::Pg
# for the integration tests' LISTEN connections, IPC::Run for
# PostgreSQL::Test::Cluster (postgresql-server-dev's src/test/perl), and
# postgresql-N-pgtap unless pgTAP is already installed for N some other way
# (Debian has none for 19: test/in_chroot.sh builds it).
PRESENCE_BUILD_PACKAGES=(make gcc "postgresql-$PRESENCE_PG_MAJOR"
	"postgresql-server-dev-$PRESENCE_PG_MAJOR" libpq-dev
	libtap-parser-sourcehandler-pgtap-perl libdbd-pg-perl libipc-run-perl)
[ -f "/usr/share/postgresql/$PRESENCE_PG_MAJOR/extension/pgtap.control" ] &&
	! dpkg-query -W -f='${Status}' "postgresql-$PRESENCE_PG_MAJOR-pgtap" 2>/dev/null | grep -q "ok installed" ||
	PRESENCE_BUILD_PACKAGES+=("postgresql-$PRESENCE_PG_MAJOR-pgtap")

# ensure_plproxy: installs PL/Proxy for this major (the shard suite's,
# test/shards/run.sh) where Debian packages it: postgresql-15-plproxy
# (bookworm), -17 (trixie), -18 (sid); none for 19 yet.  An apt-get update
# first when apt knows no candidate (fresh package lists).  False where
# there is none: the suite then says so and is skipped.
ensure_plproxy() {
	local pkg=postgresql-$PRESENCE_PG_MAJOR-plproxy
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" && return 0
	[ "$(id -u)" = 0 ] || return 1
	apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]' ||
		apt-get update -q >/dev/null 2>&1
	apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]' || return 1
	ensure_packages "$pkg"
}

# build_and_install: make && make install of the extension at the repo top.
build_and_install() {
	make -s -C "$PRESENCE_ROOT" >/dev/null && make -s -C "$PRESENCE_ROOT" install >/dev/null
}
