"""Fuzzing the core, the guest's side: frames it sends, seed templates from a capture, and the
checker for every frame the core emits (it must parse with rootlessnet.wire and be consistent).

Frames the fuzzer builds are valid by construction (lengths and checksums computed here); the
program decides when to break them. Templates are the guest's frames of a real capture
(tests/fuzz/corpus/seed.pcap, made by hack/fuzz-corpus): their TCP options, HTTP/DNS/DHCP
payloads and NDP messages are what real clients send.
"""

from __future__ import annotations

import struct

from rootlessnet.stack.config import GATEWAY_MAC
from rootlessnet.wire import WireError
from rootlessnet.wire.arp import ArpPacket
from rootlessnet.wire.checksum import fold, ones_sum
from rootlessnet.wire.ethernet import EthernetFrame
from rootlessnet.wire.icmpv4 import Icmpv4Message
from rootlessnet.wire.icmpv6 import Icmpv6Message, parse_icmpv6
from rootlessnet.wire.ipv4 import Ipv4Packet
from rootlessnet.wire.ipv6 import Ipv6Packet
from rootlessnet.wire.tcp import TcpSegment
from rootlessnet.wire.udp import UdpDatagram
from rootlessnet.wire.vnet import VnetHeader

GUEST_MAC = bytes.fromhex("525400123456")
GW_MAC = GATEWAY_MAC
_ETH = struct.Struct("!6s6sH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_U16 = struct.Struct("!H")
_PCAP_GLOBAL = struct.Struct("<IHHiIII")
_PCAP_REC = struct.Struct("<IIII")

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


# ----------------------------------------------------------------- building guest frames

def csum16(data, initial: int = 0) -> int:
    return 0xFFFF - ones_sum(data, initial)


def pseudo(src: bytes, dst: bytes, proto: int, length: int) -> int:
    if len(src) == 4:
        return fold(int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + length)
    return fold(int.from_bytes(src, "big") + int.from_bytes(dst, "big") + (length >> 16) + (length & 0xFFFF) + proto)


def eth(etype: int, l3: bytes, dst: bytes = GW_MAC, src: bytes = GUEST_MAC) -> bytes:
    return _ETH.pack(dst, src, etype) + l3


def ip4(src: bytes, dst: bytes, proto: int, l4: bytes, *, ttl: int = 64, ident: int = 1, frag: int = 0x4000,
        tos: int = 0) -> bytes:
    h = _IP4.pack(0x45, tos, 20 + len(l4), ident, frag, ttl, proto, 0, src, dst)
    return h[:10] + _U16.pack(csum16(h)) + h[12:] + l4


def ip6(src: bytes, dst: bytes, nh: int, l4: bytes, *, hlim: int = 64) -> bytes:
    return _IP6.pack(0x60000000, len(l4), nh, hlim, src, dst) + l4


def ip_frame(src: bytes, dst: bytes, proto: int, l4: bytes, **kw) -> bytes:
    if len(src) == 4:
        return eth(0x0800, ip4(src, dst, proto, l4, **{k: v for k, v in kw.items() if k != "hlim"}))
    return eth(0x86DD, ip6(src, dst, proto, l4, hlim=kw.get("hlim", 64)))


def tcp_l4(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, win: int,
           opts: bytes = b"", payload=b"", *, good_csum: bool = True, urg: int = 0) -> bytes:
    opts = opts + bytes(-len(opts) % 4)
    thl = 20 + len(opts)
    h = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (thl // 4) << 4, flags & 0xFF, win & 0xFFFF, 0,
                  urg) + opts
    if not good_csum:
        return h + bytes(payload)
    ck = csum16(payload, ones_sum(h, pseudo(src, dst, 6, thl + len(payload)))) if payload else \
        csum16(h, pseudo(src, dst, 6, thl))
    return h[:16] + _U16.pack(ck) + h[18:] + bytes(payload)


def udp_l4(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, *, good_csum: bool = True) -> bytes:
    n = 8 + len(payload)
    h = _UDP.pack(sport, dport, n & 0xFFFF, 0)
    if not good_csum:
        return h + payload
    ck = csum16(payload, ones_sum(h, pseudo(src, dst, 17, n))) or 0xFFFF
    return h[:6] + _U16.pack(ck) + payload


def icmp4_l4(itype: int, code: int, rest: bytes, data: bytes) -> bytes:
    m = bytes((itype, code)) + b"\0\0" + rest + data
    return m[:2] + _U16.pack(csum16(m)) + m[4:]


def icmp6_l4(src: bytes, dst: bytes, itype: int, code: int, body: bytes) -> bytes:
    m = bytes((itype, code)) + b"\0\0" + body
    return m[:2] + _U16.pack(csum16(m, pseudo(src, dst, 58, len(m)))) + m[4:]


def fixup(frame: bytearray, lengths: bool, checksums: bool) -> bytes:
    """Make a patched frame consistent again: IP lengths and/or IP and L4 checksums.

    Works on whatever the patches left: anything that no longer looks like IPv4/IPv6 stays as it is.
    """
    n = len(frame)
    if n < 14:
        return bytes(frame)
    etype = (frame[12] << 8) | frame[13]
    if etype == 0x0800 and n >= 34 and frame[14] >> 4 == 4:
        ihl = (frame[14] & 15) * 4
        if ihl < 20 or 14 + ihl > n:
            return bytes(frame)
        if lengths:
            frame[16:18] = _U16.pack(min(n - 14, 0xFFFF))
        total = min((frame[16] << 8) | frame[17], n - 14)
        if checksums:
            frame[24:26] = b"\0\0"
            frame[24:26] = _U16.pack(csum16(frame[14 : 14 + ihl]))
        proto = frame[23]
        src, dst = bytes(frame[26:30]), bytes(frame[30:34])
        l4 = 14 + ihl
        end = 14 + total
        if end < l4:
            return bytes(frame)
        if frame[20] & 0x3F or frame[21]:  # a fragment: no L4 header to fix beyond the first
            if (((frame[20] & 0x1F) << 8) | frame[21]) != 0:
                return bytes(frame)
    elif etype == 0x86DD and n >= 54 and frame[14] >> 4 == 6:
        if lengths:
            frame[18:20] = _U16.pack(min(n - 54, 0xFFFF))
        plen = (frame[18] << 8) | frame[19]
        proto = frame[20]
        src, dst = bytes(frame[22:38]), bytes(frame[38:54])
        l4 = 54
        end = min(54 + plen, n)
    else:
        return bytes(frame)
    if not checksums:
        return bytes(frame)
    seg = end - l4
    if proto == 6 and seg >= 20:
        frame[l4 + 16 : l4 + 18] = b"\0\0"
        frame[l4 + 16 : l4 + 18] = _U16.pack(csum16(frame[l4:end], pseudo(src, dst, 6, seg)))
    elif proto == 17 and seg >= 8:
        if lengths:
            frame[l4 + 4 : l4 + 6] = _U16.pack(seg)
        frame[l4 + 6 : l4 + 8] = b"\0\0"
        frame[l4 + 6 : l4 + 8] = _U16.pack(csum16(frame[l4:end], pseudo(src, dst, 17, seg)) or 0xFFFF)
    elif proto == 1 and seg >= 4 and len(src) == 4:
        frame[l4 + 2 : l4 + 4] = b"\0\0"
        frame[l4 + 2 : l4 + 4] = _U16.pack(csum16(frame[l4:end]))
    elif proto == 58 and seg >= 4:
        frame[l4 + 2 : l4 + 4] = b"\0\0"
        frame[l4 + 2 : l4 + 4] = _U16.pack(csum16(frame[l4:end], pseudo(src, dst, 58, seg)))
    return bytes(frame)


# ----------------------------------------------------------------- seed templates

def read_pcap(path: str) -> list[bytes]:
    """The frames of a LINKTYPE_ETHERNET pcap (what `--pcap` writes)."""
    with open(path, "rb") as f:
        data = f.read()
    magic, _vmaj, _vmin, _tz, _sig, _snap, link = _PCAP_GLOBAL.unpack_from(data, 0)
    if magic != 0xA1B2C3D4 or link != 1:
        raise ValueError(f"{path}: not a little-endian Ethernet pcap")
    off, out = _PCAP_GLOBAL.size, []
    while off + _PCAP_REC.size <= len(data):
        _s, _us, incl, _orig = _PCAP_REC.unpack_from(data, off)
        off += _PCAP_REC.size
        out.append(data[off : off + incl])
        off += incl
    return out


class Template:
    """One guest frame of the capture and the parts the fuzzer reuses."""

    __slots__ = ("frame", "etype", "proto", "tcp_opts", "payload", "tcp_flags", "dport")

    def __init__(self, frame: bytes):
        self.frame = frame
        self.etype = (frame[12] << 8) | frame[13] if len(frame) >= 14 else 0
        self.proto = -1
        self.tcp_opts = b""
        self.payload = b""
        self.tcp_flags = 0
        self.dport = 0
        l4 = None
        if self.etype == 0x0800 and len(frame) >= 34:
            ihl = (frame[14] & 15) * 4
            total = (frame[16] << 8) | frame[17]
            self.proto = frame[23]
            l4 = frame[14 + ihl : 14 + total]
        elif self.etype == 0x86DD and len(frame) >= 54:
            self.proto = frame[20]
            l4 = frame[54 : 54 + ((frame[18] << 8) | frame[19])]
            if self.proto == 0 and len(l4) >= 8:  # hop-by-hop (MLD reports): the next header after it
                self.proto = l4[0]
                l4 = l4[(l4[1] + 1) * 8 :]
        if l4 is None:
            self.payload = frame[14:]
        elif self.proto == 6 and len(l4) >= 20:
            thl = (l4[12] >> 4) * 4
            self.tcp_opts = bytes(l4[20:thl])
            self.tcp_flags = l4[13]
            self.dport = (l4[2] << 8) | l4[3]
            self.payload = bytes(l4[thl:])
        elif self.proto == 17 and len(l4) >= 8:
            self.dport = (l4[2] << 8) | l4[3]
            self.payload = bytes(l4[8:])
        else:
            self.payload = bytes(l4)  # ICMP/ICMPv6: the whole message


def load_templates(path: str) -> list[Template]:
    """The guest's frames (not the engine's) of a capture, deduplicated, in capture order."""
    seen, out = set(), []
    for fr in read_pcap(path):
        if len(fr) < 14 or fr[6:12] == GW_MAC or fr in seen:
            continue
        seen.add(fr)
        out.append(Template(fr))
    return out


# ----------------------------------------------------------------- checking what the core emits

class TcpOut:
    """A TCP segment the core sent to the guest (for the guest model and the per-flow checks)."""

    __slots__ = ("src", "dst", "sport", "dport", "seq", "ack", "flags", "win", "plen", "mss", "wscale")

    def __init__(self, src, dst, seg: TcpSegment):
        self.src, self.dst = src, dst
        self.sport, self.dport = seg.src_port, seg.dst_port
        self.seq, self.ack, self.flags, self.win = seg.seq, seg.ack, int(seg.flags), seg.window
        self.plen = len(seg.payload)
        self.mss, self.wscale = seg.options.mss, seg.options.wscale


class OutputChecker:
    """Every frame the core emits must parse with the wire codecs and be consistent.

    ``check`` returns (problem or None, TcpOut or None). Problems are strings naming the check.
    """

    def __init__(self, *, vnet: bool, offload: bool, mtu: int):
        self.vnet = vnet
        self.offload = offload and vnet
        self.mtu = mtu

    def check(self, parts: list) -> tuple[str | None, TcpOut | None]:
        buf = parts[0] if len(parts) == 1 else b"".join(bytes(p) for p in parts)
        gso = 0
        needs_csum = False
        if self.vnet:
            try:
                vh = VnetHeader.parse(buf)
            except WireError as e:
                return f"vnet header does not parse: {e}", None
            gso = vh.gso_type & 0x7F
            needs_csum = bool(vh.flags & 1)
            if needs_csum and not self.offload:
                return "NEEDS_CSUM on a device without offload", None
            buf = buf[10:]
        try:
            fr = EthernetFrame.parse(buf)
        except WireError as e:
            return f"ethernet does not parse: {e}", None
        if fr.src != GW_MAC:
            return f"source MAC {fr.src.hex()} is not the gateway's", None
        l3 = fr.payload
        if not gso and len(l3) > self.mtu and not _echo_reply(fr.ethertype, l3):
            what = {0x0800: l3[9:10], 0x86DD: l3[6:7]}.get(fr.ethertype, b"?")
            return (f"IP packet above the MTU without GSO: {len(l3)} bytes > MTU {self.mtu}, ethertype "
                    f"{fr.ethertype:#06x} proto {what[0] if what else '?'} first bytes {bytes(l3[:60]).hex()}"), None
        try:
            if fr.ethertype == 0x0806:
                ArpPacket.parse(l3)
                return None, None
            if fr.ethertype == 0x0800:
                ip = Ipv4Packet.parse(l3)
                if ip.total_length != len(l3):
                    return f"IPv4 total length {ip.total_length} != {len(l3)} bytes sent", None
                if ip.is_fragment:
                    return None, None
                src, dst, proto, l4 = ip.src, ip.dst, ip.proto, ip.payload
            elif fr.ethertype == 0x86DD:
                ip6 = Ipv6Packet.parse(l3)
                if 40 + ip6.payload_length != len(l3):
                    return f"IPv6 payload length {ip6.payload_length} != {len(l3) - 40}", None
                if ip6.fragment is not None:
                    return None, None
                src, dst, proto = ip6.src, ip6.dst, ip6.upper_protocol
                l4 = ip6.upper_payload
                if proto == 58 and not (dst[0] == 0xFF or ip6.hop_limit):
                    return "ICMPv6 with hop limit 0", None
            else:
                return f"ethertype {fr.ethertype:#06x} from the core", None
            if proto == 6:
                seg = TcpSegment.parse(l4, None if needs_csum else src, None if needs_csum else dst)
                if needs_csum:
                    want = pseudo(src, dst, 6, len(l4))
                    got = _U16.unpack_from(l4, 16)[0]
                    if got != want:
                        return f"NEEDS_CSUM TCP checksum field {got:#06x} != pseudo-header sum {want:#06x}", None
                f = int(seg.flags)
                if f & SYN and f & (RST | FIN):
                    return f"TCP flags {f:#04x}: SYN with RST/FIN", None
                if f & RST and seg.payload:
                    return "RST carrying data", None
                if not f & ACK and not f & SYN and not f & RST:
                    return f"TCP segment without ACK (flags {f:#04x})", None
                return None, TcpOut(src, dst, seg)
            if proto == 17:
                UdpDatagram.parse(l4, src, dst)
            elif proto == 1:
                Icmpv4Message.parse(l4)
            elif proto == 58:
                parse_icmpv6(l4, src, dst)
        except WireError as e:
            return f"emitted frame does not parse: {e}", None
        return None, None


def _echo_reply(etype: int, l3: bytes) -> bool:
    """An echo reply is as big as the request the guest sent (oversized requests get oversized replies)."""
    if etype == 0x0800 and len(l3) > 20 and l3[9] == 1:
        return l3[(l3[0] & 15) * 4] == 0
    return etype == 0x86DD and len(l3) > 40 and l3[6] == 58 and l3[40] == 129


def icmp6_parses(l4: bytes, src: bytes, dst: bytes) -> bool:
    try:
        Icmpv6Message.parse(l4, src, dst)
        return True
    except WireError:
        return False
