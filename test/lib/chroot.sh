# Debian chroots for building and testing presence on other PostgreSQL
# majors, and for checking the install steps on a fresh Debian.
#
#   . test/lib/chroot.sh
#   chroot_create sid                   # /var/cache/presence-chroots/sid
#   chroot_run sid apt-get install -y postgresql-18      # host network
#   chroot_run_isolated sid bash -c 'cd /root/presence && bash test/run_all.sh'
#
# Suites and their PostgreSQL (Debian's packages):
#   bookworm      Debian 12      15
#   trixie        Debian 13      17
#   sid           unstable       18   (forky is sid's testing)
#   experimental  sid + experimental, PostgreSQL 19 pinned to experimental
#
# chroot_create runs debootstrap --variant=minbase once per base suite and
# keeps that pristine tree as $PRESENCE_CHROOT_CACHE/pristine-<base>.tar (so
# a throwaway chroot costs an untar, not a download), then unpacks and
# configures $PRESENCE_CHROOT_CACHE/<suite>, which later calls reuse.
#
# chroot_run and chroot_run_isolated enter a chroot in a private mount
# namespace (so the /proc, /dev, /dev/pts, /dev/shm mounts vanish with the
# command).  chroot_run_isolated adds a private network namespace (only its
# own lo) and IPC namespace: a suite there can use the same fixed ports
# (55432 ...) as suites on the host, at the same time.  With
# PRESENCE_CHROOT_PROXY=1 such a namespace still reaches the Debian archive
# and the npm registry through an HTTP proxy on its 127.0.0.1:3142 (a
# forwarder to a proxy on the host, test/lib/egress_proxy.py, over a unix
# socket), which apt and npm in every chroot made here are configured to
# use; without it they have no network at all.

PRESENCE_CHROOT_CACHE=${PRESENCE_CHROOT_CACHE:-/var/cache/presence-chroots}
# The Debian archive the chroots install from: the host's own apt source
# (its first debian URI), unless PRESENCE_DEBIAN_MIRROR says otherwise.
_host_debian_mirror() {
	{
		awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' /etc/apt/sources.list.d/*.sources 2>/dev/null
		awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:/) {print $i; break}}' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
	} | grep -E '/debian/?$' | head -n 1
}
PRESENCE_DEBIAN_MIRROR=${PRESENCE_DEBIAN_MIRROR:-$(_host_debian_mirror)}
PRESENCE_CHROOT_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PRESENCE_CHROOT_PROXY_PORT=3142

# chroot_base_suite SUITE: the suite debootstrap installs.
chroot_base_suite() {
	case $1 in
	bookworm | trixie | sid) echo "$1" ;;
	experimental) echo sid ;;
	*)
		echo "chroot: unknown suite $1 (bookworm, trixie, sid, experimental)" >&2
		return 1
		;;
	esac
}

# chroot_dir SUITE: where the cached chroot of SUITE lives.
chroot_dir() {
	echo "$PRESENCE_CHROOT_CACHE/$1"
}

_chroot_ensure_debootstrap() {
	command -v debootstrap >/dev/null && return 0
	echo "installing debootstrap" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 || {
		apt-get update -q >/dev/null &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
	}
}

# chroot_pristine BASE: path of the cached pristine minbase tarball of BASE
# (bookworm, trixie, sid), made with debootstrap when missing.
chroot_pristine() {
	local base=$1 tar=$PRESENCE_CHROOT_CACHE/pristine-$1.tar tmp start
	if [ ! -s "$tar" ]; then
		_chroot_ensure_debootstrap || return 1
		mkdir -p "$PRESENCE_CHROOT_CACHE"
		tmp=$PRESENCE_CHROOT_CACHE/.debootstrap-$base.$$
		rm -rf "$tmp"
		start=$(date +%s)
		echo "debootstrap --variant=minbase $base" >&2
		debootstrap --variant=minbase "$base" "$tmp" "$PRESENCE_DEBIAN_MIRROR" \
			>"$PRESENCE_CHROOT_CACHE/debootstrap-$base.log" 2>&1 || {
			tail -n 20 "$PRESENCE_CHROOT_CACHE/debootstrap-$base.log" >&2
			rm -rf "$tmp"
			return 1
		}
		echo "debootstrap $base: $(($(date +%s) - start)) s" >&2
		tar -C "$tmp" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar" || return 1
		rm -rf "$tmp"
	fi
	echo "$tar"
}

