"""Engine egress to a real (non-loopback) address, hermetically.

The whole instance runs inside an outer user+network namespace the test
makes; its only "outside" is a bridge with 192.0.2.1 (TEST-NET-1) on it, so
every packet the engine sends stays inside namespaces the test created.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.integration.conftest import requires_userns

pytestmark = [pytest.mark.integration, requires_userns,
              pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed (apt-get install busybox-static)")]
PY = sys.executable


def outer(script: str, timeout: float = 90) -> subprocess.CompletedProcess:
    setup = textwrap.dedent("""
        set -e
        ip link set lo up
        ip link add br0 type bridge
        ip addr add 192.0.2.1/24 dev br0
        ip link set br0 up
    """)
    return subprocess.run(["unshare", "-Urn", "sh", "-c", setup + textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=timeout)


RN = f"{PY} -m rootlessnet run -q --subid-source=none"


def test_ping_forwarded_through_ping_sockets_when_allowed():
    r = outer(f"""
        echo "0 0" > /proc/sys/net/ipv4/ping_group_range  # only gid 0 is mapped here
        {RN} -- busybox ping -c 2 -W 3 192.0.2.1
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 packets received" in r.stdout


def test_ping_refused_with_unreachable_and_one_warning_when_ping_sockets_are_off():
    r = outer(f"""
        cat /proc/sys/net/ipv4/ping_group_range  # a new netns starts with "1 0": off
        {PY} -m rootlessnet run --subid-source=none -- busybox ping -c 2 -W 2 192.0.2.1 || echo "rc=$?"
    """)
    assert "rc=1" in r.stdout, r.stdout + r.stderr
    warnings = [l for l in r.stderr.splitlines() if "ping_group_range" in l]
    assert len(warnings) == 1, r.stderr  # one warning, however many pings


def test_outbound_cidr_allows_what_it_lists_and_refuses_the_rest():
    server = "import socket; s=socket.socket(); s.bind(('192.0.2.1', 8080)); s.listen(); c,_=s.accept(); c.sendall(b'out'); c.close()"
    client = textwrap.dedent("""
        import socket
        print(socket.create_connection(("192.0.2.1", 8080), timeout=10).recv(10).decode())
        try:
            socket.create_connection(("198.51.100.1", 80), timeout=10); print("connected")
        except ConnectionRefusedError:
            print("refused")
    """)
    r = outer(f"""
        {PY} -c "{server}" &
        sleep 0.3
        {RN} --outbound=192.0.2.0/24 -- {PY} -c '{client}'
        wait
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["out", "refused"]
