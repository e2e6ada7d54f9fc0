"""Fixtures of the example suite: a web server on the host's loopback."""

from __future__ import annotations

import http.server
import socketserver
import threading
from dataclasses import dataclass, field

import pytest


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        body = b"hello from the host\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind() looks up the host's name (getfqdn): a DNS query.
        # Bind without it: the test stays on loopback.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]


@dataclass
class HostServer:
    port: int
    seen: list[str] = field(default_factory=list)


@pytest.fixture
def host_http_server():
    """An HTTP server on 127.0.0.1 (a free port); sandboxes reach it at 10.0.2.2:port."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.seen = []
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield HostServer(srv.server_address[1], srv.seen)
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)
