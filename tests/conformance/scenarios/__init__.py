"""The scenario registry: ``@scenario(...)`` functions of a ``bench.Run``, one module per area.

A scenario plays the same script against both DUTs and writes down what it
saw; the runner compares the two logs entry by entry. When the engine differs
from Linux on purpose, the scenario names the log entries that may differ
(``differs``) and says why in one line (``reason``): any other difference
still fails.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

AREAS = ("handshake", "rst", "data", "window", "ack", "close", "timers", "gso")


@dataclass(frozen=True)
class Scenario:
    name: str
    area: str
    fn: Callable
    doc: str
    reason: str | None = None
    differs: tuple[str, ...] = ()
    solo: bool = False  # run alone: timing-sensitive, or heavy enough to disturb others' timing
    budget: float = 30.0


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, *, reason: str | None = None, differs: tuple[str, ...] | str = (), solo: bool = False,
             budget: float = 30.0) -> Callable[[Callable], Callable]:
    if isinstance(differs, str):
        differs = (differs,)
    if bool(reason) != bool(differs):
        raise ValueError(f"{name}: a reason needs the log entries it explains (differs=...), and vice versa")

    def wrap(fn: Callable) -> Callable:
        area = name.split("/", 1)[0]
        if area not in AREAS:
            raise ValueError(f"{name}: unknown area {area!r}")
        if name in SCENARIOS:
            raise ValueError(f"{name}: defined twice")
        doc = " ".join((fn.__doc__ or "").split())
        SCENARIOS[name] = Scenario(name, area, fn, doc, reason, tuple(differs), solo, budget)
        return fn

    return wrap


def load() -> dict[str, Scenario]:
    """Every scenario, in module order (one module per area)."""
    import pkgutil

    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: _order(m.name)):
        importlib.import_module(f"{__name__}.{mod.name}")
    return SCENARIOS


def _order(module: str) -> int:
    return AREAS.index(module) if module in AREAS else len(AREAS)
