"""slirp4netns_api: the `--api-socket` protocol of slirp4netns 1.2, on a port driver.

One JSON request per connection; the client writes it and shuts down its
write side, we answer and close. The answers and error strings are
slirp4netns 1.2.0's, byte for byte (measured against /usr/bin/slirp4netns):

    {"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0",
     "host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}
        -> {"return":{"id":1}}
    {"execute":"list_hostfwd"}
        -> {"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0",
            "host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}
           (slirp4netns does NOT wrap this one in "return")
    {"execute":"remove_hostfwd","arguments":{"id":1}} -> {"return":{}}

Errors are `{"error":{"desc":"bad request: ..."}}`; where a driver refused a
forward we add its reason as `"detail"` (clients read only `desc`). Our
extensions: IPv6 `host_addr`/`guest_addr`, a request is answered as soon as
it is complete JSON (slirp4netns reads once), and ports outside 1-65535 are
refused (slirp4netns accepts -5 and 70000).

`handle_request` is the protocol (bytes in, bytes out, a driver); `serve`
is its trio socket shell.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
from typing import Any

import trio

from rootlessnet.api.jsonbody import nesting_depth
from rootlessnet.api.unixpath import usable
from rootlessnet.port.spec import PortError, PortSpec, SpecError

MAX_REQUEST = 4096  # slirp4netns's buffer: a request of 4096 bytes or more is "too large"
MAX_DEPTH = 64  # deeper JSON is refused as unparsable (Python's json would hit the recursion limit)
REQUEST_TIMEOUT = 10.0  # a client that neither completes its JSON nor shuts down is dropped

ERR_TOO_LARGE = "too large message"
ERR_PARSE = "cannot parse JSON"
ERR_NOT_OBJECT = "json_object() failed"
ERR_NO_EXECUTE = "no execute found"
ERR_UNKNOWN = "unknown execute"
ERR_ADD_FAILED = "add_hostfwd: slirp_add_hostfwd failed"
ERR_REMOVE_ID = "remove_hostfwd: bad arguments.id"
ERR_REMOVE_FAILED = "remove_hostfwd: slirp_remove_hostfwd failed"


def _bad_arg(field: str) -> str:
    return f"add_hostfwd: bad arguments.{field}"


def error(desc: str, detail: str | None = None) -> bytes:
    body: dict[str, Any] = {"desc": f"bad request: {desc}"}
    if detail:
        body["detail"] = detail
    return _dump({"error": body})


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class _Refused(Exception):
    def __init__(self, desc: str, detail: str | None = None):
        super().__init__(desc)
        self.desc = desc
        self.detail = detail


def parse_request(data: bytes) -> dict[str, Any]:
    """The request object; raises _Refused with slirp4netns's description."""
    if len(data) >= MAX_REQUEST:
        raise _Refused(ERR_TOO_LARGE)
    try:
        text = data.decode()
        if nesting_depth(text, MAX_DEPTH) > MAX_DEPTH:
            raise ValueError("nested too deeply")  # parson's own limit is 2048; Python would recurse out
        # parson (slirp4netns's parser) ignores what follows the first value
        obj, _end = json.JSONDecoder(object_pairs_hook=_reject_duplicates).raw_decode(text.lstrip())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Refused(ERR_PARSE) from None
    if not isinstance(obj, dict):
        raise _Refused(ERR_NOT_OBJECT)
    if not isinstance(obj.get("execute"), str):
        raise _Refused(ERR_NO_EXECUTE)
    return obj


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # parson refuses an object with a repeated key
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def is_complete(data: bytes) -> bool:
    """Whether `data` already holds one whole JSON value (answer without waiting for EOF)."""
    try:
        text = data.decode()
        if nesting_depth(text, MAX_DEPTH) > MAX_DEPTH:
            return False  # parse_request refuses it once the client is done
        json.JSONDecoder().raw_decode(text.lstrip())
        return True
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False


def _number(args: dict[str, Any], key: str) -> int | None:
    """A JSON number truncated to int as slirp4netns does (80.9 -> 80); None if absent or not a number."""
    v = args.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return int(v)
    except (OverflowError, ValueError):
        return None


def _addr(args: dict[str, Any], key: str, default: str) -> str | None:
    """An IP address argument: absent, null, non-string or "" mean `default` (as slirp4netns)."""
    v = args.get(key)
    if not isinstance(v, str) or v == "":
        return default
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        return None


