"""stack.iface.ip: IPv4 (RFC 791) and IPv6 (RFC 8200) — header checks, sources, demultiplexing.

Guest fragments are dropped and counted (not reassembled); sources that no
guest may use (loopback, multicast, the engine's own addresses) are dropped.
L4 checksums are trusted when the guest's kernel left them to the device
(virtio-net NEEDS_CSUM / DATA_VALID), verified otherwise.
"""

from __future__ import annotations

import struct
from typing import Final

from rootlessnet.stack.iface.link import Link
from rootlessnet.wire.checksum import ones_sum
from rootlessnet.wire.ipv6 import HEADER as IP6

__all__ = ["Ip", "VNET_NEEDS_CSUM", "VNET_DATA_VALID"]

VNET_NEEDS_CSUM: Final = 1
VNET_DATA_VALID: Final = 2
_TRUSTED: Final = VNET_NEEDS_CSUM | VNET_DATA_VALID
_U16 = struct.Struct("!H")
_PSEUDO4 = struct.Struct("!xBH")
_PSEUDO6 = struct.Struct("!IxxxB")
_V6_LOOPBACK: Final = bytes(15) + b"\x01"
_V6_ANY: Final = bytes(16)
_ZERO4: Final = b"\0\0\0\0"


class Ip(Link):
    """The IP layer."""

    # -- IPv4 (RFC 791) ----------------------------------------------------------
    def _ip4(self, mv: memoryview, vflags: int, now: float, src_mac: bytes) -> None:
        n = len(mv)
        if n < 20:
            self.stats["drop_ip4_short"] += 1
            return
        vihl = mv[0]
        ihl = (vihl & 15) * 4
        total = _U16.unpack_from(mv, 2)[0]
        if vihl >> 4 != 4 or ihl < 20 or total < ihl or total > n:
            self.stats["drop_ip4_bad_header"] += 1
            return
        if ones_sum(mv[:ihl]) != 0xFFFF:
            self.stats["drop_ip4_bad_checksum"] += 1
            return
        frag = _U16.unpack_from(mv, 6)[0]
        if frag & 0x3FFF:  # MF or an offset: fragments are not reassembled
            self.stats["drop_ip4_fragment"] += 1
            return
        proto = mv[9]
        src = bytes(mv[12:16])
        dst = bytes(mv[16:20])
        if src[0] == 127 or src[0] >= 224 or src == _ZERO4 and proto != 17:
            self.stats["drop_ip4_bad_source"] += 1
            return
        if src in self._own4:
            self.stats["drop_ip4_spoofed_own"] += 1  # the engine's own address as a source
            return
        self._learn_mac(src_mac)
        l4 = mv[ihl:total]
        if proto == 6:
            self._tcp_in(src, dst, l4, vflags, now, mv[:total])
        elif proto == 17:
            self._udp_in(src, dst, l4, vflags, now, mv[:total])
        elif proto == 1:
            self._icmp4_in(src, dst, l4, mv[:total])
        else:
            self.stats["drop_ip4_proto"] += 1

    # -- IPv6 (RFC 8200) ---------------------------------------------------------
    def _ip6(self, mv: memoryview, vflags: int, now: float, src_mac: bytes) -> None:
        if len(mv) < 40:
            self.stats["drop_ip6_short"] += 1
            return
        vtf, plen, nh, hlim, src, dst = IP6.unpack_from(mv, 0)
        if vtf >> 28 != 6 or 40 + plen > len(mv):
            self.stats["drop_ip6_bad_header"] += 1
            return
        if not self.cfg.ipv6:
            self.stats["drop_ip6_disabled"] += 1
            return
        if src[0] != 0xFF and src != _V6_ANY:
            self._learn_mac(src_mac)
        if src[0] == 0xFF or src == _V6_LOOPBACK or (src == _V6_ANY and nh != 58):
            self.stats["drop_ip6_bad_source"] += 1  # multicast, loopback; :: only for NDP (DAD)
            return
        l4 = mv[40 : 40 + plen]
        if nh == 6:
            self._tcp_in(src, dst, l4, vflags, now, mv[: 40 + plen])
        elif nh == 17:
            self._udp_in(src, dst, l4, vflags, now, mv[: 40 + plen])
        elif nh == 58:
            self._icmp6_in(src, dst, hlim, l4, vflags, now, src_mac, mv[: 40 + plen])
        elif nh == 44:
            self.stats["drop_ip6_fragment"] += 1
        else:
            self.stats["drop_ip6_next_header"] += 1

    # -- checksums (RFC 1071, pseudo-headers of RFC 9293 §3.1 and RFC 8200 §8.1) ----
    def _pseudo4(self, src: bytes, dst: bytes, proto: int, length: int) -> int:
        return ones_sum(src + dst + _PSEUDO4.pack(proto, length))

    def _pseudo6(self, src: bytes, dst: bytes, proto: int, length: int) -> int:
        return ones_sum(src + dst + _PSEUDO6.pack(length, proto))

    def _l4_csum_ok(self, src: bytes, dst: bytes, proto: int, l4: memoryview, vflags: int) -> bool:
        if vflags & _TRUSTED:
            return True  # the guest kernel left it to the device (us): trust it
        ps = self._pseudo4(src, dst, proto, len(l4)) if len(src) == 4 else self._pseudo6(src, dst, proto, len(l4))
        return ones_sum(l4, ps) == 0xFFFF

    # -- the layers above ----------------------------------------------------------
    def _tcp_in(self, src: bytes, dst: bytes, l4: memoryview, vflags: int, now: float, packet: memoryview) -> None:
        raise NotImplementedError  # stack.iface.tcp

    def _udp_in(self, src: bytes, dst: bytes, l4: memoryview, vflags: int, now: float, packet: memoryview) -> None:
        raise NotImplementedError  # stack.iface.udp

    def _icmp4_in(self, src: bytes, dst: bytes, l4: memoryview, packet: memoryview) -> None:
        raise NotImplementedError  # stack.iface.icmp

    def _icmp6_in(self, src: bytes, dst: bytes, hlim: int, l4: memoryview, vflags: int, now: float,
                  src_mac: bytes, packet: memoryview) -> None:
        raise NotImplementedError  # stack.iface.icmp
