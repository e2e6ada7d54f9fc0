"""Data from the guest with loss, reordering and duplication, and the DUT's own loss recovery
(RFC 9293 §3.10.7.4 seventh, RFC 5681 §3.2 and §4.2)."""

from __future__ import annotations

from tests.conformance.bench import Run
from tests.conformance.scenarios import scenario
from tests.conformance.scenarios.rst import established

SEG = bytes(range(256)) * 4  # 1024 bytes with a pattern, so misplaced bytes show


def seg(k: int) -> bytes:
    return bytes((b + k) & 0xFF for b in SEG[:1000])


@scenario("data/in-order")
def in_order(t: Run) -> None:
    """Three segments in a row: one cumulative ACK covers them; the application reads them intact."""
    c, a = established(t)
    for k in range(3):
        c.push(seg(k))
    last = None
    for f in c.frames(0.3):
        last = f
    t.note("last ACK", c.describe(last))
    if a:
        t.note("intact", a.read_exact(3000, label="read") == seg(0) + seg(1) + seg(2))


@scenario("data/loss-then-fill")
def loss_then_fill(t: Run) -> None:
    """Segment 2 of 3 lost: an immediate duplicate ACK for 3, an immediate ACK of all once 2 arrives (RFC 5681 §4.2)."""
    c, a = established(t)
    base = c.snd_nxt
    s = c.push(seg(0))
    c.expect("ACK of 1", since=s)
    c.push(seg(2), seq=(base + 2000) & 0xFFFFFFFF)
    c.expect("duplicate ACK for 3", since=c.t_sent)
    c.push(seg(1), seq=(base + 1000) & 0xFFFFFFFF)
    c.expect("ACK of all", since=c.t_sent)
    c.snd_nxt = (base + 3000) & 0xFFFFFFFF
    if a:
        t.note("intact", a.read_exact(3000) == seg(0) + seg(1) + seg(2))


@scenario("data/reordered")
def reordered(t: Run) -> None:
    """Segment 2 before segment 1: a duplicate ACK at once, then one ACK for both."""
    c, a = established(t)
    base = c.snd_nxt
    c.push(seg(1), seq=(base + 1000) & 0xFFFFFFFF)
    c.expect("duplicate ACK", since=c.t_sent)
    c.push(seg(0), seq=base)
    c.expect("ACK of both", since=c.t_sent)
    c.snd_nxt = (base + 2000) & 0xFFFFFFFF
    c.quiet("then", 0.2)
    if a:
        t.note("intact", a.read_exact(2000) == seg(0) + seg(1))


@scenario("data/duplicated")
def duplicated(t: Run) -> None:
    """The same segment twice: the copy is ACKed at once (RFC 9293 §3.10.7.4) and delivered once."""
    c, a = established(t)
    base = c.snd_nxt
    c.push(seg(0))
    c.expect("ACK")
    c.push(seg(0), seq=base)
    c.expect("ACK of the copy", since=c.t_sent)
    c.push(b"end")
    c.expect("ACK of the rest")
    if a:
        t.note("intact", a.read_exact(1003) == seg(0) + b"end")
        a.read(timeout=0.2, label="nothing more")


@scenario("data/overlap")
def overlap(t: Run) -> None:
    """A segment overlapping what was received: only the new part is taken."""
    c, a = established(t)
    base = c.snd_nxt
    data = seg(0) + seg(1)
    c.push(data[:1000])
    c.expect("ACK")
    c.push(data[500:1500], seq=(base + 500) & 0xFFFFFFFF)
    c.expect("ACK of the overlap")
    c.snd_nxt = (base + 1500) & 0xFFFFFFFF
    if a:
        t.note("intact", a.read_exact(1500) == data[:1500])


