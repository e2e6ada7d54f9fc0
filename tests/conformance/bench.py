"""One scenario run against one DUT: the bench's TCP endpoint, the application, the observation log.

A scenario is a function of a ``Run``. It plays the guest with ``Peer``
(frames in, frames out, its own sequence bookkeeping) and the application
with ``App`` (real sockets: accept, connect, read, write, shutdown, close,
close with SO_LINGER 0), and writes what it saw with ``Run.note``. Frames are
written down through partial matchers (``Peer.describe``): flags without PSH
(advisory, RFC 9293 §3.9.1), sequence and acknowledgment numbers relative to
the ISNs, payload length, window zero or not, options present (SYNs), timing
in coarse bins (``tbin``). The runner compares the two DUTs' logs.
"""

from __future__ import annotations

import errno
import queue
import select
import socket
import struct
import threading
import time

from tests.conformance import wire
from tests.conformance.wire import ACK, CWR, ECE, FIN, RST, SYN, URG, Options

MASK = 0xFFFFFFFF
# Coarse timing bins, edges set well apart from the values that matter: an immediate answer (~1 ms),
# Linux's 40 ms delayed ACK, the 200 ms minimum RTO and its doublings, the 1 s initial RTO, the 3 s fallback.
BINS = ((0.025, "<25ms"), (0.15, "25-150ms"), (0.3, "0.15-0.3s"), (0.6, "0.3-0.6s"), (1.2, "0.6-1.2s"),
        (2.4, "1.2-2.4s"), (3.6, "2.4-3.6s"), (6.0, "3.6-6s"), (12.0, "6-12s"))


def tbin(dt: float) -> str:
    for edge, name in BINS:
        if dt < edge:
            return name
    return ">12s"


def sdiff(a: int, b: int) -> int:
    """a - b in 32-bit sequence space, signed."""
    d = (a - b) & MASK
    return d - (1 << 32) if d >= 1 << 31 else d


class RunTimeout(Exception):
    """The scenario ran past its time budget."""


class Run:
    """One scenario on one DUT."""

    def __init__(self, dut, name: str, dut_port: int, bench_port: int, pre_sock: socket.socket | None = None,
                 budget: float = 60.0):
        self.dut = dut
        self.name = name
        self.dport = dut_port
        self.bport = bench_port
        self._pre = pre_sock
        self.deadline = time.time() + budget
        self.log: list[tuple[str, str]] = []
        self._apps: list[App] = []
        self._peers: list[Peer] = []
        self.engine = dut.name == "rootlessnet"

    # -- the log ------------------------------------------------------------
    def note(self, label: str, value) -> None:
        self.log.append((label, str(value)))

    def left(self, timeout: float) -> float:
        rest = self.deadline - time.time()
        if rest <= 0:
            raise RunTimeout(f"{self.name}: over its time budget")
        return min(timeout, rest)

    def sleep(self, seconds: float) -> None:
        time.sleep(self.left(seconds))

    # -- the application ----------------------------------------------------
    def _socket(self, bind: bool = True) -> socket.socket:
        if self._pre is not None and bind:
            s, self._pre = self._pre, None  # the engine's: bound to 127.0.0.1:P before the run started
            return s
        s = self.dut.new_socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if bind:
            s.bind((self.dut.listen_ip, self.dport))
        return s

    def listen(self, backlog: int = 16, **opts) -> App:
        """The application's listening socket on port P (the guest connects to 10.0.2.2:P)."""
        app = App(self, self._socket())
        app.setopts(**opts)
        app.sock.listen(backlog)
        return app

    def connect(self, **opts) -> App:
        """The application connects from port P; the DUT opens towards the bench (10.0.2.50:7000).

        Linux: connect() to 10.0.2.50:7000. The engine: connect() to the port the slirp
        driver publishes, which makes the engine open 10.0.2.2:P -> 10.0.2.50:7000."""
        app = App(self, self._socket())
        app.setopts(**opts)
        app.connect(self.dut.connect_to)
        return app

    # -- the bench ----------------------------------------------------------
    def peer(self, **kw) -> Peer:
        """The bench as a client: it opens from 10.0.2.50:B to 10.0.2.2:P."""
        return Peer(self, self.bport, **kw)

    def server_peer(self, **kw) -> Peer:
        """The bench as the server the DUT opens to (10.0.2.50:7000); register before the app connects."""
        from tests.conformance.dut import BENCH_SERVER_PORT

        return Peer(self, BENCH_SERVER_PORT, **kw)

    def finish(self) -> None:
        for app in self._apps:
            app.abort(quiet=True)
        for p in self._peers:
            self.dut.port.unregister(p.rport, p.lport)
        if self._pre is not None:
            self._pre.close()


