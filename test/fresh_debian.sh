#!/usr/bin/env bash
# Checks the README's two commands on a fresh Debian:
#
#   bash test/fresh_debian.sh bookworm     # Debian 12
#   bash test/fresh_debian.sh trixie       # Debian 13
#
# A throwaway chroot is unpacked from the pristine debootstrap
# --variant=minbase tarball that test/lib/chroot.sh caches (nothing else
# installed), a `git clone` of this repository (its HEAD) is put in
# /root/presence, and there, as root with no variables set, it runs
#
#   bash examples/demo.sh
#   bash test/run_all.sh
#
# in the chroot's own network namespace, whose only way out is an HTTP proxy
# for apt and npm (test/lib/egress_proxy.py; configured in apt.conf.d and
# /root/.npmrc, not by variables).  What the chroot gets besides the
# tarball, all machine set-up rather than install steps: that proxy's
# configuration, the host's CA bundle for npm (the host's egress may
# intercept TLS), /etc/resolv.conf, and a policy-rc.d that keeps apt from
# starting the packaged "main" cluster.
#
# Prints PASS or FAIL per command and keeps the logs in
# /tmp/presence-fresh-SUITE/.  Exits non-zero if either failed.  The chroot
# is removed at the end (PRESENCE_FRESH_KEEP=1 keeps it).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/test/lib/chroot.sh"

suite=${1:?usage: test/fresh_debian.sh bookworm|trixie}
base=$(chroot_base_suite "$suite") || exit 1
LOGS=/tmp/presence-fresh-$suite
rm -rf "$LOGS"
mkdir -p "$LOGS"

tar=$(chroot_pristine "$base") || exit 1
dir=$(mktemp -d "$PRESENCE_CHROOT_CACHE/fresh-$suite.XXXXXX")
cleanup() {
	local p root
	# Whatever is still running inside the chroot (ours: started by it).
	for p in /proc/[0-9]*; do
		root=$(readlink "$p/root" 2>/dev/null) || continue
		[ "$root" = "$dir" ] && kill -9 "${p#/proc/}" 2>/dev/null
	done
	if [ "${PRESENCE_FRESH_KEEP:-0}" = 1 ]; then
		echo "kept $dir"
	else
		rm -rf "$dir"
	fi
}
trap cleanup EXIT

t0=$(date +%s)
tar -C "$dir" --numeric-owner -xf "$tar" || exit 1
cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null
printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
chmod 755 "$dir/usr/sbin/policy-rc.d"
mkdir -p "$dir/usr/local/share/presence-host-ca"
cp /etc/ssl/certs/ca-certificates.crt "$dir/usr/local/share/presence-host-ca/ca.crt"
git clone -q "$ROOT" "$dir/root/presence" || exit 1
echo "$suite: fresh chroot $dir ($(git -C "$dir/root/presence" log -1 --format='%h %s'))"
echo "$suite: unpacked in $(($(date +%s) - t0)) s"

# chroot_run_isolated writes the proxy settings for apt and npm.
export PRESENCE_CHROOT_PROXY=1 PRESENCE_CHROOT_CAFILE=/usr/local/share/presence-host-ca/ca.crt

overall=0
for cmd in "bash examples/demo.sh" "bash test/run_all.sh"; do
	log=$LOGS/$(echo "$cmd" | sed 's/^bash //; s/[^a-z_]/-/g').log
	t0=$(date +%s)
	chroot_run_isolated "$dir" bash -c \
		"cd /root/presence && $cmd" \
		>"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - t0))
	# The suites' own logs (test/out), before the chroot goes.
	[ -d "$dir/root/presence/test/out" ] && cp -r "$dir/root/presence/test/out" "$LOGS/out"
	if [ "$rc" = 0 ]; then
		echo "$suite: PASS  $cmd  (${secs} s; $(grep -v '^[[:space:]]*$' "$log" | tail -n 1))"
	else
		overall=1
		echo "$suite: FAIL  $cmd  (exit $rc after ${secs} s; log $log)"
		tail -n 15 "$log" | sed 's/^/    /'
	fi
done
exit $overall
