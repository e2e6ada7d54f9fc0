"""`Network`: several hosts in one instance, switched by the engine, with
partitions and per-host link impairments changeable at run time.

    with Network(["a", "b", "c"]) as net:
        net.host("b").popen(["python3", "server.py"])
        net.link("a").impair(delay=0.1, loss=0.2, seed=1)
        net.partition({"a"}, {"b", "c"})
        net.heal()

Each host is its own network namespace inside the instance (pinned at
`STATE/netns.d/NAME`) with a tap served by the engine, address 10.0.2.(101+i)
(fd00::(101+i) with ipv6=True), its name as hostname, and every host in
/etc/hosts and in the engine's DNS. See docs/harness.md.
"""

from __future__ import annotations

import datetime
import math
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
FRACTIONS = ("loss", "reorder", "duplicate", "corrupt")


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


def _seconds(name: str, v: Any) -> float:
    if isinstance(v, datetime.timedelta):
        v = v.total_seconds()
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
        raise ValueError(f"impair({name}={v!r}): use a number of seconds >= 0 (0.1 = 100 ms)")
    if v > MAX_DELAY:
        raise ValueError(f"impair({name}={v!r}): {v:g} s is over {MAX_DELAY:g} s; "
                         "delays are in seconds (0.1 = 100 ms)")
    return float(v)


def impairment(*, delay: Any = 0, jitter: Any = 0, loss: Any = 0, rate: Any = None, reorder: Any = 0,
               duplicate: Any = 0, corrupt: Any = 0, seed: Any = None, limit: Any = 1000) -> dict[str, Any]:
    """Validate impairment values; the JSON body for PUT /v1/links/NAME."""
    body: dict[str, Any] = {"delay": _seconds("delay", delay), "jitter": _seconds("jitter", jitter)}
    for name, v in (("loss", loss), ("reorder", reorder), ("duplicate", duplicate), ("corrupt", corrupt)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not 0 <= v <= 1:
            hint = " (20 % is 0.2)" if isinstance(v, (int, float)) and not isinstance(v, bool) and 1 < v <= 100 else ""
            raise ValueError(f"impair({name}={v!r}): use a fraction between 0 and 1{hint}")
        body[name] = float(v)
    if rate is not None:
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not math.isfinite(rate) or rate < 1000:
            raise ValueError(f"impair(rate={rate!r}): use bits per second >= 1000 (1_000_000 = 1 Mbit/s), "
                             "or None for no limit")
        body["rate"] = rate
    else:
        body["rate"] = None
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"impair(seed={seed!r}): use an integer")
        body["seed"] = seed
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1_000_000:
        raise ValueError(f"impair(limit={limit!r}): use a number of frames in 1..1000000 (netem's default is 1000)")
    body["limit"] = limit
    return body


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
    """The link between one host and the engine's switch: impairments apply to
    frames in both directions on it (to other hosts and to the outside)."""

    def __init__(self, core: Core, name: str):
        self._core = core
        self.name = name

    def impair(self, **kw: Any) -> dict[str, Any]:
        """Replace this link's impairment: delay=, jitter= (seconds), loss=,
        reorder=, duplicate=, corrupt= (fractions 0..1), rate= (bit/s), seed=, limit= (frames queued)."""
        body = impairment(**kw)
        self._core.check_running()
        return self._core.api.request("PUT", f"/v1/links/{self.name}", body)

    def clear(self) -> dict[str, Any]:
        """No impairment any more."""
        self._core.check_running()
        return self._core.api.request("PUT", f"/v1/links/{self.name}", {})

    @property
    def settings(self) -> dict[str, Any]:
        self._core.check_running()
        return self._core.api.request("GET", "/v1/links").get(self.name, {})

    def __repr__(self) -> str:
        return f"<link {self.name}>"


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

    def partition(self, *groups: Iterable[str] | str) -> None:
        """Drop frames between groups. Names: the hosts, "host" (the outside)
        and "main" (the instance's namespace); those not listed are unaffected.
        Replaces any previous partition."""
        body = partition_body(groups, self.names)
        self._core.check_running()
        self._core.api.request("PUT", "/v1/partition", body)

    def heal(self) -> None:
        """Remove the partition."""
        self._core.check_running()
        self._core.api.request("DELETE", "/v1/partition")

    @property
    def partitions(self) -> list[set[str]]:
        """The current partition's groups ([] when healed)."""
        self._core.check_running()
        got = self._core.api.request("GET", "/v1/partition") or {}
        return [set(g) for g in got.get("groups", [])]
