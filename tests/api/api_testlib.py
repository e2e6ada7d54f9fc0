"""Shared helpers for tests/api: an in-memory port driver and raw HTTP over a UNIX socket."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from types import SimpleNamespace

import trio

from rootlessnet.api.server import serve_api
from rootlessnet.port.spec import PROTOS, PortError, PortSpec, PortStatus, conflicts

INFO = {
    "apiVersion": "1.1.1", "version": "0.1.0", "stateDir": "/tmp/state", "childPID": 4242,
    "networkDriver": {"driver": "slirp4netns", "dns": ["10.0.2.3"], "childIP": "10.0.2.100", "dynamicChildIP": False},
    "portDriver": {"driver": "builtin", "protos": list(PROTOS), "disallowLoopbackChildIP": False},
}
STATS = {"tcp": {"active": 2, "retransmits": 0}, "udp": {"flows": 1}, "frames": 1234}


class FakePorts:
    """An in-memory PortDriver: conflicts via port.spec.conflicts, ids from 1."""

    name = "builtin"
    protos = PROTOS
    disallow_loopback_child_ip = False

    def __init__(self) -> None:
        self.ports: dict[int, PortStatus] = {}
        self.next_id = 1
        self.fail_with: BaseException | None = None  # make add() raise this

    async def add(self, spec: PortSpec) -> PortStatus:
        await trio.lowlevel.checkpoint()
        if self.fail_with is not None:
            raise self.fail_with
        for st in self.ports.values():
            if conflicts(st.spec, spec):
                raise PortError(f"conflict with ID {st.id}")
        st = PortStatus(self.next_id, spec)
        self.next_id += 1
        self.ports[st.id] = st
        return st

    async def remove(self, port_id: int) -> None:
        await trio.lowlevel.checkpoint()
        if port_id not in self.ports:
            raise PortError(f"unknown id {port_id}")
        del self.ports[port_id]

    def list(self) -> list[PortStatus]:
        return [self.ports[k] for k in sorted(self.ports)]


def short_tmpdir() -> str:
    """A 0700 directory with a short path (AF_UNIX paths are limited to 107 bytes)."""
    return tempfile.mkdtemp(prefix="rn-api-", dir="/tmp")


async def start_server(nursery: trio.Nursery, *, ports=True, stats=True) -> SimpleNamespace:
    d = short_tmpdir()
    path = os.path.join(d, "api.sock")
    drv = FakePorts() if ports else None
    info = dict(INFO, stateDir=d)
    await nursery.start(functools.partial(serve_api, path, info=lambda: info, ports=drv,
                                          stats=(lambda: STATS) if stats else None))
    return SimpleNamespace(dir=d, path=path, ports=drv, info=info, cleanup=lambda: shutil.rmtree(d, ignore_errors=True))


async def raw(path: str, data: bytes, *, timeout: float = 5.0, shutdown: bool = False) -> bytes:
    """Send `data` on a new connection and read until the server closes it."""
    with trio.fail_after(timeout):
        stream = await trio.open_unix_socket(path)
        async with stream:
            await stream.send_all(data)
            if shutdown:
                await stream.send_eof()
            out = b""
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                out += chunk
            return out


def parse_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream into (status, headers, body) responses (Content-Length framed)."""
    out = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {head!r}"
        lines = head.decode("latin-1").split("\r\n")
        version, status, _ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1"
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        body, data = data[:n], data[n:]
        assert len(body) == n
        out.append((int(status), headers, body))
    return out
