"""`rootlessnet containerd` end to end, as an unprivileged user, with Debian's
containerd, runc, ctr and CNI plugins and an image built offline
(hack/make-busybox-image). One containerd serves the whole module; the last
test stops it and checks that nothing is left.

Network rule: the container talks to a server the test runs on the host's
127.0.0.1 (through 10.0.2.2, host loopback allowed) and is reached from
127.0.0.1:PORT; nothing else leaves the namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import RN, USERNS_PROBLEM, requires_userns, rn, wait_for

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "docker.io/library/busybox:rootlessnet"
SBIN_PATH = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin:/sbin"


def _missing() -> str | None:
    for b in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        if shutil.which(b, path=SBIN_PATH) is None:
            return f"{b} is not installed (apt-get install containerd runc)"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return None


MISSING = _missing()
pytestmark = [pytest.mark.integration, requires_userns,
              pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]


def _hook_problem() -> str | None:
    if not (ROOT / "rootlessnet" / "oci" / "hook.py").exists():
        return "rootlessnet/oci/hook.py does not exist yet"
    if "oci-hook" not in rn("--help").stdout:
        return "`rootlessnet oci-hook` is not registered in rootlessnet/cli.py"
    if not os.path.exists("/usr/lib/cni/bridge") and not os.path.exists("/opt/cni/bin/bridge"):
        return "CNI plugins are not installed (apt-get install containernetworking-plugins)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_shot_server(reply: bytes, timeout: float = 60) -> tuple[int, dict]:
    """A server on the host's 127.0.0.1 that answers one client, then stops (bounded)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(timeout)
    got: dict = {}

    def serve() -> None:
        try:
            c, _ = srv.accept()
            with c:
                c.settimeout(10)
                got["data"] = c.recv(1024)
                c.sendall(reply)
        except OSError as e:
            got["error"] = e
        finally:
            srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    got["thread"] = t
    return srv.getsockname()[1], got


