"""Signals reach the command; launcher death takes the namespace with it."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.conftest import requires_userns, rn_popen, wait_for

pytestmark = [pytest.mark.integration, requires_userns]


def _pids_with_arg(marker: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


def _start(state_dir, script: str):
    p = rn_popen("run", "--state-dir", str(state_dir), "--", "sh", "-c", script)
    wait_for(lambda: (state_dir / "child_pid").exists() or p.poll() is not None, what="child_pid")
    assert p.poll() is None
    return p


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 128 + 15), (signal.SIGINT, 128 + 2), (signal.SIGHUP, 128 + 1)])
def test_signal_kills_command_and_status_is_128_plus_n(state_dir, sig, code):
    p = _start(state_dir, "echo up; exec sleep 60")
    assert p.stdout.readline() == "up\n"
    p.send_signal(sig)
    p.communicate(timeout=30)
    assert p.returncode == code


def test_signal_is_delivered_to_the_command_which_can_handle_it(state_dir):
    p = _start(state_dir, "trap 'echo got-usr1; exit 7' USR1; echo up; i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done")
    assert p.stdout.readline() == "up\n"
    p.send_signal(signal.SIGUSR1)
    out, _ = p.communicate(timeout=30)
    assert "got-usr1" in out and p.returncode == 7


def test_sigkill_of_launcher_kills_child_and_command(state_dir):
    marker = f"{os.getpid()}{time.time_ns() % 1000}"
    p = _start(state_dir, f"echo up; exec sleep 61.{marker}")
    assert p.stdout.readline() == "up\n"
    child = int((state_dir / "child_pid").read_text())
    assert _pids_with_arg(f"61.{marker}")
    p.kill()
    p.communicate(timeout=30)
    wait_for(lambda: not _pids_with_arg(f"61.{marker}"), what="command to die")
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z",
             what="child to die")


def test_sigkill_of_launcher_kills_background_processes_of_the_command(state_dir):
    marker = f"{os.getpid()}{time.time_ns() % 1000}"
    p = _start(state_dir, f"sleep 62.{marker} & echo up; wait")
    assert p.stdout.readline() == "up\n"
    assert _pids_with_arg(f"62.{marker}")
    p.kill()
    p.communicate(timeout=30)
    wait_for(lambda: not _pids_with_arg(f"62.{marker}"), what="background process of the command to die")


def test_leftover_background_processes_die_when_the_command_exits(state_dir):
    marker = f"{os.getpid()}{time.time_ns() % 1000}"
    p = _start(state_dir, f"setsid sleep 63.{marker} & sleep 0.2; exit 3")
    p.communicate(timeout=30)
    assert p.returncode == 3
    wait_for(lambda: not _pids_with_arg(f"63.{marker}"), what="orphan to be killed")


def test_signal_right_after_child_pid_is_never_lost(tmp_path):
    """Regression: a signal forwarded while the child was between its pending-signal check
    and spawning the command was parked and never delivered (the instance hung)."""
    for i in range(15):
        state = tmp_path / f"s{i}"
        state.mkdir()
        p = rn_popen("run", "-q", "--state-dir", str(state), "--", "sleep", "30")
        wait_for(lambda: (state / "child_pid").exists() or p.poll() is not None, what="child_pid")
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=15)
        assert p.returncode in (128 + 15, -15), p.returncode
