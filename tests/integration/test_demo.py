"""The README's first command: hack/demo's unprivileged part, as CI runs it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from tests.integration.conftest import requires_userns

pytestmark = [pytest.mark.integration, requires_userns]
DEMO = pathlib.Path(__file__).resolve().parents[2] / "hack" / "demo"


def test_demo_reaches_a_host_service_through_the_engine():
    env = {**os.environ, "ROOTLESSNET_PYTHON": sys.executable}
    r = subprocess.run(["bash", str(DEMO)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0"  # uid 0 inside
    assert "10.0.2.100/24" in lines[1]
    assert lines[2] == "hello from the host"