class Containerd:
    def __init__(self, base: Path):
        self.base = base
        self.state = base / "state"
        self.env = {**os.environ, "HOME": str(base / "home"), "XDG_RUNTIME_DIR": str(base / "run"),
                    "XDG_DATA_HOME": str(base / "data"), "XDG_CONFIG_HOME": str(base / "config")}
        (base / "home").mkdir()
        (base / "run").mkdir(mode=0o700)
        self.out = open(base / "stdout", "w+")
        self.err = open(base / "stderr", "w+")
        self.proc = subprocess.Popen(
            [*RN, "containerd", "--allow-host-loopback", "--state-dir", str(self.state), "--stop-timeout", "5",
             "--", "--log-level", "warn"], stdout=self.out, stderr=self.err, env=self.env)
        try:
            wait_for(lambda: "is ready" in self.stdout() or self.proc.poll() is not None, timeout=90,
                     interval=0.1, what="containerd's ready message")
        except AssertionError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"rootlessnet containerd exited ({self.proc.returncode}): {self.stderr()}")
        self.started = time.monotonic()
        self.child_pid = int((self.state / "child_pid").read_text())
        self.userns = os.stat(f"/proc/{self.child_pid}/ns/user").st_ino

    def stdout(self) -> str:
        return (self.base / "stdout").read_text()

    def stderr(self) -> str:
        return (self.base / "stderr").read_text()

    def nsenter(self, *cmd: str, timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
        r = rn("nsenter", "--state-dir", str(self.state), "--", *cmd, timeout=timeout, env=self.env, **kw)
        if check:
            assert r.returncode == 0, f"{cmd}: {r.returncode}\n{r.stdout}\n{r.stderr}\n--- containerd:\n{self.stderr()[-3000:]}"
        return r

    def ctr(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.nsenter("ctr", *args, **kw)

    def stop(self, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.out.close()
        self.err.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def ctd(tmp_path_factory):
    if USERNS_PROBLEM or MISSING:
        pytest.skip(USERNS_PROBLEM or MISSING or "")
    base = tmp_path_factory.mktemp("ctd")
    c = Containerd(base)
    image = base / "busybox.tar"
    subprocess.run([sys.executable, str(ROOT / "hack" / "make-busybox-image"), str(image)], check=True,
                   capture_output=True, timeout=60)
    c.image = image
    yield c
    c.stop()


def _processes_in_userns(ino: int) -> list[str]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.stat(f"/proc/{d}/ns/user").st_ino == ino:
                cmdline = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append(f"{d} {cmdline}")
        except OSError:
            continue
    return out


# -- tests that need no namespaces -----------------------------------------------


def test_make_busybox_image_is_a_reproducible_oci_layout(tmp_path):
    import tarfile

    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    for out in (a, b):
        r = subprocess.run([sys.executable, str(ROOT / "hack" / "make-busybox-image"), str(out), "--name", "busybox:t"],
                           capture_output=True, text=True, timeout=60, check=True)
        assert r.stdout.strip() == "docker.io/library/busybox:t"
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as t:
        assert json.load(t.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        index = json.load(t.extractfile("index.json"))
        m = index["manifests"][0]
        assert m["annotations"]["io.containerd.image.name"] == "docker.io/library/busybox:t"
        manifest = json.load(t.extractfile(f"blobs/sha256/{m['digest'][7:]}"))
        (layer,) = manifest["layers"]
        with tarfile.open(fileobj=t.extractfile(f"blobs/sha256/{layer['digest'][7:]}"), mode="r:gz") as lt:
            names = {i.name: i for i in lt.getmembers()}
    assert names["bin/busybox"].isfile() and names["bin/busybox"].size == os.path.getsize("/bin/busybox")
    assert names["bin/sh"].issym() and names["bin/sh"].linkname == "/bin/busybox"


def test_runtime_dir_is_created_private_when_missing(tmp_path):
    from rootlessnet.oci.containerd import runtime_dir

    d, _ = runtime_dir(env={}, uid=os.getuid(), candidates=[str(tmp_path / "no-such")])
    assert d == f"/tmp/rootlessnet-runtime-{os.getuid()}"
    st = os.lstat(d)
    assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o700
    assert runtime_dir(env={"XDG_RUNTIME_DIR": str(tmp_path)})[0] == str(tmp_path)


def test_default_state_dir_moves_out_of_a_copied_up_run(tmp_path, monkeypatch):
    from rootlessnet.errors import UserError
    from rootlessnet.oci.containerd import Layout

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert Layout(None, ["/etc", "/run", "/var/lib"]).state == str(tmp_path / "rootlessnet-containerd")
    lay = Layout(None, ["/etc", "/run", "/var/lib", str(tmp_path)])  # as with XDG_RUNTIME_DIR=/run/user/UID
    assert lay.state == f"/tmp/rootlessnet-runtime-{os.getuid()}/rootlessnet-containerd"
    assert lay.moved_from == str(tmp_path / "rootlessnet-containerd")
    with pytest.raises(UserError, match="inside --copy-up"):
        Layout(str(tmp_path / "s"), ["/run", str(tmp_path)])


# -- one rootless containerd for the rest ---------------------------------------------


def test_ready_message_and_private_run_netns(ctd):
    out = ctd.stdout()
    assert f"rootlessnet nsenter --state-dir {ctd.state} -- ctr" in out
    assert (ctd.state / "containerd" / "containerd.sock").exists()
    r = ctd.nsenter("sh", "-c", "test -d /run/netns && ! test -L /run/netns && touch /run/netns/probe && "
                    "rm /run/netns/probe && grep -c '' /etc/containerd/config.toml && ls /etc/cni/net.d")
    assert "10-rootlessnet.conflist" in r.stdout
    # the defaults were written into the user's XDG dirs
    assert (ctd.base / "config" / "rootlessnet-containerd" / "containerd" / "config.toml").exists()


def test_second_instance_on_the_same_state_dir_is_refused(ctd):
    r = rn("containerd", "--state-dir", str(ctd.state), timeout=60, env=ctd.env)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "containerd is already running" in r.stderr and str(ctd.state) in r.stderr
    assert ctd.proc.poll() is None  # the first one is untouched


def test_import_offline_image_and_run_echo(ctd):
    ctd.ctr("images", "import", str(ctd.image))
    assert IMAGE in ctd.ctr("images", "ls", "-q").stdout.split()
    r = ctd.ctr("run", "--rm", "--cgroup", "", "--cpu-shares", "0", IMAGE, "echo1", "echo", "hello-from-containerd")
    assert r.stdout.strip() == "hello-from-containerd"
    # no network asked for: only lo in its own netns
    r = ctd.ctr("run", "--rm", "--cgroup", "", "--cpu-shares", "0", IMAGE, "echo2", "ip", "-o", "link")
    assert [l.split(":")[1].strip() for l in r.stdout.splitlines()] == ["lo"]


def test_network_through_the_oci_hook(ctd, tmp_path):
    problem = _hook_problem()
    if problem:
        pytest.skip(problem)
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    host_port, got = one_shot_server(b"hello-from-host\n")
    pub_port = free_port()
    script = (
        "trap 'exit 0' TERM; "
        "ip -o -4 addr show eth0 > /out/addr; "
        f"echo hello-from-container | nc 10.0.2.2 {host_port} > /out/reply; "
        "touch /out/listening; "
        "echo served-by-container | nc -l -p 80; "
        "touch /out/served; "
        "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"
    )
    spec = json.loads(ctd.ctr("oci", "spec").stdout)
    spec["process"]["args"] = ["/bin/sh", "-c", script]
    spec["process"]["env"] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    spec["process"]["terminal"] = False
    spec["root"] = {"path": str(rootfs), "readonly": False}
    spec["linux"].pop("cgroupsPath", None)  # no cgroups without delegation
    spec["linux"].pop("resources", None)
    spec["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    r = rn("oci-hook", "install", str(spec_file), "--state-dir", str(ctd.state), "-p", f"{pub_port}:80/tcp",
           env=ctd.env, timeout=60)
    assert r.returncode == 0, r.stderr
    ctd.ctr("images", "mount", "--rw", IMAGE, str(rootfs))
    try:
        ctd.ctr("run", "-d", "--config", str(spec_file), "net1")
        # (a) eth0 in 10.4.0.0/24 from CNI bridge + host-local
        wait_for(lambda: (out / "addr").exists() and (out / "addr").read_text(), timeout=30, what="the container's address")
        addr = (out / "addr").read_text()
        assert "eth0" in addr and " 10.4.0." in addr and "/24" in addr, addr
        ip = addr.split(" inet ")[1].split("/")[0]
        # (b) the host's 127.0.0.1 through 10.0.2.2 (host loopback allowed)
        got["thread"].join(timeout=30)
        assert got.get("data") == b"hello-from-container\n", got
        wait_for(lambda: (out / "reply").exists() and (out / "reply").read_text(), timeout=20, what="the host's reply")
        assert (out / "reply").read_text() == "hello-from-host\n"
        # (c) a host client on 127.0.0.1:PORT reaches the container through the annotation-published port
        wait_for(lambda: (out / "listening").exists(), timeout=20, what="the container's server")
        data = b""
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", pub_port), timeout=10) as c:
                    c.settimeout(10)
                    data = c.recv(1024)
                if data:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert data == b"served-by-container\n"
        lease = ctd.base / "data" / "rootlessnet-containerd" / "cni" / "networks" / "rootlessnet" / ip
        assert lease.exists()
        # left running on purpose: the stop test checks that stopping containerd detaches it
        ctd.net1_lease = lease
        ctd.net1_port = pub_port
    finally:
        if not hasattr(ctd, "net1_lease"):
            ctd.ctr("tasks", "kill", "-s", "SIGKILL", "net1", check=False)
            ctd.ctr("tasks", "delete", "net1", check=False)


def test_containerd_outlives_the_launchers_idle_worker_thread(ctd):
    """The namespace child's parent-death signal also fires when the launcher's
    thread that spawned it exits (trio's idle worker threads go after 10 s):
    containerd must not be stopped by that."""
    deadline = ctd.started + 12
    while time.monotonic() < deadline and ctd.proc.poll() is None:
        time.sleep(0.2)
    assert ctd.proc.poll() is None, ctd.stderr()
    assert IMAGE in ctd.ctr("images", "ls", "-q").stdout.split()


def test_stop_stops_tasks_then_containerd_and_leaves_nothing(ctd):
    r = ctd.ctr("run", "-d", "--cgroup", "", "--cpu-shares", "0", IMAGE, "sleeper", "sh", "-c",
                "trap 'exit 0' TERM; i=0; while [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done")
    tasks = ctd.ctr("tasks", "ls").stdout
    assert "sleeper" in tasks
    n_tasks = len(tasks.strip().splitlines()) - 1
    assert _processes_in_userns(ctd.userns)
    assert any("containerd-shim" in p for p in _processes_in_userns(ctd.userns))
    t0 = time.monotonic()
    rc = ctd.stop()
    err = ctd.stderr()
    assert rc == 0, err
    assert time.monotonic() - t0 < 60
    assert f"stopped and deleted {n_tasks} task(s)" in err, err
    assert "leftover" not in err and "SIGKILL" not in err, err  # the tasks stopped on SIGTERM
    # no process of the instance is left (containerd, shims, containers are all in its user ns),
    # hence no mount namespace either: its mounts are gone with it
    wait_for(lambda: not _processes_in_userns(ctd.userns), timeout=10, what="the instance's processes to go")
    assert sorted(p.name for p in ctd.state.iterdir()) == ["lock"]
    if hasattr(ctd, "net1_lease"):
        # the poststop hook ran (task delete): the IP is released and the port is closed
        assert not ctd.net1_lease.exists()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", ctd.net1_port), timeout=5).close()
