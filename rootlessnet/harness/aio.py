"""The async flavour, for asyncio and trio alike (anyio): `open_sandbox(...)` and `open_network(...)`.

    async with open_sandbox(hosts={"db.test": "10.0.2.2"}) as sb:
        cp = await sb.run(["getent", "hosts", "db.test"], capture_output=True, text=True, check=True)
        proc = await sb.popen(["sleep", "1"], stdout=subprocess.PIPE)   # an AsyncProcess

`run()` takes subprocess.run's arguments (input=, capture_output=, text=,
timeout=, check=, stdin/stdout/stderr, env, cwd, ...) and returns a
`subprocess.CompletedProcess`; cancelling it kills the command. `popen()`
returns an `AsyncProcess` (anyio's Process interface: `wait()`, `kill()`,
`terminate()`, `send_signal()`, `returncode`, `pid`, and `stdin`/`stdout`/
`stderr` as anyio byte streams). Commands start through the instance's exec
helper as in the sync API; API calls (ports, statistics, impairments,
partitions) run in a worker thread. Stopping is shielded from cancellation.
"""

from __future__ import annotations

import locale
import os
import signal
import socket
import subprocess
from contextlib import asynccontextmanager, nullcontext
from functools import partial
from typing import Any, AsyncIterator, Iterable, Sequence

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from rootlessnet.harness import _proc
from rootlessnet.harness.errors import CommandFailed, HarnessError
from rootlessnet.harness.network import Host, Link, Network, Pair
from rootlessnet.harness.sandbox import Sandbox, _ArgvBuilder, _sweep

_POLL = 0.002
_wait_readable = getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable  # type: ignore[attr-defined]
_wait_writable = getattr(anyio, "wait_writable", None) or anyio.wait_socket_writable  # type: ignore[attr-defined]


