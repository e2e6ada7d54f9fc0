"""Handshakes: passive (guest connects out) and active (port forwarding), options, refusal."""

import pytest

from rootlessnet.stack.tcp.connection import TcpConnection, TcpError
from rootlessnet.stack.tcp.notice import Notice
from rootlessnet.stack.tcp.states import State
from rootlessnet.stack.tcp.timers import TcpConfig
from tcp_trace import GUEST_ISS as G
from tcp_trace import OUR_ISS as L
from tcp_trace import expect, nothing, passive, seg


def test_passive_open_with_mss_and_wscale():
    cfg = TcpConfig(local_mss=1460, recv_buffer=1 << 20)
    c = TcpConnection.from_syn(seg(G, flags="S", win=64240, mss=1400, wscale=7),
                               now=0.0, iss=L, config=cfg)
    assert c.state is State.LISTEN
    nothing(c)  # nothing is sent until the engine decides
    c.accept(0.0)
    # SYN-ACK: our MSS, our shift (1 MiB buffer -> 5), unscaled window
    expect(c, {"seq": L, "ack": G + 1, "ctl": "SYN", "mss": 1460, "wscale": 5, "win": 65535})
    assert c.state is State.SYN_RECEIVED
    n = c.receive(seg(G + 1, L + 1, win=1000), 0.01)
    assert n & Notice.ESTABLISHED and c.state is State.ESTABLISHED
    assert c.send_mss == 1400  # min(peer MSS, ours)
    assert c.snd_wnd == 1000 << 7  # peer's shift applies after the SYN
    assert c.max_tx_payload == 1400


def test_no_wscale_when_peer_did_not_offer():
    cfg = TcpConfig(recv_buffer=1 << 20, quickack=0)
    c = TcpConnection.from_syn(seg(G, flags="S", mss=1460), now=0, iss=L, config=cfg)
    c.accept(0)
    (synack,) = expect(c, {"ctl": "SYN", "wscale": None, "win": 65535})
    c.receive(seg(G + 1, L + 1, win=5000), 0)
    assert c.snd_wnd == 5000 and c.rcv_wscale == 0
    c.receive(seg(G + 1, L + 1, data=b"x" * 100), 0)
    nothing(c, now=0)  # one small segment: delayed ACK
    (ack,) = expect(c, {"ack": G + 101}, now=0.04)
    assert ack.window == 65535  # capped, unscaled


def test_default_mss_when_option_absent():
    c = TcpConnection.from_syn(seg(G, flags="S", mss=None), now=0, iss=L)
    assert c.send_mss == 536  # RFC 9293 §3.7.1


def test_from_syn_rejects_non_syn():
    with pytest.raises(TcpError):
        TcpConnection.from_syn(seg(G, G, flags="SA"), now=0, iss=L)
    with pytest.raises(TcpError):
        TcpConnection.from_syn(seg(G, flags="A"), now=0, iss=L)


def test_refuse_sends_rst_ack():
    c = TcpConnection.from_syn(seg(G, flags="S"), now=0, iss=L)
    c.refuse()
    expect(c, {"seq": 0, "ack": G + 1, "ctl": "RST"})
    assert c.closed
    with pytest.raises(TcpError):
        c.accept(0)


def test_retransmitted_syn_absorbed_while_pending_and_after_accept():
    c = TcpConnection.from_syn(seg(G, flags="S", mss=1460), now=0, iss=L)
    c.receive(seg(G, flags="S", mss=1460), 1.0)  # guest retransmits before we decide
    nothing(c, now=1.0)
    assert c.stats.syn_absorbed == 1 and c.state is State.LISTEN
    c.accept(1.5)
    expect(c, {"seq": L, "ack": G + 1, "ctl": "SYN"})
    c.receive(seg(G, flags="S", mss=1460), 2.0)  # our SYN-ACK was lost
    expect(c, {"seq": L, "ack": G + 1, "ctl": "SYN"})
    c.receive(seg(G + 1, L + 1), 2.1)
    assert c.state is State.ESTABLISHED
    assert c.stats.syn_absorbed == 2


