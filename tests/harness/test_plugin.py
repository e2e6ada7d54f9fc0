"""The pytest plugin, run in a separate pytest: fixtures, marker, failure reports, skips, loading."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rootlessnet

PKG_PARENT = str(Path(rootlessnet.__file__).resolve().parent.parent)


def run_pytest(tmp_path: Path, files: dict[str, str], *args: str, entry_point: bool = False) -> subprocess.CompletedProcess:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    path = [PKG_PARENT]
    if entry_point:  # as if installed: a distribution whose metadata declares the entry point
        dist = tmp_path / "site" / "rootlessnet_fake-0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rootlessnet-fake\nVersion: 0\n")
        (dist / "entry_points.txt").write_text(
            "[pytest11]\nrootlessnet.harness.pytest_plugin = rootlessnet.harness.pytest_plugin\n")
        path.append(str(tmp_path / "site"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:trio", "-q", "-rs", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


PLUGIN = ("-p", "rootlessnet.harness.pytest_plugin")

USES = """
    import pytest

    @pytest.mark.rootless(hosts={"x.test": "10.0.2.2"})
    def test_marker_options(rootless_sandbox):
        r = rootless_sandbox.run(["getent", "hosts", "x.test"], capture_output=True, text=True, check=True)
        assert r.stdout.split()[0] == "10.0.2.2"

    @pytest.mark.rootless(names=["p", "q"])
    def test_network_names(rootless_network):
        assert [h.name for h in rootless_network.hosts] == ["p", "q"]

    def test_factories(rootless_sandbox_factory, rootless_network_factory):
        one, two = rootless_sandbox_factory(), rootless_sandbox_factory(ipv6=True)
        net = rootless_network_factory(["n1"])
        assert one.state_dir != two.state_dir and net.host("n1").ipv4 == "10.0.2.101"
"""


@pytest.mark.rootless
@pytest.mark.parametrize("how", ["-p", "entry point", "both"])
def test_fixtures_and_marker(tmp_path, how):
    args = PLUGIN if how != "entry point" else ()
    r = run_pytest(tmp_path, {"test_uses.py": USES}, *args, entry_point=how != "-p")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 passed" in r.stdout


@pytest.mark.rootless
def test_failure_report_has_statistics_and_pcap(tmp_path):
    r = run_pytest(tmp_path, {"test_fails.py": """
        import pytest

        @pytest.mark.rootless(pcap="cap.pcap")
        def test_fails(rootless_sandbox):
            rootless_sandbox.run(["getent", "hosts", "nowhere.test"])
            assert False, "the test's own failure"
    """}, *PLUGIN)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "the test's own failure" in out
    assert "rootlessnet sandbox 0" in out
    assert f"pcap: {tmp_path / 'cap.pcap'}" in out
    assert "dns_static_answers=" in out  # the engine's counters


@pytest.mark.rootless
def test_pcap_option(tmp_path):
    r = run_pytest(tmp_path, {"test_pcap.py": """
        def test_one(rootless_sandbox):
            assert rootless_sandbox.pcap
    """}, *PLUGIN, "--rootless-pcap", str(tmp_path / "caps"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.name for p in (tmp_path / "caps").iterdir()] == ["test_pcap.py_test_one-0.pcap"]


def test_skips_say_what_is_missing(tmp_path):
    r = run_pytest(tmp_path, {
        "conftest.py": """
            import rootlessnet.harness.env as env
            env.environment_problem = lambda: "/dev/net/tun cannot be opened (Permission denied)"
        """,
        "test_skip.py": """
            import pytest

            def test_fixture(rootless_sandbox):
                pass

            @pytest.mark.rootless
            def test_marked():
                pass

            def test_other():
                pass
        """}, *PLUGIN)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 2 skipped" in r.stdout
    assert r.stdout.count("rootlessnet sandboxes need unprivileged user namespaces and /dev/net/tun: "
                          "/dev/net/tun cannot be opened (Permission denied)") == 2


def test_marker_is_registered(tmp_path):
    r = run_pytest(tmp_path, {}, *PLUGIN, "--markers")
    assert "@pytest.mark.rootless(**options)" in r.stdout
