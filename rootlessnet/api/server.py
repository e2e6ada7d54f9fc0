"""api.server: the rootlesskit-compatible REST API (API 1.1.1) on `STATE/api.sock`.

HTTP/1.1 over a UNIX stream socket, parsed and framed by h11 (the sans-IO
HTTP/1.1 state machine); this module is its trio shell plus the routes.
Keep-alive and pipelining as h11 does them, bounded sizes and timeouts.
Every request gets an answer or the connection is closed; nothing a client
sends can make an exception escape `serve_api`.

Routes (rootlesskit's, plus `/v1/stats` and the `extensions` hook, which
the instance uses for api.network's multi-host routes):

    GET    /v1/info        200 info()
    GET    /v1/ports       200 [PortStatus JSON...]        (400 without a port driver)
    POST   /v1/ports       201 PortStatus JSON              (400 bad JSON / spec / driver refusal)
    DELETE /v1/ports/{id}  200 empty body                   (400 bad or unknown id)
    GET    /v1/stats       200 stats()                      (404 without stats)

Errors are `{"message": "..."}` with a 4xx/5xx status: 400 for what h11 or
we cannot parse, 408 for a request not complete within REQUEST_TIMEOUT, 411
for a Transfer-Encoding body, 413 for a body over MAX_BODY_BYTES, 431 for
headers over MAX_HEADER_BYTES, 505 for HTTP versions other than 1.0/1.1.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket as _stdsocket
import stat
from dataclasses import dataclass, field
from typing import Any, Callable

import h11
import trio

from rootlessnet.api import jsonbody
from rootlessnet.api.unixpath import usable
from rootlessnet.errors import UserError
from rootlessnet.port.spec import PortDriver, PortError, PortSpec, SpecError

log = logging.getLogger("rootlessnet.api")

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
IDLE_TIMEOUT = 30.0  # waiting for the first byte of a request
REQUEST_TIMEOUT = 30.0  # from the first byte to the end of the body
WRITE_TIMEOUT = 30.0
LINGER_TIMEOUT = 1.0  # draining unread input before closing after an error
LINGER_BYTES = 4 * MAX_BODY_BYTES
RECV_CHUNK = 65536

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
    413: "Payload Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    505: "HTTP Version Not Supported",
}

_PORT_ID = re.compile(r"/v1/ports/([^/]*)")


class HttpError(Exception):
    """A request we cannot accept: answer `status` and close the connection."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    target: str
    version: tuple[int, int]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""

    @property
    def path(self) -> str:
        target = self.target
        if not target.startswith("/"):  # absolute-form: http://host/path
            rest = target.split("://", 1)[1]
            target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        return target.split("?", 1)[0]


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    # Go's json.Encoder: compact, one trailing newline. Never NaN/Infinity (not JSON).
    try:
        body = (jsonbody.dumps(obj) + "\n").encode()
    except ValueError as e:
        status, body = 500, (jsonbody.dumps({"message": f"internal error: answer is not JSON ({e})"}) + "\n").encode()
    return Response(status, body, [("Content-Type", "application/json")] + (headers or []))


def error_response(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return json_response(status, {"message": message}, headers)


def _request_from(event: h11.Request) -> Request:
    """Our view of an h11 request; HttpError for what h11 lets through but we refuse."""
    version = event.http_version.decode("ascii", "replace")
    if version not in ("1.0", "1.1"):
        raise HttpError(505, f"HTTP/{version} is not supported: use HTTP/1.1")
    try:
        target = event.target.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "malformed request target") from None
    if not (target.startswith("/") or target.lower().startswith(("http://", "https://"))):
        raise HttpError(400, "malformed request target")
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key, text = name.decode("ascii").lower(), value.decode("latin-1")
        headers[key] = headers[key] + ", " + text if key in headers else text
    if "transfer-encoding" in headers:
        raise HttpError(411, "Transfer-Encoding (chunked bodies) is not supported: send Content-Length")
    cl = headers.get("content-length")
    if cl is not None:
        if len(cl) > 18:
            raise HttpError(400, "bad Content-Length")
        if int(cl) > MAX_BODY_BYTES:
            raise HttpError(413, f"request body too large (limit {MAX_BODY_BYTES} bytes)")
    major, minor = (int(x) for x in version.split("."))
    return Request(event.method.decode("ascii"), target, (major, minor), headers)


