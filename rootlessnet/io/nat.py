"""io.nat: the host side of guest flows — TCP, UDP and ICMP echo on host sockets.

All host sockets are non-blocking and registered in the engine's epoll
(level-triggered); handlers run synchronously inside the engine's tasks.
Back-pressure instead of buffering: a host socket is read only while the
guest connection's send buffer has room, and the guest's data is consumed
from the TCP receive buffer only as fast as the host socket takes it (so the
window the guest sees is what the host side can take).
"""

from __future__ import annotations

import errno
import select
import socket
from typing import TYPE_CHECKING

from rootlessnet.stack.core import TcpFlow
from rootlessnet.stack.tcp.notice import Notice

if TYPE_CHECKING:
    from rootlessnet.io.engine import Engine

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR, select.EPOLLHUP
READ_CHUNK = 1 << 20
UDP_IDLE = 60.0
DNS_IDLE = 10.0
PING_IDLE = 30.0
# Notice bits as plain ints (IntFlag arithmetic per notice is measurable on the hot path)
N_READABLE, N_PEER_FIN, N_ESTABLISHED = int(Notice.READABLE), int(Notice.PEER_FIN), int(Notice.ESTABLISHED)
N_RESET_OR_TIMEOUT = int(Notice.RESET) | int(Notice.TIMED_OUT)
N_RESET, N_CLOSED = int(Notice.RESET), int(Notice.CLOSED)
N_DATA = N_READABLE | N_PEER_FIN
UNREACH_CODES = {errno.ENETUNREACH: 0, errno.EHOSTUNREACH: 1, errno.EACCES: 13, errno.EPERM: 13}


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class HostConn:
    """The host socket of one TcpFlow."""

    __slots__ = ("flow", "sock", "fd", "mask", "connecting", "host_eof", "shut_wr", "dead", "since", "close_pending")

    def __init__(self, flow: TcpFlow, sock: socket.socket, now: float):
        self.flow = flow
        self.sock = sock
        self.fd = sock.fileno()
        self.mask = 0
        self.connecting = True
        self.host_eof = False
        self.shut_wr = False
        self.dead = False
        self.since = now
        self.close_pending = False  # host EOF before the guest side is established


