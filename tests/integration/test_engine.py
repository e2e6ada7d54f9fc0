"""The slirp engine with real clients in the namespace and real servers on the host's loopback.

Hermetic: every server is on 127.0.0.1/::1 (reached through the gateway with
--allow-host-loopback), DNS goes to a test server on 127.0.0.1, and refusal
tests use addresses the engine refuses before any packet leaves.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest
import trio

from rootlessnet.instance import RunOptions, open_instance
from tests.integration.conftest import requires_userns, rn
from tests.integration.servers import DnsServer, TcpServers, UdpEcho, seeded_sha256

pytestmark = [pytest.mark.integration, requires_userns]
PY = sys.executable
MIB = 1 << 20


@pytest.fixture(scope="module")
def tcp_servers():
    s = TcpServers().start()
    yield s
    s.stop()


def inside(script: str, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a Python script in a fresh instance (host loopback allowed unless flags say otherwise)."""
    return rn("run", "-q", *flags, "--", PY, "-c", textwrap.dedent(script), timeout=timeout)


def test_curl_fetches_from_a_host_http_server(tmp_path):
    (tmp_path / "index.html").write_text("hello through the engine\n")
    srv = subprocess.Popen([PY, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(tmp_path), "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = int(srv.stdout.readline().split("port ")[1].split()[0])
        r = rn("run", "-q", "--allow-host-loopback", "--", "curl", "-sS", "-m", "20", f"http://10.0.2.2:{port}/index.html",
               timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "hello through the engine\n"
    finally:
        srv.kill()
        srv.wait()


@pytest.mark.slow
@pytest.mark.parametrize("mtu", [65520, 1500])
def test_256_mib_each_way_with_matching_sha256(tcp_servers, mtu):
    n = 256 * MIB
    expected_down = seeded_sha256(7, n)
    script = f"""
        import hashlib, random, socket
        # upload: seeded bytes to the sink, which answers with its count and sha256
        rng = random.Random(11); h = hashlib.sha256(); left = {n}
        s = socket.create_connection(("10.0.2.2", {tcp_servers.sink_port}), timeout=60)
        while left:
            chunk = rng.randbytes(min(left, 1 << 20)); h.update(chunk); s.sendall(chunk); left -= len(chunk)
        s.shutdown(socket.SHUT_WR)
        got = s.makefile().readline().split()
        assert got == [str({n}), h.hexdigest()], (got, h.hexdigest())
        # download: the source sends seeded bytes
        s = socket.create_connection(("10.0.2.2", {tcp_servers.source_port}), timeout=60)
        s.sendall(b"7 {n}\\n"); h = hashlib.sha256(); total = 0
        while data := s.recv(1 << 20):
            h.update(data); total += len(data)
        print(total, h.hexdigest())
    """
    r = inside(script, "--allow-host-loopback", f"--mtu={mtu}", timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(n), expected_down]


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed (apt-get install iperf3)")
def test_iperf3_both_directions():
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for reverse in (False, True):
        srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL)
        try:
            r = rn("run", "-q", "--allow-host-loopback", "--", "sh", "-c",
                   f"for i in $(seq 50); do iperf3 -c 10.0.2.2 -p {port} -t 2 -J {'-R' if reverse else ''} && exit 0; sleep 0.1; done; exit 1",
                   timeout=120)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr
            result = json.loads(r.stdout[r.stdout.index("{"):])
            assert result["end"]["sum_received"]["bytes"] > 10 * MIB
        finally:
            srv.kill()
            srv.wait()


def test_udp_echo():
    echo = UdpEcho()
    try:
        r = inside(f"""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
            for i, size in enumerate([1, 100, 1400, 8000, 30000]):
                msg = bytes([i]) * size
                s.sendto(msg, ("10.0.2.2", {echo.port}))
                data, addr = s.recvfrom(65535)
                assert data == msg and addr == ("10.0.2.2", {echo.port}), (len(data), addr)
            print("ok")
        """, "--allow-host-loopback")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "ok"
    finally:
        echo.stop()


def test_udp_to_the_host_larger_than_the_guest_mtu_is_fragmented_to_the_guest():
    echo = UdpEcho()
    try:
        r = inside(f"""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
            s.sendto(b"BIG:6000", ("10.0.2.2", {echo.port}))
            print(len(s.recvfrom(65535)[0]))
        """, "--allow-host-loopback", "--mtu=1280")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "6000"
    finally:
        echo.stop()


def test_dns_through_10_0_2_3_to_a_test_server_on_loopback():
    dns = DnsServer({"db.test": "10.0.2.2", "v6.test": "fd00::2"}).start()
    try:
        r = rn("run", "-q", f"--dns-upstream=127.0.0.1:{dns.port}", "--", "sh", "-c",
               "cat /etc/resolv.conf; getent hosts db.test; getent hosts nothing.test; echo rc=$?", timeout=60)
        assert r.returncode == 0, r.stderr
        assert "nameserver 10.0.2.3" in r.stdout
        assert "10.0.2.2        db.test" in r.stdout or "10.0.2.2 db.test" in " ".join(r.stdout.split())
        assert "rc=2" in r.stdout  # NXDOMAIN
        assert "db.test" in dns.queries
        # DNS over TCP, same upstream port
        r = inside("""
            import socket, struct
            q = bytes.fromhex("abcd01000001000000000000") + b"\\x02db\\x04test\\x00" + struct.pack("!HH", 1, 1)
            s = socket.create_connection(("10.0.2.3", 53), timeout=10)
            s.sendall(struct.pack("!H", len(q)) + q)
            n = struct.unpack("!H", s.recv(2))[0]; resp = b""
            while len(resp) < n: resp += s.recv(n - len(resp))
            print(resp[:2].hex(), resp[-4:].hex())
        """, f"--dns-upstream=127.0.0.1:{dns.port}")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["abcd", "0a000202"]
    finally:
        dns.stop()


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed (apt-get install busybox-static)")
def test_udhcpc_gets_a_lease():
    r = rn("run", "-q", "--", "busybox", "udhcpc", "-i", "tap0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true",
           timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lease of 10.0.2.15 obtained" in r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed (apt-get install busybox-static)")
def test_ping_the_gateway_is_answered_by_the_engine():
    r = rn("run", "-q", "--", "busybox", "ping", "-c", "2", "-W", "3", "10.0.2.2", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 packets received" in r.stdout


def test_host_loopback_is_off_by_default_and_counted(tcp_servers):
    async def main():
        opts = RunOptions(command=[PY, "-c", f"""
import socket
try:
    socket.create_connection(("10.0.2.2", {tcp_servers.echo_port}), timeout=10)
    print("connected")
except ConnectionRefusedError:
    print("refused")
"""], quiet=True)
        async with open_instance(opts) as inst:
            code = await inst.wait()
            stats = inst.engine.statistics()
        return code, stats

    code, stats = trio.run(main)
    assert code == 0
    assert stats["refused_host_loopback"] >= 1
    assert stats.get("tcp_connected", 0) == 0


def test_host_loopback_with_the_flag(tcp_servers):
    r = inside(f"""
        import socket
        s = socket.create_connection(("10.0.2.2", {tcp_servers.echo_port}), timeout=10)
        s.sendall(b"ping"); print(s.recv(10).decode())
    """, "--allow-host-loopback")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ping"


def test_outbound_none_refuses_but_keeps_host_loopback_and_dns(tcp_servers):
    dns = DnsServer({"db.test": "10.0.2.2"}).start()
    try:
        # 198.51.100.1 (TEST-NET-2) is refused by policy: the engine never sends a packet there.
        r = inside(f"""
            import socket
            try:
                socket.create_connection(("198.51.100.1", 80), timeout=10); print("connected")
            except ConnectionRefusedError:
                print("refused")
            s = socket.create_connection(("10.0.2.2", {tcp_servers.echo_port}), timeout=10)
            s.sendall(b"lo"); print(s.recv(10).decode())
            print(socket.gethostbyname("db.test"))
        """, "--allow-host-loopback", "--outbound=none", f"--dns-upstream=127.0.0.1:{dns.port}")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["refused", "lo", "10.0.2.2"]
    finally:
        dns.stop()


def test_special_addresses_never_leak():
    r = inside("""
        import socket
        for addr in ("10.0.2.3", "10.0.2.50"):
            try:
                socket.create_connection((addr, 80), timeout=10); print("connected")
            except ConnectionRefusedError:
                print("refused")
    """, "--allow-host-loopback")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["refused", "refused"]


@pytest.mark.slow
def test_500_concurrent_connections_each_verified_then_released(tcp_servers):
    async def main():
        script = f"""
import asyncio, hashlib
async def one(i):
    r, w = await asyncio.open_connection("10.0.2.2", {tcp_servers.echo_port})
    msg = hashlib.sha256(str(i).encode()).digest() * 300
    w.write(msg); await w.drain()
    got = await r.readexactly(len(msg))
    assert got == msg
    return r, w
async def main():
    conns = await asyncio.gather(*(one(i) for i in range(500)))
    print("open", len(conns), flush=True)
    for r, w in conns:
        w.close()
    await asyncio.sleep(0.5)
asyncio.run(main())
"""
        opts = RunOptions(command=[PY, "-c", script], allow_host_loopback=True, quiet=True)
        async with open_instance(opts) as inst:
            code = await inst.wait()
            stats = None
            with trio.move_on_after(20):
                while True:
                    stats = inst.engine.statistics()
                    if stats["tcp_host_sockets"] == 0 and stats["tcp_flows"] == 0:
                        break
                    await trio.sleep(0.1)
        return code, stats

    code, stats = trio.run(main)
    assert code == 0
    assert stats["tcp_connected"] >= 500
    assert stats["tcp_host_sockets"] == 0 and stats["tcp_flows"] == 0, stats


def test_host_refusing_gives_the_guest_an_rst():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    r = inside(f"""
        import socket
        try:
            socket.create_connection(("10.0.2.2", {port}), timeout=10); print("connected")
        except ConnectionRefusedError:
            print("refused")
    """, "--allow-host-loopback")
    assert r.stdout.strip() == "refused", r.stderr


def test_half_close_from_the_guest(tcp_servers):
    r = inside(f"""
        import socket
        s = socket.create_connection(("10.0.2.2", {tcp_servers.sink_port}), timeout=10)
        s.sendall(b"abc"); s.shutdown(socket.SHUT_WR)
        print(s.makefile().readline().split()[0])
    """, "--allow-host-loopback")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"


def test_ipv6_to_host_loopback_and_udp(tcp_servers):
    v6 = TcpServers("::1").start()
    echo = UdpEcho("::1")
    try:
        r = inside(f"""
            import socket, time, subprocess
            for _ in range(100):   # wait for SLAAC from the engine's router advertisement
                out = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", "tap0", "scope", "global"], capture_output=True, text=True).stdout
                if "fd00::" in out: break
                time.sleep(0.1)
            s = socket.create_connection(("fd00::2", {v6.echo_port}), timeout=10)
            s.sendall(b"six"); print(s.recv(10).decode())
            u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.settimeout(5)
            u.sendto(b"udp6", ("fd00::2", {echo.port})); print(u.recvfrom(100)[0].decode())
        """, "--allow-host-loopback", "--ipv6", timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["six", "udp6"]
    finally:
        v6.stop()
        echo.stop()


def test_pcap_is_readable(tmp_path, tcp_servers):
    pcap = tmp_path / "cap.pcap"
    r = inside(f"""
        import socket
        s = socket.create_connection(("10.0.2.2", {tcp_servers.echo_port}), timeout=10)
        s.sendall(b"captured"); s.recv(10)
    """, "--allow-host-loopback", f"--pcap={pcap}")
    assert r.returncode == 0, r.stderr
    from scapy.all import TCP, rdpcap

    pkts = rdpcap(str(pcap))
    assert any(p.haslayer(TCP) and bytes(p[TCP].payload) == b"captured" for p in pkts)


def test_engine_flags_errors_are_one_line():
    for flag, word in (("--mtu=100", "--mtu"), ("--cidr=banana", "--cidr"), ("--outbound=nope", "--outbound"),
                       ("--dns-upstream=not-an-ip", "not an IP"), ("--ifname=" + "x" * 20, "--ifname")):
        r = rn("run", flag, "--", "true")
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and word in lines[0] and "Traceback" not in r.stderr, (flag, r.stderr)
