"""`rootlessnet containerd [RUN FLAGS...] [-- CONTAINERD_ARGS]`: a rootless containerd.

The equivalent of

    rootlessnet run --net=slirp --port-driver=builtin --detach-netns \\
        --copy-up=/etc --copy-up=/run --copy-up=/var/lib --propagation=rslave \\
        --state-dir=$XDG_RUNTIME_DIR/rootlessnet-containerd -- <inner>

(every flag of `rootlessnet run` is accepted and overrides these; `--copy-up`
adds to the three) where <inner> — `inner_main` below, as uid 0 in the
instance's user and mount namespaces, host netns (the containers' network
lives in the detached netns, reached by the CNI hook through nsenter) —

- gives the instance a private, writable `/run/netns` (copy-up of /run would
  leave a symlink to the host's root-owned one),
- bind-mounts the user's directories on the standard paths, so containerd,
  ctr and the CNI plugins run with their defaults:

      /run/containerd     STATE/containerd                       (runtime state, sockets)
      /var/lib/containerd $XDG_DATA_HOME/rootlessnet-containerd/containerd
      /var/lib/cni        $XDG_DATA_HOME/rootlessnet-containerd/cni
      /etc/containerd     $XDG_CONFIG_HOME/rootlessnet-containerd/containerd
      /etc/cni            $XDG_CONFIG_HOME/rootlessnet-containerd/cni

- starts containerd (own session: a terminal's Ctrl-C reaches us, not it) as
  a child of a subreaper, so the shims it starts stay below us,
- prints how to reach it once its socket answers,
- on SIGTERM/SIGINT/SIGHUP/SIGQUIT: stops every task (SIGTERM, then deletes
  them with --force after the grace period; deletion runs the poststop hooks,
  i.e. CNI DEL), then SIGTERMs containerd, then kills any shim left.

The default `config.toml` and CNI conflist are written only when the user has
none (they are the user's files afterwards).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

from rootlessnet.errors import UserError

NAME = "rootlessnet-containerd"
DEFAULT_COPY_UP = ["/etc", "/run", "/var/lib"]
SBIN = ["/usr/local/sbin", "/usr/sbin", "/sbin"]
INSIDE_SOCKET = "/run/containerd/containerd.sock"
READY_TIMEOUT = 60.0
CONFLIST_NAME = "10-rootlessnet.conflist"
CNI_NETWORK = "rootlessnet"
CNI_SUBNET = "10.4.0.0/24"

CONFIG_TOML = """\
# Written by `rootlessnet containerd` because there was none; it is yours now
# (it is never overwritten). Paths are as seen inside the instance: they are
# bind mounts of your XDG directories (see docs/containers.md).
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
# CRI needs cgroups and root-only sysctls; ctr, nerdctl-style clients and the
# task API do not use it.
# devmapper and aufs need root (they only log errors).
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
oom_score = 0

[grpc]
  address = "/run/containerd/containerd.sock"
  uid = 0
  gid = 0

[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"

# No cgroup for containerd itself (nothing is delegated to the user).
[cgroup]
  path = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
"""


def default_conflist() -> str:
    """bridge + host-local on 10.4.0.0/24 (as nerdctl), portmap for published ports, firewall."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": CNI_SUBNET, "gateway": "10.4.0.1"}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning"},
        ],
    }, indent=2) + "\n"


# -- directories -------------------------------------------------------------------


def runtime_dir(env: dict[str, str] | None = None, uid: int | None = None,
                candidates: list[str] | None = None) -> tuple[str, bool]:
    """The user's XDG runtime dir: $XDG_RUNTIME_DIR, else /run/user/UID (when it is
    ours), else /tmp/rootlessnet-runtime-UID, created 0700. Returns (dir, created)."""
    env = os.environ if env is None else env
    uid = os.getuid() if uid is None else uid
    d = env.get("XDG_RUNTIME_DIR")
    if d and _private_dir(d, uid, strict=False):
        return d, False
    for cand in (candidates if candidates is not None else [f"/run/user/{uid}"]):
        if _private_dir(cand, uid):
            return cand, False
    fallback = f"/tmp/rootlessnet-runtime-{uid}"
    created = False
    try:
        os.mkdir(fallback, 0o700)
        created = True
    except FileExistsError:
        pass
    except OSError as e:
        raise UserError(f"no XDG_RUNTIME_DIR and cannot create {fallback}: {e.strerror} (set XDG_RUNTIME_DIR to a private directory you own)") from None
    if not _private_dir(fallback, uid):
        raise UserError(f"{fallback} exists but is not a private (0700) directory owned by you: remove it, or set XDG_RUNTIME_DIR")
    return fallback, created


