"""Ports added and removed at run time through api.sock and the CLI, on a live instance."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys

import pytest

from rootlessnet.api.client import ApiClient, ApiError
from tests.integration.conftest import requires_userns, rn, wait_for
from tests.integration.test_ports import INSIDE, Instance, echo_once, free_port

pytestmark = [pytest.mark.integration, requires_userns]


@pytest.fixture(params=["builtin", "slirp"])
def live(request, state_dir):
    i = Instance(state_dir, request.param, {})
    i.api = ApiClient(str(state_dir / "api.sock"))
    i.state = state_dir
    i.driver = request.param
    yield i
    i.stop()


def test_info_matches_rootlesskit(live):
    info = live.api.info()
    assert info["apiVersion"] == "1.1.1"
    assert info["stateDir"] == str(live.state)
    assert info["childPID"] == int((live.state / "child_pid").read_text())
    assert info["networkDriver"] == {"driver": "slirp4netns", "dns": ["10.0.2.3"], "childIP": "10.0.2.100", "dynamicChildIP": False}
    assert info["portDriver"]["driver"] == ("builtin" if live.driver == "builtin" else "slirp4netns")
    assert info["portDriver"]["disallowLoopbackChildIP"] is (live.driver == "slirp")
    # the slirp4netns driver says what rootlesskit's says (IPv4 only; rootlesskit-docker-proxy decides by it),
    # while POST still takes tcp6/udp6 (tests/integration/test_ports.py)
    want = {"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"} if live.driver == "builtin" else {"tcp", "tcp4", "udp", "udp4"}
    assert set(info["portDriver"]["protos"]) == want


def test_socket_and_directory_are_private(live):
    assert stat.S_IMODE(os.stat(live.state / "api.sock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(live.state).st_mode) & 0o077 == 0


def test_add_use_remove_frees_the_port(live):
    port = free_port()
    st = live.api.add_port({"proto": "tcp", "parentIP": "127.0.0.1", "parentPort": port, "childIP": "", "childPort": 7000})
    assert st["spec"]["parentPort"] == port
    assert echo_once("127.0.0.1", port, b"runtime") == b"runtime"
    assert [p["id"] for p in live.api.list_ports()] == [st["id"]]
    live.api.remove_port(st["id"])
    assert live.api.list_ports() == []
    with socket.socket() as s:  # removal frees the host port
        s.bind(("127.0.0.1", port))


def test_cli_add_list_remove(live):
    port = free_port()
    env = {**os.environ, "ROOTLESSKIT_STATE_DIR": str(live.state)}
    r = rn("ports", "add", f"127.0.0.1:{port}:7000/tcp", env=env)
    assert r.returncode == 0, r.stderr
    pid = r.stdout.strip()
    r = rn("ports", "list", env=env)
    assert "PARENTPORT" in r.stdout and str(port) in r.stdout
    r = rn("ports", "list", "--json", env=env)
    assert json.loads(r.stdout)[0]["spec"]["parentPort"] == port
    assert echo_once("127.0.0.1", port, b"cli") == b"cli"
    r = rn("ports", "remove", pid, env=env)
    assert r.returncode == 0 and r.stdout.strip() == pid
    r = rn("info", env=env)
    assert r.returncode == 0 and "10.0.2.100" in r.stdout
    r = rn("stats", "--json", env=env)
    assert r.returncode == 0 and "engine" in json.loads(r.stdout)


@pytest.mark.parametrize("body,word", [
    ({"proto": "tcp", "parentPort": 0, "childPort": 80}, "out of range"),
    ({"proto": "tcp", "parentPort": 70000, "childPort": 80}, "out of range"),
    ({"proto": "sctp", "parentPort": 18000, "childPort": 80}, "sctp"),
    ({"proto": "tcp", "parentPort": 18000, "childPort": 80, "bogus": 1}, "bogus"),
    ({"proto": "tcp", "parentIP": "nope", "parentPort": 18000, "childPort": 80}, "not an IP"),
])
def test_bad_requests_are_400_and_the_instance_survives(live, body, word):
    with pytest.raises(ApiError) as e:
        live.api.add_port(body)
    assert e.value.status == 400 and word in str(e.value)
    with pytest.raises(ApiError) as e:
        live.api.remove_port(424242)
    assert e.value.status == 400
    assert live.api.info()["apiVersion"] == "1.1.1"  # still alive


def test_conflict_and_bind_failure_are_400(live):
    port = free_port()
    first = live.api.add_port({"proto": "tcp", "parentIP": "127.0.0.1", "parentPort": port, "childPort": 7000})
    with pytest.raises(ApiError) as e:
        live.api.add_port({"proto": "tcp", "parentIP": "0.0.0.0", "parentPort": port, "childPort": 7001})
    assert e.value.status == 400 and f"conflicts with ID {first['id']}" in str(e.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(ApiError) as e:
            live.api.add_port({"proto": "tcp", "parentIP": "127.0.0.1", "parentPort": s.getsockname()[1], "childPort": 7000})
        assert "address already in use" in str(e.value)
    assert echo_once("127.0.0.1", port, b"still") == b"still"


def test_rootlessctl_drives_the_api(live):
    import shutil
    import subprocess

    if shutil.which("rootlessctl") is None:
        pytest.skip("rootlessctl is not installed (apt-get install rootlesskit)")
    sock = str(live.state / "api.sock")
    port = free_port()
    r = subprocess.run(["rootlessctl", "--socket", sock, "add-ports", f"127.0.0.1:{port}:7000/tcp"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert echo_once("127.0.0.1", port, b"ctl") == b"ctl"
    r = subprocess.run(["rootlessctl", "--socket", sock, "list-ports"], capture_output=True, text=True)
    assert str(port) in r.stdout
    r = subprocess.run(["rootlessctl", "--socket", sock, "remove-ports", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
