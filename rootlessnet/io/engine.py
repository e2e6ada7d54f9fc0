"""io.engine: the shell around stack.core — taps, host sockets, timers, NAT, links.

The datapath runs on one reactor (io.reactor): the tap fds and every host
socket in one epoll, its timeout the earliest deadline of the cores, the
impaired links, NDP and the idle sweep. A tap handler reads frames (a batch
while they are big, one when it is small: the epoll tells of the next, so
the interactive path raises no EAGAIN) and feeds the port's core; host
socket handlers are io.nat's. After each wake-up `process()` dispatches core
events, polls touched connections and writes all queued frames with one
writev each. Trio runs only the control plane; `run()` owns the reactor's
thread.

A port is one tap and the guest behind it. The main port is the instance's
namespace; `add_host` adds more (multi-host networks for the test harness):
frames between guests are switched by destination IP without touching the
TCP/IP stack, subject to each side's link impairments and to partitions.
"""

from __future__ import annotations

import errno
import os
import random
import sys
import time
from contextlib import AbstractContextManager
from typing import Any, Callable

import trio

from rootlessnet.io.nat import PingNat, TcpNat, UdpNat
from rootlessnet.io.pcap import PcapWriter
from rootlessnet.io.reactor import EPOLLIN, Reactor
from rootlessnet.stack.config import NetConfig
from rootlessnet.stack.core import Core, PingRequest, TcpOpen, UdpDatagram
from rootlessnet.stack.links import Impairments

TAP_BATCH = 64
READ_SIZE = 65536 + 14 + 10 + 64
SMALL_FRAME = 2048  # after a frame this small, stop reading: the epoll reports the next one
SWEEP_INTERVAL = 1.0


