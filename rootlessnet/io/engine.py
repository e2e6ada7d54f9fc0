"""io.engine: the trio shell around stack.core — tap, epoll, timers, NAT.

Three tasks in one nursery: the tap reader (reads until EAGAIN, bounded
batches, feeds the core), the host-socket reactor (one epoll for every host
socket, level-triggered, handlers run synchronously), and the timer (sleeps
until the core's next deadline; periodic sweeps of idle flows). After each
wake-up `process()` dispatches core events, polls touched connections and
writes all queued frames with one writev each.
"""

from __future__ import annotations

import errno
import os
import random
import select
import sys
import time
from typing import Any, Callable

import trio

from rootlessnet.io.nat import PingNat, TcpNat, UdpNat
from rootlessnet.io.pcap import PcapWriter
from rootlessnet.stack.config import NetConfig
from rootlessnet.stack.core import EV_PING, EV_TCP_OPEN, EV_UDP, Core

TAP_BATCH = 64
READ_SIZE = 65536 + 14 + 10 + 64
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


class Engine:
    def __init__(self, cfg: NetConfig, tap_fd: int, *, vnet: bool, offload: bool, pcap: str | None = None,
                 warn: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.tap_fd = tap_fd
        self.vnet = vnet
        rng = random.SystemRandom()
        self.core = Core(cfg, vnet=vnet, offload=offload, rand32=lambda: rng.getrandbits(32), **_make_helpers(cfg))
        self.fd_limit = raise_fd_limit()
        self.ep = select.epoll()
        self._handlers: dict[int, tuple[Callable, Any]] = {}
        self.tcp = TcpNat(self)
        self.udp = UdpNat(self)
        self.ping = PingNat(self)
        self.pcap = PcapWriter(pcap) if pcap else None
        self._timer_scope: trio.CancelScope | None = None
        self._next_sweep = 0.0
        self._ndp_at: float | None = 0.0 if cfg.ipv6 else None
        self._warn = warn or (lambda text: print(f"rootlessnet: warning: {text}", file=sys.stderr, flush=True))
        self.started = trio.Event()
        self.udp_inbound: dict[tuple, Callable[[bytes, float], None]] = {}
        self.sweepers: list[Callable[[float], None]] = []

    # -- epoll registry (used by io.nat) ------------------------------------------
    def register(self, fd: int, handler: Callable, ctx: Any) -> None:
        self._handlers[fd] = (handler, ctx)
        self.ep.register(fd, 0)

    def registered(self, fd: int) -> bool:
        return fd in self._handlers

    def modify(self, fd: int, mask: int) -> None:
        self.ep.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass

    def warn(self, text: str) -> None:
        self._warn(text)

    # -- the loop ---------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._tap_loop)
                nursery.start_soon(self._epoll_loop)
                nursery.start_soon(self._timer_loop)
                self.started.set()
                task_status.started()
        finally:
            self.tcp.close_all()
            self.udp.close_all()
            self.ping.close_all()
            self.ep.close()
            os.close(self.tap_fd)
            if self.pcap:
                self.pcap.close()

    async def _tap_loop(self) -> None:
        fd = self.tap_fd
        core = self.core
        vnet = self.vnet
        pcap = self.pcap
        read = os.read
        while True:
            await trio.lowlevel.wait_readable(fd)
            now = trio.current_time()
            for _ in range(TAP_BATCH):
                try:
                    buf = read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno.EBADFD:  # the namespace (and its tap) is gone
                        return
                    raise
                if vnet:
                    if len(buf) < 10:
                        core.stats["drop_runt"] += 1
                        continue
                    flags = buf[0]
                    frame = memoryview(buf)[10:]
                else:
                    flags = 0
                    frame = buf
                if pcap:
                    pcap.write(time.time(), [frame])
                core.receive(frame, flags, now)
            self.process(now)
            await trio.lowlevel.checkpoint_if_cancelled()

    async def _epoll_loop(self) -> None:
        ep = self.ep
        handlers = self._handlers
        while True:
            await trio.lowlevel.wait_readable(ep.fileno())
            now = trio.current_time()
            for fd, ev in ep.poll(0, 1024):
                h = handlers.get(fd)
                if h is not None:
                    h[0](h[1], ev, now)
            self.process(now)

    async def _timer_loop(self) -> None:
        while True:
            with trio.CancelScope() as scope:
                self._timer_scope = scope
                self._arm_timer()
                await trio.sleep_forever()
            now = trio.current_time()
            self.core.run_timers(now)
            self._ndp_at = self.core.ndp_poll(now)
            if now >= self._next_sweep:
                self._next_sweep = now + SWEEP_INTERVAL
                self.tcp.sweep(now)
                self.udp.sweep(now)
                self.ping.sweep(now)
                for sweep in self.sweepers:
                    sweep(now)
            self.process(now)

    def _arm_timer(self) -> None:
        scope = self._timer_scope
        if scope is None:
            return
        d = self.core.next_deadline()
        d = self._next_sweep if d is None else min(d, self._next_sweep)
        if self._ndp_at is not None:
            d = min(d, self._ndp_at)
        if d < scope.deadline:
            scope.deadline = d

    def process(self, now: float) -> None:
        """Dispatch core events and notices until quiet (bounded), then write frames."""
        core = self.core
        for _ in range(16):
            events = core.events
            if events:
                core.events = []
                for ev in events:
                    kind = ev[0]
                    if kind is EV_TCP_OPEN:
                        self.tcp.open(ev[1], now)
                    elif kind is EV_UDP:
                        self.udp.send(ev[1], ev[2], ev[3], ev[4], ev[5], ev[6], now)
                    elif kind is EV_PING:
                        self.ping.send(ev[1], ev[2], ev[3], ev[4], ev[5], now)
            noticed = core.flush(now)
            for flow in noticed:
                self.tcp.on_notice(flow, now)
            if not core.events and not core._touched:
                break
        frames = core.take_frames()
        if frames:
            self._write(frames)
        self._arm_timer()

    def _write(self, frames: list[list]) -> None:
        fd = self.tap_fd
        pcap = self.pcap
        off = 10 if self.vnet else 0
        for parts in frames:
            try:
                os.writev(fd, parts)
            except BlockingIOError:
                self.core.stats["tap_write_dropped"] += 1
            except OSError as e:
                if e.errno in (errno.EBADFD, errno.EIO):
                    self.core.stats["tap_write_dropped"] += 1
                    continue
                raise
            if pcap:
                pcap.write(time.time(), [parts[0][off:], *parts[1:]])

    def statistics(self) -> dict[str, Any]:
        s = self.core.statistics()
        s["udp_flows"] = len(self.udp.flows)
        s["ping_flows"] = len(self.ping.flows)
        s["tcp_host_sockets"] = len(self.tcp.conns)
        return s
