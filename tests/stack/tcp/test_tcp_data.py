"""Data transfer traces: ACK policy, reassembly, windows, retransmission, congestion control."""

import pytest

from rootlessnet.stack.tcp.connection import TcpError
from rootlessnet.stack.tcp.notice import Notice
from rootlessnet.stack.tcp.states import State
from rootlessnet.stack.tcp.timers import TcpConfig
from tcp_trace import GUEST_ISS as G
from tcp_trace import OUR_ISS as L
from tcp_trace import expect, nothing, passive, seg

R = G + 1  # first data byte from the guest
S = L + 1  # first data byte from us


# ---------------------------------------------------------------- receiving
def test_in_order_data_is_readable_and_acked_every_second_segment():
    c = passive(TcpConfig(quickack=0))  # past the quick ACKs of the start
    n = c.receive(seg(R, S, data=b"hello "), 0)
    assert n & Notice.READABLE and c.readable() == 6
    nothing(c, now=0)  # a small segment: ACK delayed
    c.receive(seg(R + 6, S, flags="PA", data=b"w" * 600), 0.001)  # more than one full segment unacked
    expect(c, {"seq": S, "ack": R + 606, "ctl": "NONE"}, now=0.001)
    assert bytes(c.peek(6)) == b"hello "
    assert c.consume(6) == 6
    assert bytes(c.read(1000)) == b"w" * 600 and c.readable() == 0


def test_delayed_ack_timer_40ms():
    c = passive(TcpConfig(quickack=0))
    c.receive(seg(R, S, data=b"x"), 1.0)
    assert c.poll_at() == pytest.approx(1.04)
    nothing(c, now=1.03)
    expect(c, {"ack": R + 1}, now=1.04)
    assert c.poll_at() is None


def test_quick_acks_at_the_start_then_delayed():
    """As Linux: the first segments are ACKed at once (icsk_ack.quick, at most 16)."""
    c = passive()
    for i in range(16):
        c.receive(seg(R + i, S, data=b"q"), i * 0.1)
        expect(c, {"ack": R + i + 1}, now=i * 0.1)
    c.receive(seg(R + 16, S, data=b"q"), 1.6)
    nothing(c, now=1.6)  # quick ACKs used up: delayed
    expect(c, {"ack": R + 17}, now=1.65)


def test_interactive_flow_acks_ride_on_the_answer():
    """Pingpong (Linux): once we answer within the ACK delay, a request's ACK waits for the
    answer and rides on it: one segment per request instead of two."""
    c = passive()
    t = 0.0
    for i in range(3):  # request, immediate answer: the flow becomes interactive
        c.receive(seg(R + i, S + i, data=b"r"), t)
        c.send(b"a")
        c.poll(t)
        c.take_output()
        t += 0.01
    c.receive(seg(R + 3, S + 3, data=b"r"), t)
    nothing(c, now=t)  # no bare ACK for the request
    c.send(b"a")
    expect(c, {"seq": S + 3, "ack": R + 4, "data": b"a"}, now=t + 0.0001)  # the ACK rides on the answer
    c.receive(seg(R + 4, S + 4, data=b"r"), t + 1)
    nothing(c, now=t + 1)
    expect(c, {"ack": R + 5}, now=t + 1.04)  # no answer this time: the delayed ACK, and interactive mode ends
    assert not c._pingpong


def test_super_segment_acked_at_once():
    c = passive()
    c.receive(seg(R, S, data=b"z" * 60000), 0)  # > 2 full-sized segments
    expect(c, {"ack": R + 60000}, now=0)


def test_ack_every_one_for_bulk():
    c = passive(TcpConfig(ack_every=1, quickack=0))
    c.receive(seg(R, S, data=b"a"), 0)
    expect(c, {"ack": R + 1}, now=0)


def test_acks_of_a_batch_are_coalesced():
    c = passive(TcpConfig(ack_every=1))
    for i in range(5):
        c.receive(seg(R + i * 100, S, data=b"b" * 100), 0)
    expect(c, {"ack": R + 500}, now=0)


def test_out_of_order_reassembly_and_immediate_dup_ack():
    c = passive()
    c.receive(seg(R + 100, S, data=b"B" * 100), 0)
    expect(c, {"ack": R})  # immediate duplicate ACK, no poll needed
    c.receive(seg(R + 300, S, data=b"D" * 100), 0)
    expect(c, {"ack": R})
    assert c.readable() == 0 and c.stats.ooo_segments == 2
    c.receive(seg(R, S, data=b"A" * 100), 0)
    expect(c, {"ack": R + 200}, now=0)  # hole filled: ACK at once
    c.receive(seg(R + 200, S, data=b"C" * 100), 0)
    expect(c, {"ack": R + 400}, now=0)
    assert bytes(c.read(1000)) == b"A" * 100 + b"B" * 100 + b"C" * 100 + b"D" * 100


