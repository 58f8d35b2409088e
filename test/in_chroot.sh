#!/usr/bin/env bash
# Builds presence and runs its suites (or CMD) inside a cached Debian chroot
# (test/lib/chroot.sh), on that suite's PostgreSQL:
#
#   bash test/in_chroot.sh bookworm          # 15
#   bash test/in_chroot.sh trixie            # 17
#   bash test/in_chroot.sh sid               # 18
#   bash test/in_chroot.sh experimental      # 19 (pgTAP built from source)
#   bash test/in_chroot.sh sid make installcheck ...   # any CMD, from the tree
#
# The work tree (as it is, without .git and node_modules) is copied to
# /root/presence in the chroot.  With the network: the packages the suites
# need (PRESENCE_BUILD_PACKAGES of test/lib/deps.sh; with
# PRESENCE_CHROOT_E2E=1 also chromium, nodejs, npm and the gateway's npm ci).
# Then CMD (default: bash test/run_all.sh) runs in the chroot's own network
# namespace, so its fixed ports never meet the host's.  PRESENCE_PG_MAJOR
# chooses the major (default: the suite's newest).  Without
# PRESENCE_CHROOT_E2E=1, the e2e suite is reported as one failure (no
# browser or node in the chroot, and no network to install them).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/test/lib/chroot.sh"

suite=${1:?usage: test/in_chroot.sh SUITE [CMD...]}
shift
[ $# -gt 0 ] || set -- bash test/run_all.sh
dir=$(chroot_create "$suite") || exit 1

# The major: the newest postgresql-N the chroot's apt offers, unless chosen.
major=${PRESENCE_PG_MAJOR:-$(chroot_pg_major "$dir")}
[ -n "$major" ] || { echo "no PostgreSQL in $suite's archive" >&2; exit 1; }
echo "== $suite: PostgreSQL $major, chroot $dir"

chroot_copy_tree "$ROOT" "$dir" /root/presence

t0=$(date +%s)
# (test/lib/deps.sh's PRESENCE_BUILD_PACKAGES, for this major; pgTAP below)
pkgs="make gcc postgresql-$major postgresql-server-dev-$major libpq-dev libtap-parser-sourcehandler-pgtap-perl libdbd-pg-perl libipc-run-perl curl python3 python3-psycopg"
[ "${PRESENCE_CHROOT_E2E:-0}" = 1 ] && pkgs="$pkgs chromium nodejs npm"
# PRESENCE_CHROOT_PACKAGES: more packages, e.g. an older major for pg_upgrade.
pkgs="$pkgs ${PRESENCE_CHROOT_PACKAGES:-}"
chroot_run "$dir" env PKGS="$pkgs" MAJOR="$major" E2E="${PRESENCE_CHROOT_E2E:-0}" bash -c '
	set -e
	export DEBIAN_FRONTEND=noninteractive
	have() { dpkg-query -W -f="\${Status}" "$1" 2>/dev/null | grep -q "ok installed"; }
	missing=; for p in $PKGS; do have "$p" || missing="$missing $p"; done
	if [ -n "$missing" ]; then
		apt-get update -q >/dev/null
		apt-get install -y -q $missing >/dev/null
	fi
	# PL/Proxy for the shard suite, where Debian has it for this major
	# (17, 18; not 19: the suite is then skipped).
	if apt-cache policy postgresql-$MAJOR-plproxy | grep -q "Candidate: [^(]"; then
		have postgresql-$MAJOR-plproxy || apt-get install -y -q postgresql-$MAJOR-plproxy >/dev/null
	fi
	# pgTAP: the package, or (19: Debian has no postgresql-19-pgtap) built
	# from Debian'"'"'s pgtap source package.
	if [ ! -f /usr/share/postgresql/$MAJOR/extension/pgtap.control ]; then
		if apt-cache policy postgresql-$MAJOR-pgtap | grep -q "Candidate: [^(]"; then
			apt-get install -y -q postgresql-$MAJOR-pgtap >/dev/null
		else
			echo "building pgTAP for $MAJOR from the Debian source package" >&2
			have dpkg-dev || apt-get install -y -q dpkg-dev >/dev/null
			rm -rf /usr/src/pgtap && mkdir -p /usr/src/pgtap && cd /usr/src/pgtap
			# The .dsc and the debian/ tarball, or (a mirror that lacks
			# them) the upstream tarball alone, which apt-get has checked
			# against the Sources index all the same.
			apt-get source -q --download-only pgtap >/dev/null 2>&1 || true
			if ls pgtap_*.dsc >/dev/null 2>&1; then
				dpkg-source -x pgtap_*.dsc >/dev/null
			else
				ls pgtap_*.orig.tar.* >/dev/null 2>&1 || { echo "no pgtap source" >&2; exit 1; }
				echo "only $(ls pgtap_*.orig.tar.*) on the mirror: building the upstream source without debian/" >&2
				tar -xf pgtap_*.orig.tar.*
			fi
			cd pgtap-*/
			make PG_CONFIG=/usr/lib/postgresql/$MAJOR/bin/pg_config >/usr/src/pgtap/build.log 2>&1 &&
				make PG_CONFIG=/usr/lib/postgresql/$MAJOR/bin/pg_config install >>/usr/src/pgtap/build.log 2>&1 ||
				{ tail -n 30 /usr/src/pgtap/build.log; exit 1; }
			echo "pgTAP $(sed -n "s/^default_version *= *.\(.*\)./\1/p" pgtap.control) installed for $MAJOR" >&2
		fi
	fi
	if [ "$E2E" = 1 ]; then
		cd /root/presence/examples/gateway
		npm ci --no-audit --no-fund --loglevel=error >/dev/null
		cp package-lock.json node_modules/.package-lock.json.e2e
	fi
' || { echo "preparing $suite failed" >&2; exit 1; }
echo "== prepared in $(($(date +%s) - t0)) s"

t0=$(date +%s)
chroot_run_isolated "$dir" env PRESENCE_PG_MAJOR="$major" bash -c 'cd /root/presence && "$@"' cmd "$@"
rc=$?
echo "== $suite (PostgreSQL $major): $* exited $rc after $(($(date +%s) - t0)) s"
exit $rc
