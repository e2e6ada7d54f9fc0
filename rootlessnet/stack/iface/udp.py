"""stack.iface.udp: UDP (RFC 768) — DHCP and the static resolver here, the rest to the shell.

A datagram for DHCP (port 67) or, with a static table, for the DNS address
is answered by the engine; any other becomes a ``UdpDatagram`` event with a
quote of its headers (for the ICMP error the shell may have to send back).
Datagrams to the guest larger than the MTU are fragmented (wire.frames).
"""

from __future__ import annotations

from typing import Any, Final

from rootlessnet.stack.iface.events import UdpDatagram
from rootlessnet.stack.iface.icmp import Icmp
from rootlessnet.stack.iface.link import BROADCAST
from rootlessnet.wire.udp import HEADER as UDP

__all__ = ["Udp"]

_BCAST4: Final = b"\xff\xff\xff\xff"
_ZERO4: Final = b"\0\0\0\0"


class Udp(Icmp):
    """The UDP layer."""

    dhcp: Any  # stack.dhcp.DhcpServer | None
    resolver: Any  # stack.dns.StaticResolver | None

    def _udp_in(self, src: bytes, dst: bytes, l4: memoryview, vflags: int, now: float, packet: memoryview) -> None:
        if len(l4) < 8:
            self.stats["drop_udp_short"] += 1
            return
        sport, dport, ulen, csum = UDP.unpack_from(l4, 0)
        if ulen < 8 or ulen > len(l4):
            self.stats["drop_udp_bad_length"] += 1
            return
        hl = len(packet) - len(l4)  # IP header length, options included
        l4 = l4[:ulen]
        if (csum or len(src) == 16) and not self._l4_csum_ok(src, dst, 17, l4, vflags):
            self.stats["drop_udp_bad_checksum"] += 1
            return
        payload = bytes(l4[8:])
        cfg = self.cfg
        if dport == 67 and self.dhcp is not None and len(src) == 4 and (dst == _BCAST4 or dst == cfg.gateway):
            reply = self.dhcp.handle(payload, self.guest_mac or b"\0" * 6, now)
            if reply is not None:
                bcast = self.dhcp.reply_broadcast(reply)
                to = _BCAST4 if bcast else reply[16:20]
                for f in self.fb.udp_frames(cfg.gateway, to, 67, 68, reply, cfg.mtu,
                                            dst_mac=BROADCAST if bcast else None):
                    self._out([f])
                self.stats["dhcp_replies"] += 1
            else:
                self.stats["drop_dhcp"] += 1
            return
        if src == _ZERO4:
            self.stats["drop_ip4_bad_source"] += 1
            return
        self._note_guest_ip(src)
        if dport == 53 and self.resolver is not None and (dst == cfg.dns or dst == cfg.dns6):
            answer = self.resolver.answer(payload)
            if answer is not None:
                self.udp_out(dst, 53, src, sport, answer)
                self.stats["dns_static_answers"] += 1
            else:
                self.stats["drop_dns_static"] += 1
            return
        self.events.append(UdpDatagram(src, sport, dst, dport, payload, bytes(packet[: hl + 8])))

    def udp_out(self, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes) -> None:
        for f in self.fb.udp_frames(src, dst, sport, dport, payload, self.cfg.mtu):
            self._out([f])
