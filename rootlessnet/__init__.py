"""rootlessnet: rootless networking for Linux (namespaces + a userspace TCP/IP engine).

The test harness is importable from here, lazily (`import rootlessnet` loads
nothing else): `rootlessnet.Sandbox`, `rootlessnet.Network`,
`rootlessnet.open_sandbox` (see docs/harness.md).
"""

__version__ = "0.1.0"

_HARNESS = ("Sandbox", "Network", "open_sandbox", "open_network")


def __getattr__(name: str):
    if name in _HARNESS:
        from rootlessnet import harness

        value = getattr(harness, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rootlessnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_HARNESS))
