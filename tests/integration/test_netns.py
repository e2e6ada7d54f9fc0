"""`rootlessnet netns add|del|list` and `nsenter --netns`: named netns pinned inside the instance."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.integration.conftest import RN, one_line_error, requires_userns, rn, wait_for

pytestmark = [pytest.mark.integration, requires_userns]


def _list(state) -> dict[str, dict]:
    r = rn("netns", "list", "--json", "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    return {ns["name"]: ns for ns in json.loads(r.stdout)}


@pytest.mark.parametrize("detach", [True, False])
def test_add_enter_list_veth_peers_and_del(background, state_dir, detach):
    b = background(*(["--detach-netns"] if detach else []), "--net=none")
    s = ["--state-dir", str(state_dir)]
    r = rn("netns", "add", "a", *s)
    assert r.returncode == 0 and r.stdout.strip() == f"{state_dir}/netns.d/a", r.stderr
    assert one_line_error(rn("netns", "add", "a", *s).stderr).endswith("already exists in " + str(state_dir))
    # the pin is a bind mount inside the instance's mount ns, an empty file outside
    assert (state_dir / "netns.d" / "a").exists()
    ino = rn("nsenter", *s, "--netns", "a", "--", "readlink", "/proc/self/ns/net", check=True).stdout.strip()
    main = rn("nsenter", *s, "--", "readlink", "/proc/self/ns/net", check=True).stdout.strip()
    assert ino.startswith("net:[") and ino != main
    # a process in netns a; a veth pair main <-> a, the main end on a bridge
    holder = subprocess.Popen([*RN, "nsenter", *s, "--netns", "a", "--", "sleep", "60"])
    try:
        def joined() -> bool:
            try:
                return os.readlink(f"/proc/{holder.pid}/ns/net") == ino
            except OSError:
                return False

        wait_for(joined, what="the holder to join netns a")
        script = (f"ip link add br9 type bridge && ip link add vhost9 type veth peer name eth0 netns {holder.pid} && "
                  "ip link set vhost9 master br9 && ip link set br9 up && ip link set vhost9 up && ip addr add 10.9.9.1/24 dev br9")
        r = rn("nsenter", *s, "--", "sh", "-c", script)
        assert r.returncode == 0, r.stderr
    finally:
        holder.kill()
        holder.wait(10)
    rn("nsenter", *s, "--netns", "a", "--", "ip", "addr", "add", "10.9.9.2/24", "dev", "eth0", check=True)
    nss = _list(state_dir)
    assert set(nss) == {"main", "a"}
    assert nss["main"]["path"] == (f"{state_dir}/netns" if detach else f"/proc/{b.child_pid}/ns/net")
    vhost = next(l for l in nss["main"]["interfaces"] if l["name"] == "vhost9")
    eth0 = next(l for l in nss["a"]["interfaces"] if l["name"] == "eth0")
    assert vhost["master"] == "br9" and vhost["peer"]["netns"] == "a" and vhost["peer"]["name"] == "eth0"
    assert eth0["peer"] == {"netns": "main", "name": "vhost9", "index": vhost["index"], "master": "br9"}
    assert "10.9.9.2/24" in eth0["addresses"]
    text = rn("netns", "list", *s, check=True).stdout
    assert f"eth0@if{vhost['index']}" in text and "peer vhost9 in main (master br9)" in text
    # the netns outlives every process that was in it, and is joinable by path inside the mount ns
    r = rn("nsenter", *s, "--no-net", "--", "nsenter", f"--net={state_dir}/netns.d/a", "ip", "-o", "addr", "show", "dev", "eth0")
    assert "10.9.9.2/24" in r.stdout, r.stderr
    # del: gone for nsenter and list; the veth pair goes with it
    assert rn("netns", "del", "a", *s).returncode == 0
    assert not (state_dir / "netns.d" / "a").exists()
    err = one_line_error(rn("nsenter", *s, "--netns", "a", "--", "true").stderr)
    assert "no network namespace named 'a'" in err
    nss = _list(state_dir)
    assert set(nss) == {"main"} and not [l for l in nss["main"]["interfaces"] if l["name"] == "vhost9"]


def test_netns_errors_are_one_line(background, state_dir, tmp_path):
    s = ["--state-dir", str(state_dir)]
    err = one_line_error(rn("netns", "list", "--state-dir", str(tmp_path / "nothing")).stderr)
    assert "no running instance" in err
    background("--net=none")
    assert "bad netns name" in one_line_error(rn("netns", "add", "../x", *s).stderr)
    assert "no network namespace named 'zz'" in one_line_error(rn("netns", "del", "zz", *s).stderr)
    assert "missing NAME" in one_line_error(rn("netns", "add", *s).stderr)
    r = rn("netns", "list", *s)
    assert r.returncode == 0 and r.stdout.startswith("main")
