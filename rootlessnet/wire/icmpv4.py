"""Wire layer, ICMP for IPv4 (RFC 792): type, code, checksum, 4-byte rest, data.

Contract: ``Icmpv4Message.parse(buf)`` raises only WireError (truncated, or
bad checksum when ``verify_checksum``).  Types and codes are plain ints so
unknown ones are kept.  Error builders quote the invoking datagram as RFC
1812 4.3.2.3 asks: as much as fits without the ICMP datagram exceeding 576
bytes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from rootlessnet.wire import WireError
from rootlessnet.wire.checksum import internet_checksum, ones_sum

__all__ = [
    "HEADER",
    "HEADER_LEN",
    "ECHO",
    "MAX_QUOTE",
    "Icmpv4Type",
    "UnreachCode",
    "Icmpv4Message",
    "echo_request",
    "echo_reply",
    "dest_unreachable",
    "time_exceeded",
]

#: type code checksum rest-of-header(4)
HEADER = struct.Struct("!BBH4s")
HEADER_LEN = HEADER.size  # 8
#: rest-of-header of echo request/reply: identifier, sequence number
ECHO = struct.Struct("!HH")

# RFC 1812 4.3.2.3: the whole ICMP error datagram stays within 576 bytes:
# 576 - IPv4 header (20, we never add options) - ICMP header (8).
MAX_QUOTE = 576 - 20 - HEADER_LEN


class Icmpv4Type(enum.IntEnum):
    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    SOURCE_QUENCH = 4
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAMETER_PROBLEM = 12
    TIMESTAMP = 13
    TIMESTAMP_REPLY = 14


class UnreachCode(enum.IntEnum):
    NET = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3
    FRAG_NEEDED = 4  # RFC 1191: next-hop MTU in the low 16 bits of rest
    SOURCE_ROUTE_FAILED = 5
    NET_UNKNOWN = 6
    HOST_UNKNOWN = 7
    NET_PROHIBITED = 9
    HOST_PROHIBITED = 10
    ADMIN_PROHIBITED = 13  # RFC 1812 5.2.7.1


ERROR_TYPES = frozenset(
    {Icmpv4Type.DEST_UNREACHABLE, Icmpv4Type.SOURCE_QUENCH, Icmpv4Type.REDIRECT,
     Icmpv4Type.TIME_EXCEEDED, Icmpv4Type.PARAMETER_PROBLEM}
)


@dataclass(frozen=True, slots=True)
class Icmpv4Message:
    type: int
    code: int
    rest: bytes = bytes(4)  # "rest of header": echo id/seq, MTU, pointer, gateway
    data: bytes = b""

    header_len = HEADER_LEN

    def __post_init__(self) -> None:
        if not (0 <= self.type <= 255 and 0 <= self.code <= 255):
            raise ValueError("ICMP type and code are single octets")
        if len(self.rest) != 4:
            raise ValueError("ICMP rest-of-header is 4 bytes")

    @classmethod
    def parse(cls, buf, verify_checksum: bool = True) -> "Icmpv4Message":
        if len(buf) < HEADER_LEN:
            raise WireError(f"icmpv4: {len(buf)} bytes is shorter than 8")
        # RFC 792: the checksum covers the whole ICMP message.
        if verify_checksum and ones_sum(buf) != 0xFFFF:
            raise WireError("icmpv4: bad checksum")
        t, c, _csum, rest = HEADER.unpack_from(buf)
        return cls(t, c, rest, bytes(buf[HEADER_LEN:]))

    @property
    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.data)

    @property
    def is_error(self) -> bool:
        """An error message (RFC 1122 3.2.2): never answered with another error."""
        return self.type in ERROR_TYPES

    @property
    def ident(self) -> int:
        """Echo identifier (meaningful for echo request/reply only)."""
        return ECHO.unpack(self.rest)[0]

    @property
    def seq(self) -> int:
        """Echo sequence number (meaningful for echo request/reply only)."""
        return ECHO.unpack(self.rest)[1]

    @property
    def next_hop_mtu(self) -> int:
        """RFC 1191 4: next-hop MTU of a Fragmentation Needed message."""
        return struct.unpack("!H", self.rest[2:])[0]

    def emit(self) -> bytes:
        body = bytearray(HEADER.pack(self.type, self.code, 0, self.rest))
        body += self.data
        struct.pack_into("!H", body, 2, internet_checksum(body))
        return bytes(body)


def echo_request(ident: int, seq: int, data: bytes = b"") -> Icmpv4Message:
    return Icmpv4Message(Icmpv4Type.ECHO_REQUEST, 0, ECHO.pack(ident, seq), bytes(data))


def echo_reply(ident: int, seq: int, data: bytes = b"") -> Icmpv4Message:
    """RFC 792 "Echo or Echo Reply Message": id, seq and data are echoed."""
    return Icmpv4Message(Icmpv4Type.ECHO_REPLY, 0, ECHO.pack(ident, seq), bytes(data))


def _quote(original: bytes) -> bytes:
    # RFC 792 asks for the IP header + 64 bits; RFC 1812 4.3.2.3 for as much
    # as fits in 576 bytes.  The caller passes the whole invoking datagram.
    return bytes(original[:MAX_QUOTE])


def dest_unreachable(code: int, original: bytes, mtu: int = 0) -> Icmpv4Message:
    """Destination Unreachable quoting ``original`` (the invoking IPv4 datagram).

    ``mtu`` is the next-hop MTU for code 4 (RFC 1191 4); zero otherwise.
    """
    return Icmpv4Message(Icmpv4Type.DEST_UNREACHABLE, code, struct.pack("!HH", 0, mtu), _quote(original))


def time_exceeded(code: int, original: bytes) -> Icmpv4Message:
    """Time Exceeded (code 0: TTL exceeded in transit, 1: reassembly)."""
    return Icmpv4Message(Icmpv4Type.TIME_EXCEEDED, code, bytes(4), _quote(original))
