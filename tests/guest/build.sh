#!/usr/bin/env bash
# Build the vmsnap test guest: a Debian cloud kernel plus an initramfs (busybox + the static test agent).
#
# Output, cached outside the repo in ${VMSNAP_TEST_CACHE:-$HOME/.cache/vmsnap}/guest/:
#   vmlinuz, initrd.gz, append (kernel command line), guest.json (all three paths + versions).
# The kernel is downloaded once (apt-get download) and kept; the initramfs is rebuilt only when the agent, /init or
# this script change (the cache is keyed on their hash). Silent on success.
#
# Usage: build.sh [--json] [--update-kernel]
#   --json           print guest.json on stdout after building
#   --update-kernel  resolve linux-image-cloud-amd64 again and fetch its kernel if it changed
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VMSNAP_TEST_CACHE:-$HOME/.cache/vmsnap}/guest
print_json=0 update_kernel=0
for a in "$@"; do
    case $a in
        --json) print_json=1 ;;
        --update-kernel) update_kernel=1 ;;
        *) echo "usage: build.sh [--json] [--update-kernel]" >&2; exit 2 ;;
    esac
done

die() { echo "build.sh: $*" >&2; exit 1; }

mkdir -p "$cache"
# Parallel test runs call us concurrently: one builder at a time.
exec 9>"$cache/.lock"
flock 9

mods=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)

# --- kernel: fetched once, then pinned (offline reruns keep working) -----------------------------------------------
resolve_kernel_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9].*-cloud-amd64/ {print $2; exit}' || true
}

fetch_kernel() {
    local pkg abi tmp deb
    pkg=$(resolve_kernel_pkg)
    # Package lists absent or stale (a fresh machine that never ran apt-get update): refresh once, as root.
    if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq >/dev/null 2>&1 || true
        pkg=$(resolve_kernel_pkg)
    fi
    [ -n "$pkg" ] || die "cannot resolve the kernel package from 'apt-cache depends linux-image-cloud-amd64' (run apt-get update?)"
    pkg=${pkg%-unsigned}-unsigned
    abi=${pkg#linux-image-}; abi=${abi%-unsigned}
    if [ -f "$cache/kernel/$abi/vmlinuz" ]; then echo "$abi" > "$cache/kernel/current"; return; fi
    tmp=$(mktemp -d "$cache/.kdl.XXXXXX")
    trap 'rm -rf "$tmp"' RETURN
    deb=$(ls /var/cache/apt/archives/"${pkg}"_*.deb 2>/dev/null | tail -1 || true)
    if [ -z "$deb" ]; then
        chmod 755 "$tmp"
        (cd "$tmp" && apt-get download -q "$pkg") > "$tmp/log" 2>&1 || { cat "$tmp/log" >&2; die "apt-get download $pkg failed"; }
        deb=$(ls "$tmp"/*.deb | head -1)
    fi
    dpkg-deb -x "$deb" "$tmp/x" || die "cannot unpack $deb"
    mkdir -p "$tmp/k/modules"
    cp "$tmp"/x/boot/vmlinuz-* "$tmp/k/vmlinuz"
    for m in "${mods[@]}"; do
        f=$(find "$tmp/x/lib/modules" -name "$m.ko" | head -1)
        [ -n "$f" ] || die "module $m.ko not found in $pkg"
        cp "$f" "$tmp/k/modules/"
    done
    echo "$pkg" > "$tmp/k/package"
    mkdir -p "$cache/kernel"
    rm -rf "$cache/kernel/$abi"
    mv "$tmp/k" "$cache/kernel/$abi"
    echo "$abi" > "$cache/kernel/current.tmp" && mv "$cache/kernel/current.tmp" "$cache/kernel/current"
}

if [ "$update_kernel" = 1 ] || [ ! -s "$cache/kernel/current" ] ||
   [ ! -f "$cache/kernel/$(cat "$cache/kernel/current")/vmlinuz" ]; then
    fetch_kernel
fi
abi=$(cat "$cache/kernel/current")
kdir=$cache/kernel/$abi

# --- initramfs: rebuilt when its inputs change ------------------------------------------------------------------------
append="console=ttyS0 quiet loglevel=1 panic=-1"
key=$( { cat "$here/build.sh" "$here/init" "$here/agent.c"; echo "$abi"; } | sha256sum | cut -c1-16)

# One initramfs per key: worktrees with different agents share the cache without swapping each other's initrd
# under a running test (a VM started later would boot the other agent).
initrd=$cache/initrd-$key.gz
if [ ! -f "$initrd" ]; then
    command -v cpio >/dev/null || die "cpio not found (apt-get install cpio)"
    bb=/bin/busybox
    "$bb" --list 2>/dev/null | grep -qx mke2fs || die "$bb is not busybox-static (apt-get install busybox-static)"
    ! ldd "$bb" >/dev/null 2>&1 || die "$bb is not statically linked (apt-get install busybox-static)"
    tmp=$(mktemp -d "$cache/.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    root=$tmp/root
    mkdir -p "$root"/{bin,dev,proc,sys,tmp,mnt,lib/modules}
    gcc -std=gnu11 -O2 -Wall -Wextra -Werror -pedantic -static -pthread -o "$root/bin/agent" "$here/agent.c" ||
        die "compiling agent.c failed"
    cp "$bb" "$root/bin/busybox"
    for a in $("$bb" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
    cp "$here/init" "$root/init"; chmod 755 "$root/init"
    cp "$kdir"/modules/*.ko "$root/lib/modules/"
    (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio -o -H newc -0 --quiet --owner=0:0 --reproducible) |
        gzip -6 > "$tmp/initrd.gz"
    mv "$tmp/initrd.gz" "$initrd"
    find "$cache" -maxdepth 1 -name 'initrd-*.gz' -mtime +7 -delete  # initramfs of long-gone agents
fi
touch "$initrd"
if [ "$(cat "$cache/stamp" 2>/dev/null || true)" != "$key" ] || ! cmp -s "$kdir/vmlinuz" "$cache/vmlinuz"; then
    cp "$kdir/vmlinuz" "$cache/vmlinuz.tmp" && mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
    echo "$append" > "$cache/append"
    cat > "$cache/guest.json.tmp" <<EOF
{"kernel": "$cache/vmlinuz", "initrd": "$initrd", "append": "$append",
 "kernel_package": "$(cat "$kdir/package")", "key": "$key"}
EOF
    mv "$cache/guest.json.tmp" "$cache/guest.json"
    echo "$key" > "$cache/stamp"
fi

[ "$print_json" = 1 ] && cat "$cache/guest.json"
exit 0