class _FdReceiveStream(ByteReceiveStream):
    """The read end of a pipe, non-blocking, as an anyio byte stream."""

    def __init__(self, fd: int):
        os.set_blocking(fd, False)
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._fd < 0:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await _wait_readable(self)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _FdSendStream(ByteSendStream):
    def __init__(self, fd: int):
        os.set_blocking(fd, False)
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            if self._fd < 0:
                raise anyio.ClosedResourceError
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                await _wait_writable(self)
                continue
            except BrokenPipeError:
                raise anyio.BrokenResourceError from None
            view = view[n:]

    async def aclose(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class AsyncProcess:
    """A command inside a sandbox (anyio's Process interface)."""

    def __init__(self, args: Any, pid: int, pidfd: int, conn: socket.socket, stdin: Any, stdout: Any, stderr: Any):
        self.args = args
        self.pid = pid
        self._pidfd = pidfd
        self._conn = conn
        self.stdin: ByteSendStream | None = stdin
        self.stdout: ByteReceiveStream | None = stdout
        self.stderr: ByteReceiveStream | None = stderr
        self.returncode: int | None = None

    async def wait(self) -> int:
        while self.returncode is None:
            conn = self._conn
            await _wait_readable(conn)
            try:
                data = conn.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            status = _proc.status_message(data) if data else None
            if status is None:  # the helper went away: the sandbox stopped, which kills its commands
                for _ in range(2000):
                    if _proc.pidfd_dead(self._pidfd):
                        break
                    await anyio.sleep(0.005)
                self.returncode = -signal.SIGKILL
            else:
                self.returncode = _proc.decode_status(status)
            self._release()
        return self.returncode

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self._pidfd >= 0:
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        for s in (self.stdin, self.stdout, self.stderr):
            if s is not None:
                await s.aclose()
        with anyio.CancelScope(shield=True):
            await self.wait()

    async def __aenter__(self) -> "AsyncProcess":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if getattr(self, "_pidfd", -1) >= 0:
            self._release()

    def __repr__(self) -> str:
        return f"<AsyncProcess {self.pid} {self.args!r} returncode={self.returncode}>"


def _child_fd(spec: Any, fd_no: int, mine: list[int]) -> tuple[int, int | None]:
    """(fd to give the command, our end of a new pipe or None) for a stdin/stdout/stderr argument."""
    if spec is None:
        return fd_no if _proc.valid_fd(fd_no) else _devnull(mine), None
    if spec == subprocess.DEVNULL:
        return _devnull(mine), None
    if spec == subprocess.PIPE:
        r, w = os.pipe()
        theirs, ours = (r, w) if fd_no == 0 else (w, r)
        mine.append(theirs)
        return theirs, ours
    if isinstance(spec, int) and spec >= 0:
        return spec, None
    if hasattr(spec, "fileno"):
        return spec.fileno(), None
    raise ValueError(f"unsupported value for the command's fd {fd_no}: {spec!r}")


def _devnull(mine: list[int]) -> int:
    fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    mine.append(fd)
    return fd


class _AsyncRunner(_ArgvBuilder):

    async def popen(self, args: Any, *, stdin: Any = None, stdout: Any = None, stderr: Any = None, shell: bool = False,
                    executable: Any = None, env: Any = None, cwd: Any = None, pass_fds: Sequence[int] = (),
                    start_new_session: bool = False, process_group: int | None = None, umask: int = -1,
                    restore_signals: bool = True, **unsupported: Any) -> AsyncProcess:
        """Start a command inside; still running at stop, it is killed. Bytes only (as anyio's)."""
        if unsupported:
            raise TypeError(f"popen(): {', '.join(sorted(unsupported))} not supported here "
                            "(streams are bytes; preexec_fn/user/group cannot cross into the sandbox)")
        target = self._target()
        if not target.available():
            raise HarnessError(f"{_proc.no_exec_helper_reason(target)}: this sandbox cannot run commands from "
                               "the async API (e.g. with --pidns); use the sync API")
        argv = ["/bin/sh", "-c", *_proc_args(args)] if shell else _proc_args(args)
        if shell and executable is not None:
            argv[0] = executable
        mine: list[int] = []  # fds the command gets: closed here once it has them
        ours: list[int | None] = [None, None, None]  # our ends of its pipes (stdin, stdout, stderr)
        fds: dict[int, int] = {}
        try:
            for n, spec in enumerate((stdin, stdout, stderr)):
                if n == 2 and stderr == subprocess.STDOUT:
                    fds[2] = fds[1]
                else:
                    fds[n], ours[n] = _child_fd(spec, n, mine)
            for fd in pass_fds:
                fds[int(fd)] = int(fd)
            data, send = _proc.request(target, argv, env=env, cwd=cwd, fds=fds, umask=umask, setsid=start_new_session,
                                       pgroup=-1 if process_group is None else process_group,
                                       restore_signals=restore_signals,
                                       executable=None if shell else executable)
            conn = _proc.connect(target)
            try:
                conn.setblocking(False)
                socket.send_fds(conn, [data], send)
                with anyio.fail_after(_proc.SPAWN_TIMEOUT):
                    while True:
                        try:
                            reply, got, _f, _a = socket.recv_fds(conn, 65536, 4, socket.MSG_CMSG_CLOEXEC)
                            break
                        except BlockingIOError:
                            await _wait_readable(conn)
                pid, pidfd = _proc.parse_reply(reply, list(got))
            except BaseException:
                conn.close()
                raise
        except BaseException:
            for fd in ours:
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in mine:
                os.close(fd)
        o0, o1, o2 = ours
        p = AsyncProcess(argv, pid, pidfd, conn,
                         _FdSendStream(o0) if o0 is not None else None,
                         _FdReceiveStream(o1) if o1 is not None else None,
                         _FdReceiveStream(o2) if o2 is not None else None)
        self._track(p)
        return p

    async def run(self, args: Any, *, input: Any = None, capture_output: bool = False, check: bool = False,
                  timeout: float | None = None, text: bool | None = None, encoding: str | None = None,
                  errors: str | None = None, universal_newlines: bool | None = None, stdin: Any = None,
                  stdout: Any = None, stderr: Any = None, **options: Any) -> subprocess.CompletedProcess:
        """As subprocess.run, awaited; cancellation (and timeout=) kill the command."""
        as_text = bool(text or universal_newlines or encoding or errors)
        if capture_output:
            if stdout is not None or stderr is not None:
                raise ValueError("stdout and stderr arguments may not be used with capture_output.")
            stdout = stderr = subprocess.PIPE
        if input is not None:
            if stdin is not None:
                raise ValueError("stdin and input arguments may not both be used.")
            stdin = subprocess.PIPE
            if isinstance(input, str):
                input = input.encode(encoding or locale.getpreferredencoding(False), errors or "strict")
        proc = await self.popen(args, stdin=stdin, stdout=stdout, stderr=stderr, **options)
        chunks: dict[str, list[bytes]] = {"out": [], "err": []}

        async def feed() -> None:
            assert proc.stdin is not None
            try:
                if input:
                    await proc.stdin.send(input)
            except anyio.BrokenResourceError:
                pass
            finally:
                await proc.stdin.aclose()

        async def drain(stream: ByteReceiveStream, into: list[bytes]) -> None:
            try:
                async for chunk in stream:
                    into.append(chunk)
            finally:
                await stream.aclose()

        try:
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                async with anyio.create_task_group() as tg:
                    if proc.stdin is not None:
                        tg.start_soon(feed) if input is not None else await proc.stdin.aclose()
                    if proc.stdout is not None:
                        tg.start_soon(drain, proc.stdout, chunks["out"])
                    if proc.stderr is not None:
                        tg.start_soon(drain, proc.stderr, chunks["err"])
                    await proc.wait()
        except TimeoutError:
            proc.kill()
            with anyio.CancelScope(shield=True):
                await proc.wait()
            raise subprocess.TimeoutExpired(proc.args, timeout, b"".join(chunks["out"]) or None,  # type: ignore[arg-type]
                                            b"".join(chunks["err"]) or None) from None
        except BaseException:
            proc.kill()
            with anyio.CancelScope(shield=True):
                await proc.wait()
            raise
        out = b"".join(chunks["out"]) if stdout == subprocess.PIPE else None
        err = b"".join(chunks["err"]) if stderr == subprocess.PIPE else None
        if as_text:
            out, err = _decode(out, encoding, errors), _decode(err, encoding, errors)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)  # type: ignore[arg-type]
        if check and result.returncode:
            raise CommandFailed(result.returncode, proc.args, out, err)
        return result

    def _track(self, p: AsyncProcess) -> None:
        raise NotImplementedError