# chroot_configure SUITE DIR: apt sources (and pins), the host's CA
# certificates, no service starts, the proxy settings.  Needs the network.
chroot_configure() {
	local suite=$1 dir=$2 base sec
	base=$(chroot_base_suite "$suite") || return 1
	case $base in
	sid) sec= ;;
	*) sec=y ;;
	esac
	{
		echo "deb $PRESENCE_DEBIAN_MIRROR $base main"
		if [ -n "$sec" ]; then
			echo "deb $PRESENCE_DEBIAN_MIRROR $base-updates main"
			echo "deb ${PRESENCE_DEBIAN_MIRROR%/debian}/debian-security $base-security main"
		fi
		# experimental: also the sources (pgTAP for 19 is built from
		# Debian's pgtap source package: there is no postgresql-19-pgtap).
		if [ "$suite" = experimental ]; then
			echo "deb $PRESENCE_DEBIAN_MIRROR experimental main"
			echo "deb-src $PRESENCE_DEBIAN_MIRROR $base main"
			echo "deb-src $PRESENCE_DEBIAN_MIRROR experimental main"
		fi
	} >"$dir/etc/apt/sources.list"
	# experimental is NotAutomatic (priority 1): take PostgreSQL 19 from it,
	# with the libpq it needs (postgresql-server-dev-19 wants libpq-dev >=
	# 19, which experimental's postgresql-19 source builds).
	if [ "$suite" = experimental ]; then
		cat >"$dir/etc/apt/preferences.d/presence-pg19" <<-'EOF'
			Package: postgresql-19 postgresql-19-* postgresql-client-19 postgresql-server-dev-19 postgresql-plpython3-19 postgresql-plperl-19 postgresql-pltcl-19 libpq5 libpq-dev libecpg6 libecpg-dev libecpg-compat3 libpgtypes3
			Pin: release a=experimental
			Pin-Priority: 500
		EOF
	fi
	# sid and experimental Release files may be older than their Valid-Until
	# by the time a mirror snapshot is used.
	case $base in
	sid) echo 'Acquire::Check-Valid-Until "false";' >"$dir/etc/apt/apt.conf.d/99presence-valid-until" ;;
	esac
	# Do not start the packaged "main" cluster (or any service) on install:
	# apt runs in the host's network namespace.
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod 755 "$dir/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
	# The host's CA certificates (an intercepting egress proxy's, for npm).
	if ls /usr/local/share/ca-certificates/* >/dev/null 2>&1; then
		mkdir -p "$dir/usr/local/share/ca-certificates"
		cp -r /usr/local/share/ca-certificates/. "$dir/usr/local/share/ca-certificates/"
	fi
	chroot_run "$dir" sh -c 'export DEBIAN_FRONTEND=noninteractive;
		apt-get update -q >/dev/null && apt-get install -y -q ca-certificates >/dev/null &&
		update-ca-certificates >/dev/null' ||
		{ echo "chroot: apt in $dir failed" >&2; return 1; }
	_chroot_npmrc "$dir"
}

# chroot_create SUITE [DIR]: makes DIR (default the cached chroot of SUITE)
# unless it is already made; prints DIR.
chroot_create() {
	local suite=$1 dir=${2:-$(chroot_dir "$1")} base tar start
	base=$(chroot_base_suite "$suite") || return 1
	if [ -f "$dir/.presence-chroot" ]; then
		echo "$dir"
		return 0
	fi
	start=$(date +%s)
	tar=$(chroot_pristine "$base") || return 1
	rm -rf "$dir"
	mkdir -p "$dir"
	tar -C "$dir" --numeric-owner -xf "$tar" || return 1
	# chroot_run finds the directory of a suite by name, or a path.
	chroot_configure "$suite" "$dir" || return 1
	echo "$suite" >"$dir/.presence-chroot"
	echo "chroot $suite made in $(($(date +%s) - start)) s: $dir" >&2
	echo "$dir"
}

# _chroot_resolve SUITE-OR-DIR
_chroot_resolve() {
	case $1 in
	/*) echo "$1" ;;
	*) chroot_dir "$1" ;;
	esac
}

# The part run inside the new namespaces, before chroot: $1 = dir, $2 =
# isolated (0/1), $3 = proxy socket or '', rest = command.
_CHROOT_INNER='
set -e
dir=$1 isolated=$2 sock=$3
shift 3
if [ "$isolated" = 1 ]; then
	ip link set lo up
fi
mount -t proc proc "$dir/proc"
mount --bind /dev "$dir/dev"
mount --bind /dev/pts "$dir/dev/pts"
mount -t tmpfs -o mode=1777 shm "$dir/dev/shm"
mount -t sysfs sysfs "$dir/sys" 2>/dev/null || true
fwd=
if [ -n "$sock" ]; then
	python3 "'"$PRESENCE_CHROOT_LIB"'/egress_proxy.py" forward 127.0.0.1:'"$PRESENCE_CHROOT_PROXY_PORT"' "$sock" &
	fwd=$!
	for _ in $(seq 50); do
		(exec 3<>/dev/tcp/127.0.0.1/'"$PRESENCE_CHROOT_PROXY_PORT"') 2>/dev/null && break
		sleep 0.1
	done
fi
set +e
chroot "$dir" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
rc=$?
[ -n "$fwd" ] && kill "$fwd" 2>/dev/null
exit $rc
'

# chroot_run SUITE-OR-DIR CMD...: CMD in the chroot, on the host's network
# (for apt-get and npm).  A clean environment: pass variables with env.
chroot_run() {
	local dir
	dir=$(_chroot_resolve "$1")
	shift
	unshare --mount --propagation private --fork -- \
		bash -c "$_CHROOT_INNER" chroot-run "$dir" 0 "" "$@"
}

# chroot_run_isolated SUITE-OR-DIR CMD...: CMD in the chroot in its own
# network (lo only) and IPC namespaces.  PRESENCE_CHROOT_PROXY=1 gives it
# the proxy on 127.0.0.1:3142 (see the top of this file).
chroot_run_isolated() {
	local dir sock= ppid_proxy= rc
	dir=$(_chroot_resolve "$1")
	shift
	if [ "${PRESENCE_CHROOT_PROXY:-0}" = 1 ]; then
		sock=$(mktemp -u /tmp/presence-proxy.XXXXXX.sock)
		python3 "$PRESENCE_CHROOT_LIB/egress_proxy.py" serve "$sock" &
		ppid_proxy=$!
		for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
		_chroot_proxy_config "$dir"
	fi
	unshare --mount --propagation private --net --ipc --fork -- \
		bash -c "$_CHROOT_INNER" chroot-run "$dir" 1 "$sock" "$@"
	rc=$?
	if [ -n "$ppid_proxy" ]; then
		rm -f "$dir/etc/apt/apt.conf.d/99presence-proxy"
		_chroot_npmrc "$dir"
		kill "$ppid_proxy" 2>/dev/null
		wait "$ppid_proxy" 2>/dev/null
		rm -f "$sock"
	fi
	return $rc
}

# _chroot_npmrc DIR [PROXY-URL]: root's npm in DIR trusts the CA bundle
# $PRESENCE_CHROOT_CAFILE (the system one, which has the host's CAs: npm
# reads it only when told), through the proxy if given.
_chroot_npmrc() {
	mkdir -p "$1/root"
	{
		echo "cafile=${PRESENCE_CHROOT_CAFILE:-/etc/ssl/certs/ca-certificates.crt}"
		if [ -n "${2:-}" ]; then
			echo "proxy=$2"
			echo "https-proxy=$2"
		fi
	} >"$1/root/.npmrc"
}

# _chroot_proxy_config DIR: apt and npm (root's) in DIR use the proxy.
_chroot_proxy_config() {
	local url=http://127.0.0.1:$PRESENCE_CHROOT_PROXY_PORT/
	printf 'Acquire::http::Proxy "%s";\nAcquire::https::Proxy "%s";\n' "$url" "$url" \
		>"$1/etc/apt/apt.conf.d/99presence-proxy"
	_chroot_npmrc "$1" "$url"
}

# chroot_copy_tree SRC DIR DEST: copies the work tree SRC (without .git,
# node_modules or build output) to DEST inside the chroot DIR.
chroot_copy_tree() {
	local src=$1 dir=$2 dest=$3
	rm -rf "${dir:?}$dest"
	mkdir -p "$dir$dest"
	tar -C "$src" --exclude=./.git --exclude=node_modules --exclude='*.o' \
		--exclude='*.so' --exclude='*.bc' --exclude=./test/out -cf - . | tar -C "$dir$dest" -xf -
}

# chroot_pg_major SUITE-OR-DIR: the newest PostgreSQL major the chroot's
# apt can install (bookworm 15, trixie 17, sid 18, experimental 19 by its
# pin; the `postgresql` metapackage of experimental is still sid's 18).
chroot_pg_major() {
	chroot_run "$1" sh -c "apt-cache policy \$(apt-cache pkgnames postgresql- | grep -E '^postgresql-[0-9]+\$') 2>/dev/null |
		awk '/^postgresql-/ {p = \$1} /Candidate: [^(]/ {sub(/:\$/, \"\", p); sub(/postgresql-/, \"\", p); print p}' |
		sort -n | tail -n 1"
}
