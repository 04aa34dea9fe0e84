#!/usr/bin/env python3
"""Echo requests to ADDR at a fixed rate (default 100 pps) from a raw ICMP
socket, whatever comes back, until killed. iputils ping -i 0.01 stops
sending when replies stop (it waits for them), which turns a short outage
into a long one and hides losses; this keeps sending. Each reply is printed
as iputils `ping -D` prints it ("[EPOCH] 64 bytes from ADDR: icmp_seq=N"),
so the same readers take it.

usage (root): pinger.py ADDR [INTERVAL]"""
import os
import socket
import struct
import sys
import threading
import time


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main():
    addr = sys.argv[1]
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    sent = [0]

    def send():
        seq, t_next = 0, time.monotonic()
        payload = b"teamvirt-vf-lab" + bytes(41)
        while True:
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
            pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, seq & 0xFFFF) + payload
            sent[0] = seq + 1  # before the reply can come
            try:
                sock.sendto(pkt, (addr, 0))
            except OSError:
                pass  # unreachable for now: counted as lost
            seq += 1
            t_next += interval
            time.sleep(max(0.0, t_next - time.monotonic()))

    threading.Thread(target=send, daemon=True).start()
    seen = set()
    while True:
        data = sock.recv(2048)
        t = time.time()
        icmp = data[(data[0] & 15) * 4:]
        if len(icmp) < 8 or icmp[0] != 0:
            continue
        rid, seq16 = struct.unpack("!HH", icmp[4:8])
        if rid != ident:
            continue
        # The newest request with these low 16 bits.
        base = sent[0] - 1
        seq = base - ((base - seq16) & 0xFFFF)
        if seq in seen:
            continue
        seen.add(seq)
        print(f"[{t:.6f}] 64 bytes from {addr}: icmp_seq={seq}", flush=True)


if __name__ == "__main__":
    main()