class _Conn:
    """One accepted stream and its h11 state machine."""

    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.eof = False
        self.head_bytes = 0  # bytes given to h11 while it reads a request head (h11 bounds only incomplete ones)

    async def fill(self) -> None:
        """Read more from the client into h11; at EOF tell h11 so."""
        data = await self.stream.receive_some(RECV_CHUNK)
        if not data:
            self.eof = True
            self.h11.receive_data(b"")
            return
        if self.h11.their_state is h11.IDLE and not self.h11.trailing_data[0]:
            # blank lines before a request line are ignored (RFC 9112 section 2.2); h11 refuses them
            data = data.lstrip(b"\r\n")
            if not data:
                return
        if self.h11.their_state is h11.IDLE:
            self.head_bytes += len(data)
        self.h11.receive_data(data)

    async def next_event(self) -> Any:
        """The next h11 event, reading as needed; h11.RemoteProtocolError propagates."""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if self.eof:
                    return h11.ConnectionClosed()
                await self.fill()
                continue
            return event

    async def send(self, *events: Any) -> None:
        data = b"".join(self.h11.send(e) or b"" for e in events)
        if data:
            with trio.fail_after(WRITE_TIMEOUT):
                await self.stream.send_all(data)


async def _read_request(conn: _Conn) -> Request | None:
    """The next request with its body, or None when the client closed (or idled out) between requests."""
    if not conn.h11.trailing_data[0]:
        with trio.move_on_after(IDLE_TIMEOUT):
            while not conn.h11.trailing_data[0] and not conn.eof:
                await conn.fill()
        if not conn.h11.trailing_data[0]:
            return None
    conn.head_bytes = len(conn.h11.trailing_data[0])  # a pipelined request may be there already
    too_large = HttpError(431, f"request headers too large (limit {MAX_HEADER_BYTES} bytes)")
    with trio.move_on_after(REQUEST_TIMEOUT) as scope:
        try:
            event = await conn.next_event()
            if isinstance(event, h11.ConnectionClosed):
                return None
            if not isinstance(event, h11.Request):
                raise HttpError(400, "malformed request")
            if conn.head_bytes - len(conn.h11.trailing_data[0]) > MAX_HEADER_BYTES:
                raise too_large  # the whole head came at once: h11 did not see it incomplete
            req = _request_from(event)
            if conn.h11.they_are_waiting_for_100_continue:
                await conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
            body = bytearray()
            while True:
                event = await conn.next_event()
                if isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed mid-body
                    raise _Disconnected
            req.body = bytes(body)
            return req
        except h11.RemoteProtocolError as e:
            if conn.eof:
                raise _Disconnected from None  # EOF in the middle of a request: nobody to answer
            status = e.error_status_hint
            if status == 431 or (conn.h11.their_state is not h11.SEND_BODY and conn.head_bytes > MAX_HEADER_BYTES):
                raise too_large from None
            if status == 501:  # a Transfer-Encoding h11 does not know: we refuse them all the same
                raise HttpError(411, "Transfer-Encoding (chunked bodies) is not supported: send Content-Length") from None
            raise HttpError(status if status in REASONS else 400, str(e) or "malformed request") from None
    assert scope.cancelled_caught
    raise HttpError(408, "request timed out")


class _Disconnected(Exception):
    """The client went away in the middle of a request."""


