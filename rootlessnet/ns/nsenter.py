"""`rootlessnet nsenter`: run a command inside a running instance.

Joins the instance's user and mount namespaces and its network namespace
(the pinned one with --detach-netns), the PID namespace when the instance
has its own, with uid/gid 0 as mapped there and the working directory kept,
then execs the command (or, for a PID namespace, forks it and passes its
exit status through). This is what hooks and tools use to get
CAP_NET_ADMIN in the namespace.
"""

from __future__ import annotations

import os
import signal
import sys

from rootlessnet.errors import UserError
from rootlessnet.ns import statedir as sd
from rootlessnet.ns import syscalls as sc


def _same(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_ino == os.stat(b).st_ino and os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def _open(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise UserError(f"cannot open the instance's {what} ({path}): {e.strerror}") from None


def netns_path_outside(state_dir: str, pid: int, name: str | None = None) -> str | None:
    """Path of the instance's pinned netns as seen from outside its mount ns."""
    rel = os.path.join(state_dir, sd.NETNS) if name is None else os.path.join(state_dir, "netns.d", name)
    if not os.path.exists(rel):
        return None
    return f"/proc/{pid}/root{rel}"


def enter(state_dir: str, *, net: bool = True, netns: str | None = None) -> int | None:
    """Join the instance's namespaces in this (single-threaded) process.

    Returns None, or the pid namespace's fd still to be joined by a fork.
    """
    pid = sd.read_child_pid(state_dir)
    user_fd = mnt_fd = net_fd = pid_fd = None
    try:
        if not _same(f"/proc/{pid}/ns/user", "/proc/self/ns/user"):
            user_fd = _open(f"/proc/{pid}/ns/user", "user namespace")
        if not _same(f"/proc/{pid}/ns/mnt", "/proc/self/ns/mnt"):
            mnt_fd = _open(f"/proc/{pid}/ns/mnt", "mount namespace")
        if net:
            pinned = netns_path_outside(state_dir, pid, netns)
            if netns is not None and pinned is None:
                raise UserError(f"no network namespace named {netns!r} in {state_dir} (see `rootlessnet netns list`)")
            path = pinned or f"/proc/{pid}/ns/net"
            if not _same(path, "/proc/self/ns/net"):
                net_fd = _open(path, "network namespace")
        if not _same(f"/proc/{pid}/ns/pid_for_children", "/proc/self/ns/pid"):
            if not _same(f"/proc/{pid}/ns/pid_for_children", f"/proc/{pid}/ns/pid"):
                pid_fd = _open(f"/proc/{pid}/ns/pid_for_children", "PID namespace")
        try:
            if user_fd is not None:
                sc.setns(user_fd, sc.CLONE_NEWUSER)
            if mnt_fd is not None:
                sc.setns(mnt_fd, sc.CLONE_NEWNS)
            if net_fd is not None:
                sc.setns(net_fd, sc.CLONE_NEWNET)
        except OSError as e:
            raise UserError(f"cannot join the instance's namespaces: {e.strerror} (is it running as your user?)") from None
        if user_fd is not None:
            try:
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            except OSError:
                pass
            try:
                os.setgroups([])
            except OSError:
                pass
        return pid_fd
    finally:
        for fd in (user_fd, mnt_fd, net_fd):
            if fd is not None:
                os.close(fd)


def run(state_dir: str, command: list[str], *, net: bool = True, netns: str | None = None,
        hostname: str | None = None) -> int:
    """Enter and exec `command`; returns only an exit status when it forks."""
    if not command:
        raise UserError("missing command: use rootlessnet nsenter [--state-dir DIR] -- CMD [ARGS...]")
    cwd = os.getcwd()
    pid_fd = enter(state_dir, net=net, netns=netns)
    if hostname is not None:
        import socket

        try:
            sc.unshare(sc.CLONE_NEWUTS)
            socket.sethostname(hostname)
        except OSError as e:
            raise UserError(f"cannot set the hostname {hostname!r}: {e.strerror}") from None
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")
    if pid_fd is None:
        _exec(command)
    try:
        sc.setns(pid_fd, sc.CLONE_NEWPID)
    except OSError as e:
        raise UserError(f"cannot join the instance's PID namespace: {e.strerror}") from None
    finally:
        os.close(pid_fd)
    child = os.fork()
    if child == 0:
        try:
            sc.set_pdeathsig(signal.SIGKILL)  # killing nsenter kills the command too
        except OSError:
            pass
        _exec(command)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, lambda n, _f: os.kill(child, n))
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # die of the same signal, so callers see -N as with a plain exec
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _exec(command: list[str]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        print(f"rootlessnet nsenter: {command[0]}: command not found", file=sys.stderr)
        os._exit(127)
    except OSError as e:
        print(f"rootlessnet nsenter: {command[0]}: {e.strerror}", file=sys.stderr)
        os._exit(126)
