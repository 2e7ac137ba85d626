#!/bin/sh
# Build the guest kernel (an uncompressed vmlinux that QEMU's microvm boots
# through PVH) from Debian's linux-source-6.1 and runv's config fragment.
# The result is cached under $RUNV_CACHE, keyed by a hash of the fragment,
# this script and the source package version; the path is printed on stdout.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${RUNV_CACHE:-/var/cache/runv}
src_tar=/usr/src/linux-source-6.1.tar.xz
src_version=$(dpkg-query -W -f '${Version}' linux-source-6.1)
key=$( { cat "$here/guest.config" "$0"; echo "$src_version"; } | sha256sum | cut -c1-16)
out="$cache/kernel-$key"

if [ -f "$out/vmlinux" ]; then
    echo "$out/vmlinux"
    exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/kbuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building guest kernel $key from linux-source $src_version (several minutes)" >&2
tar -C "$work" -xJf "$src_tar"
ksrc=$(echo "$work"/linux-source-*)
{
    make -C "$ksrc" tinyconfig
    "$ksrc/scripts/kconfig/merge_config.sh" -m -O "$ksrc" "$ksrc/.config" "$here/guest.config"
    make -C "$ksrc" olddefconfig
    make -C "$ksrc" -j"$(nproc)" vmlinux
} >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; exit 1; }
# Report fragment options the kernel did not take (a typo or a missing dependency).
missing=$(grep -E '^CONFIG_[A-Z0-9_]+=y' "$here/guest.config" | while read -r opt; do
    grep -qx "$opt" "$ksrc/.config" || echo "$opt"; done)
[ -z "$missing" ] || echo "note: not set in the final config: $(echo $missing)" >&2
mkdir -p "$out.tmp"
cp "$ksrc/vmlinux" "$ksrc/.config" "$out.tmp/"
strip --strip-debug "$out.tmp/vmlinux" 2>/dev/null || true
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out/vmlinux"
