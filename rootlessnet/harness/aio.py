"""The trio flavour: `open_sandbox(...)` and `open_network(...)`.

    async with open_sandbox(hosts={"db.test": "10.0.2.2"}) as sb:
        cp = await sb.run(["getent", "hosts", "db.test"], capture_output=True, text=True, check=True)
        proc = await sb.popen(["sleep", "1"])      # a trio.Process

`run()` takes subprocess.run's arguments (input=, capture_output=, text=,
timeout=, check=, stdin/stdout/stderr, env, cwd, ...) and returns a
`subprocess.CompletedProcess`; cancelling it kills the command. API calls
(ports, statistics, impairments, partitions) run in a worker thread.
"""

from __future__ import annotations

import locale
import subprocess
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, AsyncIterator, Iterable, Sequence

import trio

from rootlessnet.harness._core import Core
from rootlessnet.harness.sandbox import _ArgvBuilder
from rootlessnet.harness.errors import CommandFailed
from rootlessnet.harness.network import Host, Link, Network
from rootlessnet.harness.sandbox import Sandbox, _sweep

_STOP_POLL = 0.01


async def _kill(p: trio.Process) -> None:
    p.kill()


def _decode(data: bytes | None, encoding: str | None, errors: str | None) -> str | None:
    if data is None:
        return None
    text = data.decode(encoding or locale.getpreferredencoding(False), errors or "strict")
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _AsyncRunner(_ArgvBuilder):

    async def run(self, args: Any, *, input: Any = None, capture_output: bool = False, check: bool = False,
                  timeout: float | None = None, text: bool | None = None, encoding: str | None = None,
                  errors: str | None = None, universal_newlines: bool | None = None, stdin: Any = None,
                  stdout: Any = None, stderr: Any = None, **options: Any) -> subprocess.CompletedProcess:
        """As subprocess.run, awaited; cancellation (and timeout=) kill the command."""
        argv, full = self._full_argv(args, options)
        as_text = bool(text or universal_newlines or encoding or errors)
        if capture_output:
            if stdout is not None or stderr is not None:
                raise ValueError("stdout and stderr arguments may not be used with capture_output.")
            stdout = stderr = subprocess.PIPE
        if input is not None:
            if stdin is not None:
                raise ValueError("stdin and input arguments may not both be used.")
            stdin = input.encode(encoding or locale.getpreferredencoding(False), errors or "strict") if isinstance(input, str) else input
        kw: dict[str, Any] = dict(options)
        cap_out = stdout == subprocess.PIPE
        cap_err = stderr == subprocess.PIPE
        if not cap_out and stdout is not None:
            kw["stdout"] = stdout
        if not cap_err and stderr is not None:
            kw["stderr"] = stderr
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            cp = await trio.run_process(full, stdin=stdin, capture_stdout=cap_out, capture_stderr=cap_err,
                                        check=False, deliver_cancel=_kill, **kw)
        if scope.cancelled_caught:
            raise subprocess.TimeoutExpired(argv, timeout)  # type: ignore[arg-type]
        out, err = cp.stdout, cp.stderr
        if as_text:
            out, err = _decode(out, encoding, errors), _decode(err, encoding, errors)
        result = subprocess.CompletedProcess(argv, cp.returncode, out, err)
        if check and result.returncode:
            raise CommandFailed(result.returncode, argv, out, err)
        return result

    async def popen(self, args: Any, **options: Any) -> trio.Process:
        """A `trio.Process` running inside; still running at stop, it is killed."""
        argv, full = self._full_argv(args, options)
        p = await trio.lowlevel.open_process(full, **options)
        p.args = argv
        self._track(p)
        return p

    def _track(self, p: trio.Process) -> None:
        raise NotImplementedError