def _private_dir(path: str, uid: int, strict: bool = True) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or not os.access(path, os.W_OK | os.X_OK):
        return False
    return not (strict and st.st_mode & 0o077)


def _inside(path: str, dirs: list[str]) -> str | None:
    """The directory of `dirs` that contains `path` (symlinks resolved), if any."""
    real = os.path.realpath(path)
    for d in dirs:
        rd = os.path.realpath(d)
        if real == rd or real.startswith(rd.rstrip("/") + "/"):
            return d
    return None


def _xdg(var: str, fallback: str) -> str:
    v = os.environ.get(var)
    if v and os.path.isabs(v):
        return v
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, fallback)


class Layout:
    """Where everything lives, on the host side."""

    def __init__(self, state_dir: str | None = None, copy_up: list[str] | None = None):
        self.runtime, self.runtime_created = runtime_dir()
        self.state = os.path.abspath(state_dir) if state_dir else os.path.join(self.runtime, NAME)
        self.moved_from: str | None = None
        inside = _inside(self.state, copy_up or DEFAULT_COPY_UP)
        if inside:
            # The launcher's copy-up keeps its read-only binds under STATE/.ro: a state
            # dir inside a copied-up directory (XDG_RUNTIME_DIR=/run/user/UID with
            # --copy-up=/run) would be hidden by the tmpfs. Until copy-up keeps them
            # elsewhere, use a runtime dir outside.
            if state_dir:
                raise UserError(f"--state-dir {self.state} is inside --copy-up={inside}: the copy-up would hide it; "
                                f"choose a directory outside {', '.join(copy_up or DEFAULT_COPY_UP)} (e.g. under /tmp)")
            self.moved_from = self.state
            self.runtime, self.runtime_created = runtime_dir(env={}, candidates=[])
            self.state = os.path.join(self.runtime, NAME)
        self.data = os.path.join(_xdg("XDG_DATA_HOME", ".local/share"), NAME)
        self.config = os.path.join(_xdg("XDG_CONFIG_HOME", ".config"), NAME)
        self.run_containerd = os.path.join(self.state, "containerd")  # cleaned with the state dir
        self.binds = [  # (host source, path inside)
            (self.run_containerd, "/run/containerd"),
            (os.path.join(self.data, "containerd"), "/var/lib/containerd"),
            (os.path.join(self.data, "cni"), "/var/lib/cni"),
            (os.path.join(self.config, "containerd"), "/etc/containerd"),
            (os.path.join(self.config, "cni"), "/etc/cni"),
        ]

    @property
    def socket(self) -> str:
        """containerd's socket as seen from the host."""
        return os.path.join(self.run_containerd, "containerd.sock")

    @property
    def config_toml(self) -> str:
        return os.path.join(self.config, "containerd", "config.toml")

    @property
    def net_d(self) -> str:
        return os.path.join(self.config, "cni", "net.d")

    def prepare(self) -> list[str]:
        """Create the user's directories and default files; returns what was written."""
        written = []
        for src, _ in self.binds[1:]:
            os.makedirs(src, mode=0o700, exist_ok=True)
        os.makedirs(self.net_d, mode=0o755, exist_ok=True)
        if not os.path.exists(self.config_toml):
            _write(self.config_toml, CONFIG_TOML)
            written.append(self.config_toml)
        if not any(n.endswith((".conf", ".conflist", ".json")) for n in os.listdir(self.net_d)):
            p = os.path.join(self.net_d, CONFLIST_NAME)
            _write(p, default_conflist())
            written.append(p)
        return written


def force_rmtree(path: str) -> None:
    """rm -rf for trees containerd made as uid 0 inside: some directories (the shim
    sockets' `s`) are mode 0600, which only CAP_DAC_OVERRIDE could enter; we own
    them, so make them searchable first."""
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    os.chmod(path, 0o700)
    for root, dirs, _files in os.walk(path, onerror=lambda e: None):  # top-down: fixed before entered
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o700)
                except OSError:
                    pass
    shutil.rmtree(path, ignore_errors=True)


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def search_path(path: str | None) -> str:
    """PATH with the sbin directories (runc, iptables live there on Debian; users' PATH lacks them)."""
    parts = [p for p in (path or "/usr/local/bin:/usr/bin:/bin").split(":") if p]
    return ":".join(parts + [d for d in SBIN if d not in parts])


# -- the parent side ---------------------------------------------------------------


