"""io.tap: open and configure the tap device (runs in the namespace child).

The tap is opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR and TUNSETOFFLOAD
(CSUM|TSO4|TSO6) so the guest kernel hands us 64 KiB TCP frames with partial
checksums and accepts the same from us. A kernel that refuses the offloads
gets plain frames (still with the 10-byte header), one that refuses
IFF_VNET_HDR gets a plain tap.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
SIOCADDRT = 0x890B
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCSIFMTU = 0x8922
SIOCSIFHWADDR = 0x8924
IFF_UP = 0x1
RTF_UP, RTF_GATEWAY = 0x1, 0x2
# struct rtentry on LP64 (120 bytes): pad1, dst, gateway, genmask, flags, pad2, pad3, pad4, metric, dev, mtu, window, irtt
_RTENTRY = struct.Struct("L16s16s16sHh4xLPh6xPLLH6x")


def open_tap(name: str, *, vnet: bool = True, offload: bool = True) -> tuple[int, bool, bool]:
    """(fd, has_vnet_header, has_offloads) for a new tap device `name`."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        flags = IFF_TAP | IFF_NO_PI
        try:
            if not vnet:
                raise OSError("vnet headers disabled")
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags | IFF_VNET_HDR))
        except OSError:
            vnet = False
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        has_offload = False
        if vnet and offload:
            try:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
                has_offload = True
            except OSError:
                pass
        return fd, vnet, has_offload
    except BaseException:
        os.close(fd)
        raise


def configure(name: str, *, mtu: int, address: str, prefixlen: int, gateway: str, ipv6: bool,
              address6: str | None = None, mac: str | None = None) -> None:
    """Address, MTU, up and default route for the guest side, in this thread's netns.

    Plain ioctls (SIOCSIF*, SIOCADDRT) rather than netlink: importing pyroute2
    costs ~170 ms, which would be most of the start-up time."""
    if ipv6:
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/accept_ra", "2")
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/accept_dad", "0")
    else:
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
    ifname = name.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFMTU, struct.pack("16si20x", ifname, mtu))
        if mac:
            hw = bytes(int(x, 16) for x in mac.split(":"))
            fcntl.ioctl(s, SIOCSIFHWADDR, struct.pack("16sH6s16x", ifname, 1, hw))
        fcntl.ioctl(s, SIOCSIFADDR, struct.pack("16s", ifname) + _sin(address) + bytes(8))
        mask = (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF
        fcntl.ioctl(s, SIOCSIFNETMASK, struct.pack("16s", ifname) + _sin(socket.inet_ntoa(mask.to_bytes(4, "big"))) + bytes(8))
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", ifname, 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", ifname, flags | IFF_UP))
        # default route via the gateway (struct rtentry; rt_dev NULL: the kernel finds tap0 from the gateway)
        rt = _RTENTRY.pack(0, _sin("0.0.0.0"), _sin(gateway), _sin("0.0.0.0"), RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, 0, 0, 0, 0)
        fcntl.ioctl(s, SIOCADDRT, rt)
    if ipv6 and address6:
        index = socket.if_nametoindex(name)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
            fcntl.ioctl(s6, SIOCSIFADDR, socket.inet_pton(socket.AF_INET6, address6) + struct.pack("Ii", 64, index))


def _sin(addr: str) -> bytes:
    """struct sockaddr_in (16 bytes)."""
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(addr))


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass
