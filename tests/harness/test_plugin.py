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


def run_pytest(tmp_path: Path, files: dict[str, str], *args: str, entry_point: bool = False,
               trio: bool = False) -> subprocess.CompletedProcess:
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
    no_trio = () if trio else ("-p", "no:trio")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *no_trio, "-q", "-rs", *args],
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


@pytest.mark.rootless
def test_failure_report_of_a_network_has_impairments_and_a_pcap_per_host(tmp_path):
    caps = tmp_path / "caps"
    r = run_pytest(tmp_path, {"test_net.py": """
        import sys

        import pytest

        @pytest.mark.rootless(names=["p", "q"])
        def test_fails(rootless_network):
            net = rootless_network
            net.pair("p", "q").impair(delay=0.001, loss=0.5, seed=9)
            net.host("p").run([sys.executable, "-c", "import socket; s = socket.socket(2, 2); "
                               "[s.sendto(b'x', ('q', 9)) for _ in range(20)]"], check=True)
            net.block("q", "p")
            assert False, "the test's own failure"

        def test_passes(rootless_network):
            rootless_network.host("a").run(["true"], check=True)
    """}, *PLUGIN, "--rootless-pcap", str(caps), "--rootless-pcap-keep", "failed")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "rootlessnet network 0" in out
    assert "impairment p->q: delay=0.001 loss=0.5 seed=9" in out
    assert "queue p->q: frames=" in out and "blocked: q->p" in out
    stem = caps / "test_net.py_test_fails-0"
    assert f"pcap of p: {stem}-p.pcap" in out and f"pcap of q: {stem}-q.pcap" in out
    # written once the network stopped; the passing test's capture was deleted (--rootless-pcap-keep=failed)
    assert sorted(p.name for p in caps.iterdir()) == [f"{stem.name}-p.pcap", f"{stem.name}-q.pcap", f"{stem.name}.pcap"]
    from rootlessnet.harness import pcap

    p_frames = list(pcap.read(str(stem) + "-p.pcap"))
    assert p_frames and len(p_frames) < len(list(pcap.read(str(stem) + ".pcap")))


@pytest.mark.rootless
def test_async_fixtures_under_pytest_trio_and_pytest_asyncio(tmp_path):
    body = """
        import pytest

        @pytest.mark.rootless(hosts={{"x.test": "10.0.2.2"}})
        {mark}
        async def test_sandbox({prefix}sandbox_{fw}):
            r = await {prefix}sandbox_{fw}.run(["getent", "hosts", "x.test"], capture_output=True, text=True)
            assert r.stdout.split()[0] == "10.0.2.2"

        @pytest.mark.rootless(names=["m", "n"])
        {mark}
        async def test_network({prefix}network_{fw}):
            net = {prefix}network_{fw}
            await net.link("m").impair(delay=0.001)
            assert (await net.host("m").run(["hostname"], capture_output=True, text=True)).stdout == "m\\n"
    """
    trio_tests = body.format(mark="@pytest.mark.trio", prefix="rootless_", fw="trio")
    (tmp_path / "trio").mkdir()
    (tmp_path / "asyncio").mkdir()
    r = run_pytest(tmp_path / "trio", {"test_trio.py": trio_tests}, *PLUGIN, trio=True)
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout + r.stderr
    asyncio_tests = body.format(mark="@pytest.mark.asyncio", prefix="rootless_", fw="asyncio")
    r = run_pytest(tmp_path / "asyncio", {"test_asyncio.py": asyncio_tests}, *PLUGIN)
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout + r.stderr


def test_require_names_what_is_missing(tmp_path):
    r = run_pytest(tmp_path, {
        "conftest.py": """
            import rootlessnet.harness.env as env
            env.environment_problem = lambda: None
            env.newuidmap_problem = lambda: "newuidmap and newgidmap (package uidmap), for a namespace with more ids"
        """,
        "test_req.py": """
            import pytest

            @pytest.mark.rootless(require=["newuidmap"])
            def test_needs():
                pass
        """}, *PLUGIN)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "this test needs newuidmap and newgidmap (package uidmap)" in r.stdout


def test_environment_diagnosis_names_the_sysctl(tmp_path):
    from rootlessnet.harness import env

    sysctl = tmp_path / "sys"
    (sysctl / "kernel").mkdir(parents=True)
    (sysctl / "kernel" / "apparmor_restrict_unprivileged_userns").write_text("1\n")
    why = env.userns_problem(try_userns=lambda: "unshare: write failed /proc/self/uid_map: Operation not permitted",
                             proc_sys=str(sysctl))
    assert "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu's AppArmor restriction)" in why
    assert "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in why
    assert env.userns_problem(try_userns=lambda: None, proc_sys=str(sysctl)) is None
    assert "cannot be opened" in env.tun_problem(str(tmp_path / "no-tun"))
    assert "newuidmap and newgidmap (package uidmap)" in env.newuidmap_problem(which=lambda p: None)
    subuid = tmp_path / "subuid"
    subuid.write_text("someone:100000:65536\n")
    assert "subordinate id range for me" in env.newuidmap_problem(which=lambda p: "/usr/bin/" + p,
                                                                  subuid=str(subuid), user="me")
    with pytest.raises(ValueError, match="require='gpu'"):
        env.missing(("gpu",))
