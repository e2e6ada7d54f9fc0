"""api.server: the rootlesskit-compatible REST API (API 1.1.1) on `STATE/api.sock`.

A small hand-written HTTP/1.1 server over a UNIX stream socket:
request line + headers + Content-Length body, keep-alive, bounded sizes and
timeouts. Every request gets an answer or the connection is closed; nothing
a client sends can make an exception escape `serve_api`.

Routes (rootlesskit's, plus `/v1/stats`):

    GET    /v1/info        200 info()
    GET    /v1/ports       200 [PortStatus JSON...]        (400 without a port driver)
    POST   /v1/ports       201 PortStatus JSON              (400 bad JSON / spec / driver refusal)
    DELETE /v1/ports/{id}  200 empty body                   (400 bad or unknown id)
    GET    /v1/stats       200 stats()                      (404 without stats)

Errors are `{"message": "..."}` with a 4xx/5xx status.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
import socket as _stdsocket
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

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

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(\d)\.(\d)")
_HEADER_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_PORT_ID = re.compile(r"/v1/ports/([^/]*)")


class HttpError(Exception):
    """A request we cannot parse or accept: answer `status` and close the connection."""

    def __init__(self, status: int, message: str, *, close: bool = True):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


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

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if "close" in tokens:
            return False
        if self.version >= (1, 1):
            return True
        return "keep-alive" in tokens


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False

    def encode(self, *, keep_alive_10: bool = False, head: bool = False) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        if self.close:
            lines.append("Connection: close")
        elif keep_alive_10:
            lines.append("Connection: keep-alive")
        # An answer to HEAD carries no body (its Content-Length still describes one).
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else self.body)


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    # Go's json.Encoder: compact, one trailing newline.
    body = (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    return Response(status, body, [("Content-Type", "application/json")] + (headers or []))


def error_response(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return json_response(status, {"message": message}, headers)


class _Conn:
    """A buffered reader over one accepted stream."""

    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        self.buf = bytearray()
        self.eof = False

    async def fill(self) -> bool:
        """Read more into the buffer; False at EOF."""
        if self.eof:
            return False
        data = await self.stream.receive_some(RECV_CHUNK)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True


def _find_head_end(buf: bytearray) -> tuple[int, int] | None:
    """(end of header block, start of body) or None; CRLF or bare LF line ends."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")
    candidates = [(i, i + 4) for i in (crlf,) if i >= 0] + [(i, i + 2) for i in (lf,) if i >= 0]
    return min(candidates) if candidates else None


def _parse_head(head: bytes) -> Request:
    lines = head.split(b"\n")
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    m = _REQUEST_LINE.fullmatch(lines[0])
    if not m:
        raise HttpError(400, "malformed request line")
    method, target, major, minor = m.group(1).decode(), m.group(2), int(m.group(3)), int(m.group(4))
    if (major, minor) not in ((1, 0), (1, 1)):
        raise HttpError(505, f"HTTP/{major}.{minor} is not supported: use HTTP/1.1")
    try:
        target_s = target.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "malformed request target") from None
    if not (target_s.startswith("/") or target_s.lower().startswith(("http://", "https://"))):
        raise HttpError(400, "malformed request target")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "obsolete header line folding is not supported")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpError(400, "malformed header line")
        value = value.strip(b" \t")
        if _HEADER_VALUE_BAD.search(value):
            raise HttpError(400, "malformed header value")
        key = name.decode("ascii").lower()
        text = value.decode("latin-1")
        if key in headers:
            if key == "content-length":
                if headers[key] != text:
                    raise HttpError(400, "conflicting Content-Length headers")
                continue
            if key == "host":
                raise HttpError(400, "more than one Host header")
            headers[key] = headers[key] + ", " + text
        else:
            headers[key] = text
    return Request(method, target_s, (major, minor), headers)


def _body_length(req: Request) -> int:
    if "transfer-encoding" in req.headers:
        raise HttpError(411, "Transfer-Encoding (chunked bodies) is not supported: send Content-Length")
    cl = req.headers.get("content-length")
    if cl is None:
        return 0
    if not cl.isascii() or not cl.isdigit() or len(cl) > 18:
        raise HttpError(400, "bad Content-Length")
    n = int(cl)
    if n > MAX_BODY_BYTES:
        raise HttpError(413, f"request body too large (limit {MAX_BODY_BYTES} bytes)")
    return n


async def _read_request(conn: _Conn) -> Request | None:
    """The next request, or None when the client closed (or idled out) between requests."""
    # Idle: wait for the first byte of a request.
    if not conn.buf:
        with trio.move_on_after(IDLE_TIMEOUT):
            if not await conn.fill():
                return None
        if not conn.buf:
            return None
    with trio.move_on_after(REQUEST_TIMEOUT) as scope:
        while True:
            # Tolerate blank lines before a request line (RFC 9112 2.2).
            while conn.buf[:2] == b"\r\n" or conn.buf[:1] == b"\n":
                del conn.buf[: 2 if conn.buf[:1] == b"\r" else 1]
            ends = _find_head_end(conn.buf)
            if ends is not None:
                break
            if len(conn.buf) > MAX_HEADER_BYTES:
                raise HttpError(431, f"request headers too large (limit {MAX_HEADER_BYTES} bytes)")
            if not await conn.fill():
                if conn.buf.strip():
                    raise _Disconnected
                return None
        head_end, body_start = ends
        if head_end > MAX_HEADER_BYTES:
            raise HttpError(431, f"request headers too large (limit {MAX_HEADER_BYTES} bytes)")
        req = _parse_head(bytes(conn.buf[:head_end]))
        del conn.buf[:body_start]
        n = _body_length(req)
        if n and req.version >= (1, 1) and req.headers.get("expect", "").lower() == "100-continue" and len(conn.buf) < n:
            await conn.stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(conn.buf) < n:
            if not await conn.fill():
                raise _Disconnected
        req.body = bytes(conn.buf[:n])
        del conn.buf[:n]
        return req
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
        # our own routes (multi-host networks): `await extensions.handle(method, path, body)` returns
        # (status, json) or None when the path is not theirs; ValueError -> 400 with its message
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
            obj = json.loads(req.body)
        except (ValueError, RecursionError) as e:
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


async def _send(stream: trio.abc.Stream, data: bytes) -> None:
    with trio.fail_after(WRITE_TIMEOUT):
        await stream.send_all(data)


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
                    resp = error_response(e.status, e.message)
                    resp.close = True
                    await _send(stream, resp.encode())
                    await _linger_close(conn)
                    return
                except _Disconnected:
                    return
                if req is None:
                    return
                resp = await api.dispatch(req)
                keep = req.keep_alive and not resp.close
                resp.close = not keep
                await _send(stream, resp.encode(keep_alive_10=keep and req.version == (1, 0), head=req.method == "HEAD"))
                if not keep:
                    return
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
        return
    except Exception:  # noqa: BLE001 - never let a connection take the server down
        log.exception("API connection handler failed")


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
            std.bind(path)
        except OSError as e:
            hint = " (use a shorter --state-dir: socket paths are limited to 107 bytes)" if "too long" in str(e) else ""
            raise UserError(f"cannot create the API socket {path}: {e.strerror or e}{hint}") from None
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
