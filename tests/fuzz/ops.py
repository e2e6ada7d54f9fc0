"""Fuzzing the core: the actions one 8-byte record can be (guest, shell, clock).

``OPS[record[0] & 63]`` is called with the session and the record; record[1:] are its
arguments. Entries repeat to weight the table towards what drives connections deep
(in-window data, ACKs, clock steps).
"""

from __future__ import annotations

import struct

from rootlessnet.stack.dns import servfail_for
from rootlessnet.wire import WireError
from rootlessnet.wire.tcp import parse_options

from . import model as m
from .common import (DNS4, DNS6, DNS_NAMES, DTS, GUEST4, GUEST6, GW4, GW6, LL_GUEST6, LL_GW6, ALL_NODES, ALL_ROUTERS,
                     CONNECT_TIMEOUT, RESET_DRAIN_TIMEOUT, OPTS, PORTS, QTYPES, REMOTE4, REMOTE6, SRC4, SRC6, TCP_PORTS, WINS, GConn, HostFlow,
                     _RNG_BUF, sub)

_ARP = struct.Struct("!HHBBH6s4s6s4s")
MASK = 0xFFFFFFFF
GUEST_ISS = [0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFF00, 0x80000000, 0xFFFFFFF0, 0x00010000]
OTHER_MAC = bytes.fromhex("5254000000ee")
BCAST = b"\xff" * 6


def _ws_of(opts: bytes) -> int | None:
    try:
        return parse_options(opts).wscale
    except WireError:
        return None


def _opts(s, code: int) -> bytes:
    n = len(OPTS) + len(s.opt_t)
    i = code % n
    return OPTS[i] if i < len(OPTS) else s.opt_t[i - len(OPTS)]


# ----------------------------------------------------------------- guest TCP

def t_syn(s, r) -> None:
    b = r[2]
    v6 = bool(b & 1)
    rip = (REMOTE6 if v6 else REMOTE4)[(b >> 1) & 7]
    rport = TCP_PORTS[(b >> 4) & 7]
    iss = GUEST_ISS[r[3] & 7] if r[3] < 128 else (r[3] * 0x01000193 + r[6]) & MASK
    opts = _opts(s, r[4])
    win = WINS[r[5] & 15]
    gip = (GUEST6 if v6 else GUEST4) if r[5] < 0xE0 else (SRC6 if v6 else SRC4)[r[5] & 7]
    gport = 1024 + (((r[6] << 8) | r[7]) % 4096)
    g = GConn(v6, gip, rip, gport, rport, iss, _ws_of(opts))
    s._install(r[1] & 7, g)
    payload = s.payload(r[7], 1 + (r[7] & 63)) if b & 0x80 else b""
    s.tcp(g, iss, None, m.SYN, win, opts, payload)


def t_data(s, r) -> None:
    g = s.gconn(r[1])
    if g is None:
        return
    n = s.length(r[2], g)
    payload = s.payload(r[3], n)
    seq = s.seq_for(g, r[4], r[7])
    ack = s.ack_for(g, r[5])
    flags = (m.PSH if r[6] & 0x10 else 0) | (m.URG if r[6] & 0x20 == 0x20 and r[7] & 1 else 0) | \
        (0xC0 if r[6] & 0x40 and r[7] & 2 else 0)
    opts = _opts(s, r[7] >> 2) if r[7] & 0x80 else b""
    gso = n > 1400 and s.vnet and r[6] & 0x80
    s.tcp(g, seq, ack, flags, WINS[r[6] & 15], opts, payload, good_csum=not gso, vflags=1 if gso else 0)
    if seq == g.snd_nxt:
        g.snd_nxt = (seq + n) & MASK


def t_ack(s, r) -> None:
    g = s.gconn(r[1])
    if g is None:
        return
    seq = s.seq_for(g, r[4], r[6]) if r[4] >= 0xC0 else g.snd_nxt
    ack = s.ack_for(g, r[2])
    win = WINS[r[3] & 15]
    for _ in range((1, 1, 3, 4)[r[5] & 3]):  # three duplicates make a fast retransmit
        s.tcp(g, seq, ack, 0, win)


