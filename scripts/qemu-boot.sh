#!/usr/bin/env bash
# Boot the cached default guest (scripts/build-guest.sh) on QEMU's virt
# board: one hart, 256 MiB, OpenSBI firmware, console on stdio. This is the
# reference ftvm is compared against.
#
#   scripts/qemu-boot.sh [options] [-- extra qemu args]
#     -a, --append STR    extra kernel parameters, e.g. "ftvm.mode=poweroff"
#     -d, --disk FILE     attach FILE as a raw virtio-blk disk (/dev/vda)
#     -p, --kv-port PORT  forward 127.0.0.1:PORT on the host to the guest's 6379
#     -m, --mem SIZE      guest RAM (default 256M)
#     -t, --timeout SEC   kill QEMU after SEC seconds
#
# A virtio-net device (QEMU user networking, guest 10.0.2.15) is always
# attached. Quit an interactive session with "poweroff" or Ctrl-A X.
set -euo pipefail

CACHE=${FTVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftvm}
GUEST=$CACHE/guest
BASE_CMDLINE="console=ttyS0 earlycon=sbi"

append="" disk="" port="" mem=256M timeout=""
while (($#)); do
	case $1 in
	-a | --append) append=$2; shift 2 ;;
	-d | --disk) disk=$2; shift 2 ;;
	-p | --kv-port) port=$2; shift 2 ;;
	-m | --mem) mem=$2; shift 2 ;;
	-t | --timeout) timeout=$2; shift 2 ;;
	--) shift; break ;;
	-h | --help) sed -n '2,15p' "$0"; exit 0 ;;
	*) echo "qemu-boot: unknown option $1 (try --help)" >&2; exit 2 ;;
	esac
done

for f in "$GUEST/Image" "$GUEST/initramfs.cpio"; do
	[[ -f $f ]] || { echo "qemu-boot: $f missing; run scripts/build-guest.sh" >&2; exit 1; }
done

if ! command -v qemu-system-riscv64 >/dev/null || [[ ! -e /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin ]]; then
	echo "qemu-boot: installing qemu-system-misc and opensbi with apt" >&2
	SUDO=()
	if ((EUID != 0)); then SUDO=(sudo); fi
	export DEBIAN_FRONTEND=noninteractive
	if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends qemu-system-misc opensbi >/dev/null 2>&1; then
		"${SUDO[@]}" apt-get update -qq
		"${SUDO[@]}" apt-get install -y -qq --no-install-recommends qemu-system-misc opensbi >/dev/null
	fi
fi

netdev=user,id=n0
if [[ -n $port ]]; then netdev+=",hostfwd=tcp:127.0.0.1:$port-:6379"; fi

qemu=(qemu-system-riscv64 -M virt -smp 1 -m "$mem" -nographic -bios default
	-kernel "$GUEST/Image" -initrd "$GUEST/initramfs.cpio"
	-append "$BASE_CMDLINE${append:+ $append}"
	-netdev "$netdev" -device virtio-net-device,netdev=n0)
if [[ -n $disk ]]; then
	qemu+=(-drive "file=$disk,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0)
fi
qemu+=("$@")

if [[ -n $timeout ]]; then
	exec timeout --foreground "$timeout" "${qemu[@]}"
fi
exec "${qemu[@]}"
