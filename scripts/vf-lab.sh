#!/usr/bin/env bash
# The VF lab: real SR-IOV VFs without SR-IOV hardware.
#
# A first-level guest (L1, Debian 12 built with mmdebstrap) runs under a QEMU
# that emulates an SR-IOV NIC (igb, Intel 82576; QEMU >= 8.0) and an IOMMU
# (intel-iommu, caching-mode=on). Inside L1 the igb is a real PF with real
# VFs (igbvf), vfio-pci and IOMMU groups, and teamvirt runs exactly as a user
# runs it, giving a second-level guest (L2) a VF as its failover primary.
#
#   scripts/vf-lab.sh check              # is a QEMU with igb there? (exit 3: no)
#   scripts/vf-lab.sh prepare            # get QEMU 10.0 + build the L1 image (cached)
#   scripts/vf-lab.sh run DIR OUT        # boot L1, run DIR/scenario.sh in it
#   scripts/vf-lab.sh emulator           # install QEMU 10.0 as a VM emulator, print its prefix
#   scripts/vf-lab.sh scenario OUT       # the VF scenario (scripts/vf-lab/scenario.sh)
#                                        # with $TEAMVIRT_BIN (default $CARGO_TARGET_DIR/release/teamvirt, target/ without it)
#
# `run` shares DIR read-only with L1 (at /lab) and OUT read-write (at /out);
# L1's init runs /lab/scenario.sh, writes its exit code to /out/rc and powers
# off. L1 has two NICs on one L0 hub: the igb PF and a virtio NIC that L1
# bridges for the standby taps, so the PF's VFs and the bridge share a wire.
#
# TEAMVIRT_LAB_PCAP=1 records the wire (both L0 hub ports) into
# OUT/wire-pf.pcap and OUT/wire-br.pcap.
#
# The L0 QEMU: $TEAMVIRT_LAB_QEMU, else the system's if it has igb, else
# QEMU 10.0 from Debian's bookworm-backports, downloaded with a private apt
# configuration and unpacked with dpkg -x under the cache (the host's own
# QEMU and apt sources are never changed). That QEMU runs in a private mount
# namespace where the system QEMU's module directory is replaced by its own
# (modules of another build abort it).
#
# Cache: $TEAMVIRT_LAB_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/vf-lab.
# The L1 image is rebuilt when this script's package list changes; each run
# writes to a throw-away snapshot of it.
#
# QEMU 10.0.2 places SR-IOV VF BARs above 4 GiB wrongly (the VFs never leave
# reset); every BAR is kept low: igb on pcie.0, virtio legacy
# (disable-modern=on), no 64-bit PCI hole.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TEAMVIRT_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/vf-lab}
bpo_version='1:10.0.2+ds-2+deb13u1~bpo12+1'
bpo_packages=(qemu-system-x86 qemu-system-common qemu-system-data qemu-system-gui qemu-block-extra
    qemu-system-modules-opengl qemu-system-modules-spice)
l1_packages=(linux-image-amd64 initramfs-tools kmod iproute2 iputils-ping procps mount mawk python3-minimal
    qemu-system-x86 passwd util-linux e2fsprogs bridge-utils openssh-server openssh-client)
l1_mem=${TEAMVIRT_LAB_L1_MEM:-3072}
l1_timeout=${TEAMVIRT_LAB_TIMEOUT:-1800}

