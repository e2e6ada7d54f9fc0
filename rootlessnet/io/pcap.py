"""io.pcap: write frames as a pcap file (LINKTYPE_ETHERNET) for tcpdump/wireshark.

Frames are recorded as they cross the tap, without the virtio header: TCP
super-frames (GSO/TSO, up to 64 KiB) appear as single large frames, as they
do in a capture on the guest's tap0. Snap length 262144.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_GLOBAL = struct.Struct("<IHHiIII")
_REC = struct.Struct("<IIII")
SNAPLEN = 262144


class PcapWriter:
    def __init__(self, path: str):
        self.f: BinaryIO = open(path, "wb", buffering=1 << 20)
        self.f.write(_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1))

    def write(self, ts: float, parts) -> None:
        n = sum(len(p) for p in parts)
        sec = int(ts)
        self.f.write(_REC.pack(sec, int((ts - sec) * 1e6), min(n, SNAPLEN), n))
        left = SNAPLEN
        for p in parts:
            if left <= 0:
                break
            self.f.write(p[:left])
            left -= len(p)

    def close(self) -> None:
        self.f.close()
