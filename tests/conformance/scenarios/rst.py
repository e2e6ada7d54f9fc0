"""Resets and blind-attack defences: RST validation, challenge ACKs (RFC 5961 §3-§5), ACK checks."""

from __future__ import annotations

from tests.conformance.bench import Run
from tests.conformance.scenarios import scenario
from tests.conformance.wire import SYN, Options

def established(t: Run, **kw):
    """Listener, handshake, accept: (peer, application socket)."""
    app = t.listen()
    c = t.peer(**kw)
    c.open()
    return c, app.accept()


@scenario("rst/exact")
def rst_exact(t: Run) -> None:
    """An RST at RCV.NXT resets the connection: no reply, the application reads ECONNRESET."""
    c, a = established(t)
    c.rst()
    c.quiet("reply", 0.3)
    if a:
        a.read()


@scenario("rst/in-window-challenge")
def rst_in_window(t: Run) -> None:
    """An RST inside the window but not at RCV.NXT gets a challenge ACK (RFC 5961 §3.2); the connection lives."""
    c, a = established(t)
    c.rst(seq=(c.snd_nxt + 1000) & 0xFFFFFFFF)
    c.expect("challenge ACK")
    c.quiet("then", 0.2)
    c.push(b"alive")
    c.expect("ACK of data")
    if a:
        a.read_exact(5)


@scenario("rst/out-of-window")
def rst_out_of_window(t: Run) -> None:
    """An RST outside the window is dropped silently (RFC 5961 §3.2); the connection lives."""
    c, a = established(t)
    c.rst(seq=(c.snd_nxt + (1 << 30)) & 0xFFFFFFFF)
    c.quiet("reply", 0.3)
    c.push(b"alive")
    c.expect("ACK of data")
    if a:
        a.read_exact(5)


@scenario("rst/data-then-rst")
def data_then_rst(t: Run) -> None:
    """Data and then an RST before the application reads: it reads the data, then ECONNRESET (as Linux queues it)."""
    c, a = established(t)
    c.push(b"last words")
    c.rst()
    c.frames(0.3)
    if a:
        t.sleep(0.2)
        a.read_exact(10)
        a.read(label="then")


@scenario("rst/syn-in-established")
def syn_established(t: Run) -> None:
    """A SYN on an established connection gets a challenge ACK (RFC 5961 §4.2), whatever its sequence number."""
    c, a = established(t)
    c.send(SYN, seq=(c.snd_nxt + 12345) & 0xFFFFFFFF, opts=Options(mss=1460, ws=7))
    c.expect("challenge ACK")
    c.quiet("then", 0.2)
    c.push(b"alive")
    c.expect("ACK of data")
    if a:
        a.read_exact(5)


@scenario("rst/challenge-ack-rate")
def challenge_rate(t: Run) -> None:
    """Three in-window RSTs back to back: one challenge ACK (RFC 5961 §7 throttling; Linux: one per 500 ms)."""
    c, _a = established(t)
    for k in range(3):
        c.rst(seq=(c.snd_nxt + 1000 + k) & 0xFFFFFFFF)
    fs = c.frames(0.3)
    t.note("replies", f"{len(fs)} ACK(s)")


@scenario("rst/ack-of-unsent-data")
def ack_unsent(t: Run) -> None:
    """Data whose ACK covers bytes never sent (RFC 9293 §3.10.7.4, RFC 5961 §5.2): dropped; what is answered."""
    c, a = established(t)
    c.push(b"bogus", ack=(c.rcv_nxt + 1000) & 0xFFFFFFFF)
    c.snd_nxt = (c.snd_nxt - 5) & 0xFFFFFFFF  # the segment does not count: send it again properly below
    c.quiet("reply", 0.3)
    if a:
        a.read(timeout=0.2)
    c.push(b"fine!")
    c.expect("ACK of data")
    if a:
        a.read_exact(5)


@scenario("rst/ack-too-old")
def ack_too_old(t: Run) -> None:
    """Data whose ACK is far below SND.UNA (RFC 5961 §5.2): dropped with a challenge ACK."""
    c, a = established(t)
    c.push(b"bogus", ack=(c.rcv_nxt - 0x7FFF0000) & 0xFFFFFFFF)
    c.snd_nxt = (c.snd_nxt - 5) & 0xFFFFFFFF
    c.expect("reply")
    c.quiet("then", 0.2)
    if a:
        a.read(timeout=0.2)


@scenario("rst/bad-checksum")
def bad_checksum(t: Run) -> None:
    """Data with a wrong TCP checksum is dropped without a reply; its retransmission is taken."""
    c, a = established(t)
    c.push(b"corrupt", bad_checksum=True)
    c.snd_nxt = (c.snd_nxt - 7) & 0xFFFFFFFF
    c.quiet("reply", 0.3)
    c.push(b"correct")
    c.expect("ACK of data")
    if a:
        a.read_exact(7)


@scenario("rst/rst-ack-from-app")
def rst_from_app(t: Run) -> None:
    """The application aborts (SO_LINGER 0): the DUT sends <SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK>."""
    c, a = established(t)
    c.push(b"abc")
    c.expect("ACK of data")
    if a:
        a.read_exact(3)
        a.send_now(b"12345")
        c.expect("data")
        c.ack()
        t.sleep(0.1)  # the ACK is in before the abort (the engine's host leg is asynchronous)
        a.abort()
    c.expect("reset")
    c.quiet("then", 0.2)
    c.push(b"more")
    c.expect("reply to data after the reset")

