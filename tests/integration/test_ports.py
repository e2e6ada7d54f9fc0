"""Port forwarding: host clients on 127.0.0.1/::1 reach servers in the namespace, both drivers."""

from __future__ import annotations

import hashlib
import random
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from tests.integration.conftest import one_line_error, requires_userns, rn, rn_popen, wait_for
from tests.integration.servers import seeded_sha256

pytestmark = [pytest.mark.integration, requires_userns]
PY = sys.executable
MIB = 1 << 20

# Servers inside the namespace: echo 7000, sink 7001 (answers "N sha256"), source 7002 ("SEED N"), UDP echo 7003,
# on IPv4 and IPv6. They print "ready" and stop by themselves.
INSIDE = textwrap.dedent("""
    import asyncio, hashlib, random, socket, sys
    async def echo(r, w):
        try:
            while d := await r.read(65536):
                w.write(d); await w.drain()
        except ConnectionError:
            pass
        w.close()
    async def sink(r, w):
        h = hashlib.sha256(); n = 0
        while d := await r.read(1 << 20):
            h.update(d); n += len(d)
        w.write(f"{n} {h.hexdigest()}\\n".encode()); await w.drain(); w.close()
    async def source(r, w):
        seed, n = (int(x) for x in (await r.readline()).split()); rng = random.Random(seed)
        while n:
            c = rng.randbytes(min(n, 1 << 20)); w.write(c); await w.drain(); n -= len(c)
        w.close()
    class U(asyncio.DatagramProtocol):
        def connection_made(self, t): self.t = t
        def datagram_received(self, d, a): self.t.sendto(d + b"|" + a[0].encode(), a)
    async def main():
        loop = asyncio.get_running_loop()
        for host in ("0.0.0.0", "::"):
            await asyncio.start_server(echo, host, 7000, backlog=1024)
            await asyncio.start_server(sink, host, 7001)
            await asyncio.start_server(source, host, 7002)
            u = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            if ":" in host:
                u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            u.bind((host, 7003))
            await loop.create_datagram_endpoint(U, sock=u)
        print("ready", flush=True)
        await asyncio.sleep(float(sys.argv[1]))
    asyncio.run(main())
""")


def free_port(family=socket.AF_INET, kind=socket.SOCK_STREAM) -> int:
    with socket.socket(family, kind) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    def __init__(self, state, driver: str, publish: dict[str, str], extra=(), lifetime: float = 240):
        self.ports = {name: free_port(socket.AF_INET6 if "6" in spec.split("/")[1] else socket.AF_INET,
                                      socket.SOCK_DGRAM if "udp" in spec else socket.SOCK_STREAM)
                      for name, spec in publish.items()}
        flags = []
        for name, spec in publish.items():
            flags += ["-p", spec.format(port=self.ports[name])]
        self.proc = rn_popen("run", "-q", "--state-dir", str(state), f"--port-driver={driver}", *flags, *extra,
                             "--", PY, "-c", INSIDE, str(lifetime))
        line = self.proc.stdout.readline()
        assert line == "ready\n", self.proc.stderr.read() if self.proc.poll() is not None else line

    def stop(self):
        self.proc.terminate()
        self.proc.communicate(timeout=30)


DRIVERS = ["builtin", "slirp"]


@pytest.fixture(params=DRIVERS)
def inst(request, state_dir):
    driver = request.param
    extra = ["--ipv6"] if driver == "slirp" else []
    i = Instance(state_dir, driver, {
        "echo4": "127.0.0.1:{port}:7000/tcp", "sink4": "127.0.0.1:{port}:7001/tcp",
        "source4": "127.0.0.1:{port}:7002/tcp", "udp4": "127.0.0.1:{port}:7003/udp",
        "echo6": "[::1]:{port}:7000/tcp6", "udp6": "[::1]:{port}:7003/udp6"}, extra)
    i.driver = driver
    yield i
    i.stop()


