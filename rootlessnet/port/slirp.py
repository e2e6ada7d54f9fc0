"""port.slirp: the slirp port driver — the engine itself forwards host ports to the guest.

The engine listens on the host; for each TCP client it opens a connection to
the guest through tap0 (an active open in stack.core) and relays it like any
other flow. The guest sees the client's real address when it is a
non-loopback address of the right family; loopback clients appear as the
gateway (10.0.2.2 / fd00::2). UDP: datagrams from a host client go to the
guest from the same mapped address, and the guest's replies to that address
go back to the client. The child IP defaults to the guest's address; a
loopback child IP cannot be reached this way (disallowLoopbackChildIP).
"""

from __future__ import annotations

import ipaddress
import random
import select
import socket
from typing import TYPE_CHECKING, Any

from rootlessnet.port.builtin import open_listeners
from rootlessnet.port.spec import PROTOS, PortError, PortSpec, PortStatus, conflicts

if TYPE_CHECKING:
    from rootlessnet.io.engine import Engine

UDP_IDLE = 60.0


class _Port:
    def __init__(self, status: PortStatus, socks: list[socket.socket], target: bytes):
        self.status, self.socks, self.target = status, socks, target
        self.udp: dict[Any, tuple] = {}  # client addr -> (key, last), about least recently used first
        self.parked: list[socket.socket] = []  # listeners out of the epoll set until the next sweep (EMFILE)


class SlirpPortDriver:
    name = "slirp4netns"
    protos = PROTOS
    disallow_loopback_child_ip = True

    def __init__(self, engine: Engine):
        self.engine = engine
        self.core = engine.core
        self.cfg = engine.cfg
        self.ports: dict[int, _Port] = {}
        self._next_id = 1
        self._rng = random.Random()
        engine.sweepers.append(self._sweep)

    def list(self) -> list[PortStatus]:
        return [p.status for p in sorted(self.ports.values(), key=lambda p: p.status.id)]

    def _target(self, spec: PortSpec) -> bytes:
        if spec.child_ip:
            ip = ipaddress.ip_address(spec.child_ip)
            if ip.is_loopback:
                raise PortError(f"child IP {spec.child_ip} is a loopback address, which the slirp port driver cannot reach "
                                "(use the guest's address, or --port-driver=builtin)")
            if ip.version == 6 and not self.cfg.ipv6:
                raise PortError(f"child IP {spec.child_ip} is IPv6 but the engine runs without --ipv6")
            return ip.packed
        if spec.proto.endswith("6") and self.cfg.ipv6:
            return self.cfg.guest6
        return self.cfg.guest

    async def add(self, spec: PortSpec) -> PortStatus:
        for p in self.ports.values():
            if conflicts(p.status.spec, spec):
                raise PortError(f"{spec} conflicts with ID {p.status.id} ({p.status.spec})")
        target = self._target(spec)
        socks = open_listeners(spec)
        status = PortStatus(self._next_id, spec)
        self._next_id += 1
        port = _Port(status, socks, target)
        with self.engine.control():  # the datapath thread serves these listeners
            self.ports[status.id] = port
            for s in socks:
                self.engine.register(s.fileno(), self._on_tcp if spec.base_proto == "tcp" else self._on_udp,
                                     (port, s), select.EPOLLIN)
        return status

    async def remove(self, port_id: int) -> None:
        with self.engine.control():
            port = self.ports.pop(port_id, None)
            if port is None:
                raise PortError(f"unknown port ID {port_id}")
            for s in port.socks:
                self.engine.unregister(s.fileno())
                s.close()
            for key, _last in port.udp.values():
                self.engine.udp_inbound.pop(key, None)

    async def close(self) -> None:
        for pid in list(self.ports):
            await self.remove(pid)

    def _source(self, client: str, target: bytes) -> bytes:
        """The address the guest sees: the client's own when it can be, else the gateway."""
        ip = ipaddress.ip_address(client.split("%")[0])
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if len(target) == 4:
            ok = ip.version == 4 and not ip.is_loopback and not ip.is_unspecified and ip not in self.cfg.cidr
            return ip.packed if ok else self.cfg.gateway
        ok = ip.version == 6 and not ip.is_loopback and not ip.is_link_local and ip not in self.cfg.prefix6
        return ip.packed if ok else self.cfg.gateway6

    def _on_tcp(self, ctx: tuple, ev: int, now: float) -> None:
        port, lsock = ctx
        for _ in range(64):
            try:
                conn, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of fds (or a client gone already): the listener stays readable, so leave the
                # epoll set until the next sweep rather than spin; clients wait in the backlog.
                self.core.stats["forward_accept_error"] += 1
                self.engine.unregister(lsock.fileno())
                port.parked.append(lsock)
                return
            if not self.engine.socket_room():
                self.core.stats["forward_refused_no_socket"] += 1
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                conn.close()  # the client sees a reset: the engine is at its socket budget
                continue
            src = self._source(addr[0], port.target)
            sport = addr[1]
            flow = self.core.tcp_connect(src, sport, port.target, port.status.spec.child_port, now)
            for _ in range(16):
                if flow is not None:
                    break
                sport = self._rng.randrange(32768, 61000)
                flow = self.core.tcp_connect(src, sport, port.target, port.status.spec.child_port, now)
            if flow is None:
                conn.close()
                self.core.stats["forward_no_port"] += 1
                continue
            self.core.stats["forward_tcp_connections"] += 1
            self.engine.tcp.adopt(flow, conn, now)

    def _on_udp(self, ctx: tuple, ev: int, now: float) -> None:
        port, lsock = ctx
        dport = port.status.spec.child_port
        for _ in range(64):
            try:
                data, addr = lsock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            m = port.udp.get(addr)
            if m is None:
                while len(port.udp) >= self.core.limits.udp_clients:
                    _old, (okey, _t) = next(iter(port.udp.items()))
                    del port.udp[_old]  # the least recently used client mapping is recycled
                    self.engine.udp_inbound.pop(okey, None)
                    self.core.stats["forward_udp_recycled"] += 1
                src = self._source(addr[0], port.target)
                sport = addr[1]
                key = (dport, src, sport)  # (guest port, address the guest sees, port): any guest address
                for _ in range(64):
                    if key not in self.engine.udp_inbound:
                        break
                    sport = self._rng.randrange(32768, 61000)
                    key = (dport, src, sport)
                else:
                    self.core.stats["forward_no_port"] += 1
                    continue

                def reply(payload: bytes, t: float, lsock=lsock, addr=addr, port=port) -> None:
                    try:
                        lsock.sendto(payload, addr)
                    except OSError:
                        self.core.stats["forward_udp_send_error"] += 1
                    k, _ = port.udp.get(addr, (None, 0))
                    if k is not None:
                        port.udp[addr] = (k, t)

                self.engine.udp_inbound[key] = reply
                m = (key, now)
            elif now - m[1] > 1.0:
                del port.udp[addr]  # re-inserted below: the dict stays about least-recently-used first
            port.udp[addr] = (m[0], now)
            src, sport = m[0][1], m[0][2]
            self.core.udp_out(src, sport, port.target, dport, data)
            self.core.stats["forward_udp_datagrams"] += 1

    def _sweep(self, now: float) -> None:
        for port in self.ports.values():
            for lsock in port.parked:  # back into the epoll set after an accept error
                self.engine.register(lsock.fileno(), self._on_tcp, (port, lsock), select.EPOLLIN)
            port.parked.clear()
            for addr, (key, last) in list(port.udp.items()):
                if now - last > UDP_IDLE:
                    del port.udp[addr]
                    self.engine.udp_inbound.pop(key, None)
