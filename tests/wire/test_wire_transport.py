"""Transport traces: UDP (RFC 768) and TCP with options (RFC 9293, 7323, 2018)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from wire_strategies import FAST, FUZZ, mutated, only_wire_error, u8, u16, u32

from rootlessnet.wire import WireError
from rootlessnet.wire.checksum import internet_checksum
from rootlessnet.wire.ip import ip_to_str, ipv4_from_str, ipv6_from_str
from rootlessnet.wire.tcp import (
    HEADER,
    OFF_CHECKSUM,
    TcpFlags,
    TcpOptions,
    TcpSegment,
    emit_options,
    parse_options,
    pseudo_sum,
)
from rootlessnet.wire.udp import UdpDatagram
from rootlessnet.wire.udp import pseudo_sum as udp_pseudo_sum

GUEST, GW = "10.0.2.100", "10.0.2.2"
GUEST6, GW6 = "fd00::100", "fd00::2"
G4, W4 = ipv4_from_str(GUEST), ipv4_from_str(GW)
G6, W6 = ipv6_from_str(GUEST6), ipv6_from_str(GW6)


def l4(pkt) -> bytes:
    """Transport bytes of a scapy IP/IPv6 packet, checksums filled in."""
    return bytes(pkt.__class__(bytes(pkt)).payload)


# --- UDP ----------------------------------------------------------------------


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_udp_known_answer_from_scapy(family: str) -> None:
    if family == "v4":
        src, dst, raw = G4, W4, l4(IP(src=GUEST, dst=GW) / UDP(sport=40000, dport=53) / b"query")
    else:
        src, dst, raw = G6, W6, l4(IPv6(src=GUEST6, dst=GW6) / UDP(sport=40000, dport=53) / b"query")
    dgram = UdpDatagram.parse(raw, src, dst)
    assert dgram == UdpDatagram(40000, 53, b"query")
    assert dgram.emit(src, dst) == raw


def test_udp_zero_checksum_v4_means_none_v6_invalid() -> None:
    raw = UdpDatagram(1, 2, b"x").emit_no_checksum()
    assert raw[6:8] == b"\0\0"
    assert UdpDatagram.parse(raw, G4, W4).payload == b"x"
    with pytest.raises(WireError, match="zero checksum"):
        UdpDatagram.parse(raw, G6, W6)


def test_udp_computed_zero_sent_as_ffff() -> None:
    # Find a payload whose checksum computes to 0: it must go out as 0xFFFF.
    base = UdpDatagram(1, 2, b"\0\0")
    c = struct.unpack("!H", base.emit(G4, W4)[6:8])[0]
    fix = (~c) & 0xFFFF if c != 0xFFFF else 0
    dgram = UdpDatagram(1, 2, struct.pack("!H", (0xFFFF - fix) & 0xFFFF))
    raw = dgram.emit(G4, W4)
    assert raw[6:8] != b"\0\0"
    assert UdpDatagram.parse(raw, G4, W4) == dgram


def test_udp_bad_checksum_and_lengths() -> None:
    raw = bytearray(UdpDatagram(5, 6, b"abcd").emit(G4, W4))
    raw[-1] ^= 0xFF
    with pytest.raises(WireError, match="checksum"):
        UdpDatagram.parse(raw, G4, W4)
    assert UdpDatagram.parse(raw).payload == bytes(raw[8:])  # no addresses: not verified
    for length in (0, 7, 13):
        bad = bytearray(raw)
        struct.pack_into("!H", bad, 4, length)
        with pytest.raises(WireError, match="length"):
            UdpDatagram.parse(bad)
    with pytest.raises(WireError):
        UdpDatagram.parse(raw[:7])


def test_udp_trailing_bytes_ignored() -> None:
    raw = UdpDatagram(5, 6, b"ab").emit(G4, W4)
    assert UdpDatagram.parse(raw + b"pad", G4, W4).payload == b"ab"


def test_udp_partial_checksum_is_finished_by_device() -> None:
    dgram = UdpDatagram(5353, 53, b"offloaded")
    partial = dgram.emit_partial(udp_pseudo_sum(G6, W6, dgram.buffer_len))
    finished = bytearray(partial)
    struct.pack_into("!H", finished, 6, internet_checksum(partial))  # what the NIC does
    assert bytes(finished) == dgram.emit(G6, W6)


@FAST
@given(u16, u16, st.binary(max_size=300), st.sampled_from([(G4, W4), (G6, W6)]))
def test_udp_roundtrip(sport: int, dport: int, data: bytes, addrs) -> None:
    dgram = UdpDatagram(sport, dport, data)
    assert UdpDatagram.parse(dgram.emit(*addrs), *addrs) == dgram


# --- TCP ----------------------------------------------------------------------

SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None), ("WScale", 7)]


def test_tcp_syn_from_linux_shaped_scapy() -> None:
    raw = l4(IP(src=GUEST, dst=GW) / TCP(sport=51000, dport=80, seq=1000, flags="S", window=64240, options=SYN_OPTS))
    seg = TcpSegment.parse(raw, G4, W4)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack) == (51000, 80, 1000, 0)
    assert seg.flags == TcpFlags.SYN and seg.window == 64240 and seg.seg_len == 1
    assert seg.options == TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(12345, 0))
    assert seg.header_len == 40
    assert seg.emit(G4, W4) == raw  # same canonical option order, same checksum


def test_tcp_syn_ack_v6_matches_scapy() -> None:
    seg = TcpSegment(80, 51000, 5000, 1001, TcpFlags.SYN | TcpFlags.ACK, 65535,
                     options=TcpOptions(mss=65460, wscale=9, sack_permitted=True))
    theirs = l4(IPv6(src=GW6, dst=GUEST6) / TCP(sport=80, dport=51000, seq=5000, ack=1001, flags="SA", window=65535,
                                                options=[("MSS", 65460), ("NOP", None), ("NOP", None), ("SAckOK", b""),
                                                         ("NOP", None), ("WScale", 9)]))
    assert seg.emit(W6, G6) == theirs
    assert TcpSegment.parse(theirs, W6, G6) == seg


def test_tcp_data_segment_with_sack_blocks() -> None:
    opts = TcpOptions(sack_blocks=((100, 200), (300, 400)), timestamps=(7, 8))
    seg = TcpSegment(1, 2, 3, 4, TcpFlags.ACK | TcpFlags.PSH, 100, b"data", options=opts)
    raw = seg.emit(G4, W4)
    pkt = TCP(raw)
    assert ("SAck", (100, 200, 300, 400)) in pkt.options and ("Timestamp", (7, 8)) in pkt.options
    assert TcpSegment.parse(raw, G4, W4) == seg


def test_tcp_unknown_option_kept_and_reemitted() -> None:
    raw = l4(IP(src=GUEST, dst=GW) / TCP(flags="S", options=[("MSS", 536), (34, b"\x01\x02"), ("EOL", None)]))
    seg = TcpSegment.parse(raw, G4, W4)
    assert seg.options.mss == 536 and seg.options.unknown == ((34, b"\x01\x02"),)  # TFO cookie kind 34
    assert TcpSegment.parse(seg.emit(G4, W4), G4, W4) == seg


def test_tcp_partial_checksum_for_needs_csum() -> None:
    seg = TcpSegment(80, 51000, 1, 2, TcpFlags.ACK, 1000, b"x" * 60000)
    psum = pseudo_sum(W4, G4, seg.buffer_len)
    partial = seg.emit_partial(psum)
    assert struct.unpack_from("!H", partial, OFF_CHECKSUM)[0] == psum
    finished = bytearray(partial)
    struct.pack_into("!H", finished, OFF_CHECKSUM, internet_checksum(partial))  # the kernel's job
    assert bytes(finished) == seg.emit(W4, G4) == seg.emit_with_pseudo_sum(psum)


def test_tcp_bad_checksum() -> None:
    raw = bytearray(TcpSegment(1, 2, 3, 4, TcpFlags.ACK, 5, b"abc").emit(G4, W4))
    raw[-1] ^= 1
    with pytest.raises(WireError, match="checksum"):
        TcpSegment.parse(raw, G4, W4)
    assert TcpSegment.parse(raw).payload[:2] == b"ab"


@pytest.mark.parametrize("doff", [0, 4, 6, 15])
def test_tcp_bad_data_offset(doff: int) -> None:
    raw = bytearray(TcpSegment(1, 2, 3, 4, TcpFlags.ACK, 5).emit(G4, W4))  # 20 bytes
    raw[12] = doff << 4
    with pytest.raises(WireError, match="data offset"):
        TcpSegment.parse(raw)


@pytest.mark.parametrize(
    "opts",
    [
        b"\x02\x04\x05",  # MSS runs past the header
        b"\x02\x03\x05\xb4",  # MSS with length 3
        b"\x03\x04\x07\x00",  # window scale with length 4
        b"\x08\x0a" + bytes(6),  # timestamps cut short
        b"\x05\x02\x00\x00",  # SACK with no block
        b"\x05\x0b" + bytes(9),  # SACK with a partial block
        b"\x22\x00\x00\x00",  # unknown kind, length 0: would loop forever
        b"\x22\x01\x00\x00",  # unknown kind, length 1
        b"\x01\x01\x01\x22",  # unknown kind, no length byte
    ],
)
def test_tcp_malformed_options(opts: bytes) -> None:
    with pytest.raises(WireError):
        parse_options(opts)


def test_tcp_eol_stops_parsing() -> None:
    assert parse_options(b"\x00\x02\x04\x05") == TcpOptions()
    assert parse_options(b"\x01\x01\x01\x01") == TcpOptions()


def test_emit_options_padding_and_limit() -> None:
    assert emit_options(TcpOptions()) == b""
    assert emit_options(TcpOptions(wscale=2)) == b"\x01\x03\x03\x02"
    assert len(emit_options(TcpOptions(sack_blocks=((1, 2),) * 4))) == 36
    with pytest.raises(ValueError, match="more than 40"):
        emit_options(TcpOptions(timestamps=(1, 2), sack_blocks=((1, 2),) * 4))


def test_tcp_hot_path_struct() -> None:
    raw = TcpSegment(1, 2, 3, 4, TcpFlags.RST, 0).emit(G4, W4)
    assert HEADER.unpack_from(raw)[:6] == (1, 2, 3, 4, 0x50, int(TcpFlags.RST))


tcp_options = st.builds(
    TcpOptions,
    mss=st.none() | u16,
    wscale=st.none() | u8,
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=2).map(tuple),
    timestamps=st.none() | st.tuples(u32, u32),
    unknown=st.lists(st.tuples(st.integers(9, 255).filter(lambda k: k != 5), st.binary(max_size=2)), max_size=1).map(tuple),
).filter(lambda o: _fits(o))


def _fits(opts: TcpOptions) -> bool:
    try:
        emit_options(opts)
    except ValueError:
        return False
    return True


@st.composite
def tcp_segments(draw) -> TcpSegment:
    return TcpSegment(draw(u16), draw(u16), draw(u32), draw(u32), TcpFlags(draw(u8)), draw(u16),
                      draw(st.binary(max_size=200)), draw(u16), draw(tcp_options))


@FAST
@given(tcp_segments(), st.sampled_from([(G4, W4), (G6, W6)]))
def test_tcp_roundtrip_and_scapy_checksum(seg: TcpSegment, addrs) -> None:
    raw = seg.emit(*addrs)
    assert TcpSegment.parse(raw, *addrs) == seg
    # scapy's own pseudo-header checksum over our bytes (checksum field zeroed)
    zeroed = raw[:OFF_CHECKSUM] + b"\0\0" + raw[OFF_CHECKSUM + 2:]
    if len(addrs[0]) == 4:
        theirs = in4_chksum(6, IP(src=ip_to_str(addrs[0]), dst=ip_to_str(addrs[1])), zeroed)
    else:
        theirs = in6_chksum(6, IPv6(src=ip_to_str(addrs[0]), dst=ip_to_str(addrs[1])), zeroed)
    assert struct.unpack_from("!H", raw, OFF_CHECKSUM)[0] == theirs


# --- fuzz ---------------------------------------------------------------------

TCP_SEED = l4(IP(src=GUEST, dst=GW) / TCP(flags="S", options=SYN_OPTS + [("SAck", (1, 2))]) / b"payload")
UDP_SEED = l4(IP(src=GUEST, dst=GW) / UDP() / b"payload")


@FUZZ
@given(st.one_of(st.binary(max_size=80), mutated(TCP_SEED), mutated(UDP_SEED)))
def test_transport_fuzz(buf: bytes) -> None:
    for parse in (TcpSegment.parse, UdpDatagram.parse, parse_options):
        only_wire_error(parse, buf)
    only_wire_error(lambda b: TcpSegment.parse(b, G4, W4), buf)
    only_wire_error(lambda b: UdpDatagram.parse(b, G6, W6), buf)