def t_fin(s, r) -> None:
    g = s.gconn(r[1])
    if g is None:
        return
    n = s.length(r[2], g) if r[2] & 1 else 0
    seq = s.seq_for(g, r[3], r[6]) if r[3] >= 0xE0 else g.snd_nxt
    ack = s.ack_for(g, r[4])
    s.tcp(g, seq, ack, m.FIN | (m.PSH if r[5] & 1 else 0), WINS[r[5] >> 4], b"", s.payload(r[6], n))
    if seq == g.snd_nxt:
        g.snd_nxt = (seq + n + 1) & MASK


def t_rst(s, r) -> None:
    g = s.gconn(r[1])
    if g is None:
        return
    k = r[2] % 7
    if k <= 1:
        seq = g.snd_nxt
    elif k == 2:
        seq = g.snd_nxt + 1 + r[4]  # in the window, not exact: RFC 5961 challenge ACK
    elif k == 3:
        seq = g.eng_ack + g.eng_win + 10
    elif k == 4:
        seq = g.eng_ack
    elif k == 5:
        seq = g.snd_nxt - 1
    else:
        seq = (r[4] << 24) | (r[5] << 16) | (r[6] << 8) | r[7]
    ack = s.ack_for(g, r[3]) if r[3] & 1 else None
    s.tcp(g, seq & MASK, ack, m.RST, 0 if r[5] & 1 else WINS[r[5] >> 4])


def t_ooo(s, r) -> None:
    g = s.gconn(r[1])
    if g is None:
        return
    gap = (1, 10, 100, 1000, g.eng_mss, max(1, g.eng_win - 1), g.eng_win, 65535)[r[2] & 7] + (r[5] >> 4)
    n = s.length(r[3], g)
    fin = m.FIN if r[4] & 1 else 0
    s.tcp(g, (g.snd_nxt + gap) & MASK, g.peer_nxt, fin | m.PSH, WINS[r[4] >> 4], b"", s.payload(r[5], n))


def t_retx(s, r) -> None:
    g = s.gconn(r[1])
    if g is None:
        return
    inflight = sub(g.snd_nxt, g.eng_ack)
    back = (1, 10, 100, 1000, inflight, inflight, max(0, inflight - 1), 2)[r[2] & 7]
    seq = (g.snd_nxt - back) & MASK
    n = s.length(r[3], g)
    s.tcp(g, seq, g.peer_nxt, m.PSH, WINS[r[4] & 15], b"", s.payload(r[5], n))
    if sub((seq + n) & MASK, g.snd_nxt) > 0 and back >= 0:
        g.snd_nxt = (seq + n) & MASK


def t_synack(s, r) -> None:
    g = s.gconn(r[1])
    if g is None:
        return
    iss = GUEST_ISS[r[2] & 7] if not r[2] & 8 else (g.iss + (r[6] << 8)) & MASK
    opts = _opts(s, r[3])
    g.iss = iss
    g.ws = _ws_of(opts)
    ack = s.ack_for(g, r[4])
    s.tcp(g, iss, ack, m.SYN, WINS[r[5] & 15], opts)
    g.snd_nxt = (iss + 1) & MASK


def t_raw_tcp(s, r) -> None:
    g = s.gconn(r[1])
    if g is None:
        return
    flags = r[2]
    seq = s.seq_for(g, r[3], r[7])
    ack = s.ack_for(g, r[4])
    l4 = m.tcp_l4(g.gip, g.rip, g.gport, g.rport, seq, ack or 0, flags, WINS[r[6] & 15], _opts(s, r[6] >> 4),
                  s.payload(r[7], s.length(r[5], g) if r[5] & 1 else 0), urg=r[7] if flags & m.URG else 0)
    s.send(m.ip_frame(g.gip, g.rip, 6, l4))


def t_gso(s, r) -> None:
    """A TSO super-frame with a partial checksum, as a guest kernel hands it over a vnet tap."""
    g = s.gconn(r[1])
    if g is None:
        return
    n = (4000, 16384, 32768, 65000, 60000, 20000)[r[2] % 6]
    seq = g.snd_nxt if r[3] < 0xF0 else s.seq_for(g, r[3], r[4])
    s.tcp(g, seq, g.peer_nxt, m.PSH, WINS[r[5] & 15], b"", s.payload(r[6], n), good_csum=False,
          vflags=(1, 2, 1, 0)[r[7] & 3])
    if seq == g.snd_nxt:
        g.snd_nxt = (seq + n) & MASK


