"""UDP probes for the impairment tests, run inside the hosts of a network.

    probe.py recv PORT COUNT IDLE       -> JSON [[seq, sent_at, received_at], ...] on stdout
    probe.py send HOST PORT COUNT GAP SIZE [SPORT [fixed]]
    probe.py sendraw SRCMAC DSTMAC SRCIP DSTIP PORT COUNT GAP SIZE

The sender stamps each datagram with its sequence number and CLOCK_MONOTONIC,
which every namespace of the machine shares, so one-way delays are exact.
It sends from a fixed port with sendto() on an unconnected socket: the IPv4
ID is then 0 and every byte of every frame is the same from run to run.
With `fixed`, the time stamp is left out (0). `sendraw` writes whole
Ethernet frames on tap0 (an AF_PACKET socket) with a fixed IPv4 ID, no time
stamp and complete checksums, so every byte is the same in every run (the
kernel would pick a random IP ID per namespace): the seeded-replay test. Every loop is bounded in
count and time.
"""

import json
import socket
import struct
import sys
import time

HEAD = struct.Struct("!Id")


def recv(port: int, count: int, idle: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True, file=sys.stderr)
    s.settimeout(idle)
    got = []
    deadline = time.monotonic() + 300
    while len(got) < count and time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        seq, sent = HEAD.unpack_from(data)
        got.append([seq, sent, time.monotonic()])
    json.dump(got, sys.stdout)


def send(host: str, port: int, count: int, gap: float, size: int, sport: int, fixed: bool = False) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    pad = bytes(max(size - HEAD.size, 0))
    addr = (socket.gethostbyname(host), port)
    t = time.monotonic()
    for i in range(count):
        if gap:
            t += gap
            while (d := t - time.monotonic()) > 0:
                time.sleep(d)
        s.sendto(HEAD.pack(i, 0.0 if fixed else time.monotonic()) + pad, addr)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def sendraw(src_mac: str, dst_mac: str, src: str, dst: str, port: int, count: int, gap: float, size: int) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("tap0", 0))
    macs = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    sa, da = socket.inet_aton(src), socket.inet_aton(dst)
    t = time.monotonic()
    for i in range(count):
        payload = HEAD.pack(i, 0.0) + bytes(max(size - HEAD.size, 0))
        udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
        csum = _csum(sa + da + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xFFFF
        udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0, sa, da)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        if gap:
            t += gap
            while (d := t - time.monotonic()) > 0:
                time.sleep(d)
        s.send(macs + ip + udp)


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        recv(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "sendraw":
        sendraw(*sys.argv[2:6], int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]),
             int(sys.argv[7]) if len(sys.argv) > 7 else 40000, len(sys.argv) > 8 and sys.argv[8] == "fixed")
