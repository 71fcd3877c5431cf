# Sourced by ftvm's scripts: apt_ensure PKG... installs the Debian packages
# that are missing (quietly, refreshing the package lists only if the
# install fails without them, as on a fresh machine).
apt_ensure() {
	local need=() pkg
	for pkg in "$@"; do
		if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true) != "install ok installed" ]]; then
			need+=("$pkg")
		fi
	done
	((${#need[@]})) || return 0
	echo "installing with apt: ${need[*]}"
	local sudo=()
	if ((EUID != 0)); then sudo=(sudo); fi
	export DEBIAN_FRONTEND=noninteractive
	if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
		"${sudo[@]}" apt-get update -qq
		"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
}
