#!/usr/bin/env bash
# Builds (once) an assert-enabled PostgreSQL of the host's major from
# Debian's source package, for test/assert_build.sh:
#
#   bash test/lib/assert_build.sh        # prints the install prefix
#
# configure --enable-cassert --enable-debug --enable-tap-tests, CFLAGS
# -O1 -DUSE_VALGRIND (valgrind then knows palloc's chunks), without
# readline, zlib or ICU (the suites need none), `make -j2` of the server,
# the client programs, pg_regress and pg_isolation_regress, no docs, no
# contrib.  Cached in $PRESENCE_ASSERT_CACHE/<source version>: a later run
# with the same Debian package version only prints the prefix.  The source
# comes through apt with a private deb-src list and package lists (the
# host's apt configuration is left as it is); needs the network the first
# time.  Also copies the host's pgTAP extension files in (pgTAP is SQL).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/lib/deps.sh"
CACHE=${PRESENCE_ASSERT_CACHE:-/var/cache/presence-assert}
major=$PRESENCE_PG_MAJOR
log() { echo "assert build: $*" >&2; }

ensure_packages make gcc dpkg-dev perl libipc-run-perl valgrind >&2

# A private apt state: deb-src lines for the suites the host's deb lines
# name, its own lists directory.
apt_dir=$CACHE/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
{
	awk '/^Types:/ {t = $0} /^URIs:/ {u = $2} /^Suites:/ {for (i = 2; i <= NF; i++) print "deb-src", u, $i, "main"}' \
		/etc/apt/sources.list.d/*.sources 2>/dev/null
	awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:/) {print "deb-src", $i, $(i + 1), "main"; break}}' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
} | sort -u >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=-"
	-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives")

# The version: the installed server package's, which the source package
# of the same version builds; where a mirror lacks that one's files (the
# security archive's pool, say), the newest other version the Sources
# lists offer.  The cache is keyed by the version built.
installed=$(dpkg-query -W -f='${Version}' "postgresql-$major" 2>/dev/null || true)
apt-get "${apt_opts[@]}" update -q >/dev/null 2>&1 || log "apt-get update failed (offline?): using the cache"
versions=$({
	echo "$installed"
	apt-cache "${apt_opts[@]}" showsrc "postgresql-$major" 2>/dev/null | sed -n 's/^Version: //p' | sort -rV
} | awk 'NF && !seen[$0]++')
for version in $versions; do
	if [ -x "$CACHE/$version/postgresql/bin/postgres" ] && [ -f "$CACHE/$version/done" ]; then
		echo "$CACHE/$version/postgresql"
		exit 0
	fi
done

t0=$(date +%s)
fetched=
for version in $versions; do
	src=$CACHE/$version/src
	rm -rf "$CACHE/$version"
	mkdir -p "$src"
	if (cd "$src" && apt-get "${apt_opts[@]}" source -q --download-only "postgresql-$major=$version" >/dev/null 2>&1); then
		fetched=y
		break
	fi
	log "no source files of postgresql-$major $version on the mirror"
	rm -rf "$CACHE/$version"
done
[ -n "$fetched" ] || { log "no source package of postgresql-$major"; exit 1; }
# A prefix naming "postgres": else Debian's 50-per-version-dirs.patch
# installs the modules into /usr/lib/postgresql/<major>/lib, over the
# host's own server (and upstream appends /postgresql to the share dir).
prefix=$CACHE/$version/postgresql
(cd "$src" && dpkg-source --no-check -x ./*.dsc pg >/dev/null)
log "source $version unpacked ($(($(date +%s) - t0)) s)"

# The last steps, from the build tree: pgTAP's extension files (SQL only)
# from the host's package, PostgreSQL's valgrind suppressions (for
# test/assert_build.sh's valgrind run); then the source goes.
finish_install() {
	local sharedir
	sharedir=$("$prefix/bin/pg_config" --sharedir)
	cp /usr/share/postgresql/"$major"/extension/pgtap* "$sharedir/extension/"
	cp src/tools/valgrind.supp "$prefix/valgrind.supp"
	cd "$CACHE/$version"
	rm -rf "$src"
	touch "$CACHE/$version/done"
}

cd "$src/pg"
# Debian's patches (debian/patches) are applied by dpkg-source: the same
# server as the package, plus assertions.
./configure --prefix="$prefix" --enable-cassert --enable-debug --enable-tap-tests \
	--without-readline --without-zlib --without-icu \
	CFLAGS="-O1 -DUSE_VALGRIND" >"$CACHE/$version/configure.log" 2>&1 || {
	tail -n 30 "$CACHE/$version/configure.log" >&2
	exit 1
}
log "configured ($(($(date +%s) - t0)) s)"
# The top level's all and install: src and config (PGXS), no docs; src
# includes pg_regress, pg_isolation_regress and the TAP modules.  Of
# contrib, dblink only (test/pgtap/02_wire.sql listens through it).
# Installed into a staging DESTDIR first, and moved to the prefix only if
# nothing would land outside it.
stage=$CACHE/$version/stage
{
	make -j2 all && make -C contrib/dblink all &&
		make install DESTDIR="$stage" && make -C contrib/dblink install DESTDIR="$stage"
} >"$CACHE/$version/make.log" 2>&1 || {
	tail -n 40 "$CACHE/$version/make.log" >&2
	exit 1
}
outside=$(cd "$stage" && find . -mindepth 1 \( -type f -o -type l \) | grep -v "^\.$prefix/" | head -n 5)
[ -z "$outside" ] || { log "the install would write outside $prefix: $outside"; exit 1; }
mv "$stage$prefix" "$prefix"
rm -rf "$stage"
finish_install
log "built and installed in $prefix ($(($(date +%s) - t0)) s)"
echo "$prefix"
