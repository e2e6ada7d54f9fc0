"""Wire layer, frame emitters: the datapath's outgoing headers (hot path).

Every builder returns the *headers* — virtio-net header (when the device has
one) + Ethernet + IP + L4 header — and leaves the payload to the caller, who
writes both with one writev: the payload is never copied in Python. With
offload, the L4 checksum field holds only the pseudo-header sum and the
virtio header asks the device to finish it (NEEDS_CSUM); TCP payloads longer
than the MSS go out as one GSO frame the kernel splits.

``TcpTemplate`` is one flow's headers built once: a segment without options
copies the template and writes only what changes (IP length, id and
checksum; seq, ack, flags, window, TCP checksum; the GSO fields), with the
checksums finished from sums kept in the template instead of summing the
headers again. The header layouts are this package's (ethernet, ipv4, ipv6,
tcp, udp, vnet); nothing else on the datapath builds headers.
"""

from __future__ import annotations

import struct
from typing import Final

from rootlessnet.wire.checksum import fold, ones_sum
from rootlessnet.wire.ethernet import HEADER as ETH
from rootlessnet.wire.ipv4 import HEADER as IP4
from rootlessnet.wire.ipv6 import HEADER as IP6
from rootlessnet.wire.tcp import HEADER as TCP
from rootlessnet.wire.udp import HEADER as UDP
from rootlessnet.wire.vnet import VNET_HDR as VNET

ETH_IP4: Final = 0x0800
ETH_IP6: Final = 0x86DD
ETH_ARP: Final = 0x0806
NEEDS_CSUM: Final = 1
GSO_TCPV4: Final = 1
GSO_TCPV6: Final = 4
NO_VNET: Final = VNET.pack(0, 0, 0, 0, 0, 0)
_U16 = struct.Struct("!H")
_VGSO = struct.Struct("<BBHH")  # flags, gso_type, hdr_len, gso_size: what changes per segment
_TCP_VAR = struct.Struct("!IIBBHH")  # seq, ack, offset, flags, window, checksum
_IP4_VAR = struct.Struct("!HH")  # total length, id

TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_PSH: Final = 0x08
TCP_ACK: Final = 0x10


def _ip4_csum(hdr: bytes) -> int:
    return 0xFFFF - ones_sum(hdr)


