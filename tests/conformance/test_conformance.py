"""CI entry of the conformance suite: every scenario against Linux and the engine, one test each.

The DUTs start once for the module; the scenarios selected in this session
run together (as ``hack/conformance`` runs them) and each test reports its
own verdict: it fails when the engine differs from Linux without a written
reason, or when the bench itself failed against Linux. The table is printed
at the end of the session.
"""

from __future__ import annotations

import pytest

from tests.conformance.runner import Runner, details, select, table
from tests.integration.conftest import requires_userns

pytestmark = [pytest.mark.integration, requires_userns]

SCENARIOS = select()


@pytest.fixture(scope="module")
def results(request):
    wanted = [item.callspec.params["name"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")]
    chosen = [s for s in SCENARIOS if s.name in wanted]
    with Runner(jobs=3) as runner:
        res = runner.run(chosen)
        drops = runner.linux.port.drops() + runner.engine.port.drops()
    # for conftest.py's summary (an attribute, not a stash key: pytest imports this module under
    # another name than the conftest does, so a key object would not be shared)
    request.config.rootlessnet_conformance_table = table(res) + (
        f"\nbench packet sockets dropped {drops} frame(s)" if drops else "")
    return {r.scenario.name: r for r in res}


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_scenario(results, name):
    r = results[name]
    assert r.ok, details(r)
