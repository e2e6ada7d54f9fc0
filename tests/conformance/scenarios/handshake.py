"""Opening: options as negotiated (RFC 9293 §3.7.1, RFC 7323, RFC 2018), retransmitted and
crossed SYNs, resets and odd segments while opening (RFC 9293 §3.10.7.2-3)."""

from __future__ import annotations

from tests.conformance.bench import Run
from tests.conformance.scenarios import scenario
from tests.conformance.wire import ACK, FIN, RST, SYN, Options

NO_SACK_TS = ("the engine offers neither SACK-permitted nor timestamps (documented in stack/tcp; "
              "RFC 2018/7323 make both optional)")
HOST_FIRST = ("the engine connects the host socket before it answers the guest's SYN (docs/design.md), "
              "so the application has accepted before the guest's RST and then sees the reset")
LINEAR_SYN = ("Linux 6.x retries its first SYNs at a fixed 1 s (tcp_syn_linear_timeouts=4); the engine backs "
              "off exponentially as RFC 6298 §5.5 says")
QUICK_SYN = ("after an unacceptable ACK in SYN-SENT Linux resends its SYN at once (a heuristic for a peer with "
             "stale state); the engine waits for its RTO as RFC 9293 §3.10.7.3 describes")
PORT_FIRST = ("the slirp port driver accepts the host client before the engine opens towards the guest "
              "(as slirp4netns), so the client sees its connection reset, not refused")


def sizes(run: Run, label: str, peer, n: int, timeout: float = 2.0) -> None:
    """Receive ``n`` bytes (ACKing them) and write down the segment size the DUT used."""
    seg = 0
    got = 0
    for f in peer.frames(timeout, limit=400):
        if f.payload:
            seg = max(seg, f.gso_size or len(f.payload))
            got += len(f.payload)
            peer.ack()
        if got >= n:
            break
    run.note(label, f"{got} bytes in segments of {seg}")


@scenario("handshake/options-all", reason=NO_SACK_TS, differs="SYN-ACK")
def options_all(t: Run) -> None:
    """A SYN with MSS, SACK-permitted, timestamps and window scale: which the SYN-ACK echoes."""
    app = t.listen()
    c = t.peer(mss=1460, ws=7, sackok=True, ts=True)
    c.open()
    a = app.accept()
    c.push(b"hello")
    c.expect("ACK of data")
    if a:
        a.read_exact(5)


@scenario("handshake/options-none")
def options_none(t: Run) -> None:
    """A SYN without options: the SYN-ACK offers MSS only; the DUT sends 536-byte segments (RFC 9293 §3.7.1)."""
    app = t.listen()
    c = t.peer(mss=None, ws=None)
    c.open()
    a = app.accept()
    if a:
        a.write(b"m" * 3000)
        sizes(t, "data", c, 3000)


@scenario("handshake/mss-and-wscale-applied")
def mss_wscale(t: Run) -> None:
    """MSS 1000 and window scale 2 from the SYN: segments of 1000, at most (field << 2) bytes in flight."""
    app = t.listen()
    c = t.peer(mss=1000, ws=2, win=1000)  # 1000 << 2 = 4000 bytes
    c.open()
    a = app.accept()
    if a:
        a.write(b"w" * 10000)
        t.note("first burst", burst(c))
        c.ack()
        t.note("after the ACK", burst(c))


@scenario("handshake/wscale-over-14")
def wscale_over_14(t: Run) -> None:
    """A shift count of 15 is taken as 14 (RFC 7323 §2.3): window field 1 means 16384 bytes, not 32768."""
    app = t.listen()
    c = t.peer(ws=15, win=65535)
    c.open()
    a = app.accept()
    if a:
        a.write(b"z" * 60000)
        burst(c)
        acked = c.rcv_nxt
        c.ack(win=1)
        burst(c)
        n = c.rseq(c.rcv_nxt) - c.rseq(acked)
        size = "up to 8 KiB" if n <= 8192 else "8-16 KiB" if n <= 16384 else "over 16 KiB"
        t.note("sent into a window of field 1", size)


def burst(c, within: float = 0.12) -> str:
    """What the DUT sends at once (well before its 200 ms RTO): new bytes and the largest segment.
    RCV.NXT moves to the end of it, as if the bench had received it all."""
    fs = c.frames(within, accept=False)
    new = 0
    seg = 0
    for f in fs:
        end = (f.seq + len(f.payload)) & 0xFFFFFFFF
        if f.payload and c.rseq(end) > c.rseq(c.rcv_nxt):
            new += c.rseq(end) - max(c.rseq(f.seq), c.rseq(c.rcv_nxt))
            c.rcv_nxt = end
        seg = max(seg, f.gso_size or len(f.payload))
    return f"{new} bytes, largest segment {seg}"


