"""stack.config: the virtual network's addresses and the engine's policy (pure data).

Defaults are slirp4netns's: 10.0.2.0/24, gateway (= the host) .2, DNS .3,
guest .100, DHCP pool .15-.30; with IPv6 fd00::/64, fd00::2, fd00::3.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

GATEWAY_MAC = bytes.fromhex("525500000002")  # slirp4netns uses 52:55:0a:00:02:02; any local MAC works
MIN_MTU, MAX_MTU = 1280, 65520

Net4 = ipaddress.IPv4Network
Net6 = ipaddress.IPv6Network


class ConfigError(ValueError):
    """A bad option value; the message says which and what is allowed."""


MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Every bound the engine keeps, with its default (docs/robustness.md; `--limit NAME=VALUE`).

    What happens at each bound is counted under the name given here.
    """

    tcp_flows: int = 65536  # live guest TCP connections; a SYN beyond: RST (tcp_refused_table_full)
    tcp_connecting: int = 4096  # host connects in progress; a SYN beyond: RST (tcp_refused_connecting)
    time_wait: int = 32768  # TIME-WAIT entries (Linux tcp_max_tw_buckets); beyond: forgotten (tcp_time_wait_overflow)
    udp_flows: int = 4096  # UDP flows (a host socket each); beyond: the least recently used closes (udp_flows_evicted)
    ping_flows: int = 1024  # ICMP echo flows (a ping socket each); beyond: unreachable (ping_refused_limit)
    host_sockets: int = 0  # host sockets of all flows together; 0: RLIMIT_NOFILE minus fd_reserve
    fd_reserve: int = 64  # fds kept free for the API, port listeners, splice pipes and pcap
    tcp_mem: int = 128 * MiB  # bytes all TCP buffers may hold (Linux tcp_mem): 3/4 is pressure
    tcp_rmem: int = 4 * MiB  # receive buffer (the most window offered) per connection
    tcp_wmem: int = 4 * MiB  # send buffer per connection (host data not yet acknowledged by the guest)
    ooo_blocks: int = 64  # out-of-order blocks per connection (adjacent ones are merged)
    link_queue: int = 1000  # frames queued per impaired link direction (netem's limit)
    udp_clients: int = 1024  # builtin port driver: client sockets per published UDP port (LRU recycled)

    def __post_init__(self) -> None:
        for name in LIMIT_NAMES:
            v = getattr(self, name)
            low = 0 if name == "host_sockets" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ConfigError(f"--limit {name}={v!r}: use an integer >= {low}")
        if self.tcp_rmem < 2048 or self.tcp_wmem < 2048:
            raise ConfigError("--limit tcp_rmem and tcp_wmem: use at least 2048 bytes")

    def with_text(self, text: str) -> "Limits":
        """`NAME=VALUE` (VALUE may end in K, M or G for byte sizes) applied to these limits."""
        import dataclasses

        name, sep, value = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in LIMIT_NAMES:
            raise ConfigError(f"--limit {text!r}: use NAME=VALUE with NAME one of {', '.join(LIMIT_NAMES)}")
        v = value.strip()
        mult = {"k": 1 << 10, "m": MiB, "g": 1 << 30}.get(v[-1:].lower(), 1)
        digits = v[:-1] if mult != 1 else v
        if not digits.isdigit():
            raise ConfigError(f"--limit {text!r}: VALUE must be a whole number (K, M, G allowed)")
        return dataclasses.replace(self, **{name: int(digits) * mult})


LIMIT_NAMES = tuple(f for f in Limits.__dataclass_fields__)


@dataclass(frozen=True)
class NetConfig:
    cidr: Net4 = Net4("10.0.2.0/24")
    mtu: int = 65520
    ipv6: bool = False
    prefix6: Net6 = Net6("fd00::/64")
    allow_host_loopback: bool = False
    # None = everything; () = nothing; else the networks the engine may connect to
    outbound: tuple[ipaddress._BaseNetwork, ...] | None = None
    dns_upstream: tuple[str, int] | None = None  # (address, port) the DNS forwarder uses
    dns_hosts: dict[str, list[str]] | None = None  # static DNS table: then nothing is forwarded
    outbound_addr: str | None = None  # source address host sockets bind to, IPv4 (slirp4netns --outbound-addr)
    outbound_addr6: str | None = None  # the same for IPv6 (--outbound-addr6)
    gateway_mac: bytes = GATEWAY_MAC
    guest_index: int = 100  # the guest is .100 (hosts of a multi-host network: .101, .102, ...)
    limits: Limits = field(default_factory=Limits)
    # the addresses as bytes, computed once (the hot path compares them; ipaddress arithmetic is slow)
    _addrs: dict = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not MIN_MTU <= self.mtu <= MAX_MTU:
            raise ConfigError(f"--mtu {self.mtu} is out of range: use {MIN_MTU}..{MAX_MTU}")
        if self.cidr.prefixlen > 26:
            raise ConfigError(f"--cidr {self.cidr} is too small: use a /26 or larger (the guest is .100)")
        net = self.cidr.network_address
        self._addrs.update(gateway=(net + 2).packed, dns=(net + 3).packed, guest=(net + self.guest_index).packed)

    # addresses (bytes, as the hot path compares them)
    def _host(self, n: int) -> bytes:
        return (self.cidr.network_address + n).packed

    @property
    def gateway(self) -> bytes:
        return self._addrs["gateway"]

    @property
    def dns(self) -> bytes:
        return self._addrs["dns"]

    @property
    def guest(self) -> bytes:
        return self._addrs["guest"]

    @property
    def netmask(self) -> bytes:
        return self.cidr.netmask.packed

    @property
    def dhcp_pool(self) -> tuple[bytes, bytes]:
        return self._host(15), self._host(30)

    @property
    def gateway6(self) -> bytes:
        return (self.prefix6.network_address + 2).packed

    @property
    def dns6(self) -> bytes:
        return (self.prefix6.network_address + 3).packed

    @property
    def guest6(self) -> bytes:
        """fd00::100 for .100, fd00::101 for .101, ... (the decimal index read as hex)."""
        return (self.prefix6.network_address + int(str(self.guest_index), 16)).packed

    @property
    def link_local6(self) -> bytes:
        return ipaddress.IPv6Address("fe80::2").packed


def parse_outbound(text: str) -> tuple[ipaddress._BaseNetwork, ...] | None:
    """`--outbound=all|none|CIDR[,CIDR...]`."""
    text = text.strip()
    if text == "all":
        return None
    if text == "none":
        return ()
    nets = []
    for part in text.split(","):
        try:
            nets.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"--outbound: {part.strip()!r} is not a CIDR: use all, none or CIDR[,CIDR...]") from None
    return tuple(nets)


def parse_cidr(text: str) -> Net4:
    try:
        return Net4(text, strict=False)
    except ValueError:
        raise ConfigError(f"--cidr {text!r} is not an IPv4 network (e.g. 10.0.2.0/24)") from None


def parse_hostport(text: str, default_port: int = 53) -> tuple[str, int]:
    """`ADDR[:PORT]`, `[V6ADDR]:PORT` or a bare IPv6 address."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = _port(p, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{text!r}: not an IP address (use ADDR[:PORT], [V6ADDR]:PORT)") from None
    return host, port


def _port(p: str, text: str) -> int:
    if not p.isdigit() or not 0 < int(p) < 65536:
        raise ConfigError(f"{text!r}: bad port {p!r}")
    return int(p)
