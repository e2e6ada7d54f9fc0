"""`rootlessnet slirp4netns` as tools that spawn slirp4netns drive it (real namespaces, unprivileged).

The target is `unshare -Urn` with tap0 created beforehand (as rootlesskit
does); checks run inside it with `nsenter -U -n --preserve-credentials`.
Every packet stays on loopback or inside the target: host servers bind
127.0.0.1, nothing resolves names.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.conftest import one_line_error, requires_userns, wait_for
from tests.integration.servers import TcpServers

pytestmark = [pytest.mark.integration, requires_userns]

S4 = [sys.executable, "-m", "rootlessnet.compat.slirp4netns"]
TOOLS = ("ip", "nsenter", "unshare")
needs_tools = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason=f"needs {', '.join(TOOLS)} (iproute2, util-linux)")


class Target:
    """`unshare -Urn` running sleep, with tap0 made beforehand (unless tap=False)."""

    def __init__(self, tap: bool = True):
        setup = "ip tuntap add tap0 mode tap && " if tap else ""
        self.proc = subprocess.Popen(["unshare", "-Urn", "sh", "-c", f"{setup}echo ok; exec sleep 120"],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ok"
        self.pid = self.proc.pid

    def run(self, *argv: str, timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "--preserve-credentials", "-U", "-n", "-t", str(self.pid), *argv],
                              capture_output=True, text=True, timeout=timeout, check=check, **kw)

    def popen(self, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["nsenter", "--preserve-credentials", "-U", "-n", "-t", str(self.pid), *argv], **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class Slirp:
    """Our slirp4netns with a ready pipe (-r) and an exit pipe (-e)."""

    def __init__(self, *args: str, exit_fd: bool = True):
        ready_r, ready_w = os.pipe()
        self.exit_r, self.exit_w = os.pipe() if exit_fd else (None, None)
        extra = ["-r", str(ready_w)] + (["-e", str(self.exit_r)] if exit_fd else [])
        fds = (ready_w,) + ((self.exit_r,) if exit_fd else ())
        self.proc = subprocess.Popen([*S4, *extra, *args], pass_fds=fds, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        os.close(ready_w)
        if self.exit_r is not None:
            os.close(self.exit_r)
        try:
            self.ready = _read_all(ready_r, 60)
        finally:
            os.close(ready_r)

    def close_exit_fd(self) -> None:
        if self.exit_w is not None:
            os.close(self.exit_w)
            self.exit_w = None

    def wait(self, timeout: float = 20) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        self.close_exit_fd()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def _read_all(fd: int, timeout: float) -> bytes:
    """Read a pipe to EOF (bounded in time)."""
    import select

    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        out += chunk
    return out


def api_call(path: str, obj: dict) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(json.dumps(obj).encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ECHO_CLIENT = """
    import socket, sys
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    s.sendall(b"hello through the engine")
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    print(data.decode())
"""

# one-connection TCP server inside the target: greets with the peer address, bounded lifetime
GREETER = """
    import socket, sys
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(sys.argv[1])))
    srv.listen(8)
    srv.settimeout(60)
    print("listening", flush=True)
    c, peer = srv.accept()
    c.sendall(("hello from the guest to " + peer[0]).encode())
    c.close()
