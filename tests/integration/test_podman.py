"""Podman 4.3 (Debian 12) on rootlessnet: containers.conf's network_cmd_path names our slirp4netns shim.

Podman runs the shim exactly as it runs slirp4netns (`--help` to pick
features, then `-c -e 3 -r 4 --netns-type=path ... tap0` with the options of
`--network slirp4netns:...` and `network_cmd_options`). Images come from
`podman import` of a busybox-static rootfs; nothing is pulled. The shim adds
--outbound=none and a DNS upstream on 127.0.0.1 that nobody answers, so
containers reach nothing but the host's loopback, when allowed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration import containers as ct
from tests.integration.conftest import requires_userns, wait_for

pytestmark = [pytest.mark.integration, requires_userns]

PODMAN = "/usr/bin/podman"
IMAGE = "localhost/busybox:rootlessnet"


def _missing() -> str | None:
    for path in (PODMAN, "/usr/bin/conmon", ct.BUSYBOX):
        if not os.path.exists(path):
            return f"{path} is missing (hack/setup-host installs podman and busybox-static)"
    return None


MISSING = _missing()


def _conf(path: Path, network_cmd_path: Path, options: list[str] = ()) -> Path:
    opts = ", ".join(f'"{o}"' for o in options)
    path.write_text(f"""[engine]
network_cmd_path = "{network_cmd_path}"
network_cmd_options = [{opts}]
cgroup_manager = "cgroupfs"
events_logger = "file"
""")
    return path


@dataclass
class Podman:
    home: Path
    run: Path
    env: dict[str, str]
    shim: Path
    log: Path  # what the logging wrapper saw: arguments, stderr, exit status of each shim run

    def __call__(self, *args: str, check: bool = True, timeout: float = 120, conf: Path | None = None
                 ) -> subprocess.CompletedProcess:
        env = dict(self.env, CONTAINERS_CONF=str(conf)) if conf else self.env
        r = subprocess.run([PODMAN, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {r.returncode}\n{r.stderr}\n--- shim log:\n{self.shim_log()}")
        return r

    def shim_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def conf(self, name: str, options: list[str] = (), cmd: Path | None = None) -> Path:
        return _conf(self.home / f"{name}.conf", cmd or self.shim, options)

    def our_processes(self) -> list[str]:
        """Our slirp4netns (and podman's rootlessport) processes still running for this podman."""
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{d}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and str(self.run) in cmd and ("slirp4netns" in cmd or "rootlessport" in cmd):
                out.append(f"{d}: {cmd[:160]}")
        return out


@pytest.fixture(scope="module")
def podman():
    if MISSING:
        pytest.skip(MISSING)
    home, run = ct.private_dirs("rnp")
    shims = ct.write_shims(home / "shims", ct.HERMETIC_S4_FLAGS)
    log = home / "shim.log"
    wrapper = home / "shims" / "slirp4netns-logged"
    # observes the shim (podman sends its output to an unlinked file): arguments, stderr, exit status
    wrapper.write_text(f'#!/bin/sh\necho "args: $*" >> {log}\n{shims}/slirp4netns "$@" 2>> {log}\n'
                       f'rc=$?\necho "exit $rc" >> {log}\nexit $rc\n')
    wrapper.chmod(0o755)
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(run), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env.update(ct.error_log_env())  # the engine's internal errors fail the test (tests/conftest.py)
    cfg = home / ".config" / "containers"
    cfg.mkdir(parents=True)
    _conf(cfg / "containers.conf", wrapper)
    (cfg / "storage.conf").write_text('[storage]\ndriver = "overlay"\n')
    p = Podman(home, run, env, wrapper, log)
    tar = ct.rootfs_tar(home / "rootfs.tar")
    p("import", "--change", "ENV PATH=/bin:/usr/bin", str(tar), IMAGE)
    try:
        yield p
    finally:
        p("rm", "-a", "-f", check=False)
        p("system", "reset", "--force", check=False, timeout=300)
        pause = run / "libpod" / "tmp" / "pause.pid"
        if pause.exists():
            try:
                os.kill(int(pause.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        ct.remove_tree(home)
        shutil.rmtree(run, ignore_errors=True)


def _addr(p: Podman, network: str, extra: str = "", **kw) -> str:
    # IPv6 comes by SLAAC from the engine's router advertisement: give it a moment
    script = (f"for i in $(seq 1 50); do ip -6 addr show dev tap0 | grep -q 'inet6 fd00' && break; sleep 0.1; done; "
              f"ip -o addr show dev tap0; ip route; cat /sys/class/net/tap0/mtu {extra}")
    return p("run", "--rm", "--network", network, IMAGE, "sh", "-c", script, **kw).stdout


def test_tap0_addresses_and_ipv6_when_asked(podman):
    out = _addr(podman, "slirp4netns")  # podman 4.3: enable_ipv6 is on by default
    assert "inet 10.0.2.100/24" in out and "default via 10.0.2.2 dev tap0" in out
    assert "inet6 fd00::" in out, out
    assert out.split()[-1] == "65520"
    assert "--enable-ipv6" in podman.shim_log() and "--netns-type=path" in podman.shim_log()
    out = _addr(podman, "slirp4netns:enable_ipv6=false")
    assert "inet 10.0.2.100/24" in out and "inet6 fd00" not in out


def test_cidr_and_mtu(podman):
    out = _addr(podman, "slirp4netns:cidr=10.0.3.0/24,mtu=1500")
    assert "inet 10.0.3.100/24" in out and "default via 10.0.3.2" in out
    assert out.split()[-1] == "1500"


@pytest.mark.parametrize("allow", [True, False])
def test_allow_host_loopback(podman, allow):
    server = ct.PeerServer("127.0.0.1")
    try:
        r = podman("run", "--rm", "--network", f"slirp4netns:allow_host_loopback={str(allow).lower()}", IMAGE,
                   "sh", "-c", f"nc -w 5 10.0.2.2 {server.port} </dev/null", check=False)
    finally:
        server.stop()
    if allow:
        assert r.returncode == 0 and r.stdout.encode() == ct.PeerServer.GREETING, r
        assert server.peers == ["127.0.0.1"]
    else:
        assert r.returncode != 0 and server.peers == [], r


def test_outbound_addr_and_outbound_addr6(podman):
    server = ct.PeerServer("127.0.0.1")
    server6 = ct.PeerServer("::1")
    try:
        out = podman("run", "--rm", "--network",
                     "slirp4netns:allow_host_loopback=true,outbound_addr=127.0.0.2,outbound_addr6=::1,enable_ipv6=true",
                     IMAGE, "sh", "-c",
                     f"nc -w 5 10.0.2.2 {server.port} </dev/null; "
                     f"for i in $(seq 1 50); do ip -6 addr show dev tap0 | grep -q 'inet6 fd00' && break; sleep 0.1; done; "
                     f"nc -w 5 fd00::2 {server6.port} </dev/null").stdout
    finally:
        server.stop()
        server6.stop()
    assert out.encode() == ct.PeerServer.GREETING * 2
    assert server.peers == ["127.0.0.2"]  # the host socket was bound to the outbound address
    assert server6.peers == ["::1"]
    assert "--outbound-addr=127.0.0.2" in podman.shim_log() and "--outbound-addr6=::1" in podman.shim_log()


@pytest.mark.parametrize("handler", ["slirp4netns", "rootlesskit"])
def test_published_port(podman, tmp_path, handler):
    www = tmp_path / "www"
    www.mkdir()
    www.chmod(0o755)
    _, digest = ct.blob(www)
    port = ct.free_port()
    name = f"web-{handler}"
    podman("run", "-d", "--name", name, "--network", f"slirp4netns:port_handler={handler}", "-v", f"{www}:/www:ro",
           "-p", f"127.0.0.1:{port}:80", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
    try:
        assert ct.http_sha256("127.0.0.1", port) == digest
        if handler == "slirp4netns":
            assert "--api-socket" in podman.shim_log().splitlines()[-1] or "--api-socket" in podman.shim_log()
    finally:
        podman("rm", "-f", "-t", "1", name)
    wait_for(lambda: not podman.our_processes(), timeout=20, what="the network helpers to exit")


def test_network_cmd_options_from_containers_conf(podman):
    conf = podman.conf("opts", ["allow_host_loopback=true", "mtu=9000", "enable_ipv6=false"], cmd=podman.shim)
    server = ct.PeerServer("127.0.0.1")
    try:
        out = podman("run", "--rm", "--network", "slirp4netns", IMAGE, "sh", "-c",
                     f"cat /sys/class/net/tap0/mtu; ip -o addr show dev tap0; nc -w 5 10.0.2.2 {server.port} </dev/null",
                     conf=conf).stdout
    finally:
        server.stop()
    lines = out.splitlines()
    assert lines[0] == "9000" and "inet6 fd00" not in out
    assert out.encode().endswith(ct.PeerServer.GREETING) and server.peers == ["127.0.0.1"]


def test_stop_is_clean(podman):
    """A container with a published port stops: the shim exits 0, prints no traceback, leaves nothing."""
    before = len(podman.shim_log().splitlines())
    port = ct.free_port()
    podman("run", "-d", "--name", "stopme", "--network", "slirp4netns:port_handler=slirp4netns",
           "-p", f"127.0.0.1:{port}:80", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
    assert ct.http_sha256("127.0.0.1", port, "/index.html") is not None
    sockets = list((podman.run / "libpod" / "tmp").glob("*.net"))
    assert sockets, "the API socket podman asked for"
    podman("stop", "-t", "1", "stopme")
    wait_for(lambda: "exit " in "\n".join(podman.shim_log().splitlines()[before:]), timeout=30,
             what="the shim to exit")
    new = podman.shim_log().splitlines()[before:]
    assert "exit 0" in new, new
    assert not any("Traceback" in line or "Error" in line for line in new), new
    wait_for(lambda: not podman.our_processes(), timeout=20, what="the network helpers to exit")
    assert not any(s.exists() for s in sockets)  # the API socket is removed
    podman("rm", "stopme")
