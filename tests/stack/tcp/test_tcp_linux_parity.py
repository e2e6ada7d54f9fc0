"""Traces for deviations from Linux that the conformance suite (tests/conformance) found and that were fixed:

* RFC 6298 §5.7: no RTT sample from a handshake whose SYN or SYN-ACK was retransmitted -> first RTO 3 s;
* RFC 6298 / Karn: a backed-off RTO is kept until a valid RTT sample, not reset by any new ACK;
* RFC 9293 §3.8.6.2.1: a super-frame (GSO) never ends in a runt while more data is queued;
* RFC 5961 §7: ACKs to invalid segments are throttled, one per 0.5 s (Linux's tcp_invalid_ratelimit);
* RFC 9293 §3.10.7.4: RCV.WND is the advertised window: buffer space freed but not yet advertised
  does not make a probe into a zero window acceptable (Linux's tcp_receive_window).
"""

import pytest

from rootlessnet.stack.tcp.connection import TcpConnection
from rootlessnet.stack.tcp.timers import TcpConfig
from tcp_trace import GUEST_ISS as G
from tcp_trace import OUR_ISS as L
from tcp_trace import expect, nothing, passive, seg

R = G + 1
S = L + 1


def test_first_rto_is_3s_after_a_retransmitted_syn():
    c = TcpConnection.connect(now=0, iss=L)
    expect(c, {"ctl": "SYN"})
    expect(c, {"ctl": "SYN", "seq": L}, now=1.0)  # the SYN again: no RTT sample (Karn)
    c.receive(seg(G, S, flags="SA", mss=1460), 1.5)
    expect(c, {"seq": S, "ack": R}, now=1.5)
    c.send(b"d" * 100)
    expect(c, {"seq": S, "len": 100}, now=1.5)
    assert c.poll_at() == pytest.approx(4.5)  # RFC 6298 §5.7 (as Linux), not the backed-off 2 s
    nothing(c, now=4.4)
    expect(c, {"seq": S, "len": 100}, now=4.5)


def test_first_rto_is_3s_after_a_retransmitted_syn_ack():
    c = TcpConnection.from_syn(seg(G, flags="S", mss=1460), now=0, iss=L, config=TcpConfig())
    c.accept(0)
    expect(c, {"ctl": "SYN", "ack": R})
    expect(c, {"ctl": "SYN", "ack": R}, now=1.0)
    c.receive(seg(R, S), 1.5)
    assert c.established
    c.send(b"d" * 100)
    expect(c, {"seq": S, "len": 100}, now=1.5)
    assert c.poll_at() == pytest.approx(4.5)  # not the initial 1 s


def test_no_fallback_when_the_handshake_was_sampled():
    c = TcpConnection.connect(now=0, iss=L)
    c.take_output()
    c.receive(seg(G, S, flags="SA", mss=1460), 0.001)
    c.poll(0.001)
    c.take_output()
    c.send(b"d" * 100)
    expect(c, {"len": 100}, now=0.001)
    assert c.poll_at() == pytest.approx(0.201)  # the 200 ms floor from the SYN's sample


def test_backed_off_rto_kept_until_a_valid_sample():
    c = passive(mss=1000)  # handshake sample 0: RTO 200 ms
    c.send(b"1" * 100)
    expect(c, {"seq": S, "len": 100}, now=0)
    expect(c, {"seq": S, "len": 100}, now=0.2)  # RTO, backoff to 0.4
    expect(c, {"seq": S, "len": 100}, now=0.61)  # backoff to 0.8
    c.receive(seg(R, S + 100), 0.7)  # ACK of retransmitted data: no sample (Karn)
    c.send(b"2" * 100)
    expect(c, {"seq": S + 100, "len": 100}, now=0.7)
    assert c.poll_at() == pytest.approx(1.5)  # still 0.8 s, as Linux: only a sample collapses it
    c.receive(seg(R, S + 200), 0.71)  # this one was timed: a valid sample
    c.send(b"3" * 100)
    expect(c, {"seq": S + 200, "len": 100}, now=0.71)
    assert c.poll_at() == pytest.approx(0.91)


