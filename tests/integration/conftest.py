"""Helpers for tests that start real namespaces as an unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

RN = [sys.executable, "-m", "rootlessnet"]


def _userns_problem() -> str | None:
    if os.geteuid() == 0:
        return "running as root: rootless tests must run as an unprivileged user (run hack/test as root to set that up)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing"
    r = subprocess.run(["unshare", "-Ur", "true"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return f"unprivileged user namespaces are unavailable: {r.stderr.strip()}"
    return None


USERNS_PROBLEM = _userns_problem()
requires_userns = pytest.mark.skipif(USERNS_PROBLEM is not None, reason=USERNS_PROBLEM or "")


# Hermetic by default: an instance a test starts never forwards DNS to the machine's
# resolver. Port 9 (discard) on loopback: nothing answers, so a stray lookup fails fast.
# Tests that test DNS pass their own --dns-upstream (a server they run on 127.0.0.1).
NO_DNS = "--dns-upstream=127.0.0.1:9"


def _hermetic(args: tuple[str, ...]) -> list[str]:
    if not args or args[0] != "run" or "--" not in args:
        return list(args)
    i = args.index("--")
    flags = args[1:i]
    if any(f.startswith("--dns-upstream") or f.startswith("--net=none") or f.startswith("--net=host") for f in flags):
        return list(args)
    return [args[0], NO_DNS, *args[1:]]


def rn(*args: str, timeout: float = 60, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run `python -m rootlessnet ARGS` and capture its output as text."""
    return subprocess.run([*RN, *_hermetic(args)], capture_output=True, text=True, timeout=timeout, check=check, **kw)


def rn_popen(*args: str, **kw) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    return subprocess.Popen([*RN, *_hermetic(args)], **kw)


def wait_for(pred, timeout: float = 20.0, interval: float = 0.02, what: str = "condition"):
    """Poll `pred` until truthy (bounded in time); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def one_line_error(stderr: str) -> str:
    """Assert stderr is exactly one line and no traceback; return it."""
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, f"expected one line, got: {stderr!r}"
    return lines[0]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


class Background:
    """An instance running a command that waits for a `release` file (bounded)."""

    def __init__(self, state: Path, *flags: str, command: str = ""):
        self.state = state
        self.release_file = state.parent / "release"
        script = f"{command}\ni=0; while [ ! -e {self.release_file} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
        self.proc = rn_popen("run", "--state-dir", str(state), *flags, "--", "sh", "-c", script)
        wait_for(lambda: (state / "child_pid").exists() or self.proc.poll() is not None, what="child_pid")
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise AssertionError(f"instance exited early ({self.proc.returncode}): {err}")
        self.child_pid = int((state / "child_pid").read_text())

    def release(self, timeout: float = 30) -> tuple[int, str, str]:
        self.release_file.touch()
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


@pytest.fixture
def background(state_dir: Path):
    started: list[Background] = []

    def start(*flags: str, command: str = "", state: Path | None = None) -> Background:
        b = Background(state or state_dir, *flags, command=command)
        started.append(b)
        return b

    yield start
    for b in started:
        b.release_file.touch()
        try:
            b.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            b.kill()