def _proc_args(args: Any) -> list[Any]:
    if isinstance(args, (str, bytes, os.PathLike)):
        return [os.fspath(args)]
    out = [os.fspath(a) for a in args]
    if not out:
        raise ValueError("run()/popen(): empty command")
    return out


def _decode(data: bytes | None, encoding: str | None, errors: str | None) -> str | None:
    if data is None:
        return None
    text = data.decode(encoding or locale.getpreferredencoding(False), errors or "strict")
    return text.replace("\r\n", "\n").replace("\r", "\n")


class AsyncSandbox(_AsyncRunner):
    """What `open_sandbox()` yields: Sandbox's interface with awaitable methods."""

    _sync_class: type[Sandbox] = Sandbox

    def __init__(self, *args: Any, **options: Any):
        self._sync = self._sync_class(*args, **options)
        self._core = self._sync._core
        self._procs: list[AsyncProcess] = []

    host_address = Sandbox.host_address
    host_address6 = Sandbox.host_address6
    address = Sandbox.address
    dns_address = Sandbox.dns_address

    @property
    def options(self) -> Any:
        return self._sync.options

    @property
    def state_dir(self) -> str:
        return self._sync.state_dir

    @property
    def pcap(self) -> str | None:
        return self._sync.pcap

    @property
    def running(self) -> bool:
        return self._sync.running

    @property
    def sync(self) -> Sandbox:
        """The same sandbox, with the blocking API (e.g. for a thread)."""
        return self._sync

    async def start(self) -> "AsyncSandbox":
        core = self._core
        await anyio.to_thread.run_sync(core.spawn)  # the first one in a process starts the zygote
        try:
            with anyio.move_on_after(self.options.start_timeout) as scope:
                while not core.ready():
                    await anyio.sleep(_POLL)
            if scope.cancelled_caught:
                raise core.start_timed_out()
            await anyio.to_thread.run_sync(self._sync._after_start)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise
        return self

    async def stop(self) -> None:
        core = self._core
        if core.proc is None:
            core.cleanup()
            return
        with anyio.CancelScope(shield=True):
            try:
                for p in self._procs:
                    if p.returncode is None:
                        p.kill()
                        with anyio.move_on_after(10):
                            await p.wait()
                self._procs.clear()
                core.begin_stop()
                for signum, wait in core.stop_phases():
                    if signum is not None:
                        core.signal(signum)
                    with anyio.move_on_after(wait):
                        while core.proc.poll() is None:
                            await anyio.sleep(_POLL)
                    if core.proc.poll() is not None:
                        break
                await anyio.to_thread.run_sync(_sweep, core)
            finally:
                core.cleanup()

    def _track(self, p: AsyncProcess) -> None:
        self._procs = [q for q in self._procs if q.returncode is None]
        self._procs.append(p)

    async def statistics(self) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(self._sync.statistics)

    async def add_port(self, child_port: int, host_port: int = 0, proto: str = "tcp", *,
                       host_ip: str = "127.0.0.1") -> tuple[str, int]:
        return await anyio.to_thread.run_sync(partial(self._sync.add_port, child_port, host_port, proto, host_ip=host_ip))

    async def remove_port(self, port: int | tuple[str, int], proto: str = "tcp") -> None:
        await anyio.to_thread.run_sync(self._sync.remove_port, port, proto)

    def __repr__(self) -> str:
        return repr(self._sync).replace("<", "<Async", 1)


