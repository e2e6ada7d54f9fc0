"""port.spec: port-forwarding specs as rootlesskit writes them, and the driver interface.

`-p/--publish [PARENTIP:]PARENTPORT[:CHILDIP]:CHILDPORT/PROTO`, IPv6 in
brackets; the same spec as JSON in the REST API (rootlesskit API 1.1.1):
{"proto","parentIP","parentPort","childIP","childPort"}.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Protocol

PROTOS = ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6")
SCTP = ("sctp", "sctp4", "sctp6")
JSON_FIELDS = ("proto", "parentIP", "parentPort", "childIP", "childPort")


class SpecError(ValueError):
    """A bad spec: the message says what is wrong (API: 400)."""


class PortError(Exception):
    """A driver refused a spec (conflict, bind failure, unknown id): the message says why (API: 400)."""


@dataclass(frozen=True)
class PortSpec:
    proto: str
    parent_ip: str
    parent_port: int
    child_ip: str
    child_port: int

    def __post_init__(self) -> None:
        if self.proto in SCTP:
            raise SpecError(f"proto {self.proto!r} is not supported (use tcp or udp)")
        if self.proto not in PROTOS:
            raise SpecError(f"unknown proto {self.proto!r}: use one of {', '.join(PROTOS)}")
        for name, port in (("parent", self.parent_port), ("child", self.child_port)):
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise SpecError(f"{name} port {port!r} is out of range (1-65535)")
        for name, ip in (("parent", self.parent_ip), ("child", self.child_ip)):
            if ip:
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    raise SpecError(f"{name} IP {ip!r} is not an IP address") from None
        v = self.ip_version
        if v and self.proto.endswith(("4", "6")) and str(v) != self.proto[-1]:
            raise SpecError(f"parent IP {self.parent_ip} does not match proto {self.proto}")

    @property
    def base_proto(self) -> str:
        return self.proto[:3]

    @property
    def ip_version(self) -> int | None:
        return ipaddress.ip_address(self.parent_ip).version if self.parent_ip else None

    @property
    def listen_ip(self) -> str:
        """Address to bind on the host (rootlesskit: empty means all)."""
        if self.parent_ip:
            return self.parent_ip
        return "::" if self.proto.endswith("6") else "0.0.0.0"

    def to_json(self) -> dict[str, Any]:
        return {"proto": self.proto, "parentIP": self.parent_ip, "parentPort": self.parent_port,
                "childIP": self.child_ip, "childPort": self.child_port}

    @classmethod
    def from_json(cls, obj: Any) -> "PortSpec":
        if not isinstance(obj, dict):
            raise SpecError("the port spec must be a JSON object")
        unknown = sorted(set(obj) - set(JSON_FIELDS))
        if unknown:
            raise SpecError(f"unknown field(s) {', '.join(unknown)}: use {', '.join(JSON_FIELDS)}")
        for k in ("proto", "parentIP", "childIP"):
            if k in obj and not isinstance(obj[k], str):
                raise SpecError(f"{k} must be a string")
        for k in ("parentPort", "childPort"):
            if k not in obj:
                raise SpecError(f"missing {k}")
            if not isinstance(obj[k], int) or isinstance(obj[k], bool):
                raise SpecError(f"{k} must be an integer")
        if not obj.get("proto"):
            raise SpecError("missing proto")
        return cls(obj["proto"], obj.get("parentIP", ""), obj["parentPort"], obj.get("childIP", ""), obj["childPort"])

    def __str__(self) -> str:
        def host(ip: str) -> str:
            return f"[{ip}]" if ":" in ip else ip

        parent = f"{host(self.parent_ip)}:" if self.parent_ip else ""
        child = f"{host(self.child_ip)}:" if self.child_ip else ""
        return f"{parent}{self.parent_port}:{child}{self.child_port}/{self.proto}"


def _split_hostports(text: str) -> list[str]:
    """Split on ':' outside brackets."""
    parts, cur, depth = [], "", 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _port(text: str, what: str, spec: str) -> int:
    if not text.isdigit():
        raise SpecError(f"{spec!r}: {what} port {text!r} is not a number")
    return int(text)


def _ip(text: str, spec: str) -> str:
    ip = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise SpecError(f"{spec!r}: {ip!r} is not an IP address") from None
    return ip


def parse_spec(text: str) -> PortSpec:
    """`[PARENTIP:]PARENTPORT[:CHILDIP]:CHILDPORT/PROTO` (rootlesskit's -p syntax)."""
    body, slash, proto = text.rpartition("/")
    if not slash:
        raise SpecError(f"{text!r}: missing /PROTO (e.g. 8080:80/tcp)")
    parts = _split_hostports(body)
    if len(parts) == 2:
        pip, pport, cip, cport = "", parts[0], "", parts[1]
    elif len(parts) == 3:
        if parts[0].isdigit():
            pip, pport, cip, cport = "", parts[0], parts[1], parts[2]
        else:
            pip, pport, cip, cport = parts[0], parts[1], "", parts[2]
    elif len(parts) == 4:
        pip, pport, cip, cport = parts
    else:
        raise SpecError(f"{text!r}: use [PARENTIP:]PARENTPORT[:CHILDIP]:CHILDPORT/PROTO")
    return PortSpec(proto, _ip(pip, text) if pip else "", _port(pport, "parent", text),
                    _ip(cip, text) if cip else "", _port(cport, "child", text))


def conflicts(a: PortSpec, b: PortSpec) -> bool:
    """Same base proto and same parent address:port (tcp4 and tcp6 on one port do not conflict)."""
    if a.base_proto != b.base_proto or a.parent_port != b.parent_port:
        return False
    fa, fb = a.proto[-1] if a.proto[-1] in "46" else "", b.proto[-1] if b.proto[-1] in "46" else ""
    if fa and fb and fa != fb:
        return False
    ia, ib = a.parent_ip, b.parent_ip
    wild = ("", "0.0.0.0", "::")
    return ia == ib or ia in wild or ib in wild


@dataclass(frozen=True)
class PortStatus:
    id: int
    spec: PortSpec

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "spec": self.spec.to_json()}


class PortDriver(Protocol):
    """What the API and the CLI need from a port driver."""

    name: str  # "builtin" or "slirp4netns"
    protos: tuple[str, ...]
    disallow_loopback_child_ip: bool

    async def add(self, spec: PortSpec) -> PortStatus: ...  # raises PortError

    async def remove(self, port_id: int) -> None: ...  # raises PortError

    def list(self) -> list[PortStatus]: ...
