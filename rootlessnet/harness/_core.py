"""The part of a sandbox shared by the sync and the trio flavours.

A sandbox is a `rootlessnet run` subprocess whose command (the *holder*)
reads its stdin until EOF: the harness keeps the write end of that pipe, so
closing it stops the instance cleanly, and if the test process dies the pipe
closes by itself and nothing outlives it. Readiness is `STATE/child_pid`.
Commands run through `rootlessnet nsenter`, which execs them: the process the
caller gets is the command itself (kill() kills it).

Everything lives in one private directory (`rootlessnet-sandbox-*` under
$XDG_RUNTIME_DIR or the temp dir): `state/` (the state directory:
api.sock, child_pid, lock, ...), `dns-hosts.json`, `launcher.stderr`. Stopping
removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import weakref
from typing import Any, Sequence

from rootlessnet.harness._options import SandboxOptions
from rootlessnet.harness.errors import (
    ApiRequestError,
    HarnessError,
    PortInUseError,
    SandboxStartError,
)

GATEWAY = "10.0.2.2"
GATEWAY6 = "fd00::2"
GUEST = "10.0.2.100"
DNS = "10.0.2.3"
HOLDER_LIFETIME = 86400  # seconds; the pipe normally ends it long before

_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# -E: the caller's PYTHON* variables (meant for their command) do not affect us;
# -P: no cwd on sys.path; the package is found where this one was imported from.
_BOOT = (f"import sys; sys.path.insert(0, {_PKG_PARENT!r}); "
         "from rootlessnet.cli import main; sys.exit(main(sys.argv[1:]))")
RN = [sys.executable, "-E", "-P", "-c", _BOOT] if sys.version_info >= (3, 11) else [sys.executable, "-E", "-c", _BOOT]
_ZBOOT = (f"import sys; sys.path.insert(0, {_PKG_PARENT!r}); "
          "from rootlessnet.harness._zygote import main; main()")
ZYGOTE = [*RN[:-1], _ZBOOT]  # the launchers' zygote (harness/_zygote.py)

PROTOS = ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6")


def _default_parent() -> str:
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run and os.path.isdir(run) and os.access(run, os.W_OK | os.X_OK):
        return run
    return tempfile.gettempdir()


def command_argv(args: Any, shell: bool = False) -> list[Any]:
    """subprocess's `args` (+ shell=) as an argv list."""
    if shell:
        if isinstance(args, (str, bytes, os.PathLike)):
            return ["/bin/sh", "-c", os.fspath(args)]
        args = [os.fspath(a) for a in args]
        return ["/bin/sh", "-c", *args]
    if isinstance(args, (str, bytes, os.PathLike)):
        return [os.fspath(args)]
    out = [os.fspath(a) for a in args]
    if not out:
        raise ValueError("run()/popen(): empty command")
    return out


def pop_shell(kwargs: dict[str, Any]) -> bool:
    if "executable" in kwargs:
        raise TypeError("run()/popen(): executable= is not supported inside a sandbox (put the program in argv[0])")
    return bool(kwargs.pop("shell", False))