def _make_helpers(cfg: NetConfig) -> dict[str, Any]:
    """DHCP server, NDP responder and static resolver, when their modules exist."""
    out: dict[str, Any] = {}
    try:
        from rootlessnet.stack.dhcp import DhcpServer

        lo, hi = cfg.dhcp_pool
        out["dhcp"] = DhcpServer(server_ip=cfg.gateway, netmask=cfg.netmask, router=cfg.gateway, dns=[cfg.dns],
                                 pool_start=lo, pool_end=hi, mtu=cfg.mtu)
    except ImportError:
        pass
    if cfg.ipv6:
        from rootlessnet.stack.ndp import NdpResponder

        out["ndp"] = NdpResponder(router_mac=cfg.gateway_mac, router_ip=cfg.gateway6, link_local=cfg.link_local6,
                                  prefix=cfg.prefix6.network_address.packed, prefix_len=cfg.prefix6.prefixlen,
                                  dns=cfg.dns6, virtual_addrs={cfg.gateway6, cfg.dns6}, mtu=cfg.mtu)
    if cfg.dns_hosts is not None:
        from rootlessnet.stack.dns import StaticResolver

        out["resolver"] = StaticResolver(cfg.dns_hosts)
    return out


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit: every flow holds a host socket."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def socket_budget(limits, fd_limit: int) -> int:
    """How many host sockets all flows may hold together.

    `--limit host_sockets=N` when given; else the fd limit minus the fds open
    now and `fd_reserve` (for the API, port listeners, splice pipes, pcap), but
    at least a quarter of the limit, so a tiny `ulimit -n` still leaves flows.
    """
    if limits.host_sockets:
        return limits.host_sockets
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 32
    return max(fd_limit // 4, fd_limit - open_now - limits.fd_reserve)


class Port:
    """One tap device, the guest behind it, its core, NAT tables and link impairments."""

    def __init__(self, engine: "Engine", name: str, cfg: NetConfig, tap_fd: int, *, vnet: bool, offload: bool):
        self.engine = engine
        self.name = name
        self.cfg = cfg
        self.tap_fd = tap_fd
        self.vnet = vnet
        # ISNs: a generator seeded from the kernel's entropy once (a getrandom() per SYN was a
        # syscall per connection); the guest's tap has no third party that could guess them.
        rng = random.Random(int.from_bytes(os.urandom(32), "big"))
        self.core = Core(cfg, vnet=vnet, offload=offload, rand32=lambda: rng.getrandbits(32), **_make_helpers(cfg))
        self.core.on_internal_error = engine.report_internal_error
        self.tcp = TcpNat(self)
        self.udp = UdpNat(self)
        self.ping = PingNat(self)
        self.udp_inbound: dict[tuple, Callable[[bytes, float], None]] = {}
        self.switched: list[list] = []  # frames from other guests (not the core's: partitions treat them apart)
        self._ndp_at: float | None = 0.0 if cfg.ipv6 else None

    # the NAT tables talk to their "engine" through these
    def register(self, fd: int, handler: Callable, ctx: Any, mask: int = 0) -> None:
        self.engine.register(fd, handler, ctx, mask)

    def registered(self, fd: int) -> bool:
        return self.engine.registered(fd)

    def modify(self, fd: int, mask: int) -> None:
        self.engine.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        self.engine.unregister(fd)

    def warn(self, text: str) -> None:
        self.engine.warn(text)

    def socket_room(self) -> bool:
        return self.engine.socket_room()

    @property
    def addresses(self) -> list[bytes]:
        return [self.cfg.guest] + ([self.cfg.guest6] if self.cfg.ipv6 else [])

    def link_statistics(self) -> dict[str, int]:
        return dict(self.engine.links.link_statistics(self.name))

    def close(self) -> None:
        self.tcp.close_all()
        self.udp.close_all()
        self.ping.close_all()
        os.close(self.tap_fd)


def _corrupt_any(item: tuple, rng: random.Random) -> tuple:
    """stack.links' corrupt_fn, as netem's: one bit flipped, here past the Ethernet header. Items are
    ("in", buf, vflags, off) from a guest and ("out", parts, off) to one (off: the virtio header's size).
    NEEDS_CSUM is cleared, so the receiver verifies the checksum and drops the frame, as a NIC would."""
    if item[0] == "in":
        _, buf, _vflags, off = item
        b = bytearray(buf)
    else:
        _, parts, off = item
        b = bytearray(b"".join(bytes(p) for p in parts))
    if len(b) > off + 14:
        b[rng.randrange(off + 14, len(b))] ^= 1 << rng.randrange(8)
        if off:
            b[0] &= 0xFE  # VIRTIO_NET_HDR_F_NEEDS_CSUM
    return ("in", bytes(b), 0, off) if item[0] == "in" else ("out", [bytes(b)], off)


def _dst_ip(buf, off: int) -> bytes | None:
    """Destination IP of an Ethernet frame at `off` (IPv4/IPv6), for switching."""
    et = buf[off + 12 : off + 14]
    if et == b"\x08\x00" and len(buf) >= off + 34:
        return bytes(buf[off + 30 : off + 34])
    if et == b"\x86\xdd" and len(buf) >= off + 54:
        return bytes(buf[off + 38 : off + 54])
    return None


class Engine:
    def __init__(self, cfg: NetConfig, tap_fd: int, *, vnet: bool, offload: bool, pcap: str | None = None,
                 warn: Callable[[str], None] | None = None, hold: bool = False):
        self.cfg = cfg
        self.fd_limit = raise_fd_limit()
        self.socket_budget = socket_budget(cfg.limits, self.fd_limit)
        self.reactor = Reactor(self._after, self._handler_failed)
        self.hold = hold  # the datapath starts at go() (the launcher confines itself first)
        self.main = Port(self, "main", cfg, tap_fd, vnet=vnet, offload=offload)
        self.ports: list[Port] = [self.main]
        self.by_ip: dict[bytes, Port] = {a: self.main for a in self.main.addresses}
        self.by_name: dict[str, Port] = {"main": self.main}
        self.links = Impairments(_corrupt_any)  # stack.links: impairments per link, pair, direction; holds; cuts
        self.pcap = PcapWriter(pcap) if pcap else None
        self._next_sweep = 0.0
        self._warn = warn or (lambda text: print(f"rootlessnet: warning: {text}", file=sys.stderr, flush=True))
        self.started = trio.Event()
        self.sweepers: list[Callable[[float], None]] = []
        self._internal_reported = False
        self.reactor.register(tap_fd, self._on_tap, self.main, EPOLLIN)

    @property
    def host_wakeups(self) -> int:
        """Wake-ups of the datapath (a spin shows here)."""
        return self.reactor.wakeups

    def control(self) -> AbstractContextManager:
        """Hold the datapath still to change it from another thread (the API, set-up)."""
        return self.reactor.control()

    # the main port's parts, for the single-tap case and the slirp port driver
    @property
    def core(self) -> Core:
        return self.main.core

    @property
    def tcp(self) -> TcpNat:
        return self.main.tcp

    @property
    def udp(self) -> UdpNat:
        return self.main.udp

    @property
    def ping(self) -> PingNat:
        return self.main.ping

    @property
    def udp_inbound(self) -> dict:
        return self.main.udp_inbound

    # -- hosts (multi-host networks) ----------------------------------------------
    def add_host(self, name: str, cfg: NetConfig, tap_fd: int, *, vnet: bool, offload: bool) -> Port:
        with self.control():
            port = Port(self, name, cfg, tap_fd, vnet=vnet, offload=offload)
            self.ports.append(port)
            self.by_name[name] = port
            for a in port.addresses:
                self.by_ip[a] = port
            for p in self.ports:  # every guest answers NDP for the others' addresses
                if p.core.ndp is not None:
                    p.core.ndp.virtual_addrs.update(a for q in self.ports if q is not p for a in q.addresses
                                                    if len(a) == 16)
            self.reactor.register(tap_fd, self._on_tap, port, EPOLLIN)
        return port

    # -- the fd registry (used by io.nat and the slirp port driver) ------------------
    def register(self, fd: int, handler: Callable, ctx: Any, mask: int = 0) -> None:
        self.reactor.register(fd, handler, ctx, mask)

    def registered(self, fd: int) -> bool:
        return self.reactor.registered(fd)

    def modify(self, fd: int, mask: int) -> None:
        self.reactor.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        self.reactor.unregister(fd)

    def warn(self, text: str) -> None:
        self._warn(text)

    def host_sockets(self) -> int:
        """Host sockets held by every flow of every port."""
        return sum(len(p.tcp.conns) + len(p.udp.flows) + len(p.ping.flows) for p in self.ports)

    def socket_room(self) -> bool:
        """May one more flow get a host socket (the budget, below the fd limit)?"""
        return self.host_sockets() < self.socket_budget

    def report_internal_error(self, text: str) -> None:
        """A bug in the engine (counted as internal_errors by the core): log the first one, keep serving.

        ROOTLESSNET_INTERNAL_ERROR_LOG names a file that every report is appended to as well
        (the test suite sets it, and fails any test during which it grew).
        """
        path = os.environ.get("ROOTLESSNET_INTERNAL_ERROR_LOG")
        if path:
            try:
                with open(path, "a") as f:
                    f.write(f"pid {os.getpid()}: {text}\n")
            except OSError:
                pass
        if not self._internal_reported:
            self._internal_reported = True
            print("rootlessnet: internal error in the network engine (a bug: please report it; "
                  "the engine keeps running):\n" + text.rstrip(), file=sys.stderr, flush=True)

    def _internal(self, port: "Port", exc: BaseException) -> None:
        port.core.internal_error(exc)

    # -- the loop ---------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the datapath until cancelled; then close every port, the pcap and the epoll."""

        def started() -> None:
            self.started.set()
            task_status.started()

        try:
            await self.reactor.run(hold=self.hold, started=started)
        finally:
            with self.reactor.lock:
                for port in self.ports:
                    port.close()
                self.reactor.close()
                if self.pcap:
                    self.pcap.close()

    def go(self) -> None:
        """Start the datapath (with hold=True, after the caller has finished its set-up)."""
        self.reactor.go()

    def _handler_failed(self, exc: BaseException, fd: int) -> None:
        self._internal(self.main, exc)

    def _on_tap(self, port: Port, ev: int, now: float) -> None:
        """Frames from a port's guest: a batch while they are big, one when it is small."""
        fd = port.tap_fd
        read = os.read
        pcap = self.pcap
        vnet = port.vnet
        for _ in range(TAP_BATCH):
            try:
                buf = read(fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in (errno.EBADFD, errno.EIO):  # the namespace (and its tap) is gone
                    self.reactor.unregister(fd)
                    return
                raise
            if pcap:
                pcap.write(time.time(), [memoryview(buf)[10 if vnet else 0:]])
            self._ingress(port, buf, buf[0] if vnet and buf else 0, now)
            if len(buf) < SMALL_FRAME:
                break

    def _after(self, now: float) -> float | None:
        """After each wake-up: due timers, then process(); returns the next deadline."""
        for port in self.ports:
            core = port.core
            d = core.next_deadline()
            if d is not None and d <= now:
                core.run_timers(now)
            if port._ndp_at is not None and port._ndp_at <= now:
                port._ndp_at = core.ndp_poll(now)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            for port in self.ports:
                port.tcp.sweep(now)
                port.udp.sweep(now)
                port.ping.sweep(now)
            for sweep in self.sweepers:
                sweep(now)
        self.process(now)
        d = self._next_sweep
        if not self.links.quiet:
            t = self.links.next_at()
            if t is not None and t < d:
                d = t
        for port in self.ports:
            t = port.core.next_deadline()
            if t is not None and t < d:
                d = t
            t = port._ndp_at
            if t is not None and t < d:
                d = t
        return d

    def _ingress(self, port: Port, buf: bytes, vflags: int, now: float) -> None:
        """A frame from `port`'s guest, after its link: switch it, or hand it to the core."""
        off = 10 if port.vnet else 0
        other = None
        if len(self.ports) > 1:
            dst = _dst_ip(buf, off)
            other = self.by_ip.get(dst) if dst is not None else None
            if other is port:
                other = None
        if not self.links.quiet:  # stack.links: partitions, holds and impairments on this frame's path
            to = "host" if other is None else other.name
            if not self.links.allowed(port.name, to):
                port.core.stats["drop_partitioned"] += 1
                return
            if self.links.send(port.name, to, ("in", buf, vflags, off), len(buf) - off, now) is None:
                return
        self._deliver(port, other, buf, vflags, now)

    def _deliver(self, port: Port, other: "Port | None", buf: bytes, vflags: int, now: float) -> None:
        """A frame from `port`'s guest at the end of its path: switched to `other`, or to the core."""
        if other is not None:
            self._switch(port, other, buf, now)
            return
        if port.vnet:
            if len(buf) < 10:
                port.core.stats["drop_runt"] += 1
                return
            port.core.receive(memoryview(buf)[10:], vflags, now)
        else:
            port.core.receive(buf, 0, now)

    def _switch(self, src: Port, dst: Port, buf: bytes, now: float) -> None:
        """Guest to guest: rewrite the MACs and send it out of the other port (no TCP/IP stack).
        Partitions were applied on the way (stack.links)."""
        soff = 10 if src.vnet else 0
        if dst.vnet:
            vh = bytes(buf[:10]) if src.vnet else bytes(10)
        else:
            vh = b""
            if src.vnet and buf[0] & 1:  # the source left the checksum to the device: finish it here
                buf = _finish_checksum(buf)
        frame = bytes(buf[soff + 12 :])  # from the ethertype on
        mac = dst.core.guest_mac
        item = [vh + (mac or b"\xff" * 6) + dst.cfg.gateway_mac + frame]
        src.core.stats["switched_out"] += 1
        if mac is None:
            dst.core._out(item)  # waits for the guest's MAC (ARP request sent)
        else:
            dst.switched.append(item)

    def _links_out(self, port: Port, frames: list[list], now: float) -> list[list]:
        """The core's frames to `port`'s guest, through stack.links (they come from "host")."""
        links = self.links
        if not links.allowed("host", port.name):
            port.core.stats["drop_partitioned"] += len(frames)
            return []
        off = 10 if port.vnet else 0
        return [parts for parts in frames
                if links.send("host", port.name, ("out", parts, off), sum(len(p) for p in parts) - off, now) is not None]

    def _links_due(self, now: float) -> None:
        """Frames at the end of an impaired or held path: switched, to a core, or to a guest."""
        by_name = self.by_name
        for src, dst, item in self.links.due(now):
            if src == "host":
                p = by_name.get(dst)
                if p is not None:
                    p.switched.append(item[1])
            elif src in by_name and (dst == "host" or dst in by_name):
                self._deliver(by_name[src], by_name.get(dst), item[1], item[2], now)

    def process(self, now: float) -> None:
        """Dispatch core events and notices until quiet (bounded), then write frames."""
        if not self.links.quiet:
            self._links_due(now)
        for port in self.ports:
            core = port.core
            for _ in range(16):
                events = core.events
                if events:
                    core.events = []
                    for ev in events:
                        kind = type(ev)
                        try:
                            if kind is TcpOpen:
                                port.tcp.open(ev.flow, now)
                            elif kind is UdpDatagram:
                                port.udp.send(ev.src, ev.sport, ev.dst, ev.dport, ev.payload, ev.header, now)
                            elif kind is PingRequest:
                                port.ping.send(ev.src, ev.dst, ev.ident, ev.seq, ev.data, now)
                        except Exception as e:  # noqa: BLE001 - a bug: report it, drop this event
                            self._internal(port, e)
                noticed = core.flush(now)
                for flow in noticed:
                    try:
                        port.tcp.on_notice(flow, now)
                    except Exception as e:  # noqa: BLE001 - a bug: report it, lose this flow only
                        self._internal(port, e)
                        port.tcp.forget(flow)
                if not core.events and not core._touched:
                    break
            frames = core.take_frames()
            if frames and not self.links.quiet:
                frames = self._links_out(port, frames, now)
            if port.switched:
                frames += port.switched
                port.switched = []
            if frames:
                self._write(port, frames)

    def _write(self, port: Port, frames: list[list]) -> None:
        fd = port.tap_fd
        pcap = self.pcap
        off = 10 if port.vnet else 0
        stats = port.core.stats
        for parts in frames:
            try:
                os.writev(fd, parts)
            except BlockingIOError:
                stats["tap_write_dropped"] += 1
            except OSError as e:
                if e.errno in (errno.EBADFD, errno.EIO, errno.EINVAL):
                    stats["tap_write_dropped"] += 1
                    continue
                raise
            if pcap:
                pcap.write(time.time(), [parts[0][off:], *parts[1:]])

    def statistics(self) -> dict[str, Any]:
        with self.reactor.lock:
            return self._statistics()

    def _statistics(self) -> dict[str, Any]:
        s = self.main.core.statistics()
        s["udp_flows"] = len(self.main.udp.flows)
        s["ping_flows"] = len(self.main.ping.flows)
        s["tcp_host_sockets"] = len(self.main.tcp.conns)
        s["host_sockets"] = self.host_sockets()
        s["host_wakeups"] = self.host_wakeups
        s["host_socket_budget"] = self.socket_budget
        s["link"] = self.main.link_statistics()
        if len(self.ports) > 1:
            s["hosts"] = {p.name: {**p.core.statistics(), "link": p.link_statistics()} for p in self.ports[1:]}
        return s


def _finish_checksum(buf: bytes) -> bytes:
    """Complete a NEEDS_CSUM frame (virtio header first) for a device without offloads."""
    from rootlessnet.wire.checksum import ones_sum

    b = bytearray(buf)
    start = int.from_bytes(b[6:8], "little") + 10
    off = int.from_bytes(b[8:10], "little")
    csum_at = start + off
    # the field holds the pseudo-header sum; summing from csum_start includes it
    b[csum_at : csum_at + 2] = (0xFFFF - ones_sum(b[start:])).to_bytes(2, "big") if ones_sum(b[start:]) != 0xFFFF else b"\xff\xff"
    b[0] = 0
    return bytes(b)
