"""port.builtin: the builtin port driver (as rootlesskit's).

The parent listens in the host network namespace. For each TCP connection
the namespace child dials the target inside the namespace (the detached one
too) and passes the connected socket back over the control channel; the
parent then moves bytes between the two kernel sockets with splice(2)
through a pipe, one pump task per direction — no bytes pass through Python.
UDP: one socket per client flow, dialed inside, idle flows closed after 60 s;
at most `udp_clients` per published port, the least recently used recycled
first, so a flood from many source ports cannot exhaust the fds.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Any

import trio

from rootlessnet.ns.control import ControlError
from rootlessnet.port.spec import PROTOS, PortError, PortSpec, PortStatus, conflicts

SPLICE_F_MOVE = getattr(os, "SPLICE_F_MOVE", 1)
SPLICE_F_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)
F_SETPIPE_SZ = 1031
CHUNK = 1 << 20
UDP_IDLE = 60.0


def bind_error(spec: PortSpec, ip: str, e: OSError) -> PortError:
    """One line that says why a host port could not be opened and what to do."""
    where = f"{'[' + ip + ']' if ':' in ip else ip}:{spec.parent_port}/{spec.base_proto}"
    if e.errno in (errno.EACCES, errno.EPERM):
        try:
            start = open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read().strip()
        except OSError:
            start = "1024"
        return PortError(f"cannot listen on {where}: permission denied (ports below net.ipv4.ip_unprivileged_port_start={start} "
                         f"need privileges: use a port >= {start}, or as root: sysctl -w net.ipv4.ip_unprivileged_port_start={spec.parent_port})")
    if e.errno == errno.EADDRINUSE:
        return PortError(f"cannot listen on {where}: address already in use (another program or instance has it)")
    if e.errno == errno.EADDRNOTAVAIL:
        return PortError(f"cannot listen on {where}: no such local address")
    return PortError(f"cannot listen on {where}: {e.strerror}")


def open_listeners(spec: PortSpec) -> list[socket.socket]:
    """Bound host sockets for a spec: `tcp`/`udp` on 0.0.0.0 (or no IP) listen on IPv4 and IPv6."""
    kind = socket.SOCK_STREAM if spec.base_proto == "tcp" else socket.SOCK_DGRAM
    ips = [spec.listen_ip]
    if spec.proto in ("tcp", "udp") and spec.parent_ip in ("", "0.0.0.0") and socket.has_ipv6:
        ips.append("::")
    socks: list[socket.socket] = []
    try:
        for ip in ips:
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            s = socket.socket(fam, kind | socket.SOCK_CLOEXEC)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind((ip, spec.parent_port))
            except OSError as e:
                if ip == "::" and len(ips) == 2 and e.errno == errno.EADDRNOTAVAIL:
                    socks.pop().close()  # no IPv6 on this host: IPv4 only
                    continue
                raise bind_error(spec, ip, e) from None
            if kind == socket.SOCK_STREAM:
                s.listen(4096)
            s.setblocking(False)
        return socks
    except BaseException:
        for s in socks:
            s.close()
        raise


def child_target(spec: PortSpec, gateway: str) -> str:
    """Where the child dials (rootlesskit's rule): childIP, else parentIP unless it is
    a wildcard or the gateway, else loopback."""
    if spec.child_ip:
        return spec.child_ip
    if spec.parent_ip and spec.parent_ip not in ("0.0.0.0", "::", gateway):
        return spec.parent_ip
    return "::1" if spec.proto.endswith("6") else "127.0.0.1"


class PipePool:
    """Empty pipes kept for reuse: a short connection would otherwise pay pipe2 and
    the 1 MiB F_SETPIPE_SZ allocation twice."""

    def __init__(self, keep: int = 64):
        self.keep = keep
        self.free: list[tuple[int, int]] = []

    def get(self) -> tuple[int, int]:
        if self.free:
            return self.free.pop()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass
        return r, w

    def put(self, pipe: tuple[int, int], empty: bool) -> None:
        if empty and len(self.free) < self.keep:
            self.free.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])

    def close(self) -> None:
        for r, w in self.free:
            os.close(r)
            os.close(w)
        self.free.clear()


PIPES = PipePool()


async def splice_pump(src: socket.socket, dst: socket.socket, pipes: PipePool = PIPES) -> None:
    """Move bytes src -> dst through a pipe until EOF; then half-close dst."""
    r, w = pipes.get()
    n = 0
    try:
        sfd, dfd = src.fileno(), dst.fileno()
        flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK
        while True:
            try:
                n = os.splice(sfd, w, CHUNK, flags=flags)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sfd)
                continue
            if n == 0:
                break
            while n:
                try:
                    n -= os.splice(r, dfd, n, flags=flags)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(dfd)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    finally:
        pipes.put((r, w), empty=n == 0)  # a pipe with bytes left in it is not reused


def _rst_close(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    except OSError:
        pass
    trio.lowlevel.notify_closing(s)
    s.close()


class _Port:
    def __init__(self, status: PortStatus, socks: list[socket.socket], scope: trio.CancelScope):
        self.status, self.socks, self.scope = status, socks, scope


class BuiltinDriver:
    name = "builtin"
    protos = PROTOS
    disallow_loopback_child_ip = False

    def __init__(self, control: Any, nursery: trio.Nursery, gateway: str = "10.0.2.2", udp_clients: int = 1024):
        self.control = control
        self.nursery = nursery
        self.gateway = gateway
        self.udp_clients = udp_clients
        self.ports: dict[int, _Port] = {}
        self._next_id = 1
        self.stats = {"connections": 0, "dial_failures": 0, "udp_flows": 0, "udp_flows_recycled": 0}

    def list(self) -> list[PortStatus]:
        return [p.status for p in sorted(self.ports.values(), key=lambda p: p.status.id)]

    async def add(self, spec: PortSpec) -> PortStatus:
        for p in self.ports.values():
            if conflicts(p.status.spec, spec):
                raise PortError(f"{spec} conflicts with ID {p.status.id} ({p.status.spec})")
        socks = open_listeners(spec)
        status = PortStatus(self._next_id, spec)
        self._next_id += 1
        scope = trio.CancelScope()
        port = _Port(status, socks, scope)
        self.ports[status.id] = port
        self.nursery.start_soon(self._run_port, port, child_target(spec, self.gateway))
        return status

    async def _run_port(self, port: _Port, target: str) -> None:
        spec = port.status.spec
        serve = self._serve_tcp if spec.base_proto == "tcp" else self._serve_udp
        with port.scope:
            async with trio.open_nursery() as nursery:
                for sock in port.socks:
                    nursery.start_soon(serve, nursery, sock, spec, target)

    async def remove(self, port_id: int) -> None:
        port = self.ports.pop(port_id, None)
        if port is None:
            raise PortError(f"unknown port ID {port_id}")
        port.scope.cancel()
        for s in port.socks:
            trio.lowlevel.notify_closing(s)
            s.close()

    async def close(self) -> None:
        for pid in list(self.ports):
            await self.remove(pid)

    # -- TCP -----------------------------------------------------------------
    async def _serve_tcp(self, nursery: trio.Nursery, lsock: socket.socket, spec: PortSpec, target: str) -> None:
        fd = lsock.fileno()
        while True:
            await trio.lowlevel.wait_readable(fd)
            for _ in range(64):
                try:
                    conn, _addr = lsock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:
                    if e.errno in (errno.EMFILE, errno.ENFILE, errno.ECONNABORTED):
                        await trio.sleep(0.01)
                        break
                    raise
                conn.setblocking(False)
                self.stats["connections"] += 1
                nursery.start_soon(self._relay, conn, target, spec.child_port)

    async def _relay(self, conn: socket.socket, target: str, port: int) -> None:
        try:
            _reply, fds = await self.control.request("dial", proto="tcp", host=target, port=port)
        except ControlError:
            self.stats["dial_failures"] += 1
            _rst_close(conn)  # the client sees a reset, as if the port were closed
            return
        if not fds:  # out of fds: the kernel dropped the passed socket (MSG_CTRUNC)
            self.stats["dial_failures"] += 1
            _rst_close(conn)
            return
        inner = socket.socket(fileno=fds[0])
        inner.setblocking(False)
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._pump, conn, inner, n.cancel_scope)
                n.start_soon(self._pump, inner, conn, n.cancel_scope)
        finally:
            for s in (conn, inner):
                trio.lowlevel.notify_closing(s)
                s.close()

    @staticmethod
    async def _pump(src: socket.socket, dst: socket.socket, scope: trio.CancelScope) -> None:
        try:
            await splice_pump(src, dst)
        except OSError:
            for s in (src, dst):  # a reset on one side resets the other
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                except OSError:
                    pass
            scope.cancel()

    # -- UDP -----------------------------------------------------------------
    async def _serve_udp(self, nursery: trio.Nursery, lsock: socket.socket, spec: PortSpec, target: str) -> None:
        flows: dict[Any, list] = {}  # client addr -> [inner socket, last activity]
        fd = lsock.fileno()
        try:
            while True:
                await trio.lowlevel.wait_readable(fd)
                for _ in range(64):
                    try:
                        data, addr = lsock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    f = flows.get(addr)
                    if f is None:
                        while len(flows) >= self.udp_clients:
                            # dicts keep insertion order, and a flow moves to the end when used
                            old_addr = next(iter(flows))
                            old = flows.pop(old_addr)
                            trio.lowlevel.notify_closing(old[0])  # its _udp_back task ends
                            old[0].close()
                            self.stats["udp_flows_recycled"] += 1
                        try:
                            _r, fds = await self.control.request("dial", proto="udp", host=target, port=spec.child_port)
                        except ControlError:
                            self.stats["dial_failures"] += 1
                            continue
                        if not fds:
                            self.stats["dial_failures"] += 1
                            continue
                        inner = socket.socket(fileno=fds[0])
                        inner.setblocking(False)
                        f = flows[addr] = [inner, trio.current_time()]
                        self.stats["udp_flows"] += 1
                        nursery.start_soon(self._udp_back, lsock, inner, addr, flows)
                    now = trio.current_time()
                    if now - f[1] > 1.0:
                        flows[addr] = flows.pop(addr)  # keep the order about least-recently-used
                    f[1] = now
                    try:
                        f[0].send(data)
                    except OSError:
                        pass
        finally:
            for f in flows.values():
                trio.lowlevel.notify_closing(f[0])
                f[0].close()

    async def _udp_back(self, lsock: socket.socket, inner: socket.socket, addr: Any, flows: dict) -> None:
        fd = inner.fileno()
        try:
            while True:
                f = flows.get(addr)
                if f is None or f[0] is not inner:
                    return  # expired or recycled (its socket is closed; the fd may be another's now)
                with trio.move_on_at(f[1] + UDP_IDLE):
                    try:
                        await trio.lowlevel.wait_readable(fd)
                    except trio.ClosedResourceError:
                        return  # recycled while we waited
                    for _ in range(64):
                        try:
                            data = inner.recv(65535)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        f[1] = trio.current_time()
                        try:
                            lsock.sendto(data, addr)
                        except OSError:
                            pass
                    continue
                if trio.current_time() >= f[1] + UDP_IDLE:
                    flows.pop(addr, None)
                    trio.lowlevel.notify_closing(inner)
                    inner.close()
                    return
        except trio.Cancelled:
            raise
