"""Hermetic by default: DNS answers only from the test's table, over UDP and TCP alike, and
nothing leaves for an address outside the host's loopback (outbound="none")."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.rootless(hosts={"db.test": "10.0.2.2"})

# one DNS query (A record) over UDP or TCP to the sandbox's resolver; prints the answer's addresses,
# or "NXDOMAIN"
QUERY = r"""
import socket, struct, sys
name, proto = sys.argv[1], sys.argv[2]
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(q, ("10.0.2.3", 53))
    r = s.recv(4096)
else:
    s = socket.create_connection(("10.0.2.3", 53), timeout=5)
    s.sendall(struct.pack("!H", len(q)) + q)
    n = struct.unpack("!H", s.recv(2))[0]
    r = b""
    while len(r) < n:
        r += s.recv(n - len(r))
rcode, ancount = r[3] & 15, struct.unpack("!H", r[6:8])[0]
if rcode == 3:
    print("NXDOMAIN")
else:
    def skip_name(i):
        while r[i] and r[i] & 0xC0 != 0xC0:
            i += 1 + r[i]
        return i + (2 if r[i] else 1)
    i = len(q)  # past the header and the question, which the answer repeats
    out = []
    for _ in range(ancount):
        i = skip_name(i)
        rtype, _c, _ttl, rdlen = struct.unpack("!HHIH", r[i:i + 10])
        if rtype == 1:
            out.append(socket.inet_ntoa(r[i + 10:i + 14]))
        i += 10 + rdlen
    print(" ".join(out))
"""


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_dns_answers_only_from_the_table(rootless_sandbox, proto):
    sb = rootless_sandbox

    def ask(name: str) -> str:
        return sb.run([sys.executable, "-c", QUERY, name, proto], capture_output=True, text=True, check=True,
                      timeout=30).stdout.strip()

    assert ask("db.test") == "10.0.2.2"
    assert ask("example.com") == "NXDOMAIN"  # no real resolver is ever asked
    stats = sb.statistics()["engine"]
    if proto == "udp":  # (answers over TCP are not counted apart)
        assert stats["dns_static_answers"] >= 2
    assert stats.get("udp_flows_opened", 0) == 0  # nothing went to a resolver of the host


def test_nothing_leaves_for_outside_addresses(rootless_sandbox):
    # 192.0.2.1 is a documentation address (RFC 5737): the engine refuses it before any socket is made
    code = ("import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=5)\n    print('connected')\n"
            "except ConnectionRefusedError:\n    print('refused')\nexcept OSError as e:\n    print(e)")
    r = rootless_sandbox.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert r.stdout.strip() == "refused"
    assert rootless_sandbox.statistics()["engine"]["refused_outbound"] >= 1