class Api:
    """The routes; independent of the transport (tests can call `dispatch` directly)."""

    def __init__(self, info: Callable[[], dict], ports: PortDriver | None, stats: Callable[[], dict] | None,
                 extensions: Any = None):
        self.info = info
        self.ports = ports
        self.stats = stats
        # our own routes (multi-host networks, api.network): `await extensions.handle(method, path, body)`
        # returns (status, json) or None when the path is not theirs; ValueError -> 400 with its message
        self.extensions = extensions

    async def dispatch(self, req: Request) -> Response:
        try:
            return await self._dispatch(req)
        except Exception as e:  # noqa: BLE001 - a bug in a callback must not kill the server
            log.exception("API %s %s failed", req.method, req.target)
            return error_response(500, f"internal error: {type(e).__name__}: {e}")

    async def _dispatch(self, req: Request) -> Response:
        path = req.path
        if path == "/v1/info":
            if req.method != "GET":
                return _not_allowed("GET")
            return json_response(200, self.info())
        if path == "/v1/stats":
            if req.method != "GET":
                return _not_allowed("GET")
            if self.stats is None:
                return error_response(404, "stats are not available in this instance")
            return json_response(200, self.stats())
        if path == "/v1/ports":
            if req.method == "GET":
                if self.ports is None:
                    return error_response(400, "no port driver is available (run with --net=slirp)")
                return json_response(200, [st.to_json() for st in self.ports.list()])
            if req.method == "POST":
                return await self._add_port(req)
            return _not_allowed("GET, POST")
        m = _PORT_ID.fullmatch(path)
        if m:
            if req.method != "DELETE":
                return _not_allowed("DELETE")
            return await self._remove_port(m.group(1))
        if self.extensions is not None:
            try:
                got = await self.extensions.handle(req.method, path, req.body)
            except ValueError as e:
                return error_response(400, str(e))
            if got is not None:
                status, obj = got
                return Response(status) if obj is None else json_response(status, obj)
        return error_response(404, f"no such API endpoint: {path} (see /v1/info, /v1/ports, /v1/stats)")

    async def _add_port(self, req: Request) -> Response:
        if self.ports is None:
            return error_response(400, "no port driver is available (run with --net=slirp)")
        try:
            obj = jsonbody.loads(req.body)
        except ValueError as e:
            return error_response(400, f"bad JSON: {e}")
        try:
            spec = PortSpec.from_json(obj)
        except SpecError as e:
            return error_response(400, str(e))
        try:
            status = await self.ports.add(spec)
        except PortError as e:
            return error_response(400, str(e))
        return json_response(201, status.to_json())

    async def _remove_port(self, raw_id: str) -> Response:
        if self.ports is None:
            return error_response(400, "no port driver is available (run with --net=slirp)")
        if not re.fullmatch(r"-?[0-9]{1,18}", raw_id):
            return error_response(400, f"bad port id {raw_id!r}: use the integer id from GET /v1/ports")
        try:
            await self.ports.remove(int(raw_id))
        except PortError as e:
            return error_response(400, str(e))
        return Response(200)


def _not_allowed(allow: str) -> Response:
    return error_response(405, f"method not allowed: use {allow}", [("Allow", allow)])


def _h11_response(resp: Response, *, close: bool) -> h11.Response:
    headers = list(resp.headers) + [("Content-Length", str(len(resp.body)))]
    if close:
        headers.append(("Connection", "close"))
    return h11.Response(status_code=resp.status, headers=headers,
                        reason=REASONS.get(resp.status, "Unknown").encode())


async def _answer(conn: _Conn, resp: Response, *, head: bool, close: bool) -> None:
    events: list[Any] = [_h11_response(resp, close=close)]
    if resp.body and not head:  # an answer to HEAD carries no body (its Content-Length still describes one)
        events.append(h11.Data(data=resp.body))
    events.append(h11.EndOfMessage())
    await conn.send(*events)


