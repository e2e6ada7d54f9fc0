"""Errors shared by the whole package.

`UserError` is a mistake the person at the keyboard can fix: the CLI prints
its message as one line (no traceback) and exits non-zero. So is an
`OSError` the environment caused (out of file descriptors, a full disk, a
read-only file system): `describe()` turns it into one line that names the
cause. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os


class UserError(Exception):
    """A one-line, user-fixable error. `str(e)` says what is wrong and how to fix it."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


# errnos that say something about the machine or the user's limits, not about our code
ENVIRONMENT_ERRNOS = frozenset({
    errno.EMFILE, errno.ENFILE, errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.ENOBUFS, errno.EROFS,
    errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
    errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.ELOOP, errno.EFBIG,
})


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; [exc] for a plain one."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out += leaves(sub)
        return out
    return [exc]


def find_user_error(exc: BaseException) -> UserError | None:
    """The UserError in `exc`, looking inside (nested) exception groups."""
    for leaf in leaves(exc):
        if isinstance(leaf, UserError):
            return leaf
    return None


def find_environment_error(exc: BaseException) -> OSError | None:
    """An OSError in `exc` (groups included) that the environment caused, e.g. EMFILE or ENOSPC."""
    for leaf in leaves(exc):
        if isinstance(leaf, OSError) and leaf.errno in ENVIRONMENT_ERRNOS:
            return leaf
    return None


def _hint(e: OSError) -> str:
    if e.errno in (errno.EMFILE, errno.ENFILE):
        try:
            import resource

            soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            return f" (the limit is {soft}: raise it with ulimit -n)"
        except (ImportError, OSError, ValueError):
            return " (raise the limit with ulimit -n)"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return " (free some space, or use another directory)"
    if e.errno == errno.EROFS:
        return " (use a writable directory)"
    return ""


def describe(e: OSError) -> str:
    """One line for an OSError: its cause in words, the file it concerns, a hint."""
    text = (e.strerror or os.strerror(e.errno or 0) or str(e)).lower() if e.errno else str(e)
    where = f": {e.filename}" if getattr(e, "filename", None) else ""
    return f"{text}{where}{_hint(e)}"


def engine_failure(exc: BaseException, what: str) -> str:
    """`what` and the cause of `exc`, as one line ("the network engine failed: too many open files ...").

    Exception groups are looked into: the message names the first real
    cause, never "ExceptionGroup".
    """
    found = find_user_error(exc)
    if found is not None:
        return f"{what}: {found}"
    for leaf in leaves(exc):
        if isinstance(leaf, OSError):
            return f"{what}: {describe(leaf)}"
    first = leaves(exc)[0]
    return f"{what} ({type(first).__name__}: {first})"
