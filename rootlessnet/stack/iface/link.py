"""stack.iface.link: Ethernet (IEEE 802.3) and ARP (RFC 826), the guest's MAC, the output queue.

``Link.receive(frame, vflags, now)`` is the core's one entry for guest
frames. Only a codec's ``WireError`` means malformed input; any other
exception is a bug in the engine, counted as ``internal_errors`` (the first
traceback kept and handed to ``on_internal_error``), and the frame is
dropped so the engine keeps serving everyone else.
"""

from __future__ import annotations

import traceback
from collections import Counter
from typing import Any, Callable, Final

from rootlessnet.stack.config import NetConfig
from rootlessnet.stack.policy import Policy
from rootlessnet.wire import WireError
from rootlessnet.wire.arp import HEADER as ARP
from rootlessnet.wire.ethernet import HEADER as ETH
from rootlessnet.wire.frames import ETH_ARP, FrameBuilder

__all__ = ["Link", "BROADCAST", "MAX_GUEST_IPS", "Frame"]

BROADCAST: Final = b"\xff" * 6
MAX_GUEST_IPS: Final = 1024  # addresses of the subnet the guest may claim (ARP answers withheld)
MAX_PENDING_L2: Final = 256  # frames held until the guest's MAC is known
_ZERO4: Final = b"\0\0\0\0"

# One outgoing frame: [headers] or [headers, payload] (written with one writev).
Frame = list[Any]


class Link:
    """The Ethernet and ARP layer, and what every layer above shares."""

    cfg: NetConfig
    policy: Policy
    stats: Counter[str]
    frames: list[Frame]
    events: list[Any]
    fb: FrameBuilder
    guest_mac: bytes | None
    guest_ips: set[bytes]
    _own4: frozenset[bytes]
    _pending_l2: list[Frame]
    first_internal_error: str | None
    on_internal_error: Callable[[str], None] | None

    # ------------------------------------------------------------------ output
    def _out(self, item: Frame) -> None:
        if self.guest_mac is None:
            if not self._pending_l2:
                self._arp_request(self.cfg.guest)
            if len(self._pending_l2) < MAX_PENDING_L2:
                self._pending_l2.append(item)
            else:
                self.stats["drop_no_guest_mac"] += 1
            return
        self.frames.append(item)

    def _arp_request(self, target: bytes) -> None:
        """Who has TARGET? (used to learn the guest's MAC before talking first)."""
        req = ARP.pack(1, 0x0800, 6, 4, 1, self.cfg.gateway_mac, self.cfg.gateway, b"\0" * 6, target)
        self.frames.append([self.fb.l2_frame(BROADCAST, ETH_ARP, req)])
        self.stats["arp_requests"] += 1

    def take_frames(self) -> list[Frame]:
        out = self.frames
        self.frames = []
        return out

    def _note_guest_ip(self, ip: bytes) -> None:
        """An address the guest uses: the engine stops answering ARP for it (bounded set)."""
        if ip not in self.guest_ips and len(ip) == 4 and ip not in self._own4 and self.policy.is_virtual(ip) \
                and len(self.guest_ips) < MAX_GUEST_IPS:
            self.guest_ips.add(ip)

    def _learn_mac(self, mac: bytes) -> None:
        if mac != self.guest_mac and not (mac[0] & 1):
            self.guest_mac = mac
            self.fb.set_dst_mac(mac)
            if self._pending_l2:
                off = 10 if self.fb.vnet else 0
                for item in self._pending_l2:
                    h = item[0]
                    item[0] = h[:off] + mac + h[off + 6 :]
                    self.frames.append(item)
                self._pending_l2.clear()

    # ------------------------------------------------------------------ input
    def receive(self, frame: bytes | memoryview, vflags: int, now: float) -> None:
        """One Ethernet frame from the guest. Never raises (see the module docstring)."""
        try:
            self._receive(memoryview(frame), vflags, now)
        except WireError:
            self.stats["drop_malformed"] += 1
        except Exception as e:  # noqa: BLE001 - a bug, not bad input: counted and reported, never fatal
            self.internal_error(e)

    def internal_error(self, exc: BaseException) -> None:
        """Count a bug (an exception that is not a codec error) and report the first one."""
        self.stats["internal_errors"] += 1
        if self.first_internal_error is None:
            self.first_internal_error = "".join(traceback.format_exception(exc))
            if self.on_internal_error is not None:
                self.on_internal_error(self.first_internal_error)

    def _receive(self, mv: memoryview, vflags: int, now: float) -> None:
        if len(mv) < 14:
            self.stats["drop_runt"] += 1
            return
        dst_mac, src_mac, etype = ETH.unpack_from(mv, 0)
        if src_mac[0] & 1:
            self.stats["drop_bad_src_mac"] += 1
            return
        if dst_mac != self.cfg.gateway_mac and not (dst_mac[0] & 1):
            self.stats["drop_not_for_us"] += 1
            return
        if etype == 0x0800:
            self._ip4(mv[14:], vflags, now, src_mac)
        elif etype == 0x86DD:
            self._ip6(mv[14:], vflags, now, src_mac)
        elif etype == 0x0806:
            self._arp(mv[14:], src_mac)
        else:
            self.stats["drop_ethertype"] += 1

    def _ip4(self, mv: memoryview, vflags: int, now: float, src_mac: bytes) -> None:
        raise NotImplementedError  # stack.iface.ip

    def _ip6(self, mv: memoryview, vflags: int, now: float, src_mac: bytes) -> None:
        raise NotImplementedError  # stack.iface.ip

    # -- ARP (RFC 826) -----------------------------------------------------------
    def _arp(self, mv: memoryview, src_mac: bytes) -> None:
        if len(mv) < 28:
            self.stats["drop_arp_short"] += 1
            return
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = ARP.unpack_from(mv, 0)
        if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
            self.stats["drop_arp_bad"] += 1
            return
        self._learn_mac(src_mac)
        if spa in self._own4:
            # A guest claiming the gateway or the DNS address (a gratuitous ARP, a conflict):
            # counted, and the engine goes on answering for its own addresses.
            self.stats["arp_conflict"] += 1
        elif spa != _ZERO4:
            self._note_guest_ip(spa)
        if op == 1 and tpa not in self.guest_ips and self.policy.is_virtual(tpa):
            reply = ARP.pack(1, 0x0800, 6, 4, 2, self.cfg.gateway_mac, tpa, sha, spa)
            self._out([self.fb.l2_frame(sha, ETH_ARP, reply)])
            self.stats["arp_replies"] += 1
        else:
            self.stats["arp_ignored"] += 1
