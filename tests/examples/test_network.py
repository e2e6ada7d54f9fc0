"""Several hosts: a key-value service through a partition, a retrying client
under packet loss, and latency injected on one link."""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

import pytest

from rootlessnet.harness import CommandFailed

PY = sys.executable
PROG = str(Path(__file__).with_name("netprog.py"))  # the programs we run inside


def readline(proc: subprocess.Popen, timeout: float) -> str:
    """One line of a process's output, or "" if none came within `timeout`."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


def test_key_value_service_survives_partition_and_heal(rootless_network):
    net = rootless_network  # hosts a, b, c
    net.host("b").popen([PY, PROG, "kv-serve", "7000"])

    def kv(host, *words, attempts=20, **kw):  # one request, retried: the server may still be starting
        return net.host(host).run([PY, PROG, "kv", "b", "7000", *words, "--timeout", "1", "--attempts", str(attempts)],
                                  capture_output=True, text=True, timeout=60, **kw)

    assert kv("a", "SET", "color", "blue", check=True).stdout == "OK\n"
    session = net.host("a").popen([PY, PROG, "kv-session", "b", "7000"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert readline(session, 15.0) == "connected\n"

    net.partition({"a"}, {"b", "c"})
    r = kv("a", "GET", "color", attempts=2)  # new connections from a fail...
    assert r.returncode == 1 and "cannot reach b:7000 after 2 attempts" in r.stderr
    assert kv("c", "SET", "color", "green", check=True).stdout == "OK\n"  # ...while c, with b, goes on
    session.stdin.write("GET color\n")  # a request on a connection opened before the partition
    session.stdin.flush()
    assert readline(session, 1.0) == ""  # stuck in TCP retransmissions

    net.heal()
    assert readline(session, 15.0) == "VALUE green\n"  # the same connection recovers
    assert kv("a", "GET", "color", check=True).stdout == "VALUE green\n"
    session.stdin.close()
    assert session.wait(timeout=10) == 0


@pytest.mark.rootless(names=["client", "server"])
def test_retrying_client_under_loss_then_partition(rootless_network):
    net = rootless_network
    net.host("server").popen([PY, PROG, "udp-serve", "9000"])
    client = net.host("client")

    net.link("client").impair(loss=0.2, seed=7)  # 20 % of frames lost, each way
    r = client.run([PY, PROG, "udp-ask", "server", "9000", "--count", "30", "--timeout", "0.3", "--attempts", "15"],
                   capture_output=True, text=True, check=True, timeout=120)
    answered, attempts = r.stdout.split()[1], int(r.stdout.split()[3])
    assert answered == "30/30"
    assert attempts > 30  # some requests (or answers) were lost and retried

    net.partition({"client"}, {"server"})
    with pytest.raises(CommandFailed) as failed:
        client.run([PY, PROG, "udp-ask", "server", "9000", "--count", "1", "--timeout", "0.2", "--attempts", "5"],
                   capture_output=True, text=True, check=True, timeout=60)
    assert failed.value.returncode == 2
    assert "gave up on request 0 after 5 attempts" in str(failed.value)  # the client's stderr is in the error


@pytest.mark.rootless(names=["a", "b"])
def test_latency_on_one_link(rootless_network):
    net = rootless_network
    net.host("b").popen([PY, PROG, "udp-serve", "9000"])

    def rtt() -> float:
        r = net.host("a").run([PY, PROG, "udp-rtt", "b", "9000", "--count", "7"],
                              capture_output=True, text=True, check=True, timeout=60)
        return float(r.stdout)

    base = rtt()
    net.link("a").impair(delay=0.1)  # 100 ms each way on a's link
    slow = rtt()
    assert 0.15 < slow - base < 0.45, (base, slow)
    net.link("a").clear()
    assert rtt() < base + 0.05


@pytest.mark.rootless(names=["a", "b", "c"])
def test_one_slow_pair(rootless_network):
    net = rootless_network
    for h in ("b", "c"):
        net.host(h).popen([PY, PROG, "udp-serve", "9000"])

    def rtt(dst: str) -> float:
        r = net.host("a").run([PY, PROG, "udp-rtt", dst, "9000", "--count", "5"],
                              capture_output=True, text=True, check=True, timeout=60)
        return float(r.stdout)

    net.pair("a", "b", both=True).impair(netem="delay 50ms 5ms distribution normal", seed=1)  # only a <-> b
    assert 0.08 < rtt("b") < 0.3 and rtt("c") < 0.05
    net.pair("a", "b", both=True).clear()
    assert rtt("b") < 0.05