class AsyncSandbox(_AsyncRunner):
    """What `open_sandbox()` yields: Sandbox's interface with awaitable methods."""

    _sync_class: type[Sandbox] = Sandbox

    def __init__(self, *args: Any, **options: Any):
        self._sync = self._sync_class(*args, **options)
        self._core = self._sync._core
        self._procs: list[trio.Process] = []

    host_address = Sandbox.host_address
    host_address6 = Sandbox.host_address6
    address = Sandbox.address
    dns_address = Sandbox.dns_address

    @property
    def options(self):
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

    async def start(self) -> "AsyncSandbox":
        core = self._core
        core.spawn()
        try:
            with trio.move_on_after(self.options.start_timeout) as scope:
                while not core.ready():
                    await trio.sleep(0.01)
            if scope.cancelled_caught:
                raise core.start_timed_out()
            await trio.to_thread.run_sync(self._sync._after_start)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.stop()
            raise
        return self

    async def stop(self) -> None:
        core = self._core
        if core.proc is None:
            core.cleanup()
            return
        try:
            for p in self._procs:
                if p.returncode is None:
                    p.kill()
                    with trio.move_on_after(10):
                        await p.wait()
            self._procs.clear()
            core.begin_stop()
            for signum, wait in core.stop_phases():
                if signum is not None:
                    core.signal(signum)
                with trio.move_on_after(wait):
                    while core.proc.poll() is None:
                        await trio.sleep(_STOP_POLL)
                if core.proc.poll() is not None:
                    break
            await trio.to_thread.run_sync(_sweep, core)
        finally:
            core.cleanup()

    def _track(self, p: trio.Process) -> None:
        self._procs = [q for q in self._procs if q.returncode is None]
        self._procs.append(p)

    async def statistics(self) -> dict[str, Any]:
        return await trio.to_thread.run_sync(self._sync.statistics)

    async def add_port(self, child_port: int, host_port: int = 0, proto: str = "tcp", *,
                       host_ip: str = "127.0.0.1") -> tuple[str, int]:
        return await trio.to_thread.run_sync(partial(self._sync.add_port, child_port, host_port, proto, host_ip=host_ip))

    async def remove_port(self, port: int | tuple[str, int], proto: str = "tcp") -> None:
        await trio.to_thread.run_sync(self._sync.remove_port, port, proto)

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

    def _track(self, p: trio.Process) -> None:
        self._net._track(p)

    async def add_port(self, child_port: int, host_port: int = 0, proto: str = "tcp", *,
                       host_ip: str = "127.0.0.1") -> tuple[str, int]:
        return await trio.to_thread.run_sync(partial(self._host.add_port, child_port, host_port, proto, host_ip=host_ip))

    def __repr__(self) -> str:
        return repr(self._host)


class AsyncLink:
    def __init__(self, link: Link):
        self._link = link
        self.name = link.name

    async def impair(self, **kw: Any) -> dict[str, Any]:
        from rootlessnet.harness.network import impairment

        impairment(**kw)  # ValueError here, in the caller's task
        return await trio.to_thread.run_sync(partial(self._link.impair, **kw))

    async def clear(self) -> dict[str, Any]:
        return await trio.to_thread.run_sync(self._link.clear)

    async def settings(self) -> dict[str, Any]:
        return await trio.to_thread.run_sync(lambda: self._link.settings)


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

    async def partition(self, *groups: Iterable[str] | str) -> None:
        from rootlessnet.harness.network import partition_body

        partition_body(groups, self.names)  # errors in the caller's task
        await trio.to_thread.run_sync(lambda: self._sync.partition(*groups))

    async def heal(self) -> None:
        await trio.to_thread.run_sync(self._sync.heal)

    async def partitions(self) -> list[set[str]]:
        return await trio.to_thread.run_sync(lambda: self._sync.partitions)


@asynccontextmanager
async def open_sandbox(**options: Any) -> AsyncIterator[AsyncSandbox]:
    """A started AsyncSandbox, stopped (shielded from cancellation) on exit."""
    sb = AsyncSandbox(**options)
    await sb.start()
    try:
        yield sb
    finally:
        with trio.CancelScope(shield=True):
            await sb.stop()


@asynccontextmanager
async def open_network(names: Sequence[str], **options: Any) -> AsyncIterator[AsyncNetwork]:
    """A started AsyncNetwork, stopped (shielded from cancellation) on exit."""
    net = AsyncNetwork(names, **options)
    await net.start()
    try:
        yield net
    finally:
        with trio.CancelScope(shield=True):
            await net.stop()
