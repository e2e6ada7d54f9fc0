"""Suite-wide rules.

Under ROOTLESSNET_REQUIRE_ALL=1 (set by hack/test after it prepared the
machine as root, i.e. in CI) a skipped test is a failure: nothing an issue
requires may be skipped silently.

An internal error of the engine (an exception that is not a codec error, see
Core.receive) fails the test during which it happened, wherever the engine
ran: in this process (every Core made during the test is checked) or in a
`rootlessnet` subprocess (engines append their reports to the file named by
ROOTLESSNET_INTERNAL_ERROR_LOG, which this file sets for the whole session).

hack/test runs the suite once per build of the datapath (pure Python, and
compiled with mypyc) and says which with ROOTLESSNET_EXPECT_BUILD=pure|compiled:
the session stops at once if this interpreter, or a `python -m rootlessnet`
started from it as the tests start theirs, runs the other build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from rootlessnet.stack import core as core_mod
from rootlessnet.stack.core import Core

_CORES: list[Core] = []  # strong references: a test's cores are checked after it returned
_LOG = os.path.join(tempfile.mkdtemp(prefix="rootlessnet-internal-errors-"), "log")
os.environ["ROOTLESSNET_INTERNAL_ERROR_LOG"] = _LOG
core_mod.ON_CREATE.append(_CORES.append)


def _log_size() -> int:
    try:
        return os.path.getsize(_LOG)
    except OSError:
        return 0


@pytest.fixture(autouse=True)
def _no_internal_errors():
    """Fail the test if any engine had an internal error while it ran."""
    _CORES.clear()
    before = _log_size()
    yield
    bad = [c for c in _CORES if c.stats.get("internal_errors")]
    _CORES.clear()
    grown = _log_size() > before
    if bad or grown:
        text = bad[0].first_internal_error if bad else ""
        if grown:
            with open(_LOG) as f:
                f.seek(before)
                text += f.read()
        pytest.fail(f"internal error(s) in the engine during this test:\n{text}", pytrace=False)


def pytest_sessionstart(session):
    want = os.environ.get("ROOTLESSNET_EXPECT_BUILD")
    if not want:
        return
    from rootlessnet.compiled import is_compiled

    here = "compiled" if is_compiled() else "pure"
    child = subprocess.run([sys.executable, "-c", "from rootlessnet.compiled import is_compiled; "
                            "print('compiled' if is_compiled() else 'pure')"],
                           capture_output=True, text=True, timeout=60, cwd="/").stdout.strip()
    if here != want or child != want:
        pytest.exit(f"ROOTLESSNET_EXPECT_BUILD={want}, but this interpreter runs the {here} datapath "
                    f"and a subprocess the {child or 'unknown'} one", returncode=3)


REQUIRE_ALL = os.environ.get("ROOTLESSNET_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under ROOTLESSNET_REQUIRE_ALL=1 (hack/test as root): {reason}"
