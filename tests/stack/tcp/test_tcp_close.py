"""Closing traces: half-close both ways, simultaneous close, timers, RST rules, keepalive."""

import pytest

from rootlessnet.stack.tcp.notice import Notice
from rootlessnet.stack.tcp.states import State
from rootlessnet.stack.tcp.timers import TcpConfig
from tcp_trace import GUEST_ISS as G
from tcp_trace import OUR_ISS as L
from tcp_trace import expect, nothing, passive, seg

R = G + 1
S = L + 1


def test_peer_half_close_then_we_send_and_close():
    c = passive()
    n = c.receive(seg(R, S, flags="FA", data=b"bye"), 0)
    assert n & Notice.PEER_FIN and n & Notice.READABLE
    assert c.state is State.CLOSE_WAIT and c.peer_closed and not c.at_eof
    expect(c, {"seq": S, "ack": R + 4}, now=0)  # FIN acked at once
    assert bytes(c.read(10)) == b"bye" and c.at_eof
    c.send(b"still talking")  # half-close: we may keep sending
    expect(c, {"seq": S, "data": b"still talking", "ack": R + 4}, now=0.1)
    c.close()
    assert c.state is State.LAST_ACK
    expect(c, {"seq": S + 13, "ctl": "FIN", "ack": R + 4}, now=0.1)
    n = c.receive(seg(R + 4, S + 14), 0.2)
    assert n & Notice.CLOSED and c.closed


def test_we_half_close_and_keep_receiving_then_time_wait():
    c = passive(TcpConfig(time_wait=60.0))
    c.send(b"data")
    c.close()
    assert c.state is State.FIN_WAIT_1
    expect(c, {"seq": S, "data": b"data", "ctl": "FIN"}, now=0)  # FIN piggybacked
    c.receive(seg(R, S + 5), 0.01)
    assert c.state is State.FIN_WAIT_2
    c.receive(seg(R, S + 5, data=b"more from guest"), 10.0)  # guest still sends
    assert c.readable() == 15
    c.receive(seg(R + 15, S + 5, flags="FA"), 100.0)  # FIN-WAIT-2 has no timer unless orphaned
    assert c.state is State.TIME_WAIT
    expect(c, {"ack": R + 16}, now=100.0)
    c.receive(seg(R + 15, S + 5, flags="FA"), 130.0)  # retransmitted FIN: re-ACK, restart 2MSL
    expect(c, {"ack": R + 16})
    assert c.poll_at() == pytest.approx(190.0)
    nothing(c, now=189.0)
    n = c.poll(190.0)
    assert n & Notice.CLOSED and c.closed


def test_simultaneous_close():
    c = passive()
    c.close()
    expect(c, {"seq": S, "ctl": "FIN", "ack": R}, now=0)
    c.receive(seg(R, S, flags="FA"), 0.01)  # guest's FIN crosses ours
    assert c.state is State.CLOSING
    expect(c, {"seq": S + 1, "ack": R + 1}, now=0.01)
    c.receive(seg(R + 1, S + 1), 0.02)
    assert c.state is State.TIME_WAIT
    nothing(c, now=0.02)
    assert c.poll_at() == pytest.approx(60.02)
    assert c.poll(60.02) & Notice.CLOSED


def test_fin_ack_together_goes_straight_to_time_wait():
    c = passive()
    c.close()
    c.poll(0)
    c.take_output()
    c.receive(seg(R, S + 1, flags="FA"), 0.01)
    assert c.state is State.TIME_WAIT


def test_fin_wait_2_timeout_for_orphans():
    c = passive(TcpConfig(fin_wait_2_timeout=60.0))
    c.close(orphan=True)
    c.poll(0)
    c.take_output()
    c.receive(seg(R, S + 1), 0.1)
    assert c.state is State.FIN_WAIT_2
    nothing(c, now=0.1)
    assert c.poll_at() == pytest.approx(60.1)
    n = c.poll(60.1)
    assert n & Notice.CLOSED
    expect(c, {"ctl": "RST", "seq": S + 1})


def test_fin_retransmitted_until_acked():
    c = passive()
    c.close()
    expect(c, {"ctl": "FIN", "seq": S}, now=0)
    expect(c, {"ctl": "FIN", "seq": S}, now=0.2)


def test_out_of_order_fin_processed_when_hole_fills():
    c = passive()
    c.receive(seg(R + 5, S, flags="FA", data=b"world"), 0)
    expect(c, {"ack": R})
    assert c.state is State.ESTABLISHED
    c.receive(seg(R, S, data=b"hello"), 0)
    assert c.state is State.CLOSE_WAIT and bytes(c.read(20)) == b"helloworld"
    expect(c, {"ack": R + 11}, now=0)


