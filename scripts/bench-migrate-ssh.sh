#!/usr/bin/env bash
# Benchmark of migration between hosts (issue 9), one run, one guest: two
# network namespaces joined by a veth pair play the hosts, each with its own
# sshd (private config and keys in a tempdir, private port; the machine's
# own SSH set-up is not touched) and state directory. The test guest (lab
# mode, one teaming pair) boots once in host A and then moves:
#   local   A  -> A' (--dest-state-dir, the same host)
#   direct  A' -> B  (ssh://, memory over direct TCP)
#   tunnel  B  -> A  (--tunnelled: memory inside SSH)
#   tls     A  -> B  (--tls, test certificates made with openssl)
# and reports each migration's total (the `migrate` command's wall time), the
# SSH set-up time apart, teamvirt's job time (prepare .. done), QEMU's
# total-time/downtime, and the ratios direct/local, tunnel/direct,
# tls/direct. Ratios only, no thresholds. Needs root, QEMU, OpenSSH
# (openssh-server, openssh-client) and openssl.
#   scripts/bench-migrate-ssh.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q --release --bin teamvirt
TV=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/teamvirt
./scripts/build-test-guest.sh >/dev/null
G=${TEAMVIRT_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/guest}

W=$(mktemp -d /tmp/tvbench.XXXXXX)
NA=tvbena$$
NB=tvbenb$$
IPA=10.232.0.1
IPB=10.232.0.2
PORT=2222
NAME=bench
SSHD_PIDS=()

cleanup() {
	set +e
	for s in "$W/a" "$W/a2" "$W/b"; do
		[ -d "$s" ] && TEAMVIRT_STATE_DIR=$s "$TV" destroy $NAME >/dev/null 2>&1
	done
	for p in "${SSHD_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	for ns in $NA $NB; do
		for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		ip netns del $ns 2>/dev/null
	done
	rm -rf "$W"
}
trap cleanup EXIT

# One guest at a time on this machine (the tests' lock).
mkdir -p "$G"
exec 9>"$G/boot.lock"
flock 9

ip netns add $NA
ip netns add $NB
ip link add tvbena netns $NA type veth peer name tvbenb netns $NB
ip netns exec $NA ip addr add $IPA/24 dev tvbena
ip netns exec $NB ip addr add $IPB/24 dev tvbenb
for ns in $NA $NB; do
	ip netns exec $ns ip link set lo up
done
ip netns exec $NA ip link set tvbena up
ip netns exec $NB ip link set tvbenb up

for k in id host; do ssh-keygen -q -t ed25519 -N '' -f "$W/$k"; done
cp "$W/id.pub" "$W/authorized_keys"
HK=$(cut -d' ' -f1,2 "$W/host.pub")
printf '[%s]:%s %s\n[%s]:%s %s\n' $IPA $PORT "$HK" $IPB $PORT "$HK" >"$W/known_hosts"
mkdir -p /run/sshd
for h in "$NA $IPA" "$NB $IPB"; do
	set -- $h
	cat >"$W/sshd_$1" <<EOF
Port $PORT
ListenAddress $2
HostKey $W/host
PidFile $W/sshd_$1.pid
AuthorizedKeysFile $W/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
LogLevel ERROR
EOF
	ip netns exec $1 /usr/sbin/sshd -D -e -f "$W/sshd_$1" 2>>"$W/sshd.log" &
	SSHD_PIDS+=($!)
done
for i in $(seq 100); do
	ip netns exec $NA ssh -o BatchMode=yes -o UserKnownHostsFile="$W/known_hosts" -i "$W/id" \
		-p $PORT root@$IPB true 2>/dev/null && break
	sleep 0.2
done

# PKI for --tls (libvirt's file names), valid for both addresses.
P=$W/pki
mkdir -p "$P"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=bench CA' \
	-keyout "$P/ca-key.pem" -out "$P/ca-cert.pem" 2>/dev/null
printf 'subjectAltName=IP:%s,IP:%s\nextendedKeyUsage=serverAuth,clientAuth\n' $IPA $IPB >"$P/ext"
for who in server client; do
	openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout "$P/$who-key.pem" \
		-out "$P/$who.csr" 2>/dev/null
	openssl x509 -req -in "$P/$who.csr" -CA "$P/ca-cert.pem" -CAkey "$P/ca-key.pem" \
		-CAcreateserial -days 2 -extfile "$P/ext" -out "$P/$who-cert.pem" 2>/dev/null
done

