"""The two devices under test and the bench's packet ports on them.

* ``EngineDut``: a rootlessnet instance run in this process (its own trio
  thread). The bench's packet socket sits on the namespace's tap0, made by the
  namespace child (control op ``socket``). Guest frames come from 10.0.2.50,
  an address the namespace kernel does not own, so only the engine answers.
  The application is the host socket the engine relays to: a listener on
  127.0.0.1:P (the guest's SYN to 10.0.2.2:P, allow_host_loopback), or a
  client of the port the slirp port driver publishes for 10.0.2.50:7000 (the
  engine's active open: it connects to the bench).
* ``LinuxDut``: a user+network namespace (``unshare -Urn``) whose kernel owns
  veth1 (10.0.2.2); the peer, veth0, sits in a namespace of its own where the
  bench's packet socket is made. The application's sockets are made in the
  DUT's namespace and used here like any other socket.

``PacketPort`` reads every frame the DUT sends (kernel timestamps), answers
ARP for the bench's address, and hands TCP frames to whoever registered their
(DUT port, bench port) pair.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time

from tests.conformance import wire

ETH_P_ALL = 3
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
SOL_PACKET, PACKET_STATISTICS = 263, 6
BENCH_SERVER_PORT = 7000  # the bench's listening port for the DUTs' active opens
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class DutError(Exception):
    """A DUT could not be set up; the message says why."""


class PacketPort:
    """The bench's raw socket on one DUT's link, with a demultiplexing reader thread."""

    def __init__(self, sock: socket.socket, ifname: str):
        self.sock = sock
        sock.bind((ifname, ETH_P_ALL))
        sock.setsockopt(wire.SOL_PACKET, wire.PACKET_VNET_HDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:  # the namespace is ours, so its CAP_NET_ADMIN is too: room for bursts of 64 KiB frames
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
            sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 8 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.settimeout(0.2)
        self._routes: dict[tuple[int, int], queue.Queue] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.strays = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reader, name=f"bench-{ifname}", daemon=True)
        self._thread.start()
        # announce the bench's address so a DUT that must talk first knows where (the engine learns the MAC)
        self.send(wire.arp_frame(1, wire.GUEST_IP, bytes(6), wire.GUEST_IP))

    def register(self, dut_port: int, bench_port: int) -> queue.Queue:
        q: queue.Queue = queue.Queue()
        with self._lock:
            self._routes[(dut_port, bench_port)] = q
        return q

    def unregister(self, dut_port: int, bench_port: int) -> None:
        with self._lock:
            self._routes.pop((dut_port, bench_port), None)

    def send(self, frame: bytes) -> float:
        with self._send_lock:
            self.sock.send(frame)
            return time.time()

    def _reader(self) -> None:
        anc = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(1 << 18, anc)
            except socket.timeout:
                continue
            except OSError as e:
                if not self._stop.is_set():
                    self.errors.append(f"packet socket: {e}")
                return
            if addr[2] == PACKET_OUTGOING:  # the bench's own frames, or the namespace kernel's
                continue
            t = time.time()
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    t = sec + nsec / 1e9
            try:
                item = wire.parse(data, t)
            except (struct.error, IndexError, ValueError) as e:
                self.errors.append(f"unparsable frame ({e}): {data[:64].hex()}")
                continue
            if isinstance(item, tuple):
                if item[0] == "arp" and item[1] == 1 and item[3] == wire.GUEST_IP:
                    self.send(wire.arp_frame(2, wire.GUEST_IP, wire.DUT_MAC, item[2]))
                continue
            if item is None:
                continue
            with self._lock:
                q = self._routes.get((item.sport, item.dport))
            if q is None:
                self.strays += 1
            else:
                q.put(item)

    def drops(self) -> int:
        """Frames the kernel dropped because the reader fell behind (should stay 0)."""
        try:
            _packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            return drops
        except OSError:
            return 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class EngineDut:
    """rootlessnet's engine, in an instance this process runs (its own trio thread)."""

    name = "rootlessnet"
    listen_ip = "127.0.0.1"

    def __init__(self) -> None:
        self.port: PacketPort | None = None
        self.connect_to: tuple[str, int] | None = None
        self.instance = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token = None
        self._stop_event = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> None:
        self._thread = threading.Thread(target=self._run, name="engine-dut", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise DutError(f"the rootlessnet instance did not start within {timeout:.0f} s")
        if self._error is not None:
            raise DutError(f"the rootlessnet instance failed: {_leaves(self._error)}") from self._error

    def _run(self) -> None:
        import trio

        try:
            trio.run(self._main)
        except BaseException as e:  # noqa: BLE001 - reported by start()/stop()
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        import trio

        from rootlessnet.instance import RunOptions, open_instance
        from rootlessnet.port.spec import PortError, PortSpec

        # The command only keeps the namespace alive; the engine may reach nothing but host loopback,
        # and never the machine's resolver (port 9 on loopback: nothing answers).
        opts = RunOptions(command=[sys.executable, "-c", "import time; time.sleep(1800)"], allow_host_loopback=True,
                          outbound="none", dns_upstream="127.0.0.1:9", port_driver="slirp", quiet=True)
        async with open_instance(opts) as inst:
            self.instance = inst
            _reply, fds = await inst.control.request("socket", family="packet", type="raw")
            self.port = PacketPort(socket.socket(fileno=fds[0]), opts.ifname)
            for _ in range(20):  # a free host port for the published one (another process may take it first)
                probe = socket.socket()
                probe.bind(("127.0.0.1", 0))
                hport = probe.getsockname()[1]
                probe.close()
                try:
                    await inst.ports.add(PortSpec("tcp", "127.0.0.1", hport, wire.GUEST_IP, BENCH_SERVER_PORT))
                except PortError:
                    continue
                self.connect_to = ("127.0.0.1", hport)
                break
            else:
                raise DutError("no free host port to publish")
            self._token = trio.lowlevel.current_trio_token()
            self._stop_event = trio.Event()
            self._ready.set()
            with trio.move_on_after(1800):
                await self._stop_event.wait()
            self.port.close()

    def new_socket(self) -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def statistics(self) -> dict:
        import trio

        if self.instance is None or self._token is None:
            return {}
        return trio.from_thread.run_sync(self.instance.engine.statistics, trio_token=self._token)

    def stop(self) -> None:
        import trio

        if self._token is not None and self._stop_event is not None:
            try:
                trio.from_thread.run_sync(self._stop_event.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=30)


def _leaves(e: BaseException) -> str:
    """The real errors inside (nested) exception groups, one line each."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_leaves(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


class LinuxDut:
    """The Linux kernel's TCP in a user+network namespace; the bench on a veth from a namespace of its own."""

    name = "linux"
    listen_ip = wire.DUT_IP
    connect_to = (wire.GUEST_IP, BENCH_SERVER_PORT)

    def __init__(self) -> None:
        self.port: PacketPort | None = None
        self._proc: subprocess.Popen | None = None
        self._ctl: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self, timeout: float = 30.0) -> None:
        from rootlessnet.ns.control import recv_msg

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = f"import sys; sys.path.insert(0, {ROOT!r}); from tests.conformance.linuxns import main; main()"
        try:
            self._proc = subprocess.Popen(["unshare", "-Urn", sys.executable, "-c", code, str(theirs.fileno())],
                                          pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise DutError("unshare (util-linux) is missing") from None
        finally:
            theirs.close()
        self._ctl = ours
        ours.settimeout(timeout)
        try:
            msg, _ = recv_msg(ours)
        except (socket.timeout, OSError) as e:
            raise DutError(f"the Linux DUT namespace did not come up: {e}") from None
        if msg is None:
            raise DutError(f"the Linux DUT helper exited ({self._proc.wait(timeout=10)}): is unshare -Urn allowed?")
        if msg.get("type") != "ready":
            raise DutError(msg.get("message", "Linux DUT set-up failed"))
        ours.settimeout(10)
        self.port = PacketPort(self._socket("packet", "raw"), "veth0")

    def _socket(self, family: str, kind: str) -> socket.socket:
        from rootlessnet.ns.control import recv_msg, send_msg

        assert self._ctl is not None
        with self._lock:
            send_msg(self._ctl, {"family": family, "type": kind})
            msg, fds = recv_msg(self._ctl)
        if msg is None or not msg.get("ok") or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise DutError(f"the Linux DUT could not make a {family} socket: {msg}")
        return socket.socket(fileno=fds[0])

    def new_socket(self) -> socket.socket:
        return self._socket("inet", "stream")

    def statistics(self) -> dict:
        return {}

    def stop(self) -> None:
        if self.port is not None:
            self.port.close()
        if self._ctl is not None:
            self._ctl.close()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)

