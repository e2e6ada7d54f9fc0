"""Docker rootless on rootlessnet, end to end: Debian's docker.io 20.10 and its own dockerd-rootless.sh, unmodified.

Only PATH points at `rootlessnet shims` (rootlesskit -> rootlessnet run,
slirp4netns -> rootlessnet slirp4netns). Ports go through Debian's
rootlesskit-docker-proxy and our API. One dockerd per port driver serves all
the tests of this module (the last one stops it with SIGTERM):

- builtin (the script's default), host loopback disabled (the script's default);
- DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER=slirp4netns, host loopback enabled the
  way the script allows: DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS=--disable-host-loopback=false.

The shims add --outbound=none and a DNS upstream on 127.0.0.1 that nobody
answers: containers reach nothing but the host's loopback (when allowed) and
each other. Images come from `docker import` of a busybox-static rootfs.
dockerd runs with --shutdown-timeout=3: containers whose PID 1 ignores
SIGTERM would otherwise hold the stop for 15 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration import containers as ct
from tests.integration.conftest import requires_userns, wait_for

pytestmark = [pytest.mark.integration, requires_userns]

SCRIPT = "/usr/share/docker.io/contrib/dockerd-rootless.sh"
DOCKER = "/usr/bin/docker"  # Debian's client, not whatever else is first on PATH
IMAGE = "busybox:rootlessnet"


def _missing() -> str | None:
    for path in (SCRIPT, DOCKER, "/usr/sbin/dockerd", "/usr/bin/rootlesskit-docker-proxy", ct.BUSYBOX):
        if not os.path.exists(path):
            return f"{path} is missing (hack/setup-host installs docker.io, rootlesskit and busybox-static)"
    return None


MISSING = _missing()


@dataclass
class Dockerd:
    driver: str
    host_loopback: bool
    home: Path
    run: Path
    proc: subprocess.Popen
    env: dict[str, str]
    log: Path
    state_dir: str = ""
    stopped: bool = False
    extra: dict = field(default_factory=dict)

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        assert not self.stopped, "dockerd was stopped by an earlier test of this module"
        r = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.returncode}\n{r.stderr}\n--- dockerd log:\n{self.tail()}")
        return r

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _start(driver: str, host_loopback: bool) -> Dockerd:
    home, run = ct.private_dirs("rnd")
    shims = ct.write_shims(home / "shims", ct.HERMETIC_RUN_FLAGS)
    env = {
        "HOME": str(home), "XDG_RUNTIME_DIR": str(run), "PATH": f"{shims}:/usr/sbin:/usr/bin:/sbin:/bin",
        "DOCKER_HOST": f"unix://{run}/docker.sock", "DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER": driver,
        "LANG": "C.UTF-8",
    }
    env.update(ct.error_log_env())  # the engine's internal errors fail the test (tests/conftest.py)
    if host_loopback:
        env["DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS"] = "--disable-host-loopback=false"
    log = home / "dockerd.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([SCRIPT, "--shutdown-timeout=3"], env=env, stdout=f, stderr=subprocess.STDOUT,
                                cwd=home, start_new_session=True)
    d = Dockerd(driver, host_loopback, home, run, proc, env, log)
    wait_for(lambda: (run / "docker.sock").exists() or proc.poll() is not None, timeout=90,
             what="dockerd's socket")
    if proc.poll() is not None:
        raise AssertionError(f"dockerd-rootless.sh exited with {proc.returncode}:\n{d.tail()}")
    wait_for(lambda: d.docker("version", check=False).returncode == 0, timeout=60, what="dockerd to answer")
    dirs = ct.state_dirs(run)
    assert len(dirs) == 1, dirs
    d.state_dir = dirs[0]
    tar = ct.rootfs_tar(home / "rootfs.tar")
    d.docker("import", "--change", "ENV PATH=/bin:/usr/bin", str(tar), IMAGE)
    return d


def _stop(d: Dockerd) -> None:
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait(30)
    d.stopped = True


@pytest.fixture(scope="module", params=[("builtin", False), ("slirp4netns", True)],
                ids=["builtin", "slirp4netns-port-driver"])
def dockerd(request):
    if MISSING:
        pytest.skip(MISSING)
    d = _start(*request.param)
    try:
        yield d
    finally:
        _stop(d)
        ct.remove_tree(d.home)
        shutil.rmtree(d.run, ignore_errors=True)


@pytest.fixture
def www(dockerd, tmp_path):
    """A directory with a 4 MiB blob, served by busybox httpd in a container."""
    d = tmp_path / "www"
    d.mkdir()
    d.chmod(0o755)
    path, digest = ct.blob(d)
    return d, digest


def test_docker_info_says_rootless(dockerd):
    info = json.loads(dockerd.docker("info", "--format", "{{json .}}").stdout)
    assert "name=rootless" in info["SecurityOptions"], info["SecurityOptions"]
    assert info["ServerVersion"].startswith("20.10")
    # dockerd runs inside the rootlessnet instance the rootlesskit shim started
    api = ct.api_ports(dockerd.state_dir)
    assert isinstance(api, list)


def test_container_runs_from_an_imported_image(dockerd):
    out = dockerd.docker("run", "--rm", IMAGE, "sh", "-c", "echo hello; ip -4 route; cat /etc/resolv.conf").stdout
    assert out.splitlines()[0] == "hello"
    assert "default via 172.17.0.1" in out  # docker0, inside the instance's network namespace
    assert "nameserver" in out


def _ports(dockerd, port: int) -> list[dict]:
    return [p for p in ct.api_ports(dockerd.state_dir) if p["spec"]["parentPort"] == port]


def _refused(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_published_ports_v4_and_v6_serve_exact_bytes_and_leave_the_api(dockerd, www):
    d, digest = www
    port = ct.free_port()
    cid = dockerd.docker("run", "-d", "-v", f"{d}:/www:ro", "-p", f"127.0.0.1:{port}:80", "-p", f"[::1]:{port}:80",
                         IMAGE, "httpd", "-f", "-p", "80", "-h", "/www").stdout.strip()
    try:
        assert ct.http_sha256("127.0.0.1", port) == digest
        if dockerd.driver == "builtin":
            assert ct.http_sha256("::1", port) == digest
            assert sorted(p["spec"]["parentIP"] for p in _ports(dockerd, port)) == ["127.0.0.1", "::1"]
        else:
            # As with rootlesskit: its slirp4netns port driver is IPv4 only, so rootlesskit-docker-proxy
            # drops the [::1] request with a warning (docs/containers.md) and the container still starts.
            assert [p["spec"]["parentIP"] for p in _ports(dockerd, port)] == ["127.0.0.1"]
            assert _refused("::1", port)
    finally:
        dockerd.docker("rm", "-f", cid)
    wait_for(lambda: not _ports(dockerd, port), timeout=20, what="the container's ports to leave the API")
    assert _refused("127.0.0.1", port)


def test_publish_on_every_address(dockerd, www):
    """`-p P:80`: Docker 20.10 asks for 0.0.0.0 and ::, which must not make the container fail."""
    d, digest = www
    port = ct.free_port()
    cid = dockerd.docker("run", "-d", "-v", f"{d}:/www:ro", "-p", f"{port}:80", IMAGE,
                         "httpd", "-f", "-p", "80", "-h", "/www").stdout.strip()
    try:
        assert ct.http_sha256("127.0.0.1", port) == digest
        assert "0.0.0.0" in [p["spec"]["parentIP"] for p in _ports(dockerd, port)]
    finally:
        dockerd.docker("rm", "-f", cid)
    wait_for(lambda: not _ports(dockerd, port), timeout=20, what="the container's ports to leave the API")


def test_host_loopback_as_the_script_allows(dockerd):
    server = ct.PeerServer("127.0.0.1")
    try:
        r = dockerd.docker("run", "--rm", IMAGE, "sh", "-c", f"nc -w 5 10.0.2.2 {server.port} </dev/null", check=False)
    finally:
        server.stop()
    if dockerd.host_loopback:  # DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS=--disable-host-loopback=false
        assert r.returncode == 0 and r.stdout.encode() == ct.PeerServer.GREETING, r
        assert server.peers == ["127.0.0.1"]
    else:  # the script's own --disable-host-loopback
        assert r.returncode != 0 and r.stdout == "", r
        assert server.peers == []


def test_user_defined_network_resolves_names(dockerd):
    net = f"rn-{dockerd.driver}"
    dockerd.docker("network", "create", net)
    try:
        dockerd.docker("run", "-d", "--network", net, "--name", "webby", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
        try:
            out = dockerd.docker("run", "--rm", "--network", net, IMAGE, "sh", "-c",
                                 "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://webby/ && exit 0; sleep 0.3; done;"
                                 " exit 1").stdout
            assert out == "hello\n"
        finally:
            dockerd.docker("rm", "-f", "webby")
    finally:
        dockerd.docker("network", "rm", net)


def _documented_block() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "containers.md").read_text()
    after = text.split("<!-- ci: test_docker.py -->", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_documented_commands():
    """docs/containers.md opens with Docker rootless on rootlessnet: CI runs that block as written
    (another port than 8080; rootlessnet's own flags for a hermetic run through the script's variable)."""
    if MISSING:
        pytest.skip(MISSING)
    import sys

    block = _documented_block()
    assert "dockerd-rootless.sh" in block and "rootlessnet shims" in block
    port = ct.free_port()
    home, run = ct.private_dirs("rndoc")
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(run), "LANG": "C.UTF-8",
           "PATH": f"{os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin",
           "DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS": "--outbound=none --dns-upstream=127.0.0.1:9", **ct.error_log_env()}
    try:
        r = subprocess.run(["bash", "-e", "-c", block.replace("8080", str(port))], env=env, cwd=home,
                           capture_output=True, text=True, timeout=240, start_new_session=True)
        log = (home / "dockerd.log").read_text(errors="replace")[-3000:] if (home / "dockerd.log").exists() else ""
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n--- dockerd.log:\n{log}"
        lines = r.stdout.splitlines()
        assert any("name=rootless" in line for line in lines), r.stdout
        assert "hello" in lines, r.stdout
        assert any(line.split()[1:4] == ["tcp4", "127.0.0.1", str(port)] for line in lines if line[:1].isdigit()), r.stdout
        assert ct.state_dirs(run) == []  # the instance went with dockerd
        wait_for(lambda: not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, str(run))],
                 timeout=30, what="every process of the documented run to go")
    finally:
        ct.remove_tree(home)
        shutil.rmtree(run, ignore_errors=True)


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def test_sigterm_to_the_launcher_leaves_nothing(dockerd):
    """Last in the module: it stops this dockerd."""
    dockerd.docker("run", "-d", IMAGE, "sh", "-c", "while true; do sleep 1; done")
    child = int(Path(dockerd.state_dir, "child_pid").read_text())
    userns = ct.userns_of(child)
    assert any("containerd-shim" in p for p in ct.processes_in_userns(userns))
    launcher = dockerd.proc.pid  # dockerd-rootless.sh exec'd the rootlesskit shim, which exec'd rootlessnet run
    assert "rootlessnet" in Path(f"/proc/{launcher}/cmdline").read_bytes().decode(errors="replace")
    os.kill(launcher, signal.SIGTERM)
    rc = dockerd.proc.wait(90)
    dockerd.stopped = True
    assert rc in (0, 128 + signal.SIGTERM), (rc, dockerd.tail())
    wait_for(lambda: not ct.processes_in_userns(userns), timeout=30, what="the instance's processes to go")
    assert not os.path.exists(dockerd.state_dir)
    assert ct.state_dirs(dockerd.run) == []
    assert ct.mounts_mentioning(str(dockerd.run)) == []  # the mounts lived in the instance's namespace, gone with it
