#!/usr/bin/env bash
# Build the Debian guest's disks: a root filesystem of Debian 13 (trixie)
# riscv64 packages with redis-server, postgresql and nginx, written as two
# ext4 images made without root (mke2fs -d under fakeroot):
#
#   root.img  the system, attached read-only and shared by every replica
#             (the same bytes everywhere, so never copied nor transferred)
#   data.img  the template of a guest's data disk: the directories the
#             services write (/var/lib/{redis,postgresql,nginx}, /var/log),
#             moved out of the root; ftvm copies it for each guest it runs
#
# mmdebstrap downloads the packages from the mirror the host's own apt
# configuration names (FTVM_DEBIAN_MIRROR overrides it) and runs their
# maintainer scripts under qemu-user (binfmt), so PostgreSQL's cluster is
# initialised at build time, not on the guest's first boot.
#
# The result is cached under $CACHE/rootfs-<hash>, the hash covering the
# recipe (suite, packages, the hook and the image-writing script), and
# published in
# $CACHE/guest/debian/ where `ftvm run -guest NAME` looks. A cached run takes
# well under a second.
#
# Environment: FTVM_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/ftvm),
# FTVM_DEBIAN_MIRROR (default: from /etc/apt/sources.list{,.d}).
set -euo pipefail

# Bump when the build recipe changes the images (see HASH below).
RECIPE=1
SUITE=trixie
PACKAGES=redis-server,postgresql,nginx
# The data disk's size: PostgreSQL's WAL and a pgbench database of a few
# scales fit with room to spare; the image is sparse.
DATA_SIZE=512M
# Directories the services write, moved to the data disk; init bind-mounts
# each back over its (empty) place in the read-only root.
DATA_DIRS=(var/lib/redis var/lib/postgresql var/lib/nginx var/log)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${FTVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftvm}
START=$SECONDS

stage() { printf '[%4ds] rootfs: %s\n' "$((SECONDS - START))" "$*"; }
die() { printf 'build-rootfs: error: %s\n' "$*" >&2; exit 1; }

# mirror prints the first Debian archive URI of the host's apt sources that
# is not the security archive.
mirror() {
	if [[ -n ${FTVM_DEBIAN_MIRROR:-} ]]; then
		echo "$FTVM_DEBIAN_MIRROR"
		return
	fi
	local f uri
	shopt -s nullglob
	for f in /etc/apt/sources.list.d/*.sources; do
		# deb822: stanzas separated by blank lines, one URIs: line each;
		# take the first "deb" stanza that is not the security archive.
		uri=$(awk 'BEGIN { RS = "" } $0 !~ /-security/ && $0 ~ /Types:[^\n]*deb/ {
			n = split($0, l, "\n")
			for (i = 1; i <= n; i++) if (l[i] ~ /^URIs:/) { split(l[i], w, /[ \t]+/); print w[2]; exit } }' "$f")
		[[ -n $uri ]] && { echo "$uri"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		uri=$(awk '$1 == "deb" && $0 !~ /-security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
		[[ -n $uri ]] && { echo "$uri"; return; }
	done
	die "no Debian mirror in /etc/apt/sources.list{,.d}; set FTVM_DEBIAN_MIRROR"
}

SUDO=()
if ((EUID != 0)); then SUDO=(sudo); fi

mkdir -p "$CACHE"
exec 8>"$CACHE/.build-rootfs.lock"
flock 8

# hook_script prints the customize hook mmdebstrap runs once the packages are
# configured: it starts the PostgreSQL cluster Debian created (under
# qemu-user, in the chroot) and makes a database "pgbench" initialised at
# scale 1, so that pgbench runs at once in the guest rather than after a
# minute of initialisation in an emulated machine.
hook_script() {
	cat <<'HOOK'
set -eu
root=$1
v=$(ls "$root/usr/lib/postgresql")
bin=/usr/lib/postgresql/$v/bin
data=/var/lib/postgresql/$v/main
opts="-c config_file=/etc/postgresql/$v/main/postgresql.conf -c listen_addresses= -c unix_socket_directories=/tmp -c external_pid_file= -c dynamic_shared_memory_type=mmap"
chroot "$root" su postgres -s /bin/sh -c "$bin/pg_ctl -D $data -o '$opts' -w -t 900 -l /tmp/pg-hook.log start &&
	$bin/createdb -h /tmp pgbench && $bin/pgbench -h /tmp -i -q -s 1 pgbench &&
	$bin/pg_ctl -D $data -m fast -w -t 900 stop" || { cat "$root/tmp/pg-hook.log" >&2; exit 1; }
rm -f "$root/tmp/pg-hook.log"
HOOK
}

# images_script prints what runs under fakeroot: it unpacks mmdebstrap's
# tarball, edits the configuration, moves the data directories to the data
# tree and writes both images.
images_script() {
	cat <<'EOF'
set -euo pipefail
work=$1 data_size=$2
shift 2
tar -xpf "$work/rootfs.tar" -C "$work/root" --numeric-owner
rm "$work/rootfs.tar"
r=$work/root

# PostgreSQL: listen on the guest's address, and trust clients on the guest's
# own networks (samenet): a demo setting, so `psql -h ADDR -U postgres` and
# pgbench need no password. Durability stays the default (fsync on).
conf=$(echo "$r"/etc/postgresql/*/main/postgresql.conf)
[[ -f $conf ]] || { echo "no postgresql.conf" >&2; exit 1; }
cat >>"$conf" <<'PG'

