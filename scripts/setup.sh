#!/usr/bin/env bash
# Install what ftvm's tests and benchmarks need on a fresh Debian machine, then
# build (or reuse the cached) default guest and the Debian guests' disks.
# Idempotent; fast when all is there.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages: the riscv64 cross toolchain (guest kernel, bare-metal test
# programs), QEMU and OpenSBI (the reference machine for differential tests and
# the speed baseline), GNU cpio (a cross-check of the initramfs writer), and
# the real clients of the Debian guests' services: redis-cli and
# redis-benchmark, psql and pgbench, curl and wrk.
pkgs=(gcc-riscv64-linux-gnu binutils-riscv64-linux-gnu qemu-system-misc opensbi iproute2 device-tree-compiler gdb-multiarch cpio
	redis-tools postgresql-client curl wrk)
# shellcheck source=apt.sh
source "$REPO/scripts/apt.sh"
apt_ensure "${pkgs[@]}"
"$REPO/scripts/build-guest.sh"
exec "$REPO/scripts/build-rootfs.sh"
