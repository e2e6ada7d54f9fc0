"""pytest plugin (entry point `pytest11`: `rootlessnet`): sandboxes and networks as fixtures.

Fixtures (function scope; everything is stopped at the end of the test):

- `rootless_sandbox`: a started `Sandbox`, options from `@pytest.mark.rootless(...)`;
- `rootless_network`: a started `Network` (hosts `names=`, default a, b, c), same marker;
- `rootless_sandbox_factory(**options)` / `rootless_network_factory(names, **options)`:
  as many as the test wants, with explicit options (the marker does not apply);
- `rootless_sandbox_trio` / `rootless_network_trio`: the async flavour for pytest-trio tests;
- `rootless_sandbox_asyncio` / `rootless_network_asyncio`: the same for pytest-asyncio tests.

Tests that use them, or are marked `rootless`, are skipped, with a reason naming what is missing, when
unprivileged user namespaces or /dev/net/tun are unavailable (or what the marker's `require=` names,
e.g. "newuidmap"). When a test fails, its report gets a section per sandbox: its counters, the
network's impairments and partitions and, with capture on (`pcap=` or `--rootless-pcap=DIR`), the
capture and one per host. `--rootless-pcap-keep=failed` deletes the captures of tests that passed.
Safe under pytest-xdist: every sandbox has a private directory, captures are named after the test,
published ports are picked free by the kernel.
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
_REPORTS = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rootlessnet", "rootlessnet sandboxes")
    group.addoption("--rootless-pcap", metavar="DIR", default=None,
                    help="capture the frames of every fixture-made sandbox to DIR/<test>-<n>.pcap "
                         "(and DIR/<test>-<n>-<host>.pcap per host of a network when a test fails), "
                         "unless the test gives pcap= itself")
    group.addoption("--rootless-pcap-keep", choices=("all", "failed"), default="all",
                    help="'failed': delete the captures of tests that passed (default: keep all)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options for the rootless_* fixtures: the keyword arguments of "
        "rootlessnet.Sandbox (hosts=, outbound=, ipv6=, pcap=, ...), names=[...] for networks, and "
        "require=[...] (e.g. 'newuidmap') to skip, saying why, where that is missing")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # a test marked @pytest.mark.rootless that builds sandboxes itself (e.g. with open_sandbox) skips too
    marker = item.get_closest_marker(MARKER)
    if marker is not None:
        _require_environment(marker.kwargs.get("require", ()))


def _require_environment(require: Any = ()) -> None:
    from rootlessnet.harness.env import environment_problem, missing

    problem = environment_problem()
    if problem:
        pytest.skip(f"rootlessnet sandboxes need unprivileged user namespaces and /dev/net/tun: {problem}")
    extra = missing(tuple([require] if isinstance(require, str) else require))
    if extra:
        pytest.skip(f"this test needs {extra}")


def _pcap_path(request: pytest.FixtureRequest, n: int) -> str | None:
    pcap_dir = request.config.getoption("rootless_pcap")
    if not pcap_dir:
        return None
    os.makedirs(pcap_dir, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")[-120:]
    return os.path.join(os.path.abspath(pcap_dir), f"{safe}-{n}.pcap")


def _with_pcap(request: pytest.FixtureRequest, options: dict[str, Any], n: int) -> dict[str, Any]:
    path = _pcap_path(request, n)
    if path and options.get("pcap") is None:
        options = {**options, "pcap": path}
        request.node.stash.setdefault(_OWN_PCAPS, []).append(path)
    return options


_OWN_PCAPS = pytest.StashKey[list]()


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    # closest last: a test's marker overrides its class's and module's
    for m in reversed(list(request.node.iter_markers(MARKER))):
        if m.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER}: use keyword arguments only (got {m.args!r})")
        options.update(m.kwargs)
    options.pop("require", None)
    return options


def _forget_captures_of_passed(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("rootless_pcap_keep") != "failed":
        return
    reports = request.node.stash.get(_REPORTS, {})
    if any(r.failed for r in reports.values()):
        return
    for path in request.node.stash.get(_OWN_PCAPS, []):
        for p in [path, *_host_pcaps(path)]:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def _finish_pcaps(obj: Any) -> None:
    """The per-host captures a failure report announced, now that the engine has flushed its capture."""
    from rootlessnet.harness.pcap import finish_split

    finish_split(obj)


def _host_pcaps(path: str) -> list[str]:
    d, base = os.path.split(path)
    stem = base[:-5] if base.endswith(".pcap") else base
    try:
        return [os.path.join(d, n) for n in os.listdir(d or ".") if n.startswith(stem + "-") and n.endswith(".pcap")]
    except OSError:
        return []


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
                _finish_pcaps(obj)
            except Exception as e:  # noqa: BLE001 - stop the others, then report
                errors.append(e)
            if obj in made:
                made.remove(obj)
        _forget_captures_of_passed(request)
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


# -- the async fixtures: the same objects, for pytest-trio and pytest-asyncio -----------------------

async def _async_fixture(request: pytest.FixtureRequest, network: bool) -> Any:
    from rootlessnet.harness.aio import AsyncNetwork, AsyncSandbox

    _require_environment()
    options = _marker_options(request)
    names = options.pop("names", DEFAULT_NAMES)
    made: list[Any] = request.node.stash.setdefault(_MADE, [])
    options = _with_pcap(request, options, len(made))
    obj = AsyncNetwork(list(names), **options) if network else AsyncSandbox(**options)
    await obj.start()
    made.append(obj)
    try:
        yield obj
    finally:
        await obj.stop()
        _finish_pcaps(obj)
        if obj in made:
            made.remove(obj)
        _forget_captures_of_passed(request)


@pytest.fixture
async def rootless_sandbox_trio(request: pytest.FixtureRequest) -> Any:
    """A started AsyncSandbox for a pytest-trio test; options from `@pytest.mark.rootless(...)`."""
    async for sb in _async_fixture(request, network=False):
        yield sb


@pytest.fixture
async def rootless_network_trio(request: pytest.FixtureRequest) -> Any:
    """A started AsyncNetwork for a pytest-trio test (hosts from the marker's names=, default a, b, c)."""
    async for net in _async_fixture(request, network=True):
        yield net


try:
    import pytest_asyncio as _pytest_asyncio
except ImportError:  # pragma: no cover - the fixtures say so when used
    _pytest_asyncio = None

if _pytest_asyncio is not None:
    @_pytest_asyncio.fixture
    async def rootless_sandbox_asyncio(request: pytest.FixtureRequest) -> Any:
        """A started AsyncSandbox for a pytest-asyncio test; options from `@pytest.mark.rootless(...)`."""
        async for sb in _async_fixture(request, network=False):
            yield sb

    @_pytest_asyncio.fixture
    async def rootless_network_asyncio(request: pytest.FixtureRequest) -> Any:
        """A started AsyncNetwork for a pytest-asyncio test (hosts from the marker's names=)."""
        async for net in _async_fixture(request, network=True):
            yield net
else:
    @pytest.fixture
    def rootless_sandbox_asyncio() -> Any:
        pytest.fail("rootless_sandbox_asyncio needs pytest-asyncio (pip install pytest-asyncio)", pytrace=False)

    @pytest.fixture
    def rootless_network_asyncio() -> Any:
        pytest.fail("rootless_network_asyncio needs pytest-asyncio (pip install pytest-asyncio)", pytrace=False)


# -- failure reports ------------------------------------------------------------------------------

def describe(obj: Any) -> str:
    """A sandbox's state for a failure report: counters (non-zero), impairments, partitions, captures."""
    sync = getattr(obj, "sync", obj)  # an async sandbox: its blocking twin
    lines = [repr(obj)]
    if not getattr(sync, "running", False):
        if getattr(sync, "pcap", None):
            lines.append(f"pcap: {sync.pcap}")
        lines.append("(not running: no statistics)")
        return "\n".join(lines)
    try:
        stats = sync.statistics()
    except Exception as e:  # noqa: BLE001 - the report must not fail
        lines.append(f"statistics unavailable: {e}")
        stats = None
    if stats is not None:
        lines.append(_format_stats(stats))
    if getattr(sync, "names", None):
        try:
            lines += _describe_network(sync)
        except Exception as e:  # noqa: BLE001
            lines.append(f"impairments unavailable: {e}")
    if getattr(sync, "pcap", None):
        lines.append(f"pcap: {sync.pcap}")
        if getattr(sync, "names", None):
            try:
                from rootlessnet.harness.pcap import split_by_host

                for host, path in split_by_host(sync).items():
                    lines.append(f"pcap of {host}: {path} (written when the network stops)")
            except Exception as e:  # noqa: BLE001
                lines.append(f"per-host captures unavailable: {e}")
    return "\n".join(lines)


def _describe_network(net: Any) -> list[str]:
    out = []
    imp = net.impairments()
    for where, settings in sorted({**imp.get("links", {}), **imp.get("pairs", {})}.items()):
        out.append(f"impairment {where}: " + _settings_text(settings))
    for stage, counters in sorted(imp.get("stages", {}).items()):
        flat = {k: v for k, v in counters.items() if v}
        if flat:
            out.append(f"queue {stage}: " + " ".join(f"{k}={v}" for k, v in flat.items()))
    if imp.get("held"):
        out.append("held: " + ", ".join(imp["held"]))
    groups = net.partitions
    blocked = sorted(net.blocked)
    out.append("partition: " + (" | ".join(",".join(sorted(g)) for g in groups) if groups else "none")
               + (f"; blocked: {', '.join(f'{a}->{b}' for a, b in blocked)}" if blocked and not groups else ""))
    return out


def _settings_text(settings: dict[str, Any]) -> str:
    from rootlessnet.stack.impair import Impairment

    default = Impairment().to_json()
    return " ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in settings.items() if v != default.get(k))


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
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    if report.when != "call" or not report.failed:
        return
    for i, obj in enumerate(item.stash.get(_MADE, [])):
        kind = "network" if getattr(obj, "names", None) else "sandbox"
        report.sections.append((f"rootlessnet {kind} {i}", describe(obj)))
