"""Bugs the fuzzer (hack/fuzz) found in the core and the TCP code, each reproduced directly.

A bug found but not fixed yet is marked xfail(strict=True): its fix turns it into XPASS, which
fails, so the mark is removed together with the fix (and the check's name from
tests/fuzz/invariants.py KNOWN, if it is listed there).
"""

from __future__ import annotations

import pytest

from rootlessnet.stack.config import NetConfig
from rootlessnet.stack.core import Core
from rootlessnet.stack.dns import StaticResolver
from tests.fuzz import model as m

GUEST, DNS = bytes((10, 0, 2, 100)), bytes((10, 0, 2, 3))
TABLE = {"fuzz.test": ["10.0.2.2"]}


def tcp(core: Core, seq: int, ack: int | None, flags: int, payload: bytes = b"", sport: int = 40000) -> None:
    if ack is not None:
        flags |= m.ACK
    l4 = m.tcp_l4(GUEST, DNS, sport, 53, seq, ack or 0, flags, 65535, b"", payload)
    core.receive(m.ip_frame(GUEST, DNS, 6, l4), 0, 1000.0)
    core.flush(1000.0)


def syn_ack_seq(core: Core) -> int:
    for parts in core.take_frames():
        problem, seg = m.OutputChecker(vnet=False, offload=False, mtu=65520).check(parts)
        assert problem is None, problem
        if seg is not None and seg.flags & m.SYN:
            return seg.seq
    raise AssertionError("no SYN,ACK from the core")


def test_dns_over_tcp_flow_aborted_on_a_bad_message_is_freed():
    core = Core(NetConfig(dns_hosts=TABLE), resolver=StaticResolver(TABLE))
    tcp(core, 1000, None, m.SYN)
    iss = syn_ack_seq(core)
    tcp(core, 1001, iss + 1, 0)  # handshake done: the core's own DNS server has the flow
    tcp(core, 1001, iss + 1, m.PSH, b"\x00\x00")  # a zero-length DNS message: the stream is broken
    assert core.stats["drop_dns_tcp"] == 1
    key = (GUEST, 40000, DNS, 53)
    # The connection was reset towards the guest; its flow must go (else 65536 of them fill the
    # table and every new SYN is refused, and this 4-tuple answers every new SYN with a RST).
    assert key not in core.flows, f"{core.flows[key].conn!r} left in the flow table"


REMOTE = bytes((192, 0, 2, 1))


def segments(core: Core) -> list:
    out = []
    for parts in core.take_frames():
        problem, seg = m.OutputChecker(vnet=False, offload=False, mtu=65520).check(parts)
        assert problem is None, problem
        if seg is not None:
            out.append(seg)
    return out


def guest(core: Core, seq: int, ack: int | None, flags: int, win: int, opts: bytes = b"", now: float = 1000.0) -> None:
    if ack is not None:
        flags |= m.ACK
    l4 = m.tcp_l4(GUEST, REMOTE, 40000, 80, seq, ack or 0, flags, win, opts)
    core.receive(m.ip_frame(GUEST, REMOTE, 6, l4), 0, now)
    for flow in core.flush(now):
        flow.notice = 0


def test_fast_retransmit_resends_only_what_was_sent():
    core = Core(NetConfig())
    guest(core, 1000, None, m.SYN, 65535, b"\x02\x04\x05\xb4")  # MSS 1460, no window scaling
    (ev,) = core.events
    flow = ev.flow
    core.tcp_accept(flow, 1000.0)
    core.flush(1000.0)
    (synack,) = segments(core)
    guest(core, 1001, synack.seq + 1, 0, 65535)
    flow.conn.send(bytes(30000))
    core.touch(flow)
    core.flush(1000.0)
    sent = segments(core)
    snd_max = max(s.seq + s.plen for s in sent)
    # The guest acknowledges all but the last byte and shrinks its window to 255, then sends three
    # duplicate ACKs: fast retransmit (RFC 5681 3.2) resends the one unacknowledged byte.
    ack = snd_max - 1
    for _ in range(4):
        guest(core, 1001, ack, 0, 255)
    retx = [s for s in segments(core) if s.plen]
    assert retx, "no retransmission after three duplicate ACKs"
    for s in retx:
        assert s.seq + s.plen <= snd_max, (
            f"'retransmission' seq {s.seq} len {s.plen} ends at {s.seq + s.plen}, beyond SND.MAX {snd_max}: "
            f"{s.seq + s.plen - snd_max} bytes never sent before, past the guest's window edge {ack + 255}")