async def _send_error(conn: _Conn, e: HttpError) -> None:
    """Answer a request h11 or we refused, bypassing h11's state (it may be in ERROR)."""
    resp = error_response(e.status, e.message)
    head = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}"]
    head += [f"{k}: {v}" for k, v in resp.headers]
    head += [f"Content-Length: {len(resp.body)}", "Connection: close"]
    with trio.fail_after(WRITE_TIMEOUT):
        await conn.stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body)


async def _linger_close(conn: _Conn) -> None:
    """Half-close, drain a bounded amount of unread input, then close.

    Closing a UNIX socket with unread input makes the peer's writes fail
    (EPIPE/ECONNRESET) before it reads our error answer; draining a little
    lets a client that is still sending a body see the answer.
    """
    try:
        send_eof = getattr(conn.stream, "send_eof", None)
        if send_eof is not None:
            await send_eof()
        drained = 0
        with trio.move_on_after(LINGER_TIMEOUT):
            while drained < LINGER_BYTES:
                data = await conn.stream.receive_some(RECV_CHUNK)
                if not data:
                    break
                drained += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def handle_connection(stream: trio.abc.Stream, api: Api) -> None:
    """Serve requests on one connection until it closes; never raises (except Cancelled)."""
    conn = _Conn(stream)
    try:
        async with stream:
            while True:
                try:
                    req = await _read_request(conn)
                except HttpError as e:
                    await _send_error(conn, e)
                    await _linger_close(conn)
                    return
                except _Disconnected:
                    return
                if req is None:
                    return
                resp = await api.dispatch(req)
                # h11 knows whether the client lets the connection live (Connection: close, HTTP/1.0)
                close = conn.h11.our_state is h11.MUST_CLOSE or not _client_keeps_alive(req)
                await _answer(conn, resp, head=req.method == "HEAD", close=close)
                if close or conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                    return
                conn.h11.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError, h11.LocalProtocolError):
        return
    except Exception:  # noqa: BLE001 - never let a connection take the server down
        log.exception("API connection handler failed")


def _client_keeps_alive(req: Request) -> bool:
    tokens = {t.strip().lower() for t in req.headers.get("connection", "").split(",")}
    return "close" not in tokens and req.version >= (1, 1)


def _check_dir(path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(d)
    except OSError as e:
        raise UserError(f"cannot use API socket directory {d}: {e.strerror}") from None
    if st.st_mode & 0o022:
        raise UserError(f"refusing to create the API socket in {d}: the directory is group/world-writable "
                        f"(mode {stat.S_IMODE(st.st_mode):04o}; use a private state directory, mode 0700)")


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise UserError(f"cannot create the API socket: {path} exists and is not a socket")
    os.unlink(path)


async def serve_api(path: str, *, info: Callable[[], dict], ports: PortDriver | None,
                    stats: Callable[[], dict] | None, extensions: Any = None,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the REST API on a UNIX socket at `path` (mode 0600) until cancelled.

    Calls `task_status.started(path)` once listening; removes the socket file on exit.
    """
    _check_dir(path)
    _remove_stale(path)
    api = Api(info, ports, stats, extensions)
    std = _stdsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    sock = trio.socket.from_stdlib_socket(std)
    ino = None
    try:
        try:
            # Bound here, not by trio.socket (which binds paths in a worker thread): an idle worker
            # would outlive set-up, and the launcher confines itself single-threaded (ns/confine.py).
            with usable(path) as short:  # a path over 107 bytes is bound through its directory's fd
                std.bind(short)
        except OSError as e:
            raise UserError(f"cannot create the API socket {path}: {e.strerror or e}") from None
        ino = os.stat(path).st_ino
        # Not yet listening: nobody can connect before the mode is tightened.
        os.chmod(path, 0o600)
        sock.listen(128)
        listener = trio.SocketListener(sock)

        async def handler(stream: trio.SocketStream) -> None:
            await handle_connection(stream, api)

        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, [listener])
            task_status.started(path)
    finally:
        sock.close()
        if ino is not None:
            try:
                if os.stat(path).st_ino == ino:
                    os.unlink(path)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warning("cannot remove %s: %s", path, e)
