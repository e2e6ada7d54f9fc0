"""FrameBuilder: outgoing Ethernet/IP/L4 headers, checked by scapy (wire.frames)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, defragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, defragment6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from rootlessnet.wire.frames import GSO_TCPV4, GSO_TCPV6, NEEDS_CSUM, NO_VNET, VNET, FrameBuilder
from rootlessnet.wire.checksum import ones_sum

SRC_MAC = bytes.fromhex("525500000002")
DST_MAC = bytes.fromhex("525400123456")
S4, D4 = ipaddress.IPv4Address("192.0.2.1").packed, ipaddress.IPv4Address("10.0.2.100").packed
S6, D6 = ipaddress.IPv6Address("2001:db8::1").packed, ipaddress.IPv6Address("fd00::100").packed


def fb(vnet: bool = False, offload: bool = False) -> FrameBuilder:
    return FrameBuilder(SRC_MAC, DST_MAC, vnet=vnet, offload=offload)


def split_vnet(frame: bytes, vnet: bool):
    return (VNET.unpack_from(frame, 0), Ether(frame[10:])) if vnet else (None, Ether(frame))


def recomputed(pkt, *layers):
    again = pkt.copy()
    for cls in layers:
        del again[cls].chksum
    return Ether(bytes(again))


def finish(frame: bytes) -> bytes:
    """The device's half of NEEDS_CSUM."""
    flags, _t, _h, _s, start, off = VNET.unpack_from(frame, 0)
    assert flags & NEEDS_CSUM
    raw = bytearray(frame[10:])
    raw[start + off : start + off + 2] = struct.pack("!H", 0xFFFF - ones_sum(raw[start:]))
    return bytes(raw)


# ----------------------------------------------------------------- TCP

@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("payload", [b"", b"x", b"hello world" * 3])
def test_tcp_full_checksum(v6: bool, payload: bytes) -> None:
    b = fb()
    src, dst = (S6, D6) if v6 else (S4, D4)
    opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07"
    hdr = b.tcp(src, dst, 80, 40000, 1000, 2000, 0x12, 65535, opts, payload, 1460)
    p = Ether(hdr + payload)
    L3 = IPv6 if v6 else IP
    assert p[Ether].src == "52:55:00:00:00:02" and p[Ether].dst == "52:54:00:12:34:56"
    t = p[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, str(t.flags), t.window) == (80, 40000, 1000, 2000, "SA", 65535)
    assert dict(t.options) == {"MSS": 1460, "NOP": None, "WScale": 7}
    assert bytes(t.payload) == payload
    layers = (TCP,) if v6 else (IP, TCP)
    again = recomputed(p, *layers)
    assert again[TCP].chksum == t.chksum
    if not v6:
        assert again[IP].chksum == p[IP].chksum and p[IP].flags == "DF" and p[IP].ttl == 64
    assert p[L3].src == str(ipaddress.ip_address(src))


@pytest.mark.parametrize("v6", [False, True])
def test_tcp_offload_partial_checksum_and_gso(v6: bool) -> None:
    b = fb(vnet=True, offload=True)
    src, dst = (S6, D6) if v6 else (S4, D4)
    payload = bytes(range(256)) * 20  # 5120 > mss
    hdr = b.tcp(src, dst, 80, 40000, 1, 2, 0x18, 100, b"", payload, 1000)
    vh, p = split_vnet(hdr + payload, True)
    l4 = 14 + (40 if v6 else 20)
    assert vh == (NEEDS_CSUM, GSO_TCPV6 if v6 else GSO_TCPV4, l4 + 20, 1000, l4, 16)
    proto = struct.pack("!IxxxB", 20 + len(payload), 6) if v6 else struct.pack("!xBH", 6, 20 + len(payload))
    assert p[TCP].chksum == ones_sum(src + dst + proto)
    done = Ether(finish(hdr + payload))
    assert recomputed(done, TCP)[TCP].chksum == done[TCP].chksum
    # at or below the MSS: no GSO, still NEEDS_CSUM
    hdr = b.tcp(src, dst, 80, 40000, 1, 2, 0x18, 100, b"", payload[:1000], 1000)
    assert VNET.unpack_from(hdr, 0) == (NEEDS_CSUM, 0, 0, 0, l4, 16)


def test_tcp_vnet_without_offload_zero_header() -> None:
    b = fb(vnet=True, offload=False)
    hdr = b.tcp(S4, D4, 80, 40000, 1, 2, 0x10, 100, b"", b"abc", 1460)
    assert hdr[:10] == NO_VNET
    p = Ether(hdr[10:] + b"abc")
    assert recomputed(p, TCP)[TCP].chksum == p[TCP].chksum


def test_offload_ignored_without_vnet() -> None:
    b = fb(vnet=False, offload=True)
    hdr = b.tcp(S4, D4, 80, 40000, 1, 2, 0x10, 100, b"", b"abc", 1460)
    p = Ether(hdr + b"abc")
    assert recomputed(p, TCP)[TCP].chksum == p[TCP].chksum


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 65535),
       st.booleans())
def test_tcp_checksum_property(payload: bytes, seq: int, ack: int, win: int, v6: bool) -> None:
    src, dst = (S6, D6) if v6 else (S4, D4)
    hdr = fb().tcp(src, dst, 1, 2, seq, ack, 0x18, win, b"", payload, 1460)
    p = Ether(hdr + payload)
    assert (p[TCP].seq, p[TCP].ack, p[TCP].window) == (seq, ack, win)
    assert recomputed(p, TCP)[TCP].chksum == p[TCP].chksum