def test_overlapping_out_of_order_segments_first_copy_wins():
    c = passive()
    c.receive(seg(R + 200, S, data=b"1" * 100), 0)
    c.receive(seg(R + 250, S, data=b"2" * 150), 0)
    c.receive(seg(R + 100, S, data=b"3" * 150), 0)
    c.take_output()
    c.receive(seg(R, S, data=b"4" * 120), 0)
    expect(c, {"ack": R + 400}, now=0)
    data = bytes(c.read(1000))
    assert data == b"4" * 120 + b"3" * 80 + b"1" * 100 + b"2" * 100


def test_duplicate_and_overlapping_in_order_segments():
    c = passive()
    c.receive(seg(R, S, data=b"a" * 100), 0)
    c.receive(seg(R + 50, S, data=b"b" * 100), 0)  # 50 old + 50 new
    assert c.readable() == 150 and c.stats.dup_bytes == 50
    c.take_output()
    c.poll(0)
    c.take_output()
    c.receive(seg(R, S, data=b"a" * 100), 0)  # entirely old: ACK it
    expect(c, {"ack": R + 150})
    assert c.stats.dup_segments == 1
    assert bytes(c.read(200)) == b"a" * 100 + b"b" * 50


def test_out_of_window_segment_dropped_with_ack():
    c = passive(TcpConfig(recv_buffer=1000))
    c.receive(seg(R + 5000, S, data=b"x" * 10), 0)
    expect(c, {"seq": S, "ack": R})
    assert c.stats.out_of_window == 1 and c.readable() == 0


def test_data_beyond_right_edge_trimmed():
    c = passive(TcpConfig(recv_buffer=1000))
    c.receive(seg(R, S, flags="FA", data=b"y" * 1500), 0)
    assert c.readable() == 1000 and not c.peer_closed  # FIN was beyond the window
    assert c.stats.beyond_window_bytes == 500
    expect(c, {"ack": R + 1000, "win": 0}, now=0)


def test_reassembly_bounded_by_window():
    c = passive(TcpConfig(recv_buffer=1000))
    c.receive(seg(R + 500, S, data=b"q" * 1000), 0)
    assert c._reasm.nbytes == 500 and c._reasm.held < 600  # payload, and memory held (a copy)


def test_zero_receive_window_probe_and_window_update():
    c = passive(TcpConfig(recv_buffer=2000, local_mss=500))
    c.receive(seg(R, S, data=b"f" * 2000), 0)
    expect(c, {"ack": R + 2000, "win": 0}, now=0)
    c.receive(seg(R + 2000, S, data=b"p"), 0.5)  # guest's zero-window probe
    expect(c, {"ack": R + 2000, "win": 0}, now=0.5)
    assert c.readable() == 2000
    c.receive(seg(R + 1999, S), 0.6)  # Linux-style probe (SEQ=RCV.NXT-1): unacceptable
    expect(c, {"ack": R + 2000, "win": 0})
    c.consume(100)  # below SWS threshold (min(MSS, buffer/2) = 500): no update
    nothing(c, now=0.7)
    c.consume(1000)
    expect(c, {"ack": R + 2000, "win": 1100}, now=0.7)
    assert c.stats.window_updates == 1


def test_window_scaled_advertisement():
    cfg = TcpConfig(recv_buffer=1 << 20)
    c = passive(cfg, wscale=7)
    c.receive(seg(R, S, data=b"w" * 10000), 0)
    (a,) = expect(c, {"ack": R + 10000}, now=0)
    assert a.window == -(-((1 << 20) - 10000) >> 5)  # rounded up, as Linux does


def test_scaled_window_right_edge_never_moves_left():
    """RFC 7323 §2.4: with a scale the field is rounded *up*; rounding down shrank the
    window by up to 2^shift - 1 bytes on every odd-sized segment."""
    c = passive(TcpConfig(recv_buffer=1 << 20), wscale=7)
    shift = c.rcv_wscale
    assert shift == 5
    edge = None
    seq = R
    for i, n in enumerate([1, 7, 33, 100, 1, 1, 31, 4095, 1]):
        c.receive(seg(seq, S, data=b"x" * n), i * 0.001)
        seq += n
        c.poll(i * 0.001)
        for a in c.take_output():
            right = a.ack + (a.window << shift)
            if edge is not None:
                assert right >= edge, (i, right, edge)
            edge = right
        if i % 3 == 2 and i < 8:
            c.consume(c.readable())
    # data up to the advertised edge is accepted, even where it passes the buffer by < 2^shift
    c.receive(seg(seq, S, data=b"y" * (edge - seq)), 1.0)
    assert c.stats.beyond_window_bytes == 0 and c.readable() >= edge - seq


