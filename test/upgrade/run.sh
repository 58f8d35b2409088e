#!/usr/bin/env bash
# The upgrade tests: extension_update.sh, dump_restore.sh, and
# pg_upgrade.sh FROM TO for each pair in PRESENCE_UPGRADE_MAJORS (default
# "18:19 15:17") whose two majors (server and headers) are installed here;
# the others are skipped and said so.  Last line "N passed, N failed" (the
# sum); exit status non-zero on any failure.
set -u
cd "$(dirname "$0")/../.."
OUT=test/out/upgrade
mkdir -p "$OUT"
passed=0 failed=0
run() {
	local name=$1 log line t0
	shift
	log=$OUT/$name.log
	t0=$(date +%s)
	bash "$@" >"$log" 2>&1
	local rc=$?
	line=$(tail -n 1 "$log")
	if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
		local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
		((rc != 0 && f == 0)) && f=1
	else
		local p=0 f=1
	fi
	passed=$((passed + p)) failed=$((failed + f))
	printf '%-22s %4d passed, %d failed (%d s)\n' "$name" "$p" "$f" $(($(date +%s) - t0))
	((f == 0)) || grep -E '^not ok' "$log" | head -n 20
}
have_major() {
	[ -x "/usr/lib/postgresql/$1/bin/pg_upgrade" ] &&
		[ -f "$("/usr/lib/postgresql/$1/bin/pg_config" --includedir-server 2>/dev/null)/postgres.h" ]
}
run extension_update test/upgrade/extension_update.sh
run dump_restore test/upgrade/dump_restore.sh
for pair in ${PRESENCE_UPGRADE_MAJORS:-18:19 15:17}; do
	from=${pair%:*} to=${pair#*:}
	if have_major "$from" && have_major "$to"; then
		run "pg_upgrade-$from-$to" test/upgrade/pg_upgrade.sh "$from" "$to"
	else
		echo "pg_upgrade-$from-$to: skipped (PostgreSQL $from and $to with headers are not both installed)"
	fi
done
echo "$passed passed, $failed failed"
((failed == 0))
