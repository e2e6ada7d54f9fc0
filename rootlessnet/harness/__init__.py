"""rootlessnet.harness: rootless sandboxes and multi-host networks for tests.

    from rootlessnet import Sandbox, Network, open_sandbox

Sandbox / Network (sync, context managers), open_sandbox / open_network
(async: asyncio and trio, through anyio), the impairment models and
exceptions, and a pytest plugin (rootlessnet.harness.pytest_plugin,
entry point `rootlessnet`). Submodules are imported on first use so that
`import rootlessnet` stays cheap. See docs/harness.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Sandbox": "rootlessnet.harness.sandbox",
    "Network": "rootlessnet.harness.network",
    "Host": "rootlessnet.harness.network",
    "Link": "rootlessnet.harness.network",
    "Pair": "rootlessnet.harness.network",
    "AsyncProcess": "rootlessnet.harness.aio",
    "ImpairmentError": "rootlessnet.stack.impair",
    "GilbertElliott": "rootlessnet.stack.impair",
    "MarkovLoss": "rootlessnet.stack.impair",
    "Slot": "rootlessnet.stack.impair",
    "open_sandbox": "rootlessnet.harness.aio",
    "open_network": "rootlessnet.harness.aio",
    "AsyncSandbox": "rootlessnet.harness.aio",
    "AsyncNetwork": "rootlessnet.harness.aio",
    "environment_problem": "rootlessnet.harness.env",
    "HarnessError": "rootlessnet.harness.errors",
    "SandboxStartError": "rootlessnet.harness.errors",
    "CommandFailed": "rootlessnet.harness.errors",
    "UnknownHostError": "rootlessnet.harness.errors",
    "UnknownPortError": "rootlessnet.harness.errors",
    "PortInUseError": "rootlessnet.harness.errors",
    "ApiRequestError": "rootlessnet.harness.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'rootlessnet.harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
