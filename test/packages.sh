#!/usr/bin/env bash
# The release checks: META.json against the PGXN meta spec
# (test/meta_check.py, and its own test) and `make dist` on the host, then
# the Debian packages (debian/) per suite, in a fresh chroot:
#
#   bash test/packages.sh                 # bookworm (PostgreSQL 15), trixie (17)
#   bash test/packages.sh trixie
#
# Per suite: `dpkg-buildpackage -us -uc` on the work tree's files (git's,
# less the ignored ones), lintian on the result (its tags shown, the
# informational and pedantic ones too; an error or a warning fails),
# `apt-get install ./postgresql-N-presence*.deb` (without the server's
# recommends: sysstat, systemd), then the package's
# autopkgtest scripts (debian/tests) from the unpacked source package
# against the installed files, in the chroot's own network namespace:
# installcheck (pg_regress and isolation, `pg_buildext installcheck`) and
# proxy (CREATE EXTENSION presence_proxy, which pulls in plproxy).
#
# The chroots (test/lib/chroot.sh) live under PRESENCE_CHROOT_CACHE
# (default /var/cache/presence-pkg-chroots): SUITE is made once, with the
# build dependencies and lintian installed and the run-time packages
# downloaded into apt's cache; each run works in an overlay of it
# (run-SUITE, removed at the end), so nothing of an earlier run is there.
# The script runs in a mount namespace of its own: the overlays go with it.
# Ends with one line "N passed, N failed"; exits non-zero on any failure.
set -u
# (exec keeps the PID, so $$ tells this process's re-run from a child's.)
if [ "${PRESENCE_PKG_NAMESPACE:-}" != $$ ]; then
	exec unshare --mount --propagation private -- \
		env PRESENCE_PKG_NAMESPACE=$$ bash "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PRESENCE_CHROOT_CACHE=${PRESENCE_CHROOT_CACHE:-/var/cache/presence-pkg-chroots}
. "$ROOT/test/lib/chroot.sh"

passed=0
failed=0
LOGS=$(mktemp -d /tmp/presence-packages.XXXXXX)

# check NAME CMD...: one check, PASS or FAIL, its output in $LOGS/NAME.log
# (shown on failure).
check() {
	local name=$1 log=$LOGS/$1.log t0=$(date +%s)
	shift
	if "$@" >"$log" 2>&1; then
		passed=$((passed + 1))
		echo "PASS  $name ($(($(date +%s) - t0)) s)"
	else
		failed=$((failed + 1))
		echo "FAIL  $name ($(($(date +%s) - t0)) s)"
		tail -n 80 "$log"
	fi
}

# installcheck SUITE: debian/tests/installcheck, counted by pg_regress's
# and pg_isolation_regress's own lines ("All N tests passed.", "M of N
# tests failed."); a failure they do not count is one.
installcheck() {
	local log=$LOGS/$1-autopkgtest-installcheck.log rc p=0 f=0 n m t0=$(date +%s)
	chroot_run_isolated "$run_dir" bash -c "cd /root/test-src && debian/tests/installcheck" >"$log" 2>&1
	rc=$?
	while read -r n; do p=$((p + n)); done < <(grep -oE 'All [0-9]+ tests passed' "$log" | grep -oE '[0-9]+')
	while read -r m n; do
		p=$((p + n - m)) f=$((f + m))
	done < <(grep -oE '[0-9]+ of [0-9]+ tests failed' "$log" | sed -E 's/ of / /; s/ tests failed//')
	((rc != 0 && f == 0)) && f=1
	((p == 0 && f == 0)) && f=1
	passed=$((passed + p)) failed=$((failed + f))
	echo "$( ((f == 0)) && echo PASS || echo FAIL)  $1-autopkgtest-installcheck: $p passed, $f failed (pg_regress and isolation tests; $(($(date +%s) - t0)) s)"
	((f == 0)) || tail -n 120 "$log"
}

version=$(sed -n "s/^default_version *= *'\(.*\)'\$/\1/p" "$ROOT/presence.control")
source=$(sed -n 's/^Source: //p' "$ROOT/debian/control.in")

