"""Wire layer, ARP for Ethernet/IPv4 (RFC 826): 28-byte packets.

Contract: ``ArpPacket.parse(buf)`` accepts only htype 1 (Ethernet), ptype
0x0800, hlen 6, plen 4 and raises WireError otherwise; the operation is a
plain int so unknown opcodes (RARP 3/4, InARP ...) are kept for the caller
to ignore.  Trailing bytes (Ethernet padding to 60 bytes) are ignored.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from rootlessnet.wire import WireError

__all__ = ["HEADER", "PACKET_LEN", "ArpOp", "ArpPacket"]

#: htype ptype hlen plen op sha spa tha tpa (RFC 826 "Packet format")
HEADER = struct.Struct("!HHBBH6s4s6s4s")
PACKET_LEN = HEADER.size  # 28

HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800


class ArpOp(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


@dataclass(frozen=True, slots=True)
class ArpPacket:
    op: int
    sha: bytes  # sender hardware address
    spa: bytes  # sender protocol address
    tha: bytes  # target hardware address (zero in requests)
    tpa: bytes  # target protocol address

    header_len = PACKET_LEN
    buffer_len = PACKET_LEN

    def __post_init__(self) -> None:
        if len(self.sha) != 6 or len(self.tha) != 6:
            raise ValueError("ARP hardware addresses must be 6 bytes")
        if len(self.spa) != 4 or len(self.tpa) != 4:
            raise ValueError("ARP protocol addresses must be 4 bytes")
        if not 0 <= self.op <= 0xFFFF:
            raise ValueError(f"ARP op out of range: {self.op}")

    @classmethod
    def parse(cls, buf) -> "ArpPacket":
        if len(buf) < PACKET_LEN:
            raise WireError(f"arp: {len(buf)} bytes is shorter than 28")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = HEADER.unpack_from(buf)
        if htype != HTYPE_ETHERNET or ptype != PTYPE_IPV4 or hlen != 6 or plen != 4:
            raise WireError(
                f"arp: not Ethernet/IPv4 (htype={htype} ptype={ptype:#06x} hlen={hlen} plen={plen})"
            )
        return cls(op, sha, spa, tha, tpa)

    @classmethod
    def request(cls, sha: bytes, spa: bytes, tpa: bytes) -> "ArpPacket":
        """Who has ``tpa``? Tell ``spa`` (tha is zero, RFC 826)."""
        return cls(ArpOp.REQUEST, sha, spa, bytes(6), tpa)

    def reply(self, mac: bytes) -> "ArpPacket":
        """The answer to this request when ``tpa`` is ours at ``mac``.

        RFC 826 "Packet Reception": swap hardware and protocol fields, put
        the local addresses in the sender fields, set the opcode to reply.
        """
        return ArpPacket(ArpOp.REPLY, mac, self.tpa, self.sha, self.spa)

    @property
    def is_gratuitous(self) -> bool:
        """Announcement: the sender asks for (or announces) its own address."""
        return self.spa == self.tpa

    def emit(self) -> bytes:
        return HEADER.pack(
            HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, self.op, self.sha, self.spa, self.tha, self.tpa
        )
