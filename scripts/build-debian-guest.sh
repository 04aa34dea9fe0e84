#!/usr/bin/env bash
# Build the real-distro test guest: Debian 12 from Debian packages with
# mmdebstrap (kernel 6.1, systemd with logind and dbus, udev, ifupdown,
# qemu-guest-agent), for
# direct kernel boot from a virtio disk (crates/cli/tests/real_guest.rs).
#
#   scripts/build-debian-guest.sh [OUTDIR]
#
# OUTDIR defaults to $TEAMVIRT_DEBIAN_GUEST_DIR, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/debian-guest. Produces
# OUTDIR/debian.img (ext4, label tvroot), OUTDIR/debian-vmlinuz and
# OUTDIR/debian-initrd.img, and prints OUTDIR. Cached: rebuilt when missing
# or when this script, the package list or guest/init's reporter changed.
#
# The guest: root on /dev/vda (root=LABEL=tvroot rw); its network
# configuration is picked by tvnet= on the kernel command line (tv-netcfg):
# `ifupdown` (the default) gives the failover master enp1s0 the static
# address 10.78.0.2/24 and the default route via 10.78.0.1 (a real guest's
# own configuration, not the test's); `networkd-master` does the same with
# systemd-networkd; `networkd-en` (`[Match] Name=en*`) and `ifupdown-slave`
# (the standby slave configured) are the traps the guest doctor flags.
# tv-report.service prints guest/init's
# `E2E STATE` lines (interfaces, masters, PCI devices) on ttyS0 whenever
# they change and every 5 s with an `E2E HB` line, so testinfra's SerialLog
# reads it like the busybox guest; qemu-guest-agent on the
# org.qemu.guest_agent.0 port when the domain has that channel.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:-${TEAMVIRT_DEBIAN_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/debian-guest}}
packages=(linux-image-amd64 initramfs-tools systemd systemd-sysv udev kmod ifupdown isc-dhcp-client
    iproute2 qemu-guest-agent procps dbus)

mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.build.lock"
flock 9

# The reporter's functions, shared with the busybox guest's init.
reporter_funcs() {
    sed -n -e '/^pci_of() {/,/^}/p' -e '/^state() {/,/^}/p' -e '/^uptime_s() {/p' "$repo/guest/init"
}

customize() {
    local root=$1
    {
        echo '#!/bin/sh'
        echo '# The guest network state on the serial console (see scripts/build-debian-guest.sh).'
        reporter_funcs
        cat <<'EOS'
prev=""
last_hb=0
while :; do
    cur=$(state)
    now=$(uptime_s)
    secs=${now%.*}
    # Also with every heartbeat: a change quicker than a poll (the primary
    # unplugged, the guest paused for the copy, re-plugged and enslaved on
    # the destination) still shows up there.
    if [ "$cur" != "$prev" ] || [ $((secs - last_hb)) -ge 5 ]; then
        echo "E2E STATE up=$now $cur END"
        prev=$cur
    fi
    if [ $((secs - last_hb)) -ge 5 ]; then
        echo "E2E HB up=$now"
        last_hb=$secs
    fi
    sleep 0.5
done
EOS
    } >"$root/usr/local/sbin/tv-report"
    chmod 0755 "$root/usr/local/sbin/tv-report"
    cat >"$root/etc/systemd/system/tv-report.service" <<'EOS'
[Unit]
Description=teamvirt test: network state on ttyS0
DefaultDependencies=no
After=systemd-udevd.service

[Service]
ExecStart=/usr/local/sbin/tv-report
StandardOutput=tty
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no

[Install]
WantedBy=sysinit.target
EOS
    ln -sf /etc/systemd/system/tv-report.service "$root/etc/systemd/system/sysinit.target.wants/tv-report.service"
    # The network configuration is chosen at boot by tvnet= on the kernel
    # command line (one image for every configuration the guest doctor
    # test checks): tv-netcfg writes it under /run before ifupdown or
    # systemd-networkd start.
    cat >"$root/etc/network/interfaces" <<'EOS'
auto lo
iface lo inet loopback

# Written at boot by tv-netcfg from tvnet= on the kernel command line.
source /run/tvnet/interfaces
EOS
    cat >"$root/usr/local/sbin/tv-netcfg" <<'EOS'
#!/bin/sh
# The guest's network configuration, by tvnet= on the kernel command line
# (see scripts/build-debian-guest.sh). The address is always 10.78.0.2/24,
# the gateway 10.78.0.1.
mode=ifupdown
for a in $(cat /proc/cmdline); do
    case $a in tvnet=*) mode=${a#tvnet=} ;; esac
done
mkdir -p /run/tvnet /run/systemd/network
: >/run/tvnet/interfaces
net=/run/systemd/network/10-tv.network
case $mode in
ifupdown)
    # Documented-good: the failover master only (the standby's name; its
    # slaves are enp1s0nsby and the primary).
    printf '%s\n' 'allow-hotplug enp1s0' 'iface enp1s0 inet static' \
        '    address 10.78.0.2/24' '    gateway 10.78.0.1' >/run/tvnet/interfaces
    ;;
