"""docs/compat.md keeps up with the flags, and `rootlessnet shims` writes working stand-ins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rootlessnet.compat import rootlesskit

DOCS = Path(__file__).resolve().parents[2] / "docs"
PODMAN_OPTIONS = ("allow_host_loopback", "cidr", "enable_ipv6", "mtu", "outbound_addr", "outbound_addr6", "port_handler")


def _table_cells(text: str) -> str:
    return "\n".join(line.split("|")[1] for line in text.splitlines() if line.startswith("| `"))


def test_every_flag_has_a_row_in_compat_md():
    cells = _table_cells((DOCS / "compat.md").read_text())
    for flag in rootlesskit.FLAGS:
        if flag.hidden:
            continue
        assert re.search(rf"`--{re.escape(flag.name)}[`=\[]", cells), f"--{flag.name} has no row in docs/compat.md"
    for value in rootlesskit.NETS:
        if value != "slirp":
            assert f"`--net={value}`" in cells, value
    for value in rootlesskit.PORT_DRIVER_MAP:
        if value != "slirp":
            assert f"`--port-driver={value}`" in cells, value


def test_every_podman_option_has_a_row_in_compat_md():
    cells = _table_cells((DOCS / "compat.md").read_text())
    for option in PODMAN_OPTIONS:
        assert f"`{option}=" in cells, option


def run(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, **kw)


def test_shims_are_found_and_run_rootlessnet(tmp_path):
    d = tmp_path / "shims"
    r = run(sys.executable, "-m", "rootlessnet", "shims", str(d), "--run-flag=--dns-upstream=127.0.0.1:9")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(d / "rootlesskit"), str(d / "slirp4netns")]
    env = dict(os.environ, PATH=f"{d}:/usr/bin:/bin")
    assert run("rootlesskit", "--version", env=env, cwd="/").stdout == "rootlesskit version 2.3.6\n"
    assert run("rootlesskit", "--print-semver", "major", env=env, cwd="/").stdout == "2\n"
    assert "--detach-netns" in run("rootlesskit", "--help", env=env, cwd="/").stdout
    helptext = run("slirp4netns", "--help", env=env, cwd="/").stdout
    for feature in ("--netns-type", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp", "--outbound-addr"):
        assert feature in helptext  # what dockerd-rootless.sh, rootlesskit and podman grep for
    # baked flags go before the caller's: a caller's own flag still wins (the last one does)
    assert "--dns-upstream=127.0.0.1:9" in (d / "rootlesskit").read_text()
    r = run("rootlesskit", "--dns-upstream=", "true", env=env, cwd="/")
    assert r.returncode != 0 and "--dns-upstream is empty" in r.stderr
    # written again over our own files; a foreign file needs --force
    assert run(sys.executable, "-m", "rootlessnet", "shims", str(d)).returncode == 0
    (d / "slirp4netns").write_text("#!/bin/sh\nexec /usr/bin/slirp4netns \"$@\"\n")
    r = run(sys.executable, "-m", "rootlessnet", "shims", str(d))
    assert r.returncode != 0 and "was not written by rootlessnet shims (use --force" in r.stderr
    assert run(sys.executable, "-m", "rootlessnet", "shims", "--force", str(d)).returncode == 0


@pytest.mark.parametrize("argv, words", [
    (["--run-flag=--bogus"], "--run-flag: flag provided but not defined: -bogus"),
    ([""], "DIR is empty"),
])
def test_shims_mistakes_are_one_line(tmp_path, argv, words):
    args = [str(tmp_path / "d"), *argv] if argv != [""] else argv
    r = run(sys.executable, "-m", "rootlessnet", "shims", *args)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
