"""Prints the conformance table after the session (tests/conformance/test_conformance.py fills it)."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from tests.conformance.test_conformance import TABLE

    text = config.stash.get(TABLE, None)
    if text:
        terminalreporter.section("conformance: Linux vs rootlessnet")
        terminalreporter.write_line(text)