log() { echo "vf-lab: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# ---- the L0 QEMU ---------------------------------------------------------
has_igb() { "$@" -machine none -device help 2>/dev/null | grep -q '"igb"'; }

private_qemu=$cache/qemu/usr/bin/qemu-system-x86_64
wrapper=$cache/qemu-l0

# Prints the command that runs the L0 QEMU, or fails.
find_qemu() {
    if [[ -n ${TEAMVIRT_LAB_QEMU:-} ]]; then
        has_igb "$TEAMVIRT_LAB_QEMU" || die "TEAMVIRT_LAB_QEMU=$TEAMVIRT_LAB_QEMU has no igb device"
        echo "$TEAMVIRT_LAB_QEMU"
    elif command -v qemu-system-x86_64 >/dev/null && has_igb qemu-system-x86_64; then
        command -v qemu-system-x86_64
    elif [[ -x $wrapper ]] && [[ $(cat "$cache/qemu.stamp" 2>/dev/null) == "$bpo_version ${bpo_packages[*]}" ]] &&
        has_igb "$wrapper"; then
        echo "$wrapper"
    else
        return 1
    fi
}

fetch_qemu() {
    command -v dpkg-deb >/dev/null || die "dpkg-deb missing"
    ((EUID == 0)) || die "fetching QEMU from bookworm-backports needs root (apt-get download)"
    local apt=$cache/apt dl
    mkdir -p "$apt"/{lists/partial,cache/archives/partial}
    echo "deb http://deb.debian.org/debian bookworm-backports main" >"$apt/sources.list"
    local o=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
    log "fetching QEMU $bpo_version from bookworm-backports (private apt lists; the system's QEMU stays)"
    apt-get "${o[@]}" update -qq >&2 || die "apt-get update of bookworm-backports failed"
    dl=$(mktemp -d)
    # Every module package too: a QEMU looks for a module it does not
    # find in its own directory in the system QEMU's, and aborts on one of
    # another build (`emulator` below runs it outside the lab's namespace).
    (cd "$dl" && apt-get "${o[@]}" download -qq "${bpo_packages[@]/%/=$bpo_version}" >&2) ||
        die "apt-get download of QEMU $bpo_version failed"
    rm -rf "$cache/qemu" && mkdir -p "$cache/qemu"
    for d in "$dl"/*.deb; do dpkg-deb -x "$d" "$cache/qemu"; done
    rm -rf "$dl"
    mkdir -p "$cache/qemu/usr/lib/x86_64-linux-gnu/qemu"
    echo "$bpo_version ${bpo_packages[*]}" >"$cache/qemu.stamp"
    # The system QEMU's module directory is compiled into the binary;
    # replace it in a private mount namespace with this build's own.
    cat >"$wrapper" <<EOF
#!/bin/sh
# L0 QEMU of the teamvirt VF lab: QEMU $bpo_version unpacked under
# $cache/qemu, with its own firmware and modules.
exec unshare --mount --propagation private sh -c 'mount --bind "\$0" /usr/lib/x86_64-linux-gnu/qemu 2>/dev/null; exec "\$@"' \\
    "$cache/qemu/usr/lib/x86_64-linux-gnu/qemu" "$private_qemu" -L "$cache/qemu/usr/share/qemu" -L /usr/share/seabios -L /usr/lib/ipxe/qemu "\$@"
EOF
    chmod 0755 "$wrapper"
    has_igb "$wrapper" || die "$private_qemu has no igb device"
}

# ---- the L1 image ----------------------------------------------------------
image=$cache/l1.img
kernel=$cache/l1-vmlinuz
initrd=$cache/l1-initrd.img

# shellcheck source=lib/debian-image.sh
. "$here/lib/debian-image.sh"

build_image() {
    local key
    key=$(printf '%s\n' "${l1_packages[@]}" "$(sed -n '/^l1_stub() {/,/^}/p' "${BASH_SOURCE[0]}")" | sha256sum | cut -c1-16)
    debian_image "$cache/l1" l1root "$key" 3G l1_customize "${l1_packages[@]}" || die "building the L1 image failed"
}

l1_customize() {
    chroot "$1" useradd --system --no-create-home --shell /usr/sbin/nologin teamvirt-qemu &&
        l1_stub >"$1/sbin/lab-init" &&
        chmod 0755 "$1/sbin/lab-init" &&
        mkdir -p "$1/lab" "$1/out"
}

# L1's PID 1 (inside the image): mounts, the two shares, then the scenario.
l1_stub() {
    cat <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
mount -o remount,rw /
echo l1 >/proc/sys/kernel/hostname
ip link set lo up
for m in 9p 9pnet_virtio; do modprobe $m; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro lab /lab || echo "LAB ERROR: no /lab share"
mount -t 9p -o trans=virtio,version=9p2000.L out /out || echo "LAB ERROR: no /out share"
echo "LAB L1 UP $(uname -r) $(cut -d' ' -f1 /proc/uptime)"
rc=1
if [ -x /lab/scenario.sh ]; then
    /lab/scenario.sh >/out/scenario.log 2>&1
    rc=$?
else
    echo "LAB ERROR: /lab/scenario.sh missing"
fi
echo "$rc" >/out/rc
echo "LAB SCENARIO rc=$rc"
sync
umount /out 2>/dev/null
echo o >/proc/sysrq-trigger
sleep 5
poweroff -f
EOF
}

run_lab() {
    local dir=$1 out=$2 qemu
    [[ -x $dir/scenario.sh ]] || die "$dir/scenario.sh missing or not executable"
    qemu=$(find_qemu) || die "no QEMU with igb; run: $0 prepare"
    [[ -s $image ]] || die "no L1 image; run: $0 prepare"
    mkdir -p "$out"
    rm -f "$out/rc"
    log "booting L1 ($qemu, TCG); console: $out/l1-console.log"
    local t0=$SECONDS rc=0 dump=()
    # The wire as L0 sees it (what the igb and L1's bridge NIC send and
    # receive), for looking at a run's frames with tcpdump/wireshark.
    if [[ -n ${TEAMVIRT_LAB_PCAP:-} ]]; then
        dump=(-object "filter-dump,id=dump-pf,netdev=wire-pf,file=$out/wire-pf.pcap,maxlen=128"
            -object "filter-dump,id=dump-br,netdev=wire-br,file=$out/wire-br.pcap,maxlen=128")
    fi
    timeout --signal=KILL "$l1_timeout" "$qemu" \
        -machine q35,accel=tcg -cpu max -smp 2 -m "$l1_mem" \
        -global q35-pcihost.pci-hole64-size=0 \
        -device intel-iommu,caching-mode=on \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 root=LABEL=l1root rw init=/sbin/lab-init intel_iommu=on panic=-1 loglevel=4" \
        -drive "file=$image,if=none,id=root,format=raw,snapshot=on,cache=unsafe" \
        -device virtio-blk-pci,drive=root,disable-modern=on,bus=pcie.0,addr=0x4 \
        -fsdev "local,id=lab,path=$dir,security_model=none,readonly=on" \
        -device virtio-9p-pci,fsdev=lab,mount_tag=lab,disable-modern=on,bus=pcie.0,addr=0x5 \
        -fsdev "local,id=out,path=$out,security_model=none" \
        -device virtio-9p-pci,fsdev=out,mount_tag=out,disable-modern=on,bus=pcie.0,addr=0x6 \
        -netdev hubport,id=wire-pf,hubid=0 \
        -device igb,netdev=wire-pf,mac=52:54:00:00:00:90,bus=pcie.0,addr=0x3 \
        -netdev hubport,id=wire-br,hubid=0 \
        -device virtio-net-pci,netdev=wire-br,mac=52:54:00:00:00:91,disable-modern=on,bus=pcie.0,addr=0x7 \
        -display none -no-user-config -nodefaults -serial "file:$out/l1-console.log" \
        "${dump[@]}" -no-reboot || rc=$?
    log "L1 ran $((SECONDS - t0)) s (QEMU exit $rc)"
    [[ -s $out/rc ]] || die "L1 ended without a scenario result (see $out/l1-console.log)"
    return "$(cat "$out/rc")"
}

# The lab directory of the VF scenario: teamvirt, the test guest (with
# igbvf), the scenario.
scenario() {
    local out=$1 bin=${TEAMVIRT_BIN:-${CARGO_TARGET_DIR:-$here/../target}/release/teamvirt} dir guest
    [[ -x $bin ]] || die "no teamvirt binary at $bin (cargo build --release, or set TEAMVIRT_BIN)"
    guest=$("$here/build-test-guest.sh" | tail -n1)
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    dir=$(mktemp -d "$cache/.lab.XXXXXX")
    mkdir -p "$dir/guest"
    cp "$bin" "$dir/teamvirt"
    cp "$guest/vmlinuz" "$guest/initramfs.cpio.gz" "$dir/guest/"
    cp "$here/vf-lab/scenario.sh" "$dir/scenario.sh"
    cp "$here/vf-lab/pinger.py" "$dir/pinger.py"
    local rc=0
    run_lab "$dir" "$out" || rc=$?
    rm -rf "$dir"
    log "scenario exit $rc; checks:"
    cat "$out/checks" >&2 2>/dev/null || true
    return "$rc"
}

# QEMU 10.0 as a VM emulator for teamvirt (the tests run their guests
# with it as well as with the system's 7.2): a root-owned copy outside
# root's home, which the unprivileged QEMU user can execute. Prints the
# prefix; use it as PATH=$prefix/usr/bin:$PATH and
# QEMU_MODULE_DIR=$prefix/usr/lib/x86_64-linux-gnu/qemu.
install_emulator() {
    local prefix=${TEAMVIRT_QEMU10_PREFIX:-/opt/teamvirt/qemu-${bpo_version#*:}}
    local want
    want=$(cat "$cache/qemu.stamp" 2>/dev/null) || die "QEMU $bpo_version not fetched; run: $0 prepare"
    if [[ $(cat "$prefix/.teamvirt-stamp" 2>/dev/null) != "$want" ]]; then
        rm -rf "$prefix"
        # Explicit modes: under a umask of 077 (some CI runners) a plain
        # mkdir makes a parent the QEMU user cannot cross, and every probe
        # of this emulator is refused.
        install -d -m 0755 "$(dirname "$prefix")"
        cp -a "$cache/qemu" "$prefix.tmp.$$"
        echo "$want" >"$prefix.tmp.$$/.teamvirt-stamp"
        chmod 755 "$prefix.tmp.$$"
        mv "$prefix.tmp.$$" "$prefix"
        log "QEMU $bpo_version installed as a VM emulator under $prefix"
    fi
    echo "$prefix"
}

case ${1:-} in
emulator)
    [[ -s $cache/qemu.stamp ]] || fetch_qemu
    install_emulator
    ;;
scenario)
    [[ $# == 2 ]] || die "usage: $0 scenario OUT"
    find_qemu >/dev/null && [[ -s $image ]] || "$0" prepare
    scenario "$2"
    ;;
check)
    find_qemu || {
        log "no QEMU with igb (>= 8.0): '$0 prepare' fetches QEMU $bpo_version from bookworm-backports into $cache"
        exit 3
    }
    ;;
prepare)
    find_qemu >/dev/null || fetch_qemu
    log "L0 QEMU: $(find_qemu) ($("$(find_qemu)" --version | head -n1))"
    build_image
    ;;
run)
    [[ $# == 3 ]] || die "usage: $0 run DIR OUT"
    run_lab "$2" "$3"
    ;;
*)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 2
    ;;
esac
