"""api.unixpath: UNIX socket paths longer than sun_path allows (107 bytes).

A state directory deep in a tree (a test's tmp_path, a long $XDG_RUNTIME_DIR)
gives an `api.sock` path the kernel refuses. The socket's directory is opened
(O_PATH) and the socket is bound or connected as /proc/self/fd/N/NAME, which
the kernel resolves through that directory: the file is where the long path
says.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

SUN_PATH_MAX = 107  # sizeof(sun_path) - 1


@contextmanager
def usable(path: str) -> Iterator[str]:
    """`path` itself, or while inside the block a short alias of it through /proc/self/fd."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield path
        return
    directory, name = os.path.split(os.path.abspath(path))
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)
