"""NDP traces: a Linux-like guest solicits the engine's router side (RFC 4861, 4862, 8106)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptRDNSS,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.packet import Raw

from rootlessnet.stack.ndp import NdpResponder, eui64_link_local, multicast_mac, solicited_node
from rootlessnet.wire.icmpv6 import Icmpv6Message, parse_icmpv6


def a(s: str) -> bytes:
    return ipaddress.IPv6Address(s).packed


def s6(b: bytes) -> str:
    return str(ipaddress.IPv6Address(b))


ROUTER_MAC = bytes.fromhex("525400000002")
GUEST_MAC = bytes.fromhex("525400123456")
GUEST_LL = "fe80::5054:ff:fe12:3456"
GUEST = "fd00::5054:ff:fe12:3456"


def responder(**kw) -> NdpResponder:
    return NdpResponder(ROUTER_MAC, a("fd00::2"), a("fe80::2"), a("fd00::"), 64, a("fd00::3"),
                        {a("fd00::3")}, 1500, **kw)


def feed(r: NdpResponder, pkt, now: float = 0.0, src_mac: bytes = GUEST_MAC):
    """Hand a scapy IPv6/ICMPv6 packet from the guest to the responder, as the engine does."""
    raw = IPv6(bytes(pkt))
    return r.handle(a(raw.src), a(raw.dst), raw.hlim, bytes(raw.payload), src_mac, now)


def decode(reply):
    """The reply as scapy sees it on the wire (hop limit 255); the checksum must verify."""
    parse_icmpv6(reply.icmp, reply.src, reply.dst)  # raises on a bad checksum
    hdr = IPv6(src=s6(reply.src), dst=s6(reply.dst), hlim=255, nh=58, plen=len(reply.icmp))
    p = IPv6(bytes(hdr) + reply.icmp)
    again = p.copy()
    del again.payload.cksum  # scapy recomputes it: must agree with ours
    assert bytes(IPv6(bytes(again))) == bytes(p)
    return p


def ns(target: str, src: str = GUEST, dst: str | None = None, slla: bool = True, hlim: int = 255):
    dst = dst or s6(solicited_node(a(target)))
    pkt = IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(tgt=target)
    return pkt / ICMPv6NDOptSrcLLAddr(lladdr="52:54:00:12:34:56") if slla else pkt


# --- Neighbor Solicitation -> Advertisement (RFC 4861 7.2) ------------------------


def test_ns_for_the_router_is_answered_and_the_guest_learned():
    r = responder()
    (reply,) = feed(r, ns("fd00::2"))
    assert reply.dst_mac == GUEST_MAC and reply.dst == a(GUEST) and reply.src == a("fd00::2")
    na = decode(reply)[ICMPv6ND_NA]
    assert (na.tgt, na.R, na.S, na.O, na.code) == ("fd00::2", 1, 1, 1, 0)
    assert na[ICMPv6NDOptDstLLAddr].lladdr == "52:54:00:00:00:02"
    assert r.guest_mac == GUEST_MAC and r.guest_addrs == {a(GUEST)}
    assert r.stats["ns_answered"] == 1


@pytest.mark.parametrize("target", ["fd00::3", "fe80::2"])
def test_unicast_ns_without_slla_goes_back_to_the_frame_source(target):
    r = responder()
    other_mac = bytes.fromhex("5254000000ee")
    (reply,) = feed(r, ns(target, src=GUEST_LL, dst=target, slla=False), src_mac=other_mac)
    assert reply.dst_mac == other_mac and reply.dst == a(GUEST_LL) and reply.src == a(target)
    assert decode(reply)[ICMPv6ND_NA].S == 1


def test_ns_for_addresses_not_ours_is_ignored():
    r = responder()
    assert feed(r, ns("fd00::99")) == []
    assert feed(r, ns(GUEST, src=GUEST_LL)) == []  # the guest's own address
    assert r.stats["ns_not_ours"] == 2
    r.virtual_addrs.add(a("fd00::99"))  # the engine adds a service address later
    assert len(feed(r, ns("fd00::99"))) == 1


def test_dad_for_our_address_is_defended_to_all_nodes():
    r = responder()
    (reply,) = feed(r, ns("fd00::2", src="::", slla=False))
    assert reply.dst == a("ff02::1") and reply.dst_mac == bytes.fromhex("333300000001")
    na = decode(reply)[ICMPv6ND_NA]
    assert (na.tgt, na.S, na.O) == ("fd00::2", 0, 1)  # RFC 4861 7.2.4: S=0 for DAD
    assert r.stats["dad_defended"] == 1 and r.guest_mac is None and r.guest_addrs == set()


def test_dad_for_the_guests_own_address_is_silent():
    r = responder()
    assert feed(r, ns(GUEST, src="::", slla=False)) == []
    assert r.guest_addrs == set()  # tentative: not learned


@pytest.mark.parametrize("pkt, counter", [
    (ns("fd00::2", hlim=64), "bad_hop_limit"),  # forwarded: RFC 4861 7.1.1
    (ns("fd00::2", src="::", slla=True), "malformed"),  # DAD must not carry SLLA
    (ns("fd00::2", src="::", dst="ff02::1", slla=False), "malformed"),  # DAD not to solicited-node
    (ns("ff02::1"), "malformed"),  # multicast target
    (IPv6(src=GUEST, dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt="fd00::2", code=1), "bad_code"),
    (IPv6(src=GUEST, dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt="fd00::2", cksum=0x1234), "malformed"),
    (IPv6(src=GUEST, dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt="fd00::2")
     / Raw(b"\x01\x00" + bytes(6)), "malformed"),  # option length 0 (RFC 4861 4.6)
    (IPv6(src="ff02::5", dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt="fd00::2"), "bad_source"),
])
def test_invalid_solicitations_are_dropped_and_counted(pkt, counter):
    r = responder()
    assert feed(r, pkt) == []
    assert r.stats[counter] == 1 and r.guest_mac is None


def test_truncated_ns_is_malformed():
    r = responder()
    raw = IPv6(bytes(ns("fd00::2", slla=False)))
    short = bytes(raw.payload)[:16]
    # A valid checksum over the short body, so only the length is wrong.
    msg = Icmpv6Message(135, 0, short[4:]).emit(a(GUEST), a("ff02::1:ff00:2"))
    assert r.handle(a(GUEST), a("ff02::1:ff00:2"), 255, msg, GUEST_MAC, 0.0) == []
    assert r.stats["malformed"] == 1


# --- Router Solicitation -> Advertisement (RFC 4861 6.2.6) ------------------------


def check_ra(p):
    ra = p[ICMPv6ND_RA]
    assert p[IPv6].src == "fe80::2"  # RFC 4861 6.1.2: link-local source
    assert (ra.M, ra.O, ra.routerlifetime, ra.chlim, ra.code) == (0, 0, 1800, 64, 0)
    pi = ra[ICMPv6NDOptPrefixInfo]
    assert (pi.prefix, pi.prefixlen, pi.L, pi.A, pi.validlifetime, pi.preferredlifetime) == \
        ("fd00::", 64, 1, 1, 86400, 14400)
    assert ra[ICMPv6NDOptMTU].mtu == 1500
    assert ra[ICMPv6NDOptSrcLLAddr].lladdr == "52:54:00:00:00:02"
    rdnss = ra[ICMPv6NDOptRDNSS]
    assert rdnss.dns == ["fd00::3"] and rdnss.lifetime == 600  # RFC 8106 5.1: 3 x 200 s


def test_rs_from_link_local_gets_a_unicast_ra():
    r = responder()
    rs = IPv6(src=GUEST_LL, dst="ff02::2", hlim=255) / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr="52:54:00:12:34:56")
    (reply,) = feed(r, rs, now=1.0)
    assert reply.dst_mac == GUEST_MAC and reply.dst == a(GUEST_LL) and reply.src == a("fe80::2")
    check_ra(decode(reply))
    assert r.guest_addrs == {a(GUEST_LL)} and r.stats["rs_answered"] == 1
    assert len(feed(r, rs, now=1.5)) == 1  # unicast answers are not rate-limited


def test_rs_from_unspecified_gets_multicast_ra_rate_limited():
    r = responder()
    rs = IPv6(src="::", dst="ff02::2", hlim=255) / ICMPv6ND_RS()
    (reply,) = feed(r, rs, now=10.0)
    assert reply.dst == a("ff02::1") and reply.dst_mac == bytes.fromhex("333300000001")
    check_ra(decode(reply))
    assert feed(r, rs, now=12.0) == []  # MIN_DELAY_BETWEEN_RAS
    assert r.stats["rs_rate_limited"] == 1
    assert len(feed(r, rs, now=13.0)) == 1
    bad = IPv6(src="::", dst="ff02::2", hlim=255) / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr="52:54:00:12:34:56")
    assert feed(r, bad, now=20.0) == [] and r.stats["malformed"] == 1  # RFC 4861 6.1.1


def test_unsolicited_ras_fast_at_start_then_periodic():
    r = responder()
    assert r.poll_at() == 0.0  # due as soon as the engine asks
    times = []
    now = 100.0
    for _ in range(6):
        reply = r.unsolicited_ra(now)
        assert reply is not None and reply.dst == a("ff02::1")
        check_ra(decode(reply))
        times.append(now)
        assert r.unsolicited_ra(r.poll_at() - 0.001) is None  # not before poll_at()
        now = r.poll_at()
    # RFC 4861 6.2.4: the first MAX_INITIAL_RTR_ADVERTISEMENTS 16 s apart, then the interval.
    assert times == [100.0, 116.0, 132.0, 332.0, 532.0, 732.0]


def test_final_ra_withdraws_the_default_route():
    p = decode(responder().final_ra())
    assert p[ICMPv6ND_RA].routerlifetime == 0 and p[IPv6].dst == "ff02::1"


def test_prefix_is_masked_and_only_64_is_autonomous():
    r = NdpResponder(ROUTER_MAC, a("fd00::2"), None, a("fd00::1234"), 48, None, set(), None, router_lifetime=600)
    p = decode(r.unsolicited_ra(0.0))
    pi = p[ICMPv6NDOptPrefixInfo]
    assert (pi.prefix, pi.prefixlen, pi.A) == ("fd00::", 48, 0)
    assert ICMPv6NDOptRDNSS not in p and ICMPv6NDOptMTU not in p
    assert p[IPv6].src == "fe80::5054:ff:fe00:2"  # EUI-64 link-local by default


# --- Neighbor Advertisements and the rest --------------------------------------------


def test_na_from_guest_is_learned_and_conflicts_counted():
    r = responder()
    na = IPv6(src=GUEST, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=GUEST, R=0, S=0, O=1) \
        / ICMPv6NDOptDstLLAddr(lladdr="52:54:00:12:34:56")
    assert feed(r, na, src_mac=bytes.fromhex("5254000000ff")) == []
    assert r.guest_mac == GUEST_MAC and r.guest_addrs == {a(GUEST)}
    claim = IPv6(src=GUEST, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt="fd00::2", S=0)
    assert feed(r, claim) == [] and r.stats["na_conflict"] == 1
    solicited_to_group = IPv6(src=GUEST, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=GUEST, S=1)
    assert feed(r, solicited_to_group) == [] and r.stats["malformed"] == 1  # RFC 4861 7.1.2


def test_other_icmpv6_is_not_ours():
    r = responder()
    assert feed(r, IPv6(src=GUEST, dst="fd00::2") / ICMPv6EchoRequest()) == []
    ra = IPv6(src=GUEST_LL, dst="ff02::1", hlim=255) / ICMPv6ND_RA()
    assert feed(r, ra) == []
    assert r.stats["not_ndp"] == 1 and r.stats["ra_ignored"] == 1


@given(st.binary(max_size=120), st.sampled_from([133, 134, 135, 136, 137]))
def test_never_raises(body, t):
    r = responder()
    r.handle(a(GUEST), a("ff02::1:ff00:2"), 255, bytes((t, 0)) + body, GUEST_MAC, 0.0)
    # With a valid checksum, so the option parser is reached too.
    msg = Icmpv6Message(t, 0, body).emit(a(GUEST), a("ff02::1:ff00:2"))
    r.handle(a(GUEST), a("ff02::1:ff00:2"), 255, msg, GUEST_MAC, 0.0)


# --- helpers --------------------------------------------------------------------------


def test_address_helpers():
    assert solicited_node(a("fd00::1:2345:6789")) == a("ff02::1:ff45:6789")
    assert multicast_mac(a("ff02::1:ff45:6789")) == bytes.fromhex("3333ff456789")
    assert eui64_link_local(GUEST_MAC) == a(GUEST_LL)
    with pytest.raises(ValueError):
        multicast_mac(a("fd00::1"))
    with pytest.raises(ValueError):
        solicited_node(b"\x00" * 4)


def test_misuse_raises():
    with pytest.raises(ValueError):
        NdpResponder(ROUTER_MAC, a("fd00::2"), a("fd00::2"), a("fd00::"))  # not link-local
    with pytest.raises(ValueError):
        responder(router_lifetime=100)  # below the RA interval (RFC 4861 6.2.1)
    with pytest.raises(ValueError):
        NdpResponder(ROUTER_MAC, a("fd00::2"), None, a("fd00::"), mtu=1000)
