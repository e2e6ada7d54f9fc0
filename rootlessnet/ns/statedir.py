"""The state directory, compatible with rootlesskit's.

Layout: `lock` (flock, held for the instance's life), `child_pid` (written
last: the readiness signal), `api.sock`, `netns` (pinned detached netns),
`resolv.conf`, `hosts`, and what the OCI hook and `rootlessnet containerd`
keep there (`OWNED`). A directory given by the user is cleaned at start of
the names in `OWNED` only (leftovers of a crash) and again at exit, when
`lock` stays; nothing else in it is ever deleted. A default one is a fresh
private temporary directory, removed on exit.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile

from rootlessnet.errors import UserError

LOCK = "lock"
CHILD_PID = "child_pid"
API_SOCK = "api.sock"
NETNS = "netns"
RESOLV_CONF = "resolv.conf"
HOSTS = "hosts"
# Every name an instance or our tools create in a state directory; nothing else is removed.
OWNED = frozenset({
    CHILD_PID, API_SOCK, NETNS, RESOLV_CONF, HOSTS,
    ".ro",  # copy-up staging (ns/child.py)
    ".cgroup",  # where the child keeps /sys/fs/cgroup while it mounts a fresh sysfs
    "netns.d", "cni-netns", "cni-cache", "oci-hook.log",  # named netns pins, the OCI hook's files
    "containerd",  # rootlessnet containerd's runtime state
    "sandbox-probe.json",  # the confinement test hook
    "exec.sock",  # the namespace child's command helper (ns/execd.py)
})


def default_parent() -> str:
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run and os.path.isdir(run) and os.access(run, os.W_OK | os.X_OK):
        return run
    return tempfile.gettempdir()


class StateDir:
    """Owns a state directory for one instance: lock, files, cleanup."""

    def __init__(self, path: str | None):
        self.temporary = path is None
        self._lock_fd: int | None = None
        if path is not None and not path.strip():
            raise UserError("--state-dir is empty (an unset variable?): give a directory, "
                            "or leave the flag out for a temporary one")
        try:
            if path is None:
                path = tempfile.mkdtemp(prefix="rootlessnet-", dir=default_parent())
            else:
                path = os.path.abspath(path)
                if not os.path.isdir(path):
                    os.makedirs(path, mode=0o700)
        except FileExistsError:
            raise UserError(f"state directory {path} exists and is not a directory") from None
        except OSError as e:
            raise UserError(f"cannot create state directory {path}: {e.strerror} (choose a directory you can write with --state-dir)") from None
        self.path = path
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"state directory {path} is not writable (choose a directory you own with --state-dir)")

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def acquire(self) -> None:
        """Take the lock (a second instance fails) and clean leftovers."""
        try:
            fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise UserError(f"cannot create {self.file(LOCK)}: {e.strerror} (choose a directory you own with --state-dir)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise UserError(f"state directory {self.path} is locked: another instance is running with the same state directory? (stop it, or use another --state-dir)") from None
            raise
        self._lock_fd = fd
        try:  # api.sock lives here: the directory is private to the user
            if os.stat(self.path).st_mode & 0o077:
                os.chmod(self.path, 0o700)
        except OSError as e:
            raise UserError(f"cannot make state directory {self.path} private: {e.strerror}") from None
        self._clean()

    @staticmethod
    def owned(name: str) -> bool:
        """Whether `name` (an entry of the state directory) is one of ours."""
        return name in OWNED or (name.endswith(".tmp") and name[:-4] in OWNED | {LOCK})

    def _clean(self) -> None:
        for name in os.listdir(self.path):
            if not self.owned(name):
                continue
            p = self.file(name)
            try:
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
            except OSError as e:
                raise UserError(f"cannot clean stale {p} in the state directory: {e.strerror} (remove it by hand)") from None

    def write(self, name: str, data: str, mode: int = 0o644) -> str:
        """Write a file atomically (tmp + rename) so readers never see half of it."""
        p = self.file(name)
        tmp = p + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            try:
                view = memoryview(data.encode())
                while view:  # a short write on a nearly full file system must not go unnoticed
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            from rootlessnet.errors import describe

            raise UserError(f"cannot write {p}: {describe(e)}") from None
        os.rename(tmp, p)
        return p

    def release(self) -> None:
        """Remove what this instance wrote (the names we own, but `lock`); the directory too if temporary."""
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            try:
                names = os.listdir(self.path)
            except OSError:
                names = []
            for name in names:
                if self.owned(name):
                    p = self.file(name)
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        try:
                            os.unlink(p)
                        except OSError:
                            pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def from_environment(value: str | None) -> str:
    """The state directory a client command means: `value`, else $ROOTLESSNET_STATE_DIR / $ROOTLESSKIT_STATE_DIR."""
    value = value or os.environ.get("ROOTLESSNET_STATE_DIR") or os.environ.get("ROOTLESSKIT_STATE_DIR")
    if not value:
        raise UserError("no instance given: use --state-dir DIR (or set ROOTLESSKIT_STATE_DIR)")
    return value


def read_child_pid(state_dir: str) -> int:
    """The running instance's child pid, or a UserError saying why not."""
    p = os.path.join(state_dir, CHILD_PID)
    try:
        with open(p) as f:
            pid = int(f.read().strip())
    except FileNotFoundError:
        raise UserError(f"no running instance in {state_dir} ({CHILD_PID} is missing): start one with `rootlessnet run --state-dir {state_dir} ...`") from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {p}: {e}") from None
    if not os.path.exists(f"/proc/{pid}"):
        raise UserError(f"the instance in {state_dir} is gone (child pid {pid} is not running)")
    return pid
