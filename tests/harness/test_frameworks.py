"""The harness under other runners: the examples under asyncio (pytest-asyncio, without pytest-trio)
and under pytest-xdist with 2 workers, each in a pytest of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.rootless


def pytest_run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_examples_under_asyncio():
    r = pytest_run("-p", "no:trio", "-W", "ignore::pytest.PytestConfigWarning", "-q", "tests/examples_asyncio")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\b2 passed\b", r.stdout), r.stdout[-2000:]


def test_examples_under_xdist_with_two_workers():
    r = pytest_run("-n", "2", "-v", "tests/examples/test_network.py", "tests/examples/test_http.py",
                   "tests/examples/test_tour_trio.py", "tests/examples/test_async.py")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    passed = re.findall(r"\[(gw\d)\] .*PASSED", r.stdout)
    assert set(passed) == {"gw0", "gw1"}, r.stdout[-3000:]  # both workers ran sandboxes at once
    assert len(passed) >= 6
