"""Closing: half-close both ways, simultaneous close, a FIN in every state, TIME-WAIT and its reuse,
resets from the application (RFC 9293 §3.6, §3.10.4, §3.10.7.4 eighth; RFC 6191; RFC 1337)."""

from __future__ import annotations

from tests.conformance.bench import Run
from tests.conformance.scenarios import scenario
from tests.conformance.scenarios.rst import established
from tests.conformance.wire import ACK, FIN, SYN, Options

MASK = 0xFFFFFFFF
HALF_OR_FULL = ("the application's close() reaches the engine as a FIN on the host leg, the same as shutdown(SHUT_WR), "
                "so the engine takes the data and resets only when the host socket refuses it")


def dut_closes_first(t: Run, c, a, *, ack_fin: bool = True):
    """The application closes; the DUT's FIN arrives (and is ACKed): FIN-WAIT-2, or FIN-WAIT-1 without the ACK."""
    a.close()
    f = c.expect("FIN", 1.0)
    if f is not None and ack_fin:
        c.ack()
    return f


@scenario("close/half-close-by-application")
def half_close_app(t: Run) -> None:
    """shutdown(SHUT_WR): the DUT sends FIN but still takes data; the guest's FIN then ends it (TIME-WAIT)."""
    c, a = established(t)
    if not a:
        return
    a.shutdown_wr()
    c.expect("FIN")
    c.ack()
    c.push(b"still talking")
    c.expect("ACK of data")
    a.read_exact(13)
    c.fin()
    c.expect("ACK of FIN")
    a.read(label="then")
    a.close()
    c.quiet("after close", 0.3)


@scenario("close/half-close-by-guest")
def half_close_guest(t: Run) -> None:
    """The guest's FIN first: the application reads EOF, still writes, then closes (LAST-ACK, CLOSED)."""
    c, a = established(t)
    if not a:
        return
    c.fin()
    c.expect("ACK of FIN")
    a.read(label="read")
    a.send_now(b"x" * 3000)
    c.expect_data("data after our FIN", 3000)
    c.quiet("then", 0.2)
    a.close()
    c.expect("FIN")
    c.ack()
    c.quiet("after the last ACK", 0.3)
    c.push(b"late")
    c.expect("reply to data after CLOSED")


@scenario("close/simultaneous")
def simultaneous(t: Run) -> None:
    """FINs cross (FIN-WAIT-1 gets a FIN: CLOSING); a retransmitted FIN in CLOSING is ACKed again."""
    c, a = established(t)
    if not a:
        return
    f = dut_closes_first(t, c, a, ack_fin=False)
    if f is None:
        return
    c.send(FIN | ACK, ack=f.seq & MASK)  # our FIN, not acknowledging theirs
    c.expect("ACK of our FIN")
    c.send(FIN | ACK, seq=(c.snd_nxt - 1) & MASK, ack=f.seq & MASK)
    c.expect("ACK of the FIN again")
    c.ack()
    c.quiet("after our ACK of their FIN", 0.3)


@scenario("close/fin-in-syn-received")
def fin_synrcvd(t: Run) -> None:
    """The ACK that completes the handshake carries FIN: established and closed by the peer at once (CLOSE-WAIT)."""
    app = t.listen()
    c = t.peer()
    c.syn()
    if c.expect("SYN-ACK") is None:
        return
    c.fin()
    c.expect("ACK of FIN")
    a = app.accept()
    if a:
        a.read(label="read")
        a.close()
        c.expect("FIN")
        c.ack()


@scenario("close/fin-in-fin-wait-2")
def fin_fw2(t: Run) -> None:
    """FIN-WAIT-2 gets the FIN: ACK, TIME-WAIT; a retransmitted FIN in TIME-WAIT is ACKed again."""
    c, a = established(t)
    if not a:
        return
    if dut_closes_first(t, c, a) is None:
        return
    c.quiet("in FIN-WAIT-2", 0.2)
    c.fin()
    c.expect("ACK of FIN")
    c.send(FIN | ACK, seq=(c.snd_nxt - 1) & MASK)
    c.expect("ACK of the FIN again (TIME-WAIT)")


@scenario("close/fin-in-close-wait")
def fin_close_wait(t: Run) -> None:
    """A retransmitted FIN in CLOSE-WAIT is ACKed again; the application's data still flows."""
    c, a = established(t)
    if not a:
        return
    c.fin()
    c.expect("ACK of FIN")
    c.send(FIN | ACK, seq=(c.snd_nxt - 1) & MASK)
    c.expect("ACK of the FIN again")
    a.read(label="read")
    a.send_now(b"bye")
    c.expect("data")


