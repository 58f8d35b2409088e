#!/usr/bin/env bash
# Checks the README on a fresh Debian:
#
#   bash test/fresh_debian.sh bookworm     # Debian 12
#   bash test/fresh_debian.sh trixie       # Debian 13
#
# Three checks, each PASS or FAIL:
#
#   readme   the README's walk-through: its code blocks marked
#            `<!-- fresh-debian: sh -->` (run with bash, as root, in the
#            checkout), `<!-- fresh-debian: psql -->` (fed to psql as the
#            postgres superuser) or `<!-- fresh-debian: app -->` (fed to
#            psql as the role `app`, with the password the README gives
#            it), in the order they appear (the Install section's, then
#            Getting started's), each to stop at its first error; then:
#            the last sh block's output holds a snapshot with the entry it
#            tracked as `app`, and the background worker (`presence
#            worker` in pg_stat_activity) runs on the database `app`.
#   demo     bash examples/demo.sh
#   run_all  bash test/run_all.sh (PRESENCE_FRESH_RUN_ALL=0 skips it: it
#            takes long on a busy machine)
#
# Each starts from a throwaway chroot unpacked from the pristine
# debootstrap --variant=minbase tarball that test/lib/chroot.sh caches
# (nothing else installed): one for the walk-through, one for the demo and
# run_all (which run one after the other, as a user would).  A `git clone`
# of this repository (its HEAD) is put in /root/presence, and there, as
# root with no variables set, the check runs in the chroot's own network
# namespace, whose only way out is an HTTP proxy for apt and npm
# (test/lib/egress_proxy.py; configured in apt.conf.d and /root/.npmrc,
# not by variables).  What the chroot gets besides the tarball, all machine
# set-up rather than install steps: that proxy's configuration, the host's
# CA bundle for npm (the host's egress may intercept TLS), /etc/resolv.conf,
# and a policy-rc.d that keeps apt from starting services (the walk-through
# starts its cluster itself, with the README's restart command).
#
# PRESENCE_CHROOT_CACHE chooses where the pristine tarball and the
# throwaway chroots live (test/lib/chroot.sh).  Logs go to
# /tmp/presence-fresh-SUITE/ (or PRESENCE_FRESH_LOGS), which the run
# empties first.  Exits non-zero if any check failed.  The
# chroots are removed at the end (PRESENCE_FRESH_KEEP=1 keeps them).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/test/lib/chroot.sh"

suite=${1:?usage: test/fresh_debian.sh bookworm|trixie}
base=$(chroot_base_suite "$suite") || exit 1
LOGS=${PRESENCE_FRESH_LOGS:-/tmp/presence-fresh-$suite}
rm -rf "$LOGS"
mkdir -p "$LOGS"

tar=$(chroot_pristine "$base") || exit 1
dirs=()
cleanup() {
	local p root dir
	for dir in "${dirs[@]}"; do
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
	done
}
trap cleanup EXIT

# fresh_chroot NAME: a new chroot with the clone in /root/presence; sets dir.
fresh_chroot() {
	local t0
	t0=$(date +%s)
	dir=$(mktemp -d "$PRESENCE_CHROOT_CACHE/fresh-$suite-$1.XXXXXX") || return 1
	dirs+=("$dir")
	tar -C "$dir" --numeric-owner -xf "$tar" || return 1
	cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod 755 "$dir/usr/sbin/policy-rc.d"
	mkdir -p "$dir/usr/local/share/presence-host-ca"
	cp /etc/ssl/certs/ca-certificates.crt "$dir/usr/local/share/presence-host-ca/ca.crt"
	git clone -q "$ROOT" "$dir/root/presence" || return 1
	echo "$suite: fresh chroot $dir ($(git -C "$dir/root/presence" log -1 --format='%h %s'))"
	echo "$suite: unpacked in $(($(date +%s) - t0)) s"
}