# ----------------------------------------------------------------- guest, other protocols

def arp(s, r) -> None:
    op = (1, 1, 1, 2, 3)[r[1] % 5]
    tpa = (GW4, DNS4, GUEST4, bytes((10, 0, 2, 15)), bytes((10, 0, 2, 7)), bytes((10, 0, 2, 255)),
           bytes((192, 0, 2, 1)), bytes(4))[r[2] & 7]
    spa = SRC4[r[3] % len(SRC4)] if r[3] < 0xF0 else tpa  # gratuitous: spa == tpa
    sha = (m.GUEST_MAC, OTHER_MAC, BCAST, bytes(6))[r[4] & 3]
    src = m.GUEST_MAC if not r[5] & 1 else OTHER_MAC
    dst = BCAST if r[5] & 2 else m.GW_MAC
    htype, ptype, hl, pl = (1, 0x0800, 6, 4) if r[6] & 7 != 7 else (6, 0x0800, 6, 4)
    body = _ARP.pack(htype, ptype, hl, pl, op, sha, spa, bytes(6), tpa)
    if r[7] & 1:
        body += bytes(18)  # Ethernet minimum-size padding
    s.send(m.eth(0x0806, body, dst, src))


def ping(s, r) -> None:
    v6 = bool(r[1] & 1)
    n = min(s.length(r[2], None), 65000 - 48)
    data = s.payload(r[3], n)
    ident, seq = (r[3] << 8) | r[4], r[4]
    k = r[5] % 6
    if v6:
        src = SRC6[(r[6] >> 4) % len(SRC6)] if r[6] >= 0xC0 else GUEST6
        dst = REMOTE6[r[6] % len(REMOTE6)]
        t, c = ((128, 0), (128, 1), (129, 0), (1, 4), (128, 0), (2, 0))[k]
        l4 = m.icmp6_l4(src, dst, t, c, struct.pack("!HH", ident, seq) + data)
        if k == 4:
            l4 = l4[:2] + b"\0\0" + l4[4:]
        s.send(m.ip_frame(src, dst, 58, l4, hlim=(64, 255, 1, 0)[r[7] & 3]))
    else:
        src = SRC4[(r[6] >> 4) % len(SRC4)] if r[6] >= 0xC0 else GUEST4
        dst = REMOTE4[r[6] % len(REMOTE4)]
        t, c = ((8, 0), (8, 1), (0, 0), (3, 3), (8, 0), (13, 0))[k]
        l4 = m.icmp4_l4(t, c, struct.pack("!HH", ident, seq), data)
        if k == 4:
            l4 = l4[:2] + b"\0\0" + l4[4:]
        s.send(m.ip_frame(src, dst, 1, l4, ttl=(64, 1, 0, 255)[r[7] & 3]))


def udp(s, r) -> None:
    v6 = bool(r[1] & 1)
    dst = (REMOTE6 if v6 else REMOTE4)[r[2] % (len(REMOTE6) if v6 else len(REMOTE4))]
    dport = PORTS[r[3] % len(PORTS)]
    n = min(s.length(r[5], None), 65000 - 48)
    payload = s.payload(r[4], n)
    sport = 1024 + r[6] * 7
    src = (SRC6 if v6 else SRC4)[(r[7] >> 2) % (len(SRC6) if v6 else len(SRC4))] if r[7] >= 0xE0 else \
        (GUEST6 if v6 else GUEST4)
    k = r[7] & 3
    l4 = m.udp_l4(src, dst, sport, dport, payload, good_csum=k < 2)
    if k == 3 and len(l4) >= 8:
        l4 = l4[:6] + b"\x12\x34" + l4[8:]
    s.send(m.ip_frame(src, dst, 17, l4))


_DHCP_TYPES = (1, 3, 4, 7, 8, 2, 5, 6, 0, 9, 3, 1)