class AsyncHost(_AsyncRunner):
    def __init__(self, net: "AsyncNetwork", host: Host):
        self._net = net
        self._host = host
        self._core = net._core

    name = property(lambda self: self._host.name)
    ipv4 = property(lambda self: self._host.ipv4)
    ipv6 = property(lambda self: self._host.ipv6)
    hostname = property(lambda self: self._host.name)
    _netns = property(lambda self: self._host.name)  # type: ignore[assignment]
    _hostname = property(lambda self: self._host.name)  # type: ignore[assignment]

    @property
    def link(self) -> "AsyncLink":
        return self._net.link(self.name)

    def _track(self, p: AsyncProcess) -> None:
        self._net._track(p)

    async def add_port(self, child_port: int, host_port: int = 0, proto: str = "tcp", *,
                       host_ip: str = "127.0.0.1") -> tuple[str, int]:
        return await anyio.to_thread.run_sync(partial(self._host.add_port, child_port, host_port, proto, host_ip=host_ip))

    def __repr__(self) -> str:
        return repr(self._host)


class _AsyncWrap:
    """Awaitable versions of a sync object's methods (they are quick API calls: a worker thread each)."""

    _sync: Any

    async def _call(self, fn: Any, *a: Any, **kw: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(fn, *a, **kw))


class AsyncLink(_AsyncWrap):
    def __init__(self, link: Link):
        self._sync = link
        self.name = link.name

    async def impair(self, **kw: Any) -> dict[str, Any]:
        from rootlessnet.harness.network import impairment

        impairment(**{k: v for k, v in kw.items() if k != "direction"})  # errors here, in the caller's task
        return await self._call(self._sync.impair, **kw)

    async def clear(self, direction: str = "both") -> None:
        await self._call(self._sync.clear, direction)

    async def hold(self, direction: str = "both") -> None:
        await self._call(self._sync.hold, direction)

    async def release(self, direction: str = "both") -> None:
        await self._call(self._sync.release, direction)

    async def settings(self) -> dict[str, Any]:
        return await self._call(lambda: self._sync.settings)

    async def statistics(self) -> dict[str, int]:
        return await self._call(lambda: self._sync.statistics)


class AsyncPair(_AsyncWrap):
    def __init__(self, pair: Pair):
        self._sync = pair

    async def impair(self, **kw: Any) -> dict[str, Any]:
        from rootlessnet.harness.network import impairment

        impairment(**kw)
        return await self._call(self._sync.impair, **kw)

    async def clear(self) -> None:
        await self._call(self._sync.clear)

    async def hold(self) -> None:
        await self._call(self._sync.hold)

    async def release(self) -> None:
        await self._call(self._sync.release)


class AsyncNetwork(AsyncSandbox):
    """What `open_network()` yields: Network's interface with awaitable methods."""

    _sync_class = Network
    _sync: Network

    @property
    def names(self) -> list[str]:
        return self._sync.names

    def host(self, name: str) -> AsyncHost:
        return AsyncHost(self, self._sync.host(name))

    __getitem__ = host

    @property
    def hosts(self) -> list[AsyncHost]:
        return [AsyncHost(self, h) for h in self._sync.hosts]

    def link(self, name: str) -> AsyncLink:
        return AsyncLink(self._sync.link(name))

    def pair(self, src: str, dst: str, *, both: bool = False) -> AsyncPair:
        return AsyncPair(self._sync.pair(src, dst, both=both))

    async def partition(self, *groups: Iterable[str] | str) -> None:
        from rootlessnet.harness.network import partition_body

        partition_body(groups, self.names)  # errors in the caller's task
        await anyio.to_thread.run_sync(lambda: self._sync.partition(*groups))

    async def isolate(self, *names: str) -> None:
        await anyio.to_thread.run_sync(lambda: self._sync.isolate(*names))

    async def block(self, src: Any, dst: Any) -> None:
        await anyio.to_thread.run_sync(self._sync.block, src, dst)

    async def unblock(self, src: Any, dst: Any) -> None:
        await anyio.to_thread.run_sync(self._sync.unblock, src, dst)

    async def heal(self) -> None:
        await anyio.to_thread.run_sync(self._sync.heal)

    async def partitions(self) -> list[set[str]]:
        return await anyio.to_thread.run_sync(lambda: self._sync.partitions)

    async def impairments(self) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(self._sync.impairments)


@asynccontextmanager
async def open_sandbox(**options: Any) -> AsyncIterator[AsyncSandbox]:
    """A started AsyncSandbox, stopped (shielded from cancellation) on exit."""
    sb = AsyncSandbox(**options)
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


@asynccontextmanager
async def open_network(names: Sequence[str], **options: Any) -> AsyncIterator[AsyncNetwork]:
    """A started AsyncNetwork, stopped (shielded from cancellation) on exit."""
    net = AsyncNetwork(names, **options)
    await net.start()
    try:
        yield net
    finally:
        await net.stop()
