"""Stack layer, IPv6 Neighbor Discovery for the guest link: the engine's router side.

Contract: ``NdpResponder.handle(src, dst, hop_limit, icmp, src_mac, now)``
takes one ICMPv6 message from the guest (the IPv6 payload) and returns the
replies as ``NdpReply(dst_mac, dst, icmp, src)``: the ICMPv6 bytes carry a
checksum computed for ``src`` -> ``dst``, and the engine must send them
with hop limit 255 (``NDP_HOP_LIMIT``, RFC 4861 6.1.2/7.1.2 receivers drop
anything else).  It answers Neighbor Solicitations for the engine's
addresses (RFC 4861 7.2.4), Router Solicitations with a Router
Advertisement that gives SLAAC (RFC 4862), the MTU and the DNS server
(RFC 8106 RDNSS), and learns the guest's MAC and addresses
(``guest_mac``, ``guest_addrs``).  ``unsolicited_ra(now)`` / ``poll_at()``
drive the periodic advertisements (RFC 4861 6.2.4).  Invalid messages are
dropped and counted in ``stats``; nothing is raised.
"""

from __future__ import annotations

from typing import NamedTuple

from rootlessnet.wire import WireError
from rootlessnet.wire.icmpv6 import (
    Icmpv6Message,
    Icmpv6Type,
    NdpOptions,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInfo,
    Rdnss,
    RouterAdvertisement,
    RouterSolicitation,
)
from rootlessnet.wire.ipv6 import ALL_NODES, UNSPECIFIED, is_multicast
from rootlessnet.wire.ipv6 import multicast_mac as _mcast_mac
from rootlessnet.wire.ipv6 import solicited_node_multicast

__all__ = [
    "NdpReply", "NdpResponder", "NDP_HOP_LIMIT", "solicited_node", "multicast_mac",
    "eui64_link_local",
]

NDP_HOP_LIMIT = 255  # RFC 4861 6.1.1/7.1.1: proves the packet was not forwarded
MIN_DELAY_BETWEEN_RAS = 3.0  # RFC 4861 10, for multicast answers to RS
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0  # RFC 4861 10
MAX_INITIAL_RTR_ADVERTISEMENTS = 3  # RFC 4861 10
_NDP_TYPES = range(Icmpv6Type.ROUTER_SOLICITATION, Icmpv6Type.REDIRECT + 1)
_LINK_LOCAL = bytes.fromhex("fe80000000000000")


class NdpReply(NamedTuple):
    dst_mac: bytes
    dst: bytes  # IPv6 destination
    icmp: bytes  # ICMPv6 message, checksum included
    src: bytes  # IPv6 source the checksum was computed for


