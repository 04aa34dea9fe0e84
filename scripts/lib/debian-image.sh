# shellcheck shell=bash
# A Debian 12 root file system built with mmdebstrap from Debian packages,
# as an ext4 image plus its kernel and initrd (for direct kernel boot).
# Sourced by scripts/vf-lab.sh (the L1 image) and
# scripts/build-debian-guest.sh (the real-guest test's image).
#
#   debian_image PREFIX LABEL KEY SIZE CUSTOMIZE PACKAGE...
#
# Writes PREFIX.img, PREFIX-vmlinuz, PREFIX-initrd.img and PREFIX.stamp
# (KEY: the caller's hash of everything the image depends on). Does nothing
# when all four exist and the stamp equals KEY. CUSTOMIZE is a function
# called with the root directory after mmdebstrap (files, units, users).
# The file system is labelled LABEL (root=LABEL=...) and SIZE (mkfs.ext4 size, sparse). Needs root (mmdebstrap
# --mode=root; the files' owners must be kept).

debian_image() {
    local prefix=$1 label=$2 key=$3 size=$4 customize=$5
    shift 5
    local image=$prefix.img kernel=$prefix-vmlinuz initrd=$prefix-initrd.img
    if [[ -s $image && -s $kernel && -s $initrd && $(cat "$prefix.stamp" 2>/dev/null) == "$key" ]]; then
        echo "debian-image: up to date: $image" >&2
        return 0
    fi
    command -v mmdebstrap >/dev/null || { echo "debian-image: mmdebstrap missing (apt-get install mmdebstrap)" >&2; return 1; }
    command -v mkfs.ext4 >/dev/null || { echo "debian-image: mkfs.ext4 missing (apt-get install e2fsprogs)" >&2; return 1; }
    ((EUID == 0)) || { echo "debian-image: building $image needs root (mmdebstrap --mode=root)" >&2; return 1; }
    local t0=$SECONDS root
    root=$(mktemp -d "$(dirname "$prefix")/.root.XXXXXX")
    echo "debian-image: building $image with mmdebstrap (a few minutes; cached afterwards)" >&2
    if ! mmdebstrap --mode=root --variant=apt --include="$(
        IFS=,
        echo "$*"
    )" --aptopt='APT::Install-Recommends "false"' \
        bookworm "$root" http://deb.debian.org/debian >&2; then
        rm -rf "$root"
        echo "debian-image: mmdebstrap failed" >&2
        return 1
    fi
    if ! "$customize" "$root"; then
        rm -rf "$root"
        echo "debian-image: customizing $image failed" >&2
        return 1
    fi
    cp "$root"/boot/vmlinuz-* "$kernel.tmp"
    cp "$root"/boot/initrd.img-* "$initrd.tmp"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    rm -f "$image.tmp"
    if ! mkfs.ext4 -q -F -L "$label" -d "$root" "$image.tmp" "$size" >&2; then
        rm -rf "$root" "$image.tmp"
        echo "debian-image: mkfs.ext4 -d failed" >&2
        return 1
    fi
    rm -rf "$root"
    mv "$kernel.tmp" "$kernel"
    mv "$initrd.tmp" "$initrd"
    mv "$image.tmp" "$image"
    echo "$key" >"$prefix.stamp"
    echo "debian-image: $image built in $((SECONDS - t0)) s" >&2
}