class Peer:
    """The bench's end of one TCP connection: builds segments, reads the DUT's, keeps the numbers."""

    def __init__(self, run: Run, bench_port: int, *, mss: int | None = 1460, ws: int | None = 7,
                 sackok: bool = False, ts: bool = False, win: int = 65535, iss: int = 0x10000000):
        self.run = run
        self.port = run.dut.port
        self.lport = bench_port
        self.rport = run.dport
        self.q = self.port.register(self.rport, self.lport)
        run._peers.append(self)
        self.iss = iss & MASK
        self.snd_nxt = self.iss
        self.irs: int | None = None  # the DUT's ISN
        self.rcv_nxt = 0
        self.offer = Options(mss=mss, ws=ws, sackok=sackok, ts=(1, 0) if ts else None)
        self.win = win  # the raw window field the bench advertises
        self.dut_opts: Options | None = None
        self.dut_ws = 0  # the DUT's shift, once both sides offered window scaling
        self.ts_on = False
        self.ts_recent = 0
        self.t_sent = 0.0
        self.edge: int | None = None  # the right edge of the DUT's receive window (absolute)
        self._back: list[wire.Frame] = []

    # -- numbers --------------------------------------------------------------
    def rseq(self, seq: int) -> int:
        return sdiff(seq, self.irs) if self.irs is not None else seq

    def rack(self, ack: int) -> int:
        return sdiff(ack, self.iss)

    # -- sending --------------------------------------------------------------
    def send(self, flags: int = ACK, data: bytes = b"", *, seq: int | None = None, ack: int | None = None,
             win: int | None = None, opts: Options | None = None, gso: int = 0, bad_checksum: bool = False,
             urgent: int = 0) -> float:
        """One segment. SEQ defaults to SND.NXT (then advanced), ACK to RCV.NXT."""
        advance = seq is None
        if seq is None:
            seq = self.snd_nxt
        if ack is None:
            ack = self.rcv_nxt if flags & ACK else 0
        if opts is None:
            opts = Options(ts=(self._tsval(), self.ts_recent)) if self.ts_on and not flags & RST else Options()
        frame = wire.tcp_frame(self.lport, self.rport, seq, ack, flags, self.win if win is None else win,
                               opts=opts.encode(), payload=data, gso_size=gso, bad_checksum=bad_checksum,
                               urgent=urgent)
        self.t_sent = self.port.send(frame)
        if advance:
            self.snd_nxt = (seq + len(data) + bool(flags & SYN) + bool(flags & FIN)) & MASK
        return self.t_sent

    def _tsval(self) -> int:
        return int(time.monotonic() * 1000) & MASK

    def syn(self, flags: int = SYN, **kw) -> float:
        o = Options(mss=self.offer.mss, ws=self.offer.ws, sackok=self.offer.sackok,
                    ts=(self._tsval(), 0) if self.offer.ts else None)
        return self.send(flags, opts=o, **kw)

    def ack(self, **kw) -> float:
        return self.send(ACK, **kw)

    def push(self, data: bytes, **kw) -> float:
        return self.send(ACK | wire.PSH, data, **kw)

    def fin(self, data: bytes = b"", **kw) -> float:
        return self.send(FIN | ACK, data, **kw)

    def rst(self, *, seq: int | None = None, ack: bool = False) -> float:
        return self.send(RST | (ACK if ack else 0), seq=self.snd_nxt if seq is None else seq)

    def send_stream(self, data: bytes, *, seg: int = 1460, gso: int = 0, push_last: bool = True) -> None:
        """``data`` from SND.NXT on, in segments of ``seg`` bytes (GSO super-frames when ``gso``)."""
        step = seg if not gso else 65000
        for i in range(0, len(data), step):
            part = data[i : i + step]
            last = i + step >= len(data)
            self.send(ACK | (wire.PSH if last and push_last else 0), part, gso=gso if len(part) > gso else 0)

    # -- receiving ------------------------------------------------------------
    def recv(self, timeout: float = 1.0, *, accept: bool = True) -> wire.Frame | None:
        """The DUT's next segment on this connection, or None after ``timeout``.

        Learns the DUT's ISN and options from its SYN; with ``accept`` an
        in-order segment advances RCV.NXT (the bench takes it)."""
        if self._back:
            f = self._back.pop(0)
        else:
            try:
                f = self.q.get(timeout=max(0.0, self.run.left(timeout)))
            except queue.Empty:
                self.run.left(0.001)  # raises when the budget is gone
                return None
        if f.flags & SYN:
            if self.irs != f.seq:
                self.irs = f.seq
                self.rcv_nxt = (f.seq + 1) & MASK
            self.dut_opts = f.opts
            self.dut_ws = f.opts.ws if (f.opts.ws is not None and self.offer.ws is not None) else 0
            self.ts_on = f.opts.ts is not None and self.offer.ts is not None
        if self.ts_on and f.opts.ts is not None:
            self.ts_recent = f.opts.ts[0]
        if f.flags & ACK and not f.flags & (SYN | RST):
            self.edge = (f.ack + (f.win << self.dut_ws)) & MASK
        elif f.flags & ACK and f.flags & SYN:
            self.edge = (f.ack + f.win) & MASK  # never scaled in a SYN (RFC 7323 §2.2)
        if accept and self.irs is not None and not f.flags & (SYN | RST) and f.seq == self.rcv_nxt:
            self.rcv_nxt = (self.rcv_nxt + len(f.payload) + bool(f.flags & FIN)) & MASK
        return f

    def unread(self, f: wire.Frame) -> None:
        self._back.insert(0, f)

    def describe(self, f: wire.Frame | None, *, opts: bool = False, win: bool = True, length: bool = True,
                 since: float | None = None) -> str:
        if f is None:
            return "none"
        flags = "".join(c for bit, c in ((SYN, "S"), (FIN, "F"), (RST, "R"), (ACK, "A"), (URG, "U"), (ECE, "E"),
                                         (CWR, "C")) if f.flags & bit)
        parts = [flags]
        if self.irs is None:
            parts.append("seq=0" if f.seq == 0 else "seq=?")
        else:
            parts.append(f"seq={self.rseq(f.seq)}")
        if f.flags & ACK:
            parts.append(f"ack={self.rack(f.ack)}")
        if length and f.payload:
            parts.append(f"len={len(f.payload)}")
        if win and not f.flags & RST:
            parts.append("win=0" if f.win == 0 else "win>0")
        if opts:
            o = f.opts
            names = ([f"MSS={o.mss}"] if o.mss is not None else []) + (["SACKOK"] if o.sackok else []) + (
                ["TS"] if o.ts is not None else []) + (["WS"] if o.ws is not None else [])
            parts.append("opts=" + (",".join(names) or "-"))
        if since is not None:
            parts.append("@" + tbin(f.t - since))
        return " ".join(parts)

    def expect(self, label: str, timeout: float = 1.0, *, accept: bool = True, **show) -> wire.Frame | None:
        """The next segment (or none), written down under ``label``."""
        f = self.recv(timeout, accept=accept)
        self.run.note(label, self.describe(f, **show))
        return f

    def frames(self, within: float, *, accept: bool = True, limit: int = 200) -> list[wire.Frame]:
        """Every segment that arrives within ``within`` seconds from now."""
        end = time.time() + within
        out = []
        while len(out) < limit:
            f = self.recv(max(0.0, end - time.time()), accept=accept)
            if f is None:
                break
            out.append(f)
        return out

    def quiet(self, label: str, within: float = 0.5, **show) -> list[wire.Frame]:
        """Writes down every segment that arrives within ``within`` s ("none" when quiet)."""
        fs = self.frames(within)
        self.run.note(label, "; ".join(self.describe(f, **show) for f in fs) or "none")
        return fs

    def expect_data(self, label: str, n: int, timeout: float = 2.0, *, ack: bool = True) -> bytes:
        """Receive ``n`` bytes in order (however the DUT cuts them), ACKing each segment; writes
        down how many arrived. A FIN after them is left for the next ``recv``."""
        got = b""
        end = time.time() + timeout
        while len(got) < n:
            f = self.recv(max(0.0, end - time.time()), accept=False)
            if f is None:
                break
            if f.payload and f.seq == self.rcv_nxt:
                got += f.payload
                self.rcv_nxt = (self.rcv_nxt + len(f.payload) + bool(f.flags & FIN)) & MASK
            elif f.flags & FIN and f.seq == self.rcv_nxt:
                self.rcv_nxt = (self.rcv_nxt + 1) & MASK
                self.unread(f)
                break
            if ack and (f.payload or f.flags & FIN):
                self.ack()
        self.run.note(label, f"{len(got)} bytes")
        return got

    def open(self, label: str = "SYN-ACK", *, opts: bool = True, timeout: float = 2.0) -> wire.Frame | None:
        """Three-way handshake as the client: SYN, the DUT's SYN-ACK (written down), ACK."""
        self.syn()
        f = self.expect(label, timeout, opts=opts)
        if f is not None and f.flags & SYN:
            self.ack()
        return f

    def answer(self, label: str = "SYN", *, opts: bool = True, timeout: float = 3.0) -> wire.Frame | None:
        """Three-way handshake as the server: the DUT's SYN (written down), SYN-ACK, its ACK (written down)."""
        f = self.expect(label, timeout, opts=opts)
        if f is None or not f.flags & SYN:
            return None
        o = Options(mss=self.offer.mss, ws=self.offer.ws if f.opts.ws is not None else None,
                    sackok=self.offer.sackok and f.opts.sackok,
                    ts=(self._tsval(), f.opts.ts[0]) if self.offer.ts and f.opts.ts else None)
        if o.ws is None:
            self.dut_ws = 0
        self.send(SYN | ACK, opts=o)
        self.expect(f"{label}: handshake ACK", 1.0)
        return f


