"""Small network-device helpers that need no netlink (ioctl on a socket)."""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ_FLAGS = struct.Struct("16sH14x")


def set_link_up(name: str) -> None:
    """`ip link set NAME up` in the calling thread's network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = _IFREQ_FLAGS.pack(name.encode(), 0)
        flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name.encode(), flags | IFF_UP))