def test_syn_reusing_a_time_wait_flow_with_unread_data_tells_the_shell():
    core = Core(NetConfig())
    guest(core, 1000, None, m.SYN, 65535, b"\x02\x04\x05\xb4")
    (ev,) = core.events
    core.events.clear()
    old = ev.flow
    core.tcp_accept(old, 1000.0)
    core.flush(1000.0)
    (synack,) = segments(core)
    guest(core, 1001, synack.seq + 1, 0, 65535)
    old.conn.close()  # the host closed its side: FIN
    core.touch(old)
    core.flush(1000.0)
    (fin,) = segments(core)
    guest(core, 1001, fin.seq + 1, 0, 65535)  # FIN acknowledged: FIN-WAIT-2
    l4 = m.tcp_l4(GUEST, REMOTE, 40000, 80, 1001, fin.seq + 1, m.ACK | m.FIN | m.PSH, 65535, b"", b"x" * 100)
    core.receive(m.ip_frame(GUEST, REMOTE, 6, l4), 0, 1000.0)
    core.flush(1000.0)  # TIME-WAIT; the host app has not read the 100 bytes yet (notices not handled)
    assert old.conn.state.name == "TIME_WAIT" and old.conn.readable() == 100
    old.notice = 0
    # A new connection from the same port (higher ISN: RFC 6191) takes the 4-tuple over.
    l4 = m.tcp_l4(GUEST, REMOTE, 40000, 80, 500000, 0, m.SYN, 65535, b"\x02\x04\x05\xb4")
    core.receive(m.ip_frame(GUEST, REMOTE, 6, l4), 0, 1001.0)
    noticed = core.flush(1001.0)
    assert core.flows[old.key] is not old
    # The shell must hear that the old flow is gone (as for any flow the core frees), else its
    # host socket stays open for ever and the 100 bytes stay charged to core.mem.
    assert old in noticed and old.notice, "the recycled TIME-WAIT flow was freed without a notice to the shell"


def test_zero_window_probe_with_data_in_flight_resends_only_what_was_sent():
    """Found by the fuzzer's 1e7-frame run (fixed with the fast-retransmit bug, same cause): the head
    segment probing a zero window was a full MSS although less was in flight, so SND.NXT passed
    SND.MAX and never-sent data went into a closed window."""
    core = Core(NetConfig())
    guest(core, 1000, None, m.SYN, 500, b"\x02\x04\x05\xb4")
    (ev,) = core.events
    flow = ev.flow
    core.tcp_accept(flow, 1000.0)
    core.flush(1000.0)
    (synack,) = segments(core)
    guest(core, 1001, synack.seq + 1, 0, 500)
    flow.conn.send(bytes(20000))
    core.touch(flow)
    core.flush(1000.0)
    first = [s for s in segments(core) if s.plen]
    snd_max = max(s.seq + s.plen for s in first)
    assert snd_max - (synack.seq + 1) <= 500  # the guest's window
    guest(core, 1001, synack.seq + 1, 0, 0)  # nothing acknowledged, window closed
    for t in (1001.5, 1004.0, 1010.0):  # RTOs: the head segment is the probe
        core.run_timers(t)
        core.flush(t)
        for s in segments(core):
            assert s.seq + s.plen <= snd_max, f"probe seq {s.seq} len {s.plen} passes SND.MAX {snd_max}"
        c = flow.conn
        assert (c.snd_max - c.snd_nxt) & 0xFFFFFFFF < 1 << 31, f"SND.NXT beyond SND.MAX: {c!r}"