def dhcp(s, r) -> None:
    t = s.dhcp_t[r[1] % len(s.dhcp_t)]
    if t is None:  # no DHCP in the capture: a minimal DISCOVER
        p = bytearray(240)
        p[0], p[1], p[2] = 1, 1, 6
        p[28:34] = m.GUEST_MAC
        p[236:240] = b"\x63\x82\x53\x63"
        p += b"\x35\x01\x01\xff"
    else:
        p = bytearray(t.payload)
    # message type (option 53) rewritten; one patch in the options; addresses
    i = 240
    while i + 2 < len(p) and p[i] != 255:
        if p[i] == 0:
            i += 1
            continue
        if p[i] == 53 and i + 2 < len(p):
            p[i + 2] = _DHCP_TYPES[r[7] % len(_DHCP_TYPES)]
        i += 2 + p[i + 1]
    if r[4] & 1 and len(p) >= 16:
        p[12:16] = bytes((10, 0, 2, 15 + (r[5] & 31)))  # ciaddr: a renewing client
    if r[4] & 4 and len(p) > 240:
        off = 240 + r[2] % (len(p) - 240)
        p[off] = r[3]
    if r[4] & 8 and len(p) > 240:
        # requested IP (option 50) inside or outside the pool
        p[-1:] = b"\x32\x04" + bytes((10, 0, 2, r[5])) + b"\xff"
    if r[4] & 2:
        del p[200 + r[5] :]
    src = bytes(4) if not r[6] & 1 else bytes((10, 0, 2, 15))
    dst = b"\xff\xff\xff\xff" if not r[6] & 2 else GW4
    l4 = m.udp_l4(src, dst, 68, 67, bytes(p))
    s.send(m.eth(0x0800, m.ip4(src, dst, 17, l4), BCAST if not r[6] & 2 else m.GW_MAC))


def dns(s, r) -> None:
    v6 = bool(r[1] & 1)
    dst = DNS6 if v6 else DNS4
    src = GUEST6 if v6 else GUEST4
    flags = (0x0100, 0x0000, 0x8180, 0x2800, 0x0110, 0x7900, 0x0100, 0x0100)[r[4] & 7]
    qd = (1, 1, 1, 1, 0, 2, 65535, 1)[r[5] & 7]
    name = DNS_NAMES[r[6] % len(DNS_NAMES)]
    qclass = (1, 1, 255, 3)[(r[5] >> 6) & 3]
    q = struct.pack("!HHHHHH", (r[2] << 8) | r[3], flags, qd, (0, 1)[(r[5] >> 3) & 1], 0, 1 if r[4] & 0x80 else 0)
    q += name + struct.pack("!HH", QTYPES[r[7] % len(QTYPES)], qclass)
    if r[5] & 0x10:  # an answer record (guests do not send them; parsers meet them): names in rdata
        rtype = (5, 15, 6, 33, 12, 2, 1, 28)[r[3] & 7]
        rdata = (b"\xc0\x0c", b"\x00\x0a\xc0\x0c", b"\xc0\x0c\xc0\x0c" + bytes(20), b"\x00\x01\x00\x02\x00\x50\xc0\x0c",
                 b"\x03ptr\x00", b"\xc0\xff", b"\x0a\x00\x02\x02", bytes(15))[(r[3] >> 3) & 7]
        q = q[:6] + b"\x00\x01" + q[8:] + b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata
    if r[4] & 0x80:  # EDNS OPT record (RFC 6891) with a payload size
        q += b"\x00\x00\x29" + struct.pack("!H", (512, 4096, 0, 65535)[(r[4] >> 3) & 3]) + bytes(6)
    if r[4] & 0x40:
        q += _RNG_BUF[r[3] : r[3] + (r[2] & 31)]
    if r[5] & 0x20:
        q = q[: 12 + (r[2] % max(1, len(q) - 12))]
    l4 = m.udp_l4(src, dst, 30000 + r[2], 53, q)
    s.send(m.ip_frame(src, dst, 17, l4))


def _sn(addr: bytes) -> bytes:
    return bytes.fromhex("ff0200000000000000000001ff") + addr[13:]


