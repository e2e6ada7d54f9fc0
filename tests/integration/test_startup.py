"""Start-up (issue 10 §4): the namespace child is a fork of the launcher, set up while the
launcher imports; only what the mode needs is imported; ROOTLESSNET_DEBUG_TIMING; signals
during set-up are kept. Timings are never asserted here (hack/bench measures them)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import trio

from tests.integration.conftest import NO_DNS, RN, requires_userns, rn

pytestmark = [pytest.mark.integration, requires_userns]

TIMING_LINE = re.compile(r"rootlessnet: timing: +(\d+\.\d) ms  \+ *(\d+\.\d) ms  (.+)")


def _timings(stderr: str) -> list[tuple[float, float, str]]:
    out = []
    for line in stderr.splitlines():
        m = TIMING_LINE.fullmatch(line)
        assert m, f"not a timing line: {line!r}"
        out.append((float(m[1]), float(m[2]), m[3]))
    return out


def test_debug_timing_prints_one_line_per_phase():
    r = rn("run", "--", "true", env={**os.environ, "ROOTLESSNET_DEBUG_TIMING": "1"})
    assert r.returncode == 0, r.stderr
    lines = _timings(r.stderr)
    phases = [p for _, _, p in lines]
    for want in ("interpreter start-up (python, site)", "flags parsed", "namespace child forked",
                 "child: user namespace", "child: id maps", "child: tap", "child: ready", "imported trio",
                 "imported the engine", "namespace child ready", "engine started", "API listening", "confined",
                 "command started", "child: command exited", "command exited", "instance stopped", "exit"):
        assert want in phases, (want, phases)
    launcher = [(at, took) for at, took, p in lines if not p.startswith("child: ")]
    for (a0, _), (a1, took) in zip(launcher, launcher[1:]):
        assert a1 >= a0 and abs((a1 - a0) - took) < 0.2, launcher  # each line: time since the previous one
    # the child sets up while the launcher imports: ready before the launcher has its engine
    at = {p: a for a, _, p in lines}
    assert at["namespace child forked"] <= at["child: user namespace"] <= at["child: ready"]


@pytest.mark.parametrize("value", ["", "0"])
def test_no_timing_lines_unless_asked(value):
    r = rn("run", "--", "true", env={**os.environ, "ROOTLESSNET_DEBUG_TIMING": value})
    assert (r.returncode, r.stderr) == (0, "")


def test_the_namespace_child_is_a_fork_of_the_launcher():
    """Not a second interpreter: the child's command line is the launcher's own, and its parent is it."""
    script = "cat /proc/$PPID/cmdline; echo; grep ^PPid: /proc/$PPID/status"
    argv = [*RN, "run", NO_DNS, "--", "sh", "-c", script]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    cmdline, ppid = out.splitlines()
    assert cmdline.split("\0") == [*argv, ""]
    assert ppid.split() == ["PPid:", str(p.pid)]


def test_fast_commands_keep_their_status():
    """A command that exits at once: the launcher has heard that it started (no lost 'start' reply)."""
    for code in (0, 3, 0, 5, 0, 0, 7, 0):
        r = rn("run", "--", "sh", "-c", f"exit {code}")
        assert (r.returncode, r.stderr) == (code, ""), r.stderr


LOADED = """
import json, sys
from rootlessnet.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _modules_after(*args: str) -> set[str]:
    """The modules the launcher of `rootlessnet run ARGS` had loaded when it finished."""
    r = subprocess.run([sys.executable, "-c", LOADED, "run", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["code"] == 0, r.stderr
    return set(out["modules"])


def _under(mods: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in mods if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_the_launcher_imports_only_what_the_mode_needs():
    default = _modules_after(NO_DNS, "--", "true")
    assert "rootlessnet.io.engine" in default and "rootlessnet.port.builtin" in default
    # the namespace child's modules stay in the child; no slirp port driver, harness, containers,
    # slirp4netns front end or test tools
    assert not _under(default, "rootlessnet.ns.child", "rootlessnet.ns.tap", "rootlessnet.ns.execd",
                      "rootlessnet.port.slirp", "rootlessnet.harness", "rootlessnet.oci", "rootlessnet.compat.slirp4netns",
                      "scapy", "pytest"), _under(default, "rootlessnet")

    none = _modules_after("--net=none", "--", "true")  # no engine, no port driver
    assert not _under(none, "rootlessnet.io", "rootlessnet.stack.core", "rootlessnet.port.builtin",
                      "rootlessnet.port.slirp", "rootlessnet.api.network"), _under(none, "rootlessnet")

    slirp_ports = _modules_after(NO_DNS, "--port-driver=slirp4netns", "--", "true")
    assert "rootlessnet.port.slirp" in slirp_ports


def test_options_and_flags_load_no_trio():
    code = ("import sys; import rootlessnet.compat.rootlesskit as rk, rootlessnet.instance, rootlessnet.ns.launcher; "
            "o, _ = rk.parse(['--', 'true']); o.opts.validate(); o.opts.namespace_options(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'h11')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.strip() == "[]"


def test_a_signal_during_set_up_reaches_the_command(tmp_path):
    """SIGTERM while the launcher still imports (before trio listens for signals) is held and
    forwarded, as one that comes later: the status says the command got it, and the temporary
    state directory is gone."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    env = {**os.environ, "ROOTLESSNET_DEBUG_TIMING": "1", "XDG_RUNTIME_DIR": str(run_dir)}
    p = subprocess.Popen([*RN, "run", NO_DNS, "--", "sleep", "30"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            seen.append(line)
            if not line or "namespace child forked" in line:
                break
        assert "namespace child forked" in seen[-1], seen
        p.send_signal(signal.SIGTERM)  # the launcher is importing trio and the engine now
        rest = p.stderr.read()
        assert p.wait(30) == 128 + signal.SIGTERM, "".join(seen) + rest
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert os.listdir(run_dir) == []


async def test_open_instance_with_other_threads_running():
    """In a process with other threads (a test suite, the harness), the child is still a fork:
    its modules are loaded first, so no lock another thread held at the fork can stop it."""
    from rootlessnet.instance import RunOptions, open_instance

    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, args=(60,), daemon=True)
    busy.start()
    try:
        assert threading.active_count() > 1
        opts = RunOptions(["sh", "-c", "exit 4"], quiet=True, dns_upstream="127.0.0.1:9")
        with trio.fail_after(60):
            async with open_instance(opts) as inst:
                assert await inst.wait() == 4
    finally:
        stop.set()
        busy.join()
