#!/bin/sh
# The VF lab's scenario, run inside L1 (see scripts/vf-lab.sh): teamvirt as
# a user runs it, with real igbvf VFs of the emulated igb PF.
#
# /lab (read-only): teamvirt, guest/vmlinuz, guest/initramfs.cpio.gz.
# /out (read-write): results. Every check prints "CHECK ok NAME" or
# "CHECK fail NAME: WHY" to /out/checks; pings go to /out/ping-*.log (ping
# -D format, from /lab/pinger.py at a fixed 100 pps), migration start/end
# times to /out/marks ("NAME START END").
# The exit code is the number of failed checks (capped), or 100+ when a
# step could not run at all.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
out=/out
checks=$out/checks
: >"$checks"
: >"$out/marks"
fails=0

say() { echo "== $(cut -d' ' -f1 /proc/uptime) $*"; }
check() { # NAME CONDITION-COMMAND... (run with sh -c)
    name=$1
    shift
    if sh -c "$*" >/dev/null 2>&1; then
        echo "CHECK ok $name" >>"$checks"
    else
        echo "CHECK fail $name: $*" >>"$checks"
        fails=$((fails + 1))
    fi
}
wait_for() { # SECONDS COMMAND...: until it succeeds or time is up
    end=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 2
    done
}
verify() { # NAME COMMAND... (a shell function or command, run here)
    name=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "CHECK ok $name" >>"$checks"
    else
        echo "CHECK fail $name: $*" >>"$checks"
        fails=$((fails + 1))
    fi
}
abort() {
    echo "CHECK fail abort: $*" >>"$checks"
    say "ABORT: $*"
    cleanup
    exit 100
}

mkdir -p /usr/local/bin
cp /lab/teamvirt /usr/local/bin/teamvirt || abort "cannot install teamvirt"
mkdir -p /var/cache/teamvirt/guest
cp /lab/guest/vmlinuz /lab/guest/initramfs.cpio.gz /var/cache/teamvirt/guest/
tv() {
    say "teamvirt $*" >&2
    teamvirt "$@"
}