class ApiHandler:
    """Executes requests on a PortDriver; one at a time (slirp4netns is single-threaded)."""

    def __init__(self, driver: Any, guest_addr: str = "10.0.2.100"):
        self.driver = driver
        self.guest_addr = guest_addr
        self._lock = trio.Lock()

    async def handle(self, data: bytes) -> bytes:
        try:
            req = parse_request(data)
            execute = req["execute"]
            args = req.get("arguments")
            if not isinstance(args, dict):
                args = {}
            async with self._lock:
                if execute == "add_hostfwd":
                    return await self._add(args)
                if execute == "list_hostfwd":
                    return self._list()
                if execute == "remove_hostfwd":
                    return await self._remove(args)
            raise _Refused(ERR_UNKNOWN)
        except _Refused as e:
            return error(e.desc, e.detail)

    def _proto(self, base: str, addr: str) -> str:
        """tcp4/udp6... when the driver knows them: slirp4netns binds exactly the given family."""
        family = f"{base}{ipaddress.ip_address(addr).version}"
        return family if family in getattr(self.driver, "protos", ()) else base

    async def _add(self, args: dict[str, Any]) -> bytes:
        proto = args.get("proto")
        if proto not in ("tcp", "udp"):
            raise _Refused(_bad_arg("proto"))
        host_addr = _addr(args, "host_addr", "0.0.0.0")
        if host_addr is None:
            raise _Refused(_bad_arg("host_addr"))
        host_port = _number(args, "host_port")
        if not host_port or not 0 < host_port < 65536:
            raise _Refused(_bad_arg("host_port"))
        guest_addr = _addr(args, "guest_addr", self.guest_addr)
        if guest_addr is None:
            raise _Refused(_bad_arg("guest_addr"))
        guest_port = _number(args, "guest_port")
        if not guest_port or not 0 < guest_port < 65536:
            raise _Refused(_bad_arg("guest_port"))
        try:
            spec = PortSpec(self._proto(proto, host_addr), host_addr, host_port, guest_addr, guest_port)
            status = await self.driver.add(spec)
        except (PortError, SpecError, OSError) as e:
            raise _Refused(ERR_ADD_FAILED, str(e) or type(e).__name__) from None
        return _dump({"return": {"id": status.id}})

    def _list(self) -> bytes:
        entries = []
        for st in sorted(self.driver.list(), key=lambda s: s.id):
            sp = st.spec
            entries.append({"id": st.id, "proto": sp.base_proto, "host_addr": sp.parent_ip or "0.0.0.0",
                            "host_port": sp.parent_port, "guest_addr": sp.child_ip or self.guest_addr,
                            "guest_port": sp.child_port})
        return _dump({"entries": entries})

    async def _remove(self, args: dict[str, Any]) -> bytes:
        port_id = _number(args, "id")
        if port_id is None or port_id not in {st.id for st in self.driver.list()}:
            raise _Refused(ERR_REMOVE_ID)
        try:
            await self.driver.remove(port_id)
        except (PortError, OSError) as e:
            raise _Refused(ERR_REMOVE_FAILED, str(e) or type(e).__name__) from None
        return _dump({"return": {}})


async def read_request(stream: trio.abc.ReceiveStream) -> bytes:
    """Until EOF, a complete JSON value, or MAX_REQUEST bytes."""
    data = b""
    while len(data) < MAX_REQUEST:
        chunk = await stream.receive_some(MAX_REQUEST - len(data))
        if not chunk:
            break
        data += chunk
        if is_complete(data):
            break
    return data


async def handle_connection(handler: ApiHandler, stream: trio.SocketStream) -> None:
    """One request, one answer; nothing a client sends can end the engine."""
    async with stream:
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                data = await read_request(stream)
                answer = await handler.handle(data)
                await stream.send_all(answer)
                if len(data) >= MAX_REQUEST:
                    # drain (bounded) so that closing does not reset the connection before the answer is read
                    for _ in range(64):
                        if not await stream.receive_some(65536):
                            break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:  # noqa: BLE001 - a bug in a request's handling is that request's, not the engine's
            import traceback

            traceback.print_exc()


def bind_socket(path: str) -> socket.socket:
    """A listening AF_UNIX socket at `path`; a stale socket file there is replaced (as slirp4netns does)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with usable(path) as short:  # a path over 107 bytes is bound through its directory's fd
            sock.bind(short)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(handler: ApiHandler, sock: socket.socket,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Accept connections on `sock` (from bind_socket; closed on return) until cancelled."""
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    async with listener, trio.open_nursery() as nursery:
        task_status.started()
        while True:
            stream = await listener.accept()
            nursery.start_soon(handle_connection, handler, stream)
