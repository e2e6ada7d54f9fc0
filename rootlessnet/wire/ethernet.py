"""Wire layer, Ethernet II frames (IEEE 802.3 / RFC 894): 14-byte header + payload.

Contract: ``EthernetFrame.parse(buf)`` raises only WireError; ethertypes are
plain ints so unknown ones (VLAN 0x8100, LLDP ...) are kept, not rejected.
The frame check sequence is never present on a tap device.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from rootlessnet.wire import WireError

__all__ = [
    "HEADER",
    "HEADER_LEN",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_ARP",
    "ETHERTYPE_IPV6",
    "ETHERTYPE_VLAN",
    "EtherType",
    "BROADCAST",
    "EthernetFrame",
    "mac_to_str",
    "mac_from_str",
    "is_multicast_mac",
]

#: dst(6) src(6) ethertype(2)
HEADER = struct.Struct("!6s6sH")
HEADER_LEN = HEADER.size  # 14

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100  # IEEE 802.1Q tag: kept as an unknown type, not parsed

BROADCAST = b"\xff" * 6


class EtherType(enum.IntEnum):
    IPV4 = ETHERTYPE_IPV4
    ARP = ETHERTYPE_ARP
    IPV6 = ETHERTYPE_IPV6
    VLAN = ETHERTYPE_VLAN


def mac_to_str(mac: bytes) -> str:
    if len(mac) != 6:
        raise ValueError(f"MAC address must be 6 bytes, got {len(mac)}")
    return ":".join(f"{b:02x}" for b in mac)


def mac_from_str(text: str) -> bytes:
    """Parse ``aa:bb:cc:dd:ee:ff`` (``-`` also accepted) into 6 bytes."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None


def is_multicast_mac(mac: bytes) -> bool:
    """Group bit (I/G, least significant bit of the first octet); broadcast included."""
    return bool(mac[0] & 1)


@dataclass(frozen=True, slots=True)
class EthernetFrame:
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes = b""

    header_len = HEADER_LEN

    def __post_init__(self) -> None:
        if len(self.dst) != 6 or len(self.src) != 6:
            raise ValueError("MAC addresses must be 6 bytes")
        if not 0 <= self.ethertype <= 0xFFFF:
            raise ValueError(f"ethertype out of range: {self.ethertype}")

    @classmethod
    def parse(cls, buf) -> "EthernetFrame":
        if len(buf) < HEADER_LEN:
            raise WireError(f"ethernet: {len(buf)} bytes is shorter than the 14-byte header")
        dst, src, ethertype = HEADER.unpack_from(buf)
        return cls(dst, src, ethertype, bytes(buf[HEADER_LEN:]))

    @property
    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.payload)

    def emit(self) -> bytes:
        return HEADER.pack(self.dst, self.src, self.ethertype) + self.payload
