"""The package map holds: arrows point down, no import cycles, no private names across packages.

Every import in rootlessnet/ counts — at module level or inside a function
(lazy imports still tie modules together) — except those under
`if TYPE_CHECKING:`, which never run. Importing the root package
(`from rootlessnet import __version__`) is no edge: it is every module's
parent, loaded first.

Layers (architecture.md, "Package layout"): cli -> compat/oci/harness ->
instance -> api -> port -> io -> stack -> wire, and whatever needs
namespaces -> ns, which imports nothing above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rootlessnet"

# A package may import its own modules and packages of a lower rank only.
RANK = {
    "wire": 0, "errors": 0,
    "stack": 1, "ns": 1,
    "io": 2, "compiled": 2,  # compiled: which datapath modules the optional mypyc build compiled
    "port": 3,
    "api": 4,
    "instance": 5,
    "compat": 6, "harness": 6,
    "oci": 7,  # oci/containerd reads rootlessnet run's flags (compat.rootlesskit)
    "cli": 8,
    "__main__": 9,
}
# Modules that stand at another layer than their package, and why.
MODULE_RANK = {
    # the harness's launcher server: pre-forked processes that run `rootlessnet.cli.main` itself
    "rootlessnet.harness._zygote": RANK["cli"] + 0.5,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST):
    """ast.walk, minus the bodies of `if TYPE_CHECKING:`."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported rootlessnet module, names taken from it, line) for each import in `module`."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    out = []
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "rootlessnet":
                    out.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if target.split(".")[0] != "rootlessnet":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # `from pkg import module`
                    out.append((sub, [], node.lineno))
                else:
                    out.append((target, [alias.name], node.lineno))
    return [(t, names, line) for t, names, line in out if t != "rootlessnet"]


GRAPH = {m: sorted({t for t, _, _ in imports(m) if t in MODULES and t != m}) for m in MODULES}


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each as a list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_rank():
    missing = sorted({package_of(m) for m in MODULES} - set(RANK) - {""})
    assert not missing, f"add {missing} to RANK in tests/test_layering.py (and to the map in architecture.md)"


def test_no_module_import_cycles():
    assert _cycles(GRAPH) == []


def test_no_package_import_cycles():
    pkgs: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        for t in targets:
            a, b = package_of(m), package_of(t)
            if a != b and a and b:
                pkgs.setdefault(a, set()).add(b)
    assert _cycles({k: sorted(v) for k, v in pkgs.items()}) == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if package_of(m)))
def test_arrows_point_down(module):
    pkg = package_of(module)
    rank = MODULE_RANK.get(module, RANK[pkg])
    bad = [f"line {line}: {t}" for t, _, line in imports(module)
           if t in MODULES and package_of(t) != pkg and RANK[package_of(t)] >= rank]
    assert not bad, f"{module} ({pkg}, rank {rank}) imports from the same layer or above: {bad}"


def test_ns_imports_nothing_above_it():
    for m in MODULES:
        if package_of(m) == "ns":
            above = sorted({t for t in GRAPH[m] if package_of(t) not in ("ns", "errors")})
            assert not above, f"{m} imports {above}: ns/ is namespace mechanics only"


def _attribute_uses(module: str) -> list[tuple[str, str, int]]:
    """(imported module, private attribute, line) for `alias._name` where alias is a rootlessnet module."""
    tree = ast.parse(MODULES[module].read_text())
    aliases: dict[str, str] = {}
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES and a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for a in node.names:
                if f"{target}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{target}.{a.name}"
    out = []
    for node in _walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.append((aliases[node.value.id], node.attr, node.lineno))
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_across_packages(module):
    pkg = package_of(module)
    bad = [f"line {line}: {t}.{n}" for t, names, line in imports(module) for n in names
           if n.startswith("_") and not n.startswith("__") and package_of(t) != pkg]
    bad += [f"line {line}: {t}.{n}" for t, n, line in _attribute_uses(module) if package_of(t) != pkg]
    assert not bad, f"{module} uses private names of another package: {bad}"


def test_the_checks_see_what_they_check():
    # the walker finds lazy imports inside functions, and skips TYPE_CHECKING blocks
    assert "rootlessnet.io.engine" in GRAPH["rootlessnet.instance"]  # imported inside start_engine()
    assert "rootlessnet.io.engine" not in GRAPH["rootlessnet.port.slirp"]  # only under TYPE_CHECKING
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
