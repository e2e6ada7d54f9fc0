"""Floods run *inside* an instance (root of its namespaces): raw frames on tap0 through AF_PACKET.

    python floods.py ATTACK ECHO_PORT [ARGS...]

Prints one JSON object per line: {"event": "ready"}, progress, and finally
{"event": "done", ...}; then waits (bounded) for the file named by
$FLOODS_RELEASE so the test can read the engine's counters while the
instance still runs.

A legitimate flow — a kernel socket to the host's echo server through
10.0.2.2 — is checked before, during (every few hundred frames) and after
each attack; any failure raises, and the script exits non-zero.

Raw TCP peers use 10.0.2.50, an address the namespace's kernel does not own,
so the kernel stays silent and the frames the engine sends back are read
here. Frames are built with struct (scapy is too slow for 10,000 frames of
60 KB). Every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import sys
import time

GW_MAC = bytes.fromhex("525500000002")
FAKE = socket.inet_aton("10.0.2.50")
GW = socket.inet_aton("10.0.2.2")
DNS = socket.inet_aton("10.0.2.3")
ETH_P_ALL = 3
PAD = 60_000


def say(**kw) -> None:
    print(json.dumps(kw), flush=True)


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return 0xFFFF - s


class Legit:
    """A real flow through the engine, checked now and then."""

    def __init__(self, port: int):
        self.s = socket.create_connection(("10.0.2.2", port), timeout=20)
        self.checks = 0
        self.check("before")

    def check(self, tag: str, n: int = 0) -> None:
        data = (tag.encode() + b":") * max(1, n // (len(tag) + 1))
        self.s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = self.s.recv(len(data) - len(got))
            if not chunk:
                raise AssertionError(f"legit flow closed at {tag}")
            got += chunk
        assert got == data, tag
        self.checks += 1


class Tap:
    """AF_PACKET on tap0: inject frames, read what the engine sends to the fake address."""

    def __init__(self, ifname: str = "tap0"):
        self.p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.p.bind((ifname, 0))
        self.p.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        self.p.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        with open(f"/sys/class/net/{ifname}/address") as f:
            self.mac = bytes.fromhex(f.read().strip().replace(":", ""))

    def send(self, frame: bytes) -> None:
        for _ in range(1000):
            try:
                self.p.send(frame)
                return
            except (BlockingIOError, OSError) as e:
                if getattr(e, "errno", None) not in (11, 105):  # EAGAIN, ENOBUFS: the tap queue is full
                    raise
                time.sleep(0.001)
        raise AssertionError("tap0 would not take a frame for 1 s")

    def tcp_from_engine(self, dport: int, timeout: float = 5.0):
        """The next TCP segment to FAKE:dport from the engine: (flags, seq, ack, window, payload)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.p.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                frame, addr = self.p.recvfrom(65600)
            except socket.timeout:
                break
            if addr[2] == socket.PACKET_OUTGOING or frame[12:14] != b"\x08\x00" or frame[23] != 6:
                continue
            if frame[30:34] != FAKE:
                continue
            ihl = (frame[14] & 15) * 4
            t = 14 + ihl
            sport, dp, seq, ack, off, flags, win = struct.unpack_from("!HHIIBBH", frame, t)
            if dp != dport:
                continue
            total = struct.unpack_from("!H", frame, 16)[0]
            return flags, seq, ack, win, frame[t + (off >> 4) * 4 : 14 + total]
        raise AssertionError(f"no segment from the engine to port {dport} within {timeout} s")


