"""runc by hand inside an instance, with the rootlessnet OCI hook doing CNI (bridge + host-local + portmap + firewall).

Real runc, real CNI plugins from Debian, a busybox rootfs built offline from
busybox-static, as the unprivileged user. All traffic stays on loopback or
inside the instance's namespaces (10.0.2.0/24, the 10.4.0.0/24 CNI bridge).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import RN, requires_userns, rn, wait_for

CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
PLUGINS = ("bridge", "host-local", "portmap", "firewall")


def _missing() -> str | None:
    miss = [t for t in ("runc", "iptables") if not shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
    if not os.path.exists("/bin/busybox"):
        miss.append("busybox-static (/bin/busybox)")
    for p in PLUGINS:
        if not any(os.access(os.path.join(d, p), os.X_OK) for d in CNI_DIRS):
            miss.append(f"CNI plugin {p} (containernetworking-plugins)")
    return f"missing: {', '.join(miss)} (hack/setup-host installs them)" if miss else None


MISSING = _missing()
pytestmark = [pytest.mark.integration, requires_userns, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]

CONFLIST = {
    "cniVersion": "1.0.0", "name": "rn",
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.4.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall"},
    ],
}
INSTANCE_FLAGS = ("--detach-netns", "--copy-up=/etc", "--copy-up=/run", "--copy-up=/var/lib",
                  "--allow-host-loopback", "--outbound=none")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_rootfs(root: Path) -> Path:
    """/bin/busybox from busybox-static and its applets as symlinks; /www/{a,b}/index.html."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True, timeout=30).stdout.split()
    for a in applets:
        if a != "busybox":
            (root / "bin" / a).symlink_to("busybox")
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (root / d).mkdir()
    for name in ("a", "b"):
        (root / "www" / name).mkdir(parents=True)
        (root / "www" / name / "index.html").write_text(f"hello from {name}\n")
    return root