# ---------------------------------------------------------------- RST rules
def test_exact_rst_resets():
    c = passive()
    c.send(b"pending")
    n = c.receive(seg(R, flags="R"), 0)
    assert n & Notice.RESET and n & Notice.CLOSED and c.reset_by_peer
    nothing(c, now=0)


def test_in_window_inexact_rst_gets_challenge_ack():
    c = passive()
    c.receive(seg(R + 100, flags="R"), 0)  # RFC 5961 §3.2
    expect(c, {"seq": S, "ack": R, "ctl": "NONE"})
    assert c.state is State.ESTABLISHED and c.stats.challenge_acks == 1


def test_out_of_window_rst_dropped_silently():
    c = passive(TcpConfig(recv_buffer=1000))
    c.receive(seg(R + 5000, flags="R"), 0)
    nothing(c)
    assert c.state is State.ESTABLISHED and c.stats.rst_ignored == 1


def _time_wait():
    c = passive()
    c.close()
    c.poll(0)
    c.take_output()
    c.receive(seg(R, S + 1, flags="FA"), 0.01)
    assert c.state is State.TIME_WAIT
    c.poll(0.01)
    c.take_output()
    return c


def test_rst_at_rcv_nxt_ends_time_wait_as_linux():
    """tcp_rfc1337=0 (Linux's default): the guest's RST, e.g. its answer to our ACK when it
    reconnects from the same port, ends TIME-WAIT at once instead of after 2MSL."""
    c = _time_wait()
    n = c.receive(seg(R + 1, flags="R"), 0.02)
    assert c.state is State.CLOSED and n & Notice.CLOSED
    assert c.stats.time_wait_killed == 1 and not c.reset_by_peer
    nothing(c, now=0.02)


@pytest.mark.parametrize("off", [1, -1, 1000])
def test_rst_elsewhere_in_time_wait_is_ignored_without_challenge(off):
    c = _time_wait()
    c.receive(seg(R + 1 + off, flags="R"), 0.02)
    assert c.state is State.TIME_WAIT and c.stats.rst_ignored == 1
    nothing(c, now=0.02)


def test_syn_in_established_gets_challenge_ack():
    c = passive()
    c.receive(seg(R + 10, flags="S"), 0)  # RFC 5961 §4.2
    expect(c, {"seq": S, "ack": R})
    assert c.state is State.ESTABLISHED and c.stats.challenge_acks == 1


def test_new_syn_in_time_wait_reported():
    c = passive()
    c.close()
    c.poll(0)
    c.take_output()
    c.receive(seg(R, S + 1, flags="FA"), 0.01)
    c.poll(0.01)
    c.take_output()
    n = c.receive(seg(R + 100000, flags="S"), 1.0)
    assert n & Notice.SYN_IN_TIME_WAIT


def test_segment_without_ack_dropped():
    c = passive()
    c.receive(seg(R, flags="", data=b"x"), 0)
    assert c.readable() == 0 and c.stats.no_ack_dropped == 1


def test_abort_sends_rst():
    c = passive()
    c.abort()
    expect(c, {"ctl": "RST", "seq": S, "ack": R})
    assert c.closed
    c.receive(seg(R, S, data=b"late"), 1)  # segments after CLOSED: RST per §3.10.7.1
    expect(c, {"ctl": "RST", "seq": S, "ack": None})


# ---------------------------------------------------------------- keepalive / idle
def test_keepalive_probes_then_abort():
    c = passive(TcpConfig(keepalive=(10.0, 1.0, 3)))
    assert c.poll_at() == pytest.approx(10.0)
    expect(c, {"seq": S - 1, "ack": R, "len": 0}, now=10.0)
    c.receive(seg(R, S), 10.5)  # the peer answers: idle restarts
    assert c.poll_at() == pytest.approx(20.5)
    expect(c, {"seq": S - 1}, now=20.5)
    expect(c, {"seq": S - 1}, now=21.5)
    expect(c, {"seq": S - 1}, now=22.5)
    n = c.poll(23.5)
    assert n & Notice.TIMED_OUT and c.closed and c.timed_out
    expect(c, {"ctl": "RST"})
    assert c.stats.keepalive_probes == 4


def test_last_activity_tracks_traffic():
    c = passive()
    c.receive(seg(R, S, data=b"x"), 42.0)
    assert c.last_activity == 42.0


def test_data_before_rst_is_kept_for_the_host_side():
    """Linux's recv() returns queued data before ECONNRESET; the buffer used to be cleared."""
    c = passive()
    c.receive(seg(R, S, data=b"last words"), 0)
    n = c.receive(seg(R + 10, flags="R"), 0.01)
    assert n & Notice.RESET and c.closed and c.reset_by_peer
    assert c.readable() == 10 and bytes(c.read(100)) == b"last words"
