"""`Sandbox`: one rootless network namespace for a test, from plain (sync) Python.

    with Sandbox(hosts={"db.test": "10.0.2.2"}) as sb:
        sb.run(["curl", "-s", f"http://db.test:{port}/"], check=True, capture_output=True, text=True)

See docs/harness.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

from rootlessnet.harness import _core, _proc
from rootlessnet.harness._core import Core, command_argv, pop_shell, wait_exit
from rootlessnet.harness._options import make_options


def _sweep(core: Core) -> None:
    """Kill what is still in the instance's namespaces (background processes
    of run(), popen()s the caller forgot), bounded in time."""
    deadline = time.monotonic() + 10
    while (pids := core.leftovers()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


class _ArgvBuilder:
    """Where commands run and how they start (sync and async runners share it)."""

    _core: Core
    _netns: str | None = None
    _hostname: str | None = None

    def _target(self) -> _proc.Target:
        self._core.check_running()
        return _proc.Target(self._core.state_dir, self._netns, self._hostname)

    def _full_argv(self, args: Any, kwargs: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        """The slow path's command line: `rootlessnet nsenter ... -- ARGV` (no exec helper)."""
        self._core.check_running()
        argv = command_argv(args, pop_shell(kwargs))
        return argv, self._core.nsenter_argv(argv, netns=self._netns, hostname=self._hostname)


class _Runner(_ArgvBuilder):
    """run()/popen() with subprocess's signatures and results."""

    def run(self, args: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        """`subprocess.run(args, ...)` inside; `check=True` raises `CommandFailed` (stderr in its message)."""
        return _proc.run(self._spawn, args, **kwargs)

    def popen(self, args: Any, **kwargs: Any) -> subprocess.Popen:
        """`subprocess.Popen(args, ...)` inside; still running at stop, it is killed."""
        p = self._spawn(args, **kwargs)
        self._track(p)
        return p

    def _spawn(self, args: Any, **kwargs: Any) -> subprocess.Popen:
        target = self._target()
        if target.available():
            return _proc.SandboxPopen(args, target=target, **kwargs)
        argv, full = self._full_argv(args, kwargs)  # e.g. --pidns: through `rootlessnet nsenter`
        p = subprocess.Popen(full, **kwargs)
        p.args = argv
        return p

    def _track(self, p: subprocess.Popen) -> None:
        raise NotImplementedError


class Sandbox(_Runner):
    """A rootless instance (user + mount + network namespace, engine, ports, API).

    Options (all keyword): hosts= (static DNS table, everything else NXDOMAIN),
    outbound= ("none": hermetic, default), allow_host_loopback= (True),
    ipv6=, mtu=, port_driver=, pcap= (path), extra_args= (more
    `rootlessnet run` flags), start_timeout=, stop_timeout=, dir=.
    """

    host_address = _core.GATEWAY  #: the gateway: reaches the host's 127.0.0.1 (allow_host_loopback)
    host_address6 = _core.GATEWAY6
    address = _core.GUEST  #: the sandbox's own address on tap0
    dns_address = _core.DNS

    def __init__(self, **options: Any):
        self.options = make_options(options, where=type(self).__name__)
        self._core = Core(self.options, self._extra_flags())
        self._procs: list[subprocess.Popen] = []

    def _extra_flags(self) -> list[str]:
        return []

    # -- lifetime

    def start(self) -> "Sandbox":
        core = self._core
        core.spawn()
        deadline = time.monotonic() + self.options.start_timeout
        try:
            while not core.ready():
                if time.monotonic() > deadline:
                    raise core.start_timed_out()
                time.sleep(0.01)
            self._after_start()
        except BaseException:
            self.stop()
            raise
        return self

    def _after_start(self) -> None:
        pass

    def stop(self) -> None:
        """Stop the instance and remove its files; idempotent."""
        core = self._core
        if core.proc is None:
            core.cleanup()
            return
        try:
            for p in self._procs:
                if p.poll() is None:
                    p.kill()
                    wait_exit(p, 10)
            self._procs.clear()
            core.begin_stop()
            for signum, wait in core.stop_phases():
                if signum is not None:
                    core.signal(signum)
                if wait_exit(core.proc, wait):
                    break
            _sweep(core)
        finally:
            core.cleanup()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _track(self, p: subprocess.Popen) -> None:
        self._procs = [q for q in self._procs if q.poll() is None]
        self._procs.append(p)

    # -- information

    @property
    def state_dir(self) -> str:
        """The instance's state directory (api.sock, child_pid, ...)."""
        return self._core.state_dir

    @property
    def pcap(self) -> str | None:
        return self.options.pcap  # type: ignore[return-value]

    @property
    def running(self) -> bool:
        c = self._core
        return c.proc is not None and not c.stopped and c.proc.poll() is None

    def statistics(self) -> dict[str, Any]:
        """The engine's and port driver's counters (GET /v1/stats)."""
        self._core.check_running()
        return self._core.api.request("GET", "/v1/stats")

    # -- ports

    def add_port(self, child_port: int, host_port: int = 0, proto: str = "tcp", *,
                 host_ip: str = "127.0.0.1") -> tuple[str, int]:
        """Publish `child_port` on host_ip:host_port (0: a free port); returns (host, port)."""
        self._core.check_running()
        return self._core.publish(child_port, host_port, proto, host_ip, self._child_ip())

    def _child_ip(self) -> str:
        return ""

    def remove_port(self, port: int | tuple[str, int], proto: str = "tcp") -> None:
        """Unpublish: a child port (with its proto) or the (host, port) add_port returned."""
        self._core.check_running()
        self._core.unpublish(port, proto)

    def __repr__(self) -> str:
        c = self._core
        state = ("not started" if c.proc is None else "stopped" if c.stopped
                 else "running" if c.proc.poll() is None else f"exited ({c.proc.returncode})")
        return f"<{type(self).__name__} {state}{' ' + self._core.workdir if self._core.workdir else ''}>"
