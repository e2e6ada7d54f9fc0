"""Hostile frames injected on tap0 against a running engine: dropped, counted, harmless.

Inside the namespace we are root, so scapy can write raw frames to tap0
(AF_PACKET); they reach the engine exactly as the guest kernel's would, but
without checksum offload, so the engine verifies every checksum.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import trio

from rootlessnet.instance import RunOptions, open_instance
from tests.integration.conftest import requires_userns
from tests.integration.servers import TcpServers

pytestmark = [pytest.mark.integration, requires_userns]

SCRIPT = textwrap.dedent("""
    import random, socket, sys
    from scapy.all import Ether, IP, IPv6, TCP, UDP, ICMP, Raw, sendp, fragment, conf
    conf.verb = 0
    port = int(sys.argv[1])
    GW = "52:55:00:00:00:02"
    me = open("/sys/class/net/tap0/address").read().strip()
    rnd = random.Random(5)
    # a real flow, used before, during and after the attack
    s = socket.create_connection(("10.0.2.2", port), timeout=10)
    lport = s.getsockname()[1]
    s.sendall(b"before"); assert s.recv(100) == b"before"
    base = Ether(src=me, dst=GW)
    frames = []
    good = base / IP(src="10.0.2.100", dst="10.0.2.2") / TCP(sport=40000, dport=port, flags="S")
    raw = bytes(good)
    frames += [raw[:n] for n in range(0, len(raw))]                       # every truncation
    frames.append(bytes(base / IP(src="10.0.2.100", dst="10.0.2.2", chksum=0x1234) / TCP(dport=port)))   # bad IP checksum
    frames.append(bytes(base / IP(src="10.0.2.100", dst="10.0.2.2") / TCP(dport=port, chksum=0x1234)))   # bad TCP checksum
    frames.append(bytes(base / IP(src="10.0.2.100", dst="10.0.2.2", len=2000) / TCP(dport=port)))       # wrong total length
    frames.append(bytes(base / IP(src="10.0.2.100", dst="10.0.2.2") / TCP(dport=port, flags="SR")))    # SYN+RST
    frames.append(bytes(base / IP(src="10.0.2.100", dst="10.0.2.2") / TCP(dport=port, flags="SF")))    # SYN+FIN
    frames += [bytes(f) for f in fragment(base / IP(src="10.0.2.100", dst="10.0.2.2") / UDP(dport=port) / Raw(b"x" * 3000), 1000)]
    frames.append(bytes(base / IP(src="10.0.2.100", dst="10.0.2.2", ihl=15) / Raw(b"\\0" * 20)))        # header longer than packet
    frames.append(bytes(base / IPv6(src="fd00::100", dst="fd00::2") / UDP(dport=53)))                   # IPv6 while disabled
    frames.append(bytes(Ether(src=me, dst=GW, type=0x88B5) / Raw(b"garbage")))                          # unknown ethertype
    frames += [rnd.randbytes(rnd.randrange(0, 200)) for _ in range(300)]                                # random bytes
    # out-of-window data and a forged RST on the real flow's 4-tuple (wrong sequence numbers)
    frames.append(bytes(base / IP(src="10.0.2.100", dst="10.0.2.2") / TCP(sport=lport, dport=port, flags="PA", seq=rnd.getrandbits(32), ack=rnd.getrandbits(32)) / Raw(b"EVIL")))
    frames.append(bytes(base / IP(src="10.0.2.100", dst="10.0.2.2") / TCP(sport=lport, dport=port, flags="R", seq=rnd.getrandbits(32))))
    # a SYN flood to a refused destination (host loopback port 1 is refused by the host)
    frames += [bytes(base / IP(src="10.0.2.100", dst="10.0.2.3") / TCP(sport=1024 + i, dport=80, flags="S")) for i in range(500)]
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as p:
        p.bind(("tap0", 0))
        for i, f in enumerate(frames):
            if len(f) >= 14:  # the kernel refuses to transmit runts (the core's unit tests cover them)
                p.send(f)
            if i % 100 == 0:
                s.sendall(b"during"); assert s.recv(100) == b"during"
    s.sendall(b"after" * 1000)
    got = b""
    while len(got) < 5000:
        got += s.recv(65536)
    assert got == b"after" * 1000
    print("intact", len(frames))
""")


def test_hostile_frames_are_dropped_counted_and_harmless():
    servers = TcpServers().start()

    async def main():
        opts = RunOptions(command=[sys.executable, "-c", SCRIPT, str(servers.echo_port)], allow_host_loopback=True, quiet=True)
        async with open_instance(opts) as inst:
            code = await inst.wait()
            return code, inst.engine.statistics()

    try:
        code, stats = trio.run(main)
    finally:
        servers.stop()
    assert code == 0
    drops = {k: v for k, v in stats.items() if k.startswith("drop_")}
    for name in ("drop_ip4_bad_checksum", "drop_tcp_bad_checksum", "drop_ip4_bad_header", "drop_tcp_bad_flags",
                 "drop_ip4_fragment", "drop_ip6_disabled", "drop_ethertype", "drop_ip4_short"):
        assert drops.get(name, 0) >= 1, (name, drops)
    assert stats["refused_virtual_address"] >= 500  # the SYN flood, answered with RSTs
    assert stats["tcp_flows"] <= 1