@scenario("data/fin-before-hole")
def fin_before_hole(t: Run) -> None:
    """Data+FIN arrive before the data ahead of them: duplicate ACK; the hole filled, all is ACKed with the FIN."""
    c, a = established(t)
    base = c.snd_nxt
    c.fin(seg(1), seq=(base + 1000) & 0xFFFFFFFF)
    c.expect("duplicate ACK")
    c.push(seg(0), seq=base)
    c.expect("ACK of data and FIN")
    c.snd_nxt = (base + 2001) & 0xFFFFFFFF
    if a:
        t.note("intact", a.read_exact(2000) == seg(0) + seg(1))
        a.read(label="then")


@scenario("data/beyond-window")
def beyond_window(t: Run) -> None:
    """A segment that starts past the advertised window is dropped and answered with an ACK."""
    c, a = established(t)
    if c.edge is None:
        return
    c.push(b"far", seq=(c.edge + 100) & 0xFFFFFFFF)
    c.expect("reply")
    c.push(b"near")
    c.expect("ACK of data")
    if a:
        a.read_exact(4)
        a.read(timeout=0.2, label="nothing more")


@scenario("data/fast-retransmit")
def fast_retransmit(t: Run) -> None:
    """Segment 2 of 8 from the DUT lost: three duplicate ACKs bring it again at once (RFC 5681 §3.2), no RTO wait."""
    c, a = established(t)
    if not a:
        return
    a.write(bytes(8 * 1460))
    fs = c.frames(0.1, accept=False)
    sent = sum(len(f.payload) for f in fs)
    t.note("sent", f"{sent} bytes")
    start = c.rcv_nxt
    c.ack(ack=(start + 1460) & 0xFFFFFFFF)
    for _ in range(3):
        c.ack(ack=(start + 1460) & 0xFFFFFFFF)
    c.expect("after 3 duplicate ACKs", 0.5, accept=False, since=c.t_sent)
    c.rcv_nxt = (start + sent) & 0xFFFFFFFF
    c.ack()
    c.quiet("after the full ACK", 0.3)


@scenario("data/ack-every-segment-in-quick-ack")
def quick_ack(t: Run) -> None:
    """At the start of a connection each data segment is ACKed at once (quick ACKs, as Linux does)."""
    c, a = established(t)
    for k in range(4):
        s = c.push(seg(k)[:100])
        c.expect(f"ACK {k + 1}", since=s)
    if a:
        a.read_exact(400)


NO_NAGLE = ("the engine relays what the host socket yields without Nagle's delay (docs/design.md); the application's "
            "own Nagle acts on its loopback leg, where ACKs come back at once")


@scenario("data/nagle", reason=NO_NAGLE, differs=("before the ACK", "after the ACK"))
def nagle(t: Run) -> None:
    """Without TCP_NODELAY, a second small write waits while the first is unacknowledged (RFC 9293 §3.7.4)."""
    app = t.listen(nodelay=False)
    c = t.peer()
    c.open()
    a = app.accept()
    if not a:
        return
    a.send_now(b"1" * 100)
    t.sleep(0.02)
    a.send_now(b"2" * 100)
    fs = c.frames(0.15, accept=False)  # the bench does not ACK yet (well within the 200 ms RTO)
    t.note("before the ACK", f"{sum(len(f.payload) for f in fs)} bytes")
    if fs:
        c.rcv_nxt = (fs[0].seq + len(fs[0].payload)) & 0xFFFFFFFF
    c.ack()
    fs = c.frames(0.15, accept=False)
    t.note("after the ACK", f"{sum(len(f.payload) for f in fs)} bytes")


NO_URGENT = ("the engine does not carry urgent data (documented in stack/tcp; RFC 6093: legacy, new applications "
             "must not use it): the byte reaches the host socket inline")


@scenario("data/urgent", reason=NO_URGENT, differs="read")
def urgent(t: Run) -> None:
    """A segment with URG: Linux (SO_OOBINLINE off) takes the last urgent byte out of the stream (RFC 6093)."""
    c, a = established(t)
    c.send(0x18 | 0x20, b"abc", urgent=3)  # PSH ACK URG, the urgent pointer after "c"
    c.expect("ACK of data")
    c.push(b"def")
    c.expect("ACK of more data")
    if a:
        a.read_exact(6, timeout=0.5)