class RawTcp:
    """One TCP connection from FAKE:sport, by hand."""

    def __init__(self, tap: Tap, dst: bytes, dport: int, sport: int):
        self.tap, self.dst, self.dport, self.sport = tap, dst, dport, sport
        self.seq = random.getrandbits(32)
        self.ack = 0

    def frame(self, flags: int, payload: bytes = b"", seq: int | None = None, opts: bytes = b"",
              pad_to: int = 0) -> bytes:
        seq = self.seq if seq is None else seq
        thl = 20 + len(opts)
        tcp = struct.pack("!HHIIBBHHH", self.sport, self.dport, seq & 0xFFFFFFFF, self.ack,
                          (thl // 4) << 4, flags, 65535, 0, 0) + opts + payload
        pseudo = FAKE + self.dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, FAKE, self.dst)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        f = GW_MAC + self.tap.mac + b"\x08\x00" + ip + tcp
        return f + bytes(pad_to - len(f)) if pad_to > len(f) else f

    def connect(self) -> int:
        """SYN (MSS 1460, window scale 7), SYN-ACK, ACK; returns the engine's scaled window."""
        self.tap.send(self.frame(0x02, opts=b"\x02\x04\x05\xb4\x01\x03\x03\x07"))
        flags, seq, ack, win, _ = self.tap.tcp_from_engine(self.sport)
        assert flags & 0x12 == 0x12, f"no SYN-ACK: flags {flags:#x}"
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        self.ack = (seq + 1) & 0xFFFFFFFF
        self.tap.send(self.frame(0x10))
        return win


def wait_release() -> None:
    path = os.environ.get("FLOODS_RELEASE")
    for _ in range(2400):
        if not path or os.path.exists(path):
            return
        time.sleep(0.05)


# ----------------------------------------------------------------------------- attacks

def tiny(legit: Legit, port: int, n: int = 10000) -> dict:
    """1-byte segments in 60,000-byte frames to a host socket that does not read."""
    tap = Tap()
    c = RawTcp(tap, GW, port, 40000)
    c.connect()
    for i in range(n):
        tap.send(c.frame(0x18, b"x", seq=c.seq + i, pad_to=PAD))
        if i % 500 == 499:
            legit.check(f"tiny{i}")
    legit.check("tiny-end")
    return {"frames": n}


def ooo(legit: Legit, _port: int, flows: int = 20, per_flow: int = 300) -> dict:
    """Out-of-order 1-byte segments in padded frames to 10.0.2.3:53 (open in every configuration)."""
    tap = Tap()
    conns = []
    for k in range(flows):
        c = RawTcp(tap, DNS, 53, 41000 + k)
        c.connect()
        conns.append(c)
    sent = 0
    for k, c in enumerate(conns):
        for i in range(per_flow):
            tap.send(c.frame(0x18, b"q", seq=c.seq + 10 + 2 * i, pad_to=PAD))  # every other byte: a hole each
            sent += 1
        legit.check(f"ooo{k}")
    return {"frames": sent}


def synflood(legit: Legit, port: int, n: int = 13000) -> dict:
    """SYNs from many ports to a host port whose listener never accepts."""
    tap = Tap()
    for i in range(n):
        c = RawTcp(tap, GW, port, 1024 + i)
        tap.send(c.frame(0x02, opts=b"\x02\x04\x05\xb4"))
        if i % 1000 == 999:
            legit.check(f"syn{i}")
    return {"syns": n}


def many(legit: Legit, port: int, n: int = 300) -> dict:
    """Ordinary connections, all open at once (the engine runs under a small fd limit)."""
    socks, refused = [], 0
    for i in range(n):
        try:
            s = socket.create_connection(("10.0.2.2", port), timeout=10)
            s.sendall(b"hi")
            if s.recv(2) != b"hi":
                raise ConnectionResetError
            socks.append(s)
        except OSError:
            refused += 1
        if i % 50 == 49:
            legit.check(f"many{i}")
    for s in socks:
        s.close()
    time.sleep(0.5)
    again = []
    for _ in range(20):  # once they are closed, new connections work again
        s = socket.create_connection(("10.0.2.2", port), timeout=10)
        s.sendall(b"ok")
        assert s.recv(2) == b"ok"
        again.append(s)
    for s in again:
        s.close()
    return {"connected": len(socks), "refused": refused}


def hostfirst(legit: Legit, port: int, n: int = 5000) -> dict:
    """Connections the host closes first: the engine holds their TIME-WAIT."""
    for i in range(n):
        s = socket.create_connection(("10.0.2.2", port), timeout=10)
        assert s.recv(10) == b"bye"
        assert s.recv(10) == b""  # the host's FIN
        s.close()
        if i % 1000 == 999:
            legit.check(f"tw{i}")
    return {"closed": n}


def finrst(legit: Legit, port: int) -> dict:
    """The host sends FIN, then RST, and the guest stays idle (it neither reads nor closes)."""
    s = socket.create_connection(("10.0.2.2", port), timeout=10)
    s.sendall(b"go")
    time.sleep(3.0)  # idle while the host closes and resets; the engine must not spin meanwhile
    legit.check("after-idle")
    say(event="idle-over")
    wait_release()
    s.close()
    return {}


def garp(legit: Legit, port: int) -> dict:
    """A gratuitous ARP claiming the gateway's address, then a neighbour flush."""
    import subprocess

    tap = Tap()
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, tap.mac, GW, b"\0" * 6, GW)
    tap.send(b"\xff" * 6 + tap.mac + b"\x08\x06" + arp)
    time.sleep(0.2)
    subprocess.run(["ip", "neigh", "flush", "dev", "tap0"], check=True)
    s = socket.create_connection(("10.0.2.2", port), timeout=10)  # needs a fresh ARP answer
    s.sendall(b"arp")
    assert s.recv(3) == b"arp"
    s.close()
    return {}


def rst_after_data(legit: Legit, port: int) -> dict:
    """Data, then an RST right behind it (SO_LINGER 0): the host app must still read the data."""
    s = socket.create_connection(("10.0.2.2", port), timeout=10)
    assert s.recv(5) == b"ready"
    s.sendall(b"last words")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    return {}


def dnstcp(legit: Legit, _port: int, *names: str) -> dict:
    """DNS over TCP to 10.0.2.3 (a static table answers; nothing may reach the upstream)."""
    out = {}
    for k, name in enumerate(names):
        q = struct.pack("!HHHHHH", 100 + k, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
        s = socket.create_connection(("10.0.2.3", 53), timeout=10)
        s.sendall(len(q).to_bytes(2, "big") + q)
        n = int.from_bytes(s.recv(2), "big")
        a = b""
        while len(a) < n:
            a += s.recv(n - len(a))
        s.close()
        rcode = a[3] & 15
        out[name] = socket.inet_ntoa(a[-4:]) if rcode == 0 and struct.unpack_from("!H", a, 6)[0] else f"rcode{rcode}"
    return {"answers": out}


ATTACKS = {f.__name__: f for f in (tiny, ooo, synflood, many, hostfirst, finrst, garp, rst_after_data, dnstcp)}


def main() -> None:
    attack, echo = sys.argv[1], int(sys.argv[2])
    legit = Legit(echo)
    say(event="ready")
    args = [int(a) if a.isdigit() else a for a in sys.argv[3:]]
    result = ATTACKS[attack](legit, *args)
    legit.check("after", 65536)
    say(event="done", checks=legit.checks, **result)
    wait_release()
    legit.s.close()


if __name__ == "__main__":
    main()
