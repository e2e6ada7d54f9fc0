"""api.client: a small synchronous client for the REST API on `STATE/api.sock`.

    c = ApiClient("/run/user/1000/rootlessnet/api.sock")
    c.info(); c.list_ports(); c.add_port("127.0.0.1:8080:80/tcp" parsed, or a dict); c.remove_port(1); c.stats()

A refusal by the server raises `ApiError(status, message)` (a `UserError`, so
the CLI prints it as one line); a missing or dead socket raises a `UserError`
that says what to check.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from rootlessnet.api.unixpath import usable
from rootlessnet.errors import UserError
from rootlessnet.port.spec import PortSpec

DEFAULT_TIMEOUT = 30.0


class ApiError(UserError):
    """The API answered with an error status: `status` and the server's `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r})"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float):
        super().__init__("rootlesskit", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            with usable(self.socket_path) as path:  # over 107 bytes: through the directory's fd
                sock.connect(path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ApiClient:
    def __init__(self, socket_path: str, *, timeout: float = DEFAULT_TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout

    # -- the API

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/v1/info")

    def list_ports(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/ports")

    def add_port(self, spec: PortSpec | dict[str, Any]) -> dict[str, Any]:
        """Add a forwarding; returns the status `{"id": N, "spec": {...}}`."""
        obj = spec.to_json() if isinstance(spec, PortSpec) else spec
        return self._request("POST", "/v1/ports", obj)

    def remove_port(self, port_id: int | str) -> None:
        self._request("DELETE", f"/v1/ports/{port_id}")

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/v1/stats")

    # -- transport

    def request(self, method: str, path: str, obj: Any = None) -> Any:
        """Any route (e.g. the multi-host extensions): the decoded JSON answer, or ApiError."""
        return self._request(method, path, obj)

    def _request(self, method: str, path: str, obj: Any = None) -> Any:
        body = None if obj is None else json.dumps(obj).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            try:
                conn.request(method, path, body=body, headers=headers)
            except (FileNotFoundError, ConnectionRefusedError):
                raise UserError(f"no API socket at {self.socket_path}: is the instance running? "
                                f"(check --state-dir / $ROOTLESSKIT_STATE_DIR, or give --socket PATH)") from None
            except PermissionError:
                raise UserError(f"cannot connect to the API socket {self.socket_path}: permission denied "
                                f"(it belongs to another user)") from None
            except OSError as e:
                if not isinstance(e, (BrokenPipeError, ConnectionResetError)):
                    raise UserError(f"cannot connect to the API socket {self.socket_path}: {e.strerror or e}") from None
                # The server may have answered (e.g. 413) and closed before reading all we sent.
            try:
                resp = conn.getresponse()
                data = resp.read()
            except (TimeoutError, socket.timeout):
                raise UserError(f"the API at {self.socket_path} did not answer within {self.timeout:g} s") from None
            except (http.client.HTTPException, OSError) as e:
                raise UserError(f"the API at {self.socket_path} broke the connection: {e or type(e).__name__}") from None
        finally:
            conn.close()
        if resp.status >= 400:
            raise ApiError(resp.status, _error_message(resp.status, data))
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise ApiError(resp.status, f"the API answered non-JSON: {data[:200]!r}") from None


def _error_message(status: int, data: bytes) -> str:
    try:
        obj = json.loads(data)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        return obj["message"]
    text = data.decode("utf-8", "replace").strip()
    return f"HTTP {status}" + (f": {text[:200]}" if text else "")
