"""stack.iface.icmp: ICMP (RFC 792) and ICMPv6 (RFC 4443) — echo, unreachable, NDP (RFC 4861).

Echo requests to the engine's own addresses are answered here; others
become ``PingRequest`` events for the shell's ping sockets. Errors the guest
sends about our flows are ignored (counted). NDP is answered by the
``ndp`` responder (stack.ndp) when IPv6 is on.
"""

from __future__ import annotations

import struct
from typing import Any

from rootlessnet.stack.iface.events import PingRequest
from rootlessnet.stack.iface.ip import Ip
from rootlessnet.wire.checksum import ones_sum
from rootlessnet.wire.icmpv4 import ECHO

__all__ = ["Icmp"]

_U16 = struct.Struct("!H")
_ECHO_MSG = struct.Struct("!BBHHH")
_ERR_MSG = struct.Struct("!BBHI")
_CODE6 = {1: 3, 3: 4, 13: 1, 10: 1}  # ICMPv4 unreachable code -> ICMPv6: host->address, port->port, admin->admin


class Icmp(Ip):
    """The ICMP layer."""

    ndp: Any  # stack.ndp.NdpResponder | None

    def _icmp4_in(self, src: bytes, dst: bytes, l4: memoryview, packet: memoryview) -> None:
        if len(l4) < 8:
            self.stats["drop_icmp_short"] += 1
            return
        if ones_sum(l4) != 0xFFFF:
            self.stats["drop_icmp_bad_checksum"] += 1
            return
        itype, code = l4[0], l4[1]
        if itype != 8 or code != 0:
            self.stats["icmp_ignored"] += 1  # errors from the guest about our flows: nothing to do
            return
        ident, seq = ECHO.unpack_from(l4, 4)
        data = bytes(l4[8:])
        if dst == self.cfg.gateway or dst == self.cfg.dns or self.policy.is_virtual(dst):
            self.icmp4_echo_reply(dst, src, ident, seq, data)
            self.stats["icmp_echo_local"] += 1
            return
        self.events.append(PingRequest(src, dst, ident, seq, data))

    def icmp4_echo_reply(self, src: bytes, dst: bytes, ident: int, seq: int, data: bytes) -> None:
        msg = _ECHO_MSG.pack(0, 0, 0, ident, seq) + data
        msg = msg[:2] + _U16.pack(0xFFFF - ones_sum(msg)) + msg[4:]
        self._out([self.fb.ip_frame(src, dst, 1, msg)])

    def icmp_unreachable(self, packet: bytes, code: int) -> None:
        """ICMP destination unreachable (or ICMPv6 type 1) about a guest packet."""
        if not packet:
            return
        if packet[0] >> 4 == 4:
            src, dst = packet[12:16], packet[16:20]
            quote = packet[:548]
            msg = _ERR_MSG.pack(3, code, 0, 0) + quote
            msg = msg[:2] + _U16.pack(0xFFFF - ones_sum(msg)) + msg[4:]
            self._out([self.fb.ip_frame(dst, src, 1, msg)])
        else:
            src, dst = packet[8:24], packet[24:40]
            quote = packet[: 1280 - 48]
            msg = _ERR_MSG.pack(1, _CODE6.get(code, 0), 0, 0) + quote
            ck = 0xFFFF - ones_sum(msg, self._pseudo6(dst, src, 58, len(msg)))
            msg = msg[:2] + _U16.pack(ck) + msg[4:]
            self._out([self.fb.ip_frame(dst, src, 58, msg)])
        self.stats["icmp_unreachable_sent"] += 1

    def _icmp6_in(self, src: bytes, dst: bytes, hlim: int, l4: memoryview, vflags: int, now: float,
                  src_mac: bytes, packet: memoryview) -> None:
        if len(l4) < 8 or not self._l4_csum_ok(src, dst, 58, l4, 0):
            self.stats["drop_icmp6_bad"] += 1
            return
        itype = l4[0]
        if 133 <= itype <= 137:
            if self.ndp is None:
                self.stats["drop_ndp_disabled"] += 1
                return
            for r in self.ndp.handle(src, dst, hlim, bytes(l4), src_mac, now):
                self._ndp_out(r)
            return
        if itype == 128 and l4[1] == 0:
            ident, seq = ECHO.unpack_from(l4, 4)
            data = bytes(l4[8:])
            if self.policy.is_virtual(dst):
                self.icmp6_echo_reply(dst, src, ident, seq, data)
                self.stats["icmp6_echo_local"] += 1
            else:
                self.events.append(PingRequest(src, dst, ident, seq, data))
            return
        self.stats["icmp6_ignored"] += 1

    def _ndp_out(self, r: Any) -> None:
        frame = self.fb.ip_frame(r.src, r.dst, 58, r.icmp, dst_mac=r.dst_mac, hop_limit=255)
        self.frames.append([frame])  # NDP goes out even before the guest's MAC is known (multicast)

    def ndp_poll(self, now: float) -> float | None:
        """Send due unsolicited router advertisements; the next time to call again."""
        if self.ndp is None:
            return None
        r = self.ndp.unsolicited_ra(now)
        if r is not None:
            self._ndp_out(r)
        at: float | None = self.ndp.poll_at()
        return at

    def icmp6_echo_reply(self, src: bytes, dst: bytes, ident: int, seq: int, data: bytes) -> None:
        msg = _ECHO_MSG.pack(129, 0, 0, ident, seq) + data
        ck = 0xFFFF - ones_sum(msg, self._pseudo6(src, dst, 58, len(msg)))
        msg = msg[:2] + _U16.pack(ck) + msg[4:]
        self._out([self.fb.ip_frame(src, dst, 58, msg)])

    def echo_reply(self, src: bytes, dst: bytes, ident: int, seq: int, data: bytes) -> None:
        """A reply from the host's ping socket, back to the guest."""
        if len(src) == 4:
            self.icmp4_echo_reply(src, dst, ident, seq, data)
        else:
            self.icmp6_echo_reply(src, dst, ident, seq, data)
