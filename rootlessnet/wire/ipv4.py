"""Wire layer, IPv4 header with options (RFC 791): bytes <-> Ipv4Packet.

Contract: ``Ipv4Packet.parse(buf)`` raises only WireError.  ``buf`` may be
longer than the datagram (Ethernet pads short frames to 60 bytes): the
payload is exactly the bytes up to ``total_length``.  ``emit()`` always
computes the header checksum.  The protocol number is a plain int (unknown
ones are kept); the reserved flag bit is ignored on input, as Linux does.

Hot path: ``HEADER`` and the ``OFF_*`` offsets let the engine read and
patch headers in place with ``unpack_from``/``pack_into``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rootlessnet.wire import WireError
from rootlessnet.wire.checksum import internet_checksum, ones_sum

__all__ = [
    "HEADER",
    "MIN_HEADER_LEN",
    "MAX_HEADER_LEN",
    "OFF_TOTAL_LEN",
    "OFF_FLAGS_FRAG",
    "OFF_TTL",
    "OFF_PROTO",
    "OFF_CHECKSUM",
    "OFF_SRC",
    "OFF_DST",
    "FLAG_DF",
    "FLAG_MF",
    "Ipv4Packet",
    "header_checksum",
]

#: ver_ihl tos total_length ident flags_frag ttl proto checksum src dst (RFC 791 3.1)
HEADER = struct.Struct("!BBHHHBBH4s4s")
MIN_HEADER_LEN = HEADER.size  # 20
MAX_HEADER_LEN = 60  # IHL is 4 bits of 32-bit words
OFF_TOTAL_LEN = 2
OFF_FLAGS_FRAG = 6
OFF_TTL = 8
OFF_PROTO = 9
OFF_CHECKSUM = 10
OFF_SRC = 12
OFF_DST = 16

FLAG_RESERVED = 0x8000
FLAG_DF = 0x4000
FLAG_MF = 0x2000
FRAG_MASK = 0x1FFF  # offset in 8-octet units


def header_checksum(header) -> int:
    """Checksum of an IPv4 header whose checksum field reads zero."""
    return internet_checksum(header)


@dataclass(frozen=True, slots=True)
class Ipv4Packet:
    src: bytes
    dst: bytes
    proto: int
    payload: bytes = b""
    ttl: int = 64
    tos: int = 0  # DSCP (6 bits) + ECN (2 bits), RFC 2474 / RFC 3168
    ident: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    frag_offset: int = 0  # in bytes (a multiple of 8), not 8-octet units
    options: bytes = b""  # raw options, padded to a multiple of 4 (RFC 791 3.1)

    def __post_init__(self) -> None:
        if len(self.src) != 4 or len(self.dst) != 4:
            raise ValueError("IPv4 addresses must be 4 bytes")
        if len(self.options) % 4 or len(self.options) > 40:
            raise ValueError("IPv4 options must be a multiple of 4 bytes, at most 40")
        if self.frag_offset % 8 or not 0 <= self.frag_offset <= FRAG_MASK * 8:
            raise ValueError(f"fragment offset must be a multiple of 8 below 65536: {self.frag_offset}")
        if not (0 <= self.proto <= 255 and 0 <= self.ttl <= 255 and 0 <= self.tos <= 255):
            raise ValueError("proto, ttl and tos are single octets")
        if not 0 <= self.ident <= 0xFFFF:
            raise ValueError(f"ident out of range: {self.ident}")
        if self.header_len + len(self.payload) > 0xFFFF:
            raise ValueError("IPv4 datagram longer than 65535 bytes")

    @classmethod
    def parse(cls, buf, verify_checksum: bool = True) -> "Ipv4Packet":
        n = len(buf)
        if n < MIN_HEADER_LEN:
            raise WireError(f"ipv4: {n} bytes is shorter than the 20-byte header")
        ver_ihl, tos, total_length, ident, flags_frag, ttl, proto, _csum, src, dst = (
            HEADER.unpack_from(buf)
        )
        if ver_ihl >> 4 != 4:
            raise WireError(f"ipv4: version {ver_ihl >> 4}")
        ihl = (ver_ihl & 0x0F) * 4
        if ihl < MIN_HEADER_LEN:
            raise WireError(f"ipv4: IHL {ihl} bytes is below 20")
        # RFC 1122 3.2.1.1/3.2.1.2: silently discard bad length or checksum.
        if total_length < ihl:
            raise WireError(f"ipv4: total length {total_length} < header length {ihl}")
        if total_length > n:
            raise WireError(f"ipv4: total length {total_length} > {n} bytes received")
        if verify_checksum and ones_sum(buf[:ihl]) != 0xFFFF:
            raise WireError("ipv4: bad header checksum")
        return cls(
            src=src,
            dst=dst,
            proto=proto,
            payload=bytes(buf[ihl:total_length]),
            ttl=ttl,
            tos=tos,
            ident=ident,
            dont_fragment=bool(flags_frag & FLAG_DF),
            more_fragments=bool(flags_frag & FLAG_MF),
            frag_offset=(flags_frag & FRAG_MASK) * 8,
            options=bytes(buf[MIN_HEADER_LEN:ihl]),
        )

    @property
    def header_len(self) -> int:
        return MIN_HEADER_LEN + len(self.options)

    @property
    def total_length(self) -> int:
        return self.header_len + len(self.payload)

    buffer_len = total_length

    @property
    def is_fragment(self) -> bool:
        """Part of a fragmented datagram (RFC 791 3.2): MF set or offset non-zero."""
        return self.more_fragments or self.frag_offset != 0

    def emit_header(self) -> bytes:
        """The header alone (checksum filled in); handy for ICMP error quotes."""
        ihl = self.header_len
        flags_frag = (
            (FLAG_DF if self.dont_fragment else 0)
            | (FLAG_MF if self.more_fragments else 0)
            | (self.frag_offset // 8)
        )
        hdr = bytearray(ihl)
        HEADER.pack_into(
            hdr, 0, 0x40 | (ihl // 4), self.tos, ihl + len(self.payload), self.ident,
            flags_frag, self.ttl, self.proto, 0, self.src, self.dst,
        )
        hdr[MIN_HEADER_LEN:] = self.options
        struct.pack_into("!H", hdr, OFF_CHECKSUM, internet_checksum(hdr))
        return bytes(hdr)

    def emit(self) -> bytes:
        return self.emit_header() + self.payload
