"""Every mistake a user can make gives one clear line and a non-zero status."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from tests.integration.conftest import one_line_error, requires_userns, rn

pytestmark = [pytest.mark.integration]


def test_unknown_flag_value():
    r = rn("run", "--net=bogus", "--", "true")
    assert r.returncode == 2
    assert "--net" in one_line_error(r.stderr) and "bogus" in r.stderr


def test_unknown_flag():
    r = rn("run", "--no-such-flag", "--", "true")
    assert r.returncode == 2
    one_line_error(r.stderr)


@pytest.mark.parametrize("value,words", [
    ("nope=1", ["NAME=VALUE", "tcp_mem"]),
    ("tcp_mem=lots", ["whole number"]),
    ("tcp_flows=0", [">= 1"]),
    ("tcp_flows", ["NAME=VALUE"]),
])
def test_bad_engine_limit(value, words):
    r = rn("run", "--limit", value, "--", "true")
    assert r.returncode != 0
    line = one_line_error(r.stderr)
    assert "--limit" in line and all(w in line for w in words), line


def test_engine_limits_are_applied():
    from rootlessnet.instance import RunOptions

    cfg = RunOptions(command=["true"], limits=["tcp_mem=64M", "time-wait=10", "udp_clients=2k"]).net_config()
    assert (cfg.limits.tcp_mem, cfg.limits.time_wait, cfg.limits.udp_clients) == (64 << 20, 10, 2048)


def test_missing_command():
    r = rn("run")
    assert r.returncode != 0
    assert "missing command" in one_line_error(r.stderr)


def test_missing_subcommand():
    r = rn()
    assert r.returncode == 2
    assert "missing subcommand" in r.stderr and "Traceback" not in r.stderr


@requires_userns
def test_command_not_found_is_127():
    r = rn("run", "--", "rootlessnet-no-such-command")
    assert r.returncode == 127
    assert "command not found" in one_line_error(r.stderr)


@requires_userns
def test_command_not_executable_is_126(tmp_path):
    f = tmp_path / "script"
    f.write_text("#!/bin/sh\n")
    r = rn("run", "--", str(f))
    assert r.returncode == 126
    assert "permission denied" in one_line_error(r.stderr)


def test_state_dir_that_cannot_be_created():
    r = rn("run", "--state-dir", "/proc/rootlessnet-state", "--", "true")
    assert r.returncode != 0
    assert "cannot create state directory" in one_line_error(r.stderr)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_state_dir_not_writable(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        r = rn("run", "--state-dir", str(d), "--", "true")
    finally:
        d.chmod(0o700)
    assert r.returncode != 0
    assert "not writable" in one_line_error(r.stderr)


def test_copy_up_of_missing_dir():
    r = rn("run", "--copy-up=/no/such/dir", "--", "true")
    assert r.returncode != 0
    assert "--copy-up" in one_line_error(r.stderr)


def test_detach_netns_with_host_net():
    r = rn("run", "--net=host", "--detach-netns", "--", "true")
    assert r.returncode != 0
    assert "--detach-netns" in one_line_error(r.stderr)


@requires_userns
def test_newuidmap_missing_with_static_source():
    r = rn("run", "--subid-source=static", "--", "true", env={**os.environ, "PATH": "/nonexistent"})
    assert r.returncode != 0
    assert "apt-get install uidmap" in one_line_error(r.stderr)


@requires_userns
def test_newuidmap_missing_with_auto_source_falls_back_with_one_warning():
    env = {**os.environ, "PATH": "/nonexistent"}
    r = rn("run", "--", "/bin/cat", "/proc/self/uid_map", env=env)
    assert r.returncode == 0, r.stderr
    assert "uidmap" in one_line_error(r.stderr)
    assert len(r.stdout.strip().splitlines()) == 1


@requires_userns
def test_newuidmap_failing_names_etc_subuid(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("newuidmap", "newgidmap"):
        p = bindir / tool
        p.write_text("#!/bin/sh\necho \"$0: uid range [0-65536) -> [100000-165536) not allowed\" >&2\nexit 1\n")
        p.chmod(0o755)
    r = rn("run", "--subid-source=static", "--", "/bin/true", env={**os.environ, "PATH": str(bindir)})
    assert r.returncode != 0
    line = one_line_error(r.stderr)
    assert "newuidmap failed" in line and "/etc/subuid" in line


@requires_userns
def test_user_namespaces_disabled_names_the_sysctl():
    # In a user namespace of our own we may lower user.max_user_namespaces to 0
    # for that namespace: the launcher then cannot create its own.
    code = (
        "open('/proc/sys/user/max_user_namespaces','w').write('0');"
        "import os,sys; os.execv(sys.executable, [sys.executable, '-m', 'rootlessnet', 'run', '-q', '--subid-source=none', '--', 'true'])"
    )
    import subprocess

    r = subprocess.run(["unshare", "-Ur", sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "user.max_user_namespaces" in one_line_error(r.stderr)


def test_nsenter_without_instance():
    env = {k: v for k, v in os.environ.items() if k not in ("ROOTLESSKIT_STATE_DIR", "ROOTLESSNET_STATE_DIR")}
    r = rn("nsenter", "--", "true", env=env)
    assert r.returncode != 0
    assert "--state-dir" in one_line_error(r.stderr)


def test_nsenter_with_dead_instance(tmp_path):
    r = rn("nsenter", "--state-dir", str(tmp_path), "--", "true")
    assert r.returncode != 0
    assert "no running instance" in one_line_error(r.stderr)
