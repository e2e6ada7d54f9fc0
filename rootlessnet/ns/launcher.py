"""ns.launcher: the parent side of the namespaces — spawn the child, map ids, report ready.

Namespace mechanics only: this module knows nothing of the network engine,
port drivers or the API (rootlessnet/instance.py composes those). 

`open_namespaces(opts, state, setup)` is a trio async context manager that
spawns the namespace child, writes its id maps, lets `setup(ns, nursery)` do
whatever the caller needs while the namespaces exist but the command has not
started (the instance starts its engine, ports and API there, and confines
itself), then writes `STATE/child_pid` — the readiness signal, as with
rootlesskit — and starts the command. Leaving it kills what is left.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import trio

from rootlessnet.errors import UserError
from rootlessnet.ns import idmap
from rootlessnet.ns import statedir as sd
from rootlessnet.ns.control import AsyncControl

NET_MODES = ("own", "detached", "host")
SETUP_TIMEOUT = 60.0
NOT_FORWARDED = {signal.SIGCHLD, signal.SIGPIPE, signal.SIGURG, signal.SIGKILL, signal.SIGSTOP}


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


class ChildProcess:
    """The namespace child, spawned from the calling thread and awaited through a pidfd.

    Not `trio.lowlevel.open_process`: that calls Popen on a worker thread, and
    the child's parent-death signal fires when the thread that forked it exits
    (PR_SET_PDEATHSIG is per thread) — trio retires idle worker threads after
    10 s, which would kill every instance 10 s after it started.
    """

    def __init__(self, argv: list[str], pass_fds: tuple[int, ...]):
        import subprocess

        self._popen = subprocess.Popen(argv, pass_fds=pass_fds)
        self.pid = self._popen.pid
        self._pidfd = os.pidfd_open(self.pid)

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        if self._popen.returncode is None:
            if self._pidfd >= 0:
                await trio.lowlevel.wait_readable(self._pidfd)
            self._popen.wait()
            self._close_pidfd()
        return self._popen.returncode

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def kill(self) -> None:
        if self._popen.returncode is None:
            self._popen.kill()

    def send_signal(self, signum: int) -> None:
        if self._popen.returncode is None:
            self._popen.send_signal(signum)


@dataclass
class Namespaces:
    """Running namespaces, as the parent sees them."""

    opts: NamespaceOptions
    state: sd.StateDir
    process: ChildProcess
    control: AsyncControl
    info: dict[str, Any] = field(default_factory=dict)  # what the child reported ("staging", ...)

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


Setup = Callable[[Namespaces, trio.Nursery], Awaitable[None]]


def warn(opts: NamespaceOptions, text: str) -> None:
    if not opts.quiet:
        print(f"rootlessnet: warning: {text}", file=sys.stderr, flush=True)


def _child_argv(fd: int) -> list[str]:
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = f"import sys; sys.path.insert(0, {pkg_parent!r}); from rootlessnet.ns.child import main; main()"
    return [sys.executable, "-c", code, str(fd)]


async def _run_in_own_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """trio.to_thread.run_sync in a thread that is gone when this returns.

    trio keeps idle worker threads for 10 s, and Landlock before ABI 8
    restricts only the thread that asks: the launcher must be single-threaded
    when it confines itself. Not cancellable, like to_thread's default.
    """
    import threading

    import outcome

    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    box: list[Any] = []

    def body() -> None:
        box.append(outcome.capture(fn, *args))
        token.run_sync_soon(done.set)

    thread = threading.Thread(target=body, name="rootlessnet-idmap", daemon=True)
    thread.start()
    with trio.CancelScope(shield=True):
        await done.wait()
    thread.join()
    return box[0].unwrap()


async def _bootstrap(ns: Namespaces, plan: idmap.MapPlan, cfg: dict[str, Any]) -> None:
    ctl = ns.control
    await ctl.send({"type": "config", "config": cfg})

    async def expect(kind: str) -> dict[str, Any]:
        msg, fds = await ctl.recv()
        for fd in fds:
            os.close(fd)
        if msg is None:
            rc = await ns.process.wait()
            raise UserError(f"the namespace child exited during set-up (status {rc})")
        if msg.get("type") == "error":
            raise UserError(msg.get("message", "namespace set-up failed"))
        if msg.get("type") != kind:
            raise UserError(f"namespace set-up: unexpected message {msg.get('type')!r}")
        return msg

    await expect("unshared")
    if plan.single:
        await ctl.send({"type": "map", "self": True})
    else:
        await _run_in_own_thread(idmap.apply_helpers, plan, ns.process.pid)
        await ctl.send({"type": "map", "self": False})
    ns.info.update(await expect("ready"))


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
        "command": opts.command,
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
async def open_namespaces(opts: NamespaceOptions, state: sd.StateDir, setup: Setup | None = None
                          ) -> AsyncIterator[Namespaces]:
    """Spawn the child in new namespaces; run `setup`; write child_pid; start the command.

    `state` must be acquired (locked) by the caller, who also releases it.
    """
    plan = idmap.plan_maps(opts.subid_source)
    if plan.warning:
        warn(opts, plan.warning)
    cfg = _child_config(opts, state)
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        try:
            process = ChildProcess(_child_argv(child_sock.fileno()), pass_fds=(child_sock.fileno(),))
        finally:
            child_sock.close()
    except BaseException:
        parent_sock.close()
        raise
    ns = Namespaces(opts, state, process, AsyncControl(parent_sock))
    try:
        with trio.move_on_after(SETUP_TIMEOUT) as timeout:
            await _bootstrap(ns, plan, cfg)
        if timeout.cancelled_caught:
            raise UserError(f"namespace set-up did not finish in {SETUP_TIMEOUT:.0f} s")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ns.control.serve)
            if setup is not None:
                await setup(ns, nursery)
            state.write(sd.CHILD_PID, f"{process.pid}\n")
            await ns.control.request("start")
            try:
                yield ns
            finally:
                nursery.cancel_scope.cancel()
    finally:
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
