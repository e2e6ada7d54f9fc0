"""io.pcap: write frames as a pcap file (LINKTYPE_ETHERNET) for tcpdump/wireshark.

Frames are recorded as they cross the tap, without the virtio header: TCP
super-frames (GSO/TSO, up to 64 KiB) appear as single large frames, as they
do in a capture on the guest's tap0. Snap length 262144.
"""

from __future__ import annotations

import struct
import sys
from typing import BinaryIO, Callable

_GLOBAL = struct.Struct("<IHHiIII")
_REC = struct.Struct("<IIII")
SNAPLEN = 262144


class PcapWriter:
    """A capture is a by-product: when writing it fails (a full disk, /dev/full) it stops, with one
    warning, and the engine goes on (it is not the engine's failure)."""

    def __init__(self, path: str, warn: Callable[[str], None] | None = None):
        self.path = path
        self.warn = warn or (lambda text: print(f"rootlessnet: warning: {text}", file=sys.stderr, flush=True))
        self.failed = False
        self.f: BinaryIO = open(path, "wb", buffering=1 << 20)
        self._guard(lambda: self.f.write(_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1)))

    def write(self, ts: float, parts) -> None:
        if self.failed:
            return
        try:
            n = sum(len(p) for p in parts)
            sec = int(ts)
            self.f.write(_REC.pack(sec, int((ts - sec) * 1e6), min(n, SNAPLEN), n))
            left = SNAPLEN
            for p in parts:
                if left <= 0:
                    break
                self.f.write(p[:left])
                left -= len(p)
        except OSError as e:
            self._failed(e)

    def close(self) -> None:
        if not self.failed:
            self._guard(self.f.close)
        if not self.f.closed:
            try:
                self.f.close()
            except OSError:
                pass  # the buffered frames are lost; the warning said so

    def _guard(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except OSError as e:
            self._failed(e)

    def _failed(self, e: OSError) -> None:
        self.failed = True
        self.warn(f"--pcap {self.path}: {(e.strerror or str(e)).lower()}: the capture stops here")
