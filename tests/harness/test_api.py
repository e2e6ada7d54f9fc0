"""run()/popen() behave as subprocess.run/Popen; ports, statistics, pcap, DNS, IPv6, async."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import trio

from rootlessnet import open_network, open_sandbox
from rootlessnet.harness import CommandFailed, PortInUseError, UnknownHostError, UnknownPortError

pytestmark = pytest.mark.rootless

# connect to HOST PORT: print what the server sent, "refused" or "timeout" (1.5 s)
CONNECT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)
    print(s.recv(100).decode())
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("timeout")
"""
# serve one connection on PORT with "hello", then exit (at most 60 s)
SERVE = """
import socket, sys
l = socket.create_server(("", int(sys.argv[1])))
l.settimeout(60)
c, _ = l.accept()
c.sendall(b"hello")
c.close()
"""


def test_run_has_subprocess_semantics(rootless_sandbox, tmp_path):
    sb = rootless_sandbox
    r = sb.run(["sh", "-c", 'echo "$FOO $(pwd) $(id -u)"; cat; echo err >&2'], env={"FOO": "bar", "PATH": os.environ["PATH"]},
               cwd=tmp_path, input=b"in\n", capture_output=True)
    assert r.args == ["sh", "-c", 'echo "$FOO $(pwd) $(id -u)"; cat; echo err >&2']
    assert (r.returncode, r.stdout, r.stderr) == (0, f"bar {tmp_path} 0\nin\n".encode(), b"err\n")
    assert sb.run("echo $((6*7))", shell=True, stdout=subprocess.PIPE, text=True).stdout == "42\n"
    with pytest.raises(subprocess.TimeoutExpired) as e:
        sb.run(["sleep", "10"], timeout=0.5)
    assert e.value.cmd == ["sleep", "10"]
    assert sb.run(["sh", "-c", "exit 7"]).returncode == 7
    with pytest.raises(FileNotFoundError, match="no-such-program"):  # as subprocess raises it
        sb.run(["no-such-program"], capture_output=True)
    with pytest.raises(FileNotFoundError, match="/no/such/dir"):
        sb.run(["true"], cwd="/no/such/dir")
    with pytest.raises(CommandFailed) as failed:
        sb.run(["ls", "/no/such/file"], capture_output=True, text=True, check=True)
    assert "No such file or directory" in str(failed.value)
    assert sb.run(["myname", "-c", "echo $0"], executable="/bin/sh", capture_output=True, text=True).stdout == "myname\n"
    with pytest.raises(TypeError, match="preexec_fn= is not supported"):
        sb.run(["true"], preexec_fn=lambda: None)