@scenario("handshake/syn-retransmitted-by-peer")
def syn_again(t: Run) -> None:
    """The guest's SYN again (its SYN-ACK was lost): the same SYN-ACK again, at once."""
    t.listen()
    c = t.peer()
    c.syn()
    c.expect("SYN-ACK", opts=True)
    t.sleep(0.2)
    sent = c.syn(seq=c.iss)
    c.expect("SYN-ACK again", since=sent)
    c.ack()
    c.quiet("then", 0.3)


@scenario("handshake/synack-retransmit")
def synack_retransmit(t: Run) -> None:
    """No ACK for the SYN-ACK: it is sent again after 1 s, then 2 s (RFC 6298 §2.1, §5.5)."""
    app = t.listen()
    c = t.peer()
    sent = c.syn()
    f0 = c.expect("SYN-ACK", since=sent)
    f1 = c.expect("SYN-ACK 2", 2.0)
    f2 = c.expect("SYN-ACK 3", 3.0)
    if f0 and f1 and f2:
        t.note("gaps", f"{_bin(f1.t - f0.t)}, {_bin(f2.t - f1.t)}")
    c.ack()
    app.accept()


@scenario("handshake/syn-retransmit", reason=LINEAR_SYN, differs="gaps")
def syn_retransmit(t: Run) -> None:
    """The DUT's SYN unanswered: sent again after 1 s, then 2 s (RFC 6298 §5.5); a late SYN-ACK still opens."""
    c = t.server_peer()
    app = t.connect()
    f0 = c.expect("SYN", 2.0)
    f1 = c.expect("SYN 2", 2.0)
    f2 = c.expect("SYN 3", 3.0)
    if f0 and f1 and f2:
        t.note("gaps", f"{_bin(f1.t - f0.t)}, {_bin(f2.t - f1.t)}")
    c.send(SYN | ACK, opts=Options(mss=1460, ws=7))
    c.expect("ACK")
    app.connected()


@scenario("handshake/active-open", reason=NO_SACK_TS, differs="SYN")
def active_open(t: Run) -> None:
    """The DUT opens: its SYN's options, its ACK of the SYN-ACK, data both ways."""
    c = t.server_peer()
    app = t.connect()
    c.answer()
    app.connected()
    app.send_now(b"ping")
    c.expect("data")
    c.ack()
    c.push(b"pong")
    c.expect("ACK of data")
    app.read_exact(4)


@scenario("handshake/simultaneous-open")
def simultaneous_open(t: Run) -> None:
    """Crossed SYNs (RFC 9293 Figure 8): SYN-ACK from SYN-SENT, then ESTABLISHED on the peer's SYN-ACK."""
    c = t.server_peer()
    app = t.connect()
    f = c.expect("SYN", 2.0)
    if f is None:
        return
    c.send(SYN, opts=Options(mss=1460, ws=7))  # our own SYN, not an answer
    c.expect("SYN-ACK")
    c.send(SYN | ACK, seq=c.iss, opts=Options(mss=1460, ws=7))
    c.quiet("after our SYN-ACK", 0.3)
    app.connected()
    app.send_now(b"x")
    c.expect("data")
    c.ack()
    c.push(b"y")
    c.expect("ACK of data")
    app.read_exact(1)


@scenario("handshake/syn-to-closed-port")
def closed_port(t: Run) -> None:
    """Nobody listens: <SEQ=0><ACK=ISN+1><CTL=RST,ACK> (RFC 9293 §3.10.7.1)."""
    c = t.peer()
    c.syn()
    c.expect("reply")
    c.quiet("then", 0.3)


@scenario("handshake/syn-with-data")
def syn_with_data(t: Run) -> None:
    """Data on a SYN (no Fast Open cookie) is not acknowledged; the guest sends it again."""
    app = t.listen()
    c = t.peer()
    c.send(SYN, b"early", opts=Options(mss=1460, ws=7))
    c.snd_nxt = (c.iss + 1) & 0xFFFFFFFF
    f = c.expect("SYN-ACK")
    if f is None:
        return
    c.ack()
    a = app.accept()
    c.push(b"early")
    c.expect("ACK of data")
    if a:
        a.read_exact(5)


