"""Exceptions of the test harness: each says what went wrong and what to do."""

from __future__ import annotations

import subprocess
from typing import Any


class HarnessError(Exception):
    """Base class of the harness's own errors."""


class SandboxStartError(HarnessError):
    """The instance did not come up: the message holds the launcher's stderr."""

    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr


class EnvironmentProblem(HarnessError):
    """The machine lacks what a sandbox needs (user namespaces, /dev/net/tun)."""


class PortInUseError(HarnessError, OSError):
    """The host port asked for is already in use (or cannot be bound)."""


class ApiRequestError(HarnessError):
    """The instance's control API refused a request: `status` and its `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class UnknownHostError(HarnessError, KeyError):
    """A host name that is not part of the network."""

    def __init__(self, name: Any, known: list[str]):
        self.name = name
        self.known = list(known)
        super().__init__(name)

    def __str__(self) -> str:  # KeyError would print only repr(name)
        known = ", ".join(self.known) or "none"
        return f"unknown host {self.name!r}: this network has {known}"


class CommandFailed(subprocess.CalledProcessError):
    """`run(..., check=True)` got a non-zero status; the message includes stderr.

    A `subprocess.CalledProcessError`, so existing `except` clauses keep working.
    """

    def __str__(self) -> str:
        base = super().__str__()
        err = self.stderr
        if err is None:
            return base + " (stderr was not captured: pass capture_output=True to see it here)"
        if isinstance(err, bytes):
            err = err.decode("utf-8", "replace")
        err = err.strip()
        if not err:
            return base + " (stderr was empty)"
        if len(err) > 4000:
            err = "...\n" + err[-4000:]
        return f"{base}\nstderr:\n{err}"


class UnknownPortError(HarnessError, KeyError):
    """remove_port() for a port that was not published."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown port"