def ndp(s, r) -> None:
    t = (133, 135, 136, 134, 137, 133, 135, 135)[r[1] & 7]
    target = (GW6, DNS6, LL_GW6, GUEST6, ALL_NODES, bytes.fromhex("fd000000000000000000000000000007"), bytes(16),
              REMOTE6[0])[r[2] & 7]
    src = (GUEST6, LL_GUEST6, bytes(16), GW6, ALL_NODES, LL_GUEST6)[r[3] % 6]
    dst = (_sn(target), ALL_ROUTERS, GW6, ALL_NODES, LL_GW6, target)[r[4] % 6]
    hlim = 255 if r[5] & 7 != 7 else 64
    k = r[6] & 7
    opt = (b"", b"\x01\x01" + m.GUEST_MAC, b"\x02\x01" + m.GUEST_MAC, b"\x01\x00" + bytes(6), b"\x01\xff" + bytes(6),
           b"\x01\x02" + m.GUEST_MAC + bytes(8), b"\x05\x01\x00\x00\x00\x00\x05\xdc",
           b"\x03\x04\x40\xc0" + bytes(28))[k]
    if r[6] & 0x80:
        opt = opt * 2
    nflags = ((r[7] & 0xE0) << 24).to_bytes(4, "big")
    if t == 133:
        body = bytes(4) + opt
    elif t == 135:
        body = bytes(4) + target + opt
    elif t == 136:
        body = nflags + target + opt
    elif t == 134:
        body = struct.pack("!BBHII", 64, r[7], 1800, 0, 0) + opt
    else:
        body = bytes(4) + target + GW6 + opt
    if r[5] & 0x10:
        body = body[: r[5] >> 4]
    l4 = m.icmp6_l4(src, dst, t, 1 if r[7] & 1 else 0, body)
    if r[7] & 2:
        l4 = l4[:2] + b"\xde\xad" + l4[4:]
    mac = (b"\x33\x33" + dst[12:]) if dst[0] == 0xFF else m.GW_MAC
    s.send(m.eth(0x86DD, m.ip6(src, dst, 58, l4, hlim=hlim), mac))


# ----------------------------------------------------------------- captured frames, patched

_WORDS = (0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 1, 0xFFFF, 0x10000, 0xFFFFFFFE)


def _patch(fr: bytearray, mode: int, off: int, val: int) -> None:
    n = len(fr)
    off = off % (n + 1)
    mode &= 7
    if mode == 0 and off < n:
        fr[off] = val
    elif mode == 1 and off < n:
        fr[off] ^= val or 0x80
    elif mode == 2 and off + 1 < n:
        w = ((fr[off] << 8) | fr[off + 1]) + (val if val < 128 else val - 256)
        fr[off : off + 2] = (w & 0xFFFF).to_bytes(2, "big")
    elif mode == 3:
        fr[off:off] = bytes((val,)) * (1 + (val & 7))
    elif mode == 4:
        del fr[off : off + 1 + (val & 63)]
    elif mode == 5:
        del fr[off:]
    elif mode == 6:
        fr += bytes(val * 4)  # trailing Ethernet padding (the IP length stays right unless fixed up)
    elif mode == 7 and off + 3 < n:
        fr[off : off + 4] = _WORDS[val & 7].to_bytes(4, "big")


def _rebase(s, fr: bytearray, g: GConn) -> None:
    """Put a captured TCP segment on a live connection: addresses, ports, SEQ/ACK of the model guest."""
    if len(fr) < 14:
        return
    et = (fr[12] << 8) | fr[13]
    if et == 0x0800 and not g.v6 and len(fr) >= 34:
        ihl = (fr[14] & 15) * 4
        fr[26:30], fr[30:34] = g.gip, g.rip
        l4 = 14 + ihl
    elif et == 0x86DD and g.v6 and len(fr) >= 54:
        fr[22:38], fr[38:54] = g.gip, g.rip
        l4 = 54
    else:
        return
    if len(fr) >= l4 + 20:
        fr[l4 : l4 + 12] = struct.pack("!HHII", g.gport, g.rport, g.snd_nxt, g.peer_nxt)


def raw(s, r) -> None:
    t = s.templates[r[1] % len(s.templates)]
    fr = bytearray(t.frame)
    g = None
    if r[7] & 0x80 and t.proto == 6:
        g = s.gconn(r[6] >> 3)
        if g is not None:
            _rebase(s, fr, g)
    _patch(fr, r[2], (r[3] << 8) | r[4], r[5])
    _send_fixed(s, fr, r)
    if g is not None and not t.tcp_flags & (m.SYN | m.RST):
        g.snd_nxt = (g.snd_nxt + len(t.payload) + (1 if t.tcp_flags & m.FIN else 0)) & MASK