class FrameBuilder:
    """Per-engine frame factory: knows the MACs and whether the device offloads."""

    __slots__ = ("vnet", "offload", "src_mac", "dst_mac", "_ip_id", "hop_limit", "generation")

    vnet: bool
    offload: bool
    src_mac: bytes
    dst_mac: bytes
    _ip_id: int
    hop_limit: int
    generation: int

    def __init__(self, src_mac: bytes, dst_mac: bytes, *, vnet: bool, offload: bool):
        self.vnet = vnet
        self.offload = offload and vnet
        self.src_mac = src_mac
        self.dst_mac = dst_mac
        self._ip_id = 0
        self.hop_limit = 64
        self.generation = 0  # bumped when dst_mac changes: flow templates are then rebuilt

    def set_dst_mac(self, mac: bytes) -> None:
        self.dst_mac = mac
        self.generation += 1

    def tcp_template(self, src: bytes, dst: bytes, sport: int, dport: int) -> "TcpTemplate":
        return TcpTemplate(self, src, dst, sport, dport)

    def _next_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def eth(self, ethertype: int, dst_mac: bytes | None = None) -> bytes:
        return ETH.pack(dst_mac or self.dst_mac, self.src_mac, ethertype)

    def _vnet(self, l4_start: int, csum_off: int, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0) -> bytes:
        if not self.vnet:
            return b""
        if not self.offload:
            return NO_VNET
        return VNET.pack(NEEDS_CSUM, gso_type, hdr_len, gso_size, l4_start, csum_off)

    def ip4_header(self, src: bytes, dst: bytes, proto: int, payload_len: int, *, ident: int | None = None,
                   flags_frag: int = 0x4000, ttl: int = 64) -> bytes:
        hdr = IP4.pack(0x45, 0, 20 + payload_len, self._next_id() if ident is None else ident,
                       flags_frag, ttl, proto, 0, src, dst)
        return hdr[:10] + struct.pack("!H", _ip4_csum(hdr)) + hdr[12:]

    def ip6_header(self, src: bytes, dst: bytes, next_header: int, payload_len: int, hop_limit: int = 64) -> bytes:
        return IP6.pack(0x60000000, payload_len, next_header, hop_limit, src, dst)

    # -- TCP ------------------------------------------------------------------

    def tcp(self, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
            options: bytes, payload: bytes | memoryview, mss: int) -> bytes:
        """Headers of one TCP segment (IPv4 or IPv6 by address length)."""
        plen = len(payload)
        thl = 20 + len(options)
        tcp_len = thl + plen
        v6 = len(src) == 16
        if v6:
            iph = IP6.pack(0x60000000, tcp_len, 6, 64, src, dst)
            eth = ETH.pack(self.dst_mac, self.src_mac, ETH_IP6)
            pseudo = ones_sum(src + dst + struct.pack("!IxxxB", tcp_len, 6))
        else:
            iph = self.ip4_header(src, dst, 6, tcp_len)
            eth = ETH.pack(self.dst_mac, self.src_mac, ETH_IP4)
            pseudo = ones_sum(src + dst + struct.pack("!xBH", 6, tcp_len))
        l4 = 14 + len(iph)
        if self.offload:
            th = TCP.pack(sport, dport, seq, ack, (thl // 4) << 4, flags, window, pseudo, 0) + options
            if plen > mss:
                vh = VNET.pack(NEEDS_CSUM, GSO_TCPV6 if v6 else GSO_TCPV4, l4 + thl, mss, l4, 16)
            else:
                vh = VNET.pack(NEEDS_CSUM, 0, 0, 0, l4, 16)
            return vh + eth + iph + th
        th = TCP.pack(sport, dport, seq, ack, (thl // 4) << 4, flags, window, 0, 0) + options
        csum = 0xFFFF - fold(ones_sum(payload, ones_sum(th, pseudo))) if plen else 0xFFFF - fold(ones_sum(th, pseudo))
        th = th[:16] + struct.pack("!H", csum) + th[18:]
        return (NO_VNET if self.vnet else b"") + eth + iph + th

    # -- UDP ------------------------------------------------------------------

    def udp_frames(self, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, mtu: int,
                   dst_mac: bytes | None = None) -> list[bytes]:
        """Complete frames for one UDP datagram, fragmented above the MTU (RFC 791 §2.3, RFC 8200 §4.5)."""
        ulen = 8 + len(payload)
        v6 = len(src) == 16
        if v6:
            pseudo = ones_sum(src + dst + struct.pack("!IxxxB", ulen, 17))
        else:
            pseudo = ones_sum(src + dst + struct.pack("!xBH", 17, ulen))
        uh = UDP.pack(sport, dport, ulen, 0)
        csum = 0xFFFF - fold(ones_sum(payload, ones_sum(uh, pseudo)))
        if csum == 0:
            csum = 0xFFFF  # RFC 768: 0 means "no checksum"
        datagram = UDP.pack(sport, dport, ulen, csum) + payload
        vh = NO_VNET if self.vnet else b""
        if v6:
            eth = ETH.pack(dst_mac or self.dst_mac, self.src_mac, ETH_IP6)
            if 40 + ulen <= mtu:
                return [vh + eth + IP6.pack(0x60000000, ulen, 17, 64, src, dst) + datagram]
            return [vh + eth + f for f in self._ip6_fragments(src, dst, 17, datagram, mtu)]
        eth = ETH.pack(dst_mac or self.dst_mac, self.src_mac, ETH_IP4)
        if 20 + ulen <= mtu:
            return [vh + eth + self.ip4_header(src, dst, 17, ulen) + datagram]
        ident = self._next_id()
        step = (mtu - 20) & ~7
        frames = []
        for off in range(0, len(datagram), step):
            chunk = datagram[off : off + step]
            more = 0x2000 if off + step < len(datagram) else 0
            frames.append(vh + eth + self.ip4_header(src, dst, 17, len(chunk), ident=ident, flags_frag=more | (off >> 3)) + chunk)
        return frames

    def _ip6_fragments(self, src: bytes, dst: bytes, nh: int, data: bytes, mtu: int) -> list[bytes]:
        ident = self._next_id() | 0x10000
        step = (mtu - 40 - 8) & ~7
        out = []
        for off in range(0, len(data), step):
            chunk = data[off : off + step]
            more = 1 if off + step < len(data) else 0
            fh = struct.pack("!BBHI", nh, 0, off | more, ident)
            out.append(IP6.pack(0x60000000, 8 + len(chunk), 44, 64, src, dst) + fh + chunk)
        return out

    # -- raw IP payloads (ICMP, ICMPv6: checksum already in `message`) -----------

    def ip_frame(self, src: bytes, dst: bytes, proto: int, message: bytes, dst_mac: bytes | None = None,
                 hop_limit: int = 64) -> bytes:
        vh = NO_VNET if self.vnet else b""
        if len(src) == 16:
            return vh + ETH.pack(dst_mac or self.dst_mac, self.src_mac, ETH_IP6) + IP6.pack(
                0x60000000, len(message), proto, hop_limit, src, dst) + message
        return vh + ETH.pack(dst_mac or self.dst_mac, self.src_mac, ETH_IP4) + self.ip4_header(src, dst, proto, len(message)) + message

    def l2_frame(self, dst_mac: bytes, ethertype: int, payload: bytes) -> bytes:
        return (NO_VNET if self.vnet else b"") + ETH.pack(dst_mac, self.src_mac, ethertype) + payload


class TcpTemplate:
    """One TCP flow's headers (vnet + Ethernet + IP + TCP, no options), built once.

    ``build`` writes a segment's changing fields into a copy: the IPv4 header
    checksum is finished from the sum of the fixed fields, the TCP checksum
    from the pseudo-header sum (offload: that sum alone, the device adds the
    rest; otherwise plus the header and payload sums).
    """

    __slots__ = ("fb", "generation", "tmpl", "v6", "voff", "ip_off", "tcp_off", "ip_sum", "pseudo", "offload",
                 "vnet", "hdr_len")

    fb: FrameBuilder
    generation: int
    tmpl: bytearray
    v6: bool
    voff: int
    ip_off: int
    tcp_off: int
    ip_sum: int
    pseudo: int
    offload: bool
    vnet: bool
    hdr_len: int

    def __init__(self, fb: FrameBuilder, src: bytes, dst: bytes, sport: int, dport: int):
        self.fb = fb
        self.generation = fb.generation
        self.v6 = v6 = len(src) == 16
        self.vnet = fb.vnet
        self.offload = fb.offload
        self.voff = voff = 10 if fb.vnet else 0
        self.ip_off = ip_off = voff + 14
        if v6:
            iph = IP6.pack(0x60000000, 0, 6, 64, src, dst)
            self.pseudo = ones_sum(src + dst + b"\0\0\0\x06")  # + TCP length per segment
            self.ip_sum = 0
        else:
            iph = IP4.pack(0x45, 0, 0, 0, 0x4000, 64, 6, 0, src, dst)
            self.ip_sum = ones_sum(iph)  # + total length + id per segment
            self.pseudo = ones_sum(src + dst + b"\0\x06")
        self.tcp_off = tcp_off = ip_off + len(iph)
        self.hdr_len = tcp_off + 20 - voff  # from the Ethernet header to the TCP payload
        th = TCP.pack(sport, dport, 0, 0, 0x50, 0, 0, 0, 0)
        vh = VNET.pack(NEEDS_CSUM if fb.offload else 0, 0, 0, 0, tcp_off - voff if fb.offload else 0,
                       16 if fb.offload else 0) if fb.vnet else b""
        self.tmpl = bytearray(vh + ETH.pack(fb.dst_mac, fb.src_mac, ETH_IP6 if v6 else ETH_IP4) + iph + th)

    def build(self, seq: int, ack: int, flags: int, window: int, payload: bytes | memoryview, mss: int) -> bytearray:
        h = bytearray(self.tmpl)
        plen = len(payload)
        tcp_len = 20 + plen
        ip_off = self.ip_off
        if self.v6:
            _U16.pack_into(h, ip_off + 4, tcp_len)
        else:
            fb = self.fb
            ident = fb._ip_id = (fb._ip_id + 1) & 0xFFFF
            total = 20 + tcp_len
            _IP4_VAR.pack_into(h, ip_off + 2, total, ident)
            _U16.pack_into(h, ip_off + 10, 0xFFFF - fold(self.ip_sum + total + ident))
        tcp_off = self.tcp_off
        if self.offload:
            _TCP_VAR.pack_into(h, tcp_off + 4, seq, ack, 0x50, flags, window, fold(self.pseudo + tcp_len))
            if plen > mss:
                _VGSO.pack_into(h, 0, NEEDS_CSUM, GSO_TCPV6 if self.v6 else GSO_TCPV4, self.hdr_len, mss)
            return h
        _TCP_VAR.pack_into(h, tcp_off + 4, seq, ack, 0x50, flags, window, 0)
        s = ones_sum(memoryview(h)[tcp_off:], self.pseudo + tcp_len)
        if plen:
            s = ones_sum(payload, s)
        _U16.pack_into(h, tcp_off + 16, 0xFFFF - fold(s))
        return h
