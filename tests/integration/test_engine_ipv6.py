"""The engine over IPv6 (--ipv6): the same real clients as over IPv4, through fd00::2 / fd00::3."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.integration.conftest import requires_userns, rn
from tests.integration.servers import DnsServer, TcpServers, seeded_sha256

pytestmark = [pytest.mark.integration, requires_userns]
PY = sys.executable
MIB = 1 << 20
WAIT_SLAAC = textwrap.dedent("""
    import subprocess, time
    for _ in range(100):
        out = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", "tap0", "scope", "global"], capture_output=True, text=True).stdout
        if "fd00::" in out and "tentative" not in out:
            break
        time.sleep(0.05)
""")


def test_curl_and_ping_over_ipv6(tmp_path):
    (tmp_path / "six.html").write_text("hello over IPv6\n")
    srv = subprocess.Popen([PY, "-m", "http.server", "--bind", "::1", "--directory", str(tmp_path), "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = int(srv.stdout.readline().split("port ")[1].split()[0])
        script = WAIT_SLAAC + textwrap.dedent(f"""
            import subprocess
            print(subprocess.run(["curl", "-sS", "-g", "-m", "20", "http://[fd00::2]:{port}/six.html"], capture_output=True, text=True).stdout, end="")
            r = subprocess.run(["busybox", "ping", "-6", "-c", "2", "-W", "3", "fd00::2"], capture_output=True, text=True)
            print(r.stdout.strip().splitlines()[-2])
        """)
        r = rn("run", "-q", "--ipv6", "--allow-host-loopback", "--", PY, "-c", script, timeout=60)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "hello over IPv6"
        assert "2 packets received" in lines[1]
    finally:
        srv.kill()
        srv.wait()


def test_dns_on_fd00_3():
    dns = DnsServer({"six.test": "fd00::2", "four.test": "10.0.2.2"}).start()
    try:
        script = WAIT_SLAAC + textwrap.dedent("""
            import socket
            print(open("/etc/resolv.conf").read().split())
            # ask fd00::3 directly (the engine forwards to the test's server on 127.0.0.1)
            import struct
            q = bytes.fromhex("beef01000001000000000000") + b"\\x03six\\x04test\\x00" + struct.pack("!HH", 28, 1)
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(5)
            s.sendto(q, ("fd00::3", 53))
            resp = s.recv(512)
            print(resp[:2].hex(), socket.inet_ntop(socket.AF_INET6, resp[-16:]))
        """)
        r = rn("run", "-q", "--ipv6", f"--dns-upstream=127.0.0.1:{dns.port}", "--", PY, "-c", script, timeout=60)
        assert r.returncode == 0, r.stderr
        out = r.stdout.splitlines()
        assert "fd00::3" in out[0]
        assert out[1] == "beef fd00::2"
    finally:
        dns.stop()


@pytest.mark.slow
def test_large_transfer_each_way_over_ipv6():
    servers = TcpServers("::1").start()
    n = 256 * MIB
    try:
        script = WAIT_SLAAC + textwrap.dedent(f"""
            import hashlib, random, socket
            rng = random.Random(11); h = hashlib.sha256(); left = {n}
            s = socket.create_connection(("fd00::2", {servers.sink_port}), timeout=60)
            while left:
                c = rng.randbytes(min(left, 1 << 20)); h.update(c); s.sendall(c); left -= len(c)
            s.shutdown(socket.SHUT_WR)
            assert s.makefile().readline().split() == [str({n}), h.hexdigest()]
            s = socket.create_connection(("fd00::2", {servers.source_port}), timeout=60)
            s.sendall(b"5 {n}\\n"); h = hashlib.sha256(); total = 0
            while d := s.recv(1 << 20):
                h.update(d); total += len(d)
            print(total, h.hexdigest())
        """)
        r = rn("run", "-q", "--ipv6", "--allow-host-loopback", "--", PY, "-c", script, timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [str(n), seeded_sha256(5, n)]
    finally:
        servers.stop()


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed (apt-get install iperf3)")
def test_iperf3_over_ipv6_both_directions():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    for reverse in (False, True):
        srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "::1", "-p", str(port)], stdout=subprocess.DEVNULL)
        try:
            script = WAIT_SLAAC + textwrap.dedent(f"""
                import subprocess, sys, time
                for i in range(50):
                    r = subprocess.run(["iperf3", "-6", "-c", "fd00::2", "-p", "{port}", "-t", "2", "-J"{', "-R"' if reverse else ''}], capture_output=True, text=True)
                    if r.returncode == 0:
                        print(r.stdout); sys.exit(0)
                    time.sleep(0.1)
                sys.exit(1)
            """)
            r = rn("run", "-q", "--ipv6", "--allow-host-loopback", "--", PY, "-c", script, timeout=120)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["end"]["sum_received"]["bytes"] > 10 * MIB
        finally:
            srv.kill()
            srv.wait()
