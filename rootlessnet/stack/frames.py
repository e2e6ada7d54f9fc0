"""stack.frames: build outgoing Ethernet/IP/L4 frames fast (hot path).

Every builder returns the *headers* as one bytes object — virtio-net header
(when the device has one) + Ethernet + IP + L4 header — and leaves the payload
to the caller, who writes both with one writev: the payload is never copied
in Python. With offload, the L4 checksum field holds only the pseudo-header
sum and the virtio header asks the device to finish it (NEEDS_CSUM); TCP
payloads longer than the MSS go out as one GSO frame the kernel splits.
"""

from __future__ import annotations

import struct

from rootlessnet.wire.checksum import fold, ones_sum

ETH = struct.Struct("!6s6sH")
IP4 = struct.Struct("!BBHHHBBH4s4s")
IP6 = struct.Struct("!IHBB16s16s")
TCP = struct.Struct("!HHIIBBHHH")
UDP = struct.Struct("!HHHH")
VNET = struct.Struct("<BBHHHH")

ETH_IP4 = 0x0800
ETH_IP6 = 0x86DD
ETH_ARP = 0x0806
NEEDS_CSUM = 1
GSO_TCPV4, GSO_TCPV6 = 1, 4
NO_VNET = VNET.pack(0, 0, 0, 0, 0, 0)

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _ip4_csum(hdr: bytes) -> int:
    return 0xFFFF - ones_sum(hdr)


class FrameBuilder:
    """Per-engine frame factory: knows the MACs and whether the device offloads."""

    __slots__ = ("vnet", "offload", "src_mac", "dst_mac", "_ip_id", "hop_limit")

    def __init__(self, src_mac: bytes, dst_mac: bytes, *, vnet: bool, offload: bool):
        self.vnet = vnet
        self.offload = offload and vnet
        self.src_mac = src_mac
        self.dst_mac = dst_mac
        self._ip_id = 0
        self.hop_limit = 64

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
            options: bytes, payload, mss: int) -> bytes:
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
