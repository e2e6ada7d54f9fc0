"""Fuzzing the wire codecs directly: every frame the guest sends is also parsed layer by layer
with rootlessnet.wire, whose contract is that ``parse`` raises WireError and nothing else
(rootlessnet/wire/__init__.py). The core parses most headers itself on its hot path; this
covers the codecs it does not call for every frame (IPv4/IPv6/extension headers, TCP/UDP/ICMP
objects, ARP, virtio header) and the application parsers on whatever arrives at their ports.
"""

from __future__ import annotations

import traceback

from rootlessnet.wire import WireError
from rootlessnet.wire.arp import ArpPacket
from rootlessnet.wire.dhcp import DhcpMessage
from rootlessnet.wire.dns import DnsMessage, tcp_deframe
from rootlessnet.wire.ethernet import EthernetFrame
from rootlessnet.wire.icmpv4 import Icmpv4Message
from rootlessnet.wire.icmpv6 import parse_icmpv6
from rootlessnet.wire.ipv4 import Ipv4Packet
from rootlessnet.wire.ipv6 import Ipv6Packet
from rootlessnet.wire.tcp import TcpSegment
from rootlessnet.wire.udp import UdpDatagram
from rootlessnet.wire.vnet import VnetHeader

from .invariants import Failure


def check(frame: bytes) -> None:
    """Parse ``frame`` with every codec that applies; anything but WireError is a crash."""
    try:
        _walk(frame)
    except WireError:
        pass
    except Exception as e:  # noqa: BLE001 - the codec contract: only WireError
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{fr.filename.rsplit('rootlessnet/', 1)[-1]}:{fr.lineno}" for fr in reversed(tb)
                      if "/rootlessnet/" in fr.filename), "?")
        raise Failure("crash", f"codec {type(e).__name__} at {where}", "".join(traceback.format_exception(e))) from None


def _walk(frame: bytes) -> None:
    if len(frame) >= 10:
        try:
            VnetHeader.parse(frame)
        except WireError:
            pass
    eth = EthernetFrame.parse(frame)
    body = eth.payload
    if eth.ethertype == 0x0806:
        ArpPacket.parse(body)
        return
    if eth.ethertype == 0x0800:
        ip = Ipv4Packet.parse(body)
        if ip.is_fragment and ip.frag_offset:
            return
        src, dst, proto, l4 = ip.src, ip.dst, ip.proto, ip.payload
    elif eth.ethertype == 0x86DD:
        ip6 = Ipv6Packet.parse(body)
        if ip6.fragment is not None and ip6.fragment.offset:
            return
        src, dst, proto, l4 = ip6.src, ip6.dst, ip6.upper_protocol, ip6.upper_payload
    else:
        return
    if proto == 6:
        seg = TcpSegment.parse(l4, src, dst) if len(l4) < 4096 else TcpSegment.parse(l4)
        if seg.payload and 53 in (seg.src_port, seg.dst_port):
            for msg in tcp_deframe(bytearray(seg.payload))[0]:
                DnsMessage.parse(msg)
    elif proto == 17:
        d = UdpDatagram.parse(l4)
        if 67 in (d.dst_port, d.src_port):
            DhcpMessage.parse(d.payload)
        elif 53 in (d.dst_port, d.src_port):
            DnsMessage.parse(d.payload)
    elif proto == 1:
        Icmpv4Message.parse(l4)
    elif proto == 58:
        parse_icmpv6(l4, src, dst)
