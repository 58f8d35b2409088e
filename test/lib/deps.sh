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

# The packages that building the extension and running its SQL suites need.
PRESENCE_BUILD_PACKAGES=(make gcc postgresql-15 postgresql-server-dev-15
	libpq-dev postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
	libdbd-pg-perl)

# build_and_install: make && make install of the extension at the repo top.
build_and_install() {
	make -s -C "$PRESENCE_ROOT" >/dev/null && make -s -C "$PRESENCE_ROOT" install >/dev/null
}
