"""ICMP traces: ICMPv4 (RFC 792/1812), ICMPv6 (RFC 4443) and NDP (RFC 4861/8106)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
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
    ICMPv6PacketTooBig,
    IPv6,
)
from wire_strategies import FAST, FUZZ, ip6, mac, mutated, only_wire_error, u8, u16, u32

from rootlessnet.wire import WireError
from rootlessnet.wire import icmpv4, icmpv6
from rootlessnet.wire.icmpv4 import Icmpv4Message, Icmpv4Type, UnreachCode
from rootlessnet.wire.icmpv6 import (
    Icmpv6Echo,
    Icmpv6Message,
    NdpOptions,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInfo,
    Rdnss,
    RouterAdvertisement,
    RouterSolicitation,
    parse_icmpv6,
    parse_ndp_options,
)
from rootlessnet.wire.ip import ip_to_str, ipv6_from_str
from rootlessnet.wire.ipv6 import ALL_NODES, ALL_ROUTERS, UNSPECIFIED


GUEST6, GW6, DNS6 = "fd00::100", "fd00::2", "fd00::3"
LL_GUEST, LL_GW = "fe80::5054:ff:fe12:3456", "fe80::2"
GUEST_MAC, GW_MAC = "52:54:00:12:34:56", "52:55:0a:00:02:02"
A = ipv6_from_str


def icmp6_bytes(pkt) -> bytes:
    """The ICMPv6 part of an IPv6 packet built by scapy (checksum filled in)."""
    return bytes(IPv6(bytes(pkt)).payload)


# --- ICMPv4 -------------------------------------------------------------------


def test_echo_request_from_scapy_and_reply() -> None:
    raw = bytes(ICMP(type=8, id=0x4242, seq=7) / b"ping data")
    req = Icmpv4Message.parse(raw)
    assert req.type == Icmpv4Type.ECHO_REQUEST and req.ident == 0x4242 and req.seq == 7
    assert req.data == b"ping data" and not req.is_error
    reply = icmpv4.echo_reply(req.ident, req.seq, req.data)
    assert reply.emit() == bytes(ICMP(type=0, id=0x4242, seq=7) / b"ping data")
    assert icmpv4.echo_request(0x4242, 7, b"ping data").emit() == raw


def test_icmpv4_bad_checksum() -> None:
    raw = bytearray(bytes(ICMP(type=8) / b"abc"))
    raw[-1] ^= 1
    with pytest.raises(WireError, match="checksum"):
        Icmpv4Message.parse(raw)
    assert Icmpv4Message.parse(raw, verify_checksum=False).data[:2] == b"ab"


def test_icmpv4_truncated() -> None:
    with pytest.raises(WireError):
        Icmpv4Message.parse(bytes(ICMP())[:7])


def test_port_unreachable_quotes_invoking_datagram() -> None:
    original = bytes(IP(src="10.0.2.100", dst="10.0.2.3") / UDP(sport=3333, dport=53) / b"q")
    msg = icmpv4.dest_unreachable(UnreachCode.PORT, original)
    assert msg.is_error and msg.data == original
    expect = ICMP(type=3, code=3) / original
    assert msg.emit() == bytes(expect)


def test_frag_needed_carries_mtu_and_quote_is_bounded() -> None:
    original = bytes(IP(src="10.0.2.100", dst="192.0.2.53", flags="DF") / (b"z" * 1400))
    msg = icmpv4.dest_unreachable(UnreachCode.FRAG_NEEDED, original, mtu=1280)
    assert msg.next_hop_mtu == 1280
    assert len(msg.data) == icmpv4.MAX_QUOTE == 548
    assert 20 + len(msg.emit()) == 576  # RFC 1812 4.3.2.3
    parsed = ICMP(msg.emit())
    assert parsed.nexthopmtu == 1280 and parsed.type == 3 and parsed.code == 4


def test_time_exceeded() -> None:
    original = bytes(IP(ttl=1) / UDP())
    assert icmpv4.time_exceeded(0, original).emit() == bytes(ICMP(type=11, code=0) / original)


def test_unknown_icmpv4_type_kept() -> None:
    raw = bytes(ICMP(type=42, code=9) / b"new")
    msg = Icmpv4Message.parse(raw)
    assert (msg.type, msg.code) == (42, 9) and msg.emit() == raw


@FAST
@given(u8, u8, st.binary(min_size=4, max_size=4), st.binary(max_size=100))
def test_icmpv4_roundtrip(t: int, c: int, rest: bytes, data: bytes) -> None:
    msg = Icmpv4Message(t, c, rest, data)
    raw = msg.emit()
    assert Icmpv4Message.parse(raw) == msg


# --- ICMPv6 echo and errors ---------------------------------------------------


def test_icmpv6_echo_from_scapy() -> None:
    raw = icmp6_bytes(IPv6(src=GUEST6, dst=GW6) / ICMPv6EchoRequest(id=9, seq=3, data=b"hello"))
    echo = parse_icmpv6(raw, A(GUEST6), A(GW6))
    assert echo == Icmpv6Echo(9, 3, b"hello", reply=False)
    answer = echo.answer().emit(A(GW6), A(GUEST6))
    assert answer == icmp6_bytes(IPv6(src=GW6, dst=GUEST6) / ICMPv6EchoReply(id=9, seq=3, data=b"hello"))


def test_icmpv6_checksum_covers_pseudo_header() -> None:
    raw = icmp6_bytes(IPv6(src=GUEST6, dst=GW6) / ICMPv6EchoRequest())
    Icmpv6Message.parse(raw, A(GUEST6), A(GW6))
    with pytest.raises(WireError, match="checksum"):
        Icmpv6Message.parse(raw, A(GUEST6), A(DNS6))  # right bytes, wrong destination
    assert Icmpv6Message.parse(raw, A(GUEST6), A(DNS6), verify_checksum=False).type == 128


def test_icmpv6_dest_unreachable_quote_fits_1280() -> None:
    invoking = bytes(IPv6(src=GUEST6, dst="2001:db8::1") / UDP() / (b"x" * 2000))
    msg = icmpv6.dest_unreachable(icmpv6.UnreachCode.PORT, invoking)
    assert msg.is_error and 40 + len(msg.emit(A(GW6), A(GUEST6))) == 1280
    short = bytes(IPv6(src=GUEST6, dst="2001:db8::1") / UDP())
    ours = icmpv6.dest_unreachable(4, short).emit(A(GW6), A(GUEST6))
    assert ours == icmp6_bytes(IPv6(src=GW6, dst=GUEST6) / ICMPv6DestUnreach(code=4) / short)


def test_icmpv6_packet_too_big() -> None:
    invoking = bytes(IPv6(src=GUEST6, dst="2001:db8::1") / (b"x" * 100))
    ours = icmpv6.packet_too_big(1400, invoking).emit(A(GW6), A(GUEST6))
    assert ours == icmp6_bytes(IPv6(src=GW6, dst=GUEST6) / ICMPv6PacketTooBig(mtu=1400) / invoking)


# --- NDP ----------------------------------------------------------------------


def test_router_solicitation_from_guest() -> None:
    raw = icmp6_bytes(IPv6(src=LL_GUEST, dst="ff02::2") / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=GUEST_MAC))
    rs = parse_icmpv6(raw, A(LL_GUEST), ALL_ROUTERS)
    assert isinstance(rs, RouterSolicitation)
    assert rs.options.source_lladdr == bytes.fromhex("525400123456")


def test_router_advertisement_matches_scapy() -> None:
    ra = RouterAdvertisement(
        cur_hop_limit=64, managed=False, other=True, router_lifetime=1800,
        options=NdpOptions(
            source_lladdr=bytes.fromhex("52550a000202"), mtu=65520,
            prefixes=(PrefixInfo(A("fd00::"), 64, True, True, 86400, 14400),),
            rdnss=(Rdnss(3600, (A(DNS6),)),),
        ),
    )
    ours = ra.emit(A(LL_GW), ALL_NODES)
    theirs = icmp6_bytes(
        IPv6(src=LL_GW, dst="ff02::1")
        / ICMPv6ND_RA(chlim=64, M=0, O=1, prf=0, routerlifetime=1800)  # Prf 00 = medium
        / ICMPv6NDOptSrcLLAddr(lladdr=GW_MAC)
        / ICMPv6NDOptMTU(mtu=65520)
        / ICMPv6NDOptPrefixInfo(prefix="fd00::", prefixlen=64, L=1, A=1, validlifetime=86400, preferredlifetime=14400)
        / ICMPv6NDOptRDNSS(lifetime=3600, dns=[DNS6])
    )
    assert ours == theirs
    assert parse_icmpv6(ours, A(LL_GW), ALL_NODES) == ra


def test_neighbor_solicitation_and_advertisement() -> None:
    # DAD probe: unspecified source, no SLLA; then an address resolution NS.
    dad = icmp6_bytes(IPv6(src="::", dst="ff02::1:ff00:100") / ICMPv6ND_NS(tgt=GUEST6))
    ns = parse_icmpv6(dad, UNSPECIFIED, A("ff02::1:ff00:100"))
    assert ns == NeighborSolicitation(A(GUEST6))
    raw = icmp6_bytes(IPv6(src=GUEST6, dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt=GW6) / ICMPv6NDOptSrcLLAddr(lladdr=GUEST_MAC))
    ns = parse_icmpv6(raw, A(GUEST6), A("ff02::1:ff00:2"))
    assert ns.target == A(GW6) and ns.options.source_lladdr == bytes.fromhex("525400123456")
    na = NeighborAdvertisement(A(GW6), router=True, solicited=True, override=True,
                               options=NdpOptions(target_lladdr=bytes.fromhex("52550a000202")))
    ours = na.emit(A(GW6), A(GUEST6))
    assert ours == icmp6_bytes(IPv6(src=GW6, dst=GUEST6) / ICMPv6ND_NA(tgt=GW6, R=1, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=GW_MAC))
    assert parse_icmpv6(ours, A(GW6), A(GUEST6)) == na


def test_ndp_option_length_zero_is_rejected() -> None:
    with pytest.raises(WireError, match="length 0"):
        parse_ndp_options(b"\x01\x00" + bytes(6))
    raw = bytearray(icmp6_bytes(IPv6(src=GUEST6, dst=GW6) / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=GUEST_MAC)))
    raw[9] = 0
    with pytest.raises(WireError):
        parse_icmpv6(raw, A(GUEST6), A(GW6), verify_checksum=False)


@pytest.mark.parametrize(
    "opts",
    [b"\x01", b"\x01\x02" + bytes(6), b"\x03\x01" + bytes(6), b"\x05\x02" + bytes(14), b"\x19\x02" + bytes(14)],
    ids=["no-length", "past-end", "short-prefix", "long-mtu", "rdnss-without-server"],
)
def test_ndp_malformed_options(opts: bytes) -> None:
    with pytest.raises(WireError):
        parse_ndp_options(opts)


def test_ndp_unknown_option_kept_and_nonzero_code_rejected() -> None:
    opts = parse_ndp_options(b"\x1f\x01" + b"abcdef")  # DNSSL: not decoded
    assert opts.unknown == ((31, b"abcdef"),)
    with pytest.raises(WireError):
        RouterSolicitation.from_message(Icmpv6Message(133, 1, bytes(4)))
    with pytest.raises(WireError):
        NeighborSolicitation.from_message(Icmpv6Message(135, 0, bytes(19)))


ndp_options = st.builds(
    NdpOptions,
    source_lladdr=st.none() | mac,
    target_lladdr=st.none() | mac,
    mtu=st.none() | u32,
    prefixes=st.lists(st.builds(PrefixInfo, ip6, st.integers(0, 128), st.booleans(), st.booleans(), u32, u32), max_size=2).map(tuple),
    rdnss=st.lists(st.builds(Rdnss, u32, st.lists(ip6, min_size=1, max_size=3).map(tuple)), max_size=2).map(tuple),
    unknown=st.lists(st.tuples(st.integers(100, 255), st.binary(min_size=6, max_size=6)), max_size=2).map(tuple),
)


ndp_messages = st.one_of(
    st.builds(RouterSolicitation, ndp_options),
    st.builds(RouterAdvertisement, u8, st.booleans(), st.booleans(), u16, u32, u32, ndp_options),
    st.builds(NeighborSolicitation, ip6, ndp_options),
    st.builds(NeighborAdvertisement, ip6, st.booleans(), st.booleans(), st.booleans(), ndp_options),
    st.builds(Icmpv6Echo, u16, u16, st.binary(max_size=50), st.booleans()),
)


@FAST
@given(ndp_messages, ip6, ip6)
def test_icmpv6_typed_roundtrip(msg, src: bytes, dst: bytes) -> None:
    raw = msg.emit(src, dst)
    assert parse_icmpv6(raw, src, dst) == msg
    # scapy agrees on the checksum
    pkt = IPv6(bytes(IPv6(src=ip_to_str(src), dst=ip_to_str(dst), nh=58) / raw))
    assert bytes(pkt.payload)[2:4] == raw[2:4]


# --- fuzz ---------------------------------------------------------------------


RA_SEED = icmp6_bytes(
    IPv6(src=LL_GW, dst="ff02::1") / ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=GW_MAC)
    / ICMPv6NDOptPrefixInfo(prefix="fd00::") / ICMPv6NDOptRDNSS(dns=[DNS6, GW6])
)
NA_SEED = icmp6_bytes(IPv6(src=GW6, dst=GUEST6) / ICMPv6ND_NA(tgt=GW6) / ICMPv6NDOptDstLLAddr(lladdr=GW_MAC))


@FUZZ
@given(st.one_of(st.binary(max_size=100), mutated(RA_SEED), mutated(NA_SEED)))
def test_icmp_fuzz(buf: bytes) -> None:
    only_wire_error(lambda b: parse_icmpv6(b, A(LL_GW), ALL_NODES, verify_checksum=False), buf)
    only_wire_error(lambda b: parse_icmpv6(b, A(LL_GW), ALL_NODES), buf)
    only_wire_error(Icmpv4Message.parse, buf)
    only_wire_error(parse_ndp_options, buf)
