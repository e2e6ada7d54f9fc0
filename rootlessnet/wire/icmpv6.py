"""Wire layer, ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861, RFC 8106).

Contract: parsers raise only WireError.  The checksum covers the IPv6
pseudo-header (RFC 4443 2.3), so parse and emit take the source and
destination addresses.  ``Icmpv6Message`` is the generic form (type, code,
body after the 4-byte header) and keeps unknown types; ``parse_icmpv6``
returns the typed form for echo and the four NDP messages the engine
handles.  An NDP option with length 0 is a WireError (RFC 4861 4.6: "nodes
MUST silently discard an ND packet that contains an option with length
zero"; it would also loop a naive parser forever).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

from rootlessnet.wire import WireError
from rootlessnet.wire.checksum import internet_checksum, ones_sum, pseudo_header_sum_v6

__all__ = [
    "HEADER", "HEADER_LEN", "ECHO", "MAX_QUOTE", "PROTO",
    "Icmpv6Type", "UnreachCode", "NdpOptionType",
    "Icmpv6Message", "Icmpv6Echo",
    "PrefixInfo", "Rdnss", "NdpOptions", "parse_ndp_options", "emit_ndp_options",
    "RouterSolicitation", "RouterAdvertisement", "NeighborSolicitation", "NeighborAdvertisement",
    "parse_icmpv6", "dest_unreachable", "packet_too_big", "time_exceeded", "parameter_problem",
]

PROTO = 58
#: type code checksum
HEADER = struct.Struct("!BBH")
HEADER_LEN = HEADER.size  # 4
ECHO = struct.Struct("!HH")
# RFC 4443 2.4 (c): as much of the invoking packet as fits in the minimum
# MTU: 1280 - IPv6 header (40) - ICMPv6 error header (8).
MAX_QUOTE = 1280 - 40 - 8

_PREFIX = struct.Struct("!BBII4x16s")  # RFC 4861 4.6.2, after type/length
_MTU = struct.Struct("!2xI")  # RFC 4861 4.6.4
_RDNSS = struct.Struct("!2xI")  # RFC 8106 5.1, addresses follow
_RA = struct.Struct("!BBHII")  # RFC 4861 4.2
_NA_FLAGS = struct.Struct("!I16s")  # R S O + reserved, target (RFC 4861 4.4)


class Icmpv6Type(enum.IntEnum):
    DEST_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAMETER_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136
    REDIRECT = 137


class UnreachCode(enum.IntEnum):  # RFC 4443 3.1
    NO_ROUTE = 0
    ADMIN_PROHIBITED = 1
    BEYOND_SCOPE = 2
    ADDRESS = 3
    PORT = 4
    POLICY_FAILED = 5
    REJECT_ROUTE = 6


class NdpOptionType(enum.IntEnum):
    SOURCE_LLADDR = 1
    TARGET_LLADDR = 2
    PREFIX_INFO = 3
    REDIRECTED_HEADER = 4
    MTU = 5
    RDNSS = 25  # RFC 8106
    DNSSL = 31  # RFC 8106


@dataclass(frozen=True, slots=True)
class Icmpv6Message:
    type: int
    code: int
    body: bytes = b""  # everything after type/code/checksum

    header_len = HEADER_LEN

    def __post_init__(self) -> None:
        if not (0 <= self.type <= 255 and 0 <= self.code <= 255):
            raise ValueError("ICMPv6 type and code are single octets")

    @classmethod
    def parse(cls, buf, src: bytes, dst: bytes, verify_checksum: bool = True) -> "Icmpv6Message":
        n = len(buf)
        if n < HEADER_LEN:
            raise WireError(f"icmpv6: {n} bytes is shorter than 4")
        if verify_checksum and ones_sum(buf, pseudo_header_sum_v6(src, dst, PROTO, n)) != 0xFFFF:
            raise WireError("icmpv6: bad checksum")
        t, c, _ = HEADER.unpack_from(buf)
        return cls(t, c, bytes(buf[HEADER_LEN:]))

    @property
    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.body)

    @property
    def is_error(self) -> bool:
        """RFC 4443 2.1: types 0-127 are errors, never answered with an error."""
        return self.type < 128

    def emit(self, src: bytes, dst: bytes) -> bytes:
        n = HEADER_LEN + len(self.body)
        msg = bytearray(HEADER.pack(self.type, self.code, 0))
        msg += self.body
        csum = internet_checksum(msg, pseudo_header_sum_v6(src, dst, PROTO, n))
        struct.pack_into("!H", msg, 2, csum)
        return bytes(msg)


@dataclass(frozen=True, slots=True)
class Icmpv6Echo:
    """Echo Request (128) / Echo Reply (129), RFC 4443 4.1/4.2."""

    ident: int
    seq: int
    data: bytes = b""
    reply: bool = False

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> "Icmpv6Echo":
        if msg.type not in (Icmpv6Type.ECHO_REQUEST, Icmpv6Type.ECHO_REPLY) or len(msg.body) < 4:
            raise WireError("icmpv6: not a well-formed echo message")
        ident, seq = ECHO.unpack_from(msg.body)
        return cls(ident, seq, msg.body[4:], msg.type == Icmpv6Type.ECHO_REPLY)

    def answer(self) -> "Icmpv6Echo":
        """The echo reply to this request (RFC 4443 4.2: id, seq, data echoed)."""
        return Icmpv6Echo(self.ident, self.seq, self.data, True)

    def to_message(self) -> Icmpv6Message:
        t = Icmpv6Type.ECHO_REPLY if self.reply else Icmpv6Type.ECHO_REQUEST
        return Icmpv6Message(t, 0, ECHO.pack(self.ident, self.seq) + self.data)

    def emit(self, src: bytes, dst: bytes) -> bytes:
        return self.to_message().emit(src, dst)


# --- NDP options (RFC 4861 4.6) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class PrefixInfo:
    """Prefix Information option (RFC 4861 4.6.2)."""

    prefix: bytes  # 16 bytes
    prefix_len: int
    on_link: bool = True  # L
    autonomous: bool = True  # A: usable for SLAAC (RFC 4862)
    valid_lifetime: int = 0xFFFFFFFF  # seconds; all ones = infinity
    preferred_lifetime: int = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Rdnss:
    """Recursive DNS Server option (RFC 8106 5.1)."""

    lifetime: int
    servers: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class NdpOptions:
    source_lladdr: bytes | None = None
    target_lladdr: bytes | None = None
    mtu: int | None = None
    prefixes: tuple[PrefixInfo, ...] = ()
    rdnss: tuple[Rdnss, ...] = ()
    unknown: tuple[tuple[int, bytes], ...] = ()  # (type, data after type/length)


NO_OPTIONS = NdpOptions()


def parse_ndp_options(buf) -> NdpOptions:
    """Parse a run of NDP options; raise WireError on bad lengths."""
    off, n = 0, len(buf)
    slla = tlla = mtu = None
    prefixes: list[PrefixInfo] = []
    rdnss: list[Rdnss] = []
    unknown: list[tuple[int, bytes]] = []
    while off < n:
        if off + 2 > n:
            raise WireError("ndp: truncated option")
        otype, olen = buf[off], buf[off + 1] * 8
        if olen == 0:
            raise WireError("ndp: option with length 0")  # RFC 4861 4.6
        if off + olen > n:
            raise WireError(f"ndp: option {otype} runs past the message")
        data = bytes(buf[off + 2:off + olen])
        off += olen
        if otype in (NdpOptionType.SOURCE_LLADDR, NdpOptionType.TARGET_LLADDR):
            # Ethernet (RFC 2464 8): 6 bytes in a length-1 option.
            addr = data[:6] if olen == 8 else data
            if otype == NdpOptionType.SOURCE_LLADDR:
                slla = addr
            else:
                tlla = addr
        elif otype == NdpOptionType.PREFIX_INFO:
            if olen != 32:
                raise WireError(f"ndp: prefix information length {olen} != 32")
            plen, flags, valid, preferred, prefix = _PREFIX.unpack(data)
            prefixes.append(PrefixInfo(prefix, plen, bool(flags & 0x80), bool(flags & 0x40), valid, preferred))
        elif otype == NdpOptionType.MTU:
            if olen != 8:
                raise WireError(f"ndp: MTU option length {olen} != 8")
            mtu = _MTU.unpack(data)[0]
        elif otype == NdpOptionType.RDNSS:
            # RFC 8106 5.1: length 3 + 2 per address, at least one address.
            if olen < 24 or (olen - 8) % 16:
                raise WireError(f"ndp: RDNSS option length {olen} invalid")
            lifetime = _RDNSS.unpack_from(data)[0]
            servers = tuple(data[6 + i:22 + i] for i in range(0, olen - 8, 16))
            rdnss.append(Rdnss(lifetime, servers))
        else:
            unknown.append((otype, data))
    return NdpOptions(slla, tlla, mtu, tuple(prefixes), tuple(rdnss), tuple(unknown))


def _tlv(otype: int, data: bytes) -> bytes:
    pad = -(2 + len(data)) % 8
    total = 2 + len(data) + pad
    if total > 255 * 8:
        raise ValueError(f"NDP option {otype} too long")
    return bytes((otype, total // 8)) + data + bytes(pad)


def emit_ndp_options(opts: NdpOptions) -> bytes:
    out = bytearray()
    if opts.source_lladdr is not None:
        out += _tlv(NdpOptionType.SOURCE_LLADDR, opts.source_lladdr)
    if opts.target_lladdr is not None:
        out += _tlv(NdpOptionType.TARGET_LLADDR, opts.target_lladdr)
    if opts.mtu is not None:
        out += _tlv(NdpOptionType.MTU, _MTU.pack(opts.mtu))
    for p in opts.prefixes:
        flags = (0x80 if p.on_link else 0) | (0x40 if p.autonomous else 0)
        out += _tlv(
            NdpOptionType.PREFIX_INFO,
            _PREFIX.pack(p.prefix_len, flags, p.valid_lifetime, p.preferred_lifetime, p.prefix),
        )
    for r in opts.rdnss:
        if not r.servers:
            raise ValueError("RDNSS option needs at least one server")
        out += _tlv(NdpOptionType.RDNSS, _RDNSS.pack(r.lifetime) + b"".join(r.servers))
    for otype, data in opts.unknown:
        out += _tlv(otype, data)
    return bytes(out)


# --- NDP messages (RFC 4861 4) -----------------------------------------------


def _ndp_body(msg: Icmpv6Message, want: int, fixed: int) -> bytes:
    # RFC 4861 6.1.1 / 7.1.1: ICMP code 0 and the fixed part present.
    if msg.type != want or msg.code != 0 or len(msg.body) < fixed:
        raise WireError(f"ndp: malformed message type {msg.type} code {msg.code}")
    return msg.body


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    options: NdpOptions = NO_OPTIONS

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> "RouterSolicitation":
        body = _ndp_body(msg, Icmpv6Type.ROUTER_SOLICITATION, 4)
        return cls(parse_ndp_options(body[4:]))

    def to_message(self) -> Icmpv6Message:
        return Icmpv6Message(Icmpv6Type.ROUTER_SOLICITATION, 0, bytes(4) + emit_ndp_options(self.options))

    def emit(self, src: bytes, dst: bytes) -> bytes:
        return self.to_message().emit(src, dst)


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    cur_hop_limit: int = 64
    managed: bool = False  # M: addresses via DHCPv6
    other: bool = False  # O: other configuration via DHCPv6
    router_lifetime: int = 1800  # seconds; 0 = not a default router
    reachable_time: int = 0  # milliseconds; 0 = unspecified
    retrans_timer: int = 0  # milliseconds; 0 = unspecified
    options: NdpOptions = NO_OPTIONS

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> "RouterAdvertisement":
        body = _ndp_body(msg, Icmpv6Type.ROUTER_ADVERTISEMENT, 12)
        hop, flags, lifetime, reachable, retrans = _RA.unpack_from(body)
        return cls(hop, bool(flags & 0x80), bool(flags & 0x40), lifetime, reachable, retrans,
                   parse_ndp_options(body[12:]))

    def to_message(self) -> Icmpv6Message:
        flags = (0x80 if self.managed else 0) | (0x40 if self.other else 0)
        fixed = _RA.pack(self.cur_hop_limit, flags, self.router_lifetime, self.reachable_time, self.retrans_timer)
        return Icmpv6Message(Icmpv6Type.ROUTER_ADVERTISEMENT, 0, fixed + emit_ndp_options(self.options))

    def emit(self, src: bytes, dst: bytes) -> bytes:
        return self.to_message().emit(src, dst)


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    target: bytes
    options: NdpOptions = NO_OPTIONS

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> "NeighborSolicitation":
        body = _ndp_body(msg, Icmpv6Type.NEIGHBOR_SOLICITATION, 20)
        return cls(body[4:20], parse_ndp_options(body[20:]))

    def to_message(self) -> Icmpv6Message:
        body = bytes(4) + bytes(self.target) + emit_ndp_options(self.options)
        return Icmpv6Message(Icmpv6Type.NEIGHBOR_SOLICITATION, 0, body)

    def emit(self, src: bytes, dst: bytes) -> bytes:
        return self.to_message().emit(src, dst)


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    target: bytes
    router: bool = False  # R
    solicited: bool = False  # S
    override: bool = False  # O
    options: NdpOptions = NO_OPTIONS

    @classmethod
    def from_message(cls, msg: Icmpv6Message) -> "NeighborAdvertisement":
        body = _ndp_body(msg, Icmpv6Type.NEIGHBOR_ADVERTISEMENT, 20)
        flags, target = _NA_FLAGS.unpack_from(body)
        return cls(target, bool(flags & 0x80000000), bool(flags & 0x40000000),
                   bool(flags & 0x20000000), parse_ndp_options(body[20:]))

    def to_message(self) -> Icmpv6Message:
        flags = ((0x80000000 if self.router else 0) | (0x40000000 if self.solicited else 0)
                 | (0x20000000 if self.override else 0))
        body = _NA_FLAGS.pack(flags, self.target) + emit_ndp_options(self.options)
        return Icmpv6Message(Icmpv6Type.NEIGHBOR_ADVERTISEMENT, 0, body)

    def emit(self, src: bytes, dst: bytes) -> bytes:
        return self.to_message().emit(src, dst)


_TYPED: dict[int, Any] = {
    Icmpv6Type.ECHO_REQUEST: Icmpv6Echo,
    Icmpv6Type.ECHO_REPLY: Icmpv6Echo,
    Icmpv6Type.ROUTER_SOLICITATION: RouterSolicitation,
    Icmpv6Type.ROUTER_ADVERTISEMENT: RouterAdvertisement,
    Icmpv6Type.NEIGHBOR_SOLICITATION: NeighborSolicitation,
    Icmpv6Type.NEIGHBOR_ADVERTISEMENT: NeighborAdvertisement,
}


def parse_icmpv6(buf, src: bytes, dst: bytes, verify_checksum: bool = True):
    """Parse and, for echo and RS/RA/NS/NA, return the typed message.

    Other types come back as the generic :class:`Icmpv6Message`.
    """
    msg = Icmpv6Message.parse(buf, src, dst, verify_checksum)
    typed = _TYPED.get(msg.type)
    return msg if typed is None else typed.from_message(msg)


# --- error messages (RFC 4443 3) ---------------------------------------------


def _error(t: int, code: int, word: int, invoking: bytes) -> Icmpv6Message:
    return Icmpv6Message(t, code, struct.pack("!I", word) + bytes(invoking[:MAX_QUOTE]))


def dest_unreachable(code: int, invoking: bytes) -> Icmpv6Message:
    return _error(Icmpv6Type.DEST_UNREACHABLE, code, 0, invoking)


def packet_too_big(mtu: int, invoking: bytes) -> Icmpv6Message:
    return _error(Icmpv6Type.PACKET_TOO_BIG, 0, mtu, invoking)


def time_exceeded(code: int, invoking: bytes) -> Icmpv6Message:
    return _error(Icmpv6Type.TIME_EXCEEDED, code, 0, invoking)


def parameter_problem(code: int, pointer: int, invoking: bytes) -> Icmpv6Message:
    return _error(Icmpv6Type.PARAMETER_PROBLEM, code, pointer, invoking)