# The PGXN release: META.json, then `make dist`'s zip (from git's HEAD, so
# only where the work tree has nothing uncommitted).
check meta python3 "$ROOT/test/meta_check.py" "$ROOT"
check meta-check-test python3 "$ROOT/test/meta_check_test.py"
if [ -z "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] && git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
	check dist bash -c 'cd "$1" && make -s dist DISTDIR="$2" && python3 test/meta_check.py --zip "$2"/presence-*.zip' \
		dist "$ROOT" "$LOGS/dist"
else
	echo "SKIP  dist (uncommitted changes: make dist archives HEAD)"
fi

# prepare SUITE: the cached chroot with what building and testing needs;
# prints its major.
prepare() {
	local suite=$1 dir major
	dir=$(chroot_create "$suite") || return 1
	major=$(chroot_pg_major "$dir")
	[ -n "$major" ] || { echo "no PostgreSQL in $suite's archive" >&2; return 1; }
	chroot_run "$dir" env MAJOR="$major" bash -c '
		set -e
		export DEBIAN_FRONTEND=noninteractive
		have() { dpkg-query -W -f="\${Status}" "$1" 2>/dev/null | grep -q "ok installed"; }
		missing=
		for p in build-essential dpkg-dev debhelper postgresql-server-dev-all lintian make; do
			have "$p" || missing="$missing $p"
		done
		if [ -n "$missing" ]; then
			apt-get update -q >/dev/null
			apt-get install -y -q --no-install-recommends $missing >/dev/null
			apt-get clean
		fi
		# the run-time dependencies, downloaded only: apt installs them
		# with the packages.
		ls /var/cache/apt/archives/postgresql-$MAJOR-plproxy_*.deb >/dev/null 2>&1 ||
			apt-get install -y -q --download-only postgresql-$MAJOR \
				postgresql-$MAJOR-plproxy >/dev/null
		# no "main" cluster on install: the tests make their own.
		mkdir -p /etc/postgresql-common/createcluster.d
		echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/presence-pkg.conf
	' >&2 || return 1
	echo "$major"
}

# overlay SUITE: a run's chroot, the cached one under a fresh upper layer;
# sets run_dir.
run_dir=
run_base=
overlay() {
	run_base=$PRESENCE_CHROOT_CACHE/run-$1
	run_dir=$run_base/root
	rm -rf "$run_base"
	mkdir -p "$run_base/upper" "$run_base/work" "$run_dir"
	mount -t overlay overlay -o "lowerdir=$(chroot_dir "$1"),upperdir=$run_base/upper,workdir=$run_base/work" "$run_dir"
}

# Whatever runs in the run's chroot at the end is ours.
cleanup() {
	local p
	[ -n "$run_dir" ] || return 0
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$run_dir" ] && kill -9 "${p#/proc/}" 2>/dev/null
	done
	umount "$run_dir" && rm -rf "$run_base"
	run_dir=
}
trap cleanup EXIT

suites=("$@")
[ $# -gt 0 ] || suites=(bookworm trixie)
for suite in "${suites[@]}"; do
	echo "== $suite"
	t0=$(date +%s)
	if ! major=$(prepare "$suite"); then
		failed=$((failed + 1))
		echo "FAIL  $suite: preparing the chroot"
		continue
	fi
	if ! overlay "$suite"; then
		failed=$((failed + 1))
		echo "FAIL  $suite: the overlay"
		continue
	fi
	echo "     $suite: PostgreSQL $major, chroot ready in $(($(date +%s) - t0)) s"
	mkdir -p "$run_dir/root/build/$source-$version"
	(cd "$ROOT" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) |
		tar -C "$run_dir/root/build/$source-$version" -xf -

	check "$suite-build" chroot_run "$run_dir" bash -c \
		"cd /root/build/$source-$version && dpkg-buildpackage -us -uc"
	check "$suite-lintian" chroot_run "$run_dir" lintian --display-info --pedantic \
		--fail-on error,warning "/root/build/${source}_${version}_amd64.changes"
	grep -v 'root privileges' "$LOGS/$suite-lintian.log" | sed 's/^/     lintian: /'
	check "$suite-install" chroot_run "$run_dir" env DEBIAN_FRONTEND=noninteractive bash -c "
		cd /root/build && apt-get install -y -q --no-install-recommends \
			-o Dpkg::Options::=--force-unsafe-io ./postgresql-$major-presence_${version}_*.deb \
			./postgresql-$major-presence-proxy_${version}_all.deb &&
		dpkg -s postgresql-$major-plproxy >/dev/null"
	(cd "$run_dir/root/build" && stat -c '     %s bytes  %n' ./*.deb)
	# autopkgtest's way: the tests of the unpacked source package.
	chroot_run "$run_dir" bash -c "cd /root && rm -rf test-src &&
		dpkg-source -x build/${source}_$version.dsc test-src" >/dev/null
	installcheck "$suite"
	check "$suite-autopkgtest-proxy" chroot_run_isolated "$run_dir" \
		bash -c "cd /root/test-src && debian/tests/proxy"
	cleanup
	echo "     $suite: $(($(date +%s) - t0)) s"
done

echo "$passed passed, $failed failed"
((failed == 0))