def _errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, type(e).__name__)


class App:
    """The application's socket on the DUT side (non-blocking; every wait is bounded)."""

    def __init__(self, run: Run, sock: socket.socket):
        self.run = run
        self.sock = sock
        sock.setblocking(False)
        run._apps.append(self)
        self._writer: threading.Thread | None = None
        self.write_error: str | None = None
        self.written = 0
        self._bg = bytearray()
        self._reader: threading.Thread | None = None

    def setopts(self, *, nodelay: bool = True, rcvbuf: int | None = None, sndbuf: int | None = None,
                keepalive: tuple[int, int, int] | None = None) -> None:
        """TCP_NODELAY by default: the engine never delays small segments (no Nagle), so the
        comparison sets it on the Linux side too; the Nagle scenario turns it off."""
        s = self.sock
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if keepalive is not None:
            idle, intvl, cnt = keepalive
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)

    def _wait(self, mask: int, timeout: float) -> int:
        p = select.poll()
        p.register(self.sock, mask)
        ev = p.poll(self.run.left(timeout) * 1000)
        return ev[0][1] if ev else 0

    def accept(self, timeout: float = 1.0, label: str | None = "accept") -> App | None:
        conn = None
        if self._wait(select.POLLIN, timeout):
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                conn = None
        if label:
            self.run.note(label, "ok" if conn is not None else "none")
        if conn is None:
            return None
        app = App(self.run, conn)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY,
                        self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return app

    def connect(self, addr: tuple[str, int]) -> None:
        err = self.sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            self.run.note("connect", errno.errorcode.get(err, str(err)))

    def connected(self, timeout: float = 3.0, label: str = "connect") -> str:
        ev = self._wait(select.POLLOUT, timeout)
        if not ev:
            res = "pending"
        else:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            res = "ok" if err == 0 else errno.errorcode.get(err, str(err))
        self.run.note(label, res)
        return res

    def read(self, n: int = 1 << 20, timeout: float = 0.5, label: str | None = "read") -> bytes | str:
        """One read: the bytes, or "EOF", an errno name, or "nothing" when nothing came in time."""
        res: bytes | str
        if not self._wait(select.POLLIN, timeout):
            res = "nothing"
        else:
            try:
                res = self.sock.recv(n) or "EOF"
            except BlockingIOError:
                res = "nothing"
            except OSError as e:
                res = _errname(e)
        if label:
            self.run.note(label, f"{len(res)} bytes" if isinstance(res, bytes) else res)
        return res

    def read_exact(self, n: int, timeout: float = 2.0, label: str | None = "read") -> bytes:
        """Read until ``n`` bytes; writes down the count and what ended it early (EOF, an error, time)."""
        got = b""
        end = time.time() + timeout
        how = ""
        while len(got) < n:
            r = self.read(n - len(got), max(0.0, end - time.time()), label=None)
            if isinstance(r, str):
                how = f" then {r}"
                break
            got += r
        if label:
            self.run.note(label, f"{len(got)} bytes{how}")
        return got

    def write(self, data: bytes, timeout: float = 10.0) -> None:
        """Write everything in the background (a writer thread: the DUT may not take it at once)."""

        def work() -> None:
            view = memoryview(data)
            end = time.time() + timeout
            try:
                while view:
                    if time.time() > end:
                        self.write_error = "timeout"
                        return
                    try:
                        k = self.sock.send(view)
                    except BlockingIOError:
                        self._wait(select.POLLOUT, 0.1)
                        continue
                    self.written += k
                    view = view[k:]
            except OSError as e:
                self.write_error = _errname(e)
            except RunTimeout:
                self.write_error = "timeout"

        self.join()
        self._writer = threading.Thread(target=work, daemon=True)
        self._writer.start()

    def read_background(self, limit: int = 64 << 20, timeout: float = 10.0) -> None:
        """Keep reading in a thread (an application that keeps up), until EOF, an error or ``timeout``."""
        self._bg = bytearray()

        def work() -> None:
            end = time.time() + timeout
            try:
                while len(self._bg) < limit and time.time() < end:
                    r = self.read(1 << 20, 0.1, label=None)
                    if isinstance(r, bytes):
                        self._bg += r
                    elif r != "nothing":
                        return
            except RunTimeout:
                return

        self._reader = threading.Thread(target=work, daemon=True)
        self._reader.start()

    def background_data(self) -> bytes:
        """What the background reader has read so far."""
        return bytes(self._bg)

    def send_now(self, data: bytes) -> None:
        """A small write that must go in at once (fits the socket buffer)."""
        k = self.sock.send(data)
        self.written += k
        assert k == len(data), "send_now: the socket did not take the whole write"

    def join(self, timeout: float = 10.0) -> None:
        if self._writer is not None:
            self._writer.join(self.run.left(timeout))
            self._writer = None

    def shutdown_wr(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()

    def abort(self, quiet: bool = False) -> None:
        """close() with SO_LINGER {on, 0}: RST instead of FIN."""
        if self.sock.fileno() < 0:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            if not quiet:
                raise
        self.sock.close()
