#!/usr/bin/env bash
# Install what ftvm's tests and benchmarks need on a fresh Debian machine, then
# build (or reuse the cached) default guest. Idempotent; fast when all is there.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages: the riscv64 cross toolchain (guest kernel, bare-metal test
# programs), QEMU and OpenSBI (the reference machine for differential tests and
# the speed baseline).
pkgs=(gcc-riscv64-linux-gnu binutils-riscv64-linux-gnu qemu-system-misc opensbi iproute2 device-tree-compiler)
need=()
for p in "${pkgs[@]}"; do
	if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
		need+=("$p")
	fi
done
if ((${#need[@]})); then
	echo "setup: installing ${need[*]}"
	SUDO=()
	if ((EUID != 0)); then SUDO=(sudo); fi
	export DEBIAN_FRONTEND=noninteractive
	if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
		"${SUDO[@]}" apt-get update -qq
		"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
fi
exec "$REPO/scripts/build-guest.sh"
