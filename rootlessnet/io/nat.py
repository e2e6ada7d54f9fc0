"""io.nat: the host side of guest flows — TCP, UDP and ICMP echo on host sockets.

All host sockets are non-blocking and registered in the engine's epoll
(level-triggered); handlers run synchronously inside the engine's tasks.
Back-pressure instead of buffering: a host socket is read only while the
guest connection's send buffer has room, and the guest's data is consumed
from the TCP receive buffer only as fast as the host socket takes it (so the
window the guest sees is what the host side can take).

Every host socket counts against the engine's socket budget (below the fd
limit, with headroom for the API, port listeners and pcap). A new flow that
cannot get a socket — over the budget, or the kernel says EMFILE/ENFILE/
ENOBUFS/ENOMEM — is refused towards the guest (RST for TCP, ICMP
unreachable for UDP and ping) and counted; the engine keeps serving.
"""

from __future__ import annotations

import _socket
import errno
import select
import socket
from typing import TYPE_CHECKING

from rootlessnet.stack.core import TcpFlow
from rootlessnet.stack.tcp.notice import Notice

if TYPE_CHECKING:
    from rootlessnet.io.engine import Port  # the NAT tables of one port talk to the engine through it

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR, select.EPOLLHUP
# 64 KiB per host recv: a bigger request makes CPython's allocation an mmap + mremap + munmap per
# call (above glibc's mmap threshold), and one GSO frame to the guest carries at most ~64 KiB anyway
RECV_CHUNK = 65536
READ_CHUNK = 1 << 20  # guest data handed to one host send()
UDP_IDLE = 60.0
DNS_IDLE = 10.0
PING_IDLE = 30.0
# Notice bits as plain ints (IntFlag arithmetic per notice is measurable on the hot path)
N_READABLE, N_PEER_FIN, N_ESTABLISHED = int(Notice.READABLE), int(Notice.PEER_FIN), int(Notice.ESTABLISHED)
N_RESET_OR_TIMEOUT = int(Notice.RESET) | int(Notice.TIMED_OUT)
N_RESET, N_CLOSED = int(Notice.RESET), int(Notice.CLOSED)
N_DATA = N_READABLE | N_PEER_FIN
UNREACH_CODES = {errno.ENETUNREACH: 0, errno.EHOSTUNREACH: 1, errno.EACCES: 13, errno.EPERM: 13}
# the kernel is out of descriptors or memory for a new socket: refuse this flow, keep serving
NO_SOCKET_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RESET_DRAIN_TIMEOUT = 30.0  # data before a guest RST: how long the host app may take to read it


def new_socket(family: int, kind: int, proto: int = 0, cfg=None) -> _socket.socket | None:
    """A non-blocking close-on-exec socket, or None when the process is out of fds or memory.

    The C type itself (`_socket.socket`): socket.socket adds a Python-level
    __init__ and close() per host flow and nothing the datapath uses.

    With `cfg` (a NetConfig) naming an outbound address for the family, the
    socket is bound to it first, as slirp4netns --outbound-addr[6] does."""
    try:
        s = _socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
    except OSError as e:
        if e.errno in NO_SOCKET_ERRNOS:
            return None
        raise
    addr = cfg and (cfg.outbound_addr6 if family == socket.AF_INET6 else cfg.outbound_addr)
    if addr:
        try:
            s.bind((addr, 0))
        except OSError:
            s.close()  # the address went away: refuse the flow as when out of sockets
            return None
    return s


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class HostConn:
    """The host socket of one TcpFlow."""

    __slots__ = ("flow", "sock", "fd", "mask", "connecting", "host_eof", "shut_wr", "dead", "since", "close_pending",
                 "parked", "drain_since", "drain_rst")

    def __init__(self, flow: TcpFlow, sock: _socket.socket, now: float):
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
        self.parked = False  # out of the epoll set: it reported HUP/ERR and we want nothing from it
        self.drain_since: float | None = None  # the guest side is gone: its last data still goes to the host app
        self.drain_rst = False  # ... then close with RST (the guest reset) or gracefully