@scenario("handshake/bad-ack-in-syn-received")
def bad_ack_synrcvd(t: Run) -> None:
    """An ACK for a sequence number never sent in SYN-RECEIVED: <SEQ=SEG.ACK><CTL=RST>; the right ACK still opens."""
    app = t.listen()
    c = t.peer()
    c.syn()
    f = c.expect("SYN-ACK")
    if f is None:
        return
    c.ack(ack=(f.seq + 1000) & 0xFFFFFFFF)
    c.expect("reply")
    c.ack()
    c.quiet("then", 0.3)
    app.accept()


@scenario("handshake/rst-in-syn-received", reason=HOST_FIRST, differs=("accept", "read"))
def rst_synrcvd(t: Run) -> None:
    """The guest resets its half-open connection: it is gone, no reply."""
    app = t.listen()
    c = t.peer()
    c.syn()
    if c.expect("SYN-ACK") is None:
        return
    c.rst()
    c.quiet("then", 0.3)
    a = app.accept(0.5)
    if a:
        a.read()


@scenario("handshake/rst-in-syn-sent", reason=PORT_FIRST, differs="connect")
def rst_synsent(t: Run) -> None:
    """RST,ACK acknowledging the DUT's SYN: the open fails (ECONNREFUSED)."""
    c = t.server_peer()
    app = t.connect()
    f = c.expect("SYN", 2.0)
    if f is None:
        return
    c.send(RST | ACK, seq=0, ack=(f.seq + 1) & 0xFFFFFFFF)
    c.quiet("then", 0.3)
    res = app.connected(label="connect")
    if res == "ok":  # the engine's client: reset after its accept, read says so
        t.note("connect", "ok, then " + str(app.read(label=None)))


@scenario("handshake/rst-bad-ack-in-syn-sent", reason=QUICK_SYN, differs="after the RST")
def rst_bad_ack_synsent(t: Run) -> None:
    """RST,ACK with an unacceptable ACK in SYN-SENT is ignored (RFC 9293 §3.10.7.3); the open goes on."""
    c = t.server_peer()
    app = t.connect()
    f = c.expect("SYN", 2.0)
    if f is None:
        return
    c.send(RST | ACK, seq=0, ack=(f.seq + 1000) & 0xFFFFFFFF)
    c.quiet("after the RST", 0.3)
    c.send(SYN | ACK, opts=Options(mss=1460, ws=7))
    c.expect("ACK")
    app.connected()


@scenario("handshake/synack-bad-ack", reason=QUICK_SYN, differs="after the RST")
def synack_bad_ack(t: Run) -> None:
    """A SYN-ACK acknowledging the wrong number: <SEQ=SEG.ACK><CTL=RST>, still SYN-SENT; the right one opens."""
    c = t.server_peer()
    app = t.connect()
    f = c.expect("SYN", 2.0)
    if f is None:
        return
    c.send(SYN | ACK, ack=(f.seq + 1000) & 0xFFFFFFFF, opts=Options(mss=1460, ws=7))
    c.expect("reply")
    c.quiet("after the RST", 0.3)
    c.send(SYN | ACK, seq=c.iss, opts=Options(mss=1460, ws=7))
    c.expect("ACK")
    app.connected()


@scenario("handshake/fin-in-syn-sent")
def fin_synsent(t: Run) -> None:
    """A FIN without SYN or ACK in SYN-SENT is dropped (RFC 9293 §3.10.7.3 fifth)."""
    c = t.server_peer()
    app = t.connect()
    if c.expect("SYN", 2.0) is None:
        return
    c.send(FIN, seq=c.iss)
    c.quiet("after the FIN", 0.3)
    c.send(SYN | ACK, seq=c.iss, opts=Options(mss=1460, ws=7))
    c.snd_nxt = (c.iss + 1) & 0xFFFFFFFF
    c.expect("ACK")
    app.connected()


def _bin(dt: float) -> str:
    from tests.conformance.bench import tbin

    return tbin(dt)


NO_ECN = "the engine does not negotiate ECN (RFC 3168 is optional; its guest link never marks congestion)"


@scenario("handshake/ecn-setup", reason=NO_ECN, differs="SYN-ACK")
def ecn_setup(t: Run) -> None:
    """A SYN asking for ECN (ECE+CWR, RFC 3168 §6.1.1): Linux (tcp_ecn=2) agrees with ECE on its SYN-ACK."""
    app = t.listen()
    c = t.peer()
    c.syn(flags=SYN | 0x40 | 0x80)
    f = c.expect("SYN-ACK")
    if f is None:
        return
    c.ack()
    a = app.accept()
    c.push(b"ecn?")
    c.expect("ACK of data")
    if a:
        a.read_exact(4)
