"""Wire layer, IPv6 fixed header and extension-header chain (RFC 8200).

Contract: ``Ipv6Packet.parse(buf)`` raises only WireError.  ``buf`` may be
longer than the packet (Ethernet padding); the payload is exactly
``payload_length`` bytes.  Parsing walks the extension headers (at most
``MAX_EXT_HEADERS``) and exposes the upper-layer protocol, where it starts
in ``payload``, and the Fragment header if one is present.  Unknown next
header values end the walk and are reported as the upper layer (the
caller answers with ICMPv6 Parameter Problem or drops).  The chain is
walked when an ``Ipv6Packet`` is built, so constructing one around a
malformed chain raises WireError too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from rootlessnet.wire import WireError

__all__ = [
    "HEADER",
    "HEADER_LEN",
    "OFF_PAYLOAD_LEN",
    "OFF_NEXT_HEADER",
    "OFF_HOP_LIMIT",
    "OFF_SRC",
    "OFF_DST",
    "MAX_EXT_HEADERS",
    "FRAGMENT_HEADER",
    "Ipv6Fragment",
    "ExtensionChain",
    "Ipv6Packet",
    "walk_extension_headers",
    "solicited_node_multicast",
    "multicast_mac",
    "is_multicast",
    "ALL_NODES",
    "ALL_ROUTERS",
    "UNSPECIFIED",
]

#: ver_tc_flow(4) payload_length next_header hop_limit src dst (RFC 8200 3)
HEADER = struct.Struct("!IHBB16s16s")
HEADER_LEN = HEADER.size  # 40
OFF_PAYLOAD_LEN = 4
OFF_NEXT_HEADER = 6
OFF_HOP_LIMIT = 7
OFF_SRC = 8
OFF_DST = 24

#: next_header reserved offset_flags ident (RFC 8200 4.5)
FRAGMENT_HEADER = struct.Struct("!BBHI")

NH_HOP_BY_HOP = 0
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_ESP = 50
NH_AH = 51
NH_NO_NEXT = 59
NH_DEST_OPTS = 60

# RFC 8200 4.1 lists at most 7 headers in the recommended order (destination
# options twice); anything longer is an attack on the parser, not a packet.
MAX_EXT_HEADERS = 8

ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
UNSPECIFIED = bytes(16)


def is_multicast(addr: bytes) -> bool:
    return addr[0] == 0xFF


def solicited_node_multicast(addr: bytes) -> bytes:
    """ff02::1:ffXX:XXXX for ``addr`` (RFC 4291 2.7.1)."""
    return bytes.fromhex("ff0200000000000000000001ff") + bytes(addr[13:16])


def multicast_mac(addr: bytes) -> bytes:
    """33:33 + low 32 bits of a multicast IPv6 address (RFC 2464 7)."""
    return b"\x33\x33" + bytes(addr[12:16])


@dataclass(frozen=True, slots=True)
class Ipv6Fragment:
    """The Fragment header (RFC 8200 4.5) as found in a packet."""

    next_header: int
    offset: int  # in bytes (a multiple of 8)
    more: bool
    ident: int
    header_offset: int  # where the Fragment header starts, relative to the payload


@dataclass(frozen=True, slots=True)
class ExtensionChain:
    upper_protocol: int  # final next-header value (59 = nothing follows)
    upper_offset: int  # start of the upper-layer data, relative to the payload
    fragment: Ipv6Fragment | None
    headers: tuple[int, ...]  # extension header types walked, in order


def walk_extension_headers(next_header: int, payload) -> ExtensionChain:
    """Follow the next-header chain through ``payload`` (RFC 8200 4).

    Stops at the first non-extension value, at No Next Header (59), at ESP
    (its contents are encrypted), and after a Fragment header whose offset
    is not zero (the rest of the chain is not in this fragment).
    """
    off = 0
    n = len(payload)
    fragment = None
    walked: list[int] = []
    nh = next_header
    while nh in (NH_HOP_BY_HOP, NH_ROUTING, NH_FRAGMENT, NH_AH, NH_DEST_OPTS):
        if len(walked) >= MAX_EXT_HEADERS:
            raise WireError(f"ipv6: more than {MAX_EXT_HEADERS} extension headers")
        if nh == NH_HOP_BY_HOP and walked:
            # RFC 8200 4.3: only immediately after the IPv6 header.
            raise WireError("ipv6: hop-by-hop options header not first")
        if off + 8 > n:
            raise WireError(f"ipv6: extension header {nh} truncated")
        if nh == NH_FRAGMENT:
            nxt, _res, off_flags, ident = FRAGMENT_HEADER.unpack_from(payload, off)
            fragment = Ipv6Fragment(nxt, off_flags & 0xFFF8, bool(off_flags & 1), ident, off)
            length = 8
        elif nh == NH_AH:
            # RFC 4302 2.2: payload length in 4-octet units, minus 2.
            nxt, hlen = payload[off], payload[off + 1]
            length = (hlen + 2) * 4
        else:
            # Hdr Ext Len in 8-octet units, not counting the first 8 (RFC 8200 4.3).
            nxt, hlen = payload[off], payload[off + 1]
            length = (hlen + 1) * 8
        if off + length > n:
            raise WireError(f"ipv6: extension header {nh} runs past the payload")
        walked.append(nh)
        off += length
        nh = nxt
        if fragment is not None and fragment.offset:
            break
    return ExtensionChain(nh, off, fragment, tuple(walked))


@dataclass(frozen=True, slots=True)
class Ipv6Packet:
    src: bytes
    dst: bytes
    next_header: int  # the value in the fixed header (first in the chain)
    payload: bytes = b""  # everything after the fixed header, extension headers included
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    # Derived from next_header + payload by walking the chain:
    chain: ExtensionChain = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.src) != 16 or len(self.dst) != 16:
            raise ValueError("IPv6 addresses must be 16 bytes")
        if not (0 <= self.next_header <= 255 and 0 <= self.hop_limit <= 255):
            raise ValueError("next_header and hop_limit are single octets")
        if not (0 <= self.traffic_class <= 255 and 0 <= self.flow_label <= 0xFFFFF):
            raise ValueError("traffic class is 8 bits, flow label 20 bits")
        if len(self.payload) > 0xFFFF:
            raise ValueError("IPv6 payload longer than 65535 bytes (jumbograms unsupported)")
        object.__setattr__(self, "chain", walk_extension_headers(self.next_header, self.payload))

    @classmethod
    def parse(cls, buf) -> "Ipv6Packet":
        n = len(buf)
        if n < HEADER_LEN:
            raise WireError(f"ipv6: {n} bytes is shorter than the 40-byte header")
        vtf, plen, nh, hop, src, dst = HEADER.unpack_from(buf)
        if vtf >> 28 != 6:
            raise WireError(f"ipv6: version {vtf >> 28}")
        if HEADER_LEN + plen > n:
            raise WireError(f"ipv6: payload length {plen} > {n - HEADER_LEN} bytes received")
        return cls(
            src, dst, nh, bytes(buf[HEADER_LEN:HEADER_LEN + plen]), hop,
            (vtf >> 20) & 0xFF, vtf & 0xFFFFF,
        )

    @property
    def upper_protocol(self) -> int:
        return self.chain.upper_protocol

    @property
    def upper_offset(self) -> int:
        """Offset of the upper-layer header within ``payload``."""
        return self.chain.upper_offset

    @property
    def upper_payload(self) -> bytes:
        return self.payload[self.chain.upper_offset:]

    @property
    def fragment(self) -> Ipv6Fragment | None:
        return self.chain.fragment

    @property
    def payload_length(self) -> int:
        return len(self.payload)

    header_len = HEADER_LEN

    @property
    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.payload)

    def emit_header(self) -> bytes:
        vtf = (6 << 28) | (self.traffic_class << 20) | self.flow_label
        return HEADER.pack(vtf, len(self.payload), self.next_header, self.hop_limit, self.src, self.dst)

    def emit(self) -> bytes:
        return self.emit_header() + self.payload