# ---------------------------------------------------------------- sending
def test_send_segments_at_mss_with_psh_on_last():
    c = passive(mss=1000)
    assert c.send(b"d" * 2500) == 2500
    expect(c, {"seq": S, "len": 1000, "ctl": "NONE", "ack": R},
           {"seq": S + 1000, "len": 1000}, {"seq": S + 2000, "len": 500, "ctl": "PSH"}, now=0)
    n = c.receive(seg(R, S + 2500), 0.01)
    assert n & Notice.WRITABLE and c.unacked == 0
    nothing(c, now=0.01)
    assert c.poll_at() is None


def test_super_segments_limited_by_cwnd():
    c = passive(TcpConfig(send_buffer=1 << 20), mss=1460, wscale=8)
    c.max_tx_payload = 65000
    c.send(b"s" * 200000)
    expect(c, {"len": 14600}, now=0)  # initial window 10 MSS (RFC 6928)
    c.receive(seg(R, S + 14600), 0.01)  # slow start: cwnd += acked
    expect(c, {"len": 29200}, now=0.01)


def test_peer_window_respected_with_scaling():
    c = passive(win=100, wscale=2)
    c.receive(seg(R, S, win=100), 0)  # the scale applies after the handshake
    assert c.snd_wnd == 400
    c.send(b"x" * 1000)
    expect(c, {"len": 400}, now=0)
    nothing(c, now=0.001)


def test_send_space_and_misuse():
    c = passive(TcpConfig(send_buffer=100))
    assert c.send(b"x" * 150) == 100 and c.send_space() == 0
    c.close()
    assert c.send_space() == 0
    with pytest.raises(TcpError):
        c.send(b"more")


def test_ack_of_unsent_data_answered():
    c = passive()
    c.receive(seg(R, S + 500), 0)
    expect(c, {"seq": S, "ack": R})
    assert c.stats.bad_ack == 1


def test_rto_retransmission_backoff_and_timeout():
    c = passive(TcpConfig(max_retries=3), mss=1000)  # handshake RTT 0: RTO = 200 ms floor
    c.send(b"r" * 500)
    expect(c, {"seq": S, "len": 500}, now=0)
    assert c.poll_at() == pytest.approx(0.2)
    nothing(c, now=0.19)
    expect(c, {"seq": S, "len": 500}, now=0.2)
    assert c.poll_at() == pytest.approx(0.6)
    expect(c, {"seq": S, "len": 500}, now=0.61)
    expect(c, {"seq": S, "len": 500}, now=1.42)
    n = c.poll(3.1)
    assert n & Notice.TIMED_OUT and n & Notice.CLOSED
    expect(c, {"ctl": "RST", "seq": S + 500})
    assert c.stats.rto_expirations == 3 and c.stats.retransmits == 3


def test_rtt_sampling_and_min_rto():
    c = passive(mss=1000)
    c.send(b"a" * 100)
    c.poll(0)
    c.take_output()
    c.receive(seg(R, S + 100), 0.01)
    # second sample (the handshake gave 0): RFC 6298 §2.3 smoothing
    assert c._rtt.srtt == pytest.approx(0.01 / 8)
    assert c._rtt.rttvar == pytest.approx(0.01 / 4)
    assert c._rtt.rto == pytest.approx(0.2)  # Linux's floor


def test_karn_no_sample_from_retransmission():
    c = passive(mss=1000)
    c.send(b"a" * 100)
    c.poll(0)
    c.poll(0.2)
    assert c.stats.retransmits == 1
    c.take_output()
    c.receive(seg(R, S + 100), 1.01)
    assert c._rtt.srtt == 0.0  # only the handshake sample
    c.poll(1.01)
    assert c.poll_at() is None


def test_go_back_n_after_rto_with_loss_window():
    c = passive(mss=1000)
    c.send(b"g" * 5000)
    assert len(expect(c, *[{"len": 1000}] * 5, now=0)) == 5
    expect(c, {"seq": S, "len": 1000}, now=0.2)  # cwnd = 1 SMSS
    c.receive(seg(R, S + 1000), 1.1)
    expect(c, {"seq": S + 1000}, {"seq": S + 2000}, now=1.1)  # slow start again