class Api:
    """Requests to the instance's api.sock (the rootlesskit API plus our extensions)."""

    def __init__(self, socket_path: str, timeout: float = 30.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; ApiRequestError for an error status."""
        from rootlessnet.api.client import ApiClient, ApiError
        from rootlessnet.errors import UserError

        client = ApiClient(self.socket_path, timeout=self.timeout)
        try:
            return getattr(client, "request", client._request)(method, path, body)
        except ApiError as e:
            raise ApiRequestError(e.status, e.message) from None
        except UserError as e:
            raise HarnessError(str(e)) from None


def free_port(host_ip: str, proto: str) -> int:
    """A port the kernel considers free on host_ip right now (bind probe)."""
    fam = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto.startswith("udp") else socket.SOCK_STREAM
    with socket.socket(fam, kind) as s:
        s.bind((host_ip, 0))
        return s.getsockname()[1]


def _in_use(message: str) -> bool:
    m = message.lower()
    return "in use" in m or "conflicts with" in m


class Core:
    """Files, the launcher process, ports bookkeeping: no waiting in here."""

    def __init__(self, opts: SandboxOptions, extra_flags: Sequence[str] = ()):
        self.opts = opts
        self.extra_flags = list(extra_flags)
        self.workdir: str | None = None
        self.proc: subprocess.Popen | None = None
        self._log: Any = None
        self._finalizer: Any = None
        self.stopped = False
        self.ports: dict[int, tuple[str, str, int, int]] = {}  # id -> (proto, host_ip, host_port, child_port)
        self.userns: tuple[int, int] | None = None  # (st_dev, st_ino) of the instance's user namespace

    # -- paths

    @property
    def state_dir(self) -> str:
        if self.workdir is None:
            raise HarnessError("the sandbox has not been started")
        return os.path.join(self.workdir, "state")

    @property
    def api(self) -> Api:
        return Api(os.path.join(self.state_dir, "api.sock"))

    # -- start

    def spawn(self) -> None:
        if self.proc is not None:
            raise HarnessError("this sandbox was already started (create a new one)")
        parent = os.path.abspath(os.fspath(self.opts.dir) if self.opts.dir is not None else _default_parent())
        sock_len = len(os.path.join(parent, "rootlessnet-sandbox-xxxxxxxx", "state", "api.sock"))
        if sock_len > 107:
            raise ValueError(f"dir={parent!r} is too deep: the API socket's path would be {sock_len} characters "
                             "(UNIX sockets allow 107); use a shorter directory")
        _remove_stale(parent)
        self.workdir = tempfile.mkdtemp(prefix="rootlessnet-sandbox-", dir=parent)
        try:
            hosts_file = os.path.join(self.workdir, "dns-hosts.json")
            with open(hosts_file, "w") as f:
                json.dump(self.opts._dns, f)
            self._log = open(os.path.join(self.workdir, "launcher.stderr"), "w+b")
            args = ["run", "-q", "--state-dir", self.state_dir, *self.opts.flags(hosts_file),
                    *self.extra_flags, "--", "sh", "-c", f"exec timeout {HOLDER_LIFETIME} cat >/dev/null"]
            self.proc = _fork_launcher(args, self._log.fileno())
            if self.proc is None:  # no zygote here: a new interpreter
                self.proc = subprocess.Popen([*RN, *args], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                             stderr=self._log, cwd="/", start_new_session=True)
        except BaseException:
            self.cleanup()
            raise
        self._finalizer = weakref.finalize(self, _emergency_stop, self.proc, self.workdir, self._log)

    def launcher_stderr(self) -> str:
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        self._log.seek(0, os.SEEK_END)
        return text.strip()

    def ready(self) -> bool:
        """True once child_pid is written; raises if the launcher exited first."""
        assert self.proc is not None
        if os.path.exists(os.path.join(self.state_dir, "child_pid")) and self._note_userns():
            return True
        rc = self.proc.poll()
        if rc is not None:
            err = self.launcher_stderr()
            raise SandboxStartError(f"rootlessnet run exited with status {rc} before the sandbox was ready"
                                    + (f": {err}" if err else " (no message)"), err)
        return False

    def _note_userns(self) -> bool:
        try:
            with open(os.path.join(self.state_dir, "child_pid")) as f:
                pid = int(f.read().strip() or 0)
            st = os.stat(f"/proc/{pid}/ns/user")
            self.userns = (st.st_dev, st.st_ino)
        except (OSError, ValueError):
            pass  # e.g. child_pid half-written: try again on the next poll
        return self.userns is not None

    def start_timed_out(self) -> SandboxStartError:
        err = self.launcher_stderr()
        return SandboxStartError(f"the sandbox was not ready within {self.opts.start_timeout:g} s"
                                 + (f"; rootlessnet run said: {err}" if err else ""), err)

    def check_running(self) -> None:
        if self.proc is None:
            raise HarnessError("the sandbox has not been started (use it as a context manager, or call start())")
        if self.stopped:
            raise HarnessError("the sandbox was stopped")
        rc = self.proc.poll()
        if rc is not None:
            err = self.launcher_stderr()
            raise HarnessError(f"the sandbox's launcher exited unexpectedly (status {rc})" + (f": {err}" if err else ""))

    # -- commands

    def nsenter_argv(self, argv: list[Any], *, netns: str | None = None, hostname: str | None = None) -> list[Any]:
        flags = ["--state-dir", self.state_dir]
        if netns is not None:
            flags += ["--netns", netns]
        if hostname is not None:
            flags += ["--hostname", hostname]
        return [*RN, "nsenter", *flags, "--", *argv]

    # -- ports

    def check_port_args(self, child_port: int, host_port: int, proto: str) -> None:
        if proto not in PROTOS:
            raise ValueError(f"proto={proto!r}: use one of {', '.join(PROTOS)}")
        for name, v, lo in (("child_port", child_port, 1), ("host_port", host_port, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= 65535:
                raise ValueError(f"{name}={v!r}: use an integer in {lo}..65535")

    def publish(self, child_port: int, host_port: int, proto: str, host_ip: str, child_ip: str) -> tuple[str, int]:
        """Blocking (API call): the (host, port) bound."""
        self.check_port_args(child_port, host_port, proto)
        attempts = 20 if host_port == 0 else 1
        for _ in range(attempts):
            port = host_port or free_port(host_ip, proto)
            spec = {"proto": proto, "parentIP": host_ip, "parentPort": port, "childIP": child_ip,
                    "childPort": child_port}
            try:
                st = self.api.request("POST", "/v1/ports", spec)
            except ApiRequestError as e:
                if _in_use(e.message):
                    if host_port == 0:
                        continue  # someone took the probed port meanwhile: another one
                    raise PortInUseError(f"cannot publish {host_ip}:{port}/{proto}: {e.message}") from None
                raise
            self.ports[int(st["id"])] = (proto, host_ip, port, child_port)
            return host_ip, port
        raise PortInUseError(f"could not find a free {proto} port on {host_ip} after {attempts} attempts")

    def unpublish(self, port: Any, proto: str) -> None:
        """`port`: a child port (with proto) or the (host, port) add_port returned."""
        if isinstance(port, tuple):
            ids = [i for i, (p, h, hp, _c) in self.ports.items() if (h, hp) == tuple(port)]
            what = f"{port[0]}:{port[1]}"
        else:
            ids = [i for i, (p, _h, _hp, c) in self.ports.items() if c == port and p[:3] == proto[:3]]
            what = f"child port {port}/{proto}"
        if not ids:
            from rootlessnet.harness.errors import UnknownPortError

            known = ", ".join(f"{h}:{hp}->{c}/{p}" for p, h, hp, c in self.ports.values()) or "none"
            raise UnknownPortError(f"no published port for {what} (published: {known})")
        for i in ids:
            self.api.request("DELETE", f"/v1/ports/{i}")
            del self.ports[i]

    # -- stop

    def stop_phases(self) -> list[tuple[int | None, float]]:
        """(signal to send first or None, how long to wait for the exit)."""
        t = self.opts.stop_timeout
        return [(None, t * 0.6), (signal.SIGTERM, t * 0.4), (signal.SIGKILL, 10.0)]

    def begin_stop(self) -> None:
        self.stopped = True
        if self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()  # the holder sees EOF and exits: a clean stop
            except OSError:
                pass

    def leftovers(self) -> list[int]:
        """Processes still in the instance's user namespace: everything run()
        or popen() started, and what those left in the background."""
        if self.userns is None:
            return []
        me = os.getpid()
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                st = os.stat(f"/proc/{name}/ns/user")
            except OSError:
                continue  # gone, a zombie, or not ours
            if (st.st_dev, st.st_ino) == self.userns and not _zombie(name):
                out.append(int(name))
        return out

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def cleanup(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._log is not None:
            self._log.close()
        if self.workdir is not None and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)


def _fork_launcher(args: list[str], log_fd: int) -> Any:
    """`rootlessnet run ARGS` forked by this process's zygote (no interpreter start), or None."""
    from rootlessnet.harness import _zygote

    z = _zygote.zygote(ZYGOTE)
    if z is None:
        return None
    r, w = os.pipe()  # the holder's stdin: EOF when we close w, or when this process dies
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        pid, pidfd = z.spawn(args, dict(os.environ), "/", r, devnull, log_fd)
    except _zygote.ZygoteError:
        os.close(w)
        return None
    finally:
        os.close(r)
        os.close(devnull)
    return _zygote.LauncherProcess(z, pid, pidfd, os.fdopen(w, "wb", buffering=0))


STALE_AFTER = 60.0


def _remove_stale(parent: str) -> None:
    """Remove the directories of sandboxes whose test process was killed before
    it could clean up: their instance's lock is free and has been for a while."""
    import fcntl
    import time

    try:
        names = [n for n in os.listdir(parent) if n.startswith("rootlessnet-sandbox-")]
    except OSError:
        return
    for n in names:
        lock = os.path.join(parent, n, "state", "lock")
        try:
            if os.lstat(os.path.join(parent, n)).st_uid != os.getuid():
                continue
            if time.time() - os.stat(lock).st_mtime < STALE_AFTER:
                continue
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue  # no lock yet (starting), or not ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a running instance
        finally:
            os.close(fd)
        shutil.rmtree(os.path.join(parent, n), ignore_errors=True)


def _zombie(pid: str) -> bool:
    """Dead and waiting for its parent to reap it (nothing left to kill)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _emergency_stop(proc: subprocess.Popen, workdir: str, log: Any) -> None:
    """The sandbox was never stopped (garbage or interpreter exit): kill and clean."""
    try:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    except Exception:  # noqa: BLE001 - best effort at exit
        pass
    try:
        log.close()
    except Exception:  # noqa: BLE001
        pass
    shutil.rmtree(workdir, ignore_errors=True)


def wait_exit(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True
