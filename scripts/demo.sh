#!/usr/bin/env bash
# The README's first command: set up a fresh Debian 12 machine and run the
# bundled example end to end, in lab mode (no SR-IOV hardware needed: each VF
# primary is replaced, visibly, by an emulated e1000e NIC).
#
#   scripts/demo.sh            # as root on a fresh machine
#
# Steps: install QEMU and guest-building tools, build teamvirt, build the
# test guest, validate the example, define its VF pool and domain in a
# throw-away state directory, start it under TCG, show the teaming state,
# live-migrate it to a second state directory (the "destination host") and
# show the phases, then stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if ! command -v qemu-system-x86_64 >/dev/null || ! command -v cpio >/dev/null; then
    step "Installing QEMU and guest-building tools (Debian packages)"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        qemu-system-x86 kmod cpio busybox-static iproute2 >/dev/null
fi

step "Building teamvirt"
cargo build --release -q
tv() { printf '$ teamvirt %s\n' "$*"; ./target/release/teamvirt "$@"; }

step "Building the test guest (Debian kernel + busybox initramfs, cached)"
guest=${TEAMVIRT_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/guest}
run ./scripts/build-test-guest.sh "$guest"

work=$(mktemp -d /tmp/teamvirt-demo.XXXXXX)
src="$work/src-host"
dst="$work/dst-host"
cleanup() {
    ./target/release/teamvirt destroy --state-dir "$src" teaming-q35 >/dev/null 2>&1 || true
    ./target/release/teamvirt destroy --state-dir "$dst" teaming-q35 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The example refers to the guest kernel under /var/cache/teamvirt/guest;
# point it at the guest just built.
sed "s#/var/cache/teamvirt/guest#$guest#g" examples/teaming-q35.xml > "$work/teaming-q35.xml"

# What the guest itself says: its net_failover master and slaves, from the
# kernel messages the test guest copies to its serial console.
guest_view() {
    local log="$1/run/teaming-q35/serial.log"
    for _ in $(seq 75); do
        grep -aq 'failover primary slave:.* registered' "$log" 2>/dev/null && break
        sleep 0.2
    done
    echo "guest console ($log):"
    grep -ao 'virtio_net [^ ]* [^ ]* failover [^ ]* [^ ]* registered' "$log" | sort -u | sed 's/^/  /' || true
}

step "Validating the example (libvirt's checks plus teamvirt's)"
tv validate examples/teaming-q35.xml examples/vfpool-network.xml

step "The QEMU command line libvirt would build for it"
tv domxml-to-native --network examples/vfpool-network.xml "$work/teaming-q35.xml"

step "Defining the VF pool and the domain on two hosts (state directories)"
for host in "$src" "$dst"; do
    tv net-define --state-dir "$host" --emulate-vf examples/vfpool-network.xml
done
tv define --state-dir "$src" "$work/teaming-q35.xml"

step "Starting it in lab mode under TCG and waiting for the guest to negotiate failover"
tv start --state-dir "$src" teaming-q35 --emulate-vf --accel tcg --wait-failover=60
tv teaming --state-dir "$src" teaming-q35
guest_view "$src"
tv net-list --state-dir "$src"

step "Live-migrating it to the destination host: unplug, migrate, replug"
tv migrate --state-dir "$src" teaming-q35 --dest-state-dir "$dst" --persistent --undefinesource
tv teaming --state-dir "$dst" teaming-q35
guest_view "$dst"
tv net-list --state-dir "$src"
tv net-list --state-dir "$dst"

step "Stopping it"
tv destroy --state-dir "$dst" teaming-q35
tv domstate --state-dir "$dst" teaming-q35
