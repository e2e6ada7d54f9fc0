"""`Network`: several hosts in one instance, switched by the engine, with tc netem's
impairments per host link, per pair and per direction, holds, and symmetric,
one-way or majority/minority partitions, all changeable at run time.

    with Network(["a", "b", "c"]) as net:
        net.host("b").popen(["python3", "server.py"])
        net.link("a").impair(delay=0.1, loss=0.2, seed=1)            # both directions of a's link
        net.pair("a", "b").impair(netem="delay 20ms 5ms distribution normal")  # a -> b only
        net.partition({"a"}, {"b", "c"})
        net.heal()

Each host is its own network namespace inside the instance (pinned at
`STATE/netns.d/NAME`) with a tap served by the engine, address 10.0.2.(101+i)
(fd00::(101+i) with ipv6=True), its name as hostname, and every host in
/etc/hosts and in the engine's DNS. See docs/harness.md.
"""

from __future__ import annotations

import datetime
import re
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from rootlessnet.harness._core import Core
from rootlessnet.harness.errors import ApiRequestError, UnknownHostError
from rootlessnet.harness.sandbox import Sandbox, _Runner

OUTSIDE = "host"  # the outside world (the host's loopback via the gateway), in partitions
MAIN = "main"  # the instance's own namespace (where Network.run() runs), in partitions and links
MAX_HOSTS = 100  # 10.0.2.101 .. 10.0.2.200
MAX_DELAY = 60.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
RESERVED = (OUTSIDE, MAIN)


def check_names(names: Any) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise TypeError(f"Network(names): give a list of host names such as ['a', 'b', 'c'], not {names!r}")
    out = list(names)
    if not 1 <= len(out) <= MAX_HOSTS:
        raise ValueError(f"Network(names): {len(out)} hosts; use 1..{MAX_HOSTS}")
    for n in out:
        if not isinstance(n, str) or not _NAME.match(n):
            raise ValueError(f"Network(names): {n!r} is not a valid host name "
                             "(lower-case letters, digits and '-', at most 31 characters)")
        if n in RESERVED:
            raise ValueError(f"Network(names): {n!r} is reserved ('host' is the outside, 'main' the instance's own namespace)")
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ValueError(f"Network(names): duplicate host name(s) {', '.join(dup)}")
    return out


def impairment(*, netem: str | None = None, **params: Any) -> dict[str, Any]:
    """Validate impairment settings (stack.impair.Impairment's fields, and/or tc netem's words
    in `netem=`); the JSON body for the API. A bad value raises ImpairmentError (a ValueError)
    naming the parameter and its range; `timedelta`s are taken for times."""
    from rootlessnet.stack.impair import Impairment, ImpairmentError

    unknown = sorted(set(params) - set(IMPAIRMENT_FIELDS))
    if unknown:
        raise TypeError(f"impair(): unknown parameter(s) {', '.join(unknown)}; known: netem, {', '.join(IMPAIRMENT_FIELDS)}")
    if netem is not None:
        from rootlessnet.stack.netem import parse_netem

        if not isinstance(netem, str):
            raise TypeError(f"impair(netem={netem!r}): give tc netem's words as a string, e.g. 'delay 100ms loss 1%'")
        params = {**parse_netem(netem), **params}
    for name in ("delay", "jitter"):
        if isinstance(params.get(name), datetime.timedelta):
            params[name] = params[name].total_seconds()
    if params.get("seed") is None:
        params.pop("seed", None)
    try:
        return Impairment(**params).to_json()
    except ImpairmentError as e:
        raise ImpairmentError(e.parameter, e.value, e.allowed, context="impair") from None


def _field_names() -> tuple[str, ...]:
    from dataclasses import fields

    from rootlessnet.stack.impair import Impairment

    return tuple(f.name for f in fields(Impairment))


IMPAIRMENT_FIELDS = _field_names()
DIRECTIONS = ("both", "up", "down")


def _direction(direction: Any) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: use 'up' (what the host sends), 'down' (what it receives) or 'both'")
    return direction


def partition_body(groups: Sequence[Any], known: list[str]) -> dict[str, Any]:
    if len(groups) < 2:
        raise ValueError("partition(): give at least two groups, e.g. partition({'a'}, {'b', 'c'})")
    out: list[list[str]] = []
    seen: set[str] = set()
    for g in groups:
        members = [g] if isinstance(g, str) else list(g)
        if not members:
            raise ValueError("partition(): empty group")
        for m in members:
            if m not in RESERVED and m not in known:
                raise UnknownHostError(m, known + list(RESERVED))
            if m in seen:
                raise ValueError(f"partition(): {m!r} is in two groups")
            seen.add(m)
        out.append(sorted(members))
    return {"groups": out}


@dataclass(frozen=True)
class HostInfo:
    name: str
    ipv4: str
    ipv6: str | None


