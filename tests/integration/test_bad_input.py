"""Bad input, tried as a new user would (issue 11 §6): each gets one clear line and loses nothing.

Command-line mistakes and environment failures are one line on stderr with a
non-zero status (never a traceback, never "ExceptionGroup"); hostile API
bodies are a 400 (or slirp4netns's "cannot parse JSON") and the instance
keeps serving; nothing the launcher did not create is ever deleted.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys

import pytest

from tests.integration.conftest import NO_DNS, Background, one_line_error, requires_userns, rn

pytestmark = [pytest.mark.integration]


def test_empty_state_dir_deletes_nothing(tmp_path):
    """`--state-dir=$UNSET` once emptied the current directory."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "precious.txt").write_text("keep me")
    (cwd / "sub").mkdir()
    for flags in (["--state-dir="], ["--state-dir", ""], ["--state-dir", "  "]):
        r = rn("run", *flags, "--", "true", cwd=cwd)
        assert r.returncode != 0
        assert "--state-dir is empty" in one_line_error(r.stderr)
    assert sorted(os.listdir(cwd)) == ["precious.txt", "sub"] and (cwd / "precious.txt").read_text() == "keep me"


@requires_userns
def test_state_dir_keeps_what_is_not_ours(tmp_path):
    state = tmp_path / "s"
    state.mkdir()
    (state / "mine.txt").write_text("x")
    (state / "api.sock").write_text("stale")  # a name of ours: a crash leftover, cleaned
    r = rn("run", "--state-dir", str(state), "--", "true")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(state)) == ["lock", "mine.txt"]


@pytest.mark.parametrize("flags, words", [
    (["--cidr=10.0.2.0/0"], "--cidr 10.0.2.0/0 is too large"),
    (["--cidr=10.0.2.0/30"], "is too small"),
    (["--ifname=a b"], "--ifname 'a b'"),
    (["--ifname=lo"], "--ifname 'lo'"),
    (["--ifname=" + "x" * 16], "use 1-15 letters"),
    (["--pcap=/nonexistent/dir/x.pcap"], "--pcap /nonexistent/dir/x.pcap: directory /nonexistent/dir does not exist"),
    (["--pcap="], "--pcap is empty"),
    (["--dns-upstream=[::1"], "--dns-upstream '[::1': missing ']'"),
    (["--dns-upstream="], "--dns-upstream is empty"),
    (["--dns-upstream=not-an-address"], "not an IP address"),
    (["--mtu=100"], "--mtu 100 is out of range"),
    (["--outbound=10.0.0.0/33"], "--outbound: '10.0.0.0/33' is not a CIDR"),
])
def test_bad_values_are_one_line(flags, words):
    r = rn("run", *flags, "--", "true")  # no --dns-upstream of the suite's: these flags are the test
    assert r.returncode != 0
    line = one_line_error(r.stderr)
    assert words in line, line


def _limit_fds(n: int):
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return pre


@requires_userns
def test_too_few_file_descriptors_names_the_cause():
    r = rn("run", "--", "true", preexec_fn=_limit_fds(12))
    assert r.returncode != 0
    line = one_line_error(r.stderr)
    assert "too many open files" in line and "ulimit -n" in line and "ExceptionGroup" not in line, line


@requires_userns
def test_state_dir_on_a_full_file_system(tmp_path):
    """A 64 KiB tmpfs, full, in a mount namespace of our own (unshare -Urm): nothing of the host's is filled."""
    d = tmp_path / "full"
    d.mkdir()
    script = (f"mount -t tmpfs -o size=64k tmpfs {d} && (dd if=/dev/zero of={d}/fill bs=4k 2>/dev/null; true) && "
              f"exec {sys.executable} -m rootlessnet run --subid-source=none -q {NO_DNS} --state-dir {d}/s -- true")
    r = subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    line = one_line_error(r.stderr)
    assert "no space left on device" in line and f"{d}/s/" in line, line


@requires_userns
def test_pcap_on_dev_full_keeps_the_command_status():
    r = rn("run", "--pcap=/dev/full", "--", "sh", "-c", "echo ran; exit 7")
    assert (r.returncode, r.stdout) == (7, "ran\n"), r.stderr
    line = one_line_error(r.stderr)  # the one warning, no traceback
    assert "--pcap /dev/full: no space left on device: the capture stops here" in line, line


def _request(sock: str, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(sock)
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
                  .encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


@requires_userns
def test_hostile_json_on_the_network_api(state_dir):
    b = Background(state_dir, "--hosts", "a,b")
    try:
        sock = str(state_dir / "api.sock")
        status, before = _request(sock, "GET", "/v1/links/a", b"")
        assert status == 200
        deep = b"[" * 3000 + b"]" * 3000
        for method, path, body in (("PUT", "/v1/links/a", b'{"delay": ' + deep + b"}"),
                                   ("PUT", "/v1/partition", b'{"groups": ' + deep + b"}"),
                                   ("PUT", "/v1/partition", b"[" * 3000),
                                   ("PUT", "/v1/links/a", b'{"rate": Infinity}'),
                                   ("PUT", "/v1/links/a", b'{"rate": 1e999}'),
                                   ("PUT", "/v1/links/a", b'{"loss": NaN}')):
            status, answer = _request(sock, method, path, body)
            assert status == 400, (path, body[:40], status, answer)
            assert json.loads(answer)["message"].startswith("bad JSON"), answer
        status, after = _request(sock, "GET", "/v1/links/a", b"")
        assert status == 200 and json.loads(after) == json.loads(before)  # valid JSON, nothing applied
        status, answer = _request(sock, "GET", "/v1/hosts", b"")
        assert status == 200 and [h["name"] for h in json.loads(answer)] == ["a", "b"]  # still serving
    finally:
        rc, _, err = b.release()
    assert rc == 0 and "Traceback" not in err, err


@requires_userns
def test_deep_json_on_the_slirp4netns_api_socket(tmp_path):
    """3 KB of `[` once killed the engine (RecursionError)."""
    from tests.integration.test_slirp4netns import Slirp, Target, api_call

    target = Target()
    sock = str(tmp_path / "s4.sock")
    slirp = Slirp("--api-socket", sock, "--outbound=none", NO_DNS, str(target.pid), "tap0")
    try:
        assert slirp.ready == b"1"
        for data in (b"[" * 3000, b'{"execute":"add_hostfwd","arguments":' + b"[" * 3000):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(20)
                s.connect(sock)
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            assert answer == b'{"error":{"desc":"bad request: cannot parse JSON"}}', answer
        assert api_call(sock, {"execute": "list_hostfwd"}) == {"entries": []}  # still serving
        assert slirp.proc.poll() is None
    finally:
        slirp.close_exit_fd()
        rc, _, err = slirp.wait()
        target.stop()
    assert rc == 0 and "Traceback" not in err, err