def solicited_node(addr: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the group a node joins for ``addr`` (RFC 4291 2.7.1)."""
    if len(addr) != 16:
        raise ValueError("IPv6 addresses are 16 bytes")
    return solicited_node_multicast(addr)


def multicast_mac(ipv6: bytes) -> bytes:
    """33:33:xx:xx:xx:xx for a multicast IPv6 address (RFC 2464 7)."""
    if len(ipv6) != 16 or not is_multicast(ipv6):
        raise ValueError("multicast_mac needs a 16-byte multicast IPv6 address")
    return _mcast_mac(ipv6)


def eui64_link_local(mac: bytes) -> bytes:
    """fe80::/64 + modified EUI-64 of ``mac`` (RFC 4291 2.5.1, appendix A)."""
    if len(mac) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    return _LINK_LOCAL + bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def _is_link_local(addr: bytes) -> bool:
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


class NdpResponder:
    """Router side of ND on the tap link (slirp4netns: fd00::/64, router fd00::2, DNS fd00::3)."""

    _STATS = (
        "rx", "not_ndp", "bad_hop_limit", "bad_code", "malformed", "bad_source",
        "ns_answered", "ns_not_ours", "dad_defended", "rs_answered", "rs_rate_limited",
        "ra_sent", "na_in", "na_conflict", "ra_ignored", "redirect_ignored",
    )

    def __init__(
        self,
        router_mac: bytes,
        router_ip: bytes,
        link_local: bytes | None,
        prefix: bytes,
        prefix_len: int = 64,
        dns: bytes | None = None,
        virtual_addrs: set[bytes] | frozenset[bytes] = frozenset(),
        mtu: int | None = 1500,
        *,
        router_lifetime: int = 1800,
        valid_lifetime: int = 86400,
        preferred_lifetime: int = 14400,
        ra_interval: float = 200.0,
    ) -> None:
        link_local = eui64_link_local(router_mac) if link_local is None else link_local
        if len(router_mac) != 6:
            raise ValueError("NdpResponder: router_mac must be 6 bytes")
        for name, a in (("router_ip", router_ip), ("link_local", link_local), ("prefix", prefix),
                        *((("dns", dns),) if dns is not None else ()),
                        *(("virtual_addrs", v) for v in virtual_addrs)):
            if len(a) != 16:
                raise ValueError(f"NdpResponder: {name} must be 16 bytes")
        if not _is_link_local(link_local):
            raise ValueError("NdpResponder: link_local must be in fe80::/10 (RFC 4861 6.1.2)")
        if not 0 < prefix_len <= 128:
            raise ValueError("NdpResponder: prefix_len must be 1..128")
        # RFC 4861 6.2.1: AdvDefaultLifetime 0 or MaxRtrAdvInterval..9000.
        if router_lifetime and not ra_interval <= router_lifetime <= 9000:
            raise ValueError("NdpResponder: router_lifetime must be 0 or ra_interval..9000")
        if preferred_lifetime > valid_lifetime:
            raise ValueError("NdpResponder: preferred_lifetime exceeds valid_lifetime (RFC 4862 5.5.3 c)")
        if mtu is not None and mtu < 1280:
            raise ValueError("NdpResponder: IPv6 needs an MTU of at least 1280 (RFC 8200 5)")
        self.router_mac = bytes(router_mac)
        self.router_ip = bytes(router_ip)
        self.link_local = bytes(link_local)
        self.virtual_addrs = set(virtual_addrs)  # the engine may add more later
        self.ra_interval = ra_interval
        self.guest_mac: bytes | None = None
        self.guest_addrs: set[bytes] = set()
        self.stats: dict[str, int] = dict.fromkeys(self._STATS, 0)
        mask = ((1 << 128) - 1) ^ ((1 << (128 - prefix_len)) - 1)
        prefix = (int.from_bytes(prefix, "big") & mask).to_bytes(16, "big")
        self._ra = RouterAdvertisement(
            cur_hop_limit=64, managed=False, other=False, router_lifetime=router_lifetime,
            options=NdpOptions(
                source_lladdr=self.router_mac,
                mtu=mtu,
                # RFC 4862 5.5.3: SLAAC needs prefix + 64-bit interface id.
                prefixes=(PrefixInfo(prefix, prefix_len, True, prefix_len == 64,
                                     valid_lifetime, preferred_lifetime),),
                # RFC 8106 5.1: lifetime at least 3 * MaxRtrAdvInterval.
                rdnss=(Rdnss(int(3 * ra_interval), (bytes(dns),)),) if dns is not None else (),
            ),
        )
        self._next_ra = 0.0  # due at once: the first call sends
        self._unsolicited_sent = 0
        self._last_mcast_ra = float("-inf")

    def statistics(self) -> dict[str, int]:
        return dict(self.stats)

    def is_ours(self, addr: bytes) -> bool:
        return addr == self.router_ip or addr == self.link_local or addr in self.virtual_addrs

    # --- periodic advertisements ----------------------------------------------

    def poll_at(self) -> float:
        """When ``unsolicited_ra`` next has an RA to send (0.0 before the first)."""
        return self._next_ra

    def unsolicited_ra(self, now: float) -> NdpReply | None:
        """The periodic all-nodes RA if one is due (RFC 4861 6.2.4): the first
        few MAX_INITIAL_RTR_ADVERT_INTERVAL apart, then every ``ra_interval``
        (fixed, not randomised: one router on a one-guest link has no one
        to synchronise with)."""
        if now < self._next_ra:
            return None
        self._unsolicited_sent += 1
        if self._unsolicited_sent < MAX_INITIAL_RTR_ADVERTISEMENTS:
            step = min(self.ra_interval, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        else:
            step = self.ra_interval
        self._next_ra = now + step
        self._last_mcast_ra = now
        return self._advert(ALL_NODES, multicast_mac(ALL_NODES))

    def final_ra(self) -> NdpReply:
        """An RA with router lifetime 0, for shutdown (RFC 4861 6.2.5)."""
        ra = RouterAdvertisement(self._ra.cur_hop_limit, router_lifetime=0, options=self._ra.options)
        self.stats["ra_sent"] += 1
        return NdpReply(multicast_mac(ALL_NODES), ALL_NODES, ra.emit(self.link_local, ALL_NODES),
                        self.link_local)

    def _advert(self, dst: bytes, dst_mac: bytes) -> NdpReply:
        self.stats["ra_sent"] += 1
        # RFC 4861 6.1.2: an RA's source is the router's link-local address.
        return NdpReply(dst_mac, dst, self._ra.emit(self.link_local, dst), self.link_local)

    # --- input ----------------------------------------------------------------

    def handle(self, ipv6_src: bytes, ipv6_dst: bytes, hop_limit: int, icmp: bytes,
               src_mac: bytes, now: float) -> list[NdpReply]:
        self.stats["rx"] += 1
        if len(icmp) < 4 or icmp[0] not in _NDP_TYPES:
            self.stats["not_ndp"] += 1
            return []
        if hop_limit != NDP_HOP_LIMIT:  # RFC 4861 6.1.1, 7.1.1, 7.1.2
            self.stats["bad_hop_limit"] += 1
            return []
        if is_multicast(ipv6_src):  # RFC 4291 2.7: never a source
            self.stats["bad_source"] += 1
            return []
        try:
            msg = Icmpv6Message.parse(icmp, ipv6_src, ipv6_dst)  # verifies the checksum
        except WireError:
            self.stats["malformed"] += 1
            return []
        if msg.code != 0:
            self.stats["bad_code"] += 1
            return []
        try:
            if msg.type == Icmpv6Type.NEIGHBOR_SOLICITATION:
                return self._solicitation(ipv6_src, ipv6_dst, NeighborSolicitation.from_message(msg), src_mac)
            if msg.type == Icmpv6Type.ROUTER_SOLICITATION:
                return self._router_solicitation(ipv6_src, RouterSolicitation.from_message(msg), src_mac, now)
            if msg.type == Icmpv6Type.NEIGHBOR_ADVERTISEMENT:
                self._advertisement(ipv6_dst, NeighborAdvertisement.from_message(msg), src_mac)
                return []
        except WireError:  # short message, bad option length (RFC 4861 6.1.1/7.1.1)
            self.stats["malformed"] += 1
            return []
        self.stats["ra_ignored" if msg.type == Icmpv6Type.ROUTER_ADVERTISEMENT else "redirect_ignored"] += 1
        return []

    def _learn(self, addr: bytes | None, mac: bytes | None) -> None:
        if mac is not None and len(mac) == 6 and not mac[0] & 1:
            self.guest_mac = bytes(mac)
        if addr is not None and addr != UNSPECIFIED and not is_multicast(addr) and not self.is_ours(addr):
            self.guest_addrs.add(bytes(addr))

    def _solicitation(self, src: bytes, dst: bytes, ns: NeighborSolicitation, src_mac: bytes) -> list[NdpReply]:
        # RFC 4861 7.1.1: target not multicast; from :: only to the
        # solicited-node group and without a source link-layer option.
        dad = src == UNSPECIFIED
        if is_multicast(ns.target) or (dad and (dst != solicited_node_multicast(ns.target)
                                               or ns.options.source_lladdr is not None)):
            self.stats["malformed"] += 1
            return []
        if not self.is_ours(ns.target):
            self.stats["ns_not_ours"] += 1
            return []
        opts = NdpOptions(target_lladdr=self.router_mac)
        if dad:
            # RFC 4861 7.2.4 / RFC 4862 5.4.3: the guest tries to use one of
            # our addresses; defend it with S=0 to all-nodes.
            self.stats["dad_defended"] += 1
            na = NeighborAdvertisement(ns.target, router=True, solicited=False, override=True, options=opts)
            return [NdpReply(multicast_mac(ALL_NODES), ALL_NODES, na.emit(ns.target, ALL_NODES), ns.target)]
        # RFC 4861 7.2.3: the solicitation updates our neighbor cache.
        slla = ns.options.source_lladdr
        self._learn(src, slla if slla is not None else src_mac)
        # RFC 4861 7.2.4: S=1, O=1 (not anycast), R=1 (we route), unicast
        # back, to the SLLA or else the frame's source.
        self.stats["ns_answered"] += 1
        na = NeighborAdvertisement(ns.target, router=True, solicited=True, override=True, options=opts)
        dst_mac = slla if slla is not None and len(slla) == 6 else src_mac
        return [NdpReply(dst_mac, src, na.emit(ns.target, src), ns.target)]

    def _router_solicitation(self, src: bytes, rs: RouterSolicitation, src_mac: bytes, now: float) -> list[NdpReply]:
        slla = rs.options.source_lladdr
        if src == UNSPECIFIED:
            if slla is not None:  # RFC 4861 6.1.1
                self.stats["malformed"] += 1
                return []
            # RFC 4861 6.2.6: answer to all-nodes, at most every MIN_DELAY_BETWEEN_RAS.
            if now - self._last_mcast_ra < MIN_DELAY_BETWEEN_RAS:
                self.stats["rs_rate_limited"] += 1
                return []
            self._last_mcast_ra = now
            self.stats["rs_answered"] += 1
            return [self._advert(ALL_NODES, multicast_mac(ALL_NODES))]
        self._learn(src, slla if slla is not None else src_mac)
        # RFC 4861 6.2.6: a router MAY unicast the answer to a known source;
        # on a one-guest link that is the cheapest and never rate-limited.
        self.stats["rs_answered"] += 1
        dst_mac = slla if slla is not None and len(slla) == 6 else src_mac
        return [self._advert(src, dst_mac)]

    def _advertisement(self, dst: bytes, na: NeighborAdvertisement, src_mac: bytes) -> None:
        # RFC 4861 7.1.2: target not multicast; S=0 when sent to a multicast group.
        if is_multicast(na.target) or (is_multicast(dst) and na.solicited):
            self.stats["malformed"] += 1
            return
        self.stats["na_in"] += 1
        if self.is_ours(na.target):  # the guest claims our address
            self.stats["na_conflict"] += 1
            return
        tlla = na.options.target_lladdr
        self._learn(na.target, tlla if tlla is not None else src_mac)
