"""Timers: retransmission timeout and backoff (RFC 6298, with the 3 s fallback of §5.7), keepalive
(RFC 9293 §3.8.4)."""

from __future__ import annotations

import time

from tests.conformance.bench import Run, tbin
from tests.conformance.scenarios import scenario
from tests.conformance.scenarios.rst import established
from tests.conformance.wire import ACK, SYN, Options

MASK = 0xFFFFFFFF
SLOW_START = ("on the first ACK after an RTO Linux's loss recovery sends more than RFC 5681 §3.1 slow start allows "
              "(2 SMSS from a loss window of 1); the engine keeps to RFC 5681 (NewReno, documented in stack/tcp)")
NO_KEEPALIVE = ("keepalive set by the application acts on its own socket, the loopback leg; the engine runs no "
                "keepalive timer of its own towards the guest (its TcpConfig.keepalive is off)")


def retransmissions(t: Run, c, n: int, since: float, timeout: float = 5.0, label: str = "retransmission") -> None:
    """Write down the next ``n`` segments and the gap before each (the bench does not ACK)."""
    prev = since
    for k in range(n):
        f = c.expect(f"{label} {k + 1}", timeout, accept=False)
        if f is None:
            return
        t.note(f"{label} {k + 1} after", tbin(f.t - prev))
        prev = f.t


@scenario("timers/rto-backoff")
def rto_backoff(t: Run) -> None:
    """Data never ACKed: retransmitted after the RTO (200 ms minimum, as Linux), then 2x, 4x (RFC 6298 §5.5)."""
    c, a = established(t)
    if not a:
        return
    a.send_now(b"r" * 1000)
    f = c.expect("data", accept=False)
    if f is None:
        return
    retransmissions(t, c, 3, f.t)
    c.rcv_nxt = (f.seq + 1000) & MASK
    c.ack()
    c.quiet("after the ACK", 0.5)


@scenario("timers/rto-backoff-reset")
def rto_reset(t: Run) -> None:
    """After backoff, an ACK of new data restarts from the estimated RTO: the next loss waits ~200 ms again."""
    c, a = established(t)
    if not a:
        return
    a.send_now(b"1" * 100)
    f = c.expect("data", accept=False)
    if f is None:
        return
    retransmissions(t, c, 2, f.t)
    c.rcv_nxt = (f.seq + 100) & MASK
    c.ack()
    t.sleep(0.05)
    a.send_now(b"2" * 100)
    f = c.expect("more data", accept=False)
    if f is not None:
        retransmissions(t, c, 1, f.t, label="its retransmission")


@scenario("timers/rto-resends-one-segment", reason=SLOW_START, differs="after its ACK")
def rto_one_segment(t: Run) -> None:
    """On RTO the DUT resends one segment (cwnd = 1 SMSS, RFC 5681 §3.1), then slow start."""
    c, a = established(t)
    if not a:
        return
    a.write(bytes(4 * 1460))
    fs = c.frames(0.1, accept=False)
    t.note("sent", f"{sum(len(f.payload) for f in fs)} bytes")
    start = c.rcv_nxt
    f = c.expect("on RTO", 1.0, accept=False)
    if f is None:
        return
    c.rcv_nxt = (f.seq + len(f.payload)) & MASK
    c.ack()
    fs = c.frames(0.1, accept=False)
    t.note("after its ACK", f"{sum(len(x.payload) for x in fs)} bytes from seq {c.rseq(fs[0].seq) if fs else '-'}")
    c.rcv_nxt = (start + 4 * 1460) & MASK
    c.ack()


@scenario("timers/fallback-3s-passive", budget=40)
def fallback_passive(t: Run) -> None:
    """The SYN-ACK was retransmitted, so no RTT sample: the first data RTO is 3 s (RFC 6298 §5.7)."""
    app = t.listen()
    c = t.peer()
    c.syn()
    c.expect("SYN-ACK")
    f = c.expect("SYN-ACK again", 2.0)
    if f is None:
        return
    c.ack()
    a = app.accept()
    if not a:
        return
    a.send_now(b"d" * 100)
    f = c.expect("data", accept=False)
    if f is not None:
        retransmissions(t, c, 1, f.t, timeout=5.0)


@scenario("timers/fallback-3s-active", budget=40)
def fallback_active(t: Run) -> None:
    """The DUT's SYN was retransmitted, so no RTT sample: the first data RTO is 3 s (RFC 6298 §5.7)."""
    c = t.server_peer()
    app = t.connect()
    c.expect("SYN", 2.0)
    if c.expect("SYN again", 2.0) is None:
        return
    c.send(SYN | ACK, opts=Options(mss=1460, ws=7))
    c.expect("ACK")
    app.connected()
    app.send_now(b"d" * 100)
    f = c.expect("data", accept=False)
    if f is not None:
        retransmissions(t, c, 1, f.t, timeout=5.0)


@scenario("timers/keepalive-probe-answered")
def keepalive_answered(t: Run) -> None:
    """The guest's keepalive probes (SEQ=SND.NXT-1, with no byte or one garbage byte) get an ACK of RCV.NXT."""
    c, a = established(t)
    c.send(ACK, seq=(c.snd_nxt - 1) & MASK)
    c.expect("reply to an empty probe")
    t.sleep(0.6)  # Linux answers empty out-of-window segments at most every 500 ms
    c.send(ACK, b"\0", seq=(c.snd_nxt - 1) & MASK)
    c.expect("reply to a one-byte probe")
    if a:
        a.read(timeout=0.2)


@scenario("timers/keepalive-by-dut", reason=NO_KEEPALIVE,
          differs=("probe 1", "probe 1 after", "probe 2", "probe 2 after", "then", "read"))
def keepalive_dut(t: Run) -> None:
    """The application enables keepalive (1 s idle, 1 s interval, 2 probes): probes, then RST and ETIMEDOUT."""
    app = t.listen(keepalive=(1, 1, 2))
    c = t.peer()
    c.open()
    a = app.accept()
    if not a:
        return
    s = time.time()
    prev = s
    for k in range(2):
        f = c.expect(f"probe {k + 1}", 2.0, win=False)
        if f is None:
            break
        t.note(f"probe {k + 1} after", tbin(f.t - prev))
        prev = f.t
    c.expect("then", 2.0)
    a.read(timeout=0.5)