def repatch(s, r) -> None:
    if s.last_raw is None:
        return raw(s, r)
    fr = bytearray(s.last_raw)
    _patch(fr, r[2], (r[3] << 8) | r[4], r[5])
    _send_fixed(s, fr, r)


def _send_fixed(s, fr: bytearray, r) -> None:
    k = r[6] & 7  # mostly valid: lengths and checksums fixed up 5 times in 8
    frame = m.fixup(fr, k <= 5, k <= 4 or k == 6)
    s.last_raw = frame
    s.send(frame, (0, 0, 0, 0, 0, 1, 2, 3)[r[7] & 7])


def garbage(s, r) -> None:
    if r[7] & 1:
        n = r[1] % 24
        s.send(_RNG_BUF[r[3] : r[3] + n], r[6] & 3)
        return
    etype = (0x0800, 0x86DD, 0x0806, 0x8100, 0x88CC, (r[3] << 8) | r[4])[r[2] % 6]
    off = (r[3] << 8) | r[4]
    body = _RNG_BUF[off : off + r[1] * 4]
    if etype == 0x0800 and body:
        body = bytes((0x45,)) + body[1:]
    elif etype == 0x86DD and body:
        body = bytes((0x60,)) + body[1:]
    dst = (m.GW_MAC, BCAST, OTHER_MAC, b"\x33\x33\x00\x00\x00\x01")[r[5] & 3]
    src = m.GUEST_MAC if not r[5] & 4 else b"\x01\x00\x5e\x00\x00\x01"
    s.send(m.eth(etype, body, dst, src), r[6] & 3)


# ----------------------------------------------------------------- the shell

def h_open(s, r) -> None:
    if not s.pending:
        return
    hc = s.pending.pop(r[1] % len(s.pending))
    if hc.dead or s.core.flows.get(hc.flow.key) is not hc.flow:
        return
    if r[2] % 3 < 2:
        s.connected(hc)
    else:
        s.connect_failed(hc, r[3])


def _host(s, b):
    flow = s.flow_at(b)
    if flow is None:
        return None
    hc = flow.handle
    if not isinstance(hc, HostFlow) or hc.dead or hc.connecting:
        return None
    return hc


def h_send(s, r) -> None:
    """Host data for the guest (TcpNat._pull: only what the send buffer has room for)."""
    hc = _host(s, r[1])
    if hc is None or hc.host_eof:
        return
    conn = hc.flow.conn
    space = conn.send_space()
    if space <= 0:
        return
    n = min(space, max(1, s.length(r[2], None)))
    conn.send(s.payload(r[3], n))
    s.core.touch(hc.flow)


def h_read(s, r) -> None:
    """The host app reads (in manual-read mode this is the only way data leaves the receive buffer)."""
    limit = None if r[3] & 1 else max(1, s.length(r[2], None))
    if r[4] & 1 and s.draining:
        hc = s.draining[r[1] % len(s.draining)]
        if not hc.dead:
            s.drain(hc, limit)
        return
    hc = _host(s, r[1])
    if hc is None:
        return
    s.push(hc, limit)


def h_close(s, r) -> None:
    hc = _host(s, r[1])
    if hc is None:
        return
    conn = hc.flow.conn
    k = r[2] & 3
    if k <= 1:  # the host closed its side (EOF): FIN once established
        hc.host_eof = True
        if conn.established:
            conn.close()
        else:
            hc.close_pending = True
    elif k == 2:  # the host socket failed: RST
        conn.abort()
        hc.dead = True
    else:  # the host socket is gone entirely: an orphan, FIN-WAIT-2 may time out
        hc.host_eof = True
        conn.close(orphan=True)
    s.core.touch(hc.flow)


