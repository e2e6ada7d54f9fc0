"""Can this machine run sandboxes? `environment_problem()` says what is missing, or None."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys


def _userns_problem() -> str | None:
    if shutil.which("unshare"):
        cmd = ["unshare", "-Ur", "true"]
    else:  # no util-linux: ask the kernel directly
        cmd = [sys.executable, "-c",
               "import ctypes, os, sys; sys.exit(0 if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0 "
               "else os.strerror(ctypes.get_errno()))"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unprivileged user namespaces could not be checked ({' '.join(cmd[:3])}: {e})"
    if r.returncode != 0:
        why = r.stderr.strip() or f"status {r.returncode}"
        return (f"unprivileged user namespaces are unavailable ({' '.join(cmd) if cmd[0] == 'unshare' else 'unshare(CLONE_NEWUSER)'}"
                f" failed: {why}); check the sysctls kernel.unprivileged_userns_clone, user.max_user_namespaces "
                f"and kernel.apparmor_restrict_unprivileged_userns")
    return None


def _tun_problem() -> str | None:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return (f"/dev/net/tun cannot be opened ({e.strerror}): the engine needs a tap device; "
                "load the tun module and make the node mode 0666 (as distributions ship it)")
    os.close(fd)
    return None


@functools.lru_cache(maxsize=None)
def environment_problem() -> str | None:
    """What prevents sandboxes here (one message), or None. Cached per process."""
    problems = [p for p in (_userns_problem(), _tun_problem()) if p]
    return "; ".join(problems) or None