def _check_binaries(path: str) -> None:
    need = {"containerd": "containerd", "containerd-shim-runc-v2": "containerd", "runc": "runc", "ctr": "containerd"}
    missing = sorted({pkg for b, pkg in need.items() if shutil.which(b, path=path) is None})
    if missing:
        names = ", ".join(b for b, pkg in need.items() if shutil.which(b, path=path) is None)
        raise UserError(f"{names} not found in PATH: install {' '.join(missing)} (Debian: apt-get install {' '.join(missing)})")


def _check_not_running(state: str) -> None:
    """A friendlier message than the launcher's lock error."""
    lock = os.path.join(state, "lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise UserError(_locked_message(state)) from None
    finally:
        os.close(fd)


def _locked_message(state: str) -> str:
    return (f"rootlessnet containerd is already running with state directory {state} "
            f"(stop it first, or start another one with --state-dir)")


def _inner_argv(cfg: dict) -> list[str]:
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path.insert(0, {pkg_parent!r}); "
            "from rootlessnet.oci.containerd import inner_main; sys.exit(inner_main(sys.argv[1]))")
    return [sys.executable, "-c", code, json.dumps(cfg)]


def flag_set():
    """`rootlessnet run`'s flags (Go-style, compat.rootlesskit) with this command's defaults and its own two."""
    from rootlessnet.compat import rootlesskit
    from rootlessnet.compat.goflags import BOOL, STRING, Flag

    extra = [
        Flag("stop-timeout", STRING, "10", "on SIGTERM/SIGINT, how long tasks get to stop before they are killed "
             "(seconds)", category="containerd", metavar="SECONDS"),
        Flag("print-env", BOOL, False, "print the directories and addresses this would use, and exit",
             category="containerd"),
    ]
    return rootlesskit.flag_set(extra, defaults={"detach-netns": True, "propagation": "rslave",
                                                 "port-driver": "builtin", "net": "slirp"})


def main(argv: list[str]) -> int:
    """`rootlessnet containerd [RUN FLAGS] [-- CONTAINERD ARGS]`."""
    import shlex

    import trio

    from rootlessnet.compat import rootlesskit
    from rootlessnet.instance import run_command

    fs = flag_set()
    outcome, parsed = rootlesskit.parse(argv, fs)
    if outcome.text is not None:
        if parsed is not None and parsed.help:
            outcome.text = outcome.text.replace("rootlessnet run", "rootlessnet containerd", 2)
        sys.stdout.write(outcome.text)
        return outcome.exit_code
    opts, v = outcome.opts, parsed.values
    try:
        stop_timeout = float(v["stop-timeout"])
        if not 0 <= stop_timeout <= 3600:
            raise ValueError
    except ValueError:
        raise UserError(f"--stop-timeout {v['stop-timeout']!r}: give seconds, 0..3600") from None
    if "true" in (opts.sandbox, opts.sandbox_fs, opts.sandbox_seccomp):
        # auto leaves this launcher alone: after the instance it still cleans containerd's files (chmod, rmtree)
        raise UserError("--sandbox=true is not supported by rootlessnet containerd: its launcher cleans up "
                        "containerd's files after the instance (use rootlessnet run --sandbox=true)")
    copy_up = list(DEFAULT_COPY_UP) + [d for d in opts.copy_up if d not in DEFAULT_COPY_UP]
    lay = Layout(opts.state_dir, copy_up)
    if "XDG_RUNTIME_DIR" not in os.environ:
        os.environ["XDG_RUNTIME_DIR"] = lay.runtime
    path = search_path(os.environ.get("PATH"))
    if v["print-env"]:  # for eval "$(rootlessnet containerd --print-env)"
        for k, val in (("ROOTLESSNET_STATE_DIR", lay.state), ("ROOTLESSKIT_STATE_DIR", lay.state),
                       ("CONTAINERD_ADDRESS", INSIDE_SOCKET), ("CONTAINERD_HOST_SOCKET", lay.socket),
                       ("ROOTLESSNET_CONTAINERD_DATA", lay.data), ("ROOTLESSNET_CONTAINERD_CONFIG", lay.config)):
            print(f"{k}={shlex.quote(val)}")
        return 0
    rootlesskit.print_notes(outcome.notes or [], opts.quiet)
    if lay.moved_from and not opts.quiet:
        print(f"rootlessnet containerd: state directory {lay.state} ({lay.moved_from} is inside a copied-up directory)",
              file=sys.stderr)
    _check_binaries(path)
    _check_not_running(lay.state)
    force_rmtree(lay.run_containerd)  # a crash's leftovers (the launcher's clean-up cannot enter `s/`)
    for p in lay.prepare():
        print(f"rootlessnet containerd: wrote default {p}", file=sys.stderr)
    cfg = {
        "state_dir": lay.state,
        "binds": lay.binds,
        "containerd": ["containerd", "--config", "/etc/containerd/config.toml", *opts.command],
        "stop_timeout": stop_timeout,
        "socket": INSIDE_SOCKET,
        "host_socket": lay.socket,
        "path": path,
    }
    opts.command = _inner_argv(cfg)
    opts.copy_up = copy_up
    opts.state_dir = lay.state
    opts.env = {"PATH": path}
    opts.own_process = False  # not confined by default: see the --sandbox=true refusal above
    opts.validate()
    try:
        code = trio.run(run_command, opts)
    except BaseException as e:  # noqa: BLE001 - reword the launcher's lock error
        from rootlessnet.errors import find_user_error

        err = find_user_error(e)
        if err is not None and "is locked" in str(err):
            raise UserError(_locked_message(lay.state)) from None
        raise
    force_rmtree(lay.run_containerd)
    return code