class TcpNat:
    CONNECT_TIMEOUT = 75.0

    def __init__(self, engine: Port):
        self.engine = engine
        self.core = engine.core
        self.conns: dict[int, HostConn] = {}
        self.connecting = 0  # host connects in progress
        self.draining: list[HostConn] = []  # reset by the guest, last data still on its way to the host app

    def open(self, flow: TcpFlow, now: float) -> None:
        host, port = flow.handle
        stats = self.core.stats
        if self.connecting >= self.core.limits.tcp_connecting:
            stats["tcp_refused_connecting"] += 1  # a SYN flood to a host that does not answer
            self.core.tcp_refuse(flow)
            return
        if not self.engine.socket_room():
            stats["tcp_refused_no_socket"] += 1
            self.core.tcp_refuse(flow)
            return
        s = new_socket(_family(host), socket.SOCK_STREAM, cfg=self.core.cfg)
        if s is None:
            stats["tcp_refused_no_socket"] += 1
            self.core.tcp_refuse(flow)
            return
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hc = HostConn(flow, s, now)
        flow.handle = hc
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            self._connect_failed(hc, err)
            return
        connected = err == 0
        if not connected:
            # On loopback the handshake is usually over by the time connect() returns: one
            # getpeername() tells, and saves the guest a wake-up of the datapath before its SYN-ACK.
            try:
                s.getpeername()
                connected = True
            except OSError:
                pass
        self.conns[hc.fd] = hc
        if connected:
            hc.connecting = False
            stats["tcp_connected"] += 1
            self.core.tcp_accept(flow, now)
            hc.mask = self._mask(hc)
            self.engine.register(hc.fd, self._on_event, hc, hc.mask)  # once, with what it waits for
            return
        self.connecting += 1
        self.engine.register(hc.fd, self._on_event, hc, EPOLLOUT)
        hc.mask = EPOLLOUT

    def adopt(self, flow: TcpFlow, sock: _socket.socket, now: float) -> None:
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
        if hc.connecting and hc.fd in self.conns:
            self.connecting -= 1
            hc.connecting = False
        stats["tcp_connect_failed"] += 1
        if err in UNREACH_CODES:
            self.core.tcp_unreachable(flow, UNREACH_CODES[err])
        else:
            self.core.tcp_refuse(flow)  # ECONNREFUSED, timeouts: RST like a real host
        self._close(hc, rst=False)

    def _set_mask(self, hc: HostConn, mask: int) -> None:
        if hc.dead:
            return
        if hc.parked:
            if mask:  # wanted again: back into the epoll set
                hc.parked = False
                self.engine.register(hc.fd, self._on_event, hc, mask)
                hc.mask = mask
            return
        if mask != hc.mask:
            if hc.fd in self.conns and self.engine.registered(hc.fd):
                self.engine.modify(hc.fd, mask)
            hc.mask = mask

    def _park(self, hc: HostConn) -> None:
        """epoll reports HUP/ERR whatever the mask: out of the set until something is wanted of it
        (else a level-triggered HUP with nothing to do spins the reactor)."""
        if not hc.parked and not hc.dead:
            hc.parked = True
            self.engine.unregister(hc.fd)
            hc.mask = 0
            self.core.stats["tcp_host_parked"] += 1

    def _mask(self, hc: HostConn) -> int:
        """What to wait for on the host socket: room in the guest's direction, data for the host."""
        conn = hc.flow.conn
        mask = 0
        if not hc.host_eof and conn.send_space() > 0:
            mask |= EPOLLIN
        if conn.readable() and not hc.shut_wr:
            mask |= EPOLLOUT
        return mask

    def _want(self, hc: HostConn) -> None:
        self._set_mask(hc, self._mask(hc))

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
            self.connecting -= 1
            self.core.stats["tcp_connected"] += 1
            self.core.tcp_accept(hc.flow, now)
            self._want(hc)
            return
        if hc.drain_since is not None:
            self._drain(hc)
            return
        if ev & EPOLLERR and hc.host_eof:
            # An error after the host's FIN (it reset after closing): nothing left to read, so
            # take the error now and reset the guest side, as the host's RST says.
            err = hc.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._host_reset(hc)
                return
        if ev & (EPOLLIN | EPOLLHUP | EPOLLERR):
            self._pull(hc)
        if not hc.dead and ev & EPOLLOUT:
            self._push(hc)
        if not hc.dead:
            mask = self._mask(hc)
            if ev & (EPOLLHUP | EPOLLERR) and not mask & (EPOLLIN | EPOLLOUT):
                self._park(hc)  # straight out of the set: no mask change first
            else:
                self._set_mask(hc, mask)

    def _host_reset(self, hc: HostConn) -> None:
        self.core.stats["tcp_host_reset"] += 1
        hc.flow.conn.abort()
        self.core.touch(hc.flow)
        self._close(hc, rst=False)

    def _pull(self, hc: HostConn) -> None:
        """Host -> guest: read only what the guest connection can buffer."""
        conn = hc.flow.conn
        if hc.host_eof:
            return
        space = conn.send_space()
        if space <= 0:
            return
        try:
            data = hc.sock.recv(min(space, RECV_CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._host_reset(hc)
            return
        if data:
            conn.send(data, more=len(data) == RECV_CHUNK)
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
            if conn.wants_poll:  # a window update to send: else nothing changed for the core
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
            self.core.free_flow(flow)
            if hc.dead:
                return
            if hc.connecting:
                self._close(hc, rst=True)
                return
            # Data the guest sent before its RST reaches the host app first, then the reset: as
            # Linux's recv() returns queued data before ECONNRESET.
            self._start_drain(hc, now, rst=True)
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
            self.core.free_flow(flow)
            if not hc.dead:
                self._start_drain(hc, now, rst=flow.conn.reset_by_peer or flow.conn.timed_out)

    def _start_drain(self, hc: HostConn, now: float, *, rst: bool) -> None:
        hc.drain_since = now
        hc.drain_rst = rst
        self._drain(hc)
        if not hc.dead:
            self.draining.append(hc)

    def _drain(self, hc: HostConn) -> None:
        """The guest side is gone: push its last data to the host app, then close.

        A graceful close keeps what the host socket holds (the kernel sends it, then FIN); an
        RST close would discard it, so that one waits until the app has read everything.
        Bounded by RESET_DRAIN_TIMEOUT (sweep).
        """
        conn = hc.flow.conn
        if conn.readable() and not hc.shut_wr:
            self._push(hc)
            if hc.dead:
                return
        if not conn.readable():
            if not hc.drain_rst:
                self._close(hc, rst=False)
                return
            if _outq(hc.fd) == 0:
                self._close(hc, rst=True)
                return
        # wait: for room in the host socket (EPOLLOUT), or for the app to read (checked by sweep)
        self._set_mask(hc, EPOLLOUT if conn.readable() else 0)

    def forget(self, flow: TcpFlow) -> None:
        """After an internal error on this flow: close its host socket with RST, free it."""
        hc = flow.handle
        if isinstance(hc, HostConn):
            self._close(hc, rst=True)
        self.core.free_flow(flow)
        flow.conn.release()

    def _close(self, hc: HostConn, *, rst: bool) -> None:
        if hc.dead:
            return
        hc.dead = True
        if hc.connecting:
            self.connecting -= 1
            hc.connecting = False
        if hc.drain_since is not None:
            hc.flow.conn.release()  # the core forgot this flow already: its buffers go with the socket
        if self.conns.pop(hc.fd, None) is not None:
            self.engine.unregister(hc.fd)
        if rst:
            try:
                hc.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            except OSError:
                pass
        hc.sock.close()

    def sweep(self, now: float) -> None:
        """Give up on connects that take too long (the guest has long retried by then); finish
        resets whose last data the host app has read (or that waited too long)."""
        for hc in list(self.conns.values()):
            if hc.connecting and now - hc.since > self.CONNECT_TIMEOUT:
                self._connect_failed(hc, errno.ETIMEDOUT)
        if self.draining:
            left = []
            for hc in self.draining:
                if hc.dead:
                    continue
                since = hc.drain_since
                if since is not None and now - since > RESET_DRAIN_TIMEOUT:
                    self.core.stats["tcp_drain_timeout"] += 1
                    self._close(hc, rst=True)
                    continue
                self._drain(hc)
                if not hc.dead:
                    left.append(hc)
            self.draining = left

    def close_all(self) -> None:
        for hc in list(self.conns.values()):
            self._close(hc, rst=True)


class UdpFlow:
    __slots__ = ("key", "sock", "fd", "last", "header", "idle")

    def __init__(self, key, sock, header: bytes, now: float, idle: float):
        self.key, self.sock, self.fd, self.header, self.last, self.idle = key, sock, sock.fileno(), header, now, idle


class UdpNat:
    def __init__(self, engine: Port):
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
            if self.flows and (len(self.flows) >= self.core.limits.udp_flows or not self.engine.socket_room()):
                self._expire_oldest()  # UDP flows are cheap to make again: the least recently used goes
            s = new_socket(_family(dest[0]), socket.SOCK_DGRAM, cfg=self.core.cfg) if self.engine.socket_room() else None
            if s is None:
                stats["udp_refused_no_socket"] += 1
                self.core.icmp_unreachable(header, 1)
                return
            try:
                s.connect(dest)
            except OSError as e:
                s.close()
                stats["udp_connect_failed"] += 1
                self.core.icmp_unreachable(header, UNREACH_CODES.get(e.errno or 0, 1))
                return
            f = UdpFlow(key, s, header, now, DNS_IDLE if dport == 53 else UDP_IDLE)
            self.flows[key] = f
            self.engine.register(f.fd, self._on_event, f, EPOLLIN)
            stats["udp_flows_opened"] += 1
        elif now - f.last > 1.0:
            self.flows[key] = self.flows.pop(key)  # keep the dict in about least-recently-used order
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
        """The first flow in the dict: used least recently, to within a second (see send)."""
        f = self.flows[next(iter(self.flows))]
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

    def __init__(self, engine: Port):
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
            if len(self.flows) >= self.core.limits.ping_flows or not self.engine.socket_room():
                self.core.stats["ping_refused_limit"] += 1
                self.core.icmp_unreachable(header, 1)
                return
            s = None
            try:
                s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,
                                  socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
                s.connect((dest[0], 0))
            except OSError as e:
                if s is not None:
                    s.close()
                if e.errno in NO_SOCKET_ERRNOS:
                    self.core.stats["ping_refused_no_socket"] += 1
                    self.core.icmp_unreachable(header, 1)
                    return
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


def _outq(fd: int) -> int:
    """Bytes the host socket still holds unacknowledged (TIOCOUTQ)."""
    import fcntl
    import struct

    try:
        return struct.unpack("i", fcntl.ioctl(fd, 0x5411, b"\0\0\0\0"))[0]
    except OSError:
        return 0
