"""The control channel: the parent asks the namespace child for file descriptors."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys

import pytest
import trio

from rootlessnet.ns.control import ControlError
from rootlessnet.instance import RunOptions, open_instance
from tests.integration.conftest import requires_userns

pytestmark = [pytest.mark.integration, requires_userns]

SIOCGSKNS = 0x894C  # ioctl: open the network namespace a socket belongs to


def socket_netns_inode(sock: socket.socket) -> int:
    fd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


@pytest.mark.parametrize("detach", [False, True])
async def test_socket_made_in_the_child_arrives_in_the_parent(tmp_path, detach):
    opts = RunOptions(command=["sleep", "60"], net="none", detach_netns=detach, state_dir=str(tmp_path / "s"), quiet=True)
    async with open_instance(opts) as inst:
        reply, fds = await inst.control.request("socket", family="inet", type="stream", bind=["127.0.0.1", 0], listen=4)
        assert len(fds) == 1
        listener = socket.socket(fileno=fds[0])
        with listener:
            if detach:
                want = os.stat(f"/proc/{inst.child_pid}/root{inst.state_dir}/netns").st_ino
            else:
                want = os.stat(f"/proc/{inst.child_pid}/ns/net").st_ino
            assert socket_netns_inode(listener) == want == reply["netns"]
            assert want != os.stat("/proc/self/ns/net").st_ino
            # prove it is live: a client inside the namespace connects to it
            port = listener.getsockname()[1]
            client = f"import socket; s=socket.create_connection(('127.0.0.1',{port})); s.sendall(b'hi from inside')"
            proc = await trio.run_process(
                [sys.executable, "-m", "rootlessnet", "nsenter", "--state-dir", inst.state_dir, "--", sys.executable, "-c", client],
                capture_stderr=True, check=False)
            assert proc.returncode == 0, proc.stderr
            listener.settimeout(10)
            conn, _ = listener.accept()
            with conn:
                assert conn.recv(100) == b"hi from inside"
        inst.send_signal(15)
        assert await inst.wait() == 128 + 15


async def test_failed_request_is_an_error_and_the_channel_survives(tmp_path):
    opts = RunOptions(command=["sleep", "60"], state_dir=str(tmp_path / "s"), quiet=True)
    async with open_instance(opts) as inst:
        with pytest.raises(ControlError, match="unknown op"):
            await inst.control.request("no-such-op")
        with pytest.raises(ControlError):
            await inst.control.request("socket", family="inet", bind=["203.0.113.1", 1])  # EADDRNOTAVAIL, never sends
        reply, _ = await inst.control.request("ping")
        assert reply["pid"] == inst.child_pid
        inst.send_signal(15)
        await inst.wait()


async def test_leaving_the_context_kills_the_instance_and_cleans_up(tmp_path):
    state = tmp_path / "s"
    opts = RunOptions(command=["sleep", "60"], state_dir=str(state), quiet=True)
    async with open_instance(opts) as inst:
        pid = inst.child_pid
        assert (state / "child_pid").exists()
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert sorted(os.listdir(state)) == ["lock"]


async def test_cancellation_during_the_instance_stops_it(tmp_path):
    opts = RunOptions(command=["sleep", "60"], state_dir=str(tmp_path / "s"), quiet=True)
    with trio.move_on_after(1):
        async with open_instance(opts) as inst:
            pid = inst.child_pid
            await inst.wait()
    os_stat = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    assert os_stat in ("", "Z")
