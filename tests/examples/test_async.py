"""The trio flavour (pytest-trio runs `async def` tests)."""

from __future__ import annotations

import trio
import pytest

from rootlessnet import open_sandbox


@pytest.mark.rootless  # skips, saying why, where sandboxes cannot run
async def test_async_sandbox(host_http_server):
    async with open_sandbox(hosts={"api.test": "10.0.2.2"}) as sb:
        url = f"http://api.test:{host_http_server.port}/async"
        async with trio.open_nursery() as nursery:  # two clients at once
            for _ in range(2):
                nursery.start_soon(lambda: sb.run(["curl", "-sS", "--noproxy", "*", "--max-time", "10", url],
                                                  capture_output=True, check=True))
        assert host_http_server.seen == ["/async", "/async"]
        r = await sb.run(["cat"], input="typed in\n", capture_output=True, text=True)
        assert r.stdout == "typed in\n"
