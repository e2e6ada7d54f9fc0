"""Network layer traces: IPv4 (RFC 791) and IPv6 with extension headers (RFC 8200)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP, IPOption_RR
from scapy.layers.ipsec import AH
from scapy.layers.inet6 import (

    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from wire_strategies import FAST, FUZZ, ip4, ip6, mutated, only_wire_error, u8, u16

from rootlessnet.wire import WireError
from rootlessnet.wire.ip import IpProto, ip_to_str, ipv4_from_str, ipv6_from_str, proto_name
from rootlessnet.wire.ipv4 import FLAG_DF, HEADER, OFF_CHECKSUM, Ipv4Packet
from rootlessnet.wire.ipv6 import (
    MAX_EXT_HEADERS,
    Ipv6Packet,
    multicast_mac,
    solicited_node_multicast,
    walk_extension_headers,
)

GUEST = "10.0.2.100"
GW = "10.0.2.2"
GUEST6 = "fd00::100"
GW6 = "fd00::2"


# --- IPv4 ---------------------------------------------------------------------


def test_ipv4_known_answer_from_scapy() -> None:
    raw = bytes(IP(src=GUEST, dst=GW, ttl=61, id=0x1234, flags="DF", tos=0xB8) / UDP(sport=1, dport=2) / b"hi")
    pkt = Ipv4Packet.parse(raw)
    assert (pkt.src, pkt.dst) == (ipv4_from_str(GUEST), ipv4_from_str(GW))
    assert pkt.proto == IpProto.UDP and pkt.ttl == 61 and pkt.ident == 0x1234 and pkt.tos == 0xB8
    assert pkt.dont_fragment and not pkt.more_fragments and not pkt.is_fragment
    assert pkt.header_len == 20 and pkt.total_length == len(raw) and len(pkt.payload) == 10
    assert pkt.emit() == raw  # header checksum identical to scapy's


def test_ipv4_with_options_matches_scapy() -> None:
    raw = bytes(IP(src=GUEST, dst=GW, options=[IPOption_RR(routers=["1.2.3.4"])], proto=200) / b"data")
    pkt = Ipv4Packet.parse(raw)
    assert pkt.header_len == 28 and len(pkt.options) == 8 and pkt.payload == b"data"
    assert pkt.proto == 200 and proto_name(pkt.proto) == "200"  # unknown protocol kept
    assert pkt.emit() == raw


def test_ipv4_fragment_fields() -> None:
    raw = bytes(IP(src=GUEST, dst=GW, flags="MF", frag=185) / (b"x" * 16))
    pkt = Ipv4Packet.parse(raw)
    assert pkt.more_fragments and pkt.frag_offset == 185 * 8 and pkt.is_fragment
    assert pkt.emit() == raw


def test_ipv4_ethernet_padding_is_not_payload() -> None:
    raw = bytes(IP(src=GUEST, dst=GW) / b"abc")
    pkt = Ipv4Packet.parse(raw + bytes(23))  # padded to the 46-byte Ethernet minimum
    assert pkt.payload == b"abc"


def test_ipv4_total_length_longer_than_buffer() -> None:
    raw = bytes(IP(src=GUEST, dst=GW) / b"abcdef")
    with pytest.raises(WireError, match="total length"):
        Ipv4Packet.parse(raw[:-1])


def test_ipv4_total_length_shorter_than_header() -> None:
    raw = bytearray(bytes(IP(src=GUEST, dst=GW)))
    struct.pack_into("!H", raw, 2, 19)
    with pytest.raises(WireError):
        Ipv4Packet.parse(raw, verify_checksum=False)


def test_ipv4_bad_checksum() -> None:
    raw = bytearray(bytes(IP(src=GUEST, dst=GW) / b"x"))
    raw[OFF_CHECKSUM] ^= 0x40
    with pytest.raises(WireError, match="checksum"):
        Ipv4Packet.parse(raw)
    assert Ipv4Packet.parse(raw, verify_checksum=False).payload == b"x"


@pytest.mark.parametrize("ver_ihl", [0x65, 0x44, 0x40, 0x4F])
def test_ipv4_bad_version_or_ihl(ver_ihl: int) -> None:
    raw = bytearray(bytes(IP(src=GUEST, dst=GW) / bytes(30)))  # total 50 < IHL 60
    raw[0] = ver_ihl
    with pytest.raises(WireError):
        Ipv4Packet.parse(raw, verify_checksum=False)


def test_ipv4_reserved_flag_ignored() -> None:
    raw = bytes(IP(src=GUEST, dst=GW, flags="evil"))
    assert not Ipv4Packet.parse(raw).is_fragment


def test_ipv4_hot_path_struct() -> None:
    raw = bytes(IP(src=GUEST, dst=GW, ttl=7))
    assert HEADER.unpack_from(raw)[5] == 7
    assert FLAG_DF == 0x4000


@st.composite
def ipv4_packets(draw) -> Ipv4Packet:
    return Ipv4Packet(
        src=draw(ip4), dst=draw(ip4), proto=draw(u8), payload=draw(st.binary(max_size=100)),
        ttl=draw(u8), tos=draw(u8), ident=draw(u16), dont_fragment=draw(st.booleans()),
        more_fragments=draw(st.booleans()), frag_offset=draw(st.integers(0, 0x1FFF)) * 8,
        options=draw(st.binary(max_size=10).map(lambda b: b + bytes(-len(b) % 4))),
    )


@FAST
@given(ipv4_packets())
def test_ipv4_roundtrip(pkt: Ipv4Packet) -> None:
    assert Ipv4Packet.parse(pkt.emit()) == pkt


@FAST
@given(ipv4_packets())
def test_ipv4_emit_matches_scapy(pkt: Ipv4Packet) -> None:
    ours = pkt.emit()
    theirs = IP(ours)
    del theirs.chksum
    assert bytes(theirs) == ours


def test_ipv4_constructor_misuse() -> None:
    with pytest.raises(ValueError):
        Ipv4Packet(bytes(4), bytes(4), 6, frag_offset=3)
    with pytest.raises(ValueError):
        Ipv4Packet(bytes(4), bytes(4), 6, options=b"\x01")
    with pytest.raises(ValueError):
        Ipv4Packet(bytes(3), bytes(4), 6)


# --- IPv6 ---------------------------------------------------------------------


def test_ipv6_known_answer_from_scapy() -> None:
    raw = bytes(IPv6(src=GUEST6, dst=GW6, hlim=255, tc=0x12, fl=0xABCDE) / UDP(sport=1, dport=2) / b"hey")
    pkt = Ipv6Packet.parse(raw + bytes(5))  # with trailing padding
    assert ip_to_str(pkt.src) == GUEST6 and ip_to_str(pkt.dst) == GW6
    assert pkt.hop_limit == 255 and pkt.traffic_class == 0x12 and pkt.flow_label == 0xABCDE
    assert pkt.next_header == pkt.upper_protocol == IpProto.UDP
    assert pkt.upper_offset == 0 and pkt.fragment is None and pkt.payload_length == 11
    assert pkt.emit() == raw


def test_ipv6_extension_chain() -> None:
    raw = bytes(
        IPv6(src=GUEST6, dst=GW6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting() / IPv6ExtHdrFragment(id=77, offset=0, m=1) / UDP(sport=5, dport=6)
    )
    pkt = Ipv6Packet.parse(raw)
    assert pkt.next_header == 0
    assert pkt.chain.headers == (0, 60, 43, 44)
    assert pkt.upper_protocol == IpProto.UDP and pkt.upper_offset == 8 + 8 + 8 + 8
    assert pkt.fragment is not None
    assert (pkt.fragment.ident, pkt.fragment.offset, pkt.fragment.more) == (77, 0, True)
    assert pkt.fragment.header_offset == 24
    assert pkt.upper_payload[:4] == b"\x00\x05\x00\x06"
    assert pkt.emit() == raw


def test_ipv6_later_fragment_stops_walk() -> None:
    # A non-first fragment: what follows the Fragment header is data, not headers.
    raw = bytes(IPv6(src=GUEST6, dst=GW6) / IPv6ExtHdrFragment(nh=60, offset=100, id=1) / (b"\x00" * 16))
    pkt = Ipv6Packet.parse(raw)
    assert pkt.fragment.offset == 800 and not pkt.fragment.more
    assert pkt.upper_protocol == 60 and pkt.upper_offset == 8


def test_ipv6_ah_length_in_4_octet_units() -> None:
    raw = bytes(IPv6(src=GUEST6, dst=GW6) / AH(nh=17, payloadlen=4, icv=b"\0" * 12) / UDP())
    pkt = Ipv6Packet.parse(raw)
    assert pkt.chain.headers == (51,) and pkt.upper_protocol == 17 and pkt.upper_offset == 24


def test_ipv6_no_next_header_and_unknown() -> None:
    assert Ipv6Packet.parse(bytes(IPv6(nh=59))).upper_protocol == 59
    assert Ipv6Packet.parse(bytes(IPv6(nh=253) / b"exp")).upper_protocol == 253


def test_ipv6_too_many_extension_headers() -> None:
    chain = IPv6(src=GUEST6, dst=GW6)
    for _ in range(MAX_EXT_HEADERS + 1):
        chain = chain / IPv6ExtHdrDestOpt()
    with pytest.raises(WireError, match="more than"):
        Ipv6Packet.parse(bytes(chain / UDP()))
    ok = IPv6(src=GUEST6, dst=GW6)
    for _ in range(MAX_EXT_HEADERS):
        ok = ok / IPv6ExtHdrDestOpt()
    assert Ipv6Packet.parse(bytes(ok / UDP())).upper_protocol == 17


def test_ipv6_hop_by_hop_must_be_first() -> None:
    raw = bytes(IPv6() / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / UDP())
    with pytest.raises(WireError, match="hop-by-hop"):
        Ipv6Packet.parse(raw)


def test_ipv6_extension_header_past_payload() -> None:
    raw = bytearray(bytes(IPv6() / IPv6ExtHdrDestOpt() / UDP()))
    raw[41] = 5  # Hdr Ext Len claims 48 bytes
    with pytest.raises(WireError, match="runs past"):
        Ipv6Packet.parse(raw)
    with pytest.raises(WireError, match="truncated"):
        walk_extension_headers(60, b"\x11\x00\x00")


def test_ipv6_payload_length_longer_than_buffer() -> None:
    raw = bytes(IPv6() / b"12345678")
    with pytest.raises(WireError, match="payload length"):
        Ipv6Packet.parse(raw[:-1])


def test_ipv6_wrong_version_and_truncated() -> None:
    raw = bytearray(bytes(IPv6()))
    raw[0] = 0x45
    with pytest.raises(WireError):
        Ipv6Packet.parse(raw)
    with pytest.raises(WireError):
        Ipv6Packet.parse(bytes(39))


def test_ipv6_multicast_helpers() -> None:
    addr = ipv6_from_str("fd00::1:2:3")
    assert ip_to_str(solicited_node_multicast(addr)) == "ff02::1:ff02:3"
    assert multicast_mac(solicited_node_multicast(addr)) == bytes.fromhex("3333ff020003")


@st.composite
def ipv6_packets(draw) -> Ipv6Packet:
    return Ipv6Packet(
        draw(ip6), draw(ip6), draw(st.sampled_from([6, 17, 58, 59, 200])), draw(st.binary(max_size=100)),
        draw(u8), draw(u8), draw(st.integers(0, 0xFFFFF)),
    )


@FAST
@given(ipv6_packets())
def test_ipv6_roundtrip_and_scapy(pkt: Ipv6Packet) -> None:
    raw = pkt.emit()
    assert Ipv6Packet.parse(raw) == pkt
    assert bytes(IPv6(raw)) == raw


# --- fuzz ---------------------------------------------------------------------

V4_SEED = bytes(IP(src=GUEST, dst=GW, options=[IPOption_RR(routers=["1.2.3.4"])]) / UDP() / b"x")
V6_SEED = bytes(IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment() / AH(nh=60) / IPv6ExtHdrDestOpt() / UDP())


@FUZZ
@given(st.one_of(st.binary(max_size=120), mutated(V4_SEED)))
def test_ipv4_fuzz(buf: bytes) -> None:
    only_wire_error(Ipv4Packet.parse, buf)
    only_wire_error(lambda b: Ipv4Packet.parse(b, verify_checksum=False), buf)


@FUZZ
@given(st.one_of(st.binary(max_size=120), mutated(V6_SEED)))
def test_ipv6_fuzz(buf: bytes) -> None:
    only_wire_error(Ipv6Packet.parse, buf)
    only_wire_error(lambda b: walk_extension_headers(b[0] if b else 0, b[1:]), buf)
