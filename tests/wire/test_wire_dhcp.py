"""DHCP traces (RFC 2131/2132): a guest's DISCOVER/REQUEST and our OFFER/ACK/NAK."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from wire_strategies import FAST, FUZZ, ip4, mutated, only_wire_error, u8, u16, u32

from rootlessnet.wire import WireError
from rootlessnet.wire.dhcp import (
    HEADER_LEN,
    MIN_LEN,
    OP_REPLY,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    make_nak,
    make_reply,
)
from rootlessnet.wire.ip import ipv4_from_str

GUEST_MAC = bytes.fromhex("525400123456")
A = ipv4_from_str


def discover(**extra) -> bytes:
    opts = [("message-type", "discover"), ("client_id", b"\x01" + GUEST_MAC), ("hostname", b"guest"),
            ("param_req_list", [1, 3, 6, 15, 26, 51]), "end"]
    return bytes(BOOTP(chaddr=GUEST_MAC, xid=0xDEADBEEF, flags=0x8000, **extra) / DHCP(options=opts))


def test_discover_from_scapy() -> None:
    msg = DhcpMessage.parse(discover())
    assert msg.op == 1 and msg.xid == 0xDEADBEEF and msg.chaddr == GUEST_MAC and msg.broadcast
    assert msg.message_type == DhcpMessageType.DISCOVER
    assert msg.client_id == b"\x01" + GUEST_MAC and msg.hostname == "guest"
    assert msg.parameter_request_list == (1, 3, 6, 15, 26, 51)
    assert msg.requested_ip is None and msg.server_id is None


def test_request_accessors() -> None:
    raw = bytes(BOOTP(chaddr=GUEST_MAC, xid=1) / DHCP(options=[
        ("message-type", "request"), ("requested_addr", "10.0.2.15"), ("server_id", "10.0.2.2"), "end"]))
    msg = DhcpMessage.parse(raw)
    assert msg.message_type == DhcpMessageType.REQUEST
    assert msg.requested_ip == A("10.0.2.15") and msg.server_id == A("10.0.2.2")


def test_offer_read_back_by_scapy() -> None:
    req = DhcpMessage.parse(discover())
    offer = make_reply(req, DhcpMessageType.OFFER, server_id=A("10.0.2.2"), yiaddr=A("10.0.2.15"),
                       subnet_mask=A("255.255.255.0"), router=A("10.0.2.2"), dns=(A("10.0.2.3"),),
                       lease_time=86400, mtu=65520, domain_name="example.test")
    raw = offer.emit()
    assert len(raw) >= MIN_LEN
    pkt = BOOTP(raw)
    assert pkt.op == OP_REPLY and pkt.xid == 0xDEADBEEF and pkt.yiaddr == "10.0.2.15" and pkt.flags == 0x8000
    assert pkt.chaddr[:6] == GUEST_MAC and pkt.ciaddr == "0.0.0.0"
    opts = dict(o for o in pkt[DHCP].options if isinstance(o, tuple))
    assert opts["message-type"] == 2 and opts["server_id"] == "10.0.2.2"
    assert opts["subnet_mask"] == "255.255.255.0" and opts["router"] == "10.0.2.2"
    assert opts["name_server"] == "10.0.2.3" and opts["lease_time"] == 86400
    assert opts["interface-mtu"] == 65520 and opts["domain"] == b"example.test"
    assert DhcpMessage.parse(raw) == offer


def test_ack_to_inform_copies_ciaddr_and_nak() -> None:
    raw = bytes(BOOTP(chaddr=GUEST_MAC, ciaddr="10.0.2.20", xid=5) / DHCP(options=[("message-type", "inform"), "end"]))
    inform = DhcpMessage.parse(raw)
    ack = make_reply(inform, DhcpMessageType.ACK, server_id=A("10.0.2.2"))
    assert ack.ciaddr == A("10.0.2.20") and ack.option(DhcpOption.LEASE_TIME) is None
    nak = make_nak(inform, A("10.0.2.2"), "wrong network")
    assert DhcpMessage.parse(nak.emit()).message_type == DhcpMessageType.NAK
    assert nak.option(DhcpOption.MESSAGE) == b"wrong network"


def test_long_option_split_and_concatenated() -> None:
    # RFC 3396: an option over 255 bytes travels as several instances.
    msg = DhcpMessage(1, 7, GUEST_MAC, ((DhcpOption.DNS, bytes(range(256)) * 2),))
    raw = msg.emit()
    assert DhcpMessage.parse(raw) == msg


def test_pad_options_and_missing_end() -> None:
    raw = bytes(BOOTP(chaddr=GUEST_MAC) / DHCP(options=[]))[:HEADER_LEN + 4] + b"\x00\x00\x35\x01\x03"
    assert DhcpMessage.parse(raw).message_type == DhcpMessageType.REQUEST


@pytest.mark.parametrize("tail", [b"\x35", b"\x35\x05\x01"], ids=["no-length", "past-end"])
def test_truncated_option(tail: bytes) -> None:
    raw = bytes(BOOTP(chaddr=GUEST_MAC) / DHCP(options=[]))[:HEADER_LEN + 4] + tail
    with pytest.raises(WireError):
        DhcpMessage.parse(raw)


def test_bad_cookie_short_and_hlen() -> None:
    raw = bytearray(discover())
    with pytest.raises(WireError):
        DhcpMessage.parse(raw[:239])
    bad = bytearray(raw)
    bad[HEADER_LEN] = 0
    with pytest.raises(WireError, match="cookie"):
        DhcpMessage.parse(bad)
    bad = bytearray(raw)
    bad[2] = 17
    with pytest.raises(WireError, match="hlen"):
        DhcpMessage.parse(bad)


def test_wrong_length_accessors_are_none() -> None:
    msg = DhcpMessage(1, 1, GUEST_MAC, ((DhcpOption.MESSAGE_TYPE, b""), (DhcpOption.SERVER_ID, b"\x01\x02")))
    assert msg.message_type is None and msg.server_id is None


options = st.dictionaries(st.integers(1, 254), st.binary(max_size=300), max_size=6).map(lambda d: tuple(d.items()))


@FAST
@given(st.builds(DhcpMessage, st.integers(1, 2), u32, st.binary(max_size=16), options, u8, u8, u16,
                 st.booleans(), ip4, ip4, ip4, ip4))
def test_dhcp_roundtrip(msg: DhcpMessage) -> None:
    assert DhcpMessage.parse(msg.emit()) == msg


@FUZZ
@given(st.one_of(st.binary(min_size=236, max_size=300), mutated(discover())))
def test_dhcp_fuzz(buf: bytes) -> None:
    only_wire_error(DhcpMessage.parse, buf)
    try:
        msg = DhcpMessage.parse(buf)
    except WireError:
        return
    _ = (msg.message_type, msg.requested_ip, msg.server_id, msg.client_id, msg.parameter_request_list, msg.hostname)
    assert struct.unpack_from("!I", msg.emit(), 4)[0] == msg.xid
