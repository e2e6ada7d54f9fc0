"""The five-minute tour's test under asyncio (pytest-asyncio): a three-node service partitioned and healed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PY = sys.executable
PROG = str(Path(__file__).parent.parent / "examples" / "netprog.py")  # a tiny key-value server and client


@pytest.mark.asyncio
@pytest.mark.rootless(names=["a", "b", "c"])
async def test_service_survives_partition_and_heal(rootless_network_asyncio):
    net = rootless_network_asyncio  # hosts a, b, c; b serves, a and c are clients
    await net.host("b").popen([PY, PROG, "kv-serve", "7000"])

    async def kv(host, *words, attempts=20):  # one request from `host`, retried while b starts
        return await net.host(host).run([PY, PROG, "kv", "b", "7000", *words, "--timeout", "1",
                                         "--attempts", str(attempts)], capture_output=True, text=True, timeout=60)

    assert (await kv("a", "SET", "color", "blue")).stdout == "OK\n"
    await net.partition({"a"}, {"b", "c"})  # a is cut off from b and c
    assert (await kv("a", "GET", "color", attempts=2)).returncode == 1
    assert (await kv("c", "SET", "color", "green")).stdout == "OK\n"  # the majority goes on
    await net.heal()
    assert (await kv("a", "GET", "color")).stdout == "VALUE green\n"  # a sees what it missed


@pytest.mark.asyncio
@pytest.mark.rootless(hosts={"db.test": "10.0.2.2"})
async def test_sandbox_run_popen_and_cancel(rootless_sandbox_asyncio):
    import asyncio
    import subprocess

    sb = rootless_sandbox_asyncio
    r = await sb.run(["getent", "hosts", "db.test"], capture_output=True, text=True, check=True)
    assert r.stdout.split()[0] == "10.0.2.2"
    results = await asyncio.gather(*(sb.run(["sh", "-c", f"echo {i}"], capture_output=True, text=True)
                                     for i in range(5)))  # concurrent commands
    assert [x.stdout for x in results] == [f"{i}\n" for i in range(5)]
    with pytest.raises(subprocess.TimeoutExpired):
        await sb.run(["sleep", "10"], timeout=0.3)
    task = asyncio.ensure_future(sb.run(["sleep", "10"]))
    await asyncio.sleep(0.2)
    task.cancel()  # cancelling kills the command
    with pytest.raises(asyncio.CancelledError):
        await task
    p = await sb.popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await p.stdin.send(b"ping\n")
    await p.stdin.aclose()
    assert await p.stdout.receive() == b"ping\n"
    assert await p.wait() == 0
