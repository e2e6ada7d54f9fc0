"""Fuzzing the core: the seed inputs, made from the captured real traffic and a few scenarios.

A seed is a program (see driver.py) that the fuzzer mutates. ``from_capture`` replays the
guest's frames of tests/fuzz/corpus/seed.pcap: every TCP connection of the capture becomes a
live connection of the model guest (its real SYN options, then its real segments re-based onto
the sequence numbers of this run), with the shell accepting and answering; everything else
(DHCP, DNS, ARP, NDP, ping, UDP) is replayed as captured. ``scenarios`` are short programs for
states the capture does not reach by itself (zero window and persist, retransmission timeouts,
keepalive, TIME-WAIT reuse, simultaneous close, active opens, out-of-order data).
"""

from __future__ import annotations

from . import ops as o
from .common import OPTS

_INDEX = {}
for _i, _f in enumerate(o.OPS):
    _INDEX.setdefault(_f, _i)


def rec(op, *args: int) -> bytes:
    a = list(args) + [0] * (7 - len(args))
    return bytes([_INDEX[op]] + [x & 0xFF for x in a[:7]])


def config(*, ipv6: bool = True, vnet: bool = False, offload: bool = False, mtu: int = 0, rbuf: int = 0, sbuf: int = 0,
           auto_read: bool = True, accept: bool = True, keepalive: bool = False, time_wait: int = 0,
           answer: bool = True) -> bytes:
    """The first record (driver.Session's configuration byte layout)."""
    c0 = (0 if ipv6 else 1) | (2 if vnet else 0) | (4 if offload else 0) | 8 | (0x40 if keepalive else 0)
    c1 = (mtu & 3) | ((rbuf & 3) << 2) | ((sbuf & 3) << 4)
    c3 = 0 if accept else 0xFF
    c4 = (0 if auto_read else 1) | (6 if answer else 0) | ((time_wait & 3) << 4)
    return bytes([c0, c1, 0, c3, c4, 0, 0, 0])


def from_capture(templates: list) -> list[bytes]:
    """Programs replaying the capture (one per connection family plus one for everything else)."""
    opt_t = [t.tcp_opts for t in templates if t.proto == 6 and t.tcp_opts]
    conns: dict[tuple, list[int]] = {}
    other: list[int] = []
    for i, t in enumerate(templates):
        if t.proto == 6:
            f = t.frame
            if t.etype == 0x0800:
                ihl = (f[14] & 15) * 4
                key = (f[26:30], f[30:34], f[14 + ihl : 18 + ihl])
            else:
                key = (f[22:38], f[38:54], f[54:58])
            conns.setdefault(key, []).append(i)
        else:
            other.append(i)
    out = []
    prog = config()
    for i in other:
        prog += rec(o.raw, i, 6, 0, 0, 0, 0, 0) + rec(o.tick, 2)  # patch mode 6 with 0: the frame as captured
    out.append(prog)
    for v6 in (False, True):
        prog = config()
        slot = 0
        for key, idx in conns.items():
            first = templates[idx[0]]
            if (first.etype == 0x86DD) != v6 or not first.tcp_flags & 0x02 or first.tcp_flags & 0x10:
                continue  # connections the engine opened (port forwarding) start with its SYN: see scenarios
            oi = len(OPTS) + opt_t.index(first.tcp_opts) if first.tcp_opts in opt_t else 1
            dport = first.dport
            # T_SYN: r[2] bit0 v6, bits1-3 destination 1 (the gateway) or 2 (DNS), bits 4-6 port index
            dst = 2 if dport == 53 else 1
            port = {80: 0, 443: 1, 53: 2, 7000: 4, 8080: 5, 22: 6}.get(dport, 0)
            prog += rec(o.t_syn, slot, int(v6) | (dst << 1) | (port << 4), 0, oi, 2, 0x10 + slot, slot)
            prog += rec(o.tick, 1)
            for i in idx[1:]:
                prog += rec(o.raw, i, 6, 0, 0, 0, slot << 3, 0x80)  # re-based onto the live connection
                prog += rec(o.h_send, 0, 8, 1) if templates[i].payload else b""
                prog += rec(o.tick, 4)
            prog += rec(o.tick, 16)
            slot = (slot + 1) & 7
        out.append(prog)
    return out


