#!/usr/bin/env bash
# Builds the kacs kernel: Debian's linux-source-6.1 with kacs.patch, configured and built by
# `provium kernel build` (tinyconfig + Provium's fragment). Prints the tree's path.
#
# The result is cached by a hash of the source package's version, the patch and Provium's
# fragment, under $PROVIUM_HOME/kernels/trees/kacs-HASH (about 15 MB: the image, its .config,
# its uapi headers and its syscall declarations): a warm cache pays nothing. A cold build takes
# about 12 minutes on 2 cores (139 MB download, 20 s to unpack, 500-750 CPU-seconds of make).
#
#   examples/custom-syscall/build.sh           build unless cached; print the tree
#   examples/custom-syscall/build.sh --check   print the tree if it is built, else fail
#
# Environment: PROVIUM_HOME (the cache), PROVIUM_BIN (default: target/release/provium).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
home=${PROVIUM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/provium}
provium=${PROVIUM_BIN:-$root/target/release/provium}

version=$(apt-cache policy linux-source-6.1 2>/dev/null | awk '/Candidate:/ { print $2 }')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "build.sh: apt knows no linux-source-6.1 (run apt-get update?)" >&2
    exit 1
fi
key=$( { echo "$version"; cat "$here/kacs.patch" "$root/runtime/kernel/provium.config"; } | sha256sum | cut -c1-16)
dest="$home/kernels/trees/kacs-$key"
if [ -f "$dest/arch/x86/boot/bzImage" ]; then
    echo "$dest"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "build.sh: the kacs kernel is not built (for linux-source-6.1 $version); run examples/custom-syscall/build.sh (scripts/setup does)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/provium-kacs.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 777 "$work"  # apt's download sandbox user writes here
echo "build.sh: fetching linux-source-6.1 $version" >&2
(cd "$work" && apt-get download -q "linux-source-6.1=$version" 2>&1 | grep -v "^W: Download is performed unsandboxed" >&2 || true)
deb=$(ls "$work"/linux-source-6.1_*.deb)
echo "build.sh: unpacking and patching" >&2
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" ./usr/src/linux-source-6.1.tar.xz
tar -xJf "$work/usr/src/linux-source-6.1.tar.xz" -C "$work"
rm -f "$deb" "$work/usr/src/linux-source-6.1.tar.xz"
tree="$work/linux-source-6.1"
patch -s -d "$tree" -p1 < "$here/kacs.patch"
"$provium" kernel build "$tree" >&2

# What Provium uses of the tree: the image and its .config, the uapi headers (the tree's
# syscall table and linux/kacs.h) and the syscall declarations (`provium gen --kernel`).
rm -rf "$dest.partial"
mkdir -p "$dest.partial/arch/x86/boot" "$dest.partial/include/linux" "$dest.partial/arch/x86/entry/syscalls"
cp "$tree/arch/x86/boot/bzImage" "$dest.partial/arch/x86/boot/"
cp "$tree/.config" "$tree/Makefile" "$dest.partial/"
cp -r "$tree/usr/include" "$dest.partial/usr-include.tmp"
mkdir -p "$dest.partial/usr"
mv "$dest.partial/usr-include.tmp" "$dest.partial/usr/include"
cp "$tree/include/linux/syscalls.h" "$dest.partial/include/linux/"
cp "$tree/arch/x86/entry/syscalls/syscall_64.tbl" "$dest.partial/arch/x86/entry/syscalls/"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "$dest"
