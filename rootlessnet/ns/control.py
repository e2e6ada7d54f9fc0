"""The control channel between the parent and the namespace child.

One AF_UNIX SOCK_SEQPACKET socketpair: each message is one JSON object,
optionally carrying file descriptors (SCM_RIGHTS). Requests carry an `id`;
replies echo it with `ok` true/false. The child side is synchronous (it runs
in a thread of the child); the parent side is trio.
"""

from __future__ import annotations

import array
import errno
import json
import os
import socket
from typing import Any

MAX_MSG = 65536
MAX_FDS = 16


class ControlError(Exception):
    """The other side answered a request with an error, or went away."""


def encode(msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg, separators=(",", ":")).encode()
    if len(data) > MAX_MSG:
        raise ValueError(f"control message too large ({len(data)} bytes)")
    return data


def decode(data: bytes) -> dict[str, Any]:
    msg = json.loads(data)
    if not isinstance(msg, dict):
        raise ControlError("control message is not an object")
    return msg


def _fds_from_ancdata(ancdata) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - (len(data) % a.itemsize)])
            fds.extend(a)
    return fds


def send_msg(sock: socket.socket, msg: dict[str, Any], fds: tuple[int, ...] | list[int] = ()) -> None:
    data = encode(msg)
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def _check_truncated(flags: int, fds: list[int]) -> None:
    """Descriptors were dropped on the way in: the kernel does that when this process has no
    room for them (our buffer fits MAX_FDS), so say so rather than go on without them."""
    if flags & socket.MSG_CTRUNC:
        for fd in fds:
            socket.close(fd)
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))


def recv_msg(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """Next message and its fds; (None, []) at EOF."""
    data, fds, flags, _addr = socket.recv_fds(sock, MAX_MSG, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
    _check_truncated(flags, fds)
    if not data:
        for fd in fds:
            socket.close(fd)
        return None, []
    return decode(data), list(fds)


class AsyncControl:
    """Parent side: trio request/response over the control socket.

    Before `serve()` runs, `send()`/`recv()` do the bootstrap handshake. Once
    it runs, `request()` may be called from any task.
    """

    def __init__(self, sock: socket.socket):
        import trio

        self._trio = trio
        self.sock = trio.socket.from_stdlib_socket(sock)
        self._next_id = 1
        self._waiting: dict[int, Any] = {}
        self._closed = False
        self._send_lock = trio.Lock()

    async def send(self, msg: dict[str, Any], fds: tuple[int, ...] | list[int] = ()) -> None:
        data = encode(msg)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        async with self._send_lock:
            await self.sock.sendmsg([data], anc)

    async def recv(self) -> tuple[dict[str, Any] | None, list[int]]:
        space = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
        data, anc, flags, _addr = await self.sock.recvmsg(MAX_MSG, space, socket.MSG_CMSG_CLOEXEC)
        fds = _fds_from_ancdata(anc)
        _check_truncated(flags, fds)
        if not data:
            for fd in fds:
                socket.close(fd)
            return None, []
        return decode(data), fds

    async def serve(self) -> None:
        """Dispatch replies to waiting requests until the child closes the channel."""
        try:
            while True:
                msg, fds = await self.recv()
                if msg is None:
                    break
                slot = self._waiting.pop(msg.get("id"), None)
                if slot is None:
                    for fd in fds:
                        socket.close(fd)
                    continue
                slot[1] = (msg, fds)
                slot[0].set()
        finally:
            self._closed = True
            for event, _ in list(self._waiting.values()):
                event.set()

    async def request(self, op: str, **args: Any) -> tuple[dict[str, Any], list[int]]:
        """Ask the child to do `op`; returns (reply, fds) or raises ControlError."""
        if self._closed:
            raise ControlError("the namespace child has exited")
        rid = self._next_id
        self._next_id += 1
        slot = [self._trio.Event(), None]
        self._waiting[rid] = slot
        try:
            await self.send({"id": rid, "op": op, **args})
            await slot[0].wait()
        finally:
            self._waiting.pop(rid, None)
        if slot[1] is None:
            raise ControlError("the namespace child has exited")
        reply, fds = slot[1]
        if not reply.get("ok"):
            for fd in fds:
                socket.close(fd)
            raise ControlError(reply.get("error", "request failed"))
        return reply, fds
