"""The five-minute tour's test under trio (pytest-trio): a three-node service partitioned and healed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PY = sys.executable
PROG = str(Path(__file__).with_name("netprog.py"))  # a tiny key-value server and client


@pytest.mark.rootless(names=["a", "b", "c"])
async def test_service_survives_partition_and_heal(rootless_network_trio):
    net = rootless_network_trio  # hosts a, b, c; b serves, a and c are clients
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
