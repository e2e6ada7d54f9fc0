"""`rootlessnet run` as an unprivileged user: ids, netns modes, state dir, exit codes."""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest

from tests.integration.conftest import one_line_error, requires_userns, rn

pytestmark = [pytest.mark.integration, requires_userns]


def _subuid_start() -> int:
    name = pwd.getpwuid(os.getuid()).pw_name
    for line in open("/etc/subuid"):
        user, start, _count = line.strip().split(":")
        if user == name:
            return int(start)
    raise AssertionError("no /etc/subuid entry for the test user")


def test_uid_is_root_and_subordinate_range_is_mapped():
    r = rn("run", "--", "sh", "-c", "id -u; id -g; cat /proc/self/uid_map", check=True)
    lines = r.stdout.split("\n")
    assert lines[0] == "0" and lines[1] == "0"
    maps = [l.split() for l in lines[2:] if l.strip()]
    assert ["0", str(os.getuid()), "1"] in maps
    assert ["1", str(_subuid_start()), "65536"] in maps


def test_single_id_map_with_subid_source_none_warns_once():
    r = rn("run", "--subid-source=none", "--", "cat", "/proc/self/uid_map", check=True)
    assert [l.split() for l in r.stdout.strip().splitlines()] == [["0", str(os.getuid()), "1"]]
    assert "single" in one_line_error(r.stderr) or "only uid/gid 0" in r.stderr


def test_net_none_has_only_loopback_up():
    r = rn("run", "--net=none", "--", "ip", "-o", "link", check=True)
    links = r.stdout.strip().splitlines()
    assert len(links) == 1
    assert links[0].split(":")[1].strip() == "lo"
    assert ",UP" in links[0]


def test_net_none_remounts_sysfs():
    r = rn("run", "--net=none", "--", "ls", "/sys/class/net", check=True)
    assert r.stdout.split() == ["lo"]


def test_net_host_sees_host_links():
    host = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    r = rn("run", "--net=host", "--", "ip", "-o", "link", check=True)
    names = lambda out: sorted(l.split(":")[1].strip() for l in out.strip().splitlines())  # noqa: E731
    assert names(r.stdout) == names(host)
    r2 = rn("run", "--net=host", "--", "readlink", "/proc/self/ns/net", check=True)
    assert r2.stdout.strip() == os.readlink("/proc/self/ns/net")


@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_status_is_the_commands(code):
    assert rn("run", "--", "sh", "-c", f"exit {code}").returncode == code


def test_environment_names_the_state_dir(state_dir):
    r = rn("run", "--state-dir", str(state_dir), "--", "sh", "-c",
           "echo $ROOTLESSKIT_STATE_DIR; echo $ROOTLESSNET_STATE_DIR; echo $ROOTLESSKIT_PARENT_EUID; echo $ROOTLESSKIT_PARENT_EGID",
           check=True)
    assert r.stdout.split() == [str(state_dir), str(state_dir), str(os.geteuid()), str(os.getegid())]


def test_default_state_dir_is_removed_on_exit():
    r = rn("run", "--", "sh", "-c", "echo $ROOTLESSKIT_STATE_DIR; ls $ROOTLESSKIT_STATE_DIR", check=True)
    path, *files = r.stdout.split()
    assert "child_pid" in files and "lock" in files
    assert not os.path.exists(path)


def test_given_state_dir_is_cleaned_of_our_leftovers_only(state_dir):
    (state_dir / "child_pid").write_text("999999\n")
    (state_dir / "netns.d").mkdir()
    (state_dir / "stale").mkdir()  # not a name of ours: never deleted (an --state-dir=$UNSET once emptied a cwd)
    (state_dir / "notes.txt").write_text("mine")
    r = rn("run", "--state-dir", str(state_dir), "--", "cat", str(state_dir / "child_pid"), check=True)
    assert r.stdout.strip() != "999999"
    assert sorted(os.listdir(state_dir)) == ["lock", "notes.txt", "stale"]


def test_child_pid_is_the_namespace_child(background, state_dir):
    b = background()
    assert os.readlink(f"/proc/{b.child_pid}/ns/user") != os.readlink("/proc/self/ns/user")
    assert os.readlink(f"/proc/{b.child_pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_second_instance_on_the_same_state_dir_fails_clearly(background, state_dir):
    background()
    r = rn("run", "--state-dir", str(state_dir), "--", "true")
    assert r.returncode != 0
    assert "another instance is running" in one_line_error(r.stderr)


def test_copy_up_etc_is_writable_inside_and_host_untouched():
    marker = f"/etc/rootlessnet-copy-up-test-{os.getpid()}"
    with open("/etc/hostname") as f:
        hostname = f.read()
    r = rn("run", "--copy-up=/etc", "--", "sh", "-c", f"echo hello > {marker} && cat {marker} && cat /etc/hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello\n" + hostname
    assert not os.path.exists(marker)
    r = rn("run", "--", "sh", "-c", f"echo hello > {marker}")
    assert r.returncode != 0  # without copy-up /etc stays read-only to us


def test_pidns_with_reaper_runs_an_init_and_fresh_proc():
    r = rn("run", "--pidns", "--", "sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'", check=True)
    pid, nprocs = r.stdout.split()
    assert pid == "2"  # our init is PID 1 and reaps
    assert int(nprocs) <= 4


def test_pidns_without_reaper_makes_the_command_pid_1():
    r = rn("run", "--pidns", "--reaper=false", "--", "sh", "-c", "echo $$", check=True)
    assert r.stdout.strip() == "1"


def test_utsns_ipcns_cgroupns_are_new():
    r = rn("run", "--utsns", "--ipcns", "--cgroupns", "--", "sh", "-c",
           "readlink /proc/self/ns/uts /proc/self/ns/ipc /proc/self/ns/cgroup; hostname rootlessnet-test-host && hostname", check=True)
    uts, ipc, cg, hostname = r.stdout.split()
    assert uts != os.readlink("/proc/self/ns/uts")
    assert ipc != os.readlink("/proc/self/ns/ipc")
    assert cg != os.readlink("/proc/self/ns/cgroup")
    assert hostname == "rootlessnet-test-host"


@pytest.mark.slow
def test_instance_outlives_the_launchers_worker_threads():
    """Regression: the child was forked from a trio worker thread; its parent-death
    signal fired when trio retired that idle thread (10 s) and killed the instance."""
    r = rn("run", "--", "sh", "-c", "sleep 12; echo alive", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "alive"


def test_copy_up_of_the_directory_holding_the_state_dir(tmp_path):
    """Regression: the copy-up binds were staged under STATE/.ro, which the tmpfs of a
    copied-up parent (e.g. /run with XDG_RUNTIME_DIR=/run/user/UID) hid."""
    parent = tmp_path / "run"
    (parent / "keep").mkdir(parents=True)
    (parent / "keep" / "file").write_text("original\n")
    state = parent / "state"
    r = rn("run", "--state-dir", str(state), f"--copy-up={parent}", "--", "sh", "-c",
           f"cat {parent}/keep/file && touch {parent}/new && ls {parent}", check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "original" and "new" in r.stdout
    assert not (parent / "new").exists()
    assert not [p for p in os.listdir("/tmp") if p.startswith("rootlessnet-copyup-") and
                os.stat(os.path.join("/tmp", p)).st_uid == os.getuid()]