class TcpNat:
    CONNECT_TIMEOUT = 75.0

    def __init__(self, engine: Engine):
        self.engine = engine
        self.core = engine.core
        self.conns: dict[int, HostConn] = {}

    def open(self, flow: TcpFlow, now: float) -> None:
        host, port = flow.handle
        s = socket.socket(_family(host), socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hc = HostConn(flow, s, now)
        flow.handle = hc
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            self._connect_failed(hc, err)
            return
        self.conns[hc.fd] = hc
        self.engine.register(hc.fd, self._on_event, hc, EPOLLOUT)
        hc.mask = EPOLLOUT

    def adopt(self, flow: TcpFlow, sock: socket.socket, now: float) -> None:
        """A connected host socket for a flow the engine opened towards the guest (port forwarding)."""
        sock.setblocking(False)
        hc = HostConn(flow, sock, now)
        hc.connecting = False
        flow.handle = hc
        self.conns[hc.fd] = hc
        self.engine.register(hc.fd, self._on_event, hc)
        self._want(hc)

    def _connect_failed(self, hc: HostConn, err: int) -> None:
        flow = hc.flow
        stats = self.core.stats
        stats["tcp_connect_failed"] += 1
        if err in UNREACH_CODES:
            self.core.tcp_unreachable(flow, UNREACH_CODES[err])
        else:
            self.core.tcp_refuse(flow)  # ECONNREFUSED, timeouts: RST like a real host
        self._close(hc, rst=False)

    def _set_mask(self, hc: HostConn, mask: int) -> None:
        if mask != hc.mask and not hc.dead:
            if hc.fd in self.conns and self.engine.registered(hc.fd):
                self.engine.modify(hc.fd, mask)
            hc.mask = mask

    def _want(self, hc: HostConn) -> None:
        conn = hc.flow.conn
        mask = 0
        if not hc.host_eof and conn.send_space() > 0:
            mask |= EPOLLIN
        if conn.readable() and not hc.shut_wr:
            mask |= EPOLLOUT
        self._set_mask(hc, mask)

    def _on_event(self, hc: HostConn, ev: int, now: float) -> None:
        if hc.dead:
            return
        if hc.connecting:
            err = hc.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._connect_failed(hc, err)
                return
            if not ev & EPOLLOUT:
                return
            hc.connecting = False
            self.core.stats["tcp_connected"] += 1
            self.core.tcp_accept(hc.flow, now)
            self._want(hc)
            return
        if ev & (EPOLLIN | EPOLLHUP | EPOLLERR):
            self._pull(hc)
        if not hc.dead and ev & EPOLLOUT:
            self._push(hc)
        if not hc.dead:
            self._want(hc)

    def _pull(self, hc: HostConn) -> None:
        """Host -> guest: read only what the guest connection can buffer."""
        conn = hc.flow.conn
        if hc.host_eof:
            return
        space = conn.send_space()
        if space <= 0:
            return
        try:
            data = hc.sock.recv(min(space, READ_CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.core.stats["tcp_host_reset"] += 1
            conn.abort()
            self.core.touch(hc.flow)
            self._close(hc, rst=False)
            return
        if data:
            conn.send(data)
        else:
            hc.host_eof = True
            if conn.established:
                conn.close()
            else:  # CLOSE in SYN-SENT would delete the connection (RFC 9293 §3.10.4): FIN once established
                hc.close_pending = True
        self.core.touch(hc.flow)

    def _push(self, hc: HostConn) -> None:
        """Guest -> host: write what the host socket takes; the rest stays in the TCP buffer."""
        conn = hc.flow.conn
        sock = hc.sock
        while conn.readable():
            chunk = conn.peek(READ_CHUNK)
            try:
                n = sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.core.stats["tcp_host_write_error"] += 1
                conn.abort()
                self.core.touch(hc.flow)
                self._close(hc, rst=True)
                return
            conn.consume(n)
            self.core.touch(hc.flow)
            if n < len(chunk):
                break
        if conn.at_eof and not hc.shut_wr:
            hc.shut_wr = True
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def on_notice(self, flow: TcpFlow, now: float) -> None:
        n = flow.notice
        flow.notice = 0
        hc = flow.handle
        if not isinstance(hc, HostConn):
            return
        if n & N_RESET_OR_TIMEOUT:
            self.core.stats["tcp_guest_reset" if n & N_RESET else "tcp_timed_out"] += 1
            # Data the guest sent before its RST is delivered first (as Linux delivers queued data before
            # reporting a reset); a reset would discard it, so then the host side gets a FIN instead.
            if not hc.dead and not hc.connecting and flow.conn.readable():
                self._push(hc)
            self._close(hc, rst=not self._unsent(hc))
            self.core.free_flow(flow)
            return
        if hc.close_pending and n & N_ESTABLISHED:
            hc.close_pending = False
            flow.conn.close()
            self.core.touch(flow)
        if not hc.dead and not hc.connecting:
            if n & N_DATA:
                self._push(hc)
            if not hc.dead:
                self._want(hc)
                if hc.host_eof and hc.shut_wr and not flow.conn.readable():
                    self._close(hc, rst=False)  # both directions done: the host side is finished
        if n & N_CLOSED or flow.conn.closed:
            if not hc.dead:
                if flow.conn.readable() and not hc.shut_wr:
                    self._push(hc)
                self._close(hc, rst=flow.conn.reset_by_peer or flow.conn.timed_out)
            self.core.free_flow(flow)

    @staticmethod
    def _unsent(hc: HostConn) -> bool:
        """Bytes still queued in the host socket (TIOCOUTQ), or left in the guest's buffer."""
        if hc.dead:
            return False
        try:
            import fcntl
            import struct

            outq = struct.unpack("i", fcntl.ioctl(hc.fd, 0x5411, b"\0\0\0\0"))[0]
        except OSError:
            outq = 0
        return outq > 0 or hc.flow.conn.readable() > 0

    def _close(self, hc: HostConn, *, rst: bool) -> None:
        if hc.dead:
            return
        hc.dead = True
        if self.conns.pop(hc.fd, None) is not None:
            self.engine.unregister(hc.fd)
        if rst:
            try:
                hc.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            except OSError:
                pass
        hc.sock.close()

    def sweep(self, now: float) -> None:
        """Give up on connects that take too long (the guest has long retried by then)."""
        for hc in list(self.conns.values()):
            if hc.connecting and now - hc.since > self.CONNECT_TIMEOUT:
                self._connect_failed(hc, errno.ETIMEDOUT)

    def close_all(self) -> None:
        for hc in list(self.conns.values()):
            self._close(hc, rst=True)


class UdpFlow:
    __slots__ = ("key", "sock", "fd", "last", "header", "idle")

    def __init__(self, key, sock, header: bytes, now: float, idle: float):
        self.key, self.sock, self.fd, self.header, self.last, self.idle = key, sock, sock.fileno(), header, now, idle


class UdpNat:
    MAX_FLOWS = 4096

    def __init__(self, engine: Engine):
        self.engine = engine
        self.core = engine.core
        self.flows: dict[tuple, UdpFlow] = {}

    def send(self, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes, header: bytes, now: float) -> None:
        key = (src, sport, dst, dport)
        # replies to forwarded host clients (slirp port driver), whatever guest address they come from
        inbound = self.engine.udp_inbound.get((sport, dst, dport)) if self.engine.udp_inbound else None
        if inbound is not None:
            inbound(payload, now)
            return
        f = self.flows.get(key)
        stats = self.core.stats
        if f is None:
            dest = self.core.policy.translate(dst, dport)
            if isinstance(dest, str):
                stats[dest] += 1
                stats["udp_refused"] += 1
                self.core.icmp_unreachable(header, 13)
                return
            if len(self.flows) >= self.MAX_FLOWS:
                self._expire_oldest()
            s = socket.socket(_family(dest[0]), socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            try:
                s.connect(dest)
            except OSError as e:
                s.close()
                stats["udp_connect_failed"] += 1
                self.core.icmp_unreachable(header, UNREACH_CODES.get(e.errno, 1))
                return
            f = UdpFlow(key, s, header, now, DNS_IDLE if dport == 53 else UDP_IDLE)
            self.flows[key] = f
            self.engine.register(f.fd, self._on_event, f, EPOLLIN)
            stats["udp_flows_opened"] += 1
        f.last = now
        f.header = header
        try:
            f.sock.send(payload)
            stats["udp_out"] += 1
        except (BlockingIOError, InterruptedError):
            stats["udp_drop_host_busy"] += 1
        except ConnectionRefusedError:
            self.core.icmp_unreachable(header, 3)
        except OSError as e:
            stats["udp_send_error"] += 1
            if e.errno in UNREACH_CODES:
                self.core.icmp_unreachable(header, UNREACH_CODES[e.errno])

    def _on_event(self, f: UdpFlow, ev: int, now: float) -> None:
        src, sport, dst, dport = f.key
        for _ in range(64):
            try:
                data = f.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                self.core.stats["udp_port_unreachable"] += 1
                self.core.icmp_unreachable(f.header, 3)
                continue
            except OSError as e:
                if e.errno in UNREACH_CODES:
                    self.core.icmp_unreachable(f.header, UNREACH_CODES[e.errno])
                    continue
                return
            f.last = now
            self.core.udp_out(dst, dport, src, sport, data)
            self.core.stats["udp_in"] += 1

    def _close(self, f: UdpFlow) -> None:
        self.flows.pop(f.key, None)
        self.engine.unregister(f.fd)
        f.sock.close()

    def _expire_oldest(self) -> None:
        f = min(self.flows.values(), key=lambda x: x.last)
        self.core.stats["udp_flows_evicted"] += 1
        self._close(f)

    def sweep(self, now: float) -> None:
        for f in list(self.flows.values()):
            if now - f.last > f.idle:
                self._close(f)
                self.core.stats["udp_flows_expired"] += 1

    def close_all(self) -> None:
        for f in list(self.flows.values()):
            self._close(f)


class PingNat:
    """ICMP echo to the outside through unprivileged ICMP sockets (net.ipv4.ping_group_range)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.core = engine.core
        self.flows: dict[tuple, list] = {}  # (src, dst, ident) -> [sock, last, header]
        self.warned = False

    def send(self, src: bytes, dst: bytes, ident: int, seq: int, data: bytes, now: float) -> None:
        key = (src, dst, ident)
        f = self.flows.get(key)
        v6 = len(src) == 16
        header = self._header(src, dst, ident, seq)
        if f is None:
            dest = self.core.policy.translate(dst, 0)
            if isinstance(dest, str):
                self.core.stats[dest] += 1
                self.core.icmp_unreachable(header, 13)
                return
            try:
                s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,
                                  socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
                s.connect((dest[0], 0))
            except OSError as e:
                self.core.stats["ping_socket_denied"] += 1
                if not self.warned:
                    self.warned = True
                    self.engine.warn(f"cannot forward ping ({e.strerror}): unprivileged ICMP sockets are off; "
                                     "as root: sysctl -w net.ipv4.ping_group_range='0 2147483647'")
                self.core.icmp_unreachable(header, 13)
                return
            f = [s, now, header]
            self.flows[key] = f
            self.engine.register(s.fileno(), self._on_event, key, EPOLLIN)
        f[1] = now
        msg = bytes([128 if v6 else 8, 0, 0, 0]) + ident.to_bytes(2, "big") + seq.to_bytes(2, "big") + data
        try:
            f[0].send(msg)
            self.core.stats["ping_out"] += 1
        except OSError:
            self.core.stats["ping_send_error"] += 1
            self.core.icmp_unreachable(header, 1)

    @staticmethod
    def _header(src: bytes, dst: bytes, ident: int, seq: int) -> bytes:
        import struct

        icmp = struct.pack("!BBHHH", 128 if len(src) == 16 else 8, 0, 0, ident, seq)
        if len(src) == 4:
            return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 1, 0, src, dst) + icmp
        return struct.pack("!IHBB16s16s", 0x60000000, 8, 58, 64, src, dst) + icmp

    def _on_event(self, key: tuple, ev: int, now: float) -> None:
        f = self.flows.get(key)
        if f is None:
            return
        src, dst, ident = key
        for _ in range(64):
            try:
                msg = f[0].recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.core.icmp_unreachable(f[2], 1)
                return
            if len(msg) < 8 or msg[0] not in (0, 129):
                continue
            seq = int.from_bytes(msg[6:8], "big")
            self.core.echo_reply(dst, src, ident, seq, bytes(msg[8:]))
            self.core.stats["ping_in"] += 1

    def sweep(self, now: float) -> None:
        for key, f in list(self.flows.items()):
            if now - f[1] > PING_IDLE:
                self.engine.unregister(f[0].fileno())
                f[0].close()
                del self.flows[key]

    def close_all(self) -> None:
        for key, f in list(self.flows.items()):
            self.engine.unregister(f[0].fileno())
            f[0].close()
        self.flows.clear()
