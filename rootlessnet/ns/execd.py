"""The exec helper: runs commands inside a running instance in about a millisecond.

`rootlessnet nsenter` starts a Python interpreter per command (100+ ms). The
namespace child instead forks this helper once, after the namespaces are set
up and before it reports ready; the helper listens on `STATE/exec.sock`
(SOCK_SEQPACKET, the state directory is 0700) and spawns each command with
posix_spawn, already inside the user, mount and network namespaces.

Protocol, one connection per command:

  request  {"argv": [...], "executable": str (optional, as subprocess's),
            "env": {...}, "cwd": str|null, "netns": NAME|null,
            "hostname": str|null, "umask": int (-1: keep), "setsid": bool,
            "pgroup": int (-1: none), "restore_signals": bool, "fds": [targets]}
           with one fd (SCM_RIGHTS) per target: the caller's stdin, stdout,
           stderr (targets 0, 1, 2) and pass_fds (their own numbers)
  reply    {"pid": N} with the process's pidfd (the caller signals through it:
           no pid reuse race), or {"errno": E, "message": M, "filename": F}
           (what subprocess raises when exec fails: FileNotFoundError, ...)
  later    {"status": WAITSTATUS} when the process exited, then EOF.

Commands are this helper's children (it reaps them); their orphans go to the
namespace child, a subreaper, which kills everything left when the instance
stops. The helper dies with the namespace child (parent-death signal).
`NAME` selects a host of a multi-host network: its netns pinned at
`STATE/netns.d/NAME`, and a UTS namespace of its own whose hostname is
`hostname` (made once per host and kept).
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import sys
from typing import Any

from rootlessnet.ns import syscalls as sc

SOCKET = "exec.sock"
MAX_REQUEST = 256 * 1024  # argv + environment; SOCK_SEQPACKET carries it in one message
MAX_FDS = 64
MAX_PROCESSES = 4096  # running commands at once (two fds each here)


def _reset_signals() -> list[int]:
    out = []
    for s in signal.valid_signals():
        if s in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(s, signal.SIG_DFL)
            out.append(s)
        except (OSError, ValueError):
            pass
    return out


class Helper:
    def __init__(self, state_dir: str, main_netns: str | None):
        self.state_dir = state_dir
        self.sel = selectors.DefaultSelector()
        # the namespaces commands start in, by host name (None: the instance's own)
        self.home_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.home_uts = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(self.home_uts, sc.CLONE_NEWUTS)
        except PermissionError:
            # the host's UTS namespace (no --utsns): we could not come back to it after a host's,
            # so commands get a copy of it of their own (same hostname)
            os.close(self.home_uts)
            sc.unshare(sc.CLONE_NEWUTS)
            self.home_uts = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        self.cur = (None, None)  # the (netns, hostname) this process is in now
        self.netns: dict[str | None, int] = {None: self.home_net}
        if main_netns:  # --detach-netns: commands go to the pinned netns, as with nsenter
            self.netns[None] = os.open(main_netns, os.O_RDONLY | os.O_CLOEXEC)
        self.uts: dict[str | None, int] = {None: self.home_uts}
        self.procs: dict[int, tuple[int, socket.socket | None]] = {}  # pidfd -> (pid, connection)
        self.all_signals = _reset_signals()
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a caller that went away is an EPIPE, not our death

    # -- namespaces of a host ----------------------------------------------------
    def _enter(self, netns: str | None, hostname: str | None) -> None:
        key = None if netns is None else str(netns)
        if key not in self.netns:
            if not key or "/" in key or key.startswith("."):
                raise OSError(errno.EINVAL, f"bad host name {key!r}")
            path = os.path.join(self.state_dir, "netns.d", key)
            try:
                self.netns[key] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise OSError(errno.ENOENT, f"no host named {key!r} in this instance") from None
        ukey = None if hostname is None else str(hostname)
        if (key, ukey) == self.cur:
            return
        sc.setns(self.netns[key], sc.CLONE_NEWNET)
        if ukey not in self.uts:
            # a UTS namespace per hostname, made here once and kept by its fd
            sc.setns(self.home_uts, sc.CLONE_NEWUTS)
            sc.unshare(sc.CLONE_NEWUTS)
            socket.sethostname(ukey)
            self.uts[ukey] = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        sc.setns(self.uts[ukey], sc.CLONE_NEWUTS)
        self.cur = (key, ukey)

    # -- one command ---------------------------------------------------------------
    def spawn(self, req: dict[str, Any], fds: list[int]) -> tuple[int, int]:
        """posix_spawn the request's command; (pid, pidfd). Raises OSError as exec would.

        Takes ownership of `fds` (closed here whatever happens)."""
        old_umask = None
        cwd = req.get("cwd")
        try:
            argv = [os.fsencode(a) for a in req["argv"]]
            if not argv:
                raise OSError(errno.EINVAL, "empty command")
            env = {os.fsencode(k): os.fsencode(v) for k, v in (req.get("env") or {}).items()}
            targets = [int(t) for t in req.get("fds") or []]
            if len(targets) != len(fds) or len(set(targets)) != len(targets) or min(targets + [0]) < 0:
                raise OSError(errno.EINVAL, f"bad fd targets {targets} for {len(fds)} fds")
            # received fds must not sit on a target number (one dup2 would clobber another's source)
            top = max(targets + [2]) + 1
            for i, fd in enumerate(fds):
                if fd < top:
                    fds[i] = _move_above(fd, top)
            actions = [(os.POSIX_SPAWN_DUP2, fd, t) for fd, t in zip(fds, targets)]
            self._enter(req.get("netns"), req.get("hostname"))
            umask = int(req.get("umask", -1))
            if umask >= 0:
                old_umask = os.umask(umask)
            if cwd is not None:
                try:
                    os.chdir(os.fsencode(cwd))
                except OSError as e:
                    raise OSError(e.errno, os.strerror(e.errno), cwd) from None
            keep_ignored = () if req.get("restore_signals", True) else (signal.SIGPIPE, signal.SIGXFSZ)
            sigdef = [s for s in self.all_signals if s not in keep_ignored]
            kw: dict[str, Any] = dict(file_actions=actions, setsigmask=[], setsigdef=sigdef,
                                      setsid=bool(req.get("setsid")))
            if int(req.get("pgroup", -1)) >= 0:
                kw["setpgroup"] = int(req["pgroup"])
            exe = os.fsencode(req["executable"]) if req.get("executable") else argv[0]
            pid = self._spawn_path(exe, argv, env, kw)
        finally:
            if old_umask is not None:
                os.umask(old_umask)
            if cwd is not None:
                os.chdir("/")
            for fd in fds:
                _close(fd)
        return pid, os.pidfd_open(pid)

    @staticmethod
    def _spawn_path(prog: bytes, argv: list[bytes], env: dict[bytes, bytes], kw: dict[str, Any]) -> int:
        """Search PATH of the command's environment, as subprocess (execvpe) does."""
        if b"/" in prog:
            candidates = [prog]
        else:
            path = env.get(b"PATH", os.fsencode(os.defpath))
            candidates = [os.path.join(d or b".", prog) for d in path.split(b":")]
        first_error: OSError | None = None
        for exe in candidates:
            try:
                return os.posix_spawn(exe, argv, env, **kw)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR) and first_error is None:
                    first_error = e  # e.g. EACCES: reported unless a later directory has it
                if len(candidates) == 1:
                    raise OSError(e.errno, os.strerror(e.errno), os.fsdecode(prog)) from None
        if first_error is not None:
            raise OSError(first_error.errno, os.strerror(first_error.errno), os.fsdecode(prog))
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), os.fsdecode(prog))

    # -- the loop -----------------------------------------------------------------
    def on_request(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, MAX_REQUEST, MAX_FDS, socket.MSG_CMSG_CLOEXEC)
        except OSError:
            conn.close()
            return
        try:
            if not data:
                raise OSError(errno.EINVAL, "empty request")
            if len(self.procs) >= MAX_PROCESSES:
                raise OSError(errno.EAGAIN, f"more than {MAX_PROCESSES} commands running in this instance")
            req = json.loads(data)
            if not isinstance(req, dict) or not isinstance(req.get("argv"), list):
                raise OSError(errno.EINVAL, "bad request")
            owned, fds = list(fds), []
            pid, pidfd = self.spawn(req, owned)
        except (OSError, ValueError, TypeError, KeyError) as e:
            for fd in fds:
                _close(fd)
            err = e.errno if isinstance(e, OSError) and e.errno else errno.EINVAL
            msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            fname = e.filename if isinstance(e, OSError) else None
            _send(conn, {"errno": err, "message": msg, "filename": fname})
            conn.close()
            return
        if not _send(conn, {"pid": pid}, [pidfd]):
            conn.close()
            conn = None  # the caller is gone: reap the command all the same
        self.procs[pidfd] = (pid, conn)
        self.sel.register(pidfd, selectors.EVENT_READ, ("exit", pidfd))
        if conn is not None:
            self.sel.register(conn, selectors.EVENT_READ, ("hangup", pidfd))

    def on_exit(self, pidfd: int) -> None:
        pid, conn = self.procs.pop(pidfd)
        self.sel.unregister(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = signal.SIGKILL  # reaped elsewhere: report it killed
        if conn is not None:
            self.sel.unregister(conn)
            _send(conn, {"status": status})
            conn.close()

    def on_hangup(self, pidfd: int) -> None:
        """The caller closed its end (or sent more, which it must not): stop reporting to it."""
        pid, conn = self.procs[pidfd]
        if conn is not None:
            self.sel.unregister(conn)
            conn.close()
            self.procs[pidfd] = (pid, None)

    def serve(self, listener: socket.socket) -> None:
        self.sel.register(listener, selectors.EVENT_READ, ("accept", None))
        while True:
            for key, _ev in self.sel.select():
                kind, arg = key.data
                if kind == "accept":
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        continue
                    conn.setblocking(True)
                    self.sel.register(conn, selectors.EVENT_READ, ("request", conn))
                elif kind == "request":
                    self.on_request(arg)
                elif kind == "exit":
                    self.on_exit(arg)
                elif kind == "hangup" and arg in self.procs:
                    self.on_hangup(arg)


def _move_above(fd: int, low: int) -> int:
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    os.close(fd)
    return new


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _send(conn: socket.socket, msg: dict[str, Any], fds: list[int] = ()) -> bool:
    data = json.dumps(msg).encode()
    try:
        if fds:
            socket.send_fds(conn, [data], fds)
        else:
            conn.send(data)
        return True
    except OSError:
        return False


def start(state_dir: str, *, main_netns: str | None = None, close: tuple[int, ...] = ()) -> int | None:
    """Fork the helper (the caller must be single-threaded); its pid, or None when it cannot listen.

    The socket is bound before the fork, so it accepts as soon as this returns."""
    path = os.path.join(state_dir, SOCKET)
    if len(os.fsencode(path)) > 107:
        return None  # too long for a UNIX socket: commands go through `rootlessnet nsenter`
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(128)
    except OSError as e:
        listener.close()
        os.write(2, f"rootlessnet: warning: no exec helper ({e}); commands go through nsenter\n".encode())
        return None
    parent = os.getpid()
    pid = os.fork()
    if pid != 0:
        listener.close()
        return pid
    code = 0
    try:
        sc.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(0)
        for fd in close:
            _close(fd)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)  # not the instance's stdin (the harness's holder pipe)
        os.dup2(null, 1)
        os.close(null)
        os.chdir("/")
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        Helper(state_dir, main_netns).serve(listener)
    except BaseException as e:  # noqa: BLE001 - report, then leave commands to nsenter
        try:
            os.write(2, f"rootlessnet: exec helper failed: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
        code = 1
    finally:
        sys.stderr.flush()
    os._exit(code)