# -- the inner side (the instance's command) ----------------------------------------


def _say(text: str) -> None:
    print(f"rootlessnet containerd: {text}", file=sys.stderr, flush=True)


def _setup_mounts(binds: list[list[str]]) -> None:
    from rootlessnet.ns import syscalls as sc

    # a private /run/netns: with --copy-up=/run it is a symlink to the host's root-owned one
    netns = "/run/netns"
    if os.path.islink(netns) or (os.path.exists(netns) and not os.access(netns, os.W_OK)):
        if os.path.islink(netns):
            os.unlink(netns)
        else:
            sc.mount("none", netns, "tmpfs", 0, "mode=0755")
    os.makedirs(netns, mode=0o755, exist_ok=True)
    for src, dst in binds:
        os.makedirs(src, mode=0o700, exist_ok=True)
        if os.path.islink(dst):
            os.unlink(dst)  # copy-up symlink to the host's directory
        try:
            os.makedirs(dst, mode=0o755, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {dst} inside ({e.strerror}): keep --copy-up={os.path.dirname(dst)}") from None
        sc.mount(src, dst, None, sc.MS_BIND | sc.MS_REC)


def _socket_ready(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Inner:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.proc: subprocess.Popen | None = None
        self.stop_requested: int | None = None
        self.status: int | None = None  # containerd's wait status, once reaped

    def on_signal(self, signum: int, _frame) -> None:
        if self.stop_requested is None:
            self.stop_requested = signum

    def forward(self, signum: int, _frame) -> None:
        if self.proc is not None and self.status is None:
            try:
                os.kill(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        """Reap every child that exited (we are a subreaper: shims end up here)."""
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.proc is not None and pid == self.proc.pid:
                self.status = st
                self.proc.returncode = os.waitstatus_to_exitcode(st)

    def ctr(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["ctr", "--address", self.cfg["socket"], *args], capture_output=True, text=True,
                                  timeout=timeout, start_new_session=True)
        except (OSError, subprocess.TimeoutExpired) as e:
            _say(f"ctr {' '.join(args)}: {e}")
            return None

    def tasks(self) -> list[tuple[str, str, str]]:
        """(namespace, task id, status) of every task."""
        out = []
        r = self.ctr("namespaces", "ls", "-q")
        for ns in (r.stdout.split() if r and r.returncode == 0 else []):
            t = self.ctr("-n", ns, "tasks", "ls")
            if not t or t.returncode != 0:
                continue
            for line in t.stdout.splitlines()[1:]:
                parts = line.split()
                if len(parts) >= 3:
                    out.append((ns, parts[0], parts[2]))
        return out

    def stop_tasks(self) -> int:
        """SIGTERM every running task, SIGKILL what is left after the grace period,
        then delete them all (runc delete runs the poststop hooks: CNI DEL).

        Never `kill --all` / `delete --force`: without a cgroup, runc cannot find
        the container's processes ("lstat : no such file or directory"); the
        container's init is PID 1 of its PID namespace, killing it is enough."""
        tasks = self.tasks()
        timeout = float(self.cfg.get("stop_timeout", 10))
        running = [(ns, tid) for ns, tid, st in tasks if st not in ("STOPPED", "UNKNOWN")]
        for sig, grace in (("SIGTERM", timeout), ("SIGKILL", 10.0)):
            for ns, tid in running:
                self.ctr("-n", ns, "tasks", "kill", "--signal", sig, tid)
            deadline = time.monotonic() + grace
            while running and time.monotonic() < deadline:
                time.sleep(0.2)
                states = {(ns, tid): st for ns, tid, st in self.tasks()}
                running = [k for k in running if states.get(k) not in (None, "STOPPED")]
            if not running:
                break
            if sig == "SIGTERM":
                _say(f"{len(running)} task(s) did not stop in {timeout:g} s after SIGTERM: sending SIGKILL")
        for ns, tid, _ in tasks:
            r = self.ctr("-n", ns, "tasks", "delete", tid, timeout=60)
            if r is not None and r.returncode != 0 and "not found" not in r.stderr:
                _say(f"ctr -n {ns} tasks delete {tid}: {r.stderr.strip()}")
        return len(tasks)

    def children(self) -> list[int]:
        from rootlessnet.ns.child import descendants

        return descendants(os.getpid())

    def shutdown(self) -> None:
        assert self.proc is not None
        if self.status is None and _socket_ready(self.cfg["socket"]):
            n = self.stop_tasks()
            if n:
                _say(f"stopped and deleted {n} task(s)")
        if self.status is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._wait(lambda: self.status is not None, 15)
            if self.status is None:
                _say("containerd did not exit in 15 s: killing it")
                os.kill(self.proc.pid, signal.SIGKILL)
                self._wait(lambda: self.status is not None, 5)
        # shims of deleted tasks exit by themselves; anything left is killed
        self._wait(lambda: not self.children(), 5)
        left = self.children()
        if left:
            _say(f"killing {len(left)} leftover process(es) (shims, containers): {' '.join(map(str, left))}")
            for _ in range(20):
                for pid in self.children():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self._wait(lambda: not self.children(), 0.5)
                if not self.children():
                    break

    def _wait(self, pred, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.reap()
            if pred() or time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def ready_message(self) -> str:
        state = self.cfg["state_dir"]
        try:
            with open(f"/proc/{os.getppid()}/stat") as f:
                launcher = f.read().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            launcher = "the launcher"
        q = f"rootlessnet nsenter --state-dir {state} --"
        return (f"rootlessnet containerd: containerd (pid {self.proc.pid if self.proc else '?'}) is ready.\n"
                f"  socket inside: {self.cfg['socket']} (host side: {self.cfg['host_socket']})\n"
                f"  use it:  {q} ctr images ls\n"
                f"           {q} ctr images import IMAGE.tar\n"
                f"           {q} ctr run --rm --cgroup \"\" --cpu-shares 0 IMAGE ID CMD...\n"
                f"  stop it: kill -TERM {launcher} (or Ctrl-C): tasks are stopped first, then containerd\n")

    def run(self) -> int:
        from rootlessnet.ns import syscalls as sc

        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(s, self.on_signal)
        for s in (signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, self.forward)
        # The namespace child's parent-death signal also fires when the launcher's
        # *thread* that spawned it exits (trio spawns from a worker thread that idles
        # out after 10 s), and the child then forwards it here: ignore it. A real
        # launcher death is handled by the child itself (it kills the whole tree).
        from rootlessnet.ns.child import PDEATH_SIG

        signal.signal(PDEATH_SIG, signal.SIG_IGN)
        _setup_mounts(self.cfg["binds"])
        sc.set_child_subreaper()
        env = dict(os.environ)
        env["PATH"] = self.cfg["path"]
        if self.stop_requested is not None:
            return 0
        try:
            self.proc = subprocess.Popen(self.cfg["containerd"], env=env, start_new_session=True)
        except OSError as e:
            raise UserError(f"cannot start containerd: {e.strerror}") from None
        deadline = time.monotonic() + READY_TIMEOUT
        ready = False
        while self.stop_requested is None and self.status is None:
            self.reap()
            if not ready:
                if _socket_ready(self.cfg["socket"]):
                    ready = True
                    sys.stdout.write(self.ready_message())
                    sys.stdout.flush()
                elif time.monotonic() > deadline:
                    _say(f"containerd's socket did not answer in {READY_TIMEOUT:.0f} s: stopping it")
                    self.stop_requested = signal.SIGTERM
                    break
            time.sleep(0.1 if not ready else 0.25)
        if self.status is not None:
            code = os.waitstatus_to_exitcode(self.status)
            _say(f"containerd exited on its own (status {code})")
            self.shutdown()
            return 128 - code if code < 0 else (code or 1)
        self.shutdown()
        code = os.waitstatus_to_exitcode(self.status) if self.status is not None else -signal.SIGKILL
        if code in (0, -signal.SIGTERM):
            _say("stopped")
            return 0 if ready else 1
        return 128 - code if code < 0 else code


def inner_main(cfg_json: str) -> int:
    cfg = json.loads(cfg_json)
    try:
        return Inner(cfg).run()
    except UserError as e:
        _say(str(e))
        return 1
