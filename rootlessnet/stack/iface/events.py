"""stack.iface.events: what the core asks of the shell, one class per kind (typed, no tags)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from rootlessnet.stack.iface.tcp import TcpFlow

__all__ = ["TcpOpen", "UdpDatagram", "PingRequest", "Event"]


class TcpOpen:
    """A guest's SYN to the outside: connect the host side, then ``tcp_accept``/``tcp_refuse``/``tcp_unreachable``.

    ``flow.handle`` holds the (host, port) to connect to."""

    __slots__ = ("flow",)

    def __init__(self, flow: TcpFlow) -> None:
        self.flow = flow

    def __repr__(self) -> str:
        return f"TcpOpen({self.flow.key!r})"


class UdpDatagram:
    """A guest's datagram to the outside; ``header`` quotes its IP+UDP headers for ICMP errors."""

    __slots__ = ("src", "sport", "dst", "dport", "payload", "header")

    def __init__(self, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes, header: bytes) -> None:
        self.src, self.sport, self.dst, self.dport = src, sport, dst, dport
        self.payload = payload
        self.header = header

    def __repr__(self) -> str:
        return f"UdpDatagram({self.src!r}:{self.sport} -> {self.dst!r}:{self.dport}, {len(self.payload)} bytes)"


class PingRequest:
    """A guest's echo request to the outside (ICMP or ICMPv6 by address length)."""

    __slots__ = ("src", "dst", "ident", "seq", "data")

    def __init__(self, src: bytes, dst: bytes, ident: int, seq: int, data: bytes) -> None:
        self.src, self.dst, self.ident, self.seq, self.data = src, dst, ident, seq, data

    def __repr__(self) -> str:
        return f"PingRequest({self.src!r} -> {self.dst!r}, id {self.ident}, seq {self.seq})"


Event = Union[TcpOpen, UdpDatagram, PingRequest]