# readme_blocks README OUTDIR: writes the README's marked blocks as
# OUTDIR/NN.sh, OUTDIR/NN.psql and OUTDIR/NN.app, in order; prints their
# number.
readme_blocks() {
	awk -v out="$2" '
		/^<!-- fresh-debian: (sh|psql|app) -->$/ {
			kind = $0
			sub(/^<!-- fresh-debian: /, "", kind)
			sub(/ -->$/, "", kind)
			want = 1
			next
		}
		want && /^```/ { want = 0; n++; file = sprintf("%s/%02d.%s", out, n, kind); inblock = 1; next }
		inblock && /^```/ { inblock = 0; close(file); next }
		inblock { print > file }
		END { print n + 0 }
	' "$1"
}

# The runner of the walk-through, inside the chroot: each block in order
# (stop at the first failure), then the checks.
READMERUN='
cd /root/presence
for f in /readme-install/*; do
	echo "==== README block ${f##*/}"
	cat "$f"
	echo "----"
	case $f in
	*.sh) bash -e "$f" 2>&1 | tee "$f.out" ;;
	*.psql) su postgres -s /bin/bash -c "cd /tmp && psql -X -v ON_ERROR_STOP=1 -f $f" 2>&1 | tee "$f.out" ;;
	# The password of the README'"'"'s CREATE ROLE app.
	*.app) psql -X -v ON_ERROR_STOP=1 -f "$f" "host=localhost dbname=app user=app password=app" 2>&1 | tee "$f.out" ;;
	esac
	rc=${PIPESTATUS[0]}
	[ "$rc" = 0 ] || { echo "README block ${f##*/}: exit $rc"; exit 1; }
	case $f in *.sh) last_sh=$f ;; esac
done
echo "==== checks"
# The install section ends with a track as app and its snapshot.
grep -F "\"principal\":\"user:42\"" "$last_sh.out" ||
	{ echo "the last sh block printed no snapshot with user:42"; exit 1; }
for _ in $(seq 30); do
	n=$(su postgres -s /bin/bash -c "cd /tmp && psql -XAtc \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = '"'"'presence worker'"'"' AND datname = '"'"'app'"'"'\"")
	[ "$n" = 1 ] && break
	sleep 1
done
[ "$n" = 1 ] || { echo "no presence worker on the database app"; exit 1; }
echo "presence worker: running on app"
'

overall=0
# check NAME LOG CMD...: runs CMD, prints PASS or FAIL with its time.
check() {
	local name=$1 log=$2 rc secs t0
	shift 2
	t0=$(date +%s)
	"$@" >"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - t0))
	if [ "$rc" = 0 ]; then
		echo "$suite: PASS  $name  (${secs} s; $(grep -v '^[[:space:]]*$' "$log" | tail -n 1))"
	else
		overall=1
		echo "$suite: FAIL  $name  (exit $rc after ${secs} s; log $log)"
		tail -n 15 "$log" | sed 's/^/    /'
	fi
}

# chroot_run_isolated writes the proxy settings for apt and npm.
export PRESENCE_CHROOT_PROXY=1 PRESENCE_CHROOT_CAFILE=/usr/local/share/presence-host-ca/ca.crt

# 1. The README's install walk-through.
fresh_chroot readme || exit 1
mkdir -p "$dir/readme-install"
# The README of the clone (HEAD), as the rest of the check.
n=$(readme_blocks "$dir/root/presence/README.md" "$dir/readme-install")
chmod -R a+rX "$dir/readme-install"

if [ "$n" -lt 3 ]; then
	echo "$suite: FAIL  readme  (found $n marked blocks in README.md)"
	overall=1
else
	echo "$suite: README: $n marked blocks"
	check "readme (the README's $n marked blocks)" "$LOGS/readme.log" \
		chroot_run_isolated "$dir" bash -c "$READMERUN"
fi

# 2. The demo and the test suites, on another fresh chroot.
cmds=("bash examples/demo.sh")
[ "${PRESENCE_FRESH_RUN_ALL:-1}" = 1 ] && cmds+=("bash test/run_all.sh")
fresh_chroot commands || exit 1
for cmd in "${cmds[@]}"; do
	check "$cmd" "$LOGS/$(echo "$cmd" | sed 's/^bash //; s/[^a-z_]/-/g').log" \
		chroot_run_isolated "$dir" bash -c "cd /root/presence && $cmd"
	# The suites' own logs (test/out), before the chroot goes.
	[ -d "$dir/root/presence/test/out" ] && cp -r "$dir/root/presence/test/out" "$LOGS/out"
done
exit $overall