def test_fast_retransmit_and_newreno():
    c = passive(mss=1000)
    c.send(b"n" * 8000)
    out = expect(c, *[{"len": 1000}] * 8, now=0)
    assert out[0].seq == S
    c.receive(seg(R, S + 1000), 0.01)  # segment 2 lost
    for i in range(2):
        c.receive(seg(R, S + 1000), 0.011)
        nothing(c)
    c.receive(seg(R, S + 1000), 0.012)  # third duplicate ACK
    expect(c, {"seq": S + 1000, "len": 1000})
    assert c.stats.fast_retransmits == 1 and c._cc.in_recovery
    c.receive(seg(R, S + 3000), 0.02)  # partial ACK: segment 4 lost too
    expect(c, {"seq": S + 3000, "len": 1000}, now=0.02)
    c.receive(seg(R, S + 8000), 0.03)  # full ACK
    assert not c._cc.in_recovery and c.unacked == 0


def test_zero_window_persist_probes_with_backoff_and_reopen():
    c = passive(mss=1000)
    c.receive(seg(R, S, win=0), 0)
    c.send(b"p" * 3000)
    nothing(c, now=0)
    assert c.poll_at() == pytest.approx(0.2)
    expect(c, {"seq": S - 1, "len": 0, "ack": R}, now=0.2)  # probe
    c.receive(seg(R, S, win=0), 0.21)
    nothing(c, now=0.21)
    assert c.poll_at() == pytest.approx(0.6)  # backed off
    expect(c, {"seq": S - 1}, now=3.0)
    assert c.stats.zero_window_probes == 2
    c.receive(seg(R, S, win=2000), 3.01)  # window opens
    expect(c, {"seq": S, "len": 1000}, {"seq": S + 1000, "len": 1000}, now=3.01)
    assert c._persist_at is None


def test_small_window_not_nibbled_while_data_in_flight():
    c = passive(mss=1000, win=1500)
    c.send(b"x" * 3000)
    expect(c, {"len": 1000}, now=0)  # 500 left in the window: SWS avoidance waits
    nothing(c, now=0.001)
    c.receive(seg(R, S + 1000, win=1500), 0.01)
    expect(c, {"len": 1000}, now=0.01)
    c.receive(seg(R, S + 2000, win=1500), 0.02)
    expect(c, {"len": 1000, "ctl": "PSH"}, now=0.02)
    assert c.state is State.ESTABLISHED


def test_zero_window_with_data_in_flight_probes_with_the_head_segment():
    """The peer closes its window while data is in flight (and drops what passed its edge).

    Before: the RTO fired, go-back-N found a zero window and sent nothing, and after 15 RTOs
    (~925 s) the connection was declared dead. Linux (tcp_retransmit_timer) resends the head
    segment as the probe, with backoff, and does not time out while the peer answers."""
    c = passive(TcpConfig(max_retries=3), mss=1000)
    c.send(b"z" * 3000)
    expect(c, *[{"len": 1000}] * 3, now=0)
    c.receive(seg(R, S + 1000, win=0), 0.01)  # first segment taken, then the window closed
    nothing(c, now=0.01)
    t, probes = 0.01, 0
    for i in range(12):  # 12 RTOs: far past max_retries=3, the peer answers every probe
        t = c.poll_at()
        assert t is not None
        (p,) = expect(c, {"seq": S + 1000, "len": 1000, "ack": R}, now=t)  # the head segment
        probes += 1
        c.receive(seg(R, S + 1000, win=0), t + 0.001)  # still zero, nothing acked
    assert c.state is State.ESTABLISHED and not c.timed_out
    assert c.stats.zero_window_probes == probes
    c.receive(seg(R, S + 2000, win=4000), t + 0.002)  # the last probe is taken and the window opens
    expect(c, {"seq": S + 2000, "len": 1000}, now=t + 0.002)  # the rest follows
    assert c.unacked == 1000


def test_zero_window_probing_gives_up_when_the_peer_is_silent():
    c = passive(TcpConfig(rto_max=10.0), mss=1000)
    c.send(b"z" * 2000)
    expect(c, *[{"len": 1000}] * 2, now=0)
    c.receive(seg(R, S + 1000, win=0), 0.01)
    n = 0
    for _ in range(100):
        t = c.poll_at()
        if t is None or t > 1000:
            break
        n |= c.poll(t)
        c.take_output()
    assert n & Notice.TIMED_OUT and c.closed
    assert c.last_activity < 30  # 2 x rto_max of silence, not 15 retries
