"""ns.tap: create and configure a tap device in the calling thread's network namespace.

Runs where the device must live: in the namespace child (`rootlessnet run`)
or in the helper that joined a target's namespaces (`rootlessnet
slirp4netns`); the fd then travels to the engine (SCM_RIGHTS).

The device is opened and configured with python-pytun (TUNSETIFF with
IFF_TAP|IFF_NO_PI|IFF_VNET_HDR; address, netmask, MTU, MAC, link up). What
pytun lacks stays a plain ioctl: TUNSETOFFLOAD (CSUM|TSO4|TSO6, so the guest
kernel hands us 64 KiB TCP frames with partial checksums and accepts the
same from us), the default route (SIOCADDRT) and the IPv6 address
(SIOCSIFADDR on an AF_INET6 socket). A kernel that refuses the offloads
gets plain frames (still with the 10-byte vnet header), one that refuses
IFF_VNET_HDR a plain tap. Netlink (pyroute2) is avoided on purpose:
importing it costs ~170 ms, most of an instance's start-up.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from dataclasses import dataclass

import pytun

TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
SIOCADDRT = 0x890B
SIOCSIFADDR = 0x8916
RTF_UP, RTF_GATEWAY = 0x1, 0x2
# struct rtentry on LP64 (120 bytes): pad1, dst, gateway, genmask, flags, pad2, pad3, pad4, metric, dev, mtu, window, irtt
_RTENTRY = struct.Struct("L16s16s16sHh4xLPh6xPLLH6x")


class TapError(OSError):
    """The device could not be made or configured; str() says which step failed."""


@dataclass(frozen=True)
class TapConfig:
    """The guest side of the link: what `--configure` / the launcher sets on the device."""

    mtu: int
    address: str
    prefixlen: int
    gateway: str
    ipv6: bool = False
    address6: str | None = None
    mac: str | None = None


def open_tap(name: str, *, vnet: bool = True, offload: bool = True,
             config: TapConfig | None = None, persist: bool = False) -> tuple[int, bool, bool]:
    """(fd, has_vnet_header, has_offloads) for the tap device `name` (created if missing),
    configured first when `config` is given.

    The device is configured through the same pytun object that opened it:
    a tap without IFF_MULTI_QUEUE takes one fd at a time (a second TUNSETIFF
    fails with EBUSY).
    """
    flags = pytun.IFF_TAP | pytun.IFF_NO_PI
    dev = None
    if vnet:
        try:
            dev = pytun.TunTapDevice(name=name, flags=flags | pytun.IFF_VNET_HDR)
        except pytun.Error:
            vnet = False
    if dev is None:
        try:
            dev = pytun.TunTapDevice(name=name, flags=flags)
        except pytun.Error as e:
            raise _tap_error(e, f"cannot open tap device {name!r}") from None
    try:
        if config is not None:
            _configure(dev, name, config)
        if persist:
            # the device then outlives the fd and goes with its network namespace, which the kernel
            # dismantles in the background: closing the engine's fd no longer waits for the
            # unregistration's RCU barrier (~20 ms per tap, which a sandbox's stop waited for)
            dev.persist(True)
        fd = os.dup(dev.fileno())  # pytun opens without O_CLOEXEC; os.dup's copy is close-on-exec
    finally:
        dev.close()
    os.set_blocking(fd, False)
    has_offload = False
    if vnet and offload:
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
            has_offload = True
        except OSError:
            pass
    return fd, vnet, has_offload


def _configure(dev: "pytun.TunTapDevice", name: str, cfg: TapConfig) -> None:
    """Address, netmask, MTU, MAC, link up and the default route via the gateway, in this thread's netns."""
    if cfg.ipv6:
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/accept_ra", "2")
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/accept_dad", "0")
    else:
        _sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
    mask = (0xFFFFFFFF << (32 - cfg.prefixlen)) & 0xFFFFFFFF
    steps = [("MTU", lambda: setattr(dev, "mtu", cfg.mtu))]
    if cfg.mac:
        steps.append(("MAC address", lambda: setattr(dev, "hwaddr", bytes(int(x, 16) for x in cfg.mac.split(":")))))
    steps += [("address", lambda: setattr(dev, "addr", cfg.address)),
              ("netmask", lambda: setattr(dev, "netmask", socket.inet_ntoa(mask.to_bytes(4, "big")))),
              ("link up", dev.up)]
    for step, apply in steps:
        try:
            apply()
        except pytun.Error as e:
            raise _tap_error(e, f"cannot set the {step} of {name}") from None
    # default route via the gateway (struct rtentry; rt_dev NULL: the kernel finds the device from the gateway)
    rt = _RTENTRY.pack(0, _sin("0.0.0.0"), _sin(cfg.gateway), _sin("0.0.0.0"), RTF_UP | RTF_GATEWAY,
                       0, 0, 0, 0, 0, 0, 0, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCADDRT, rt)
    if cfg.ipv6 and cfg.address6:
        index = socket.if_nametoindex(name)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
            fcntl.ioctl(s6, SIOCSIFADDR, socket.inet_pton(socket.AF_INET6, cfg.address6) + struct.pack("Ii", 64, index))


def _tap_error(e: Exception | None, what: str) -> TapError:
    args = getattr(e, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        return TapError(args[0], f"{what}: {args[1]}")
    return TapError(f"{what}: {e}")


def _sin(addr: str) -> bytes:
    """struct sockaddr_in (16 bytes)."""
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(addr))


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass
