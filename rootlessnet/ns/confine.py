"""A process confines itself: no_new_privs, Landlock, a seccomp filter.

Mechanics only: the caller decides what stays writable and when (the
launcher confines the process that runs the engine once the instance is set
up). Everything is done with raw syscalls through ctypes, so no library is
needed, and each part degrades on its own:

- `PR_SET_NO_NEW_PRIVS`: execve can no longer grant privileges (setuid bits,
  file capabilities). Both Landlock and an unprivileged seccomp filter need it.
- Landlock (Linux 5.13+, when the LSM is enabled): the rights to write, create,
  remove, rename, truncate, execute and ioctl devices are handled, and granted
  back only beneath the given paths. Reading is left alone on purpose: Python
  imports modules lazily, and the engine reads /etc/resolv.conf and /proc.
  The ABI version decides which rights exist (REFER 2, TRUNCATE 3, IOCTL_DEV
  5, all-thread enforcement 8); older ABIs get what they have.
- seccomp (classic BPF): syscalls an engine never needs answer EPERM — not a
  kill, so a stray call is an ordinary error with a clear message. Only
  x86_64 and aarch64 have tables; the filter refuses every syscall made under
  another audit arch (i386 through int 0x80, AArch32) and x32 numbers.

Landlock restricts the calling thread (and threads it creates later) unless
the kernel has LANDLOCK_RESTRICT_SELF_TSYNC (ABI 8): confine before other
threads exist. The seccomp filter is synchronised to every thread (TSYNC).

Modes, per part: "true" (must apply, else ConfineError), "auto" (apply what
the kernel offers, note what was skipped), "false" (leave it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
import time
from dataclasses import dataclass, field
from typing import Any

MODES = ("auto", "true", "false")

PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39

# -- Landlock (include/uapi/linux/landlock.h) -------------------------------------------------

NR_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
NR_LANDLOCK_ADD_RULE = 445
NR_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RESTRICT_SELF_TSYNC = 1 << 3  # ABI 8

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5

FS_NAMES = {
    FS_EXECUTE: "execute", FS_WRITE_FILE: "write_file", FS_REMOVE_DIR: "remove_dir", FS_REMOVE_FILE: "remove_file",
    FS_MAKE_CHAR: "make_char", FS_MAKE_DIR: "make_dir", FS_MAKE_REG: "make_reg", FS_MAKE_SOCK: "make_sock",
    FS_MAKE_FIFO: "make_fifo", FS_MAKE_BLOCK: "make_block", FS_MAKE_SYM: "make_sym", FS_REFER: "refer",
    FS_TRUNCATE: "truncate", FS_IOCTL_DEV: "ioctl_dev",
}
# Rights a rule on a file (not a directory) may carry.
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
# What a writable directory gets back beneath it: everything handled but execute,
# device nodes, reparenting and device ioctls.
FS_WRITABLE_DIR = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SOCK
                   | FS_MAKE_FIFO | FS_MAKE_SYM | FS_TRUNCATE)
FS_WRITABLE_FILE = FS_WRITE_FILE | FS_TRUNCATE


def handled_rights(abi: int) -> int:
    """The rights a ruleset handles at this ABI: all but reading."""
    if abi < 1:
        return 0
    rights = (FS_EXECUTE | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR | FS_MAKE_REG
              | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM)
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def rights_names(mask: int) -> list[str]:
    return [name for bit, name in FS_NAMES.items() if mask & bit]


# -- seccomp ----------------------------------------------------------------------------------

SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
# The engine runs no untrusted code, so the speculative-store-bypass mitigation
# older kernels force on every seccomp user would only cost throughput.
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06

# offsets in struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6];} (little-endian: low word first)
OFF_NR = 0
OFF_ARCH = 4


def off_arg_low(i: int) -> int:
    return 16 + 8 * i


X32_SYSCALL_BIT = 0x40000000
CLONE_NEW_MASK = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80
TIOCSTI = 0x5412  # push bytes into a terminal's input
TIOCLINUX = 0x541C

# What an engine never needs, by group (for the report and the docs). Names
# missing from an architecture's table (chmod on aarch64, ...) do not exist there.
DENIED = {
    "mounts": ["mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
               "open_tree_attr", "fsopen", "fsconfig", "fsmount", "fspick"],
    "namespaces": ["setns", "unshare"],  # and clone() with a CLONE_NEW* flag
    "exec": ["execve", "execveat"],
    "other processes": ["ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "perf_event_open"],
    "kernel": ["bpf", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
               "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup", "iopl", "ioperm",
               "modify_ldt", "uselib", "lookup_dcookie", "nfsservctl", "create_module", "get_kernel_syms",
               "query_module", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
               "setdomainname"],
    "keys": ["keyctl", "add_key", "request_key"],
    "file handles and watches": ["open_by_handle_at", "name_to_handle_at", "fanotify_init"],
    "async bypasses": ["userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register"],
    # Landlock does not cover metadata: modes, owners, xattrs, times, inode flags.
    "metadata": ["chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "setxattr",
                 "lsetxattr", "fsetxattr", "setxattrat", "removexattr", "lremovexattr", "fremovexattr",
                 "removexattrat", "file_setattr", "utime", "utimes", "utimensat", "futimesat"],
}

# Numbers from arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h (aarch64).
_COMMON_NEW = {"pidfd_getfd": 438, "mount_setattr": 442, "move_mount": 429, "open_tree": 428, "open_tree_attr": 467,
               "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "quotactl_fd": 443,
               "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone3": 435,
               "fchmodat2": 452, "setxattrat": 463, "removexattrat": 466, "file_setattr": 469}
SYSCALLS = {
    "x86_64": {
        **_COMMON_NEW,
        "ioctl": 16, "clone": 56, "execve": 59, "ptrace": 101, "syslog": 103, "chmod": 90, "fchmod": 91, "chown": 92,
        "fchown": 93, "lchown": 94, "utime": 132, "uselib": 134, "vhangup": 153, "modify_ldt": 154,
        "pivot_root": 155, "adjtimex": 159, "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165,
        "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171,
        "iopl": 172, "ioperm": 173, "create_module": 174, "init_module": 175, "delete_module": 176,
        "get_kernel_syms": 177, "query_module": 178, "quotactl": 179, "nfsservctl": 180, "setxattr": 188,
        "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
        "lookup_dcookie": 212, "clock_settime": 227, "utimes": 235, "kexec_load": 246, "add_key": 248,
        "request_key": 249, "keyctl": 250, "fchownat": 260, "futimesat": 261, "fchmodat": 268, "unshare": 272,
        "utimensat": 280, "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303,
        "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
        "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "seccomp": 317, "kexec_file_load": 320,
        "bpf": 321, "execveat": 322, "userfaultfd": 323,
    },
    "aarch64": {
        **_COMMON_NEW,
        "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15, "fremovexattr": 16,
        "lookup_dcookie": 18, "ioctl": 29, "umount2": 39, "mount": 40, "pivot_root": 41, "nfsservctl": 42,
        "chroot": 51, "fchmod": 52, "fchmodat": 53, "fchownat": 54, "fchown": 55, "vhangup": 58, "quotactl": 60,
        "utimensat": 88, "acct": 89, "unshare": 97, "kexec_load": 104, "init_module": 105, "delete_module": 106,
        "clock_settime": 112, "syslog": 116, "ptrace": 117, "reboot": 142, "sethostname": 161,
        "setdomainname": 162, "settimeofday": 170, "adjtimex": 171, "add_key": 217, "request_key": 218,
        "keyctl": 219, "clone": 220, "execve": 221, "swapon": 224, "swapoff": 225, "perf_event_open": 241,
        "fanotify_init": 262, "name_to_handle_at": 264, "open_by_handle_at": 265, "clock_adjtime": 266,
        "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "finit_module": 273,
        "seccomp": 277, "bpf": 280, "execveat": 281, "userfaultfd": 282, "kexec_file_load": 294,
    },
}
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def native_arch() -> str | None:
    """'x86_64' or 'aarch64' when the filter has a table for this machine, else None."""
    return ARCH_ALIASES.get(platform.machine().lower())


def denied_syscalls(arch: str) -> dict[str, int]:
    """The syscalls refused outright on `arch`, name -> number."""
    table = SYSCALLS[arch]
    return {name: table[name] for group in DENIED.values() for name in group if name in table}


def seccomp_program(arch: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions for `arch`.

    Only nr and arch are read before an ALLOW, except for clone (its flags) and
    ioctl (its request), so the kernel's action cache (5.11+) lets every other
    allowed syscall skip the filter entirely.
    """
    deny, enosys = "deny", "enosys"
    code: list[tuple[Any, ...]] = []  # (op, k, jt_label, jf_label) or ("label", name)

    def ins(op: int, k: int, jt: str | None = None, jf: str | None = None) -> None:
        code.append((op, k, jt, jf))

    table = SYSCALLS[arch]
    ins(BPF_LD_W_ABS, OFF_ARCH)
    ins(BPF_JEQ_K, AUDIT_ARCH[arch], None, deny)  # another ABI's numbers mean other syscalls
    ins(BPF_LD_W_ABS, OFF_NR)
    if arch == "x86_64":
        ins(BPF_JGE_K, X32_SYSCALL_BIT, deny, None)  # x32 numbers (same audit arch)
    for nr in sorted(set(denied_syscalls(arch).values())):
        ins(BPF_JEQ_K, nr, deny, None)
    # glibc tries clone3 first and falls back to clone on ENOSYS; clone3's flags
    # sit behind a pointer the filter cannot read, clone's are an argument.
    ins(BPF_JEQ_K, table["clone3"], enosys, None)
    ins(BPF_JEQ_K, table["clone"], "clone", None)
    ins(BPF_JEQ_K, table["ioctl"], "ioctl", None)
    ins(BPF_RET_K, SECCOMP_RET_ALLOW)
    code.append(("label", "clone"))
    ins(BPF_LD_W_ABS, off_arg_low(0))  # the kernel uses the low 32 bits of clone's flags
    ins(BPF_JSET_K, CLONE_NEW_MASK, deny, None)
    ins(BPF_RET_K, SECCOMP_RET_ALLOW)
    code.append(("label", "ioctl"))
    ins(BPF_LD_W_ABS, off_arg_low(1))  # the request is an unsigned int
    ins(BPF_JEQ_K, TIOCSTI, deny, None)
    ins(BPF_JEQ_K, TIOCLINUX, deny, None)
    ins(BPF_RET_K, SECCOMP_RET_ALLOW)
    code.append(("label", deny))
    ins(BPF_RET_K, SECCOMP_RET_ERRNO | errno.EPERM)
    code.append(("label", enosys))
    ins(BPF_RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS)

    labels: dict[str, int] = {}
    n = 0
    for item in code:
        if item[0] == "label":
            labels[item[1]] = n
        else:
            n += 1
    out: list[tuple[int, int, int, int]] = []
    for item in code:
        if item[0] == "label":
            continue
        op, k, jt, jf = item
        pc = len(out)

        def rel(label: str | None) -> int:
            if label is None:
                return 0
            d = labels[label] - pc - 1
            if not 0 <= d <= 255:
                raise ValueError(f"seccomp filter: jump to {label} out of range ({d})")
            return d

        out.append((op, rel(jt), rel(jf), k))
    return out


