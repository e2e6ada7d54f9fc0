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
import struct

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04


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
    """Address, MTU, up and default route for the guest side (pyroute2, in this thread's netns)."""
    if ipv6:
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/accept_ra", "2")
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/accept_dad", "0")
    else:
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=idx, mtu=mtu)
        if mac:
            ipr.link("set", index=idx, address=mac)
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=idx)
        if ipv6 and address6:
            ipr.addr("add", index=idx, address=address6, prefixlen=64)


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass
