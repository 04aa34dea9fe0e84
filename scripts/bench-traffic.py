#!/usr/bin/env python3
"""The network's view of a live migration (issue 8 item 4): packets lost and
the longest gap between replies while a peer pings the guest at 100 pps,
next to QEMU's reported downtime, for

  (a) a failover pair (virtio standby + lab-mode vmxnet3 primary) under teamvirt,
  (b) the same guest with one plain virtio NIC under teamvirt,
  (c) the failover pair driven by a minimal raw-QMP script (what libvirt
      does: taps on the bridge, migrate with wait-unplug, nothing else),
      with the same primary model as (a) unless --raw-primary MODEL says
      otherwise (--raw-primary e1000e is the recipe's pair: add its
      500 ms of emulated autonegotiation, during which the guest's
      net_failover already ignores the standby, see docs/decisions.md "Lab primary").

Three migrations each (there and back; the median is reported), same test
guest (TCG, 256 MiB), everything inside a private
network namespace with a bridge 10.77.0.1/24 (the guest is 10.77.0.2 on its
failover master). Prints a table and the ratios (a)/(b) and (a)/(c).

usage (root): scripts/bench-traffic.py [--raw-primary MODEL] [TEAMVIRT_BINARY]
Needs: qemu-system-x86_64, iproute2, the test guest
(scripts/build-test-guest.sh), a built teamvirt (default $CARGO_TARGET_DIR/release, target/release without it).
"""
import json
import os
import shutil
import socket
import subprocess
import struct
import sys
import tempfile
import threading
import time

GUEST_IP = "10.77.0.2"
MAC = "52:54:00:77:00:02"
# teamvirt's lab primary (teamvirt_qemu::command::LAB_PRIMARY_MODEL).
LAB_MODEL = "vmxnet3"
SETTLE = 5.0  # seconds of pinging after the migration ends
# Migrations per case, there and back: one migration's gap is mostly its
# downtime, which varies run to run by 2-4x on TCG, so each case reports
# the median (and lists every run).
RUNS = 3


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def guest_dir():
    d = os.environ.get("TEAMVIRT_GUEST_DIR")
    if d:
        return d
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME", "/tmp"), ".cache")
    return os.path.join(cache, "teamvirt/guest")


class Ping:
    """Echo requests to the guest at a fixed 100 pps from a raw ICMP
    socket, whatever comes back: iputils ping with -i 0.01 stops sending
    when replies stop (it waits in recvmsg, sometimes for tens of seconds),
    which would turn a short outage into a long one. Records when each
    request left and when its reply came."""

    INTERVAL = 0.01

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.settimeout(0.2)
        self.ident = os.getpid() & 0xFFFF
        self.sent = []  # (epoch, seq)
        self.got = {}  # seq -> epoch of the first reply
        self.done = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._send, self._recv)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _checksum(b):
        if len(b) % 2:
            b += b"\0"
        s = sum(struct.unpack(f"!{len(b) // 2}H", b))
        s = (s >> 16) + (s & 0xFFFF)
        s += s >> 16
        return ~s & 0xFFFF

    def _send(self):
        seq, t_next = 0, time.monotonic()
        while not self.done.is_set():
            payload = b"teamvirt-bench" + bytes(42)
            hdr = struct.pack("!BBHHH", 8, 0, 0, self.ident, seq & 0xFFFF)
            pkt = struct.pack("!BBHHH", 8, 0, self._checksum(hdr + payload), self.ident, seq & 0xFFFF) + payload
            try:
                self.sock.sendto(pkt, (GUEST_IP, 0))
            except OSError:
                pass  # unreachable for now: counted as lost
            self.sent.append((time.time(), seq))
            seq += 1
            t_next += self.INTERVAL
            time.sleep(max(0.0, t_next - time.monotonic()))

    def _recv(self):
        while not self.done.is_set():
            try:
                data = self.sock.recv(2048)
            except (socket.timeout, OSError):
                continue
            t = time.time()
            icmp = data[(data[0] & 15) * 4:]
            if len(icmp) < 8 or icmp[0] != 0:
                continue
            ident, seq16 = struct.unpack("!HH", icmp[4:8])
            if ident != self.ident:
                continue
            # The newest request with these low 16 bits (runs are far
            # shorter than 65536 requests apart).
            base = len(self.sent) - 1
            seq = base - ((base - seq16) & 0xFFFF)
            self.got.setdefault(seq, t)

    def lines(self):
        """Every request as (sent, seq, False) and every reply as
        (received, seq, True)."""
        return [(t, q, False) for t, q in list(self.sent)] + [(t, q, True) for q, t in list(self.got.items())]

    def replies(self):
        return sorted((t, q) for q, t in list(self.got.items()))

    def wait_flowing(self, timeout=90):
        end = time.time() + timeout
        while time.time() < end:
            r = [x for x in self.replies() if x[0] > time.time() - 1.0]
            if len(r) > 50:
                return
            time.sleep(0.2)
        raise SystemExit("no replies from the guest")

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join()
        self.sock.close()


def median(runs):
    """The run with the median longest gap, with every run's gap listed."""
    m = dict(sorted(runs, key=lambda r: r["gap_ms"])[len(runs) // 2])
    m["gaps_ms"] = [round(r["gap_ms"]) for r in runs]
    return m


def window(lines, t0, t1):
    """Requests sent in [t0, t1] that never got a reply, and the longest
    time in [t0, t1] without one."""
    answered = {s for _, s, ok in lines if ok}
    seen = {s for t, s, ok in lines if not ok and t0 <= t <= t1}
    inside = sorted((t, s) for t, s, ok in lines if ok and t0 <= t <= t1)
    edges = [t0] + [t for t, _ in inside] + [t1]
    gap = max(b - a for a, b in zip(edges, edges[1:]))
    sent = range(min(seen), max(seen) + 1) if seen else range(0)
    lost = sum(1 for q in sent if q not in answered)
    return {"sent": len(sent), "lost": lost, "gap_ms": gap * 1000.0}


# ---- (a) and (b): teamvirt -------------------------------------------------

def domain_xml(failover):
    g = guest_dir()
    nics = f"""
    <interface type='network'>
      <source network='lan'/>
      <mac address='{MAC}'/>
      <model type='virtio'/>{"<teaming type='persistent'/>" if failover else ""}
      <alias name='ua-standby0'/>
    </interface>"""
    if failover:
        nics += f"""
    <interface type='network'>
      <source network='vfpool'/>
      <mac address='{MAC}'/>
      <model type='virtio'/>
      <teaming type='transient' persistent='ua-standby0'/>
    </interface>"""
    return f"""<domain type='kvm'>
  <name>bench</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{g}/vmlinuz</kernel>
    <initrd>{g}/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 e2e.ip={GUEST_IP}/24</cmdline>
  </os>
  <features><acpi/></features>
  <devices>{nics}
  </devices>
</domain>
"""


def run_teamvirt(tv, work, failover):
    src, dst = os.path.join(work, "src"), os.path.join(work, "dst")
    files = os.path.join(work, "files")
    os.makedirs(files, exist_ok=True)
    with open(os.path.join(files, "lan.xml"), "w") as f:
        f.write("<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>")
    with open(os.path.join(files, "pool.xml"), "w") as f:
        f.write("<network><name>vfpool</name><forward mode='hostdev' managed='yes'>"
                "<address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/>"
                "</forward></network>")
    with open(os.path.join(files, "d.xml"), "w") as f:
        f.write(domain_xml(failover))
    for sd in (src, dst):
        sh(tv, "--state-dir", sd, "net-define", os.path.join(files, "lan.xml"))
        sh(tv, "--state-dir", sd, "net-define", os.path.join(files, "pool.xml"),
           "--emulate-vf", "--lab-bridge", "br0")
    sh(tv, "--state-dir", src, "define", os.path.join(files, "d.xml"))
    try:
        args = [tv, "--state-dir", src, "start", "bench", "--accel", "tcg"]
        if failover:
            args.append("--wait-failover=90")
        sh(*args)
        ping = Ping()
        ping.wait_flowing()
        time.sleep(2.0)  # the primary enslaved and carrying
        runs = []
        here, there = src, dst
        for _ in range(RUNS):
            t0 = time.time()
            out = sh(tv, "--state-dir", here, "migrate", "--json", "--dest-state-dir", there, "bench")
            t1 = time.time()
            time.sleep(SETTLE)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            w = window(ping.lines(), t0, t1 + SETTLE)
            w["downtime_ms"] = res["outcome"]["job"].get("downtime_ms")
            w["migration_s"] = t1 - t0
            runs.append(w)
            here, there = there, here
        ping.stop()
        return median(runs)
    finally:
        for sd in (src, dst):
            sh(tv, "--state-dir", sd, "destroy", "bench", check=False)


# ---- (c): raw QMP ------------------------------------------------------------

class Qmp:
    def __init__(self, path, wait=30.0):
        end = time.time() + wait
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > end:
                    raise
                time.sleep(0.01)
        self.f = self.s.makefile("r")
        self.f.readline()
        self.events = []
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall((json.dumps(msg) + "\n").encode())
        while True:
            m = json.loads(self.f.readline())
            if "event" in m:
                self.events.append(m)
            elif "error" in m:
                raise RuntimeError(f"{name}: {m['error']}")
            elif "return" in m:
                return m["return"]

    def wait_event(self, name, timeout):
        self.s.settimeout(timeout)
        end = time.time() + timeout
        while not any(e["event"] == name for e in self.events):
            if time.time() > end:
                raise SystemExit(f"no {name}")
            line = self.f.readline()
            if line:
                m = json.loads(line)
                if "event" in m:
                    self.events.append(m)
        self.s.settimeout(None)


def raw_argv(work, side, incoming, model):
    g = guest_dir()
    sb, pr = f"tv{side}sb", f"tv{side}pr"
    argv = [
        "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", f"{g}/vmlinuz", "-initrd", f"{g}/initramfs.cpio.gz",
        "-append", f"console=ttyS0 panic=-1 e2e.ip={GUEST_IP}/24",
        "-serial", f"file:{work}/serial-{side}.log",
        "-qmp", f"unix:{work}/qmp-{side}.sock,server=on,wait=off",
        "-device", "pcie-root-port,id=root0,bus=pcie.0,addr=0x1,chassis=1",
        "-device", "pcie-root-port,id=root1,bus=pcie.0,addr=0x2,chassis=2",
        "-netdev", f"tap,id=hs0,ifname={sb},script=no,downscript=no",
        "-device", f"virtio-net-pci,bus=root0,id=net1,netdev=hs0,mac={MAC},failover=on",
        "-netdev", f"tap,id=hs1,ifname={pr},script=no,downscript=no",
        "-device", f"{model},bus=root1,id=hostdev0,netdev=hs1,mac={MAC},failover_pair_id=net1,romfile=",
    ]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


def run_raw(work, model):
    for side in ("src", "dst"):
        for role in ("sb", "pr"):
            name = f"tv{side}{role}"
            sh("ip", "tuntap", "add", name, "mode", "tap")
            sh("ip", "link", "set", name, "master", "br0", "up")
    procs = []
    try:
        log = open(os.path.join(work, "qemu-raw.log"), "ab")
        procs.append(subprocess.Popen(raw_argv(work, "src", False, model), stdout=log, stderr=log))
        src = Qmp(f"{work}/qmp-src.sock")
        src.wait_event("FAILOVER_NEGOTIATED", 90)
        ping = Ping()
        ping.wait_flowing()
        time.sleep(2.0)
        runs = []
        here, there = "src", "dst"
        for i in range(RUNS):
            t0 = time.time()
            # A fresh QEMU per incoming side (its QMP socket name reused).
            sock = f"{work}/qmp-{there}.sock"
            if os.path.exists(sock):
                os.unlink(sock)
            procs.append(subprocess.Popen(raw_argv(work, there, True, model), stdout=log, stderr=log))
            dst = Qmp(sock)
            caps = [{"capability": "events", "state": True}]
            dst.cmd("migrate-set-capabilities", capabilities=caps)
            dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
            port = dst.cmd("query-migrate")["socket-address"][0]["port"]
            src.cmd("migrate-set-capabilities", capabilities=caps)
            src.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
            while True:
                q = src.cmd("query-migrate")
                if q.get("status") in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.01)
            if q["status"] != "completed":
                raise SystemExit(f"raw migration {q['status']}: {q.get('error-desc')}")
            while dst.cmd("query-migrate").get("status") != "completed":
                time.sleep(0.005)
            dst.cmd("cont")
            try:
                src.cmd("quit")
            except (RuntimeError, ValueError):
                pass
            t1 = time.time()
            time.sleep(SETTLE)
            w = window(ping.lines(), t0, t1 + SETTLE)
            w["downtime_ms"] = q.get("downtime")
            w["migration_s"] = t1 - t0
            runs.append(w)
            src = dst
            here, there = there, here
        ping.stop()
        return median(runs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for side in ("src", "dst"):
            for role in ("sb", "pr"):
                sh("ip", "link", "del", f"tv{side}{role}", check=False)


def inside(tv, raw_model):
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "br0", "type", "bridge")
    sh("ip", "addr", "add", "10.77.0.1/24", "dev", "br0")
    sh("ip", "link", "set", "br0", "up")
    work = tempfile.mkdtemp(prefix="tv-bench-")
    try:
        res = {}
        res["a"] = run_teamvirt(tv, os.path.join(work, "a"), True)
        res["b"] = run_teamvirt(tv, os.path.join(work, "b"), False)
        os.makedirs(os.path.join(work, "c"))
        res["c"] = run_raw(os.path.join(work, "c"), raw_model)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = {
        "a": f"(a) failover pair, teamvirt ({LAB_MODEL})",
        "b": "(b) plain virtio, teamvirt",
        "c": f"(c) failover pair, raw QMP ({raw_model})",
    }
    print(f"median of {RUNS} migrations at 100 pps    {'lost':>6} {'longest gap':>12} {'QEMU downtime':>14} {'migration':>10}   every run's gap")
    for k in "abc":
        r = res[k]
        print(f"{names[k]:42} {r['lost']:6d} {r['gap_ms']:10.0f} ms {r['downtime_ms'] or 0:11} ms {r['migration_s']:8.2f} s   "
              + " ".join(f"{g}" for g in r["gaps_ms"]) + " ms")

    def ratio(x, y):
        return "inf" if y == 0 else f"{x / y:.2f}"
    for k in "bc":
        print(f"(a)/{k.join('()')}: lost {ratio(res['a']['lost'], res[k]['lost'])}, "
              f"longest gap {ratio(res['a']['gap_ms'], res[k]['gap_ms'])}")
    print(json.dumps(res))


def main():
    if len(sys.argv) > 3 and sys.argv[1] == "--inside":
        inside(sys.argv[2], sys.argv[3])
        return
    args = sys.argv[1:]
    raw_model = LAB_MODEL
    if len(args) >= 2 and args[0] == "--raw-primary":
        raw_model, args = args[1], args[2:]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target")
    tv = os.path.abspath(args[0] if args else os.path.join(target, "release/teamvirt"))
    if not os.access(tv, os.X_OK):
        raise SystemExit(f"{tv} not found: cargo build --release first")
    # The tests' guest lock: no other test guest competes for the cores.
    import fcntl
    os.makedirs(guest_dir(), exist_ok=True)
    lock = open(os.path.join(guest_dir(), "boot.lock"), "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    ns = f"tv-bench-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "--inside", tv, raw_model])
        sys.exit(r.returncode)
    finally:
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    main()