def _pack(program: list[tuple[int, int, int, int]]) -> bytes:
    return b"".join(struct.pack("=HBBI", op, jt, jf, k) for op, jt, jf, k in program)


# -- syscalls through libc --------------------------------------------------------------------

# the interpreter's own libc: find_library("c") would run ldconfig, ~10 ms at every start
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _arg(a: Any) -> Any:
    # syscall() is variadic: pass every integer as a full long, never a 32-bit int
    if a is None:
        return ctypes.c_void_p(None)
    if isinstance(a, bool) or isinstance(a, int):
        return ctypes.c_long(a)
    if isinstance(a, bytes):
        return ctypes.c_char_p(a)
    return a


def _syscall(nr: int, *args: Any) -> int:
    """libc syscall(); returns the result or -errno."""
    ctypes.set_errno(0)
    r = _libc.syscall(ctypes.c_long(nr), *map(_arg, args))
    return -ctypes.get_errno() if r == -1 else r


class ConfineError(Exception):
    """A part asked for with "true" could not be applied (one line, says why)."""


def landlock_abi() -> tuple[int, str]:
    """(ABI version, "") or (0, why Landlock is unavailable)."""
    r = _syscall(NR_LANDLOCK_CREATE_RULESET, ctypes.c_void_p(0), ctypes.c_size_t(0),
                 ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    if r > 0:
        return r, ""
    if r == -errno.ENOSYS:
        return 0, "the kernel has no Landlock (Linux 5.13+ with CONFIG_SECURITY_LANDLOCK)"
    if r == -errno.EOPNOTSUPP:
        return 0, "Landlock is built into the kernel but not enabled (add landlock to the lsm= boot parameter)"
    return 0, f"Landlock answered {os.strerror(-r) if r < 0 else r}"


def no_new_privs() -> bool:
    return _libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


# -- the policy and the report ----------------------------------------------------------------

@dataclass
class Policy:
    """What stays writable once confined (paths must exist)."""

    writable_dirs: list[str] = field(default_factory=list)  # create, write, remove beneath
    writable_files: list[str] = field(default_factory=list)  # write, truncate
    remove_dirs_in: list[str] = field(default_factory=list)  # rmdir beneath (a temporary dir's parent)
    remove_files_in: list[str] = field(default_factory=list)  # unlink beneath (a socket's directory)
    landlock: str = "auto"
    seccomp: str = "auto"


@dataclass
class Report:
    """What is in effect after confine()."""

    no_new_privs: bool = False
    landlock_abi: int = 0
    landlock: str = "off"  # "on" | "off" | "skipped"
    landlock_threads: str = ""  # "all" | "this thread" (before ABI 8 with other threads)
    handled: list[str] = field(default_factory=list)
    writable: list[str] = field(default_factory=list)
    seccomp: str = "off"  # "on" | "off" | "skipped"
    seccomp_arch: str = ""
    denied: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.no_new_privs or self.landlock == "on" or self.seccomp == "on"

    def as_dict(self) -> dict[str, Any]:
        return {"noNewPrivs": self.no_new_privs, "landlock": self.landlock, "landlockABI": self.landlock_abi,
                "landlockThreads": self.landlock_threads, "handled": self.handled, "writable": self.writable,
                "seccomp": self.seccomp, "seccompArch": self.seccomp_arch, "denied": self.denied,
                "notes": self.notes}

    def summary(self) -> str:
        parts = []
        if self.no_new_privs:
            parts.append("no_new_privs")
        if self.landlock == "on":
            parts.append(f"Landlock ABI {self.landlock_abi}" + (" (this thread only)" if self.landlock_threads == "this thread" else ""))
        if self.seccomp == "on":
            parts.append(f"seccomp ({len(self.denied)} syscalls refused)")
        return ", ".join(parts) or "not confined"


def _check_mode(name: str, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"{name}={mode!r}: use one of {', '.join(MODES)}")


def confine(policy: Policy) -> Report:
    """Confine the calling process now; raises ConfineError when a "true" part cannot be applied.

    Irreversible: every later thread and child inherits it.
    """
    _check_mode("landlock", policy.landlock)
    _check_mode("seccomp", policy.seccomp)
    rep = Report()
    if policy.landlock == "false" and policy.seccomp == "false":
        return rep
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise ConfineError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(err)}")
    rep.no_new_privs = True
    if policy.landlock != "false":
        _apply_landlock(policy, rep)
    if policy.seccomp != "false":
        _apply_seccomp(policy.seccomp, rep)
    return rep