ifupdown-slave)
    # The trap: the address and the default route on a slave.
    printf '%s\n' 'auto enp1s0nsby' 'iface enp1s0nsby inet static' \
        '    address 10.78.0.2/24' '    gateway 10.78.0.1' >/run/tvnet/interfaces
    ;;
networkd-en)
    # The trap: Name=en* matches the master and both slaves.
    printf '%s\n' '[Match]' 'Name=en*' '' '[Network]' 'Address=10.78.0.2/24' \
        'Gateway=10.78.0.1' >"$net"
    systemctl start --no-block systemd-networkd.service
    ;;
networkd-master)
    # Documented-good: the master by name; the slaves stay unmanaged.
    printf '%s\n' '[Match]' 'Name=enp1s0' '' '[Network]' 'Address=10.78.0.2/24' \
        'Gateway=10.78.0.1' >"$net"
    systemctl start --no-block systemd-networkd.service
    ;;
esac
EOS
    chmod 0755 "$root/usr/local/sbin/tv-netcfg"
    cat >"$root/etc/systemd/system/tv-netcfg.service" <<'EOS'
[Unit]
Description=teamvirt test: network configuration from tvnet=
DefaultDependencies=no
After=systemd-remount-fs.service
Before=network-pre.target networking.service ifupdown-pre.service systemd-networkd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/tv-netcfg

[Install]
WantedBy=sysinit.target
EOS
    ln -sf /etc/systemd/system/tv-netcfg.service "$root/etc/systemd/system/sysinit.target.wants/tv-netcfg.service"
    # networkd is not enabled: tv-netcfg starts it in the networkd
    # configurations only (one service less in the others: less guest
    # memory for a paused copy to move). Nothing waits for "online": the
    # tests watch the guest themselves.
    ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
    echo "LABEL=tvroot / ext4 rw,noatime 0 1" >"$root/etc/fstab"
    echo tvguest >"$root/etc/hostname"
    # Nothing on the console but the kernel's messages and the reporter;
    # no timers that wake a TCG guest for nothing.
    local u
    for u in serial-getty@ttyS0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
        e2scrub_all.timer fstrim.timer man-db.timer; do
        ln -sf /dev/null "$root/etc/systemd/system/$u"
    done
    # An empty root password: a debugging login on the console if needed.
    chroot "$root" passwd -d root >/dev/null
}

# shellcheck source=lib/debian-image.sh
. "$here/lib/debian-image.sh"
key=$( (cat "${BASH_SOURCE[0]}" "$here/lib/debian-image.sh"; reporter_funcs) | sha256sum | cut -c1-16)
debian_image "$out/debian" tvroot "$key" 2G customize "${packages[@]}"
echo "$out"
