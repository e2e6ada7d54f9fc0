"""Wire layer, DHCPv4 messages (RFC 2131, options RFC 2132): BOOTP + options.

Contract: ``DhcpMessage.parse(buf)`` raises only WireError (short message,
wrong magic cookie, option running past the buffer).  Options are kept in
order as ``(code, value)`` pairs with unique codes: repeated codes are
concatenated (RFC 3396 "long options").  The sname/file fields are not
read; option overload (52) is therefore ignored.  ``emit()`` pads the
message to the 300-byte BOOTP minimum that older clients expect.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from rootlessnet.wire import WireError

__all__ = [
    "HEADER", "HEADER_LEN", "MAGIC_COOKIE", "SERVER_PORT", "CLIENT_PORT", "MIN_LEN",
    "OP_REQUEST", "OP_REPLY", "FLAG_BROADCAST",
    "DhcpMessageType", "DhcpOption", "DhcpMessage", "make_reply", "make_nak",
]

#: op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr chaddr sname file
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_LEN = HEADER.size  # 236
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 3
SERVER_PORT = 67
CLIENT_PORT = 68
MIN_LEN = 300  # RFC 951 BOOTP message size; RFC 2131 2 allows 576 minimum receive
OP_REQUEST = 1
OP_REPLY = 2
FLAG_BROADCAST = 0x8000  # RFC 2131 2, figure 2
_ZERO4 = bytes(4)


class DhcpMessageType(enum.IntEnum):  # RFC 2132 9.6
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class DhcpOption(enum.IntEnum):
    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS = 6
    HOSTNAME = 12
    DOMAIN_NAME = 15
    MTU = 26
    BROADCAST = 28
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAM_REQUEST_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    CLIENT_ID = 61
    END = 255


def _parse_options(buf, off: int) -> tuple[tuple[int, bytes], ...]:
    opts: dict[int, bytes] = {}
    n = len(buf)
    while off < n:
        code = buf[off]
        if code == DhcpOption.PAD:
            off += 1
            continue
        if code == DhcpOption.END:
            break
        if off + 2 > n:
            raise WireError(f"dhcp: option {code} has no length byte")
        olen = buf[off + 1]
        if off + 2 + olen > n:
            raise WireError(f"dhcp: option {code} runs past the message")
        # RFC 3396 5: concatenate repeated instances of an option.
        opts[code] = opts.get(code, b"") + bytes(buf[off + 2:off + 2 + olen])
        off += 2 + olen
    return tuple(opts.items())


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    op: int
    xid: int
    chaddr: bytes  # client hardware address, hlen bytes (6 for Ethernet)
    options: tuple[tuple[int, bytes], ...] = ()
    htype: int = 1  # Ethernet
    hops: int = 0
    secs: int = 0
    broadcast: bool = False
    ciaddr: bytes = _ZERO4
    yiaddr: bytes = _ZERO4
    siaddr: bytes = _ZERO4
    giaddr: bytes = _ZERO4

    def __post_init__(self) -> None:
        if len(self.chaddr) > 16:
            raise ValueError("chaddr is at most 16 bytes")
        for a in (self.ciaddr, self.yiaddr, self.siaddr, self.giaddr):
            if len(a) != 4:
                raise ValueError("DHCP addresses are 4 bytes")
        codes = [c for c, _ in self.options]
        if len(set(codes)) != len(codes) or any(c in (0, 255) for c in codes):
            raise ValueError("DHCP option codes must be unique and not PAD/END")

    @classmethod
    def parse(cls, buf) -> "DhcpMessage":
        if len(buf) < HEADER_LEN + 4:
            raise WireError(f"dhcp: {len(buf)} bytes is shorter than 240")
        (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
         _sname, _file) = HEADER.unpack_from(buf)
        if bytes(buf[HEADER_LEN:HEADER_LEN + 4]) != MAGIC_COOKIE:
            raise WireError("dhcp: bad magic cookie (plain BOOTP?)")
        if hlen > 16:
            raise WireError(f"dhcp: hlen {hlen} > 16")
        return cls(op, xid, chaddr[:hlen], _parse_options(buf, HEADER_LEN + 4), htype, hops,
                   secs, bool(flags & FLAG_BROADCAST), ciaddr, yiaddr, siaddr, giaddr)

    def option(self, code: int) -> bytes | None:
        for c, v in self.options:
            if c == code:
                return v
        return None

    def _addr(self, code: int) -> bytes | None:
        v = self.option(code)
        return v if v is not None and len(v) == 4 else None

    @property
    def message_type(self) -> int | None:
        """Option 53 as an int (compare with DhcpMessageType), None if absent."""
        v = self.option(DhcpOption.MESSAGE_TYPE)
        return v[0] if v and len(v) == 1 else None

    @property
    def requested_ip(self) -> bytes | None:
        return self._addr(DhcpOption.REQUESTED_IP)

    @property
    def server_id(self) -> bytes | None:
        return self._addr(DhcpOption.SERVER_ID)

    @property
    def client_id(self) -> bytes | None:
        return self.option(DhcpOption.CLIENT_ID)

    @property
    def parameter_request_list(self) -> tuple[int, ...]:
        v = self.option(DhcpOption.PARAM_REQUEST_LIST)
        return tuple(v) if v else ()

    @property
    def hostname(self) -> str | None:
        v = self.option(DhcpOption.HOSTNAME)
        return None if v is None else v.decode("utf-8", "replace")

    def emit(self) -> bytes:
        out = bytearray(HEADER.pack(
            self.op, self.htype, len(self.chaddr), self.hops, self.xid, self.secs,
            FLAG_BROADCAST if self.broadcast else 0, self.ciaddr, self.yiaddr, self.siaddr,
            self.giaddr, self.chaddr, b"", b"",
        ))
        out += MAGIC_COOKIE
        for code, value in self.options:
            # RFC 3396: values over 255 bytes are split over several instances.
            chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [b""]
            for chunk in chunks:
                out += bytes((code, len(chunk))) + chunk
        out.append(DhcpOption.END)
        out += bytes(max(0, MIN_LEN - len(out)))
        return bytes(out)


def make_reply(
    request: DhcpMessage,
    msg_type: int,
    *,
    server_id: bytes,
    yiaddr: bytes = _ZERO4,
    subnet_mask: bytes | None = None,
    router: bytes | None = None,
    dns: tuple[bytes, ...] = (),
    lease_time: int | None = None,
    mtu: int | None = None,
    domain_name: str | None = None,
) -> DhcpMessage:
    """A server reply (OFFER/ACK) to ``request`` (RFC 2131 4.3.1, table 3).

    xid, flags, giaddr, chaddr and htype are copied; ciaddr is copied only
    for an ACK to INFORM (RFC 2131 4.3.5), which carries no lease time.
    """
    opts: list[tuple[int, bytes]] = [(DhcpOption.MESSAGE_TYPE, bytes((msg_type,))),
                                     (DhcpOption.SERVER_ID, server_id)]
    if lease_time is not None:
        opts.append((DhcpOption.LEASE_TIME, struct.pack("!I", lease_time)))
    if subnet_mask is not None:
        opts.append((DhcpOption.SUBNET_MASK, subnet_mask))
    if router is not None:
        opts.append((DhcpOption.ROUTER, router))
    if dns:
        opts.append((DhcpOption.DNS, b"".join(dns)))
    if domain_name:
        opts.append((DhcpOption.DOMAIN_NAME, domain_name.encode("ascii")))
    if mtu is not None:
        opts.append((DhcpOption.MTU, struct.pack("!H", mtu)))
    inform = request.message_type == DhcpMessageType.INFORM
    return DhcpMessage(
        OP_REPLY, request.xid, request.chaddr, tuple(opts), request.htype,
        broadcast=request.broadcast, ciaddr=request.ciaddr if inform else _ZERO4,
        yiaddr=yiaddr, giaddr=request.giaddr,
    )


def make_nak(request: DhcpMessage, server_id: bytes, message: str | None = None) -> DhcpMessage:
    """DHCPNAK (RFC 2131 4.3.2, table 3): only type, server id and a message."""
    opts = [(DhcpOption.MESSAGE_TYPE, bytes((DhcpMessageType.NAK,))), (DhcpOption.SERVER_ID, server_id)]
    if message:
        opts.append((DhcpOption.MESSAGE, message.encode("utf-8")))
    # RFC 2131 4.1: a NAK through no relay is broadcast.
    return DhcpMessage(OP_REPLY, request.xid, request.chaddr, tuple(opts), request.htype,
                       broadcast=request.broadcast, giaddr=request.giaddr)