"""


@pytest.fixture
def target():
    t = Target()
    yield t
    t.stop()


@pytest.fixture
def servers():
    s = TcpServers("127.0.0.1").start()
    yield s
    s.stop()


@pytest.fixture
def slirps():
    started: list[Slirp] = []

    def start(*args: str, **kw) -> Slirp:
        s = Slirp(*args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


@needs_tools
def test_configure_host_loopback_and_exit_fd(target, servers, slirps, tmp_path):
    sock = str(tmp_path / "api.sock")
    s = slirps("--configure", "--mtu", "65520", "--api-socket", sock, str(target.pid), "tap0")
    assert s.ready == b"1", s.proc.stderr.read() if s.proc.poll() is not None else ""
    addr = target.run("ip", "-o", "-4", "addr", "show", "tap0").stdout
    assert "10.0.2.100/24" in addr
    link = target.run("ip", "-o", "link", "show", "tap0").stdout
    assert "mtu 65520" in link and ",UP" in link
    assert "default via 10.0.2.2 dev tap0" in target.run("ip", "route").stdout
    assert ",UP" in target.run("ip", "-o", "link", "show", "lo").stdout  # slirp4netns -c brings lo up too
    # host loopback is ON by default (slirp4netns's default): 10.0.2.2 is the host's 127.0.0.1
    r = target.run(sys.executable, "-c", textwrap.dedent(ECHO_CLIENT), "10.0.2.2", str(servers.echo_port))
    assert r.stdout.strip() == "hello through the engine", r
    assert api_call(sock, {"execute": "list_hostfwd"}) == {"entries": []}
    # the exit fd: closing it ends slirp4netns, which removes its API socket
    s.close_exit_fd()
    rc, _out, err = s.wait()
    assert rc == 0, err
    assert "Traceback" not in err
    assert not os.path.exists(sock)


@needs_tools
def test_disable_host_loopback(target, servers, slirps):
    s = slirps("-c", "--disable-host-loopback", "--disable-dns", str(target.pid))
    assert s.ready == b"1"
    r = target.run(sys.executable, "-c", textwrap.dedent(ECHO_CLIENT), "10.0.2.2", str(servers.echo_port),
                   check=False)
    assert r.returncode != 0 and ("Connection refused" in r.stderr or "timed out" in r.stderr), r.stderr
    assert servers.lt.thread.is_alive()


@needs_tools
def test_enable_ipv6_slaac_and_host_loopback6(target, slirps):
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::1", 0))
    srv.listen(4)
    srv.settimeout(30)
    try:
        s = slirps("-c", "-6", str(target.pid))
        assert s.ready == b"1"

        def slaac() -> str | None:
            out = target.run("ip", "-o", "-6", "addr", "show", "tap0", "scope", "global").stdout
            return out if "fd00:" in out and "tentative" not in out else None

        wait_for(slaac, timeout=20, interval=0.2, what="a SLAAC address in fd00::/64")
        client = target.popen(sys.executable, "-c", textwrap.dedent(ECHO_CLIENT), "fd00::2",
                              str(srv.getsockname()[1]), stdout=subprocess.PIPE, text=True)
        conn, _peer = srv.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            conn.sendall(data)
        out, _ = client.communicate(timeout=20)
        assert out.strip() == "hello through the engine"
    finally:
        srv.close()


@needs_tools
def test_netns_type_path_with_userns_path_and_macaddress(target, servers, slirps):
    s = slirps("--configure", "--macaddress", "02:11:22:33:44:55", "--userns-path", f"/proc/{target.pid}/ns/user",
               "--netns-type=path", f"/proc/{target.pid}/ns/net", "tap0")
    assert s.ready == b"1"
    assert "link/ether 02:11:22:33:44:55" in target.run("ip", "-o", "link", "show", "tap0").stdout
    r = target.run(sys.executable, "-c", textwrap.dedent(ECHO_CLIENT), "10.0.2.2", str(servers.echo_port))
    assert r.stdout.strip() == "hello through the engine"


@needs_tools
def test_missing_tap_is_created_and_sigterm_exits(servers, slirps, tmp_path):
    t = Target(tap=False)
    try:
        sock = str(tmp_path / "api.sock")
        s = slirps("-c", "-a", sock, "--cidr", "10.9.0.0/24", str(t.pid), "tap7", exit_fd=False)
        assert s.ready == b"1"
        assert "10.9.0.100/24" in t.run("ip", "-o", "-4", "addr", "show", "tap7").stdout
        r = t.run(sys.executable, "-c", textwrap.dedent(ECHO_CLIENT), "10.9.0.2", str(servers.echo_port))
        assert r.stdout.strip() == "hello through the engine"
        s.proc.terminate()
        rc, _out, err = s.wait()
        assert rc == 0 and "Traceback" not in err, err
        assert not os.path.exists(sock)
    finally:
        t.stop()


@needs_tools
def test_exits_when_the_tap_is_deleted(target, slirps):
    s = slirps(str(target.pid), "tap0")
    assert s.ready == b"1"
    target.run("ip", "link", "del", "tap0")
    rc, _out, err = s.wait(timeout=20)
    assert rc == 0 and "tap0 was deleted" in err


@needs_tools
def test_add_hostfwd_end_to_end(target, slirps, tmp_path):
    pytest.importorskip("rootlessnet.port.slirp", reason="rootlessnet.port.slirp (SlirpPortDriver) is missing")
    sock = str(tmp_path / "api.sock")
    s = slirps("--configure", "--mtu", "65520", "--api-socket", sock, str(target.pid), "tap0")
    assert s.ready == b"1"
    srv = target.popen(sys.executable, "-c", textwrap.dedent(GREETER), "8080", stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        port = free_port()
        reply = api_call(sock, {"execute": "add_hostfwd", "arguments": {
            "proto": "tcp", "host_addr": "127.0.0.1", "host_port": port, "guest_port": 8080}})
        assert reply == {"return": {"id": 1}}
        assert api_call(sock, {"execute": "list_hostfwd"}) == {"entries": [
            {"id": 1, "proto": "tcp", "host_addr": "127.0.0.1", "host_port": port,
             "guest_addr": "10.0.2.100", "guest_port": 8080}]}
        again = api_call(sock, {"execute": "add_hostfwd", "arguments": {
            "proto": "tcp", "host_addr": "127.0.0.1", "host_port": port, "guest_port": 8080}})
        assert again["error"]["desc"] == "bad request: add_hostfwd: slirp_add_hostfwd failed"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            data = b""
            while chunk := c.recv(65536):
                data += chunk
        assert data.decode().startswith("hello from the guest to ")
        assert srv.wait(20) == 0
        assert api_call(sock, {"execute": "remove_hostfwd", "arguments": {"id": 1}}) == {"return": {}}
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait(10)


@needs_tools
@pytest.mark.parametrize("args, words", [
    (["999999999", "tap0"], "cannot open the user namespace /proc/999999999/ns/user"),
    (["--netns-type=path", "/nonexistent/netns"], "cannot open the network namespace /nonexistent/netns"),
])
def test_runtime_errors_are_one_line(args, words):
    r = subprocess.run([*S4, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    line = one_line_error(r.stderr)
    assert line.startswith("rootlessnet slirp4netns: ") and words in line, line


@needs_tools
def test_bad_api_socket_path_is_one_line(target):
    r = subprocess.run([*S4, "--api-socket", "/nonexistent/dir/api.sock", str(target.pid)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert "--api-socket /nonexistent/dir/api.sock: No such file or directory" in one_line_error(r.stderr)


# -- Debian's rootlesskit 1.1.0 with our slirp4netns ----------------------------------------------------

ROOTLESSKIT_CMD = """
    import socket, sys, time
    results, host_port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + 90
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 80))  # root in the user namespace: port 80 is fine
    srv.listen(8)
    srv.settimeout(1)
    # the host's 127.0.0.1 through the gateway (rootlesskit leaves host loopback on by default)
    try:
        c = socket.create_connection(("10.0.2.2", host_port), timeout=10)
        c.sendall(b"from inside rootlesskit")
        c.shutdown(socket.SHUT_WR)
        echoed = b""
        while chunk := c.recv(65536):
            echoed += chunk
        outbound = echoed.decode()
    except OSError as e:
        outbound = "error: " + str(e)
    open(results + ".tmp", "w").write(outbound)
    import os
    os.rename(results + ".tmp", results)
    served = 0
    while time.monotonic() < deadline and served < 1:
        try:
            conn, peer = srv.accept()
        except socket.timeout:
            continue
        conn.settimeout(10)
        request = b""
        while b"\\r\\n\\r\\n" not in request and len(request) < 65536:  # read the request, as a web server does
            chunk = conn.recv(65536)
            if not chunk:
                break
            request += chunk
        conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nthe page from inside")
        conn.close()
        served += 1
