"""Can this machine run sandboxes? `environment_problem()` says what is missing, or None.

Checked: unprivileged user namespaces (by trying one, then naming the sysctl
that forbids them: kernel.unprivileged_userns_clone, user.max_user_namespaces,
or Ubuntu's kernel.apparmor_restrict_unprivileged_userns), /dev/net/tun.
`missing(("newuidmap",))` names what a test asks for on top: newuidmap and
newgidmap (package uidmap) with a subordinate range for the user, which
give a namespace more ids than the caller's own.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from typing import Callable

SYSCTLS = (  # (file under /proc/sys, value that forbids, the sysctl to set)
    ("kernel/apparmor_restrict_unprivileged_userns", "1", "kernel.apparmor_restrict_unprivileged_userns=0"),
    ("kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=1"),
    ("user/max_user_namespaces", "0", "user.max_user_namespaces=15000"),
)
KNOWN_REQUIREMENTS = ("newuidmap",)


def sysctl_blockers(proc_sys: str = "/proc/sys") -> list[str]:
    """The sysctls set to a value that forbids unprivileged user namespaces, each with its fix."""
    out = []
    for rel, bad, fix in SYSCTLS:
        try:
            with open(os.path.join(proc_sys, rel)) as f:
                if f.read().strip() == bad:
                    name = rel.replace("/", ".")
                    why = " (Ubuntu's AppArmor restriction)" if "apparmor" in rel else ""
                    out.append(f"{name} is {bad}{why}: as root, sysctl -w {fix}")
        except OSError:
            continue
    return out


def _try_userns() -> str | None:
    """None if an unprivileged user namespace can be made here, else why not."""
    if shutil.which("unshare"):
        cmd = ["unshare", "-Ur", "true"]
    else:  # no util-linux: ask the kernel directly
        cmd = [sys.executable, "-c",
               "import ctypes, os, sys; sys.exit(0 if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0 "
               "else os.strerror(ctypes.get_errno()))"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not be checked ({e})"
    if r.returncode != 0:
        return r.stderr.strip() or f"status {r.returncode}"
    return None


def userns_problem(try_userns: Callable[[], str | None] = _try_userns, proc_sys: str = "/proc/sys") -> str | None:
    why = try_userns()
    if why is None:
        return None
    blockers = sysctl_blockers(proc_sys)
    hint = "; ".join(blockers) if blockers else (
        "check kernel.unprivileged_userns_clone, user.max_user_namespaces and "
        "kernel.apparmor_restrict_unprivileged_userns")
    return f"unprivileged user namespaces are unavailable ({why}): {hint}"


def tun_problem(path: str = "/dev/net/tun") -> str | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return (f"{path} cannot be opened ({e.strerror}): the engine needs a tap device; "
                "load the tun module and make the node mode 0666 (as distributions ship it)")
    os.close(fd)
    return None


def newuidmap_problem(which: Callable[[str], str | None] = shutil.which, subuid: str = "/etc/subuid",
                      user: str | None = None) -> str | None:
    missing = [p for p in ("newuidmap", "newgidmap") if which(p) is None]
    if missing:
        return f"{' and '.join(missing)} (package uidmap), for a namespace with more ids than the caller's"
    import pwd

    name = user or pwd.getpwuid(os.getuid()).pw_name
    try:
        with open(subuid) as f:
            mine = [ln for ln in f if ln.split(":")[0] in (name, str(os.getuid()))]
    except OSError:
        mine = []
    if not mine:
        return f"a subordinate id range for {name} in {subuid} (as root: usermod --add-subuids 100000-165535 {name})"
    return None


@functools.lru_cache(maxsize=None)
def environment_problem() -> str | None:
    """What prevents sandboxes here (one message), or None. Cached per process."""
    problems = [p for p in (userns_problem(), tun_problem()) if p]
    return "; ".join(problems) or None


@functools.lru_cache(maxsize=None)
def missing(require: tuple[str, ...]) -> str | None:
    """What of `require` (names in KNOWN_REQUIREMENTS) this machine lacks, as one message, or None."""
    out = []
    for r in require:
        if r == "newuidmap":
            p = newuidmap_problem()
            if p:
                out.append(p)
        else:
            raise ValueError(f"require={r!r}: known requirements are {', '.join(KNOWN_REQUIREMENTS)}")
    return "; ".join(out) or None