def test_popen_is_the_command_itself(rootless_sandbox):
    p = rootless_sandbox.popen(["sh", "-c", "read x; echo got $x"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.communicate("hi\n", timeout=20) == ("got hi\n", None)
    p = rootless_sandbox.popen(["sleep", "30"])
    p.terminate()
    assert p.wait(timeout=10) == -15  # a signal shows as with subprocess


def test_the_sandbox_is_its_own_network(rootless_sandbox):
    r = rootless_sandbox.run(["ip", "-o", "-4", "addr", "show", "tap0"], capture_output=True, text=True, check=True)
    assert f"{rootless_sandbox.address}/24" in r.stdout
    assert rootless_sandbox.host_address == "10.0.2.2"


@pytest.mark.rootless(hosts={"db.test": "10.0.2.2", "v6.test": "fd00::2"}, ipv6=True)
def test_hosts_table_and_ipv6(rootless_sandbox):
    r = rootless_sandbox.run(["getent", "ahosts", "db.test"], capture_output=True, text=True, check=True)
    assert "10.0.2.2" in r.stdout
    r = rootless_sandbox.run(["getent", "ahosts", "v6.test"], capture_output=True, text=True, check=True)
    assert "fd00::2" in r.stdout
    assert rootless_sandbox.run(["getent", "hosts", "other.test"]).returncode == 2
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as srv:
        port = srv.getsockname()[1]
        client = rootless_sandbox.popen(["sh", "-c", f"echo v6 | nc -N v6.test {port}"])
        srv.settimeout(20)
        conn, _ = srv.accept()
        with conn:
            assert conn.makefile().readline() == "v6\n"
        client.wait(timeout=20)


def test_ports(rootless_sandbox):
    sb = rootless_sandbox
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as e:
            sb.add_port(80, busy)
        assert f"127.0.0.1:{busy}/tcp" in str(e.value) and "in use" in str(e.value)
    host, port = sb.add_port(80)
    assert host == "127.0.0.1" and port > 0
    with pytest.raises(PortInUseError, match="conflicts"):
        sb.add_port(81, port)
    h2, udp = sb.add_port(53, proto="udp")
    sb.remove_port(80)
    sb.remove_port((h2, udp))
    with pytest.raises(UnknownPortError, match="no published port for child port 80/tcp"):
        sb.remove_port(80)
    with pytest.raises(ValueError, match="proto='sctp'"):
        sb.add_port(80, proto="sctp")
    with socket.socket() as s:  # removal frees the host port
        s.bind(("127.0.0.1", port))


def test_statistics_and_pcap(rootless_sandbox_factory, tmp_path):
    sb = rootless_sandbox_factory(pcap=tmp_path / "cap.pcap")
    sb.run(["getent", "hosts", "anything.test"])
    stats = sb.statistics()
    assert stats["engine"]["dns_static_answers"] >= 1
    assert sb.pcap == str(tmp_path / "cap.pcap")
    sb.stop()
    data = (tmp_path / "cap.pcap").read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4") and len(data) > 24 + 16


def test_network_hosts_and_errors(rootless_network):
    net = rootless_network
    assert [(h.name, h.ipv4) for h in net.hosts] == [("a", "10.0.2.101"), ("b", "10.0.2.102"), ("c", "10.0.2.103")]
    a = net.host("a")
    assert a.run(["hostname"], capture_output=True, text=True, check=True).stdout == "a\n"
    r = a.run(["getent", "hosts", "c"], capture_output=True, text=True, check=True)
    assert r.stdout.split()[0] == "10.0.2.103"
    with pytest.raises(UnknownHostError) as e:
        net.host("d")
    assert isinstance(e.value, KeyError) and str(e.value) == "unknown host 'd': this network has a, b, c"
    with pytest.raises(UnknownHostError):
        net.link("d")
    with pytest.raises(ValueError, match="probability"):
        net.link("a").impair(loss=50)
    assert net.link("b").impair(delay=0.01, seed=5)["delay"] == 0.01
    assert net.link("b").settings["up"]["seed"] == net.link("b").settings["down"]["seed"] == 5
    net.link("b").impair(direction="up", netem="delay 20ms")
    assert (net.link("b").settings["up"]["delay"], net.link("b").settings["down"]["delay"]) == (0.02, 0.01)
    net.link("b").clear()
    assert net.link("b").settings["up"]["delay"] == net.link("b").settings["down"]["delay"] == 0
    net.pair("a", "c", both=True).impair(loss=0.5, seed=1)
    assert set(net.impairments()["pairs"]) == {"a->c", "c->a"}
    net.pair("a", "c", both=True).clear()
    assert net.impairments()["pairs"] == {}
    net.partition({"a"}, {"b", "host"})
    assert net.partitions == [{"a"}, {"b", "host"}]
    net.block("c", "a")
    assert ("c", "a") in net.blocked and ("a", "c") not in net.blocked
    net.heal()
    assert net.partitions == [] and net.blocked == set()
    net.isolate("a")
    assert net.partitions == [{"a"}, {"b", "c", "host", "main"}]
    net.heal()


def test_network_host_port(rootless_network):
    b = rootless_network.host("b")
    server = ("import socket; s = socket.socket(); s.bind(('0.0.0.0', 8000)); s.listen(); print('ready', flush=True); "
              "c, _ = s.accept(); c.sendall(socket.gethostname().encode()); c.close()")
    p = b.popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    host, port = b.add_port(8000)
    with socket.create_connection((host, port), timeout=10) as c:
        assert c.recv(100) == b"b"
    p.wait(timeout=10)


async def test_async_sandbox_and_network():
    async with open_sandbox() as sb:
        r = await sb.run(["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True, text=True)
        assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
        with pytest.raises(CommandFailed, match="err"):
            await sb.run(["sh", "-c", "echo err >&2; exit 3"], capture_output=True, check=True)
        with pytest.raises(subprocess.TimeoutExpired):
            await sb.run(["sleep", "10"], timeout=0.3)
        with trio.move_on_after(0.3):  # cancelling kills the command
            await sb.run(["sleep", "10"])
        p = await sb.popen(["sleep", "30"])
        host, port = await sb.add_port(80)
        before = (await sb.statistics())["engine"]
        # a connection to the host's loopback (port 9: nothing listens) shows in the counters
        r = await sb.run([sys.executable, "-c", CONNECT, "10.0.2.2", "9"], capture_output=True, text=True)
        assert r.stdout.strip() == "refused"
        after = (await sb.statistics())["engine"]
        assert after["tcp_syn"] == before.get("tcp_syn", 0) + 1
        assert after["tcp_connect_failed"] == before.get("tcp_connect_failed", 0) + 1
        workdir = sb._core.workdir
    assert p.returncode is not None and not os.path.exists(workdir)
    async with open_network(["x", "y"]) as net:
        r = await net.host("x").run(["getent", "hosts", "y"], capture_output=True, text=True, check=True)
        assert r.stdout.split()[0] == net.host("y").ipv4
        await net.link("x").impair(delay=0.001)
        server = await net.host("y").popen([sys.executable, "-c", SERVE, "9000"])
        await net.partition({"x"}, {"y"})
        r = await net.host("x").run([sys.executable, "-c", CONNECT, "y", "9000"], capture_output=True, text=True)
        assert r.stdout.strip() == "timeout"  # partitioned: the SYNs go nowhere
        await net.heal()
        r = await net.host("x").run([sys.executable, "-c", CONNECT, "y", "9000"], capture_output=True, text=True)
        assert r.stdout.strip() == "hello"  # healed: the same server answers
        assert await server.wait() == 0
        with pytest.raises(UnknownHostError):
            net.host("z")
