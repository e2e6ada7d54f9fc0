"""Captures: read the engine's pcap, split it per host of a network, compare two runs.

The engine writes one capture for every tap of an instance (`pcap=`). A
frame belongs to a host when its source or destination MAC address is that
host's tap's (frames between hosts appear twice: as read from the sender's
tap and as written to the receiver's). `host_macs(net)` asks each host's
kernel for its tap's address (`ip link`), while the network runs;
`split(path, macs, out)` writes one pcap per host, once the engine has
flushed its capture (it has when the network is stopped).
"""

from __future__ import annotations

import os
import struct
from typing import Any, Iterator

_GLOBAL = struct.Struct("<IHHiIII")
_REC_LE = struct.Struct("<IIII")
_REC_BE = struct.Struct(">IIII")


def read(path: str) -> Iterator[tuple[float, bytes]]:
    """(timestamp, frame) of every record of a pcap file (LINKTYPE_ETHERNET, either byte order)."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = head[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            rec, nano = _REC_LE, magic == b"\x4d\x3c\xb2\xa1"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            rec, nano = _REC_BE, magic == b"\xa1\xb2\x3c\x4d"
        else:
            raise ValueError(f"{path}: not a pcap file")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, incl, _orig = rec.unpack(h)
            data = f.read(incl)
            if len(data) < incl:
                return  # cut short (the engine was killed mid-write)
            yield sec + frac / (1e9 if nano else 1e6), data


def write(path: str, records: list[tuple[float, bytes]]) -> None:
    with open(path, "wb") as f:
        f.write(_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for ts, data in records:
            sec = int(ts)
            f.write(_REC_LE.pack(sec, int(round((ts - sec) * 1e6)) % 1000000, len(data), len(data)))
            f.write(data)


def _mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def host_macs(net: Any) -> dict[str, bytes]:
    """Each host's tap0 MAC address (the network must be running)."""
    out = {}
    for h in net.hosts:
        r = h.run(["ip", "-o", "link", "show", "dev", "tap0"], capture_output=True, text=True, timeout=30)
        words = r.stdout.split()
        if r.returncode == 0 and "link/ether" in words:
            out[h.name] = _mac(words[words.index("link/ether") + 1])
    return out


def belongs(frame: bytes, mac: bytes) -> bool:
    return frame[0:6] == mac or frame[6:12] == mac


def split(path: str, macs: dict[str, bytes], out: dict[str, str]) -> dict[str, str]:
    """Write out[host] with the frames of `path` that are that host's; returns the paths written."""
    per: dict[str, list[tuple[float, bytes]]] = {h: [] for h in out}
    for ts, frame in read(path):
        for h in out:
            if h in macs and belongs(frame, macs[h]):
                per[h].append((ts, frame))
    for h, recs in per.items():
        write(out[h], recs)
    return out


def host_paths(pcap: str, names: list[str]) -> dict[str, str]:
    stem = pcap[:-5] if pcap.endswith(".pcap") else pcap
    return {n: f"{stem}-{n}.pcap" for n in names}


def split_by_host(net: Any) -> dict[str, str]:
    """Note the hosts' MACs now (running) and return where each host's capture will be written:
    `finish_split(net)` writes them once the network has stopped and the capture is complete."""
    macs = host_macs(net)
    paths = host_paths(net.pcap, [n for n in net.names if n in macs])
    net._rn_pcap_split = (net.pcap, macs, paths)
    return paths


def finish_split(net: Any) -> None:
    pending = getattr(getattr(net, "sync", net), "_rn_pcap_split", None)
    if pending is None:
        return
    pcap, macs, paths = pending
    if os.path.exists(pcap):
        split(pcap, macs, paths)


def frames_between(path: str, predicate: Any) -> list[tuple[float, bytes]]:
    return [(ts, f) for ts, f in read(path) if predicate(f)]
