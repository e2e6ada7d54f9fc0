"""hack/ scripts (no .py suffix) loaded as modules, for the tests of their pure functions."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import pathlib
from types import ModuleType

HACK = pathlib.Path(__file__).resolve().parent.parent / "hack"


def load_hack_script(name: str) -> ModuleType:
    """hack/NAME as a module named hack_NAME (its main() is not run)."""
    modname = "hack_" + name.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(modname, str(HACK / name))
    spec = importlib.util.spec_from_loader(modname, loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod
