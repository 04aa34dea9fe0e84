#!/usr/bin/env python3
"""Baseline for the migration benchmark: the same QEMU migration teamvirt
drives, done by hand over raw QMP (no prechecks, no VF pools, no deadline,
no rollback, no job file). Follows e2e-failover-recipe.md section 3:

  start the destination QEMU (its argv given, already carrying
  `-incoming defer`), events on both sides, `migrate-incoming` on a
  kernel-chosen port, `migrate` on the source, poll `query-migrate` every
  10 ms until completed, `cont` the destination, `quit` the source.

Prints one JSON object: total time (from just before spawning the
destination until it runs and the source has quit), the wait-unplug time
seen by polling, QEMU's downtime/setup/total time, bytes sent, the status
sequence, and the destination's pid (left running).

usage: bench-migrate-raw.py SOURCE_QMP_SOCKET DEST_ARGV_JSON DEST_QMP_SOCKET DEST_LOG
"""
import json
import os
import socket
import subprocess
import sys
import time


class Qmp:
    def __init__(self, path, wait=30.0):
        deadline = time.monotonic() + wait
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        self.f = self.s.makefile("r")
        self.f.readline()  # greeting
        self.events = []
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall((json.dumps(msg) + "\n").encode())
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError(f"QEMU closed the monitor during {name}")
            m = json.loads(line)
            if "event" in m:
                self.events.append(m)
            elif "error" in m:
                raise RuntimeError(f"{name}: {m['error']}")
            elif "return" in m:
                return m["return"]


def main():
    src_sock, argv_file, dst_sock, dst_log = sys.argv[1:5]
    argv = json.load(open(argv_file))
    if os.path.exists(dst_sock):
        os.unlink(dst_sock)
    t0 = time.monotonic()
    log = open(dst_log, "ab")
    dst_proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    dst = Qmp(dst_sock)
    caps = [{"capability": "events", "state": True}]
    dst.cmd("migrate-set-capabilities", capabilities=caps)
    dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
    port = dst.cmd("query-migrate")["socket-address"][0]["port"]
    src = Qmp(src_sock, wait=0)
    src.cmd("migrate-set-capabilities", capabilities=caps)
    t_migrate = time.monotonic()
    src.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
    statuses, wait_unplug_start, wait_unplug = [], None, None
    while True:
        q = src.cmd("query-migrate")
        st = q.get("status")
        now = time.monotonic()
        if not statuses or statuses[-1] != st:
            statuses.append(st)
            if st == "wait-unplug":
                wait_unplug_start = now
            elif wait_unplug_start is not None and wait_unplug is None:
                wait_unplug = now - wait_unplug_start
        if st in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.01)
    if st != "completed":
        print(json.dumps({"ok": False, "statuses": statuses, "error": q.get("error-desc")}))
        sys.exit(1)
    while dst.cmd("query-migrate").get("status") != "completed":
        time.sleep(0.005)
    dst.cmd("cont")
    try:
        src.cmd("quit")
    except RuntimeError:
        pass
    t_end = time.monotonic()
    ram = q.get("ram", {})
    print(json.dumps({
        "ok": True,
        "total_s": t_end - t0,
        "migrate_to_completed_s": t_end - t_migrate,
        "wait_unplug_ms": None if wait_unplug is None else wait_unplug * 1000.0,
        "downtime_ms": q.get("downtime"),
        "setup_time_ms": q.get("setup-time"),
        "qemu_total_time_ms": q.get("total-time"),
        "bytes_sent": ram.get("transferred"),
        "statuses": statuses,
        "unplug_events": [e["data"]["device-id"] for e in src.events if e["event"] == "UNPLUG_PRIMARY"],
        "dest_pid": dst_proc.pid,
    }))


if __name__ == "__main__":
    main()
