"""The bench's own frame codec: Ethernet/IPv4/TCP with a virtio-net header, built and parsed here.

Deliberately independent of ``rootlessnet.wire``: an oracle must not share the
engine's reading of the formats. Every frame on a bench packet socket
(PACKET_VNET_HDR) starts with the 10-byte virtio_net_hdr; frames the bench
sends carry complete checksums unless they are GSO super-frames, which carry
the pseudo-header sum and NEEDS_CSUM exactly as a guest kernel's would.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

GUEST_IP = "10.0.2.50"  # the bench's address: no kernel owns it, so none answers for it
GUEST_MAC = bytes.fromhex("020000000050")
DUT_IP = "10.0.2.2"  # the engine's gateway (host loopback) / the Linux DUT's veth address
DUT_MAC = bytes.fromhex("525500000002")  # the engine's gateway MAC; the Linux veth gets the same
ETH_IP4, ETH_ARP = 0x0800, 0x0806
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
VNET = struct.Struct("<BBHHHH")  # flags gso_type hdr_len gso_size csum_start csum_offset
NEEDS_CSUM, GSO_TCPV4 = 1, 1
SOL_PACKET, PACKET_VNET_HDR = 263, 15
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")


def _sum16(data: bytes, start: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    s = start + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksum(data: bytes, start: int = 0) -> int:
    return 0xFFFF - _sum16(data, start)


@dataclass
class Options:
    """TCP options as the bench writes them (Linux's order: MSS, SACK-permitted, TS, WS)."""

    mss: int | None = None
    ws: int | None = None
    sackok: bool = False
    ts: tuple[int, int] | None = None  # (TSval, TSecr)
    sack: tuple[tuple[int, int], ...] = ()

    def encode(self) -> bytes:
        out = b""
        if self.mss is not None:
            out += struct.pack("!BBH", 2, 4, self.mss)
        if self.sackok and self.ts is not None:
            out += b"\x04\x02" + struct.pack("!BBII", 8, 10, *self.ts)
        elif self.ts is not None:
            out += b"\x01\x01" + struct.pack("!BBII", 8, 10, *self.ts)
        elif self.sackok:
            out += b"\x01\x01\x04\x02"
        if self.sack:
            out += b"\x01\x01" + struct.pack("!BB", 5, 2 + 8 * len(self.sack))
            out += b"".join(struct.pack("!II", a, b) for a, b in self.sack)
        if self.ws is not None:
            out += b"\x01" + struct.pack("!BBB", 3, 3, self.ws)
        return out + b"\0" * (-len(out) % 4)


def parse_options(raw: bytes) -> Options:
    o = Options()
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break
        n = raw[i + 1]
        body = raw[i + 2 : i + n]
        if kind == 2 and n == 4:
            o.mss = struct.unpack("!H", body)[0]
        elif kind == 3 and n == 3:
            o.ws = body[0]
        elif kind == 4 and n == 2:
            o.sackok = True
        elif kind == 8 and n == 10:
            o.ts = struct.unpack("!II", body)
        elif kind == 5:
            o.sack = tuple(struct.unpack_from("!II", body, k) for k in range(0, len(body) - 7, 8))
        i += n
    return o


@dataclass
class Frame:
    """A TCP segment a DUT sent, as the bench saw it."""

    t: float  # arrival (kernel timestamp, time.time() clock)
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    win: int  # raw 16-bit field
    payload: bytes
    opts: Options
    gso_size: int = 0  # from the virtio header: the DUT handed over a super-frame
    raw_len: int = 0
    extra: dict = field(default_factory=dict)

    def has(self, f: int) -> bool:
        return bool(self.flags & f)

    @property
    def seg_len(self) -> int:
        return len(self.payload) + bool(self.flags & SYN) + bool(self.flags & FIN)


def tcp_frame(sport: int, dport: int, seq: int, ack: int, flags: int, win: int, *, opts: bytes = b"",
              payload: bytes = b"", gso_size: int = 0, src: str = GUEST_IP, dst: str = DUT_IP,
              bad_checksum: bool = False, urgent: int = 0) -> bytes:
    """virtio_net_hdr + Ethernet + IPv4 + TCP (+ payload), guest -> DUT."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    thl = 20 + len(opts)
    tlen = thl + len(payload)
    th = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (thl // 4) << 4, flags, win, 0, urgent) + opts
    pseudo = _sum16(s + d + struct.pack("!xBH", 6, tlen))
    if gso_size:
        # as a guest kernel hands a TSO frame to its device: pseudo-header sum only, the device finishes
        th = th[:16] + struct.pack("!H", pseudo) + th[18:]
        vh = VNET.pack(NEEDS_CSUM, GSO_TCPV4, 14 + 20 + thl, gso_size, 34, 16)
    else:
        c = checksum(th + payload, pseudo)
        if bad_checksum:
            c ^= 0x5A5A
        th = th[:16] + struct.pack("!H", c) + th[18:]
        vh = bytes(VNET.size)
    ip = _IP.pack(0x45, 0, 20 + tlen, 0, 0x4000, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return vh + DUT_MAC + GUEST_MAC + struct.pack("!H", ETH_IP4) + ip + th + payload


def arp_frame(op: int, sender_ip: str, target_mac: bytes, target_ip: str) -> bytes:
    """ARP from the bench's address (op 1 with target = sender: gratuitous)."""
    dst = b"\xff" * 6 if op == 1 else target_mac
    body = _ARP.pack(1, ETH_IP4, 6, 4, op, GUEST_MAC, socket.inet_aton(sender_ip), target_mac,
                     socket.inet_aton(target_ip))
    return bytes(VNET.size) + dst + GUEST_MAC + struct.pack("!H", ETH_ARP) + body


def parse(buf: bytes, t: float) -> Frame | tuple | None:
    """A Frame for IPv4/TCP, ("arp", op, sender_ip, target_ip) for ARP, else None."""
    if len(buf) < VNET.size + 14:
        return None
    _flags, gso_type, _hl, gso_size, _cs, _co = VNET.unpack_from(buf, 0)
    eth = buf[VNET.size :]
    etype = struct.unpack_from("!H", eth, 12)[0]
    if etype == ETH_ARP and len(eth) >= 42:
        _h, _p, _hl2, _pl, op, _sha, spa, _tha, tpa = _ARP.unpack_from(eth, 14)
        return ("arp", op, socket.inet_ntoa(spa), socket.inet_ntoa(tpa))
    if etype != ETH_IP4 or len(eth) < 34:
        return None
    ip = eth[14:]
    ihl = (ip[0] & 15) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    if ip[9] != 6 or total < ihl + 20 or total > len(ip):
        return None
    tcp = ip[ihl:total]
    sport, dport, seq, ack, off, flags, win, _c, _u = _TCP.unpack_from(tcp, 0)
    thl = (off >> 4) * 4
    return Frame(t, sport, dport, seq, ack, flags, win, bytes(tcp[thl:]), parse_options(bytes(tcp[20:thl])),
                 gso_size if gso_type & 0x7F else 0, len(buf))