def host_infos(core: Core, names: list[str]) -> dict[str, HostInfo]:
    try:
        listed = core.api.request("GET", "/v1/hosts")
    except ApiRequestError as e:
        if e.status != 404:
            raise
        listed = None
    if not listed:  # an engine without the listing: the documented addressing
        listed = [{"name": n, "ipv4": f"10.0.2.{101 + i}", "ipv6": f"fd00::{101 + i}" if core.opts.ipv6 else None}
                  for i, n in enumerate(names)]
    return {h["name"]: HostInfo(h["name"], h["ipv4"], h.get("ipv6")) for h in listed}


class _HostBase:
    def __init__(self, net: Any, info: HostInfo):
        self._net = net
        self._core: Core = net._core
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def ipv4(self) -> str:
        return self.info.ipv4

    @property
    def ipv6(self) -> str | None:
        return self.info.ipv6

    @property
    def hostname(self) -> str:
        return self.info.name

    @property
    def _netns(self) -> str:  # type: ignore[override]
        return self.info.name

    @property
    def _hostname(self) -> str:  # type: ignore[override]
        return self.info.name

    def __repr__(self) -> str:
        v6 = f" {self.ipv6}" if self.ipv6 else ""
        return f"<host {self.name} {self.ipv4}{v6}>"


class Host(_HostBase, _Runner):
    """One host of a Network: `.name`, `.ipv4`, `.ipv6`, `.run()`, `.popen()`, `.add_port()`, `.link`."""

    def _track(self, p: subprocess.Popen) -> None:
        self._net._track(p)

    @property
    def link(self) -> "Link":
        return self._net.link(self.name)

    def add_port(self, child_port: int, host_port: int = 0, proto: str = "tcp", *,
                 host_ip: str = "127.0.0.1") -> tuple[str, int]:
        """Publish this host's `child_port` on the host's host_ip:host_port (0: a free port)."""
        self._core.check_running()
        child_ip = self.ipv6 if proto.endswith("6") and self.ipv6 else self.ipv4
        return self._core.publish(child_port, host_port, proto, host_ip, child_ip)


class Link:
    """The link between one host (or "main") and the engine's switch. "up" carries what the host
    sends, "down" what it receives; impairments, holds and statistics per direction or both."""

    def __init__(self, core: Core, name: str):
        self._core = core
        self.name = name

    def impair(self, *, direction: str = "both", netem: str | None = None, **params: Any) -> dict[str, Any]:
        """Replace this link's impairment (in `direction`): netem's parameters as keywords
        (delay=, jitter=, distribution=, loss=, rate=, slot=, ... see docs/harness.md) and/or
        tc's words in netem="delay 100ms 10ms distribution normal loss 1%". Takes effect at once."""
        body = impairment(netem=netem, **params)
        self._core.check_running()
        return self._core.api.request("PUT", f"/v1/links/{self.name}", {**body, "direction": _direction(direction)})

    def clear(self, direction: str = "both") -> None:
        """No impairment any more (in `direction`)."""
        self._core.check_running()
        self._core.api.request("PUT", f"/v1/links/{self.name}", {"direction": _direction(direction)})

    def hold(self, direction: str = "both") -> None:
        """Frames queue on this link (up to its limit) until release()."""
        self._core.check_running()
        self._core.api.request("PUT", "/v1/holds", {"link": self.name, "direction": _direction(direction)})

    def release(self, direction: str = "both") -> None:
        """The held frames leave, in order; later ones pass as usual."""
        self._core.check_running()
        self._core.api.request("DELETE", "/v1/holds", {"link": self.name, "direction": _direction(direction)})

    @property
    def settings(self) -> dict[str, Any]:
        """{"up": settings, "down": settings}."""
        self._core.check_running()
        got = self._core.api.request("GET", f"/v1/links/{self.name}")
        return {d: got[d] for d in ("up", "down")}

    @property
    def statistics(self) -> dict[str, int]:
        """Counters of both directions: frames, lost, duplicated, corrupted, reordered, overlimit, delivered, queued."""
        self._core.check_running()
        return self._core.api.request("GET", f"/v1/links/{self.name}")["statistics"]

    def __repr__(self) -> str:
        return f"<link {self.name}>"


class Pair:
    """Frames from one host to another (`both=True`: and back), after the sender's link and
    before the receiver's. "host" (the outside) and "main" can be either end."""

    def __init__(self, core: Core, src: str, dst: str, both: bool):
        self._core = core
        self.src, self.dst, self.both = src, dst, both

    def impair(self, *, netem: str | None = None, **params: Any) -> dict[str, Any]:
        body = impairment(netem=netem, **params)
        self._core.check_running()
        return self._core.api.request("PUT", f"/v1/pairs/{self.src}/{self.dst}", {**body, "both": self.both})

    def clear(self) -> None:
        self._core.check_running()
        self._core.api.request("PUT", f"/v1/pairs/{self.src}/{self.dst}", {"both": self.both})

    def hold(self) -> None:
        self._core.check_running()
        self._core.api.request("PUT", "/v1/holds", {"pair": [self.src, self.dst], "both": self.both})

    def release(self) -> None:
        self._core.check_running()
        self._core.api.request("DELETE", "/v1/holds", {"pair": [self.src, self.dst], "both": self.both})

    def __repr__(self) -> str:
        return f"<pair {self.src}{'<->' if self.both else '->'}{self.dst}>"