def echo_once(host: str, port: int, msg: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(msg)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while d := s.recv(65536):
            out += d
        return out


def test_tcp_ipv4_and_ipv6(inst):
    assert echo_once("127.0.0.1", inst.ports["echo4"], b"four") == b"four"
    assert echo_once("::1", inst.ports["echo6"], b"six") == b"six"


def test_udp_ipv4_and_ipv6(inst):
    for host, name in (("127.0.0.1", "udp4"), ("::1", "udp6")):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(fam, socket.SOCK_DGRAM) as u:
            u.settimeout(5)
            u.sendto(b"dgram", (host, inst.ports[name]))
            data, src = u.recvfrom(65535)
            payload, seen = data.split(b"|")
            assert payload == b"dgram" and src[1] == inst.ports[name]
            if inst.driver == "slirp":  # loopback clients appear as the gateway
                assert seen.decode() in ("10.0.2.2", "fd00::2")


@pytest.mark.slow
def test_256_mib_each_way(inst):
    n = 256 * MIB
    rng = random.Random(3)
    h = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", inst.ports["sink4"]), timeout=60) as s:
        left = n
        while left:
            chunk = rng.randbytes(min(left, MIB))
            h.update(chunk)
            s.sendall(chunk)
            left -= len(chunk)
        s.shutdown(socket.SHUT_WR)
        assert s.makefile().readline().split() == [str(n), h.hexdigest()]
    with socket.create_connection(("127.0.0.1", inst.ports["source4"]), timeout=60) as s:
        s.sendall(f"9 {n}\n".encode())
        h, total = hashlib.sha256(), 0
        while d := s.recv(MIB):
            h.update(d)
            total += len(d)
    assert (total, h.hexdigest()) == (n, seeded_sha256(9, n))


def test_200_concurrent_connections(inst):
    results: dict[int, bool] = {}

    def one(i: int) -> None:
        msg = hashlib.sha256(str(i).encode()).digest() * 100
        try:
            results[i] = echo_once("127.0.0.1", inst.ports["echo4"], msg) == msg
        except OSError:
            results[i] = False

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(results.values()) == 200


def test_ports_listen_before_child_pid(state_dir):
    port = free_port()
    p = rn_popen("run", "-q", "--state-dir", str(state_dir), "-p", f"127.0.0.1:{port}:7000/tcp", "--", "sleep", "30")
    try:
        wait_for(lambda: (state_dir / "child_pid").exists() or p.poll() is not None, what="child_pid")
        with socket.socket() as s:  # already listening when child_pid appears
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
            except ConnectionResetError:
                pass  # accepted, then reset because nothing listens on 7000 inside: it was listening
            # (not listening would be ConnectionRefusedError, which fails the test)
    finally:
        p.terminate()
        p.communicate(timeout=30)


def test_privileged_port_names_the_sysctl():
    start = int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read())
    if start == 0:
        pytest.skip("net.ipv4.ip_unprivileged_port_start is 0 here: every port is unprivileged")
    r = rn("run", "-p", f"127.0.0.1:{start - 1}:80/tcp", "--", "true")
    assert r.returncode != 0
    assert "net.ipv4.ip_unprivileged_port_start" in one_line_error(r.stderr)


def test_port_in_use_and_conflicting_specs_fail_clearly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = rn("run", "-p", f"127.0.0.1:{port}:80/tcp", "--", "true")
        assert r.returncode != 0
        assert "address already in use" in one_line_error(r.stderr)
    port = free_port()
    r = rn("run", "-p", f"{port}:80/tcp", "-p", f"127.0.0.1:{port}:81/tcp", "--", "true")
    assert r.returncode != 0
    assert "conflicts with ID 1" in one_line_error(r.stderr)
    # nothing half-open is left behind: the port is free again
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_bad_specs_are_one_line():
    for spec, word in (("8080/tcp", "PARENTPORT"), ("8080:80/sctp", "sctp"), ("99999:80/tcp", "out of range"),
                       ("8080:80", "/PROTO"), ("x:8080:80/tcp", "not an IP")):
        r = rn("run", "-p", spec, "--", "true")
        assert r.returncode != 0
        assert word in one_line_error(r.stderr), (spec, r.stderr)


def test_slirp_driver_shows_a_non_loopback_clients_real_address():
    """The client lives in a namespace the test made, behind a veth; the engine runs in another."""
    server = "import socket; s=socket.socket(); s.bind(('0.0.0.0',80)); s.listen(); c,a=s.accept(); c.sendall(a[0].encode()); c.close()"
    client = "import socket; print(socket.create_connection(('192.0.2.1', 8080), timeout=10).recv(100).decode())"
    script = textwrap.dedent(f"""
        set -e
        ip link set lo up
        unshare -n sleep 60 &
        cpid=$!
        sleep 0.3
        ip link add v0 type veth peer name v1 netns $cpid
        ip addr add 192.0.2.1/24 dev v0 && ip link set v0 up
        nsenter -t $cpid -n sh -c 'ip link set lo up; ip addr add 192.0.2.2/24 dev v1; ip link set v1 up'
        {PY} -m rootlessnet run -q --subid-source=none --port-driver=slirp -p 192.0.2.1:8080:80/tcp -- {PY} -c "{server}" &
        for i in $(seq 100); do nsenter -t $cpid -n {PY} -c "{client}" 2>/dev/null && break; sleep 0.1; done
        kill $cpid
        wait
    """)
    r = subprocess.run(["unshare", "-Urn", "sh", "-c", script], capture_output=True, text=True, timeout=90)
    assert r.stdout.split() == ["192.0.2.2"], r.stdout + r.stderr