class Runc:
    """runc driven inside the instance (user + mount namespaces; the detached netns stays the hook's business)."""

    def __init__(self, state: Path, root: Path):
        self.state = state
        self.root = root
        self.pids: list[int] = []

    def __call__(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["nsenter", "--state-dir", str(self.state), "--no-net", "--", "runc", "--root", str(self.root), *args]
        if "-d" in args:  # a detached container keeps runc's stdio open: give it files, not pipes
            out = self.root.parent / "runc-run.out"
            with open(out, "w+") as f:
                p = subprocess.run([*RN, *cmd], stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
                f.seek(0)
                text = f.read()
            r = subprocess.CompletedProcess(p.args, p.returncode, text, text)
        else:
            r = rn(*cmd, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"runc {' '.join(args)} failed ({r.returncode}): {r.stderr}{r.stdout}")
        return r

    def bundle(self, path: Path, rootfs: Path, args: list[str], *, ports: str | None = None, netns: str | None = None) -> Path:
        """`runc spec --rootless`, made cgroup-free and userns-free (we are root in the instance's userns)."""
        path.mkdir()
        subprocess.run(["runc", "spec", "--rootless", "--bundle", str(path)], check=True, timeout=30)
        cfg = json.loads((path / "config.json").read_text())
        cfg["root"] = {"path": str(rootfs), "readonly": True}
        cfg["process"].update(terminal=False, args=args)
        lx = cfg["linux"]
        lx.pop("resources", None)  # no cgroup delegation here: any resource limit fails
        lx.pop("uidMappings", None)
        lx.pop("gidMappings", None)
        lx["namespaces"] = [n for n in lx["namespaces"] if n["type"] != "user"]
        (path / "config.json").write_text(json.dumps(cfg))
        flags = ["--state-dir", str(self.state)]
        if ports:
            flags += ["--publish", ports]
        if netns:
            flags += ["--netns", netns]
        r = rn("oci-hook", "install", str(path / "config.json"), *flags)
        assert r.returncode == 0, r.stderr
        return path

    def run(self, cid: str, bundle: Path) -> None:
        self("run", "-d", "--bundle", str(bundle), cid)
        st = json.loads(self("state", cid).stdout)
        self.pids.append(int(st["pid"]))  # a pid of the host's PID namespace (the instance has none of its own)

    def remove(self, cid: str) -> None:
        self("kill", cid, "KILL", check=False)
        wait_for(lambda: "stopped" in self("state", cid, check=False).stdout or
                 self("state", cid, check=False).returncode != 0, timeout=20, what=f"{cid} to stop")
        self("delete", "--force", cid)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> Path:
    return build_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def instance(background, state_dir, tmp_path):
    b = background(*INSTANCE_FLAGS)
    conf = tmp_path / "10-rn.conflist"
    conf.write_text(json.dumps(CONFLIST))
    r = rn("nsenter", "--state-dir", str(state_dir), "--no-net", "--",
           # with --copy-up=/etc, a host /etc/cni (podman ships one) is a symlink to the read-only original:
           # replace it with our own directory
           "sh", "-c", f"rm -f /etc/cni && mkdir -p /etc/cni/net.d && cp {conf} /etc/cni/net.d/")
    assert r.returncode == 0, f"cannot write the CNI configuration inside the instance: {r.stderr}"
    runc = Runc(state_dir, tmp_path / "runc-root")
    yield b, runc
    # whatever a failed test left: containers first (their poststop hooks need the instance)
    r = runc("list", "-q", check=False)
    for cid in r.stdout.split():
        runc("delete", "--force", cid, check=False, timeout=30)
    # runc ran under `rootlessnet nsenter`, not below the instance: its containers are not the
    # instance's descendants and would outlive it. Kill what is left (our own processes, by pid).
    for pid in runc.pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass


def http_get(port: int, timeout: float = 15.0) -> str:
    """GET / from 127.0.0.1:port, retried (bounded) until the server in the container answers."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(5)
                s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            if data:
                return data.decode("utf-8", "replace")
            last = ConnectionError("empty answer")
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"no answer from 127.0.0.1:{port} within {timeout} s: {last}")


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


class OneShotServer:
    """A TCP server on the host's 127.0.0.1 answering a marker to up to `n` clients, stopping by itself."""

    def __init__(self, marker: bytes, n: int = 1, lifetime: float = 60):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(lifetime)
        self.port = self.sock.getsockname()[1]
        self.marker = marker
        self.peers: list[str] = []
        self.thread = threading.Thread(target=self._serve, args=(n,), daemon=True)
        self.thread.start()

    def _serve(self, n: int) -> None:
        try:
            for _ in range(n):
                c, addr = self.sock.accept()
                with c:
                    self.peers.append(addr[0])
                    c.sendall(self.marker)
        except OSError:
            pass
        finally:
            self.sock.close()


def has_cid(iptables_save: str, cid: str) -> bool:
    """Rules CNI tagged with this container id (iptables-save escapes the comment's quotes)."""
    return f'id: \\"{cid}\\"' in iptables_save or f'id: "{cid}"' in iptables_save


def inside(state: Path, script: str, *, net: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    args = ["nsenter", "--state-dir", str(state)] + ([] if net else ["--no-net"]) + ["--", "sh", "-c", script]
    return rn(*args, timeout=timeout)


def netns_list(state: Path) -> list[dict]:
    r = rn("netns", "list", "--json", "--state-dir", str(state), timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_runc_container_gets_cni_network_host_access_and_published_port(instance, state_dir, rootfs, tmp_path):
    _, runc = instance
    hport = free_port()
    bundle = runc.bundle(tmp_path / "b1", rootfs, ["sh", "-c", "httpd -f -p 80 -h /www/a & exec sleep 300"],
                         ports=f"{hport}:80/tcp")
    runc.run("c1", bundle)

    # (a) eth0 in 10.4.0.0/24, seen from the container itself
    r = runc("exec", "c1", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
    assert " 10.4.0." in r.stdout and "/24" in r.stdout, r.stdout
    ip = r.stdout.split(" inet ")[1].split("/")[0]
    cache = json.loads((state_dir / "cni-cache" / "c1.json").read_text())
    assert cache["result"]["ips"][0]["address"] == f"{ip}/24"
    assert "attached to rn" in (state_dir / "oci-hook.log").read_text()

    # netns list maps the container's eth0 to its veth on cni0
    nss = {ns["name"]: ns for ns in netns_list(state_dir)}
    eth0 = next(l for l in nss["container:c1"]["interfaces"] if l["name"] == "eth0")
    assert eth0["peer"]["netns"] == "main" and eth0["peer"]["master"] == "cni0"
    veth = next(l for l in nss["main"]["interfaces"] if l["name"] == eth0["peer"]["name"])
    assert veth["master"] == "cni0" and veth["peer"]["name"] == "eth0" and veth["peer"]["netns"] == "container:c1"

    # (b) the container reaches a server on the host's 127.0.0.1 through the engine (10.0.2.2, host loopback allowed)
    srv = OneShotServer(b"from-the-host\n")
    r = runc("exec", "c1", "nc", "-w", "5", "10.0.2.2", str(srv.port), timeout=30)
    assert r.stdout == "from-the-host\n", r.stderr
    srv.thread.join(10)
    assert srv.peers == ["127.0.0.1"]

    # (c) a host client on 127.0.0.1:HOSTPORT reaches httpd in the container (API port + portmap DNAT)
    assert "hello from a" in http_get(hport)
    ports = json.loads(rn("ports", "list", "--json", "--state-dir", str(state_dir), check=True).stdout)
    assert [(p["spec"]["parentPort"], p["spec"]["childPort"]) for p in ports] == [(hport, hport)]

    before = inside(state_dir, "iptables-save").stdout
    assert ip in before and has_cid(before, "c1")

    # delete: veth, lease, iptables rules, published port, cache and pin are gone
    runc.remove("c1")
    assert "detached" in (state_dir / "oci-hook.log").read_text()
    after = inside(state_dir, "iptables-save").stdout
    assert ip not in after and not has_cid(after, "c1") and str(hport) not in after, after
    leases = inside(state_dir, "ls /var/lib/cni/networks/rn", net=False).stdout.split()
    assert ip not in leases, leases
    nss = {ns["name"]: ns for ns in netns_list(state_dir)}
    assert "container:c1" not in nss
    assert not [l for l in nss["main"]["interfaces"] if l["kind"] == "veth"]
    assert json.loads(rn("ports", "list", "--json", "--state-dir", str(state_dir), check=True).stdout) == []
    assert port_closed(hport)
    assert not (state_dir / "cni-cache" / "c1.json").exists()

    # poststop again (runc never does, but a retry must be harmless): nothing to undo, exit 0
    st = json.dumps({"ociVersion": "1.0.2", "id": "c1", "pid": 0, "status": "stopped", "bundle": str(bundle)})
    r = rn("nsenter", "--state-dir", str(state_dir), "--no-net", "--", *_hook_cmd(state_dir, "poststop"), input=st)
    assert r.returncode == 0, r.stderr


def _hook_cmd(state_dir: Path, phase: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "rootlessnet", "oci-hook", "--state-dir", str(state_dir), phase]


def test_failed_hook_makes_runc_fail_with_the_reason_and_leaves_nothing(instance, state_dir, rootfs, tmp_path):
    _, runc = instance
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        bundle = runc.bundle(tmp_path / "b2", rootfs, ["sleep", "300"], ports=f"{busy.getsockname()[1]}:80/tcp")
        r = runc("run", "-d", "--bundle", str(bundle), "c2", check=False)
    finally:
        busy.close()
    assert r.returncode != 0
    assert "[c2]" in r.stderr + r.stdout and "address already in use" in r.stderr + r.stdout
    assert "address already in use" in (state_dir / "oci-hook.log").read_text()
    assert not (state_dir / "cni-cache" / "c2.json").exists()
    assert not (state_dir / "cni-netns" / "c2").exists()
    assert not has_cid(inside(state_dir, "iptables-save").stdout, "c2")
    assert inside(state_dir, "ls /var/lib/cni/networks/rn 2>/dev/null | grep -c '^10' || true", net=False).stdout.strip() in ("", "0")
    runc("delete", "--force", "c2", check=False)


def test_two_containers_share_a_named_netns_that_outlives_the_first(instance, state_dir, rootfs, tmp_path):
    _, runc = instance
    r = rn("netns", "add", "pod", "--state-dir", str(state_dir))
    assert r.returncode == 0, r.stderr
    pa, pb = free_port(), free_port()
    ba = runc.bundle(tmp_path / "ba", rootfs, ["sh", "-c", "httpd -f -p 80 -h /www/a & exec sleep 300"],
                     ports=f"{pa}:80/tcp", netns="pod")
    bb = runc.bundle(tmp_path / "bb", rootfs, ["sh", "-c", "httpd -f -p 81 -h /www/b & exec sleep 300"],
                     ports=f"{pb}:81/tcp", netns="pod")
    runc.run("first", ba)
    runc.run("second", bb)
    assert "hello from a" in http_get(pa)
    assert "hello from b" in http_get(pb)
    # one network: both see the same eth0, the one of the named netns
    ea = runc("exec", "first", "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    eb = runc("exec", "second", "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    assert ea == eb and " 10.4.0." in ea
    ip = ea.split(" inet ")[1].split("/")[0]
    pod = next(ns for ns in netns_list(state_dir) if ns["name"] == "pod")
    eth0 = next(l for l in pod["interfaces"] if l["name"] == "eth0")
    assert eth0["peer"]["netns"] == "main" and eth0["peer"]["master"] == "cni0"

    runc.remove("first")
    assert port_closed(pa)
    assert "hello from b" in http_get(pb)  # the second still serves, through its published port
    r = inside(state_dir, f"busybox wget -q -O - http://{ip}:81/ & p=$!; sleep 5; kill $p 2>/dev/null; wait $p")
    assert "hello from b" in r.stdout, r.stderr  # and on its CNI address
    # a process joining by path (inside the mount ns) after the first container is gone sees the same network
    r = inside(state_dir, f"nsenter --net={state_dir}/netns.d/pod ip -o -4 addr show dev eth0", net=False)
    assert ip in r.stdout, r.stderr
    r = rn("nsenter", "--state-dir", str(state_dir), "--netns", "pod", "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
    assert ip in r.stdout, r.stderr

    runc.remove("second")
    assert port_closed(pb)
    # the network belongs to the netns: it stays until `netns del`, which detaches it
    assert (state_dir / "cni-cache" / "netns" / "pod.json").exists()
    r = rn("netns", "del", "pod", "--state-dir", str(state_dir))
    assert r.returncode == 0, r.stderr
    assert not (state_dir / "cni-cache" / "netns" / "pod.json").exists()
    nss = {ns["name"]: ns for ns in netns_list(state_dir)}
    assert "pod" not in nss and not [l for l in nss["main"]["interfaces"] if l["kind"] == "veth"]
    leases = inside(state_dir, "ls /var/lib/cni/networks/rn", net=False).stdout.split()
    assert ip not in leases
    after = inside(state_dir, "iptables-save").stdout
    assert ip not in after and str(pa) not in after and str(pb) not in after, after
