"""Wire layer, UDP (RFC 768; IPv6 rules from RFC 8200 8.1): 8-byte header + data.

Contract: ``UdpDatagram.parse(buf, src, dst)`` raises only WireError.  The
length field must be 8..len(buf); bytes past it are ignored.  When the IP
addresses are given the checksum is verified with the pseudo-header: over
IPv4 a zero checksum means "not computed" (RFC 768), over IPv6 it is
invalid (RFC 8200 8.1).  ``emit(src, dst)`` picks the family from the
address length and never writes 0 (a computed 0 goes out as 0xFFFF).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rootlessnet.wire import WireError
from rootlessnet.wire.checksum import (
    internet_checksum,
    ones_sum,
    pseudo_header_sum_v4,
    pseudo_header_sum_v6,
)

__all__ = ["HEADER", "HEADER_LEN", "PROTO", "OFF_CHECKSUM", "UdpDatagram", "pseudo_sum"]

#: src_port dst_port length checksum
HEADER = struct.Struct("!HHHH")
HEADER_LEN = HEADER.size  # 8
PROTO = 17
OFF_CHECKSUM = 6


def pseudo_sum(src: bytes, dst: bytes, length: int) -> int:
    """Pseudo-header sum for UDP; the family follows the address length."""
    if len(src) == 4:
        return pseudo_header_sum_v4(src, dst, PROTO, length)
    return pseudo_header_sum_v6(src, dst, PROTO, length)


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    src_port: int
    dst_port: int
    payload: bytes = b""

    header_len = HEADER_LEN

    def __post_init__(self) -> None:
        if not (0 <= self.src_port <= 0xFFFF and 0 <= self.dst_port <= 0xFFFF):
            raise ValueError("UDP ports are 16 bits")
        if HEADER_LEN + len(self.payload) > 0xFFFF:
            raise ValueError("UDP datagram longer than 65535 bytes")

    @classmethod
    def parse(cls, buf, src: bytes | None = None, dst: bytes | None = None) -> "UdpDatagram":
        """Parse; verify the checksum when ``src`` and ``dst`` are given."""
        n = len(buf)
        if n < HEADER_LEN:
            raise WireError(f"udp: {n} bytes is shorter than 8")
        sport, dport, length, csum = HEADER.unpack_from(buf)
        if length < HEADER_LEN or length > n:
            raise WireError(f"udp: length field {length} with {n} bytes received")
        if src is not None and dst is not None:
            if csum == 0:
                if len(src) != 4:
                    raise WireError("udp: zero checksum over IPv6")
            elif ones_sum(buf[:length], pseudo_sum(src, dst, length)) != 0xFFFF:
                raise WireError("udp: bad checksum")
        return cls(sport, dport, bytes(buf[HEADER_LEN:length]))

    @property
    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.payload)

    def _emit(self, csum: int) -> bytearray:
        out = bytearray(HEADER.pack(self.src_port, self.dst_port, HEADER_LEN + len(self.payload), csum))
        out += self.payload
        return out

    def emit_with_pseudo_sum(self, pseudo: int) -> bytes:
        out = self._emit(0)
        # RFC 768: a computed zero is transmitted as all ones.
        struct.pack_into("!H", out, OFF_CHECKSUM, internet_checksum(out, pseudo) or 0xFFFF)
        return bytes(out)

    def emit(self, src: bytes, dst: bytes) -> bytes:
        """Emit with the checksum computed over the IPv4 or IPv6 pseudo-header."""
        return self.emit_with_pseudo_sum(pseudo_sum(src, dst, self.buffer_len))

    def emit_partial(self, pseudo: int) -> bytes:
        """Emit for checksum offload: the field holds only ``pseudo``.

        ``pseudo`` is ``pseudo_sum(src, dst, self.buffer_len)``.  With virtio
        NEEDS_CSUM (csum_start = UDP header, csum_offset = 6) the device
        completes the checksum, as for Linux's CHECKSUM_PARTIAL.
        """
        return bytes(self._emit(pseudo))

    def emit_no_checksum(self) -> bytes:
        """IPv4 only: checksum field 0, "no checksum" (RFC 768)."""
        return bytes(self._emit(0))