def h_connect(s, r) -> None:
    """Port forwarding: the engine's active open towards the guest (core.tcp_connect)."""
    v6 = bool(r[1] & 1)
    src = ((GW6, DNS6, REMOTE6[0], LL_GW6) if v6 else (GW4, DNS4, REMOTE4[0], REMOTE4[3]))[r[2] & 3]
    dst = GUEST6 if v6 else GUEST4
    gport = (7000, 80, 22, (r[4] << 8) | r[5])[r[3] & 3]
    flow = s.core.tcp_connect(src, 30000 + r[6] * 3, dst, gport, s.now)
    if flow is not None:
        flow.handle = HostFlow(flow, s.now, connecting=False)
        s.hosts.append(flow.handle)


def h_udp(s, r) -> None:
    ev = s.last_udp
    v6 = bool(r[1] & 2)
    if ev is not None and r[1] & 1:
        src, sport, dst, dport = ev.dst, ev.dport, ev.src, ev.sport
    else:
        src = ((DNS6, GW6, REMOTE6[0]) if v6 else (DNS4, GW4, REMOTE4[0]))[r[2] % 3]
        dst, sport, dport = (GUEST6 if v6 else GUEST4), 53 + r[4], 1024 + r[5] * 7
    n = s.length(r[3], None)
    s.core.udp_out(src, sport, dst, dport, s.payload(r[6], n))


def h_icmp(s, r) -> None:
    k = r[1] & 3
    core = s.core
    if k == 0:
        ev = s.last_ping
        if ev is not None:
            core.echo_reply(ev.dst, ev.src, ev.ident, ev.seq, ev.data[: r[3] * 8])
        else:
            core.echo_reply(REMOTE4[0], GUEST4, r[4], r[5], s.payload(r[6], r[3]))
    elif k == 1:
        if s.last_udp is not None:
            core.icmp_unreachable(s.last_udp.header, r[2] & 15)
    elif k == 2:
        t = s.templates[r[2] % len(s.templates)]
        pkt = t.frame[14 : 14 + max(20, r[3] * 4)]
        if len(pkt) >= 40 or (pkt and pkt[0] >> 4 == 4 and len(pkt) >= 20):
            core.icmp_unreachable(pkt, r[4] & 15)
    elif s.pending:
        hc = s.pending.pop(r[2] % len(s.pending))
        if not hc.dead and core.flows.get(hc.flow.key) is hc.flow:
            s.connect_failed(hc, 4 | r[3])


def tick(s, r) -> None:
    """The mock clock: timers, router advertisements, connect timeouts, DNS forwarder expiry."""
    dt = DTS[r[1] % len(DTS)] + (r[3] & 15) * 0.0001
    core = s.core
    for _ in range(1 + (r[2] & 3)):
        s.now += dt
        now = s.now
        core.run_timers(now)
        if s.ndp_at is not None and now >= s.ndp_at:
            s.ndp_at = core.ndp_poll(now)
        if s.pending:
            for hc in [hc for hc in s.pending if now - hc.since > CONNECT_TIMEOUT]:
                s.pending.remove(hc)
                if not hc.dead and core.flows.get(hc.flow.key) is hc.flow:
                    s.connect_failed(hc, 0)
        if s.draining:
            for hc in s.draining:
                if not hc.dead and now - hc.drain_since > RESET_DRAIN_TIMEOUT:
                    s.close_host(hc)
            s.draining = [hc for hc in s.draining if not hc.dead]
        if r[4] & 1:
            core.statistics()  # what the API's GET /v1/stats reads
        for (csrc, csport, cdst), query in s.fwd.expire(now):
            resp = servfail_for(query)
            if resp is not None:
                core.udp_out(cdst, 53, csrc, csport, resp)
        s.process()


_W = [
    (t_data, 7), (t_ack, 5), (t_syn, 4), (t_fin, 3), (t_rst, 2), (t_ooo, 3), (t_retx, 2), (t_synack, 2),
    (t_raw_tcp, 2), (t_gso, 1), (arp, 1), (ping, 1), (udp, 2), (dhcp, 2), (dns, 2), (ndp, 2), (raw, 3), (repatch, 2),
    (garbage, 1), (h_open, 2), (h_send, 3), (h_read, 2), (h_close, 2), (h_connect, 1), (h_udp, 1), (h_icmp, 1),
    (tick, 5),
]
OPS = [f for f, w in _W for _ in range(w)]
assert len(OPS) == 64, len(OPS)
NAMES = {f: f.__name__ for f, _ in _W}
