#!/bin/sh
# Build the guest initramfs: the agent (kernel/agent, static with musl-gcc) as
# /init, plus the empty directories it mounts on, in an uncompressed newc cpio.
# The result is cached under $RUNV_CACHE, keyed by a hash of the agent's
# sources and this script; the path is printed on stdout.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${RUNV_CACHE:-/var/cache/runv}
srcs=$(cd "$here/agent" && ls *.c *.h | LC_ALL=C sort)
key=$( { cat "$0"; for f in $srcs; do echo "$f"; cat "$here/agent/$f"; done; } | sha256sum | cut -c1-16)
out="$cache/initramfs-$key"

if [ -f "$out/initramfs.cpio" ]; then
    echo "$out/initramfs.cpio"
    exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/ibuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building guest initramfs $key" >&2
stage="$work/root"
mkdir -p "$stage/dev" "$stage/proc" "$stage/sys" "$stage/run" "$stage/rootfs" "$stage/tmp"
chmod 1777 "$stage/tmp"
(cd "$here/agent" && musl-gcc -static -Os -Wall -Wextra -D_GNU_SOURCE -s -o "$stage/init" $(echo "$srcs" | grep '\.c$'))
chmod 0755 "$stage/init"
# The kernel opens /dev/console for PID 1 before the agent mounts devtmpfs.
mknod "$stage/dev/console" c 5 1 2>/dev/null && chmod 0600 "$stage/dev/console" ||
    echo "note: no /dev/console in the initramfs (mknod needs root)" >&2
find "$stage" -exec touch -h -d @0 {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc -R 0:0 --reproducible --quiet) >"$work/initramfs.cpio"
mkdir -p "$out.tmp"
mv "$work/initramfs.cpio" "$out.tmp/"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out/initramfs.cpio"
