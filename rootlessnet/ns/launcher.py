"""ns.launcher: the parent side of the namespaces — fork the child, report ready.

Namespace mechanics only: this module knows nothing of the network engine,
port drivers or the API (rootlessnet/instance.py composes those).

`spawn(opts, state)` forks the namespace child; it sets itself up (user
namespace, id maps through newuidmap/newgidmap, mounts, network namespace,
tap) while this process goes on, e.g. importing trio and the engine.
`open_namespaces(opts, state, setup, spawned)` is a trio async context
manager that waits for the child to be ready (forking it first if `spawned`
is None), lets `setup(ns, nursery)` do whatever the caller needs while the
namespaces exist but the command has not started (the instance starts its
engine, ports and API there, and confines itself), then writes
`STATE/child_pid` — the readiness signal, as with rootlesskit — and starts
the command. Leaving it kills what is left.

Nothing here imports trio at module level: the command line forks the child
before trio is loaded.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from rootlessnet.errors import UserError
from rootlessnet.ns import statedir as sd
from rootlessnet.ns import timing

if TYPE_CHECKING:
    import trio

    from rootlessnet.ns.control import AsyncControl

NET_MODES = ("own", "detached", "host")
SETUP_TIMEOUT = 60.0
NOT_FORWARDED = {signal.SIGCHLD, signal.SIGPIPE, signal.SIGURG, signal.SIGKILL, signal.SIGSTOP}
# What the child may import after the fork. Loaded before forking when other threads exist:
# one of them could hold the import lock of a module the child then imports, and never release
# it there. A single-threaded launcher (the command line) leaves them to the child, which
# imports them while this process imports the engine.
CHILD_MODULES = ("rootlessnet.ns.child", "rootlessnet.ns.tap", "rootlessnet.ns.execd", "rootlessnet.ns.idmap",
                 "rootlessnet.ns.netdev", "subprocess", "tempfile", "selectors", "traceback", "json")


@dataclass
class NamespaceOptions:
    """What the namespace child sets up before it runs `command`."""

    command: list[str]
    net_mode: str = "own"  # own netns, a detached one pinned at STATE/netns, or the host's
    pidns: bool = False
    utsns: bool = False
    ipcns: bool = False
    cgroupns: bool = False
    reaper: str = "auto"
    copy_up: list[str] = field(default_factory=list)
    propagation: str = "rprivate"
    subid_source: str = "auto"
    env: dict[str, str] = field(default_factory=dict)
    bind_etc: list[str] = field(default_factory=list)  # state files bound over /etc/NAME (own netns)
    quiet: bool = False
    # the tap the child creates in the netns once it exists and sends with "ready" (ns.tap's
    # parameters: name, mtu, address, prefixlen, gateway, ipv6, address6, vnet); None: no tap
    tap: dict[str, Any] | None = None


class ChildProcess:
    """The namespace child: a fork of this process, made from the calling thread, awaited through a pidfd.

    Forked from the thread that calls (the main thread, or the one running
    trio), never from one of trio's worker threads: the child's parent-death
    signal fires when the thread that forked it exits (PR_SET_PDEATHSIG is per
    thread), and trio retires idle worker threads after 10 s, which would kill
    every instance 10 s after it started.

    The fork runs `ns.child.forked(fd, cfg)` and never returns here. It keeps
    stdin, stdout, stderr and the control socket; every other descriptor is
    closed (as a spawned process's would be).
    """

    def __init__(self, sock: socket.socket, cfg: dict[str, Any]):
        import threading

        if threading.active_count() > 1:
            _preload_child_modules()
        for f in (sys.stdout, sys.stderr):  # what is buffered would be written twice
            try:
                f.flush()
            except (OSError, ValueError, AttributeError):
                pass
        fd = sock.fileno()
        pid = os.fork()
        if pid == 0:  # nothing may return from here into the caller's stack
            try:
                timing.forked("child")
                from rootlessnet.ns.child import forked

                forked(fd, cfg)  # never returns
            except BaseException:  # noqa: BLE001 - a bug: its traceback, then out
                try:
                    import traceback

                    os.write(2, traceback.format_exc().encode())
                except BaseException:  # noqa: BLE001
                    pass
            os._exit(1)
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except OSError:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise

    async def wait(self) -> int:
        """The exit status as subprocess gives it (-N: killed by signal N)."""
        if self.returncode is None:
            if self._pidfd >= 0:
                import trio

                await trio.lowlevel.wait_readable(self._pidfd)
            self._reap()
        assert self.returncode is not None
        return self.returncode

    def _reap(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped by someone else: the status is lost
            self.returncode = 255
        self._close_pidfd()

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            if "trio" in sys.modules:
                try:
                    sys.modules["trio"].lowlevel.notify_closing(self._pidfd)
                except RuntimeError:  # not inside trio
                    pass
            os.close(self._pidfd)
            self._pidfd = -1

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, signum: int) -> None:
        if self.returncode is None and self._pidfd >= 0:
            try:
                signal.pidfd_send_signal(self._pidfd, signum)
            except ProcessLookupError:
                pass

    def discard(self) -> None:
        """Kill and reap it (synchronously), if it was never awaited."""
        if self.returncode is None:
            self.kill()
            self._reap()


def _preload_child_modules() -> None:
    import importlib

    for name in CHILD_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


@dataclass
class Spawned:
    """A namespace child forked by `spawn`, not yet awaited by `open_namespaces`."""

    process: ChildProcess
    sock: socket.socket  # the parent's end of the control channel

    def discard(self) -> None:
        self.process.discard()
        self.sock.close()


def spawn(opts: NamespaceOptions, state: sd.StateDir) -> Spawned:
    """Fork the namespace child, which starts setting itself up at once.

    `state` must be acquired (locked) by the caller. Call from the thread that
    will run trio (see ChildProcess)."""
    cfg = _child_config(opts, state)
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        try:
            process = ChildProcess(child_sock, cfg)
        finally:
            child_sock.close()
    except BaseException:
        parent_sock.close()
        raise
    timing.phase("namespace child forked")
    return Spawned(process, parent_sock)


@dataclass
class Namespaces:
    """Running namespaces, as the parent sees them."""

    opts: NamespaceOptions
    state: sd.StateDir
    process: ChildProcess
    control: AsyncControl
    info: dict[str, Any] = field(default_factory=dict)  # what the child reported ("staging", ...)
    tap: tuple[int, dict[str, Any]] | None = None  # (fd, {"vnet", "offload"}): the tap the child made, until taken
    tap_error: str | None = None  # why the child could not make it

    def take_tap(self) -> tuple[int, dict[str, Any]]:
        """The tap the child created (NamespaceOptions.tap); the caller owns the fd. Raises ValueError
        with the child's reason when there is none."""
        if self.tap is None:
            raise ValueError(self.tap_error or "no tap was asked for")
        tap, self.tap = self.tap, None
        return tap

    @property
    def child_pid(self) -> int:
        return self.process.pid

    @property
    def state_dir(self) -> str:
        return self.state.path

    async def wait(self) -> int:
        """Wait for the command; its exit status (128+N for signal N)."""
        rc = await self.process.wait()
        return 128 - rc if rc < 0 else rc

    def send_signal(self, signum: int) -> None:
        """Forward a signal to the command (through the child)."""
        try:
            os.kill(self.process.pid, signum)
        except ProcessLookupError:
            pass


Setup = Callable[[Namespaces, "trio.Nursery"], Awaitable[None]]


def warn(opts: NamespaceOptions, text: str) -> None:
    if not opts.quiet:
        print(f"rootlessnet: warning: {text}", file=sys.stderr, flush=True)


async def _bootstrap(ns: Namespaces) -> None:
    """Wait for the child's "ready" (or its one-line error)."""
    msg, fds = await ns.control.recv()
    if msg is None:
        for fd in fds:
            os.close(fd)
        rc = await ns.process.wait()
        raise UserError(f"the namespace child exited during set-up (status {rc})")
    kind = msg.get("type")
    if kind != "ready":
        for fd in fds:
            os.close(fd)
        if kind == "error":
            raise UserError(msg.get("message", "namespace set-up failed"))
        raise UserError(f"namespace set-up: unexpected message {kind!r}")
    tap = msg.pop("tap", None)
    ns.tap_error = msg.pop("tap_error", None)
    if tap is not None and len(fds) == 1:
        os.set_blocking(fds[0], False)
        ns.tap = (fds[0], tap)
    else:
        for fd in fds:
            os.close(fd)
        if tap is not None:
            ns.tap_error = "the namespace child did not send the tap device"
    ns.info.update(msg)


def _child_config(opts: NamespaceOptions, state: sd.StateDir) -> dict[str, Any]:
    env = {
        "ROOTLESSKIT_STATE_DIR": state.path,
        "ROOTLESSNET_STATE_DIR": state.path,
        "ROOTLESSKIT_PARENT_EUID": str(os.geteuid()),
        "ROOTLESSKIT_PARENT_EGID": str(os.getegid()),
        **opts.env,
    }
    return {
        "parent_pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "state_dir": state.path,
        "command": list(opts.command),
        "env": env,
        # the child's own vocabulary: "host" keeps the host netns, anything else makes one
        "net": "host" if opts.net_mode == "host" else "none",
        "detach_netns": opts.net_mode == "detached",
        "pidns": opts.pidns,
        "utsns": opts.utsns,
        "ipcns": opts.ipcns,
        "cgroupns": opts.cgroupns,
        "reaper": opts.reaper,
        "copy_up": [os.path.abspath(d) for d in opts.copy_up],
        "propagation": opts.propagation,
        "bind_etc": list(opts.bind_etc) if opts.net_mode == "own" else [],
        "subid_source": opts.subid_source,
        "quiet": opts.quiet,
        "tap": dict(opts.tap) if opts.tap is not None and opts.net_mode != "host" else None,
    }


def remove_staging(info: dict[str, Any]) -> None:
    """The copy-up staging directory the child made in /tmp (empty outside its mount namespace)."""
    staging = info.get("staging")
    if staging and os.path.basename(staging).startswith("rootlessnet-copyup-"):
        try:
            os.rmdir(staging)
        except OSError:
            pass


@asynccontextmanager
async def open_namespaces(opts: NamespaceOptions, state: sd.StateDir, setup: Setup | None = None,
                          spawned: Spawned | None = None) -> AsyncIterator[Namespaces]:
    """Wait for the child (forked now unless `spawned`); run `setup`; write child_pid; start the command.

    `state` must be acquired (locked) by the caller, who also releases it.
    `spawned` (from `spawn(opts, state)`) is owned from here on.
    """
    import trio

    from rootlessnet.ns.control import AsyncControl

    if spawned is None:
        spawned = spawn(opts, state)
    process = spawned.process
    try:
        control = AsyncControl(spawned.sock)
    except BaseException:
        spawned.discard()
        raise
    ns = Namespaces(opts, state, process, control)
    try:
        with trio.move_on_after(SETUP_TIMEOUT) as timeout:
            await _bootstrap(ns)
        if timeout.cancelled_caught:
            raise UserError(f"namespace set-up did not finish in {SETUP_TIMEOUT:.0f} s")
        timing.phase("namespace child ready")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ns.control.serve)
            if setup is not None:
                await setup(ns, nursery)
            state.write(sd.CHILD_PID, f"{process.pid}\n")
            await ns.control.request("start")
            timing.phase("command started")
            try:
                yield ns
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if ns.tap is not None:
            os.close(ns.tap[0])
            ns.tap = None
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
        ns.control.sock.close()
        remove_staging(ns.info)


def forwarded_signals() -> list[int]:
    """Every catchable signal but SIGCHLD, SIGPIPE and SIGURG.

    SIGTTIN/SIGTTOU/SIGTSTP are included (they would stop the launcher
    otherwise); rootlesskit forwards them too.
    """
    return [s for s in signal.valid_signals() if s not in NOT_FORWARDED and _catchable(s)]


async def forward_until_exit(receiver: AsyncIterator[int], target: Any) -> int:
    """Forward what `receiver` (trio.open_signal_receiver(*forwarded_signals())) gets to
    `target.send_signal` until `target.wait()` returns; its status.

    Open the receiver before the namespaces, so that a signal during set-up
    is kept and forwarded instead of killing the launcher.
    """
    import trio

    async with trio.open_nursery() as nursery:

        async def pump() -> None:
            async for signum in receiver:
                target.send_signal(signum)

        nursery.start_soon(pump)
        code = await target.wait()
        nursery.cancel_scope.cancel()
    return code


def _catchable(signum: int) -> bool:
    try:
        signal.getsignal(signum)
        return True
    except (ValueError, OSError):
        return False
