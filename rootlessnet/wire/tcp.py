"""Wire layer, TCP header and options (RFC 9293 3.1, RFC 7323, RFC 2018).

Contract: ``TcpSegment.parse(buf, src, dst)`` and ``parse_options(buf)``
raise only WireError: data offset < 5 or past the buffer, bad checksum,
option lengths that are malformed for their kind or run past the header.
Unknown option kinds are kept (``TcpOptions.unknown``) and re-emitted.
``emit_options`` writes a canonical, 4-byte-aligned option block in the
order Linux uses (MSS, SACK-permitted, timestamps, window scale).

Hot path: ``HEADER`` is exported so the engine can ``unpack_from`` /
``pack_into`` headers without building objects; ``emit_partial`` writes
only the pseudo-header sum into the checksum field for virtio NEEDS_CSUM
offload (the kernel finishes the sum).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from rootlessnet.wire import WireError
from rootlessnet.wire.checksum import (
    internet_checksum,
    ones_sum,
    pseudo_header_sum_v4,
    pseudo_header_sum_v6,
)

__all__ = [
    "HEADER", "HEADER_LEN", "MAX_HEADER_LEN", "PROTO", "OFF_CHECKSUM", "OFF_FLAGS",
    "TcpFlags", "OptionKind", "TcpOptions", "TcpSegment",
    "parse_options", "emit_options", "pseudo_sum", "MAX_WSCALE",
]

#: src_port dst_port seq ack data_offset/reserved flags window checksum urgent
HEADER = struct.Struct("!HHIIBBHHH")
HEADER_LEN = HEADER.size  # 20
MAX_HEADER_LEN = 60
PROTO = 6
OFF_FLAGS = 13
OFF_CHECKSUM = 16
MAX_WSCALE = 14  # RFC 7323 2.3: larger shift counts are treated as 14 (by the stack)

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TS = struct.Struct("!II")


class TcpFlags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40  # RFC 3168
    CWR = 0x80  # RFC 3168


class OptionKind(enum.IntEnum):
    EOL = 0
    NOP = 1
    MSS = 2
    WSCALE = 3
    SACK_PERMITTED = 4
    SACK = 5
    TIMESTAMPS = 8


@dataclass(frozen=True, slots=True)
class TcpOptions:
    mss: int | None = None
    wscale: int | None = None  # raw shift count; clamp to MAX_WSCALE when using it
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()  # (left edge, right edge)
    timestamps: tuple[int, int] | None = None  # (TSval, TSecr)
    unknown: tuple[tuple[int, bytes], ...] = ()  # (kind, data after kind/length)


NO_OPTIONS = TcpOptions()

# Lengths the known kinds must have (RFC 9293 3.2, RFC 7323 2.2/3.2, RFC 2018 2/3).
_FIXED_LEN = {OptionKind.MSS: 4, OptionKind.WSCALE: 3, OptionKind.SACK_PERMITTED: 2,
              OptionKind.TIMESTAMPS: 10}


def parse_options(buf) -> TcpOptions:
    """Parse the option bytes between the fixed header and the data offset."""
    mss = wscale = ts = None
    sack_ok = False
    blocks: tuple[tuple[int, int], ...] = ()
    unknown: list[tuple[int, bytes]] = []
    off, n = 0, len(buf)
    while off < n:
        kind = buf[off]
        if kind == OptionKind.EOL:
            break
        if kind == OptionKind.NOP:
            off += 1
            continue
        if off + 2 > n:
            raise WireError(f"tcp: option {kind} has no length byte")
        olen = buf[off + 1]
        if olen < 2 or off + olen > n:
            raise WireError(f"tcp: option {kind} length {olen} invalid")
        want = _FIXED_LEN.get(kind)
        if want is not None and olen != want:
            raise WireError(f"tcp: option {kind} length {olen} != {want}")
        if kind == OptionKind.MSS:
            mss = _U16.unpack_from(buf, off + 2)[0]
        elif kind == OptionKind.WSCALE:
            wscale = buf[off + 2]
        elif kind == OptionKind.SACK_PERMITTED:
            sack_ok = True
        elif kind == OptionKind.TIMESTAMPS:
            ts = _TS.unpack_from(buf, off + 2)
        elif kind == OptionKind.SACK:
            if (olen - 2) % 8 or olen == 2:
                raise WireError(f"tcp: SACK option length {olen} invalid")
            blocks = tuple(_TS.unpack_from(buf, i) for i in range(off + 2, off + olen, 8))
        else:
            unknown.append((kind, bytes(buf[off + 2:off + olen])))
        off += olen
    return TcpOptions(mss, wscale, sack_ok, blocks, ts, tuple(unknown))


def emit_options(opts: TcpOptions) -> bytes:
    """The option block, padded with EOL to a multiple of 4 bytes.

    Raises ValueError when the options do not fit in 40 bytes.
    """
    out = bytearray()
    if opts.mss is not None:
        out += b"\x02\x04" + _U16.pack(opts.mss)
    if opts.timestamps is not None:
        # Linux: SACK-permitted shares the word with the TS option's padding.
        out += b"\x04\x02" if opts.sack_permitted else b"\x01\x01"
        out += b"\x08\x0a" + _TS.pack(*opts.timestamps)
    elif opts.sack_permitted:
        out += b"\x01\x01\x04\x02"
    if opts.wscale is not None:
        out += b"\x01\x03\x03" + bytes((opts.wscale,))
    if opts.sack_blocks:
        out += b"\x01\x01\x05" + bytes((2 + 8 * len(opts.sack_blocks),))
        for left, right in opts.sack_blocks:
            out += _TS.pack(left, right)
    for kind, data in opts.unknown:
        if not 2 <= kind <= 255 or kind in _FIXED_LEN or kind == OptionKind.SACK:
            raise ValueError(f"unknown TCP option kind {kind} collides with a known one")
        out += bytes((kind, 2 + len(data))) + data
    out += bytes(-len(out) % 4)
    if len(out) > 40:
        raise ValueError(f"TCP options take {len(out)} bytes, more than 40")
    return bytes(out)


def pseudo_sum(src: bytes, dst: bytes, length: int) -> int:
    """Pseudo-header sum for TCP; the family follows the address length."""
    if len(src) == 4:
        return pseudo_header_sum_v4(src, dst, PROTO, length)
    return pseudo_header_sum_v6(src, dst, PROTO, length)


@dataclass(frozen=True, slots=True)
class TcpSegment:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    payload: bytes = b""
    urgent: int = 0
    options: TcpOptions = NO_OPTIONS

    def __post_init__(self) -> None:
        if not (0 <= self.src_port <= 0xFFFF and 0 <= self.dst_port <= 0xFFFF):
            raise ValueError("TCP ports are 16 bits")
        if not (0 <= self.seq <= 0xFFFFFFFF and 0 <= self.ack <= 0xFFFFFFFF):
            raise ValueError("TCP sequence numbers are 32 bits")
        if not (0 <= self.window <= 0xFFFF and 0 <= self.urgent <= 0xFFFF):
            raise ValueError("TCP window and urgent pointer are 16 bits")
        if not 0 <= int(self.flags) <= 0xFF:
            raise ValueError("TCP flags are 8 bits")

    @classmethod
    def parse(cls, buf, src: bytes | None = None, dst: bytes | None = None) -> "TcpSegment":
        """Parse a whole segment (header + data, nothing after).

        The checksum is verified when ``src`` and ``dst`` are given.
        """
        n = len(buf)
        if n < HEADER_LEN:
            raise WireError(f"tcp: {n} bytes is shorter than 20")
        sport, dport, seq, ack, doff, flags, window, _csum, urg = HEADER.unpack_from(buf)
        hlen = (doff >> 4) * 4
        if hlen < HEADER_LEN or hlen > n:
            raise WireError(f"tcp: data offset {hlen} bytes with {n} bytes received")
        if src is not None and dst is not None and ones_sum(buf, pseudo_sum(src, dst, n)) != 0xFFFF:
            raise WireError("tcp: bad checksum")
        opts = parse_options(buf[HEADER_LEN:hlen]) if hlen > HEADER_LEN else NO_OPTIONS
        return cls(sport, dport, seq, ack, TcpFlags(flags), window, bytes(buf[hlen:]), urg, opts)

    @property
    def header_len(self) -> int:
        return HEADER_LEN + len(emit_options(self.options))

    @property
    def buffer_len(self) -> int:
        return self.header_len + len(self.payload)

    @property
    def seg_len(self) -> int:
        """SEG.LEN (RFC 9293 3.4): data length plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & TcpFlags.SYN else 0) + (1 if self.flags & TcpFlags.FIN else 0)

    def _emit(self, csum: int) -> bytearray:
        opts = emit_options(self.options)
        hlen = HEADER_LEN + len(opts)
        out = bytearray(HEADER.pack(self.src_port, self.dst_port, self.seq, self.ack, (hlen // 4) << 4,
                                    int(self.flags), self.window, csum, self.urgent))
        out += opts
        out += self.payload
        return out

    def emit_with_pseudo_sum(self, pseudo: int) -> bytes:
        """Full segment; checksum computed from the given pseudo-header sum."""
        out = self._emit(0)
        _U16.pack_into(out, OFF_CHECKSUM, internet_checksum(out, pseudo))
        return bytes(out)

    def emit(self, src: bytes, dst: bytes) -> bytes:
        """Full segment with the checksum over the IPv4/IPv6 pseudo-header."""
        out = self._emit(0)
        _U16.pack_into(out, OFF_CHECKSUM, internet_checksum(out, pseudo_sum(src, dst, len(out))))
        return bytes(out)

    def emit_partial(self, pseudo: int) -> bytes:
        """Checksum field holds only ``pseudo`` (virtio NEEDS_CSUM, csum_offset 16).

        ``pseudo`` must be the pseudo-header sum for this segment's length.
        """
        return bytes(self._emit(pseudo))
