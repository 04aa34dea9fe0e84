#!/usr/bin/env bash
# The README's first command: set up a fresh Debian 12 machine and run the
# bundled example end to end, in lab mode (no SR-IOV hardware needed: each VF
# primary is replaced, visibly, by an emulated vmxnet3 NIC).
#
#   scripts/demo.sh            # as root on a fresh machine
#
# Steps: install QEMU and guest-building tools, build teamvirt, build the
# test guest, validate the example, make a private network namespace with a
# bridge br0 (the "wire"; the machine's own links are never touched), define
# the example's networks on two "hosts" (two state directories): 'lan' on
# br0 for the standby, the VF pool in lab mode with each emulated VF a tap on
# br0 too; start the VM under TCG, show the teaming state, ping the guest at
# 100 packets per second while it live-migrates to the second host, print
# the packets lost and the longest gap, then stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if ! command -v qemu-system-x86_64 >/dev/null || ! command -v cpio >/dev/null ||
    ! command -v ping >/dev/null; then
    step "Installing QEMU and guest-building tools (Debian packages)"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        qemu-system-x86 kmod cpio busybox-static iproute2 iputils-ping >/dev/null
fi

step "Building teamvirt (the first build takes minutes: cargo shows each crate)"
cargo build --release
# Where cargo put it: $CARGO_TARGET_DIR when set (relative to the checkout).
bin=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/teamvirt
ns=tv-demo-$$
tv() { printf '$ teamvirt %s\n' "$*"; ip netns exec "$ns" "$bin" "$@"; }

step "Building the test guest (Debian kernel + busybox initramfs, cached)"
guest=${TEAMVIRT_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/guest}
run ./scripts/build-test-guest.sh "$guest"
# The bundled example boots the guest from here: after this script,
# `teamvirt define examples/teaming-q35.xml` + `start` work as shipped.
system_guest=/var/cache/teamvirt/guest
run install -D -m 0644 -t "$system_guest" "$guest/vmlinuz" "$guest/initramfs.cpio.gz"

work=$(mktemp -d /tmp/teamvirt-demo.XXXXXX)
src="$work/src-host"
dst="$work/dst-host"
cleanup() {
    [[ -n ${ping_pid:-} ]] && kill "$ping_pid" 2>/dev/null
    for h in "$src" "$dst"; do
        ip netns exec "$ns" "$bin" destroy --state-dir "$h" teaming-q35 >/dev/null 2>&1 || true
    done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The example as shipped, but for the guest's address: 10.77.0.2 on its
# failover master (the test guest's e2e.ip), for the pings.
sed -e "s#<cmdline>console=ttyS0 panic=-1</cmdline>#<cmdline>console=ttyS0 panic=-1 e2e.ip=10.77.0.2/24</cmdline>#" \
    examples/teaming-q35.xml > "$work/teaming-q35.xml"

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

step "A private network namespace with a bridge br0 (10.77.0.1/24): the wire"
run ip netns add "$ns"
run ip -n "$ns" link set lo up
run ip -n "$ns" link add br0 type bridge
run ip -n "$ns" addr add 10.77.0.1/24 dev br0
run ip -n "$ns" link set br0 up

step "Validating the example (libvirt's checks plus teamvirt's)"
tv validate examples/teaming-q35.xml examples/vfpool-network.xml examples/lan-network.xml

step "The QEMU command line it runs with below: TCG, lab mode (tap fds and paths as in libvirt's tests)"
tv domxml-to-native --test-env --accel tcg --emulate-vf --network examples/vfpool-network.xml --network examples/lan-network.xml "$work/teaming-q35.xml"

step "Defining the networks and the domain on two hosts (state directories)"
for host in "$src" "$dst"; do
    tv net-define --state-dir "$host" examples/lan-network.xml
    tv net-define --state-dir "$host" --emulate-vf --lab-bridge br0 examples/vfpool-network.xml
done
tv define --state-dir "$src" "$work/teaming-q35.xml"

step "Starting it in lab mode under TCG and waiting for the guest to negotiate failover"
tv start --state-dir "$src" teaming-q35 --emulate-vf --accel tcg --wait-failover=60
tv teaming --state-dir "$src" teaming-q35
guest_view "$src"
tv net-list --state-dir "$src"

echo "bridge ports (standby and lab VF taps):"
ip -n "$ns" -br link show master br0 | sed 's/^/  /'

step "Pinging the guest from the bridge at 100 packets per second"
ip netns exec "$ns" ping -D -n -i 0.01 -W 1 10.77.0.2 > "$work/ping.log" 2>/dev/null &
ping_pid=$!
for _ in $(seq 300); do
    [[ $(grep -c icmp_seq "$work/ping.log") -gt 100 ]] && break
    sleep 0.2
done
grep -c icmp_seq "$work/ping.log" | sed 's/^/replies so far: /'

step "Live-migrating it to the destination host: unplug, migrate, replug"
t0=$(date +%s.%N)
tv migrate --state-dir "$src" teaming-q35 --dest-state-dir "$dst" --persistent --undefinesource
t1=$(date +%s.%N)
sleep 5
kill "$ping_pid"; wait "$ping_pid" 2>/dev/null || true; ping_pid=
# Replies from the migration's start to 5 s after its end: sequence numbers
# say how many were sent; the timestamps give the longest silence.
awk -v t0="$t0" -v t1="$t1" '
    /icmp_seq=/ {
        t = substr($1, 2, length($1) - 2) + 0
        if (t < t0 || t > t1 + 5) next
        split($0, a, "icmp_seq="); split(a[2], b, " "); s = b[1] + 0
        if (!n++) { first = s; prev = t0 }
        if (t - prev > gap) gap = t - prev
        prev = t; last = s; got[s] = 1
    }
    END {
        if (t1 + 5 - prev > gap) gap = t1 + 5 - prev
        for (s in got) recv++
        sent = last - first + 1
        printf "through the migration (%.1f s, plus 5 s after): %d of %d packets lost, longest gap %.0f ms\n",
            t1 - t0, sent - recv, sent, gap * 1000
    }' "$work/ping.log"
tv teaming --state-dir "$dst" teaming-q35
guest_view "$dst"
tv net-list --state-dir "$src"
tv net-list --state-dir "$dst"

step "Stopping it"
tv destroy --state-dir "$dst" teaming-q35
tv domstate --state-dir "$dst" teaming-q35