src=/var/lib/tv-src
dst=/var/lib/tv-dst
ping_pid=
# The guests' consoles and the domain logs, for whoever reads the results.
collect() {
    for h in $src $dst; do
        for f in $h/run/*/serial.log $h/log/*.log; do
            [ -f "$f" ] || continue
            mkdir -p $out/logs/$(basename $h)
            cp "$f" $out/logs/$(basename $h)/$(basename $(dirname "$f"))-$(basename "$f") 2>/dev/null
        done
    done
}
cleanup() {
    collect
    dmesg >$out/l1-dmesg.txt 2>&1
    [ -n "$ping_pid" ] && kill "$ping_pid" 2>/dev/null
    for h in $src $dst; do
        for d in vfl2 plain vlan unm; do
            teamvirt destroy --state-dir $h $d >/dev/null 2>&1
        done
    done
}

say "modules"
for m in igb igbvf vfio-pci vfio_iommu_type1 tun bridge veth; do modprobe $m || say "modprobe $m failed"; done

# The PF: the igb NIC; the wire: L1's virtio NIC, shared with the PF on L0's hub.
pf=
wire=
for n in /sys/class/net/*; do
    drv=$(basename "$(readlink -f "$n/device/driver" 2>/dev/null)" 2>/dev/null)
    case $drv in
    igb) pf=$(basename "$n") ;;
    virtio_net | virtio-pci) wire=$(basename "$n") ;;
    esac
done
[ -n "$pf" ] || abort "no igb PF in L1"
[ -n "$wire" ] || abort "no virtio wire NIC in L1"
say "PF $pf, wire $wire"
ls -l /sys/kernel/iommu_groups/ | head -3
ip link set "$pf" up
echo 2 >/sys/class/net/"$pf"/device/sriov_numvfs || abort "sriov_numvfs=2 failed on $pf"
vf0=$(basename "$(readlink -f /sys/class/net/"$pf"/device/virtfn0)")
vf1=$(basename "$(readlink -f /sys/class/net/"$pf"/device/virtfn1)")
say "VFs $vf0 $vf1"
for i in $(seq 100); do
    [ -e /sys/bus/pci/devices/$vf0/net ] && [ -e /sys/bus/pci/devices/$vf1/net ] && break
    sleep 0.2
done
drv_of() { basename "$(readlink -f /sys/bus/pci/devices/$1/driver 2>/dev/null)" 2>/dev/null || echo none; }
vfinfo() { # the PF's view of VF N: "mac vlan"
    ip -d link show dev "$pf" | awk -v n="$1" '$1 == "vf" && $2 == n {
        mac = $4; vlan = 0
        for (i = 1; i <= NF; i++) if ($i == "vlan") vlan = $(i + 1)
        sub(",", "", mac); sub(",", "", vlan); print mac, vlan }'
}
vf_has_mac() { vfinfo "$1" | grep -q "^$2 "; }
vf_has_vlan() { vfinfo "$1" | grep -q " $2\$"; }
# The PF's settings for VF N as they were: equal, or, when no MAC was set
# administratively before (all zeros), not the guest's: the VF's own driver
# then picks an address (which the PF shows too). Like libvirt, teamvirt
# takes what the PF shows before a start as the original, so a VF whose
# driver picked an address keeps that one afterwards.
mac_restored() { # N BEFORE
    now=$(vfinfo "$1")
    [ "$now" = "$2" ] && return 0
    case $2 in 00:00:00:00:00:00\ *) ;; *) return 1 ;; esac
    [ "${now#* }" = "${2#* }" ] || return 1
    case ${now%% *} in 52:54:00:aa:00:0*) return 1 ;; esac
}
check vfs-on-igbvf "[ $(drv_of "$vf0") = igbvf ] && [ $(drv_of "$vf1") = igbvf ]"
check iommu-groups "[ -e /sys/bus/pci/devices/$vf0/iommu_group ]"
before0=$(vfinfo 0)
before1=$(vfinfo 1)
say "PF view before: vf0 [$before0] vf1 [$before1]"
ip -d link show dev "$pf"

# The wire: a bridge br0 over L1's virtio NIC, which shares L0's hub with
# the igb, the standby taps, and a peer namespace on br0 that pings the
# guest. The peer's frames for the guest leave through the wire port to the
# VF that has its MAC, or reach the standby's tap on br0. (With br0 on the
# PF itself, a VF's unicast never reaches a peer behind br0: the NIC, like
# an 82576, switches a VF's unicast to the PF only for MACs in its filter
# table, which would need `bridge fdb add MAC dev PF self`.)
ip link add br0 type bridge
ip link set br0 type bridge forward_delay 0 stp_state 0
ip link set "$wire" master br0
ip link set "$wire" up
ip link set br0 up
ip netns add peer
ip link add veth-peer type veth peer name peer0 netns peer
ip link set veth-peer master br0 up
ip -n peer link set lo up
ip -n peer addr add 10.77.0.1/24 dev peer0
ip -n peer link set peer0 up

cat >/tmp/lan.xml <<EOF
<network>
  <name>lan</name>
  <forward mode='bridge'/>
  <bridge name='br0'/>
</network>
EOF
cat >/tmp/pfpool.xml <<EOF
<network>
  <name>vfpool</name>
  <forward mode='hostdev' managed='yes'>
    <pf dev='$pf'/>
  </forward>
</network>
EOF
addr_xml() { # DDDD:BB:SS.F as libvirt's <address>
    echo "$1" | awk -F'[:.]' '{ printf "<address type='\''pci'\'' domain='\''0x%s'\'' bus='\''0x%s'\'' slot='\''0x%s'\'' function='\''0x%s'\''/>", $1, $2, $3, $4 }'
}
cat >/tmp/addrpool.xml <<EOF
<network>
  <name>vfpool</name>
  <forward mode='hostdev' managed='yes'>
    $(addr_xml "$vf1")
  </forward>
</network>
EOF

domain() { # NAME MAC WITH_PRIMARY [VLAN]
    cat <<EOF
<domain type='kvm'>
  <name>$1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>/var/cache/teamvirt/guest/vmlinuz</kernel>
    <initrd>/var/cache/teamvirt/guest/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 e2e.ip=10.77.0.2/24</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'/>
    <controller type='pci' index='2' model='pcie-root-port'/>
    <controller type='pci' index='3' model='pcie-root-port'/>
    <interface type='network'>
      <mac address='$2'/>
      <source network='lan'/>
      <model type='virtio'/>
      $([ "$3" = yes ] && echo "<teaming type='persistent'/>")
      <alias name='ua-standby0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
EOF
    if [ "$3" = yes ]; then
        cat <<EOF
    <interface type='network'>
      <mac address='$2'/>
      <source network='vfpool'/>
      $([ -n "${4:-}" ] && echo "<vlan><tag id='$4'/></vlan>")
      <model type='virtio'/>
      <teaming type='transient' persistent='ua-standby0'/>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </interface>
EOF
    fi
    cat <<EOF
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}
mac=52:54:00:aa:00:01
domain vfl2 $mac yes >/tmp/vfl2.xml
domain plain 52:54:00:aa:00:02 no >/tmp/plain.xml
domain vlan 52:54:00:aa:00:03 yes 42 >/tmp/vlan.xml

say "validate and domxml-to-native against the <pf> pool"
tv validate /tmp/vfl2.xml /tmp/pfpool.xml /tmp/lan.xml >$out/validate.txt 2>&1
check validate-pf-pool "[ $? = 0 ] && ! grep -q 'none are available' $out/validate.txt"
cat $out/validate.txt
tv domxml-to-native --test-env --network /tmp/pfpool.xml --network /tmp/lan.xml /tmp/vfl2.xml >$out/native.txt 2>&1
check native-pf-pool-gives-vf0 "grep -q '\"driver\":\"vfio-pci\",\"host\":\"$vf0\"' $out/native.txt"

say "networks on two hosts: <pf> pool on the source, an address pool on the destination"
for h in $src $dst; do
    mkdir -p $h && chmod 0700 $h
    tv net-define --state-dir $h /tmp/lan.xml
    tv net-start --state-dir $h lan
done
tv net-define --state-dir $src /tmp/pfpool.xml
tv net-define --state-dir $dst /tmp/addrpool.xml
tv net-start --state-dir $src vfpool
tv net-start --state-dir $dst vfpool
tv net-list --state-dir $src >$out/net-list.txt 2>&1
tv net-dumpxml --state-dir $src vfpool >$out/net-dumpxml.txt 2>&1
check net-list-pool-size "grep vfpool $out/net-list.txt | grep -q '/2 in use'"
check net-dumpxml-lists-vfs "grep -c '<address' $out/net-dumpxml.txt | grep -qx 2"

say "start with a real VF primary"
tv define --state-dir $src /tmp/vfl2.xml
t_start=$(date +%s.%N)
tv start --state-dir $src vfl2 --accel tcg --wait-failover=600 || abort "start failed"
check vf0-on-vfio "[ $(drv_of "$vf0") = vfio-pci ]"
verify vf0-mac-through-pf vf_has_mac 0 $mac
ip -d link show dev "$pf"
serial=$src/run/vfl2/serial.log
# The guest's net_failover master has both halves as slaves: the standby
# and the VF (guest/init's once-a-second E2E CNT line lists each slave as
# IF=RX:TX:MASTER; a re-plugged VF with the same name and MAC changes no
# E2E STATE line, so the counters are what shows it).
slaves() { # SERIAL-LOG: slaves in the latest E2E CNT line
    grep -a 'E2E CNT' "$1" 2>/dev/null | tail -n1 | grep -Eo '=[0-9]+:[0-9]+:[A-Za-z0-9_.-]+' | wc -l
}
# The guest's own view (E2E STATE): an igbvf NIC enslaved to a master.
vf_enslaved() { # SERIAL-LOG
    grep -a 'E2E STATE' "$1" 2>/dev/null | tail -n1 | grep -Eq '\[[^]]*master=[^-,][^,]*,drv=igbvf'
}
has_counters() { grep -aq 'E2E CNT' "$1" 2>/dev/null; }
bonded() {
    if has_counters "$1"; then [ "$(slaves "$1")" -ge 2 ]; else vf_enslaved "$1"; fi
}
unbonded() {
    if has_counters "$1"; then [ "$(slaves "$1")" -eq 1 ]; else ! vf_enslaved "$1"; fi
}
wait_for 600 bonded $serial
t_bonded=$(date +%s.%N)
say "guest bonded the VF ($(awk "BEGIN {print $t_bonded - $t_start}") s after start)"
verify guest-bonded-vf bonded $serial
verify guest-vf-is-igbvf vf_enslaved $serial
tv teaming --state-dir $src vfl2 >$out/teaming-src.txt 2>&1
tv teaming --state-dir $src vfl2 --json >$out/teaming-src.json 2>&1
check teaming-negotiated-plugged "grep -Eq 'hostdev0 +yes +yes' $out/teaming-src.txt"
check teaming-shows-vf0 "grep -q '$vf0' $out/teaming-src.txt"
tv net-list --state-dir $src >>$out/net-list.txt 2>&1

# Bonded is not yet answering: the guest's igbvf takes a while after
# net_failover registered it to bring its link up and receive (tens of
# seconds under nested TCG). The migration is measured from a guest that
# answers through its VF.
t_ans0=$(date +%s.%N)
wait_for 600 ip netns exec peer ping -c 1 -W 1 10.77.0.2
check guest-answers-before-migration "ip netns exec peer ping -c 3 -W 2 10.77.0.2"
say "guest answers the peer ($(awk "BEGIN {print $(date +%s.%N) - $t_ans0}") s after bonding)"
say "ping at 100 pps through a live migration to the destination (VF $vf1)"
ip netns exec peer python3 /lab/pinger.py 10.77.0.2 >$out/ping-failover.log 2>&1 &
ping_pid=$!
sleep 10
# The wire before the migration, for whoever reads the results.
{
    echo "## replies so far: $(grep -c icmp_seq $out/ping-failover.log)"
    ip -n peer neigh
    bridge fdb show br br0 | grep -v permanent
    ip -s link
} >$out/wire-before.txt 2>&1
# Where br0 sends the guest's frames, which ports are locked, and the
# interrupts of the VFs' vfio devices, twice a second through the
# migration (teamvirt moves the entry at the unplug, at the resume and
# once the destination's VF is heard).
(while :; do
    echo "@ $(date +%s.%N)"
    bridge fdb show br br0 | grep -i "$mac"
    bridge -d link show | grep -o '^[0-9]*: [^:]*\|locked [a-z]*' | paste -sd' '
    grep vfio /proc/interrupts | awk '{ s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print "irq", $NF, s }'
    sleep 0.5
done) >$out/fdb-watch.log 2>&1 &
watch_pid=$!
m0=$(date +%s.%N)
tv migrate --state-dir $src vfl2 --dest-state-dir $dst --persistent --undefinesource --timeout 600 --unplug-timeout 300 >$out/migrate.txt 2>&1
mrc=$?
m1=$(date +%s.%N)
cat $out/migrate.txt
echo "failover $m0 $m1" >>$out/marks
check migrate-rc0 "[ $mrc = 0 ]"
check vf0-back-on-igbvf "[ $(drv_of "$vf0") = igbvf ]"
verify vf0-mac-restored wait_for 60 mac_restored 0 "$before0"
check vf1-on-vfio "[ $(drv_of "$vf1") = vfio-pci ]"
verify vf1-mac-through-pf vf_has_mac 1 $mac
dserial=$dst/run/vfl2/serial.log
wait_for 300 bonded $dserial
sleep 10
kill $watch_pid
kill $ping_pid
ping_pid=
verify guest-rebonded-vf1 bonded $dserial
tv teaming --state-dir $dst vfl2 >$out/teaming-dst.txt 2>&1
check teaming-dst-shows-vf1 "grep -q '$vf1' $out/teaming-dst.txt"

say "unplug and plug the VF primary of the running guest"
tv dumpxml --state-dir $dst vfl2 >$out/dst-live.xml 2>&1
cp $dst/run/vfl2/live.xml $out/dst-live-file.xml
tv detach-device-alias --state-dir $dst vfl2 hostdev0 --timeout 180 >$out/hotplug.txt 2>&1
check detach-primary-rc0 "[ $? = 0 ]"
check detach-vf1-back-on-igbvf "[ $(drv_of "$vf1") = igbvf ]"
verify detach-guest-unbonded wait_for 120 unbonded $dserial
cat >/tmp/primary.xml <<EOF
<interface type='network'>
  <mac address='$mac'/>
  <source network='vfpool'/>
  <model type='virtio'/>
  <teaming type='transient' persistent='ua-standby0'/>
</interface>
EOF
tv attach-device --state-dir $dst vfl2 /tmp/primary.xml --wait-failover=180 >>$out/hotplug.txt 2>&1
check attach-primary-rc0 "[ $? = 0 ]"
check attach-vf1-on-vfio "[ $(drv_of "$vf1") = vfio-pci ]"
verify attach-guest-bonded wait_for 300 bonded $dserial
tv teaming --state-dir $dst vfl2 >>$out/hotplug.txt 2>&1
cat $out/hotplug.txt

say "back to the source over SSH, as to another host: its own state dir, reached with ssh"
# sshd on L1's loopback with a private config, key and known_hosts; the
# "remote" teamvirt is the one on PATH there, as on a second host.
ssh_dir=/tmp/lab-ssh
mkdir -p $ssh_dir /run/sshd && chmod 700 $ssh_dir
ssh-keygen -q -t ed25519 -N '' -f $ssh_dir/id
ssh-keygen -q -t ed25519 -N '' -f $ssh_dir/host
cp $ssh_dir/id.pub $ssh_dir/authorized_keys
echo "[127.0.0.1]:2222 $(cut -d' ' -f1,2 $ssh_dir/host.pub)" >$ssh_dir/known_hosts
cat >$ssh_dir/sshd_config <<EOF
Port 2222
ListenAddress 127.0.0.1
HostKey $ssh_dir/host
PidFile $ssh_dir/sshd.pid
AuthorizedKeysFile $ssh_dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
LogLevel ERROR
EOF
/usr/sbin/sshd -f $ssh_dir/sshd_config -E $out/sshd.log
sshd_pid=$(cat $ssh_dir/sshd.pid 2>/dev/null)
src_lines=$(wc -l <$serial 2>/dev/null || echo 0)
tv migrate --state-dir $dst vfl2 "ssh://root@127.0.0.1:2222$src?keyfile=$ssh_dir/id&known_hosts=$ssh_dir/known_hosts" \
    --persistent --undefinesource --timeout 600 --unplug-timeout 300 >$out/migrate-ssh.txt 2>&1
check ssh-migrate-rc0 "[ $? = 0 ]"
cat $out/migrate-ssh.txt
check vf1-back-on-igbvf "[ $(drv_of "$vf1") = igbvf ]"
verify vf1-mac-restored wait_for 60 mac_restored 1 "$before1"
check ssh-vf0-on-vfio "[ $(drv_of "$vf0") = vfio-pci ]"
verify ssh-vf0-mac-through-pf vf_has_mac 0 $mac
# Only what the guest printed since it came back (the log keeps its past).
tail -n +$((src_lines + 1)) $serial >/dev/null 2>&1
bonded_since() { tail -n +$((src_lines + 1)) "$1" >/tmp/since.log && bonded /tmp/since.log; }
verify ssh-guest-rebonded-vf0 wait_for 300 bonded_since $serial
tv teaming --state-dir $src vfl2 >$out/teaming-ssh.txt 2>&1
check teaming-ssh-shows-vf0 "grep -q '$vf0' $out/teaming-ssh.txt"
[ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null

say "destroy: the VF goes back to igbvf with its MAC"
tv destroy --state-dir $src vfl2 >$out/destroy.txt 2>&1
check destroy-rc0 "[ $? = 0 ]"
check vf0-back-after-destroy "[ $(drv_of "$vf0") = igbvf ]"
verify vf0-mac-restored-after-destroy wait_for 60 mac_restored 0 "$before0"
check no-vfio-left "[ -z \"\$(ls /dev/vfio | grep -v vfio)\" ]"
tv net-list --state-dir $src >>$out/net-list.txt 2>&1

say "VLAN through the PF on a hostdev-network primary, cleared on release"
pre_vlan=$(vfinfo 0)
tv define --state-dir $src /tmp/vlan.xml
tv start --state-dir $src vlan --accel tcg >$out/vlan-start.txt 2>&1
verify vlan-set-through-pf vf_has_vlan 0 42
ip -d link show dev "$pf"
tv destroy --state-dir $src vlan >>$out/vlan-start.txt 2>&1
check vlan-cleared "[ \"$(vfinfo 0)\" = \"$pre_vlan\" ]"
check vlan-vf-back-on-igbvf "[ $(drv_of "$vf0") = igbvf ]"

say "managed='no': refused on igbvf with libvirt's text, used as is on vfio-pci"
cat >/tmp/unmpool.xml <<EOF
<network>
  <name>unmanaged</name>
  <forward mode='hostdev' managed='no'>
    $(addr_xml "$vf0")
  </forward>
</network>
EOF
sed -e 's/<name>vlan</<name>unm</' -e "s/network='vfpool'/network='unmanaged'/" /tmp/vlan.xml >/tmp/unm.xml
tv net-define --state-dir $src /tmp/unmpool.xml
tv net-start --state-dir $src unmanaged
tv define --state-dir $src /tmp/unm.xml
tv start --state-dir $src unm --accel tcg >$out/unmanaged.txt 2>&1
check unmanaged-refused "[ $? != 0 ] && grep -q 'Unmanaged PCI device $vf0 must be manually detached from the host' $out/unmanaged.txt"
check unmanaged-refused-untouched "[ $(drv_of "$vf0") = igbvf ]"
# The admin binds it (what virsh nodedev-detach does).
echo vfio-pci >/sys/bus/pci/devices/$vf0/driver_override
echo $vf0 >/sys/bus/pci/devices/$vf0/driver/unbind
echo $vf0 >/sys/bus/pci/drivers_probe
tv start --state-dir $src unm --accel tcg >>$out/unmanaged.txt 2>&1
check unmanaged-started "[ $? = 0 ]"
tv destroy --state-dir $src unm >>$out/unmanaged.txt 2>&1
check unmanaged-left-on-vfio "[ $(drv_of "$vf0") = vfio-pci ]"
echo $vf0 >/sys/bus/pci/devices/$vf0/driver/unbind
echo >/sys/bus/pci/devices/$vf0/driver_override
echo $vf0 >/sys/bus/pci/drivers_probe
tv undefine --state-dir $src unm >/dev/null 2>&1
tv net-destroy --state-dir $src unmanaged >/dev/null 2>&1
cat $out/unmanaged.txt

say "the same migration with a plain virtio NIC"
tv define --state-dir $src /tmp/plain.xml
tv start --state-dir $src plain --accel tcg || abort "plain start failed"
pserial=$src/run/plain/serial.log
wait_for 600 grep -aq 'E2E HB' $pserial
ip netns exec peer python3 /lab/pinger.py 10.77.0.2 >$out/ping-plain.log 2>&1 &
ping_pid=$!
wait_for 120 grep -q icmp_seq $out/ping-plain.log
sleep 10
m0=$(date +%s.%N)
tv migrate --state-dir $src plain --dest-state-dir $dst --persistent --undefinesource --timeout 600 >>$out/migrate.txt 2>&1
prc=$?
m1=$(date +%s.%N)
echo "plain $m0 $m1" >>$out/marks
sleep 10
kill $ping_pid
ping_pid=
check plain-migrate-rc0 "[ $prc = 0 ]"
tv destroy --state-dir $dst plain

cleanup
say "done: $fails failed checks"
[ $fails -gt 99 ] && fails=99
exit $fails