def test_ip_id_increments_and_wraps() -> None:
    b = fb()
    ids = [IP(b.ip4_header(S4, D4, 17, 8)).id for _ in range(3)]
    assert ids == [1, 2, 3]
    b._ip_id = 0xFFFF
    assert IP(b.ip4_header(S4, D4, 17, 8)).id == 0


# ----------------------------------------------------------------- UDP

@pytest.mark.parametrize("vnet", [False, True])
def test_udp_single_frame(vnet: bool) -> None:
    (f,) = fb(vnet=vnet, offload=vnet).udp_frames(S4, D4, 53, 5000, b"answer", 1500)
    vh, p = split_vnet(f, vnet)
    if vnet:
        assert vh == (0, 0, 0, 0, 0, 0)  # UDP is always fully checksummed
    assert (p[UDP].sport, p[UDP].dport, p[UDP].len, bytes(p[UDP].payload)) == (53, 5000, 14, b"answer")
    again = recomputed(p, IP, UDP)
    assert again[UDP].chksum == p[UDP].chksum and again[IP].chksum == p[IP].chksum


def test_udp_checksum_zero_sent_as_ffff() -> None:
    # find a payload whose checksum computes to 0: RFC 768 says transmit all ones
    base = fb().udp_frames(S4, D4, 1, 2, b"\x00\x00", 1500)[0]
    ck = Ether(base)[UDP].chksum
    # adding (ck) into the payload word moves the complement sum to 0xFFFF -> checksum 0
    payload = struct.pack("!H", ck)
    (f,) = fb().udp_frames(S4, D4, 1, 2, payload, 1500)
    p = Ether(f)
    assert p[UDP].chksum == 0xFFFF
    assert recomputed(p, UDP)[UDP].chksum in (0, 0xFFFF)  # scapy agrees it is a valid "zero"


@pytest.mark.parametrize("size", [1472, 1473, 2960, 4000, 65000])
def test_udp_ipv4_fragments_reassemble(size: int) -> None:
    payload = bytes(i % 253 for i in range(size))
    frames = fb().udp_frames(S4, D4, 53, 5000, payload, 1500)
    ips = [IP(bytes(Ether(f)[IP])) for f in frames]
    assert all(len(bytes(ip)) <= 1500 for ip in ips)
    if size <= 1472:
        assert len(ips) == 1 and ips[0].flags == "DF"
        return
    assert len({ip.id for ip in ips}) == 1
    assert all(ip.frag * 8 % 8 == 0 for ip in ips)
    assert [bool(ip.flags.MF) for ip in ips] == [True] * (len(ips) - 1) + [False]
    for ip in ips:
        again = ip.copy()
        del again.chksum
        assert IP(bytes(again)).chksum == ip.chksum
    (whole,) = defragment(ips)
    whole = IP(bytes(whole))
    assert bytes(whole[UDP].payload) == payload and whole[UDP].len == 8 + size
    again = whole.copy()
    del again[UDP].chksum
    assert IP(bytes(again))[UDP].chksum == whole[UDP].chksum


def test_udp_ipv6_fragments_reassemble() -> None:
    payload = b"y" * 4000
    frames = fb().udp_frames(S6, D6, 53, 5000, payload, 1500)
    pkts = [IPv6(bytes(Ether(f)[IPv6])) for f in frames]
    assert len(pkts) == 3 and all(len(bytes(p)) <= 1500 for p in pkts)
    assert all(p.haslayer(IPv6ExtHdrFragment) for p in pkts)
    assert len({p[IPv6ExtHdrFragment].id for p in pkts}) == 1
    assert [p[IPv6ExtHdrFragment].m for p in pkts] == [1, 1, 0]
    whole = IPv6(bytes(defragment6(pkts)))
    assert bytes(whole[UDP].payload) == payload
    again = whole.copy()
    del again[UDP].chksum
    assert IPv6(bytes(again))[UDP].chksum == whole[UDP].chksum


def test_udp_explicit_dst_mac() -> None:
    (f,) = fb().udp_frames(S4, b"\xff" * 4, 67, 68, b"offer", 1500, dst_mac=b"\xff" * 6)
    assert Ether(f).dst == "ff:ff:ff:ff:ff:ff"


# ----------------------------------------------------------------- raw IP and L2

def test_ip_frame_v4_and_v6() -> None:
    b = fb(vnet=True)
    msg = bytes(ICMP(type=0, id=1, seq=2) / Raw(b"x"))
    f = b.ip_frame(S4, D4, 1, msg)
    assert f[:10] == NO_VNET
    p = Ether(f[10:])
    assert p[ICMP].id == 1 and recomputed(p, IP)[IP].chksum == p[IP].chksum
    f6 = b.ip_frame(S6, D6, 58, b"\x81\x00\x00\x00\x00\x01\x00\x02", dst_mac=b"\x33\x33\x00\x00\x00\x01",
                    hop_limit=255)
    p6 = Ether(f6[10:])
    assert p6.dst == "33:33:00:00:00:01" and p6[IPv6].hlim == 255 and p6[IPv6].nh == 58 and p6[IPv6].plen == 8


def test_l2_frame() -> None:
    arp = bytes(ARP(op=2, hwsrc="52:55:00:00:00:02", psrc="10.0.2.2"))
    p = Ether(fb().l2_frame(DST_MAC, 0x0806, arp))
    assert p.type == 0x0806 and p[ARP].op == 2 and p.src == "52:55:00:00:00:02"
