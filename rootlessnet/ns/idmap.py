"""User-namespace id maps: subordinate ranges and newuidmap/newgidmap.

The caller's uid/gid map to 0 inside; its subordinate ranges (from
`getsubids` or /etc/subuid and /etc/subgid) map to 1..N. Without helpers or
ranges (or with --subid-source=none) the namespace gets a single-id map that
the child writes itself.
"""

from __future__ import annotations

import errno
import os
import pwd
import grp
import shutil
import subprocess
from dataclasses import dataclass, field

from rootlessnet.errors import UserError

SUBID_SOURCES = ("auto", "static", "none")


@dataclass(frozen=True)
class MapPlan:
    """What to write to uid_map/gid_map. Empty `sub_*` means a single-id map."""

    uid: int
    gid: int
    sub_uid: tuple[int, int] | None = None  # (start, count)
    sub_gid: tuple[int, int] | None = None
    newuidmap: str | None = None
    newgidmap: str | None = None
    warning: str | None = field(default=None, compare=False)

    @property
    def single(self) -> bool:
        return self.sub_uid is None


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def parse_subid_file(text: str, name: str | None, ident: int) -> tuple[int, int] | None:
    """First range for `name` (or the numeric id) in /etc/subuid format."""
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0].startswith("#"):
            continue
        if parts[0] == name or parts[0] == str(ident):
            try:
                start, count = int(parts[1]), int(parts[2])
            except ValueError:
                continue
            if count > 0:
                return start, count
    return None


# out of descriptors is not "no range": the caller reports it (a single-id map would hide the cause)
_NO_FDS = (errno.EMFILE, errno.ENFILE)


def _static_range(path: str, name: str | None, ident: int) -> tuple[int, int] | None:
    try:
        with open(path) as f:
            return parse_subid_file(f.read(), name, ident)
    except OSError as e:
        if e.errno in _NO_FDS:
            raise
        return None


def _getsubids_range(name: str, group: bool) -> tuple[int, int] | None:
    exe = shutil.which("getsubids")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *(["-g"] if group else []), name], capture_output=True, text=True, timeout=10)
    except OSError as e:
        if e.errno in _NO_FDS:
            raise
        return None
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():  # "0: user 100000 65536"
        parts = line.split()
        if len(parts) >= 4:
            try:
                return int(parts[2]), int(parts[3])
            except ValueError:
                continue
    return None


def plan_maps(source: str = "auto") -> MapPlan:
    """Decide the id maps for a new user namespace of the calling user."""
    if source not in SUBID_SOURCES:
        raise UserError(f"unknown --subid-source {source!r}: use one of {', '.join(SUBID_SOURCES)}")
    uid, gid = os.getuid(), os.getgid()
    if source == "none":
        return MapPlan(uid, gid, warning="--subid-source=none: only uid/gid 0 exist inside the namespace")
    name = _user_name(uid)
    newuidmap, newgidmap = shutil.which("newuidmap"), shutil.which("newgidmap")
    if newuidmap is None or newgidmap is None:
        if source == "static":
            raise UserError("newuidmap/newgidmap not found: install the uidmap package (apt-get install uidmap), or use --subid-source=none for a single-id map")
        return MapPlan(uid, gid, warning="newuidmap/newgidmap not found (apt-get install uidmap): using a single-id map, only uid/gid 0 exist inside")
    sub_uid = sub_gid = None
    if source == "auto" and name:
        sub_uid, sub_gid = _getsubids_range(name, False), _getsubids_range(name, True)
    if sub_uid is None:
        sub_uid = _static_range("/etc/subuid", name, uid)
    if sub_gid is None:
        sub_gid = _static_range("/etc/subgid", _group_name(gid) if name is None else name, gid) or _static_range("/etc/subgid", _group_name(gid), gid)
    if sub_uid is None or sub_gid is None:
        which = "/etc/subuid" if sub_uid is None else "/etc/subgid"
        fix = f"add a range for {name or uid} to {which} (e.g. usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name or uid})"
        if source == "static":
            raise UserError(f"no subordinate id range for {name or uid} in {which}: {fix}, or use --subid-source=none")
        return MapPlan(uid, gid, warning=f"no subordinate ids in {which}: using a single-id map ({fix})")
    return MapPlan(uid, gid, sub_uid, sub_gid, newuidmap, newgidmap)


def helper_args(plan: MapPlan, pid: int) -> list[list[str]]:
    """The newuidmap and newgidmap command lines for `pid`."""
    assert plan.sub_uid and plan.sub_gid and plan.newuidmap and plan.newgidmap
    return [
        [plan.newuidmap, str(pid), "0", str(plan.uid), "1", "1", str(plan.sub_uid[0]), str(plan.sub_uid[1])],
        [plan.newgidmap, str(pid), "0", str(plan.gid), "1", "1", str(plan.sub_gid[0]), str(plan.sub_gid[1])],
    ]


def apply_helpers(plan: MapPlan, pid: int) -> None:
    """Run newuidmap/newgidmap for `pid`; a failure is a UserError naming the fix."""
    for argv in helper_args(plan, pid):
        tool = os.path.basename(argv[0])
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError as e:
            raise UserError(f"{tool} could not run ({e.strerror}): reinstall the uidmap package (apt-get install --reinstall uidmap)") from None
        except subprocess.TimeoutExpired:
            raise UserError(f"{tool} did not finish in 30 s") from None
        if out.returncode != 0:
            detail = (out.stderr or out.stdout).strip().splitlines()
            detail_s = detail[-1] if detail else f"exit status {out.returncode}"
            files = "/etc/subuid" if tool == "newuidmap" else "/etc/subgid"
            raise UserError(f"{tool} failed: {detail_s} (check the range for {_user_name(plan.uid) or plan.uid} in {files}, and that {argv[0]} is setuid root)")


def write_single_map(uid: int, gid: int, pid: str = "self") -> None:
    """Single-id map written by the namespace's own process (no helpers needed)."""
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(f"0 {uid} 1\n")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(f"0 {gid} 1\n")
