"""pytest plugin (entry point `pytest11`: `rootlessnet`): sandboxes and networks as fixtures.

Fixtures (function scope; everything is stopped at the end of the test):

- `rootless_sandbox`: a started `Sandbox`, options from `@pytest.mark.rootless(...)`;
- `rootless_network`: a started `Network` (hosts `names=`, default a, b, c), same marker;
- `rootless_sandbox_factory(**options)` / `rootless_network_factory(names, **options)`:
  as many as the test wants, with explicit options (the marker does not apply).

Tests that use them, or are marked `rootless`, are skipped, with a reason naming what is missing, when
unprivileged user namespaces or /dev/net/tun are unavailable. When a test
fails, its report gets a section per sandbox: its counters and, with
capture on (`pcap=` or `--rootless-pcap=DIR`), the pcap path.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Iterator

import pytest

MARKER = "rootless"
DEFAULT_NAMES = ("a", "b", "c")
_MADE = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rootlessnet", "rootlessnet sandboxes")
    group.addoption("--rootless-pcap", metavar="DIR", default=None,
                    help="capture the frames of every fixture-made sandbox to DIR/<test>-<n>.pcap "
                         "(unless the test gives pcap= itself)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options for the rootless_sandbox / rootless_network fixtures: "
        "the keyword arguments of rootlessnet.Sandbox (hosts=, outbound=, ipv6=, pcap=, ...) "
        "and names=[...] for rootless_network")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # a test marked @pytest.mark.rootless that builds sandboxes itself (e.g. with open_sandbox) skips too
    if item.get_closest_marker(MARKER) is not None:
        _require_environment()


def _require_environment() -> None:
    from rootlessnet.harness.env import environment_problem

    problem = environment_problem()
    if problem:
        pytest.skip(f"rootlessnet sandboxes need unprivileged user namespaces and /dev/net/tun: {problem}")


def _with_pcap(request: pytest.FixtureRequest, options: dict[str, Any], n: int) -> dict[str, Any]:
    pcap_dir = request.config.getoption("rootless_pcap")
    if pcap_dir and options.get("pcap") is None:
        os.makedirs(pcap_dir, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")[-120:]
        options = {**options, "pcap": os.path.join(pcap_dir, f"{safe}-{n}.pcap")}
    return options


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    # closest last: a test's marker overrides its class's and module's
    for m in reversed(list(request.node.iter_markers(MARKER))):
        if m.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER}: use keyword arguments only (got {m.args!r})")
        options.update(m.kwargs)
    return options


def _factory(request: pytest.FixtureRequest, build: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    _require_environment()
    made: list[Any] = request.node.stash.setdefault(_MADE, [])
    mine: list[Any] = []

    def make(*args: Any, **options: Any) -> Any:
        obj = build(*args, **_with_pcap(request, options, len(made)))
        obj.start()
        made.append(obj)
        mine.append(obj)
        return obj

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for obj in reversed(mine):
            try:
                obj.stop()
            except Exception as e:  # noqa: BLE001 - stop the others, then report
                errors.append(e)
            if obj in made:
                made.remove(obj)
        if errors:
            raise errors[0]


@pytest.fixture
def rootless_sandbox_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """`make(**options) -> Sandbox` (started); all are stopped at the end of the test."""
    from rootlessnet.harness.sandbox import Sandbox

    yield from _factory(request, Sandbox)


@pytest.fixture
def rootless_network_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """`make(names, **options) -> Network` (started); all are stopped at the end of the test."""
    from rootlessnet.harness.network import Network

    yield from _factory(request, Network)


@pytest.fixture
def rootless_sandbox(request: pytest.FixtureRequest, rootless_sandbox_factory: Callable[..., Any]) -> Any:
    """A started Sandbox; options from `@pytest.mark.rootless(...)`."""
    options = _marker_options(request)
    options.pop("names", None)
    return rootless_sandbox_factory(**options)


@pytest.fixture
def rootless_network(request: pytest.FixtureRequest, rootless_network_factory: Callable[..., Any]) -> Any:
    """A started Network (hosts from the marker's names=, default a, b, c)."""
    options = _marker_options(request)
    names = options.pop("names", DEFAULT_NAMES)
    return rootless_network_factory(list(names), **options)


def describe(obj: Any) -> str:
    """A sandbox's state for a failure report: counters (non-zero), links, pcap."""
    lines = [repr(obj)]
    if getattr(obj, "pcap", None):
        lines.append(f"pcap: {obj.pcap}")
    if not getattr(obj, "running", False):
        lines.append("(not running: no statistics)")
        return "\n".join(lines)
    try:
        stats = obj.statistics()
    except Exception as e:  # noqa: BLE001 - the report must not fail
        lines.append(f"statistics unavailable: {e}")
        return "\n".join(lines)
    lines.append(_format_stats(stats))
    if getattr(obj, "names", None):
        try:
            links = obj._core.api.request("GET", "/v1/links") or {}
            for name, settings in sorted(links.items()):
                active = {k: v for k, v in settings.items() if k != "seed" and v not in (0, 0.0, None)}
                if active:
                    lines.append(f"link {name}: " + " ".join(f"{k}={v}" for k, v in active.items())
                                 + f" seed={settings.get('seed')}")
            groups = obj.partitions
            lines.append("partition: " + (" | ".join(",".join(sorted(g)) for g in groups) if groups else "none"))
        except Exception as e:  # noqa: BLE001
            lines.append(f"links unavailable: {e}")
    return "\n".join(lines)


def _format_stats(stats: Any) -> str:
    if not isinstance(stats, dict):
        return json.dumps(stats)
    out = []
    for section, values in sorted(stats.items()):
        if isinstance(values, dict):
            flat = {k: v for k, v in sorted(values.items()) if v not in (0, None, {}, [])}
            out.append(f"{section}: " + (" ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in flat.items())
                                         or "(all zero)"))
        else:
            out.append(f"{section}: {json.dumps(values, sort_keys=True)}")
    return "\n".join(out)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for i, obj in enumerate(item.stash.get(_MADE, [])):
        report.sections.append((f"rootlessnet {type(obj).__name__.lower()} {i}", describe(obj)))
