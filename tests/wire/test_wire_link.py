"""Link layer traces: Ethernet II, ARP (RFC 826) and the virtio_net_hdr."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.l2 import ARP, Dot1Q, Ether
from wire_strategies import FAST, FUZZ, ip4, mac, mutated, only_wire_error, u8, u16

from rootlessnet.wire import WireError
from rootlessnet.wire.arp import ArpOp, ArpPacket
from rootlessnet.wire.ethernet import (
    BROADCAST,
    ETHERTYPE_IPV4,
    ETHERTYPE_VLAN,
    EthernetFrame,
    is_multicast_mac,
    mac_from_str,
    mac_to_str,
)
from rootlessnet.wire.vnet import (
    GSO_ECN,
    GSO_TCPV4,
    NO_OFFLOAD_HDR,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VNET_HDR,
    VnetHeader,
)

GUEST_MAC = "52:54:00:12:34:56"
GW_MAC = "52:55:0a:00:02:02"


# --- Ethernet -----------------------------------------------------------------


def test_ethernet_known_answer_from_scapy() -> None:
    raw = bytes(Ether(dst=GW_MAC, src=GUEST_MAC, type=0x0800) / b"payload!")
    frame = EthernetFrame.parse(raw)
    assert frame.dst == mac_from_str(GW_MAC) and frame.src == mac_from_str(GUEST_MAC)
    assert frame.ethertype == ETHERTYPE_IPV4 and frame.payload == b"payload!"
    assert frame.emit() == raw and frame.buffer_len == len(raw)


def test_vlan_tag_is_kept_as_unknown_ethertype() -> None:
    raw = bytes(Ether(dst=GW_MAC, src=GUEST_MAC) / Dot1Q(vlan=5) / b"x")
    frame = EthernetFrame.parse(raw)
    assert frame.ethertype == ETHERTYPE_VLAN
    assert frame.emit() == raw


def test_unknown_ethertype_kept() -> None:
    frame = EthernetFrame.parse(bytes(12) + b"\x88\xcc" + b"lldp")
    assert frame.ethertype == 0x88CC and frame.emit()[12:14] == b"\x88\xcc"


@pytest.mark.parametrize("n", range(14))
def test_ethernet_truncated(n: int) -> None:
    with pytest.raises(WireError):
        EthernetFrame.parse(bytes(n))


def test_mac_helpers() -> None:
    assert mac_to_str(mac_from_str("52-54-00-12-34-56")) == GUEST_MAC
    assert mac_to_str(BROADCAST) == "ff:ff:ff:ff:ff:ff"
    assert is_multicast_mac(BROADCAST) and is_multicast_mac(b"\x33\x33\0\0\0\1")
    assert not is_multicast_mac(mac_from_str(GUEST_MAC))
    for bad in ("", "52:54:00:12:34", "52:54:00:12:34:zz", "525400123456"):
        with pytest.raises(ValueError):
            mac_from_str(bad)


def test_constructor_rejects_misuse() -> None:
    with pytest.raises(ValueError):
        EthernetFrame(b"\0" * 5, b"\0" * 6, 0x800)
    with pytest.raises(ValueError):
        EthernetFrame(b"\0" * 6, b"\0" * 6, 0x10000)


@FAST
@given(mac, mac, u16, st.binary(max_size=100))
def test_ethernet_roundtrip(dst: bytes, src: bytes, et: int, data: bytes) -> None:
    frame = EthernetFrame(dst, src, et, data)
    assert EthernetFrame.parse(frame.emit()) == frame
    assert EthernetFrame.parse(memoryview(frame.emit())) == frame


# --- ARP ----------------------------------------------------------------------


def test_arp_request_from_scapy_and_our_reply() -> None:
    # The guest asks for the gateway; Ethernet pads the frame to 60 bytes.
    raw = bytes(ARP(op=1, hwsrc=GUEST_MAC, psrc="10.0.2.100", pdst="10.0.2.2")) + bytes(18)
    req = ArpPacket.parse(raw)
    assert req.op == ArpOp.REQUEST
    assert req.sha == mac_from_str(GUEST_MAC)
    assert req.spa == bytes([10, 0, 2, 100]) and req.tpa == bytes([10, 0, 2, 2])
    assert req.tha == bytes(6) and not req.is_gratuitous
    reply = req.reply(mac_from_str(GW_MAC))
    expect = ARP(op=2, hwsrc=GW_MAC, psrc="10.0.2.2", hwdst=GUEST_MAC, pdst="10.0.2.100")
    assert reply.emit() == bytes(expect)


def test_arp_request_builder_matches_scapy() -> None:
    ours = ArpPacket.request(mac_from_str(GW_MAC), bytes([10, 0, 2, 2]), bytes([10, 0, 2, 100]))
    assert ours.emit() == bytes(ARP(op=1, hwsrc=GW_MAC, psrc="10.0.2.2", hwdst="00:00:00:00:00:00", pdst="10.0.2.100"))


def test_arp_unknown_op_kept() -> None:
    raw = bytes(ARP(op=3, hwsrc=GUEST_MAC, psrc="10.0.2.100", pdst="10.0.2.2"))
    assert ArpPacket.parse(raw).op == 3


@pytest.mark.parametrize(
    "layer",
    [ARP(hwtype=6), ARP(ptype=0x86DD, plen=4), ARP(hwlen=8), ARP(plen=16)],
    ids=["htype", "ptype", "hlen", "plen"],
)
def test_arp_rejects_non_ethernet_ipv4(layer) -> None:
    raw = bytes(layer)[:28].ljust(28, b"\0")
    with pytest.raises(WireError):
        ArpPacket.parse(raw)


def test_arp_truncated() -> None:
    raw = bytes(ARP())
    with pytest.raises(WireError):
        ArpPacket.parse(raw[:27])


@FAST
@given(st.integers(0, 0xFFFF), mac, ip4, mac, ip4)
def test_arp_roundtrip(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    pkt = ArpPacket(op, sha, spa, tha, tpa)
    assert ArpPacket.parse(pkt.emit()) == pkt


# --- virtio_net_hdr -----------------------------------------------------------


def test_vnet_known_bytes() -> None:
    # A TSO super-frame as the kernel hands it over (little-endian fields).
    hdr = VnetHeader(VIRTIO_NET_HDR_F_NEEDS_CSUM, GSO_TCPV4, 66, 1460, 34, 16)
    raw = hdr.emit()
    assert raw == bytes([1, 1, 66, 0, 0xB4, 0x05, 34, 0, 16, 0])
    assert VNET_HDR.unpack(raw) == (1, 1, 66, 1460, 34, 16)
    back = VnetHeader.parse(raw + b"frame")
    assert back == hdr and back.needs_csum and not back.data_valid and back.gso == GSO_TCPV4


def test_vnet_no_offload_and_ecn() -> None:
    assert VnetHeader.parse(NO_OFFLOAD_HDR) == VnetHeader()
    h = VnetHeader(gso_type=GSO_TCPV4 | GSO_ECN)
    assert h.ecn and h.gso == GSO_TCPV4
    with pytest.raises(WireError):
        VnetHeader.parse(bytes(9))


@FAST
@given(st.tuples(u8, u8, u16, u16, u16, u16))
def test_vnet_roundtrip(fields: tuple[int, ...]) -> None:
    hdr = VnetHeader(*fields)
    assert VnetHeader.parse(hdr.emit()) == hdr


# --- fuzz ---------------------------------------------------------------------

ARP_SEED = bytes(ARP(op=1, hwsrc=GUEST_MAC, psrc="10.0.2.100", pdst="10.0.2.2"))


@FUZZ
@given(st.one_of(st.binary(max_size=80), mutated(ARP_SEED)))
def test_link_fuzz_only_wire_error(buf: bytes) -> None:
    for parse in (EthernetFrame.parse, ArpPacket.parse, VnetHeader.parse):
        only_wire_error(parse, buf)
