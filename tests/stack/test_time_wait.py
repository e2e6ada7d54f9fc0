"""TIME-WAIT in the core (stack.timewait): Linux's rules, its own bounded table.

Each test plays the guest (frames in) and the shell (accept, close) around a
connection the host closed first, so the engine holds TIME-WAIT.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import TCP

from rootlessnet.stack.config import Limits
from rootlessnet.stack.core import Core
from test_core import EV_TCP_OPEN, events

from test_core import Conn, _time_wait, drain, feed, make_core, syn


def test_retransmitted_fin_is_acked_and_restarts_2msl() -> None:
    core = make_core(mtu=1500)
    c = _time_wait(core)
    feed(core, c.seg("FA", seq=c.seq - 1), 30.0)
    (ack,) = drain(core)
    assert ack.pkt[TCP].flags == "A" and ack.pkt[TCP].seq == c.ack and ack.pkt[TCP].ack == c.seq
    core.run_timers(65.0)  # 1.0 + 60 passed, but the FIN at 30 restarted the timer
    assert core.statistics()["tcp_time_wait_entries"] == 1
    core.run_timers(91.0)
    assert core.statistics()["tcp_time_wait_entries"] == 0


def test_reconnect_from_the_same_port_with_a_lower_isn_takes_one_syn_retry_not_2msl() -> None:
    """The issue's hang: SYN below RCV.NXT -> challenge ACK -> the guest's RST (seq = that ACK's
    ack) was ignored, so connect() waited out TIME-WAIT. Linux ends TIME-WAIT on that RST."""
    core = make_core(mtu=1500)
    c = _time_wait(core)
    feed(core, syn(seq=(c.seq - 50000) % 2**32), 2.0)  # a new ISN that happens to be lower
    (challenge,) = drain(core)
    t = challenge.pkt[TCP]
    assert t.flags == "A" and t.ack == c.seq and core.events == []
    # the guest's SYN-SENT answers an ACK that does not ack its SYN with <SEQ=SEG.ACK><CTL=RST>
    feed(core, c.seg("R", seq=t.ack), 2.0)
    assert core.statistics()["tcp_time_wait_entries"] == 0
    assert core.statistics()["tcp_time_wait_killed"] == 1
    assert drain(core) == []
    feed(core, syn(seq=(c.seq - 50000) % 2**32), 3.0)  # the guest's SYN retransmission (1 s later)
    ((ev, flow),) = events(core)
    assert ev == EV_TCP_OPEN and core.flows[flow.key] is flow


def test_higher_isn_starts_a_new_incarnation_with_linux_isn() -> None:
    core = make_core(mtu=1500)
    c = _time_wait(core)
    old_snd_nxt = c.ack
    feed(core, syn(seq=c.seq + 1000), 2.0)
    ((ev, flow),) = events(core)
    core.events.clear()
    core.tcp_accept(flow, 2.0)
    core.flush(2.0)
    (synack,) = drain(core)
    assert synack.pkt[TCP].seq == (old_snd_nxt + 65537) % 2**32  # as Linux: beyond the old sequence space
    assert core.statistics()["tcp_time_wait_reused"] == 1


def test_rst_elsewhere_and_bare_acks_are_silent() -> None:
    core = make_core(mtu=1500)
    c = _time_wait(core)
    feed(core, c.seg("R", seq=c.seq + 10), 2.0)
    feed(core, c.seg("A"), 2.0)  # in-window bare ACK: restarts the timer, no answer
    assert drain(core) == []
    assert core.statistics()["tcp_time_wait_entries"] == 1


def test_oow_acks_are_rate_limited() -> None:
    core = make_core(mtu=1500)
    c = _time_wait(core)
    for i in range(20):
        feed(core, c.seg("A", seq=c.seq + 100), 2.0 + i * 0.01)
    assert len(drain(core)) == 1  # one ACK per 0.5 s (Linux's tcp_invalid_ratelimit)


def test_time_wait_does_not_count_against_the_flow_table() -> None:
    """~1,100 host-first closes per second used to fill the 65,536-flow table in a minute."""
    core = Core(make_core().cfg.__class__(mtu=1500, limits=Limits(tcp_flows=4, time_wait=100)))
    for i in range(20):
        c = Conn(core, sport=41000 + i, now=1.0)
        c.flow.conn.close()
        core.touch(c.flow)
        core.flush(1.0)
        c.ack += 1
        feed(core, c.seg("A"), 1.0)
        c.send(b"", now=1.0, flags="FA")
        core.flush(1.0)
        drain(core)
    st = core.statistics()
    assert st["tcp_flows"] == 0 and st["tcp_time_wait_entries"] == 20
    assert st.get("tcp_refused_table_full", 0) == 0


def test_time_wait_table_is_bounded_and_overflow_counted() -> None:
    core = Core(make_core().cfg.__class__(mtu=1500, limits=Limits(time_wait=3)))
    for i in range(5):
        c = Conn(core, sport=42000 + i)
        c.flow.conn.close()
        core.touch(c.flow)
        core.flush(1.0)
        c.ack += 1
        feed(core, c.seg("A"), 1.0)
        c.send(b"", now=1.0, flags="FA")
        core.flush(1.0)
        drain(core)
    st = core.statistics()
    assert st["tcp_time_wait_entries"] == 3 and st["tcp_time_wait_overflow"] == 2 and st["tcp_flows"] == 0
    # an overflowed 4-tuple is simply free again: a new SYN opens a connection
    feed(core, syn(sport=42004, seq=5), 2.0)
    assert events(core)[-1][0] == EV_TCP_OPEN