# ftvm guest (scripts/build-rootfs.sh): reachable from the guest LAN.
listen_addresses = '*'
PG
hba=$(dirname "$conf")/pg_hba.conf
cat >>"$hba" <<'PG'

# ftvm guest (scripts/build-rootfs.sh), a demo setting: trust every client
# on the guest's own networks, no password.
host    all             all             samenet                 trust
PG

# nginx: the guest kernel has no IPv6, and Debian's default site also
# listens on [::]:80, which nginx would refuse to start without.
sed -i '/listen[[:space:]]*\[::\]/d' "$r/etc/nginx/sites-available/default"

# The data disk's template: what the services write moves there.
mkdir -p "$work/data"
for d in "$@"; do
	mkdir -p "$work/data/$(dirname "$d")"
	mv "$r/$d" "$work/data/$d"
	mkdir "$r/$d"
	chown --reference="$work/data/$d" "$r/$d"
	chmod --reference="$work/data/$d" "$r/$d"
	echo "$d" >>"$work/data/.ftvm-binds"
done
mkdir -p "$r/data"

# Reproducible images: fixed UUIDs, hash seeds and timestamps.
export E2FSPROGS_FAKE_TIME=1
root_kib=$(du -sk --apparent-size "$r" | cut -f1)
root_size=$(( (root_kib * 5 / 4 + 65536) / 1024 ))M
mke2fs -q -t ext4 -b 4096 -O ^has_journal -L ftvm-root -U 6674766d-726f-6f74-0000-000000000001 \
	-E hash_seed=6674766d-726f-6f74-0000-000000000001,root_owner=0:0 -d "$r" "$work/root.img" "$root_size"
mke2fs -q -t ext4 -b 4096 -L ftvm-data -U 6674766d-6461-7461-0000-000000000001 \
	-E hash_seed=6674766d-6461-7461-0000-000000000001,root_owner=0:0 -d "$work/data" "$work/data.img" "$data_size"
EOF
}

# The cache key: the recipe (bump RECIPE when a change to this script changes
# the images in a way the rest of the key does not show), the suite, the
# packages, the data disk's layout and the two scripts above.
HASH=$( {
	echo "recipe $RECIPE suite $SUITE packages $PACKAGES data $DATA_SIZE ${DATA_DIRS[*]}"
	hook_script
	images_script
} | sha256sum | cut -c1-16)
OUT=$CACHE/rootfs-$HASH
PUB=$CACHE/guest/debian

