"""Prints the conformance table after the session (tests/conformance/test_conformance.py fills it)."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    text = getattr(config, "rootlessnet_conformance_table", None)
    if text:
        terminalreporter.section("conformance: Linux vs rootlessnet")
        terminalreporter.write_line(text)
