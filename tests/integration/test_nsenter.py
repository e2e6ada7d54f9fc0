"""`--detach-netns` and `rootlessnet nsenter`: the shim hooks and tools use."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.integration.conftest import requires_userns, rn, wait_for

pytestmark = [pytest.mark.integration, requires_userns]


def test_detached_netns_is_pinned_and_entered_by_nsenter(background, state_dir, tmp_path):
    out = tmp_path / "cmd-netns"
    b = background("--detach-netns", command=f"readlink /proc/self/ns/net > {out}")
    host_netns = os.readlink("/proc/self/ns/net")
    wait_for(lambda: out.exists() and out.read_text().strip(), what="the command's output")
    assert out.read_text().strip() == host_netns  # the command keeps the host netns
    assert (state_dir / "netns").exists()  # nerdctl's "detached mode" test
    pinned = os.stat(f"/proc/{b.child_pid}/root{state_dir}/netns").st_ino
    r = rn("nsenter", "--state-dir", str(state_dir), "--", "readlink", "/proc/self/ns/net", check=True)
    assert r.stdout.strip() == f"net:[{pinned}]" != host_netns


def test_bridge_added_through_nsenter_lives_in_the_pinned_netns_only(background, state_dir):
    background("--detach-netns")
    rn("nsenter", "--state-dir", str(state_dir), "--", "ip", "link", "add", "br0", "type", "bridge", check=True)
    inside = rn("nsenter", "--state-dir", str(state_dir), "--", "ip", "-o", "link", "show", "br0")
    assert inside.returncode == 0 and "br0" in inside.stdout
    host = subprocess.run(["ip", "link", "show", "br0"], capture_output=True, text=True)
    assert host.returncode != 0
    # the command's own netns is the host's: no br0 there either
    cmd_side = rn("nsenter", "--state-dir", str(state_dir), "--no-net", "--", "ip", "link", "show", "br0")
    assert cmd_side.returncode != 0


def test_pinned_netns_outlives_every_process_that_was_in_it(background, state_dir):
    """The 'second container breaks when the first is deleted' problem."""
    background("--detach-netns")
    env = {**os.environ, "ROOTLESSKIT_STATE_DIR": str(state_dir)}
    # a first process enters, configures, and exits (like a first container)
    rn("nsenter", "--", "sh", "-c", "ip link add first0 type bridge && ip addr add 10.9.0.1/24 dev lo", env=env, check=True)
    # a later process joins *by path* (util-linux nsenter on the bind mount) after it is gone
    r = rn("nsenter", "--no-net", "--", "nsenter", f"--net={state_dir}/netns", "sh", "-c",
           "ip -o link show first0 && ip -o addr show dev lo", env=env)
    assert r.returncode == 0, r.stderr
    assert "first0" in r.stdout and "10.9.0.1/24" in r.stdout


def test_nsenter_keeps_cwd_and_passes_exit_status(background, state_dir, tmp_path):
    background()
    r = rn("nsenter", "--state-dir", str(state_dir), "--", "sh", "-c", "pwd; id -u; exit 42", cwd=str(tmp_path))
    assert r.returncode == 42
    assert r.stdout.split() == [str(tmp_path), "0"]


def test_nsenter_joins_the_instance_netns_without_detach(background, state_dir):
    b = background()
    r = rn("nsenter", "--state-dir", str(state_dir), "--", "readlink", "/proc/self/ns/net", "/proc/self/ns/user", check=True)
    assert r.stdout.split() == [os.readlink(f"/proc/{b.child_pid}/ns/net"), os.readlink(f"/proc/{b.child_pid}/ns/user")]


def test_nsenter_from_inside_uses_the_environment(background, state_dir):
    background()
    r = rn("run", "--net=host", "--", "true")  # sanity: a plain instance works alongside
    assert r.returncode == 0
    env = {**os.environ, "ROOTLESSKIT_STATE_DIR": str(state_dir)}
    r = rn("nsenter", "--", "sh", "-c", f"{os.environ.get('PYTHON', 'python3')} -c 'print(1)' >/dev/null 2>&1; rootlessnet-no-such", env=env)
    assert r.returncode == 127


def test_nsenter_joins_the_pid_namespace(background, state_dir):
    background("--pidns")
    r = rn("nsenter", "--state-dir", str(state_dir), "--", "sh", "-c", "ls /proc | grep -c '^[0-9]'; echo $$", check=True)
    count, mypid = r.stdout.split()
    assert int(count) < 30 and int(mypid) < 100  # we are inside the instance's small PID namespace