def scenarios() -> list[bytes]:
    s = []
    # an HTTP-like exchange, both families: handshake, request, response, ACKs, FIN both ways, TIME-WAIT
    for v6 in (0, 1):
        s.append(config() + rec(o.t_syn, 0, v6, 0, 2, 2, 0, 1) + rec(o.t_ack, 0, 0, 0) + rec(o.t_data, 0, 8, 1, 0, 0, 0x10)
                 + rec(o.h_send, 0, 14, 0) + rec(o.t_ack, 0, 0, 0) + rec(o.h_close, 0, 0) + rec(o.t_ack, 0, 0, 0)
                 + rec(o.t_fin, 0, 0, 0, 0) + rec(o.tick, 16) + rec(o.tick, 17))
    # zero window from the guest and persist probes; the host writes, the guest stops reading
    s.append(config(rbuf=2) + rec(o.t_syn, 0, 0, 0, 1, 2, 0, 2) + rec(o.t_ack, 0, 0, 4) + rec(o.h_send, 0, 25, 0)
             + rec(o.tick, 6) + rec(o.tick, 9) + rec(o.tick, 12, 3) + rec(o.t_ack, 0, 0, 0) + rec(o.tick, 15, 3))
    # the guest fills the engine's window while the host does not read, then reads; out of order data
    s.append(config(rbuf=2, auto_read=False) + rec(o.t_syn, 0, 0, 0, 2, 2, 0, 3) + rec(o.t_ack, 0, 0, 0)
             + rec(o.t_data, 0, 28, 0) + rec(o.t_data, 0, 29, 0) + rec(o.t_ooo, 0, 3, 8, 0) + rec(o.t_ooo, 0, 0, 1)
             + rec(o.h_read, 0, 12, 0, 0) + rec(o.t_data, 0, 12) + rec(o.h_read, 0, 0, 0, 1) + rec(o.tick, 5))
    # retransmission timeouts and backoff until the engine gives up; keepalive
    s.append(config(keepalive=True) + rec(o.t_syn, 0, 0, 0, 1, 0, 0, 4) + rec(o.t_ack, 0, 0, 0) + rec(o.h_send, 0, 12)
             + rec(o.tick, 9, 3) + rec(o.tick, 19, 3) + rec(o.tick, 21, 3) + rec(o.tick, 14, 3))
    # simultaneous close: the host closes, the guest's FIN crosses the engine's (CLOSING)
    s.append(config() + rec(o.t_syn, 0, 0, 0, 1, 0, 0, 6) + rec(o.t_ack, 0, 0, 0) + rec(o.h_close, 0, 0)
             + rec(o.t_fin, 0, 0, 0, 7) + rec(o.t_ack, 0, 0, 0) + rec(o.tick, 16) + rec(o.tick, 17))
    # TIME-WAIT reuse: the guest closes first, then a new SYN on the same 4-tuple
    s.append(config(time_wait=1) + rec(o.t_syn, 0, 0, 0, 1, 0, 0, 5) + rec(o.t_ack, 0, 0, 0) + rec(o.t_fin, 0, 0, 0)
             + rec(o.h_close, 0, 0) + rec(o.t_ack, 0, 0, 0) + rec(o.t_syn, 1, 0, 0x81, 1, 0, 0, 5) + rec(o.tick, 9))
    # the engine's active open (port forwarding): SYN to the guest, SYN-ACK back, data, reset
    s.append(config() + rec(o.h_connect, 0, 0, 0) + rec(o.t_synack, 0, 0, 2, 0) + rec(o.h_send, 0, 8) + rec(o.t_data, 0, 6)
             + rec(o.t_rst, 0, 0))
    # pending connects that time out; refused and unreachable flows; UDP and ping through the shell
    s.append(config(accept=False) + rec(o.t_syn, 0, 0, 0, 1) + rec(o.t_syn, 1, 2, 0, 1) + rec(o.h_open, 0, 2, 5)
             + rec(o.udp, 0, 0, 0, 0, 5) + rec(o.h_udp, 1, 0, 40) + rec(o.ping, 0, 6) + rec(o.h_icmp, 0)
             + rec(o.h_icmp, 1, 3) + rec(o.tick, 18, 1))
    # a GSO super-frame over a vnet tap with offloads
    s.append(config(vnet=True, offload=True) + rec(o.t_syn, 0, 0, 0, 2, 0) + rec(o.t_ack, 0, 0, 0) + rec(o.t_gso, 0, 3)
             + rec(o.h_send, 0, 27) + rec(o.t_ack, 0, 0, 0) + rec(o.tick, 5))
    return s
