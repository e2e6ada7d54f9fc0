"""Helpers for the Docker and Podman end-to-end tests: an offline image, host peers, clean-up.

Everything is local: the image is a tarball of Debian's busybox-static made
here (`docker import` / `podman import`; nothing is pulled), servers listen
on 127.0.0.1 or ::1 and stop by themselves, and instances get
`--outbound=none` and a DNS upstream on 127.0.0.1 that nobody answers.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from tests.integration.conftest import wait_for

BUSYBOX = "/bin/busybox"
HERMETIC_RUN_FLAGS = ["--run-flag=--outbound=none", "--run-flag=--dns-upstream=127.0.0.1:9"]
HERMETIC_S4_FLAGS = ["--slirp4netns-flag=--outbound=none", "--slirp4netns-flag=--dns-upstream=127.0.0.1:9"]


def rootfs_tar(path: Path) -> Path:
    """A rootfs tarball: /bin/busybox and a symlink per applet, a minimal /etc, all owned by 0:0.

    Owned by 0 so that, unpacked as root of a user namespace, the files are the
    user's own on the host (and the test can delete them afterwards)."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()

    def info(name: str, kind: bytes, mode: int, **kw) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname, ti.mtime = kind, mode, 0, 0, "root", "root", 0
        for k, v in kw.items():
            setattr(ti, k, v)
        return ti

    with tarfile.open(path, "w") as tar:
        for d in ("bin", "etc", "tmp", "www", "proc", "sys", "dev", "root"):
            tar.addfile(info(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        with open(BUSYBOX, "rb") as f:
            data = f.read()
        tar.addfile(info("bin/busybox", tarfile.REGTYPE, 0o755, size=len(data)), io.BytesIO(data))
        for a in applets:
            if a != "busybox":
                tar.addfile(info(f"bin/{a}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
                           ("www/index.html", "hello\n")):
            tar.addfile(info(name, tarfile.REGTYPE, 0o644, size=len(text)), io.BytesIO(text.encode()))
    return path


def blob(directory: Path, size: int = 4 << 20, seed: int = 1) -> tuple[Path, str]:
    """A file of `size` seeded bytes in `directory` and its sha256."""
    import random

    data = random.Random(seed).randbytes(size)
    p = directory / "blob"
    p.write_bytes(data)
    p.chmod(0o644)
    return p, hashlib.sha256(data).hexdigest()


def http_sha256(host: str, port: int, path: str = "/blob", timeout: float = 30) -> str:
    """GET http://host:port/path (host may be ::1) and return the body's sha256."""
    import http.client

    deadline = time.monotonic() + timeout
    while True:
        try:
            c = http.client.HTTPConnection(host, port, timeout=timeout)
            c.request("GET", path)
            r = c.getresponse()
            h = hashlib.sha256()
            while chunk := r.read(1 << 20):
                h.update(chunk)
            c.close()
            if r.status == 200:
                return h.hexdigest()
            raise AssertionError(f"GET {path}: {r.status}")
        except (ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the server in the container may still be starting


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PeerServer:
    """A TCP server on loopback that greets each client and remembers its address (stops by itself)."""

    GREETING = b"hello from the host\n"

    def __init__(self, host: str = "127.0.0.1", lifetime: float = 600):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn, addr = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                break
            self.peers.append(addr[0])
            try:
                conn.sendall(self.GREETING)
            except OSError:
                pass
            conn.close()
        self.sock.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


def error_log_env() -> dict[str, str]:
    """ROOTLESSNET_INTERNAL_ERROR_LOG for environments built from scratch (tests/conftest.py watches it)."""
    path = os.environ.get("ROOTLESSNET_INTERNAL_ERROR_LOG")
    return {"ROOTLESSNET_INTERNAL_ERROR_LOG": path} if path else {}


def rootlessnet(*args: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run([sys.executable, "-m", "rootlessnet", *args], **kw)


def write_shims(directory: Path, flags: list[str]) -> Path:
    r = rootlessnet("shims", str(directory), *flags)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["rootlesskit", "slirp4netns"]
    return directory


def private_dirs(prefix: str) -> tuple[Path, Path]:
    """(HOME, XDG_RUNTIME_DIR): short private paths (docker's sockets live there; AF_UNIX paths are short)."""
    home = Path(tempfile.mkdtemp(prefix=f"{prefix}-home-", dir="/tmp"))
    run = Path(tempfile.mkdtemp(prefix=f"{prefix}-run-", dir="/tmp"))
    run.chmod(0o700)
    return home, run


def remove_tree(path: Path) -> None:
    """Remove a tree that may hold files of subordinate ids (container layers): as root of a user namespace."""
    if not path.exists():
        return
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        rootlessnet("run", "-q", "--net=host", "--", "rm", "-rf", str(path), timeout=300)


def userns_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/user").st_ino


def processes_in_userns(ino: int) -> list[str]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}/ns/user").st_ino == ino:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                    out.append(f"{d}: {cmd[:120]}")
            except OSError:
                continue
    return out


def mounts_mentioning(text: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.strip() for line in f if text in line]


def state_dirs(run_dir: Path) -> list[str]:
    """Instances' temporary state directories under XDG_RUNTIME_DIR (the rootlesskit shim makes one)."""
    return sorted(glob.glob(str(run_dir / "rootlessnet-*")))


def api_ports(state_dir: str) -> list[dict]:
    from rootlessnet.api.client import ApiClient

    return ApiClient(os.path.join(state_dir, "api.sock")).list_ports()


def wait_gone(pred, what: str, timeout: float = 30):
    return wait_for(pred, timeout=timeout, interval=0.1, what=what)
