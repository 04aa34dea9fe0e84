#!/bin/bash
# Build the teamvirt test guest: a stock Debian kernel plus a busybox
# initramfs that loads the virtio-net failover modules and reports the
# guest's network state on the serial console (see guest/init).
#
#   scripts/build-test-guest.sh [OUTDIR]
#
# OUTDIR defaults to $TEAMVIRT_GUEST_DIR, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/guest. Produces OUTDIR/vmlinuz and
# OUTDIR/initramfs.cpio.gz. Cached: rebuilt only when they are missing or
# when this script or guest/* changed (hash in OUTDIR/.stamp).
#
# Only Debian packages are used: the kernel package linux-image-amd64
# depends on is fetched with `apt-get download` (never installed) and
# unpacked; host tools (kmod, cpio, busybox-static, iproute2) are installed
# with apt-get when missing and running as root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
guest_src=$repo/guest
out=${1:-${TEAMVIRT_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/guest}}

# Modules the guest needs, named by what must end up loaded; their
# dependencies are resolved with modprobe --show-depends, deps first.
# Expected order: virtio_ring virtio virtio_pci_modern_dev
# virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net e1000e
# vmxnet3 igbvf button evdev. vmxnet3: lab mode's primary; e1000e: the tests
# that drive QEMU directly, as the recipe does; igbvf: the VF lab's real VF
# primary (scripts/vf-lab.sh). button + evdev: the ACPI power
# button reaches busybox acpid (guest/init), so `teamvirt shutdown` powers
# the guest off.
modules=(virtio_pci virtio_net e1000e vmxnet3 igbvf button evdev)

log() { echo "build-test-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)

# One builder at a time per OUTDIR (parallel test processes).
exec 9>"$out/.build.lock"
flock 9

hash=$( (cat "${BASH_SOURCE[0]}"; cd "$guest_src" && find . -type f | LC_ALL=C sort | xargs cat) | sha256sum | cut -d' ' -f1)
if [[ -s $out/vmlinuz && -s $out/initramfs.cpio.gz && -f $out/.stamp && $(cat "$out/.stamp") == "$hash" ]]; then
    log "up to date: $out"
    echo "$out"
    exit 0
fi

# ---- host tools -------------------------------------------------------
need_pkgs=()
command -v depmod >/dev/null || need_pkgs+=(kmod)
[[ -x /usr/sbin/modprobe || -x /sbin/modprobe ]] || need_pkgs+=(kmod)
command -v cpio >/dev/null || need_pkgs+=(cpio)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need_pkgs+=(busybox-static)
[[ -x /usr/sbin/ip || -x /sbin/ip || -x /bin/ip ]] || need_pkgs+=(iproute2)
command -v flock >/dev/null || need_pkgs+=(util-linux)
if ((${#need_pkgs[@]})); then
    ((EUID == 0)) || die "missing host packages: ${need_pkgs[*]} (run as root, or: apt-get install -y ${need_pkgs[*]})"
    log "installing host tools: ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2; }
fi
export PATH=$PATH:/usr/sbin:/sbin
modprobe=$(command -v modprobe) || die "modprobe not found"
ip_bin=$(command -v ip) || die "ip (iproute2) not found"
busybox=/bin/busybox
[[ -x $busybox ]] || busybox=$(command -v busybox) || die "busybox not found"
{ ldd "$busybox" 2>&1 || true; } | grep -q 'not a dynamic' || die "$busybox is not static (install busybox-static)"

# ---- kernel -----------------------------------------------------------
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}'; }
pkg=$(kpkg)
if [[ -z $pkg ]]; then
    ((EUID == 0)) || die "apt-cache knows no linux-image-amd64 (run apt-get update as root)"
    log "apt-get update (no package lists)"
    apt-get update >&2
    pkg=$(kpkg)
fi
[[ -n $pkg ]] || die "cannot resolve the kernel package of linux-image-amd64 via apt-cache depends"
kver=${pkg#linux-image-}
log "kernel package $pkg (not installed, only downloaded and unpacked)"

debs=$out/debs
mkdir -p "$debs"
deb=$(ls "$debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
if [[ -z $deb ]]; then
    # apt's download sandbox user must be able to write here; a private
    # temp dir avoids the "_apt" permission warning on root-owned caches.
    dl=$(mktemp -d)
    chmod 777 "$dl"
    (cd "$dl" && apt-get download "$pkg" >&2) || die "apt-get download $pkg failed"
    rm -f "$debs"/linux-image-*.deb
    mv "$dl"/"${pkg}"_*.deb "$debs/"
    rmdir "$dl"
    deb=$(ls "$debs/${pkg}_"*.deb | head -n1)
fi

work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
kroot=$work/kroot
log "unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$kroot"
[[ -f $kroot/boot/vmlinuz-$kver ]] || die "no boot/vmlinuz-$kver in $deb"
depmod -b "$kroot" "$kver"

# ---- initramfs tree ---------------------------------------------------
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,etc}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$guest_src/init" "$root/init"

# Dependencies first, each once, in modprobe's order.
order=()
while read -r verb path _; do
    [[ $verb == insmod ]] || continue
    rel=${path#"$kroot"}
    case " ${order[*]-} " in *" $rel "*) continue ;; esac
    order+=("$rel")
done < <(for m in "${modules[@]}"; do "$modprobe" -d "$kroot" -S "$kver" --show-depends "$m"; done)
((${#order[@]})) || die "modprobe resolved no modules for ${modules[*]}"
: >"$root/modules.order"
for rel in "${order[@]}"; do
    mkdir -p "$root$(dirname "$rel")"
    case $rel in
        # busybox insmod cannot decompress; store plain .ko.
        *.ko.xz) xz -dc "$kroot$rel" >"$root${rel%.xz}"; rel=${rel%.xz} ;;
        *.ko.zst) zstd -qdc "$kroot$rel" >"$root${rel%.zst}"; rel=${rel%.zst} ;;
        *.ko.gz) gzip -dc "$kroot$rel" >"$root${rel%.gz}"; rel=${rel%.gz} ;;
        *) cp "$kroot$rel" "$root$rel" ;;
    esac
    echo "$rel" >>"$root/modules.order"
done
log "modules: $(xargs -n1 basename <"$root/modules.order" | tr '\n' ' ')"

# iproute2's ip (busybox ip lacks -d) with the libraries it links.
cp -L "$ip_bin" "$root/usr/sbin/ip"
for lib in $(ldd "$ip_bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

# The kernel opens /dev/console before init runs, i.e. before devtmpfs.
if ((EUID == 0)); then
    mknod -m 600 "$root/dev/console" c 5 1
    cpio_owner=(-R 0:0)
    archive() { (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc "${cpio_owner[@]}" --quiet); }
elif command -v fakeroot >/dev/null; then
    archive() { fakeroot -- sh -c "mknod -m 600 '$root/dev/console' c 5 1 && cd '$root' && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet"; }
else
    die "creating /dev/console needs root or fakeroot"
fi

archive | gzip -9 >"$work/initramfs.cpio.gz"
cp "$kroot/boot/vmlinuz-$kver" "$work/vmlinuz"
mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
echo "$kver" >"$out/kernel-version"
echo "$hash" >"$out/.stamp"
log "built $out/vmlinuz ($(stat -c %s "$out/vmlinuz") B) and $out/initramfs.cpio.gz ($(stat -c %s "$out/initramfs.cpio.gz") B), kernel $kver"
echo "$out"
