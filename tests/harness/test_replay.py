"""Seeded replay: the same seed and the same traffic give the same frames, frame for frame.

Two runs of the same network, impairments and seed: the captures of both
hosts (split from the engine's pcap by MAC address) are identical, byte for
byte, timestamps aside. A third run with another seed differs. The probe's
datagrams carry no time stamp here, and the taps' MAC addresses, which the kernel picks at
random, are pinned first; the sender writes whole frames (probe.py sendraw)
with a fixed IPv4 ID: every byte the hosts send is then the same.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rootlessnet import Network
from rootlessnet.harness import pcap

PY = sys.executable
PROBE = str(Path(__file__).with_name("probe.py"))
MACS = {"a": "02:00:00:00:00:0a", "b": "02:00:00:00:00:0b"}
GATEWAY_MAC = "52:55:00:00:00:02"  # the engine's: every address of the network resolves to it

pytestmark = pytest.mark.rootless


def _udp_to(port: int):
    def match(frame: bytes) -> bool:  # IPv4, UDP, that destination port
        return frame[12:14] == b"\x08\x00" and frame[23] == 17 and int.from_bytes(frame[36:38], "big") == port
    return match


def one_run(tmp_path: Path, name: str, seed: int) -> dict[str, list[bytes]]:
    cap = str(tmp_path / f"{name}.pcap")
    with Network(["a", "b"], pcap=cap) as net:
        for h, mac in MACS.items():
            net.host(h).run(["ip", "link", "set", "dev", "tap0", "address", mac], check=True)
            # one datagram to the gateway: the engine learns the new address before the traffic
            net.host(h).run([PY, PROBE, "send", "10.0.2.2", "9", "1", "0", "10", "40001"], check=True)
        net.link("a").impair(direction="up", loss={"model": "gemodel", "p": 0.05, "r": 0.4}, seed=seed)
        net.pair("a", "b").impair(delay=0.005, loss=0.1, duplicate=0.05, corrupt=0.05, seed=seed)
        rx = net.host("b").popen([PY, PROBE, "recv", "9000", "1000", "1"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        assert rx.stderr.readline() == "ready\n"
        net.host("a").run([PY, PROBE, "sendraw", MACS["a"], GATEWAY_MAC, net.host("a").ipv4, net.host("b").ipv4, "9000",
                           "300", "0.001", "200"], check=True, timeout=60)
        rx.wait(timeout=60)
        stages = net.impairments()["stages"]
    paths = pcap.split(cap, {h: pcap._mac(m) for h, m in MACS.items()}, pcap.host_paths(cap, ["a", "b"]))
    out = {h: [f for _, f in pcap.frames_between(p, _udp_to(9000))] for h, p in paths.items()}
    out["counters"] = [repr(sorted(stages.items()))]
    return out


def test_same_seed_same_captures(tmp_path):
    one = one_run(tmp_path, "one", seed=11)
    two = one_run(tmp_path, "two", seed=11)
    assert one == two  # both hosts' frames, byte for byte (pcap timestamps are not compared)
    sent = [f[14:] for f in one["a"]]  # IP packets, as read from a's tap
    received = [f[14:] for f in one["b"]]  # as written to b's (the engine rewrites the MACs)
    assert len(sent) == 300
    assert len(set(received)) < len(received)  # duplicates...
    assert set(received) - set(sent)  # ...corrupted packets...
    assert set(sent) - set(received)  # ...and losses happened, in the same places both times
    other = one_run(tmp_path, "other", seed=12)
    assert other["a"] == one["a"] and other["b"] != one["b"]  # another seed: other decisions
