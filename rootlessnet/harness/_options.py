"""Sandbox options: validated in Python, turned into `rootlessnet run` flags."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

PORT_DRIVERS = ("builtin", "slirp", "none")


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (str, bytes, os.PathLike)) or not isinstance(value, (list, tuple, set, frozenset)):
        return [value]
    return list(value)


def dns_table(hosts: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """`{"db.test": "10.0.2.2", "v6.test": ["fd00::2"]}` -> name: [addresses], checked."""
    if hosts is None:
        return {}
    if not isinstance(hosts, Mapping):
        raise TypeError(f"hosts= must be a mapping of names to addresses, e.g. {{'db.test': '10.0.2.2'}}, not {type(hosts).__name__}")
    out: dict[str, list[str]] = {}
    for name, addrs in hosts.items():
        if not isinstance(name, str) or not name.strip(".") or len(name) > 253 or any(c.isspace() for c in name):
            raise ValueError(f"hosts=: {name!r} is not a DNS name")
        lst = _as_list(addrs)
        if not lst:
            raise ValueError(f"hosts=: {name!r} has no address")
        checked = []
        for a in lst:
            try:
                checked.append(str(ipaddress.ip_address(a)))
            except ValueError:
                raise ValueError(f"hosts=: {name!r} -> {a!r} is not an IP address") from None
        out[name] = checked
    return out


@dataclass
class SandboxOptions:
    """Everything `Sandbox(...)` and `Network(...)` accept besides the host names."""

    hosts: Mapping[str, Any] | None = None  # static DNS table; everything else is NXDOMAIN
    outbound: str | Sequence[str] = "none"  # "none" (hermetic), "all", or CIDRs
    allow_host_loopback: bool = True  # 10.0.2.2 reaches the host's 127.0.0.1
    ipv6: bool = False
    mtu: int | None = None
    port_driver: str | None = None  # builtin (default), slirp, none
    pcap: str | os.PathLike | None = None
    extra_args: Sequence[str] = ()  # more `rootlessnet run` flags, e.g. ["--pidns"]
    start_timeout: float = 30.0
    stop_timeout: float = 10.0
    dir: str | os.PathLike | None = None  # where the private directory goes (default: the temp dir)
    _dns: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._dns = dns_table(self.hosts)
        if not isinstance(self.outbound, str):
            self.outbound = ",".join(str(c) for c in self.outbound) or "none"
        if not self.outbound:
            raise ValueError("outbound= must be 'none', 'all' or CIDRs such as '127.0.0.0/8'")
        if self.outbound not in ("all", "none"):
            for c in self.outbound.split(","):
                try:
                    ipaddress.ip_network(c.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"outbound=: {c!r} is not 'all', 'none' or a CIDR") from None
        if self.mtu is not None:
            if not isinstance(self.mtu, int) or isinstance(self.mtu, bool) or not 1280 <= self.mtu <= 65520:
                raise ValueError(f"mtu={self.mtu!r}: use an integer in 1280..65520")
        if self.port_driver is not None and self.port_driver not in PORT_DRIVERS:
            raise ValueError(f"port_driver={self.port_driver!r}: use one of {', '.join(PORT_DRIVERS)}")
        if isinstance(self.extra_args, str):
            raise TypeError("extra_args= must be a list of flags, e.g. ['--pidns'], not a string")
        self.extra_args = [str(a) for a in self.extra_args]
        for name in ("start_timeout", "stop_timeout"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name}={v!r}: use a positive number of seconds")
        if self.pcap is not None:
            self.pcap = os.path.abspath(os.fspath(self.pcap))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.init]

    def flags(self, dns_hosts_file: str) -> list[str]:
        out = [f"--outbound={self.outbound}"]
        if self.allow_host_loopback:
            out.append("--allow-host-loopback")
        if self.ipv6:
            out.append("--ipv6")
        if self.mtu is not None:
            out.append(f"--mtu={self.mtu}")
        if self.port_driver is not None:
            out.append(f"--port-driver={self.port_driver}")
        if self.pcap is not None:
            out.append(f"--pcap={self.pcap}")
        out.append(f"--dns-hosts={dns_hosts_file}")
        return out + list(self.extra_args)


def make_options(kwargs: dict[str, Any], *, where: str) -> SandboxOptions:
    unknown = sorted(set(kwargs) - set(SandboxOptions.names()))
    if unknown:
        raise TypeError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(SandboxOptions.names())}")
    return SandboxOptions(**kwargs)