def _members(x: Any) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


class Network(Sandbox):
    """Hosts `names` (each its own netns, hostname, addresses), switched by the engine.

    Takes Sandbox's options too; `hosts=` adds DNS entries to the host names.
    `net.run()` runs in the instance's own namespace (not one of the hosts).
    """

    def __init__(self, names: Sequence[str], **options: Any):
        self.names = check_names(names)
        super().__init__(**options)
        self._hosts: dict[str, Host] = {}

    def _extra_flags(self) -> list[str]:
        return ["--hosts", ",".join(self.names)]

    def _after_start(self) -> None:
        infos = host_infos(self._core, self.names)
        self._hosts = {n: Host(self, infos[n]) for n in self.names}

    def host(self, name: str) -> Host:
        try:
            return self._hosts[name]
        except (KeyError, TypeError):
            raise UnknownHostError(name, self.names) from None

    __getitem__ = host

    @property
    def hosts(self) -> list[Host]:
        return [self._hosts[n] for n in self.names]

    def link(self, name: str) -> Link:
        """The link of host `name` (or "main") to the engine's switch."""
        if name not in self.names and name != MAIN:
            raise UnknownHostError(name, self.names + [MAIN])
        return Link(self._core, name)

    def pair(self, src: str, dst: str, *, both: bool = False) -> Pair:
        """Frames from `src` to `dst` (and back with both=True): hosts, "main" or "host"."""
        for n in (src, dst):
            if n not in self.names and n not in RESERVED:
                raise UnknownHostError(n, self.names + list(RESERVED))
        if src == dst:
            raise ValueError(f"pair({src!r}, {dst!r}): a pair needs two different ends")
        if not isinstance(both, bool):
            raise TypeError(f"pair(both={both!r}): use True or False")
        return Pair(self._core, src, dst, both)

    def partition(self, *groups: Iterable[str] | str) -> None:
        """Drop frames between groups, both ways. Names: the hosts, "host" (the outside)
        and "main" (the instance's namespace); those not listed are unaffected.
        Replaces any previous partition (and one-way blocks)."""
        body = partition_body(groups, self.names)
        self._core.check_running()
        self._core.api.request("PUT", "/v1/partition", body)

    def isolate(self, *names: str) -> None:
        """A minority: `names` keep talking to each other, and nobody else (the other hosts,
        "main", the outside) reaches them or is reached by them. Replaces any previous partition."""
        minority = set()
        for n in names:
            minority.update(_members(n))
        rest = [n for n in [*self.names, *RESERVED] if n not in minority]
        self.partition(sorted(minority), rest)

    def block(self, src: Iterable[str] | str, dst: Iterable[str] | str) -> None:
        """One way: frames from `src` (a name or several) to `dst` are dropped; the other way passes.
        Adds to the current partition."""
        a, b = _members(src), _members(dst)
        for n in a + b:
            if n not in self.names and n not in RESERVED:
                raise UnknownHostError(n, self.names + list(RESERVED))
        self._core.check_running()
        cur = self._core.api.request("GET", "/v1/partition") or {}
        blocks = [{"from": [x], "to": [y]} for x, y in cur.get("blocked", [])] + [{"from": a, "to": b}]
        self._core.api.request("PUT", "/v1/partition", {"groups": cur.get("groups", []), "block": blocks})

    def unblock(self, src: Iterable[str] | str, dst: Iterable[str] | str) -> None:
        """Let frames from `src` to `dst` pass again (the partition's groups are then forgotten)."""
        gone = {(x, y) for x in _members(src) for y in _members(dst)}
        self._core.check_running()
        cur = self._core.api.request("GET", "/v1/partition") or {}
        left = [{"from": [x], "to": [y]} for x, y in cur.get("blocked", []) if (x, y) not in gone]
        if left:
            self._core.api.request("PUT", "/v1/partition", {"block": left})
        else:
            self._core.api.request("DELETE", "/v1/partition")

    def heal(self) -> None:
        """Remove the partition and every one-way block."""
        self._core.check_running()
        self._core.api.request("DELETE", "/v1/partition")

    @property
    def partitions(self) -> list[set[str]]:
        """The current partition's groups ([] when healed)."""
        self._core.check_running()
        got = self._core.api.request("GET", "/v1/partition") or {}
        return [set(g) for g in got.get("groups", [])]

    @property
    def blocked(self) -> set[tuple[str, str]]:
        """Every (src, dst) whose frames are dropped now, from partitions and blocks."""
        self._core.check_running()
        got = self._core.api.request("GET", "/v1/partition") or {}
        return {(a, b) for a, b in got.get("blocked", [])}

    def impairments(self) -> dict[str, Any]:
        """The switch's queues (per link direction and pair) with their counters, holds, cuts and settings."""
        self._core.check_running()
        return self._core.api.request("GET", "/v1/impairments")