def test_window_limited_super_frame_ends_on_a_segment_boundary():
    c = passive(mss=1000, win=3500)  # no window scaling: 3500 bytes
    c.max_tx_payload = 65000
    c.send(b"w" * 20000)
    expect(c, {"seq": S, "len": 3000}, now=0)  # not 3500: the last 500 would be a runt
    nothing(c, now=0.001)  # 500 bytes of window left, data in flight: wait for the ACK
    c.receive(seg(R, S + 3000, win=3500), 0.01)
    expect(c, {"seq": S + 3000, "len": 3000}, now=0.01)


def test_super_frames_are_whole_segments_when_max_tx_is_not_a_multiple():
    c = passive(TcpConfig(send_buffer=1 << 20), mss=1460, wscale=8)
    c.max_tx_payload = 65455  # the engine's GSO limit before the MSS is known (active opens)
    c.send(b"s" * 200000)
    c.receive(seg(R, S, win=65535), 0)
    c._cc.cwnd = 1 << 20  # only the super-frame limit matters here
    out = expect(c, *[{}] * 4, now=0)
    assert [len(s.payload) for s in out[:3]] == [64240] * 3  # 44 x 1460
    assert len(out[3].payload) == 200000 - 3 * 64240  # the end of the queued data may be short


def test_challenge_acks_are_throttled():
    c = passive()
    c.receive(seg(R + 100, flags="R"), 1.0)  # in window, not RCV.NXT: challenge ACK (RFC 5961 §3.2)
    expect(c, {"seq": S, "ack": R})
    c.receive(seg(R + 200, flags="R"), 1.1)
    c.receive(seg(G + 5000, flags="S"), 1.2)  # a SYN's challenge counts against the same limit
    nothing(c)
    c.receive(seg(R + 300, flags="R"), 1.5)
    expect(c, {"seq": S, "ack": R})
    assert c.stats.challenge_acks == 2 and c.stats.oow_acks_limited == 2
    assert c.established


def test_out_of_window_segments_without_data_are_throttled_with_data_are_not():
    c = passive()
    c.receive(seg(R - 10, S), 1.0)  # a pure ACK below the window (a keepalive probe)
    expect(c, {"ack": R})
    c.receive(seg(R - 10, S), 1.0)
    nothing(c)
    c.receive(seg(R - 10, S, data=b"x"), 1.0)  # old data: always answered
    c.receive(seg(R - 10, S, data=b"x"), 1.0)
    expect(c, {"ack": R}, {"ack": R})
    c.receive(seg(R - 10, S), 1.6)
    expect(c, {"ack": R})


def test_ack_throttling_can_be_turned_off():
    c = passive(TcpConfig(oow_ack_interval=0))
    for _ in range(3):
        c.receive(seg(R + 100, flags="R"), 1.0)
    expect(c, {"ack": R}, {"ack": R}, {"ack": R})


def test_probe_into_a_zero_window_refused_until_the_window_is_advertised():
    c = passive(TcpConfig(recv_buffer=2000, local_mss=500))
    c.receive(seg(R, S, data=b"f" * 2000), 0)
    expect(c, {"ack": R + 2000, "win": 0}, now=0)
    c.consume(100)  # space for the probe, but below the SWS threshold: no window update
    nothing(c, now=0.1)
    c.receive(seg(R + 2000, S, data=b"p"), 0.5)
    expect(c, {"ack": R + 2000, "win": 0}, now=0.5)  # refused, as Linux: the window said 0
    assert c.readable() == 1900
    c.consume(1000)
    expect(c, {"ack": R + 2000, "win": 1100}, now=0.6)  # the update
    c.receive(seg(R + 2000, S, data=b"p"), 0.7)
    expect(c, {"ack": R + 2001}, now=0.75)  # (a delayed ACK: one small segment)
