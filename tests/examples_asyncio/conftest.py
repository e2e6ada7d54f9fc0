"""The examples under asyncio, as a project that uses pytest-asyncio would run them.

This project's own suite runs under pytest-trio (trio_mode), which would take
these `async def` tests for its own; so the main run does not collect them,
and tests/harness/test_frameworks.py runs this directory in a pytest of its
own with pytest-trio disabled (`-p no:trio`).
"""

from __future__ import annotations


def pytest_ignore_collect(collection_path, config):
    if config.pluginmanager.has_plugin("trio"):
        return True
    return None