@scenario("close/fin-in-last-ack")
def fin_last_ack(t: Run) -> None:
    """A retransmitted FIN in LAST-ACK (our FIN not yet ACKed): ACKed again; the final ACK closes."""
    c, a = established(t)
    if not a:
        return
    c.fin()
    c.expect("ACK of FIN")
    a.read(label="read")
    a.close()
    f = c.expect("FIN")
    if f is None:
        return
    c.send(FIN | ACK, seq=(c.snd_nxt - 1) & MASK, ack=f.seq & MASK)
    c.expect("reply to the FIN again")
    c.ack()
    c.quiet("after the final ACK", 0.3)


@scenario("close/fin-with-data")
def fin_with_data(t: Run) -> None:
    """Data and FIN in one segment: one ACK covers both; the application reads the data, then EOF."""
    c, a = established(t)
    c.fin(b"goodbye")
    c.expect("ACK")
    if a:
        a.read_exact(7)
        a.read(label="then")


@scenario("close/time-wait-new-syn")
def time_wait_syn(t: Run) -> None:
    """A SYN with a higher ISN on a 4-tuple in TIME-WAIT opens a new connection (RFC 6191, as Linux does)."""
    app = t.listen()
    c = t.peer()
    c.open()
    a = app.accept()
    if not a:
        return
    if dut_closes_first(t, c, a) is None:
        return
    c.fin()
    c.expect("ACK of FIN")
    c2 = t.peer(iss=(c.snd_nxt + 100000) & MASK)
    c2.syn()
    c2.expect("reply to the new SYN")
    c2.ack()
    a2 = app.accept()
    if a2:
        c2.push(b"again")
        c2.expect("ACK of data")
        a2.read_exact(5)


@scenario("close/time-wait-rst")
def time_wait_rst(t: Run) -> None:
    """TIME-WAIT answers an old SYN with an ACK; the guest's RST to that ACK ends TIME-WAIT (tcp_rfc1337=0);
    the SYN again opens a new connection."""
    app = t.listen()
    c = t.peer()
    c.open()
    a = app.accept()
    if not a:
        return
    if dut_closes_first(t, c, a) is None:
        return
    c.fin()
    c.expect("ACK of FIN")
    old = (c.iss - 100000) & MASK
    c2 = t.peer(iss=old)
    c2.irs = c.irs
    c2.syn()
    f = c2.expect("reply to an old SYN")
    if f is None or f.flags & SYN:
        return
    c2.send(0x04, seq=f.ack)  # RST <SEQ=SEG.ACK>, as a guest kernel answers an unexpected ACK
    c2.quiet("after the RST", 0.3)
    c2.irs = None
    c2.syn(seq=old)
    c2.expect("reply to the SYN again")


@scenario("close/unread-data-reset")
def unread_reset(t: Run) -> None:
    """The application closes with unread data: RST, not FIN (RFC 9293 §3.10.4, RFC 2525 §2.17)."""
    c, a = established(t)
    if not a:
        return
    c.push(b"nobody reads this")
    c.expect("ACK of data")
    t.sleep(0.1)
    a.close()
    c.expect("on close")
    c.quiet("then", 0.3)


@scenario("close/data-after-close", reason=HALF_OR_FULL, differs=("reply to data", "then"))
def data_after_close(t: Run) -> None:
    """Data arrives after the application closed (FIN-WAIT-2, orphaned): the DUT resets."""
    c, a = established(t)
    if not a:
        return
    if dut_closes_first(t, c, a) is None:
        return
    t.sleep(0.1)
    c.push(b"anyone there?")
    c.expect("reply to data")
    c.quiet("then", 0.3)


@scenario("close/rst-in-time-wait-ignored-seq")
def tw_rst_bad_seq(t: Run) -> None:
    """An RST in TIME-WAIT whose sequence number is not RCV.NXT changes nothing: an old SYN is still answered."""
    app = t.listen()
    c = t.peer()
    c.open()
    a = app.accept()
    if not a or dut_closes_first(t, c, a) is None:
        return
    c.fin()
    c.expect("ACK of FIN")
    c.send(0x04 | ACK, seq=(c.snd_nxt + 5000) & MASK)
    c.quiet("after an RST out of window", 0.3)
    c.send(SYN, seq=(c.iss - 100000) & MASK, opts=Options(mss=1460, ws=7))
    c.expect("reply to an old SYN")
