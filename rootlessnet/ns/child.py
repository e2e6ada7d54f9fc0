"""The namespace child: a fork of the launcher (`ns.launcher.ChildProcess`) running `forked(FD, CFG)`.

Runs in the host namespaces at first; forks a helper that plans the id maps
(getsubids, /etc/subuid) and, once this process has unshared a user
namespace (and mount, and the optional ones), writes them with
newuidmap/newgidmap; sets up the network namespace (own, detached and
pinned, or the host's), propagation, copy-up, and the tap when one is asked
for; reports `ready` (with the tap's fd), then serves control requests on a
thread and spawns the command when the parent says `start`. Its exit status
is the command's (128+N for signal N). All of this runs while the launcher
imports and starts the engine.

It must be single-threaded until the user namespace exists: the control
thread starts only afterwards. It never returns into the launcher's code: it
leaves with os._exit.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import sys
import threading
from typing import Any, Callable, NoReturn

from rootlessnet.errors import UserError, describe
from rootlessnet.ns import idmap
from rootlessnet.ns import syscalls as sc
from rootlessnet.ns import timing
from rootlessnet.ns.control import recv_msg, send_msg
from rootlessnet.ns.netdev import set_link_up

NOT_FORWARDED = {signal.SIGCHLD, signal.SIGPIPE, signal.SIGURG, signal.SIGKILL, signal.SIGSTOP}
# The parent-death signal: one the launcher never forwards, so the handler
# knows the launcher is gone and can take the whole process tree down.
PDEATH_SIG = signal.SIGRTMIN + 3



def _handle_all(handler: Any, skip: Any = (signal.SIGKILL, signal.SIGSTOP)) -> None:
    """Every signal but `skip` goes to `handler` (SIG_DFL, or a function); those the
    interpreter cannot set are left as they are."""
    for s in signal.valid_signals():
        if s not in skip:
            try:
                signal.signal(s, handler)
            except (OSError, ValueError):
                pass

def descendants(root: int) -> list[int]:
    """Pids below `root` (from /proc; we are a subreaper, so orphans stay below us)."""
    fast = _descendants_by_children_files(root)
    if fast is not None:
        return fast
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _descendants_by_children_files(root: int) -> list[int] | None:
    """The same from /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN): a few files instead
    of every process's stat, which matters on a busy machine (a sandbox's stop waits for this).
    None when the kernel lacks those files. Racing forks may be missed: callers loop."""
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # gone meanwhile
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    kids = f.read().split()
            except FileNotFoundError:
                if pid == root and not os.path.exists(f"/proc/{pid}/task/{tid}/children"):
                    return None
                continue
            except OSError:
                continue
            for k in kids:
                out.append(int(k))
                todo.append(int(k))
    return out


def kill_descendants() -> None:
    """SIGKILL everything below us and reap it (bounded rounds: forks race us)."""
    me = os.getpid()
    for _ in range(50):
        pids = descendants(me)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


class ChildError(Exception):
    """Set-up failed in a way the user can act on; sent to the parent as one line."""


def userns_hint() -> str:
    """Which sysctl forbids unprivileged user namespaces, if one does."""
    checks = [
        ("/proc/sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=1"),
        ("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces=15000"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1", "kernel.apparmor_restrict_unprivileged_userns=0"),
    ]
    for path, bad, fix in checks:
        try:
            with open(path) as f:
                if f.read().strip() == bad:
                    name = path.removeprefix("/proc/sys/").replace("/", ".")
                    return f"{name} is {bad} (as root: sysctl -w {fix})"
        except OSError:
            continue
    return "check kernel.unprivileged_userns_clone, user.max_user_namespaces and AppArmor's kernel.apparmor_restrict_unprivileged_userns"


class Child:
    def __init__(self, sock: socket.socket, cfg: dict[str, Any]):
        self.sock = sock
        self.cfg = cfg
        self.state_dir: str = cfg["state_dir"]
        self.netns_path: str | None = None  # pinned netns (detached)
        self.staging: str | None = None  # copy-up staging dir outside the state dir
        self.start_event = threading.Event()
        self.cmd_pid: int | None = None
        self.pending_signal: int | None = None
        self.send_lock = threading.Lock()
        self.ops: dict[str, Callable[[dict[str, Any]], tuple[dict[str, Any], list[int]]]] = {
            "ping": self.op_ping,
            "start": self.op_start,
            "socket": self.op_socket,
            "dial": self.op_dial,
            "host_tap": self.op_host_tap,
        }

    # -- messages ---------------------------------------------------------

    def send(self, msg: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
        with self.send_lock:
            send_msg(self.sock, msg, fds)

    # -- set-up -----------------------------------------------------------

    def check_parent(self) -> None:
        sc.set_pdeathsig(PDEATH_SIG)
        if os.getppid() != self.cfg["parent_pid"]:
            os._exit(1)

    def unshare_user(self) -> None:
        flags = sc.CLONE_NEWUSER | sc.CLONE_NEWNS
        for opt, flag in (("utsns", sc.CLONE_NEWUTS), ("ipcns", sc.CLONE_NEWIPC), ("cgroupns", sc.CLONE_NEWCGROUP)):
            if self.cfg.get(opt):
                flags |= flag
        try:
            sc.unshare(flags)
        except OSError as e:
            if e.errno in (errno.EPERM, errno.ENOSPC, errno.EINVAL, errno.EACCES):
                raise ChildError(f"cannot create a user namespace ({os.strerror(e.errno)}): {userns_hint()}") from None
            raise

    def become_root(self, single: bool) -> None:
        if single:
            idmap.write_single_map(self.cfg["uid"], self.cfg["gid"])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        if not single:
            try:
                os.setgroups([])
            except OSError:
                pass
        # setuid helpers and credential changes clear the parent-death signal: re-arm it.
        self.check_parent()

    def set_propagation(self) -> None:
        mode = self.cfg.get("propagation", "rprivate")
        sc.mount(None, "/", None, sc.PROPAGATION[mode])

    def remount_sysfs(self) -> None:
        """A fresh sysfs so /sys/class/net shows this netns, keeping /sys/fs/cgroup."""
        keep = None
        cg = "/sys/fs/cgroup"
        if os.path.isdir(cg) and os.path.ismount(cg):
            keep = os.path.join(self.state_dir, ".cgroup")
            os.makedirs(keep, exist_ok=True)
            try:
                sc.mount(cg, keep, None, sc.MS_BIND | sc.MS_REC)
            except OSError:
                keep = None
        try:
            sc.mount("none", "/sys", "sysfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        except OSError as e:
            self.warn(f"cannot mount a fresh sysfs ({e.strerror}): /sys/class/net shows the host's interfaces")
            return
        if keep:
            try:
                sc.mount(keep, cg, None, sc.MS_MOVE)
            except OSError:
                pass

    def setup_net(self) -> None:
        net = self.cfg.get("net", "none")
        if net == "host":
            return
        if self.cfg.get("detach_netns"):
            self.netns_path = os.path.join(self.state_dir, "netns")
            with open(self.netns_path, "w"):
                pass
            pid = os.fork()
            if pid == 0:  # pinning helper: new netns, lo up, bind-mount it, exit
                code = 0
                try:
                    sc.unshare(sc.CLONE_NEWNET)
                    set_link_up("lo")
                    sc.mount("/proc/self/ns/net", self.netns_path, None, sc.MS_BIND)
                except BaseException as e:  # noqa: BLE001 - report and exit the fork
                    os.write(2, f"rootlessnet: cannot create the detached netns: {e}\n".encode())
                    code = 1
                os._exit(code)
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise ChildError("cannot create the detached network namespace")
        else:
            sc.unshare(sc.CLONE_NEWNET)
            set_link_up("lo")
            self.remount_sysfs()

    def copy_up(self) -> None:
        """tmpfs+symlink copy-up (as rootlesskit): DIR becomes a writable tmpfs
        whose entries are symlinks into a private bind mount of the original.

        The bind mounts are staged in a private tmpfs that must not lie under a
        copied-up directory (its tmpfs would hide them): STATE/.ro, or a fresh
        /tmp/rootlessnet-copyup-* when the state dir is inside one (the parent
        removes that empty directory at exit)."""
        dirs = [os.path.abspath(d) for d in self.cfg.get("copy_up") or []]
        if not dirs:
            return

        def under(path: str) -> bool:
            return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)

        base = os.path.join(self.state_dir, ".ro")
        if under(base):
            if under("/tmp"):
                raise ChildError(f"--copy-up of {', '.join(dirs)} would hide both the state directory and /tmp: "
                                 "use a --state-dir outside the copied-up directories")
            import tempfile

            base = tempfile.mkdtemp(prefix="rootlessnet-copyup-", dir="/tmp")
            self.staging = base
        else:
            os.makedirs(base, exist_ok=True)
        sc.mount("none", base, "tmpfs", 0, "mode=0755")
        for i, d in enumerate(dirs):
            if not os.path.isdir(d):
                raise ChildError(f"--copy-up={d}: not a directory")
            ro = os.path.join(base, str(i))
            os.mkdir(ro)
            sc.mount(d, ro, None, sc.MS_BIND | sc.MS_REC)
            st = os.stat(d)
            sc.mount("none", d, "tmpfs", 0, f"mode={st.st_mode & 0o7777:o}")
            for name in os.listdir(ro):
                os.symlink(os.path.join(ro, name), os.path.join(d, name))

    def bind_files(self) -> None:
        """Bind STATE/resolv.conf and STATE/hosts over /etc (own, non-detached netns)."""
        for name in self.cfg.get("bind_etc") or []:
            src = os.path.join(self.state_dir, name)
            target = os.path.join("/etc", name)
            if os.path.exists(src) and os.path.exists(target):
                sc.mount(src, target, None, sc.MS_BIND)

    def warn(self, text: str) -> None:
        os.write(2, f"rootlessnet: warning: {text}\n".encode())

    # -- control ops (run on the control thread) ------------------------------

    def op_ping(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        return {"pid": os.getpid(), "netns": os.stat("/proc/thread-self/ns/net").st_ino}, []

    def op_start(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        # `serve` sets start_event once this reply is sent: a command that exits at once
        # (`true`) would otherwise end this process before the parent hears that it started
        return {}, []

    def op_socket(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """A socket made inside the namespace, handed to the parent (tests, dialing).

        Ops return (reply, fds); `serve` closes the fds once they are sent."""
        family = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX,
                  "packet": socket.AF_PACKET}[req.get("family", "inet")]  # packet: raw frames (tests' benches)
        kind = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM, "raw": socket.SOCK_RAW}[req.get("type", "stream")]
        s = socket.socket(family, kind, int(req.get("proto", 0)))
        try:
            if "bind" in req:
                s.bind(tuple(req["bind"]) if family != socket.AF_UNIX else req["bind"])
            if req.get("listen"):
                s.listen(int(req["listen"]))
        except BaseException:
            s.close()
            raise
        return {"netns": os.stat("/proc/thread-self/ns/net").st_ino}, [s.detach()]

    def op_dial(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """A socket connected to HOST:PORT inside the namespace (the builtin port driver's dial)."""
        host, port = req["host"], int(req["port"])
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kind = socket.SOCK_DGRAM if req.get("proto", "tcp") == "udp" else socket.SOCK_STREAM
        s = socket.socket(family, kind)
        try:
            s.settimeout(10)
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return {}, [s.detach()]

    def op_host_tap(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """A new netns pinned at STATE/netns.d/NAME with its own tap (a host of a multi-host network).

        Done on a fresh thread: network namespaces are per thread, so the thread
        unshares one, pins it with a bind mount, opens and configures the tap there."""
        from rootlessnet.ns.tap import TapConfig, open_tap

        name = req["host"]
        d = os.path.join(self.state_dir, "netns.d")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name)
        with open(path, "w"):
            pass
        out: dict[str, Any] = {}

        def work() -> None:
            try:
                sc.unshare(sc.CLONE_NEWNET)
                set_link_up("lo")
                sc.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, sc.MS_BIND)
                fd, vnet, offload = open_tap(req.get("name", "tap0"), vnet=req.get("vnet", True), persist=True, config=TapConfig(
                    mtu=req["mtu"], address=req["address"], prefixlen=req["prefixlen"], gateway=req["gateway"],
                    ipv6=req.get("ipv6", False), address6=req.get("address6")))
                out.update(fd=fd, vnet=vnet, offload=offload)
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                out["error"] = e

        t = threading.Thread(target=work, name=f"host-{name}")
        t.start()
        t.join()
        if "error" in out:
            raise ChildError(f"cannot create host {name}: {out['error']}")
        return {"vnet": out["vnet"], "offload": out["offload"]}, [out["fd"]]

    def make_tap(self) -> tuple[dict[str, Any], list[int]]:
        """The guest's tap (cfg["tap"]), created and configured in the netns, for "ready":
        ({"tap": {"vnet", "offload"}}, [fd]), or ({"tap_error": reason}, []) — the parent
        reports that when it starts the engine."""
        req = self.cfg.get("tap")
        if not req:
            return {}, []
        out: dict[str, Any] = {}

        def work() -> None:
            try:
                if self.netns_path:  # detached: the pinned netns, joined by this thread only
                    fd = os.open(self.netns_path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        sc.setns(fd, sc.CLONE_NEWNET)
                    finally:
                        os.close(fd)
                out["tap"] = open_guest_tap(req)
            except Exception as e:  # noqa: BLE001 - the reason, for the parent's one line
                out["error"] = str(e) or type(e).__name__

        if self.netns_path:
            t = threading.Thread(target=work, name="tap")
            t.start()
            t.join()
        else:
            work()
        if "error" in out:
            return {"tap_error": out["error"]}, []
        fd, vnet, offload = out["tap"]
        return {"tap": {"vnet": vnet, "offload": offload}}, [fd]

    def serve(self) -> None:
        """Control thread: answer requests until the parent closes the channel."""
        # Signals are the main thread's business (it forwards them to the command and
        # blocks them while it spawns it); threads started from here inherit this mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        if self.netns_path:
            fd = os.open(self.netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sc.setns(fd, sc.CLONE_NEWNET)  # this thread only: the command stays in the host netns
            finally:
                os.close(fd)
        while True:
            try:
                msg, fds = recv_msg(self.sock)
            except OSError:
                break
            if msg is None:
                break
            for fd in fds:
                os.close(fd)
            rid = msg.get("id")
            handler = self.ops.get(msg.get("op", ""))
            out_fds: list[int] = []
            try:
                if handler is None:
                    raise ChildError(f"unknown op {msg.get('op')!r}")
                reply, out_fds = handler(msg)
                self.send({"id": rid, "ok": True, **reply}, out_fds)
                if handler == self.op_start:
                    self.start_event.set()
            except Exception as e:  # noqa: BLE001 - every failure becomes a reply
                try:
                    self.send({"id": rid, "ok": False, "error": str(e) or type(e).__name__})
                except OSError:
                    break
            finally:
                for fd in out_fds:  # sent (the kernel holds its own reference) or failed
                    os.close(fd)
        # parent gone: the launcher is dead, so is the instance
        kill_descendants()
        os._exit(1)

    # -- the command ------------------------------------------------------

    def forward(self, signum: int, _frame: Any) -> None:
        if signum == PDEATH_SIG:
            if os.getppid() != self.cfg["parent_pid"]:
                kill_descendants()
                os._exit(128 + signal.SIGKILL)
            return  # only the launcher's thread that forked us ended: the launcher lives on
        if self.cmd_pid is None:
            self.pending_signal = signum
            return
        try:
            os.kill(self.cmd_pid, signum)
        except ProcessLookupError:
            pass

    def spawn(self) -> int:
        """Fork the command (or, with --pidns, its init) and return its pid."""
        argv: list[str] = self.cfg["command"]
        env = dict(os.environ)
        env.update(self.cfg.get("env") or {})
        pidns = bool(self.cfg.get("pidns"))
        reaper = self.cfg.get("reaper", "auto")
        if pidns:
            sc.unshare(sc.CLONE_NEWPID)
        pid = os.fork()
        if pid != 0:
            return pid
        # in the fork: only this thread exists
        try:
            sc.set_pdeathsig(signal.SIGKILL)
            _handle_all(signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            self.sock.close()
            if pidns:
                sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
                if reaper in ("auto", "true"):
                    os._exit(_pid1_init(argv, env))
            _exec(argv, env)
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"rootlessnet: {e}\n".encode())
            os._exit(127)
        os._exit(127)

    def wait_command(self) -> int:
        assert self.cmd_pid is not None
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 1
            if pid == self.cmd_pid:
                return _status_to_code(status)


def _status_to_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _exec(argv: list[str], env: dict[str, str]) -> None:
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        os.write(2, f"rootlessnet: {argv[0]}: command not found\n".encode())
        os._exit(127)
    except PermissionError:
        os.write(2, f"rootlessnet: {argv[0]}: permission denied\n".encode())
        os._exit(126)
    except OSError as e:
        os.write(2, f"rootlessnet: {argv[0]}: {e.strerror}\n".encode())
        os._exit(126)


def _pid1_init(argv: list[str], env: dict[str, str]) -> int:
    """PID 1 of a new PID namespace: run the command, forward signals, reap."""
    pid = os.fork()
    if pid == 0:
        _exec(argv, env)

    def fwd(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    _handle_all(fwd, NOT_FORWARDED)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if got == pid:
            return _status_to_code(status)


def open_guest_tap(req: dict[str, Any]) -> tuple[int, bool, bool]:
    """Create and configure the guest's tap in this thread's netns: (fd, vnet, offload)."""
    from rootlessnet.ns.tap import TapConfig, open_tap

    return open_tap(req["name"], vnet=req.get("vnet", True), offload=req.get("offload", True),
                    persist=True,  # the instance's own netns: the tap goes with it
                    config=TapConfig(mtu=req["mtu"], address=req["address"], prefixlen=req["prefixlen"],
                                     gateway=req["gateway"], ipv6=req.get("ipv6", False),
                                     address6=req.get("address6"), mac=req.get("mac")))


class MapHelper:
    """The id maps, made by a fork of the child taken before it unshares.

    newuidmap/newgidmap must run outside the new user namespace, on the pid
    of a process inside it: the helper stays outside. It plans the maps
    (getsubids or /etc/subuid, /etc/subgid) while the child unshares, waits
    for `go()`, runs the helpers on the child's pid (or nothing, for a
    single-id map the child writes itself), and reports through a pipe:
    {"single": bool, "warning": str|None} or {"error": one line}. The
    launcher takes no part: it is busy importing the engine meanwhile.
    """

    def __init__(self, source: str, close: tuple[int, ...] = ()):
        go_r, self._go = os.pipe()
        self._result, res_w = os.pipe()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for fd in (self._go, self._result, *close):  # the control socket: EOF must mean the child died
                    os.close(fd)
                sc.set_pdeathsig(signal.SIGKILL)
                if os.getppid() == me:
                    code = self._serve(source, me, go_r, res_w)
            except BaseException:  # noqa: BLE001 - a bug: its traceback
                _print_exc()
            os._exit(code)
        self.pid = pid
        os.close(go_r)
        os.close(res_w)

    @staticmethod
    def _serve(source: str, child: int, go_r: int, res_w: int) -> int:
        out: dict[str, Any] = {}
        try:
            plan = idmap.plan_maps(source)  # module attribute: the harness's zygote caches it
            out = {"single": plan.single, "warning": plan.warning}
            if os.read(go_r, 1) != b"g":
                return 1  # the child gave up
            if not plan.single:
                idmap.apply_helpers(plan, child)
        except UserError as e:
            out = {"error": str(e)}
        except OSError as e:  # out of fds while planning, ...: named, not hidden behind a single-id map
            out = {"error": describe(e)}
        os.write(res_w, json.dumps(out).encode())
        return 0

    def go(self) -> dict[str, Any]:
        """The user namespace exists: map it; the helper's report."""
        try:
            os.write(self._go, b"g")
        except BrokenPipeError:
            pass  # it failed before (its report says why)
        os.close(self._go)
        chunks = []
        while True:
            data = os.read(self._result, 65536)
            if not data:
                break
            chunks.append(data)
        os.close(self._result)
        os.waitpid(self.pid, 0)
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            return {"error": "the id-map helper failed (see above)"}


def _print_exc() -> None:
    try:
        import traceback

        os.write(2, traceback.format_exc().encode())
    except BaseException:  # noqa: BLE001
        pass


def _after_fork(keep: int) -> None:
    """Make the fork of the launcher look like a fresh process: default signal handling, an
    empty signal mask, no descriptors but stdio and `keep`, the launcher's objects left alone."""
    import gc

    gc.freeze()  # the launcher's objects are never collected here: their descriptors are not ours
    try:
        signal.set_wakeup_fd(-1)  # trio's
    except (ValueError, OSError):
        pass
    _handle_all(signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in a new interpreter: EPIPE, not death
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


def forked(fd: int, cfg: dict[str, Any]) -> NoReturn:
    """The child's life, in the fork the launcher made: its exit status is the command's."""
    timing.phase("imports")
    code = 1
    try:
        _after_fork(fd)
        code = run(socket.socket(fileno=fd), cfg)
    except BaseException:  # noqa: BLE001 - a bug: its traceback
        _print_exc()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def run(sock: socket.socket, cfg: dict[str, Any]) -> int:
    child = Child(sock, cfg)
    try:
        child.check_parent()
        maps = MapHelper(cfg.get("subid_source", "auto"), close=(sock.fileno(),))
        child.unshare_user()
        timing.phase("user namespace")
        m = maps.go()
        if "error" in m:
            raise ChildError(m["error"])
        if m.get("warning") and not cfg.get("quiet"):
            child.warn(m["warning"])
        child.become_root(bool(m.get("single")))
        timing.phase("id maps")
        child.set_propagation()
        child.setup_net()
        for name, hook in SETUP_HOOKS:
            hook(child)
        child.copy_up()
        child.bind_files()
        timing.phase("mounts, network namespace")
        tap, tap_fds = child.make_tap()
        if tap_fds:
            timing.phase("tap")
    except ChildError as e:
        child.send({"type": "error", "message": str(e)})
        return 1
    except OSError as e:
        child.send({"type": "error", "message": f"namespace set-up failed: {e}"})
        return 1
    if not child.cfg.get("pidns"):  # commands in a PID namespace of their own go through nsenter
        from rootlessnet.ns import execd

        # forked while single-threaded, before the control thread: STATE/exec.sock runs commands fast
        execd.start(child.state_dir, main_netns=child.netns_path, close=(child.sock.fileno(),))
    _handle_all(child.forward, NOT_FORWARDED)
    try:
        child.send({"type": "ready", "pid": os.getpid(), "staging": child.staging, **tap}, tap_fds)
    finally:
        for fd in tap_fds:
            os.close(fd)
    timing.phase("ready")
    threading.Thread(target=child.serve, name="control", daemon=True).start()
    child.start_event.wait()
    # A signal that arrives between the pending check and the command's pid being known
    # would be parked as "pending" and never delivered: block them across that window.
    forwarded = {s for s in signal.valid_signals() if s not in NOT_FORWARDED}
    signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)
    if child.pending_signal is not None:
        return 128 + child.pending_signal
    # Always a subreaper: orphans of the command stay below us, so the whole
    # tree can be killed when the command exits or the launcher dies.
    sc.set_child_subreaper()
    child.cmd_pid = child.spawn()
    timing.phase("command forked")
    signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)  # anything that came meanwhile goes to the command now
    code = child.wait_command()
    timing.phase("command exited")
    kill_descendants()
    timing.phase("what the command left killed")
    return code


# Later layers (the network engine's tap, port drivers) add set-up steps and
# control ops here: (name, callable(child)) run after the netns exists.
SETUP_HOOKS: list[tuple[str, Callable[[Child], None]]] = []