def test_synack_retransmitted_on_rto_then_give_up():
    cfg = TcpConfig(syn_retries=2)
    c = TcpConnection.from_syn(seg(G, flags="S"), now=0, iss=L, config=cfg)
    c.accept(0)
    expect(c, {"ctl": "SYN"})
    assert c.poll_at() == pytest.approx(1.0)  # RFC 6298 initial RTO
    expect(c, {"ctl": "SYN", "seq": L}, now=1.0)
    assert c.poll_at() == pytest.approx(3.0)  # doubled
    expect(c, {"ctl": "SYN"}, now=3.0)
    n = c.poll(7.0)
    assert n & Notice.TIMED_OUT and n & Notice.CLOSED
    expect(c, {"ctl": "RST", "seq": L + 1})
    assert c.timed_out


def test_ack_in_listen_gets_rst_and_rst_ignored():
    c = TcpConnection.from_syn(seg(G, flags="S"), now=0, iss=L)
    c.receive(seg(G + 1, 777), 0)
    expect(c, {"seq": 777, "ack": None, "ctl": "RST"})
    c.receive(seg(G + 1, flags="R"), 0)
    nothing(c)
    assert c.state is State.LISTEN


def test_bad_ack_in_syn_received_gets_rst():
    c = TcpConnection.from_syn(seg(G, flags="S"), now=0, iss=L)
    c.accept(0)
    expect(c, {"ctl": "SYN"})
    c.receive(seg(G + 1, L + 99), 0)
    expect(c, {"seq": L + 99, "ack": None, "ctl": "RST"})
    assert c.state is State.SYN_RECEIVED


def test_active_open():
    cfg = TcpConfig(recv_buffer=256 * 1024)
    c = TcpConnection.connect(now=0, iss=L, config=cfg)
    expect(c, {"seq": L, "ack": None, "ctl": "SYN", "mss": 1460, "wscale": 3})
    assert c.state is State.SYN_SENT
    n = c.receive(seg(G, L + 1, flags="SA", win=29200, mss=1400, wscale=7), 0.05)
    assert n & Notice.ESTABLISHED
    expect(c, {"seq": L + 1, "ack": G + 1, "ctl": "NONE", "win": (256 * 1024) >> 3}, now=0.05)
    assert c.snd_wnd == 29200  # SYN-ACK window is unscaled
    assert c.send_mss == 1400
    assert c._rtt.srtt == pytest.approx(0.05)


def test_active_open_refused():
    c = TcpConnection.connect(now=0, iss=L)
    c.take_output()
    c.receive(seg(0, L + 2, flags="RA"), 0)  # unacceptable ACK in RST: ignored
    assert c.state is State.SYN_SENT
    n = c.receive(seg(0, L + 1, flags="RA"), 0)
    assert n & Notice.RESET and c.closed and c.reset_by_peer


def test_active_open_bad_synack_ack_gets_rst():
    c = TcpConnection.connect(now=0, iss=L)
    c.take_output()
    c.receive(seg(G, L + 50, flags="SA"), 0)
    expect(c, {"seq": L + 50, "ctl": "RST", "ack": None})
    assert c.state is State.SYN_SENT


def test_active_syn_retries_then_timeout():
    c = TcpConnection.connect(now=0, iss=L, config=TcpConfig(syn_retries=1))
    expect(c, {"ctl": "SYN"})
    expect(c, {"ctl": "SYN"}, now=1.0)
    n = c.poll(3.0)
    assert n & Notice.TIMED_OUT and c.closed
    nothing(c)  # the peer never answered: no RST needed


def test_simultaneous_open():
    a = TcpConnection.connect(now=0, iss=L)
    b = TcpConnection.connect(now=0, iss=G)
    (sa,) = a.take_output()
    (sb,) = b.take_output()
    a.receive(sb, 0)
    b.receive(sa, 0)
    assert a.state is State.SYN_RECEIVED and b.state is State.SYN_RECEIVED
    a.poll(0)
    b.poll(0)
    (sa2,) = expect(a, {"ctl": "SYN", "ack": G + 1})
    (sb2,) = expect(b, {"ctl": "SYN", "ack": L + 1})
    a.receive(sb2, 0)
    b.receive(sa2, 0)
    assert a.state is State.ESTABLISHED and b.state is State.ESTABLISHED


def test_send_before_established_is_buffered():
    c = TcpConnection.connect(now=0, iss=L)
    c.take_output()
    assert c.send(b"early") == 5
    nothing(c, now=0)
    c.receive(seg(G, L + 1, flags="SA", mss=1460), 0)
    expect(c, {"seq": L + 1, "ack": G + 1, "data": b"early", "ctl": "PSH"}, now=0)


def test_passive_helper_ok():
    c = passive()
    assert c.state is State.ESTABLISHED