NET="<network><name>vfpool</name><forward mode='hostdev' managed='yes'><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x0'/><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x1'/></forward></network>"
echo "$NET" >"$W/net.xml"
cat >"$W/dom.xml" <<EOF
<domain type='qemu'><name>$NAME</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type><kernel>$G/vmlinuz</kernel><initrd>$G/initramfs.cpio.gz</initrd><cmdline>console=ttyS0 panic=-1</cmdline></os>
<features><acpi/></features><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
<controller type='pci' index='0' model='pcie-root'/><controller type='pci' index='1' model='pcie-root-port'/><controller type='pci' index='2' model='pcie-root-port'/>
<interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/><teaming type='persistent'/><alias name='ua-sb0'/><address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></interface>
<interface type='network'><mac address='52:54:00:12:34:56'/><source network='vfpool'/><teaming type='transient' persistent='ua-sb0'/><address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></interface>
<serial type='pty'><target port='0'/></serial><memballoon model='none'/></devices></domain>
EOF

tvin() { # tvin NS STATE ARGS...
	local ns=$1 st=$2
	shift 2
	ip netns exec "$ns" env TEAMVIRT_STATE_DIR="$st" "$TV" "$@"
}
for s in "$W/a" "$W/a2" "$W/b"; do
	mkdir -p "$s"
	TEAMVIRT_STATE_DIR=$s "$TV" net-define --emulate-vf "$W/net.xml" >/dev/null 2>&1
done
tvin $NA "$W/a" define "$W/dom.xml" >/dev/null
tvin $NA "$W/a" start --emulate-vf --wait-failover=120 $NAME >/dev/null 2>&1
# Let the guest enslave its primary (as the tests wait for it).
sleep 2

URI() { echo "ssh://root@$1:$PORT$2?keyfile=$W/id&known_hosts=$W/known_hosts"; }
leg() { # leg LABEL NS STATE ARGS...
	local label=$1 ns=$2 st=$3
	shift 3
	local t0 t1
	t0=$(date +%s%N)
	tvin "$ns" "$st" migrate --json --remote-teamvirt "$TV" $NAME "$@" >"$W/$label.json" 2>"$W/$label.err" || {
		echo "$label failed:" >&2
		cat "$W/$label.err" >&2
		exit 1
	}
	t1=$(date +%s%N)
	echo "$label $(((t1 - t0) / 1000000))" >>"$W/walls"
	sleep 2
}
: >"$W/walls"
leg local $NA "$W/a" --dest-state-dir "$W/a2"
leg direct $NA "$W/a2" "$(URI $IPB "$W/b")"
leg tunnel $NB "$W/b" --tunnelled "$(URI $IPA "$W/a")"
leg tls $NA "$W/a" --tls --tls-dir "$P" "$(URI $IPB "$W/b")"

python3 - "$W" <<'EOF'
import json, sys
w = sys.argv[1]
walls = dict((l.split()[0], int(l.split()[1])) for l in open(f"{w}/walls"))
rows = {}
for leg in ["local", "direct", "tunnel", "tls"]:
    ev = [json.loads(l) for l in open(f"{w}/{leg}.json") if l.startswith("{")]
    res = ev[-1]
    job = res["outcome"]["job"]
    ssh = next((e["message"] for e in ev if e.get("event") == "info" and e["message"].startswith("control channel")), None)
    ssh_ms = int(ssh.split(" up in ")[1].split(" ms")[0]) if ssh else 0
    rows[leg] = dict(total=walls[leg], ssh=ssh_ms, job=job["elapsed_ms"], qemu=job.get("total_time_ms"),
                     down=job.get("downtime_ms"), unplug=job.get("wait_unplug_ms"), mb=(job.get("data_processed") or 0) / 2**20)
print("migration of one lab-mode teaming guest (256 MiB, TCG), one run each, ms")
print(f"{'leg':8} {'total':>7} {'ssh set-up':>10} {'total-ssh':>9} {'job':>6} {'qemu total':>10} {'downtime':>8} {'wait-unplug':>11} {'MiB sent':>8}")
for k, r in rows.items():
    print(f"{k:8} {r['total']:>7} {r['ssh']:>10} {r['total']-r['ssh']:>9} {r['job']:>6} {str(r['qemu']):>10} {str(r['down']):>8} {str(r['unplug']):>11} {r['mb']:>8.1f}")
d, l = rows["direct"], rows["local"]
print()
print(f"direct TCP to the other host vs local --dest-state-dir: total {d['total']/l['total']:.2f}x, "
      f"without the SSH set-up ({d['ssh']} ms) {(d['total']-d['ssh'])/l['total']:.2f}x, job {d['job']/l['job']:.2f}x")
for k in ["tunnel", "tls"]:
    r = rows[k]
    print(f"{k} vs direct: total {r['total']/d['total']:.2f}x, job {r['job']/d['job']:.2f}x, QEMU total-time "
          f"{(r['qemu'] or 0)/(d['qemu'] or 1):.2f}x")
EOF
