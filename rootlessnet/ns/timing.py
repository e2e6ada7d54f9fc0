"""Start-up timing: ROOTLESSNET_DEBUG_TIMING=1 prints one line per phase on stderr.

    rootlessnet: timing:   31.0 ms  +31.0 ms  interpreter start-up (python, site)
    rootlessnet: timing:   48.2 ms  +17.2 ms  flags parsed and checked
    ...

The first column is the time since the process started (the kernel's start
time of this process, to the clock tick: 10 ms on most kernels, so the first
line is approximate), the second how long the phase took, i.e. the time since
the previous line of the same process. Phases of the namespace child (a fork
of the launcher) are marked `child:` and counted from the fork. Off unless
the variable is set to something else than "" or "0": nothing is measured
then, and this module imports only os, sys and time.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "ROOTLESSNET_DEBUG_TIMING"

_enabled: bool | None = None
_origin: float | None = None  # CLOCK_BOOTTIME seconds at this process's start
_last: float = 0.0
_who = ""


def enabled() -> bool:
    global _enabled
    if _enabled is None:
        _enabled = os.environ.get(ENV, "") not in ("", "0")
    return _enabled


def now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_start() -> float:
    """This process's start, CLOCK_BOOTTIME seconds (to the clock tick); now() if unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now()


def start(first: str = "interpreter start-up (python, site)") -> None:
    """Count from this process's start; the time until now is phase `first`."""
    global _origin, _last, _who
    if not enabled():
        return
    _origin = _last = min(process_start(), now())
    _who = ""
    phase(first)


def forked(who: str) -> None:
    """In a fork: later phases are this process's (named `who`), counted from now."""
    global _last, _who
    if not enabled():
        return
    if _origin is None:
        start()
    _last = now()
    _who = f"{who}: "


def phase(name: str) -> None:
    """A phase ended now: one line on stderr."""
    global _last
    if not enabled():
        return
    if _origin is None:
        start()
    t = now()
    line = f"rootlessnet: timing: {(t - _origin) * 1000:7.1f} ms  +{(t - _last) * 1000:6.1f} ms  {_who}{name}\n"
    _last = t
    try:
        os.write(sys.stderr.fileno(), line.encode())
    except (OSError, ValueError, AttributeError):
        pass