publish() {
	mkdir -p "$PUB"
	local f
	for f in root.img root.img.sha256 data.img manifest; do
		[[ $OUT/$f -ef $PUB/$f ]] && continue # published already
		# Hard links: instant, and the cached copy stays intact.
		ln -f "$OUT/$f" "$PUB/$f.tmp" 2>/dev/null || cp "$OUT/$f" "$PUB/$f.tmp"
		mv "$PUB/$f.tmp" "$PUB/$f"
	done
	echo "$HASH" >"$PUB/id"
}

if [[ -f $OUT/root.img && -f $OUT/data.img ]]; then
	stage "cached: $OUT"
	publish
	exit 0
fi

# --- 1. Host packages --------------------------------------------------------
stage "checking host packages"
# shellcheck source=apt.sh
source "$REPO/scripts/apt.sh"
apt_ensure mmdebstrap qemu-user-static binfmt-support arch-test e2fsprogs fakeroot

# --- 2. riscv64 binaries under qemu-user -------------------------------------
# Without systemd nothing registers the handler: do it once (root).
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-riscv64 ]]; then
	stage "registering qemu-riscv64 with binfmt_misc"
	if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
		"${SUDO[@]}" mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	fi
	"${SUDO[@]}" update-binfmts --enable qemu-riscv64
fi

# --- 3. mmdebstrap ------------------------------------------------------------
MIRROR=$(mirror)
WORK=$CACHE/rootfs-$HASH.tmp
rm -rf "$WORK"
mkdir -p "$WORK"
LOG=$WORK/mmdebstrap.log
hook_script >"$WORK/pgbench-hook.sh"
stage "mmdebstrap $SUITE riscv64 with $PACKAGES, and a pgbench database (2 to 5 minutes; log: $LOG)"
# Documentation, manual pages and translations are not needed to run the
# services; leaving them out makes the image a third smaller.
if ! "${SUDO[@]}" mmdebstrap --variant=essential --architectures=riscv64 \
	--include="$PACKAGES" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--customize-hook="bash $WORK/pgbench-hook.sh \"\$1\"" \
	"$SUITE" "$WORK/rootfs.tar" "$MIRROR" >"$LOG" 2>&1; then
	tail -n 30 "$LOG" >&2
	die "mmdebstrap failed (log: $LOG)"
fi
"${SUDO[@]}" chown "$(id -u):$(id -g)" "$WORK/rootfs.tar"

# --- 4. Images, without root --------------------------------------------------
# fakeroot keeps the archive's owners and device nodes in its own table;
# mke2fs -d, run in the same fakeroot session, writes them into the images.
stage "writing ext4 images (root.img read-only, data.img $DATA_SIZE)"
images_script >"$WORK/images.sh"
mkdir -p "$WORK/root"
if ! fakeroot bash "$WORK/images.sh" "$WORK" "$DATA_SIZE" "${DATA_DIRS[@]}" >>"$WORK/images.log" 2>&1; then
	tail -n 30 "$WORK/images.log" >&2
	die "writing the images failed (log: $WORK/images.log)"
fi
# The tree is only needed to write the images.
rm -rf "$WORK/root" "$WORK/data"

stage "hashing root.img"
sha256sum "$WORK/root.img" | cut -d' ' -f1 >"$WORK/root.img.sha256"
{
	echo "suite $SUITE riscv64, packages $PACKAGES"
	grep -E '^I: success' "$LOG" || true
} >"$WORK/manifest"
rm -rf "$OUT"
mv "$WORK" "$OUT"
publish
stage "done: $PUB/root.img ($(du -h --apparent-size "$OUT/root.img" | cut -f1), $(du -h "$OUT/root.img" | cut -f1) used), data.img ($(du -h "$OUT/data.img" | cut -f1) used)"
