"""Suite-wide rules.

Under ROOTLESSNET_REQUIRE_ALL=1 (set by hack/test after it prepared the
machine as root, i.e. in CI) a skipped test is a failure: nothing an issue
requires may be skipped silently.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("ROOTLESSNET_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under ROOTLESSNET_REQUIRE_ALL=1 (hack/test as root): {reason}"
