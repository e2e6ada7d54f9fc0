"""rootlessnet.compiled: which modules the optional mypyc build compiles, and whether they are.

The datapath's pure-Python modules — the sans-IO core (wire codecs and
emitters, stack.iface, stack.tcp, TIME-WAIT) and the reactor and NAT that
drive it — are written so that mypyc can compile them to C extensions
(typed, native classes in single lines of inheritance). The pure-Python
code is always there and is what runs when nothing was compiled:
``hack/compile`` (or ``ROOTLESSNET_COMPILE=1 pip install --no-build-isolation .``
with mypy installed) builds the extensions, which Python then prefers to the
.py files. docs/design.md has the numbers that made this worth doing.
"""

from __future__ import annotations

import importlib.machinery
import sys

#: paths relative to the repository, in build order
MODULES: tuple[str, ...] = (
    "rootlessnet/wire/checksum.py",
    "rootlessnet/wire/frames.py",
    "rootlessnet/stack/tcp/seq.py",
    "rootlessnet/stack/tcp/notice.py",
    "rootlessnet/stack/tcp/segment.py",
    "rootlessnet/stack/tcp/states.py",
    "rootlessnet/stack/tcp/stats.py",
    "rootlessnet/stack/tcp/timers.py",
    "rootlessnet/stack/tcp/congestion.py",
    "rootlessnet/stack/tcp/buffers.py",
    "rootlessnet/stack/tcp/reassembly.py",
    "rootlessnet/stack/tcp/state.py",
    "rootlessnet/stack/tcp/send.py",
    "rootlessnet/stack/tcp/receive.py",
    "rootlessnet/stack/tcp/connection.py",
    "rootlessnet/stack/timewait.py",
    "rootlessnet/stack/iface/events.py",
    "rootlessnet/stack/iface/link.py",
    "rootlessnet/stack/iface/ip.py",
    "rootlessnet/stack/iface/icmp.py",
    "rootlessnet/stack/iface/udp.py",
    "rootlessnet/stack/iface/tcp.py",
    "rootlessnet/stack/core.py",
    "rootlessnet/io/reactor.py",
    "rootlessnet/io/nat.py",
    "rootlessnet/io/engine.py",
)


def is_compiled() -> bool:
    """Is the running datapath the compiled one (the core's module an extension)?"""
    mod = sys.modules.get("rootlessnet.stack.core")
    if mod is None:
        import rootlessnet.stack.core as mod  # noqa: F811
    path = getattr(mod, "__file__", "") or ""
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
