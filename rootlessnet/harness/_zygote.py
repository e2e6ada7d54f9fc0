"""A warm process that forks `rootlessnet run` launchers: sandboxes start without a new interpreter.

Starting Python and importing trio, the engine and the API takes 150+ ms;
a test that makes many sandboxes pays it every time. The first sandbox of a
test process starts this *zygote* (`python -m rootlessnet.harness._zygote`
with one end of a socketpair); it imports everything a launcher and its
namespace child need once, then forks a launcher per request. The fork is
the launcher: it gets the request's stdin (the holder pipe), stdout and
stderr, environment and working directory, a session of its own, and runs
`rootlessnet run` (the CLI's own code, which forks the namespace child as
it always does), leaving with os._exit (no interpreter teardown).

Protocol (SOCK_SEQPACKET, one JSON message each way per request):
  {"op": "spawn", "argv": [...], "env": {...}, "cwd": DIR} + fds [stdin, stdout, stderr]
      -> {"pid": N} + [pidfd]
  {"op": "status", "pid": N} -> {"status": WAITSTATUS or null (still running)}
The zygote reaps its children as they exit and keeps their statuses until
asked (bounded). It exits when the harness's end closes, i.e. when the test
process exits, however it exits; launchers it forked carry on (their holder
pipe ends them).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

MAX_MSG = 256 * 1024
MAX_STATUSES = 10000
WARM = (  # what a launcher and its namespace child import; missing ones are skipped (modules move)
    "rootlessnet.cli", "rootlessnet.instance", "rootlessnet.ns.launcher", "rootlessnet.ns.child",
    "rootlessnet.ns.execd", "rootlessnet.ns.netdev", "rootlessnet.ns.timing", "subprocess", "tempfile", "selectors",
    "rootlessnet.ns.control", "rootlessnet.ns.idmap", "rootlessnet.ns.confine", "rootlessnet.ns.statedir",
    "rootlessnet.ns.tap", "rootlessnet.io.tap", "rootlessnet.io.engine", "rootlessnet.io.nat",
    "rootlessnet.io.reactor", "rootlessnet.io.pcap", "rootlessnet.stack.core", "rootlessnet.stack.dns",
    "rootlessnet.stack.dhcp", "rootlessnet.stack.ndp", "rootlessnet.stack.impair", "rootlessnet.api.server",
    "rootlessnet.api.network", "rootlessnet.port.builtin", "rootlessnet.port.slirp", "rootlessnet.port.spec",
    "rootlessnet.api.cli", "rootlessnet.api.client", "rootlessnet.oci.cli", "rootlessnet.oci.containerd",
    "trio", "outcome", "ipaddress", "json", "http.client",
)


# -- the zygote process ----------------------------------------------------------------

def _warm() -> None:
    import functools
    import importlib

    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    try:  # the CLI's parser, built once (argparse and gettext: ~8 ms per launcher otherwise)
        import rootlessnet.cli as cli

        if not hasattr(cli.build_parser, "cache_info"):
            cli.build_parser = functools.lru_cache(maxsize=1)(cli.build_parser)
            cli.build_parser()
    except Exception:  # noqa: BLE001
        pass
    try:  # getsubids runs twice per start otherwise; /etc/subuid does not change under a test run
        from rootlessnet.ns import idmap

        if not hasattr(idmap.plan_maps, "cache_info"):
            idmap.plan_maps = functools.lru_cache(maxsize=8)(idmap.plan_maps)
        idmap.plan_maps("auto")
    except Exception:  # noqa: BLE001 - the launcher reports problems itself
        pass


def _launcher(argv: list[str], env: dict[str, str], cwd: str, fds: list[int], keep: int) -> None:
    """In the fork: become `rootlessnet run ARGV` and never return."""
    code = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)  # dup2 clears close-on-exec: the command inherits them as a spawned one would
        os.closerange(3, 65536)  # the zygote's socket (`keep`), the received fds, pidfds
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["rootlessnet", *argv]
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        from rootlessnet.cli import main

        code = main(argv) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a traceback is the bug report
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve(sock: socket.socket) -> None:
    _warm()
    children: dict[int, int] = {}  # pidfd -> pid
    statuses: dict[int, int] = {}
    sock.send(json.dumps({"ready": True}).encode())
    while True:
        r, _, _ = select.select([sock, *children], [], [])
        for fd in r:
            if fd in children:
                pid = children.pop(fd)
                os.close(fd)
                try:
                    _, st = os.waitpid(pid, 0)
                    statuses[pid] = st
                except ChildProcessError:
                    pass
                while len(statuses) > MAX_STATUSES:
                    statuses.pop(next(iter(statuses)))
                continue
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MSG, 4, socket.MSG_CMSG_CLOEXEC)
            if not data:
                os._exit(0)  # the test process is gone
            try:
                req = json.loads(data)
                if req.get("op") == "status":
                    pid = int(req["pid"])
                    st = statuses.pop(pid, None)
                    if st is None:
                        try:
                            got, s = os.waitpid(pid, os.WNOHANG)
                            st = s if got == pid else None
                        except ChildProcessError:
                            st = None
                    sock.send(json.dumps({"status": st}).encode())
                    continue
                if req.get("op") != "spawn" or len(fds) != 3:
                    raise ValueError("bad request")
                pid = os.fork()
                if pid == 0:
                    _launcher([str(a) for a in req["argv"]], dict(req["env"]), req.get("cwd") or "/", list(fds),
                              sock.fileno())
                pidfd = os.pidfd_open(pid)
                children[pidfd] = pid
                socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [pidfd])
            except Exception as e:  # noqa: BLE001 - every failure is an answer
                sock.send(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
            finally:
                for fd in fds:
                    os.close(fd)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C in the test's terminal is for the test process
    serve(sock)


# -- the harness's side -------------------------------------------------------------------

class ZygoteError(Exception):
    pass


class LauncherProcess:
    """A launcher forked by the zygote, with the part of subprocess.Popen's interface the harness uses."""

    def __init__(self, zygote: "Zygote", pid: int, pidfd: int, stdin: Any):
        self._zygote = zygote
        self.pid = pid
        self._pidfd = pidfd
        self.stdin = stdin
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def _collect(self) -> None:
        st = self._zygote.status(self.pid)
        if st is None:
            st = signal.SIGKILL  # lost (the zygote died): report it killed
        self.returncode = -os.WSTOPSIG(st) if os.WIFSTOPPED(st) else os.waitstatus_to_exitcode(st)
        os.close(self._pidfd)
        self._pidfd = -1

    def poll(self) -> int | None:
        return self.wait(0, _poll=True)

    def wait(self, timeout: float | None = None, *, _poll: bool = False) -> int | None:
        with self._lock:
            if self.returncode is None:
                r, _, _ = select.select([self._pidfd], [], [], timeout)
                if r:
                    # exited: the zygote reaps it at once, but may not have yet (bounded retries)
                    for _ in range(200):
                        try:
                            self._collect()
                            break
                        except ZygoteError:
                            raise
                        except _NotYet:
                            time.sleep(0.001)
                elif not _poll:
                    raise subprocess.TimeoutExpired(["rootlessnet", "run"], timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        with self._lock:
            if self.returncode is None and self._pidfd >= 0:
                try:
                    signal.pidfd_send_signal(self._pidfd, signum)
                except ProcessLookupError:
                    pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def __del__(self) -> None:
        if getattr(self, "_pidfd", -1) >= 0:
            try:
                os.close(self._pidfd)
            except OSError:
                pass


class _NotYet(Exception):
    pass


class Zygote:
    """The harness's handle on its zygote (one per test process, started on first use)."""

    def __init__(self, boot: list[str]):
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen([*boot, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)
        finally:
            theirs.close()
        self.sock = ours
        self.sock.settimeout(60)
        try:
            msg = json.loads(self.sock.recv(4096) or b"null")
        except (OSError, ValueError):
            msg = None
        if not isinstance(msg, dict) or not msg.get("ready"):
            self.close()
            raise ZygoteError("the launcher zygote did not start")
        self.sock.settimeout(30)
        self.pid = os.getpid()

    def _ask(self, msg: dict[str, Any], fds: list[int] = ()) -> tuple[dict[str, Any], list[int]]:
        with self._lock:
            try:
                data = json.dumps(msg).encode()
                if fds:
                    socket.send_fds(self.sock, [data], list(fds))
                else:
                    self.sock.send(data)
                reply, got, _f, _a = socket.recv_fds(self.sock, 65536, 2, socket.MSG_CMSG_CLOEXEC)
            except OSError as e:
                raise ZygoteError(f"the launcher zygote is gone ({e})") from None
        if not reply:
            raise ZygoteError("the launcher zygote is gone")
        out = json.loads(reply)
        if "error" in out:
            for fd in got:
                os.close(fd)
            raise ZygoteError(out["error"])
        return out, list(got)

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdin: int, stdout: int, stderr: int) -> tuple[int, int]:
        out, fds = self._ask({"op": "spawn", "argv": argv, "env": env, "cwd": cwd}, [stdin, stdout, stderr])
        if len(fds) != 1:
            raise ZygoteError("the launcher zygote did not send a pidfd")
        return int(out["pid"]), fds[0]

    def status(self, pid: int) -> int | None:
        out, _ = self._ask({"op": "status", "pid": pid})
        if out.get("status") is None:
            raise _NotYet()
        return int(out["status"])

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.proc.poll() is None

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_ZYGOTE: Zygote | None = None
_ZLOCK = threading.Lock()
_DISABLED = False


def zygote(boot: list[str]) -> Zygote | None:
    """This process's zygote, started if needed; None if it cannot run (the caller spawns directly)."""
    global _ZYGOTE, _DISABLED
    if _DISABLED or os.environ.get("ROOTLESSNET_HARNESS_ZYGOTE", "1") == "0":
        return None
    with _ZLOCK:
        if _ZYGOTE is not None and not _ZYGOTE.alive():
            _ZYGOTE = None  # a fork of the test process, or a zygote that died: a new one
        if _ZYGOTE is None:
            try:
                _ZYGOTE = Zygote(boot)
            except (ZygoteError, OSError):
                _DISABLED = True
                return None
        return _ZYGOTE


if __name__ == "__main__":
    main()
