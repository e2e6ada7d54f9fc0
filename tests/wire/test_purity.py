"""wire/ and stack/ are pure: no I/O, no clock, no concurrency imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "rootlessnet"
BANNED = {"trio", "socket", "os", "time", "select", "threading", "asyncio", "subprocess"}
# wire/ is stricter: the standard library's pure parts only.
WIRE_ALLOWED = {"__future__", "struct", "enum", "dataclasses", "ipaddress", "typing", "rootlessnet"}


def _modules(pkg: str) -> list[Path]:
    return sorted((ROOT / pkg).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names.add("__import__")  # dynamic imports hide what is imported
    return names


@pytest.mark.parametrize("path", _modules("wire") + _modules("stack"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_io_imports(path: Path) -> None:
    bad = _imports(path) & (BANNED | {"__import__", "importlib"})
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: wire/ and stack/ must stay pure"


@pytest.mark.parametrize("path", _modules("wire"), ids=lambda p: p.name)
def test_wire_imports_only_pure_stdlib(path: Path) -> None:
    extra = _imports(path) - WIRE_ALLOWED
    assert not extra, f"wire/{path.name} imports {sorted(extra)}"


def test_walker_sees_the_codecs() -> None:
    names = {p.name for p in _modules("wire")}
    assert {"tcp.py", "ipv4.py", "checksum.py"} <= names
