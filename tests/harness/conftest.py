"""Helpers for the harness's own tests."""

from __future__ import annotations

import os


def proc_identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time) while the process exists and is not a zombie, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if rest[0] in (b"Z", b"X"):
        return None
    return pid, rest[19].decode()  # field 22: starttime


def alive(identity: tuple[int, str] | None) -> bool:
    return identity is not None and proc_identity(identity[0]) == identity


def processes_with(token: bytes) -> list[int]:
    """Our processes whose command line contains `token`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if token in f.read() and proc_identity(int(name)):
                    out.append(int(name))
        except OSError:
            pass
    return out


def descendants(pid: int) -> list[int]:
    """Live descendants of `pid` (by parent links in /proc)."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    rest = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if rest[0] not in (b"Z", b"X"):
                parent[int(name)] = int(rest[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def open_fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass  # the directory's own fd
    return sorted(out)
