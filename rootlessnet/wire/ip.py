"""Wire layer, shared IP bits: protocol numbers and address text helpers.

Protocol numbers are IANA "Assigned Internet Protocol Numbers".  Codecs
store them as plain ``int`` so unknown numbers survive a parse/emit
round trip; compare against :class:`IpProto` members (they are ints).
"""

from __future__ import annotations

import enum
import ipaddress


__all__ = [
    "IpProto",
    "proto_name",
    "ipv4_to_str",
    "ipv4_from_str",
    "ipv6_to_str",
    "ipv6_from_str",
    "ip_to_str",
]


class IpProto(enum.IntEnum):
    HOPOPT = 0  # IPv6 hop-by-hop options (RFC 8200 4.3)
    ICMP = 1
    TCP = 6
    UDP = 17
    IPV6_ROUTE = 43
    IPV6_FRAG = 44
    ESP = 50
    AH = 51
    ICMPV6 = 58
    IPV6_NONXT = 59
    IPV6_OPTS = 60


def proto_name(proto: int) -> str:
    """Name of a protocol number, or its decimal text when unknown."""
    try:
        return IpProto(proto).name
    except ValueError:
        return str(proto)


def ipv4_to_str(addr: bytes) -> str:
    if len(addr) != 4:
        raise ValueError(f"IPv4 address must be 4 bytes, got {len(addr)}")
    return str(ipaddress.IPv4Address(bytes(addr)))


def ipv4_from_str(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def ipv6_to_str(addr: bytes) -> str:
    if len(addr) != 16:
        raise ValueError(f"IPv6 address must be 16 bytes, got {len(addr)}")
    return str(ipaddress.IPv6Address(bytes(addr)))


def ipv6_from_str(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def ip_to_str(addr: bytes) -> str:
    """Text form of a 4- or 16-byte address."""
    if len(addr) == 4:
        return ipv4_to_str(addr)
    if len(addr) == 16:
        return ipv6_to_str(addr)
    raise ValueError(f"IP address must be 4 or 16 bytes, got {len(addr)}")

