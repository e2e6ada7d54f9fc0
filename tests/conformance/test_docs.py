"""docs/conformance.md stays in step with the scenarios: each one listed, each reason written down."""

from __future__ import annotations

import pathlib

from tests.conformance.scenarios import AREAS, load

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def test_at_least_40_scenarios_over_every_area():
    scenarios = load()
    assert len(scenarios) >= 40
    assert {s.area for s in scenarios.values()} == set(AREAS)


def test_every_scenario_and_every_reason_is_in_the_docs():
    text = DOC.read_text()
    for s in load().values():
        assert f"`{s.name}`" in text, f"{s.name} is not listed in docs/conformance.md"
        assert s.doc.replace("|", "/") in text, f"{s.name}: its docstring changed; update docs/conformance.md"
        if s.reason:
            assert s.reason in text, f"{s.name}: its reason is not in docs/conformance.md"


def test_a_reason_always_names_the_entries_it_explains():
    for s in load().values():
        assert bool(s.reason) == bool(s.differs), s.name
