"""Sandboxes start and stop with nothing left behind: processes, files, mounts, fds."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time

import pytest

from rootlessnet import Sandbox
from rootlessnet.harness import HarnessError, SandboxStartError

from .conftest import alive, descendants, open_fds, proc_identity, processes_with

pytestmark = pytest.mark.rootless  # skipped, saying why, without user namespaces or /dev/net/tun

LOOPS = 100


def _mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def _sleepers(token: bytes) -> list[int]:
    """Our processes that are `sleep N.TOKEN` already: exec has finished.

    While a process is inside execve(), /proc/PID/cmdline reads empty (the
    new memory has no arguments yet), so a process found by its command line
    can vanish from one scan to the next: count only those whose exec is
    done, which then stay until killed."""
    out = []
    for pid in processes_with(token):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0] == b"sleep" and len(argv) >= 2 and argv[1].endswith(b"." + token):
            out.append(pid)
    return out


def test_a_hundred_sandboxes_leave_nothing_behind():
    token = f"{os.getpid()}{time.monotonic_ns() % 1000:03d}"  # marks this test's background processes (digits: a sleep argument)
    Sandbox().start().stop()  # warm-up: imports, caches and the launcher zygote, which stay for the process's life
    gc.collect()
    fds_before, mounts_before = open_fds(), _mounts()
    kids_before = set(descendants(os.getpid()))
    seen = []  # (launcher, namespace child) identities
    workdirs = []
    t0 = time.monotonic()
    for i in range(LOOPS):
        with Sandbox() as sb:
            workdirs.append(sb._core.workdir)
            child = int(open(os.path.join(sb.state_dir, "child_pid")).read())
            seen += [proc_identity(sb._core.proc.pid), proc_identity(child)]
            if i % 10 == 0:  # now and then, also leave work running inside
                sb.popen(["sleep", f"{300 + i}.{token}"])  # forgotten by the test
                sb.run(["sh", "-c", f"sleep {400 + i}.{token} >/dev/null 2>&1 &"], check=True)  # detached
                deadline = time.monotonic() + 10  # both exec sleep a moment after run()/popen() return
                while len(found := _sleepers(token.encode())) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert len(found) == 2, found
    elapsed = time.monotonic() - t0
    gc.collect()
    assert not [s for s in seen if alive(s)], "launchers or namespace children survived"
    assert processes_with(token.encode()) == [], "processes started inside survived"
    assert set(descendants(os.getpid())) <= kids_before
    assert [w for w in workdirs if os.path.exists(w)] == []
    assert open_fds() == fds_before
    assert _mounts() == mounts_before
    print(f"{LOOPS} sandboxes in {elapsed:.1f} s")


def test_stop_is_idempotent_and_exceptions_still_stop():
    sb = Sandbox()
    with pytest.raises(ZeroDivisionError):
        with sb:
            workdir = sb._core.workdir
            1 / 0
    assert not os.path.exists(workdir) and not sb.running
    sb.stop()
    with pytest.raises(HarnessError, match="the sandbox was stopped"):
        sb.run(["true"])
    with pytest.raises(HarnessError, match="already started"):
        sb.start()


def test_launcher_that_dies_is_reported():
    with Sandbox() as sb:
        os.kill(sb._core.proc.pid, signal.SIGKILL)
        sb._core.proc.wait(10)
        with pytest.raises(HarnessError, match=r"launcher exited unexpectedly \(status -9\)"):
            sb.run(["true"])
        assert "exited (-9)" in repr(sb)


def test_start_failure_carries_the_launchers_message():
    with pytest.raises(SandboxStartError) as e:
        Sandbox(extra_args=["--cidr", "nonsense"]).start()
    assert "before the sandbox was ready" in str(e.value)
    assert "nonsense" in e.value.stderr


def test_sandbox_dir_too_deep_is_refused(tmp_path):
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    with pytest.raises(ValueError, match="too deep"):
        Sandbox(dir=deep).start()


def test_the_holder_ends_when_the_test_process_dies(tmp_path):
    """A test process killed hard (no cleanup at all) does not leave its instance running."""
    code = ("import sys, os; from rootlessnet import Sandbox; sb = Sandbox().start(); "
            "print(sb._core.proc.pid, open(os.path.join(sb.state_dir, 'child_pid')).read().strip(), "
            "sb._core.workdir, flush=True); os.kill(os.getpid(), 9)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    launcher, child, workdir = p.stdout.split()
    deadline = time.monotonic() + 20
    while (proc_identity(int(launcher)) or proc_identity(int(child))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc_identity(int(launcher)) is None and proc_identity(int(child)) is None
    # Its private directory stays (nobody was left to remove it) until a later sandbox
    # finds it stale: its instance's lock free for a while.
    lock = os.path.join(workdir, "state", "lock")
    assert os.path.exists(lock)
    old = time.time() - 3600
    os.utime(lock, (old, old))
    Sandbox().start().stop()
    assert not os.path.exists(workdir)
