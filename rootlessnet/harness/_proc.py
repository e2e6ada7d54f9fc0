"""Commands inside a sandbox, with subprocess's semantics, without an interpreter per command.

The instance's exec helper (rootlessnet/ns/execd.py, `STATE/exec.sock`)
spawns the command inside the namespaces; this side sends it the argv, the
environment, the working directory and the caller's own stdio fds (the pipe
ends subprocess made, /dev/null, or our 0/1/2), and gets back the pid and a
pidfd. `SandboxPopen` is a `subprocess.Popen` whose `_execute_child` does
that, so pipes, `text=`, `encoding=`, `communicate()`, `timeout=` and context
management are subprocess's own code. The exit status comes from the helper
(the command is its child); signals go through the pidfd, so a recycled pid
is never hit.
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from rootlessnet.harness.errors import CommandFailed, HarnessError

EXEC_SOCKET = "exec.sock"
SPAWN_TIMEOUT = 30.0  # the helper answers in about a millisecond; this only bounds a wedged one
_EXEC_NAMES = list(inspect.signature(subprocess.Popen._execute_child).parameters)[1:]
UNSUPPORTED = ("preexec_fn", "user", "group", "extra_groups")


@dataclass(frozen=True)
class Target:
    """Where commands run: an instance's state dir, and a host of a network (or None)."""

    state_dir: str
    netns: str | None = None
    hostname: str | None = None

    @property
    def socket_path(self) -> str:
        return os.path.join(self.state_dir, EXEC_SOCKET)

    def available(self) -> bool:
        return os.path.exists(self.socket_path)


def caller_umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return -1


def _env_strings(env: Any) -> dict[str, str]:
    src = os.environ if env is None else env
    return {os.fsdecode(k): os.fsdecode(v) for k, v in src.items()}


def request(target: Target, argv: list[Any], *, env: Any = None, cwd: Any = None, fds: dict[int, int],
            umask: int = -1, setsid: bool = False, pgroup: int = -1, restore_signals: bool = True,
            executable: Any = None) -> tuple[bytes, list[int]]:
    """The spawn request: (message, fds in the order of its "fds" targets)."""
    body = {
        "argv": [os.fsdecode(a) for a in argv],
        "env": _env_strings(env),
        "cwd": os.fsdecode(cwd) if cwd is not None else os.getcwd(),
        "netns": target.netns,
        "hostname": target.hostname,
        "umask": umask if umask >= 0 else caller_umask(),
        "setsid": bool(setsid),
        "pgroup": pgroup,
        "restore_signals": bool(restore_signals),
        "fds": sorted(fds),
    }
    if executable is not None:
        body["executable"] = os.fsdecode(executable)
    data = json.dumps(body).encode()
    if len(data) > 256 * 1024:
        raise ValueError(f"the command line and environment take {len(data)} bytes; at most 262144 can be sent")
    return data, [fds[t] for t in sorted(fds)]


def parse_reply(data: bytes, fds: list[int]) -> tuple[int, int]:
    """(pid, pidfd) from the helper's reply, or the OSError exec gave (FileNotFoundError, ...)."""
    try:
        msg = json.loads(data) if data else None
    except ValueError:
        msg = None
    if isinstance(msg, dict) and "pid" in msg and len(fds) == 1:
        return int(msg["pid"]), fds[0]
    for fd in fds:
        os.close(fd)
    if isinstance(msg, dict) and "errno" in msg:
        raise OSError(int(msg["errno"]), msg.get("message") or os.strerror(int(msg["errno"])), msg.get("filename"))
    raise HarnessError("the sandbox's exec helper did not answer (is the sandbox still running?)")


def connect(target: Target) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        s.connect(target.socket_path)
    except OSError as e:
        s.close()
        raise HarnessError(f"cannot reach the sandbox's exec helper ({e.strerror}): is the sandbox still running?") from None
    return s


