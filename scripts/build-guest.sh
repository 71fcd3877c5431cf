#!/usr/bin/env bash
# Build ftvm's default guest: a riscv64 Linux kernel (Debian's linux-source-6.1,
# tinyconfig + guest/kernel/ftvm.config) and an initramfs of our Go programs.
#
# The kernel is cached under $CACHE/kernel-<hash>/Image, where the hash covers
# the config fragment, the source package version and this script's recipe
# version, so a second run skips it. The initramfs is always rebuilt (seconds).
# Results land in $CACHE/guest/{Image,initramfs.cpio}, where `ftvm run` looks.
#
# Environment: FTVM_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/ftvm),
# FTVM_JOBS (default nproc).
set -euo pipefail

# Bump when the build recipe changes in a way that changes the Image.
RECIPE=1
SRC_PKG=linux-source-6.1
CROSS=riscv64-linux-gnu-

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FRAGMENT=$REPO/guest/kernel/ftvm.config
CACHE=${FTVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftvm}
JOBS=${FTVM_JOBS:-$(nproc)}
START=$SECONDS

stage() { printf '[%4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf 'build-guest: error: %s\n' "$*" >&2; exit 1; }

# run_logged LOG CMD...: run CMD with its output in LOG; show the tail on failure.
run_logged() {
	local log=$1
	shift
	if ! "$@" >>"$log" 2>&1; then
		printf 'build-guest: command failed: %s\n--- last 40 lines of %s ---\n' "$*" "$log" >&2
		tail -n 40 "$log" >&2
		exit 1
	fi
}

mkdir -p "$CACHE"
# Serialise concurrent runs (a test and a developer, say) on the same cache.
exec 9>"$CACHE/.build-guest.lock"
flock 9

# --- 1. Host packages ---------------------------------------------------------
stage "checking host packages"
# shellcheck source=apt.sh
source "$REPO/scripts/apt.sh"
apt_ensure gcc-"${CROSS%-}" "$SRC_PKG" bc flex bison make gcc libc6-dev xz-utils
GO=$(command -v go || true)
if [[ -z $GO && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
[[ -n $GO ]] || die "go not found (expected in PATH or /usr/local/go/bin)"
# mkinitramfs runs `go build` itself.
export PATH="$(dirname "$GO"):$PATH"

# --- 2. Kernel (cached) -------------------------------------------------------
SRC_VERSION=$(dpkg-query -W -f='${Version}' "$SRC_PKG")
HASH=$( { echo "recipe $RECIPE"; echo "$SRC_PKG $SRC_VERSION"; cat "$FRAGMENT"; } | sha256sum | cut -c1-16)
KDIR=$CACHE/kernel-$HASH
IMAGE=$KDIR/Image

if [[ -f $IMAGE ]]; then
	stage "kernel cached: $IMAGE"
else
	SRC=$CACHE/src/$SRC_PKG-$SRC_VERSION
	if [[ ! -f $SRC/.ftvm-unpacked ]]; then
		stage "unpacking /usr/src/$SRC_PKG.tar.xz"
		rm -rf "$SRC" "$SRC.tmp"
		mkdir -p "$SRC.tmp"
		tar -xf "/usr/src/$SRC_PKG.tar.xz" -C "$SRC.tmp" --strip-components=1
		touch "$SRC.tmp/.ftvm-unpacked"
		mv "$SRC.tmp" "$SRC"
	fi

	# Out-of-tree build so the unpacked source stays pristine and shareable.
	OUT=$CACHE/kbuild-$HASH
	LOG=$CACHE/kbuild-$HASH.log
	rm -rf "$OUT"
	mkdir -p "$OUT"
	: >"$LOG"
	# Fixed build identity so the same inputs give the same Image banner.
	export KBUILD_BUILD_TIMESTAMP="1970-01-01" KBUILD_BUILD_USER=ftvm KBUILD_BUILD_HOST=ftvm
	KMAKE=(make -C "$SRC" O="$OUT" ARCH=riscv CROSS_COMPILE="$CROSS")

	stage "configuring: tinyconfig + guest/kernel/ftvm.config (log: $LOG)"
	run_logged "$LOG" "${KMAKE[@]}" tinyconfig
	run_logged "$LOG" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" "$FRAGMENT"
	run_logged "$LOG" "${KMAKE[@]}" olddefconfig

	# Every option in the fragment must have survived dependency resolution.
	stage "verifying .config against the fragment"
	bad=0
	while IFS= read -r line; do
		if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
			if ! grep -qxF "$line" "$OUT/.config"; then
				got=$(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$OUT/.config" || echo "absent")
				printf '  wanted %s, got: %s\n' "$line" "$got" >&2
				bad=1
			fi
		elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
			if grep -qE "^${BASH_REMATCH[1]}=" "$OUT/.config"; then
				printf '  wanted %s off, got: %s\n' "${BASH_REMATCH[1]}" \
					"$(grep -E "^${BASH_REMATCH[1]}=" "$OUT/.config")" >&2
				bad=1
			fi
		fi
	done <"$FRAGMENT"
	((bad == 0)) || die "kernel config options were dropped (see above); fix $FRAGMENT"

	stage "building arch/riscv/boot/Image with -j$JOBS (about 2-3 minutes)"
	run_logged "$LOG" "${KMAKE[@]}" -j"$JOBS" Image

	mkdir -p "$KDIR.tmp"
	cp "$OUT/arch/riscv/boot/Image" "$KDIR.tmp/Image"
	cp "$OUT/.config" "$KDIR.tmp/config"
	cp "$LOG" "$KDIR.tmp/build.log"
	rm -rf "$KDIR"
	mv "$KDIR.tmp" "$KDIR"
	# The object tree is 100+ MB and only needed for debugging; keep vmlinux.
	cp "$OUT/vmlinux" "$KDIR/vmlinux"
	rm -rf "$OUT" "$LOG"
	stage "kernel built: $IMAGE ($(stat -c %s "$IMAGE") bytes)"
fi

# --- 3. Initramfs (always rebuilt) --------------------------------------------
GUEST=$CACHE/guest
mkdir -p "$GUEST"
stage "building Go userland and initramfs"
(cd "$REPO" && "$GO" run ./guest/cmd/mkinitramfs -o "$GUEST/initramfs.cpio.tmp")
mv "$GUEST/initramfs.cpio.tmp" "$GUEST/initramfs.cpio"

# --- 4. Publish ---------------------------------------------------------------
cp "$IMAGE" "$GUEST/Image.tmp"
mv "$GUEST/Image.tmp" "$GUEST/Image"
cp "$KDIR/config" "$GUEST/config"
stage "done"
cat <<EOF
  kernel:    $GUEST/Image ($(stat -c %s "$GUEST/Image") bytes, from $KDIR)
  initramfs: $GUEST/initramfs.cpio ($(stat -c %s "$GUEST/initramfs.cpio") bytes)
  cmdline:   console=ttyS0 earlycon=sbi [ftvm.mode=serve|poweroff|cpubench] [ftvm.ip=10.0.2.15/24] [ftvm.gw=10.0.2.2]
EOF
