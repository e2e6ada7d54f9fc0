"""A client in a sandbox talks to a server the test runs on the host."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


@pytest.mark.rootless(hosts={"api.test": "10.0.2.2"})
def test_http_client_in_sandbox_reaches_server_on_host(rootless_sandbox, host_http_server):
    url = f"http://api.test:{host_http_server.port}/hello"
    r = rootless_sandbox.run(["curl", "-sS", "--noproxy", "*", "--max-time", "10", url],
                             capture_output=True, text=True, check=True)
    assert r.stdout == "hello from the host\n"
    assert host_http_server.seen == ["/hello"]


def test_dns_is_hermetic(rootless_sandbox):
    # Only the names the test gives resolve; nothing is asked of a real resolver.
    r = rootless_sandbox.run(["getent", "hosts", "example.com"], capture_output=True, text=True)
    assert r.returncode == 2  # not found
    stats = rootless_sandbox.statistics()["engine"]
    assert stats.get("dns_static_answers", 0) >= 1


def test_server_in_sandbox_published_on_host(rootless_sandbox):
    server = ("import socket; s = socket.socket(); s.bind(('0.0.0.0', 8000)); s.listen(); print('ready', flush=True); "
              "c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()")
    proc = rootless_sandbox.popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    host, port = rootless_sandbox.add_port(8000)  # a free port on 127.0.0.1
    with socket.create_connection((host, port), timeout=10) as c:
        c.sendall(b"shout")
        assert c.recv(100) == b"SHOUT"
    assert proc.wait(timeout=10) == 0
    rootless_sandbox.remove_port(8000)