def valid_fd(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def status_message(data: bytes) -> int | None:
    try:
        msg = json.loads(data)
        return int(msg["status"])
    except (ValueError, KeyError, TypeError):
        return None


def decode_status(status: int) -> int:
    """A wait status as Popen.returncode (-N for signal N)."""
    if os.WIFSTOPPED(status):
        return -os.WSTOPSIG(status)
    return os.waitstatus_to_exitcode(status)


def pidfd_dead(pidfd: int) -> bool:
    r, _, _ = select.select([pidfd], [], [], 0)
    return bool(r)


class SandboxPopen(subprocess.Popen):
    """`subprocess.Popen` of a command inside a sandbox (see the module's docstring)."""

    def __init__(self, args: Any, *, target: Target, **kwargs: Any):
        for name in UNSUPPORTED:
            if kwargs.get(name) is not None:
                raise TypeError(f"{name}= is not supported inside a sandbox (the command runs in another process tree)")
        self._target = target
        self._conn: socket.socket | None = None
        self._pidfd = -1
        super().__init__(args, **kwargs)

    # called by Popen.__init__ with the fds it prepared (pipes, /dev/null, -1 for "inherit")
    def _execute_child(self, *a: Any) -> None:  # type: ignore[override]
        kw = dict(zip(_EXEC_NAMES, a))
        p2cread, c2pwrite, errwrite = kw["p2cread"], kw["c2pwrite"], kw["errwrite"]
        devnull = None
        try:
            args = kw["args"]
            if isinstance(args, (str, bytes, os.PathLike)):
                if kw["shell"] and isinstance(args, os.PathLike):
                    raise TypeError("path-like args is not allowed when shell is true")
                args = [args]
            else:
                args = list(args)
            if kw["shell"]:
                args = ["/bin/sh", "-c", *args]
                if kw["executable"]:
                    args[0] = kw["executable"]
            if not args:
                raise ValueError("run()/popen(): empty command")
            fds: dict[int, int] = {}
            for target_fd, fd in ((0, p2cread), (1, c2pwrite), (2, errwrite)):
                if fd == -1:  # inherit ours, as subprocess does
                    fd = target_fd
                    if not valid_fd(fd):
                        devnull = devnull if devnull is not None else os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                        fd = devnull
                fds[target_fd] = fd
            for fd in kw.get("pass_fds") or ():
                fds[int(fd)] = int(fd)
            executable = kw["executable"] if not kw["shell"] else None
            data, send = request(self._target, args, env=kw["env"], cwd=kw["cwd"], fds=fds,
                                 umask=kw.get("umask", -1), setsid=kw.get("start_new_session", False),
                                 pgroup=kw.get("process_group", -1) if kw.get("process_group") is not None else -1,
                                 restore_signals=kw.get("restore_signals", True), executable=executable)
            conn = connect(self._target)
            try:
                conn.settimeout(SPAWN_TIMEOUT)
                socket.send_fds(conn, [data], send)
                reply, got, _flags, _addr = socket.recv_fds(conn, 65536, 4, socket.MSG_CMSG_CLOEXEC)
                self.pid, self._pidfd = parse_reply(reply, list(got))
            except socket.timeout:
                conn.close()
                raise HarnessError(f"the sandbox's exec helper did not answer within {SPAWN_TIMEOUT:g} s") from None
            except BaseException:
                conn.close()
                raise
            conn.settimeout(None)
            self._conn = conn
            self._child_created = True
        finally:
            if devnull is not None:
                os.close(devnull)
            self._close_pipe_fds(kw["p2cread"], kw["p2cwrite"], kw["c2pread"], kw["c2pwrite"],
                                 kw["errread"], kw["errwrite"])

    # -- exit status: from the helper -------------------------------------------------
    def _take_status(self, timeout: float | None) -> None:
        """Wait up to `timeout` (None: for ever) for the exit status; sets returncode."""
        conn = self._conn
        if conn is None:
            return
        r, _, _ = select.select([conn], [], [], timeout)
        if not r:
            return
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        status = status_message(data) if data else None
        if status is not None:
            self.returncode = decode_status(status)
        else:
            # the helper went away (the sandbox stopped, which kills every command in it)
            deadline = time.monotonic() + (10.0 if timeout is None else max(timeout, 0.0))
            while not pidfd_dead(self._pidfd) and time.monotonic() < deadline:
                time.sleep(0.005)
            if not pidfd_dead(self._pidfd):
                return
            self.returncode = -signal.SIGKILL
        self._release()

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def _internal_poll(self, _deadstate: Any = None, **_ignored: Any) -> int | None:  # type: ignore[override]
        if self.returncode is None and self._child_created:
            if not self._waitpid_lock.acquire(False):
                return None
            try:
                if self.returncode is None:
                    self._take_status(0)
            finally:
                self._waitpid_lock.release()
        return self.returncode

    def _wait(self, timeout: float | None) -> int:  # type: ignore[override]
        if self.returncode is not None:
            return self.returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._waitpid_lock.acquire(True, -1 if timeout is None else timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        try:
            while self.returncode is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                self._take_status(left)
        finally:
            self._waitpid_lock.release()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.poll()
        if self.returncode is not None or self._pidfd < 0:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, sig)
        except ProcessLookupError:
            pass

    def __del__(self, *a: Any, **kw: Any) -> None:
        try:
            super().__del__(*a, **kw)
        finally:
            if getattr(self, "returncode", None) is not None and hasattr(self, "_conn"):
                self._release()


def run(popen: Any, args: Any, *, input: Any = None, capture_output: bool = False, timeout: float | None = None,
        check: bool = False, **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run with `popen(args, **kwargs)` making the process; check= raises CommandFailed."""
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    with popen(args, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()  # communicate() already put the output so far into the exception
            raise
        except BaseException:
            process.kill()
            raise
        retcode = process.poll()
    if check and retcode:
        raise CommandFailed(retcode, process.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(process.args, retcode, stdout, stderr)


def no_exec_helper_reason(target: Target) -> str | None:
    """Why commands cannot use the fast path here (None: they can)."""
    if not target.available():
        return f"no {EXEC_SOCKET} in {target.state_dir}"
    return None


__all__ = ["SandboxPopen", "Target", "run", "request", "parse_reply", "connect", "decode_status", "status_message",
           "errno"]
