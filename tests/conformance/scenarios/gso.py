"""64 KiB GSO super-frames both ways: the engine's tap has IFF_VNET_HDR and TSO offloads, the Linux DUT's
veth has TSO; the bench reads and writes virtio-net headers on both (PACKET_VNET_HDR)."""

from __future__ import annotations

import hashlib
import time

from tests.conformance.bench import Run
from tests.conformance.scenarios import scenario
from tests.conformance.scenarios.rst import established

MASK = 0xFFFFFFFF


def pattern(n: int, salt: int = 0) -> bytes:
    out = b""
    k = salt
    while len(out) < n:
        out += hashlib.sha256(k.to_bytes(8, "big")).digest()
        k += 1
    return out[:n]


@scenario("gso/64k-in")
def gso_in(t: Run) -> None:
    """One 65000-byte super-frame (gso_size 1460) from the guest: one ACK covers it; the bytes arrive intact."""
    c, a = established(t)
    data = pattern(65000)
    c.send_stream(data, gso=1460)
    last = None
    for f in c.frames(0.3):
        last = f
    t.note("last ACK", c.describe(last))
    if a:
        t.note("intact", a.read_exact(65000, timeout=3.0) == data)


def receive_all(t: Run, c, data: bytes, timeout: float = 10.0) -> None:
    """Take ``data`` from the DUT (ACKing every frame) and write down how it came: intact, the
    super-frames' gso_size, the largest frame, and runts (segments under the MSS) before the end."""
    got = bytearray()
    gso = set()
    biggest = runts = 0
    mss = c.offer.mss or 536
    end = time.time() + timeout
    while len(got) < len(data) and time.time() < end:
        f = c.recv(0.5, accept=False)
        if f is None:
            c.ack()
            continue
        if f.payload and f.seq == c.rcv_nxt:
            got += f.payload
            c.rcv_nxt = (c.rcv_nxt + len(f.payload)) & MASK
            biggest = max(biggest, len(f.payload))
            if f.gso_size:
                gso.add(f.gso_size)
            if len(got) < len(data) and len(f.payload) % mss:
                runts += 1
            c.ack()
    t.note("received", f"{len(got)} bytes, intact {bytes(got) == data}")
    t.note("super-frames", f"gso_size {sorted(gso)}" if gso else "none")
    t.note("largest frame payload", "over 1 MSS, at most 64 KiB" if mss < biggest <= 65535 else str(biggest))
    # A relay sends what reached it: when a loaded machine hands the host application's bytes
    # over in pieces, a piece's tail can go out short (the engine has no Nagle, as the
    # application may have asked for TCP_NODELAY). Broken segmenting shows as one runt per
    # super-frame or more (over 15 in 1 MiB), so a handful is written down as "at most 4".
    t.note("runts before the end (RFC 9293 §3.8.6.2.1)", "at most 4" if runts <= 4 else runts)


@scenario("gso/64k-out", budget=40)
def gso_out(t: Run) -> None:
    """The application writes 1 MiB: the DUT hands over super-frames of MSS-sized segments, none over 64 KiB."""
    c, a = established(t)
    if not a:
        return
    data = pattern(1 << 20, 7)
    a.write(data)
    receive_all(t, c, data)


@scenario("gso/64k-out-active-open", budget=40)
def gso_out_active(t: Run) -> None:
    """The same on a connection the DUT opened (the engine: the slirp port driver's flow)."""
    c = t.server_peer()
    app = t.connect()
    if c.answer(opts=False) is None:
        return
    app.connected()
    data = pattern(1 << 20, 11)
    app.write(data)
    receive_all(t, c, data)


@scenario("gso/super-frames-reordered")
def gso_reordered(t: Run) -> None:
    """Two 30000-byte super-frames, the second first: a duplicate ACK, then one ACK for both; intact."""
    c, a = established(t)
    data = pattern(60000, 3)
    base = c.snd_nxt
    c.send(0x18, data[30000:], seq=(base + 30000) & MASK, gso=1460)
    c.expect("duplicate ACK")
    c.send(0x18, data[:30000], seq=base, gso=1460)
    c.snd_nxt = (base + 60000) & MASK
    last = None
    for f in c.frames(0.3):
        last = f
    t.note("last ACK", c.describe(last))
    if a:
        t.note("intact", a.read_exact(60000, timeout=3.0) == data)