def _skip(mode: str, rep: Report, part: str, why: str) -> None:
    if mode == "true":
        raise ConfineError(why)
    setattr(rep, part, "skipped")
    rep.notes.append(why)


def _apply_landlock(policy: Policy, rep: Report) -> None:
    mode = policy.landlock
    abi, why = landlock_abi()
    rep.landlock_abi = abi
    if abi < 1:
        return _skip(mode, rep, "landlock", f"filesystem confinement: {why}")
    flags = 0
    threads = "all"
    if abi >= 8:
        flags |= LANDLOCK_RESTRICT_SELF_TSYNC
    else:
        # Before ABI 8 only the calling thread (and its later threads) is
        # restricted. A thread that just finished may linger for a moment.
        deadline = time.monotonic() + 1.0
        while _thread_count() > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        others = _thread_count() - 1
        if others > 0:
            if mode == "true":
                raise ConfineError(f"filesystem confinement: Landlock ABI {abi} restricts only the calling thread "
                                   f"and this process has {others} other thread(s)")
            threads = "this thread"
            rep.notes.append(f"Landlock ABI {abi} restricts only the calling thread: {others} other thread(s) "
                             "stay unrestricted")
    handled = handled_rights(abi)
    rules: list[tuple[str, int]] = (
        [(p, FS_WRITABLE_DIR) for p in policy.writable_dirs] + [(p, FS_WRITABLE_FILE) for p in policy.writable_files]
        + [(p, FS_REMOVE_DIR) for p in policy.remove_dirs_in] + [(p, FS_REMOVE_FILE) for p in policy.remove_files_in])
    attr = struct.pack("=Q", handled)
    fd = _syscall(NR_LANDLOCK_CREATE_RULESET, ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if fd < 0:
        return _skip(mode, rep, "landlock", f"filesystem confinement: landlock_create_ruleset: {os.strerror(-fd)}")
    try:
        for path, rights in rules:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError as e:
                return _skip(mode, rep, "landlock", f"filesystem confinement: {path}: {e.strerror}")
            try:
                allowed = rights & handled
                if not os.path.isdir(path):
                    allowed &= FS_FILE_RIGHTS
                if not allowed:
                    continue
                rule = struct.pack("=Qi", allowed, pfd)
                r = _syscall(NR_LANDLOCK_ADD_RULE, ctypes.c_int(fd), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                             ctypes.c_char_p(rule), ctypes.c_uint32(0))
                if r < 0:
                    return _skip(mode, rep, "landlock", f"filesystem confinement: landlock_add_rule {path}: {os.strerror(-r)}")
                rep.writable.append(f"{path}: {', '.join(rights_names(allowed))}")
            finally:
                os.close(pfd)
        r = _syscall(NR_LANDLOCK_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(flags))
        if r < 0:
            return _skip(mode, rep, "landlock", f"filesystem confinement: landlock_restrict_self: {os.strerror(-r)}")
    finally:
        os.close(fd)
    rep.landlock = "on"
    rep.landlock_threads = threads
    rep.handled = rights_names(handled)


def _apply_seccomp(mode: str, rep: Report) -> None:
    arch = native_arch()
    if arch is None:
        return _skip(mode, rep, "seccomp", f"seccomp filter: no syscall table for {platform.machine()} "
                                           "(only x86_64 and aarch64)")
    if _libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0 and ctypes.get_errno() == errno.EINVAL:
        return _skip(mode, rep, "seccomp", "seccomp filter: the kernel has no seccomp (CONFIG_SECCOMP)")
    data = _pack(seccomp_program(arch))
    buf = ctypes.create_string_buffer(data, len(data))
    prog = _SockFprog(len(data) // 8, ctypes.addressof(buf))
    nr = SYSCALLS[arch]["seccomp"]
    r = -errno.EINVAL
    for flags in (SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_SPEC_ALLOW, SECCOMP_FILTER_FLAG_TSYNC):
        r = _syscall(nr, ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags), ctypes.byref(prog))
        if r != -errno.EINVAL:
            break
    if r == -errno.ENOSYS:  # before seccomp(2) (3.17): this thread only
        if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
            r = -ctypes.get_errno()
        else:
            r = 0
            if _thread_count() > 1:
                rep.notes.append("seccomp filter on the calling thread only (no seccomp(2) for TSYNC)")
    if r > 0:
        return _skip(mode, rep, "seccomp", f"seccomp filter: thread {r} could not be synchronised")
    if r < 0:
        return _skip(mode, rep, "seccomp", f"seccomp filter: {os.strerror(-r)}")
    rep.seccomp = "on"
    rep.seccomp_arch = arch
    rep.denied = sorted(denied_syscalls(arch)) + ["clone(CLONE_NEW*)", "ioctl(TIOCSTI, TIOCLINUX)"]


# -- a probe for tests ------------------------------------------------------------------------

def probe(write_path: str, exec_path: str) -> dict[str, str]:
    """Try what a confined process must not do; "ok" or the errno name for each.

    exec_path must be an empty executable file: if exec is allowed it fails with
    ENOEXEC instead of replacing this process (anything else is refused here).
    """
    out: dict[str, str] = {}

    def attempt(key: str, fn) -> None:
        try:
            fn()
            out[key] = "ok"
        except OSError as e:
            out[key] = errno.errorcode.get(e.errno or 0, str(e.errno))

    def write() -> None:
        os.close(os.open(write_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))

    def run() -> None:
        if os.stat(exec_path).st_size != 0:
            raise OSError(errno.EINVAL, "probe: exec_path must be an empty file")
        os.execv(exec_path, [exec_path])

    attempt("write", write)
    attempt("mkdir", lambda: os.mkdir(write_path + ".d"))
    attempt("exec", run)
    attempt("unshare", lambda: call("unshare", ctypes.c_int(0x10000000)))  # CLONE_NEWUSER
    return out


def call(name: str, *args: Any) -> int:
    """Make syscall `name` of this machine (by its number in SYSCALLS); OSError on failure."""
    arch = native_arch()
    nr = SYSCALLS[arch].get(name) if arch else None
    if nr is None:
        raise OSError(errno.ENOSYS, f"{name}: no syscall number for {platform.machine()}")
    r = _syscall(nr, *args)
    if r < 0:
        raise OSError(-r, f"{name}: {os.strerror(-r)}")
    return r
