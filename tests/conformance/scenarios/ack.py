"""When the DUT acknowledges: quick ACKs at the start, delayed ACKs after (RFC 9293 §3.8.6.3, RFC 5681 §4.2)."""

from __future__ import annotations

from tests.conformance.bench import Run
from tests.conformance.scenarios import scenario
from tests.conformance.scenarios.rst import established


def warm_up(t: Run, c, a, n: int = 20) -> None:
    """Enough small segments to leave Linux's quick-ACK mode (at most 16 quick ACKs)."""
    for _ in range(n):
        c.push(b"q" * 100)
        c.recv(0.3)
        if a:
            a.read_exact(100, label=None)


@scenario("ack/delayed-ack", solo=True)
def delayed(t: Run) -> None:
    """Out of quick-ACK mode, a lone small segment: its ACK waits for the delayed-ACK timer (Linux: 40 ms)."""
    c, a = established(t)
    warm_up(t, c, a)
    s = c.push(b"lone")
    c.expect("ACK of a lone segment", 0.6, since=s)
    c.quiet("then", 0.3)
    if a:
        a.read_exact(4)


@scenario("ack/two-full-segments", solo=True)
def two_full(t: Run) -> None:
    """Out of quick-ACK mode, two full-sized segments to an application that keeps reading: ACKed at once
    (RFC 9293 §3.8.6.3: at least every second full-sized segment)."""
    c, a = established(t)
    warm_up(t, c, a)
    if a:
        a.read_background()
    c.push(b"f" * 1460)
    s = c.push(b"g" * 1460)
    fs = c.frames(0.3)
    last = fs[-1] if fs else None
    t.note("last ACK", c.describe(last, since=s))
    if a:
        t.note("read", f"{len(a.background_data())} bytes")


@scenario("ack/ack-of-hole-fill")
def hole_fill(t: Run) -> None:
    """Out of quick-ACK mode too, a segment that fills a hole is ACKed at once (RFC 5681 §4.2)."""
    c, a = established(t)
    warm_up(t, c, a)
    base = c.snd_nxt
    c.push(b"2" * 500, seq=(base + 500) & 0xFFFFFFFF)
    c.expect("duplicate ACK", since=c.t_sent)
    s = c.push(b"1" * 500, seq=base)
    c.snd_nxt = (base + 1000) & 0xFFFFFFFF
    c.expect("ACK of the filled hole", since=s)
    if a:
        t.note("intact", a.read_exact(1000) == b"1" * 500 + b"2" * 500)