"""


@needs_tools
@pytest.mark.skipif(shutil.which("rootlesskit") is None, reason="rootlesskit (Debian package) is missing")
def test_rootlesskit_uses_us_as_its_slirp4netns(tmp_path, servers):
    pytest.importorskip("rootlessnet.port.slirp", reason="rootlessnet.port.slirp (SlirpPortDriver) is missing")
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "slirp4netns"
    pkg_parent = str(Path(__file__).resolve().parents[2])
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n"
                       f"PYTHONPATH={pkg_parent} exec {sys.executable} -m rootlessnet.compat.slirp4netns \"$@\"\n")
    wrapper.chmod(0o755)
    script = tmp_path / "cmd.py"
    script.write_text(textwrap.dedent(ROOTLESSKIT_CMD))
    results = tmp_path / "outbound"
    port = free_port()
    proc = subprocess.Popen(
        ["rootlesskit", "--state-dir", str(tmp_path / "state"), "--net=slirp4netns",
         f"--slirp4netns-binary={wrapper}", "--port-driver=slirp4netns", "-p", f"127.0.0.1:{port}:80/tcp",
         "--slirp4netns-sandbox=auto", "--slirp4netns-seccomp=auto", "--",  # as dockerd-rootless.sh passes them
         sys.executable, str(script), str(results), str(servers.echo_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: results.exists() or proc.poll() is not None, timeout=60, what="the command inside")
        assert proc.poll() is None, proc.communicate()[1]
        assert results.read_text() == "from inside rootlesskit"

        def page() -> bytes | None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = b""
                    while chunk := c.recv(65536):
                        data += chunk
                    return data or None
            except OSError:
                return None

        data = wait_for(page, timeout=30, what="the page through the forwarded port")
        assert data.startswith(b"HTTP/1.0 200 OK") and data.endswith(b"the page from inside")
        rc = proc.wait(60)
        err = proc.stderr.read()
        assert rc == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    argv = log.read_text().splitlines()
    calls = [a for a in argv if a != "--help"]
    assert len(calls) == 1, argv
    assert "--api-socket" in calls[0] and "--mtu 65520" in calls[0] and calls[0].endswith(" tap0")
    # --help lists them, so rootlesskit's --slirp4netns-sandbox/seccomp=auto passes them: the engine ran confined
    assert "--enable-sandbox" in calls[0] and "--enable-seccomp" in calls[0]
