"""hack/bench's pure functions: percentiles, rotation of the backends' order, the
per-round arithmetic (time added over loopback, medians, ranges), the target
verdicts and the --only plan. Nothing is measured here: timings are never asserted."""

from __future__ import annotations

import pytest

from tests.scripts import load_hack_script


@pytest.fixture(scope="module")
def bench():
    return load_hack_script("bench")


def test_percentile_nearest_rank(bench):
    vals = [float(x) for x in range(1, 101)]
    assert bench.percentile(vals, 99) == 99.0
    assert bench.percentile(vals, 50) == 50.0
    assert bench.percentile(vals, 100) == 100.0
    assert bench.percentile([7.0], 99) == 7.0
    assert bench.percentile([1.0, 2.0], 99) == 2.0
    with pytest.raises(ValueError):
        bench.percentile([], 50)


def test_rotate_gives_every_backend_every_position(bench):
    bs = ["a", "b", "c"]
    orders = [bench.rotate(bs, r) for r in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for pos in range(3):
        assert sorted(o[pos] for o in orders) == bs
    assert bench.rotate([], 2) == []


def test_summarize_medians_ranges_and_reasons(bench):
    med, rng = bench.summarize({"x": {"a": [3.0, 1.0, 2.0], "b": ["n/a (why)", None, "n/a (other)"],
                                      "c": [5.0, None, "n/a (w)"]}})
    assert med["x"]["a"] == 2.0 and rng["x"]["a"] == (1.0, 3.0, 3)
    assert med["x"]["b"] == "n/a (why)" and "b" not in rng["x"]
    assert med["x"]["c"] == 5.0 and rng["x"]["c"] == (5.0, 5.0, 1)


def test_ratio_targets_use_the_medians_and_count_rounds(bench):
    RN, RNC = bench.RN, bench.RNC
    raw = {"loopback": {"rr_p50_us": [20.0, 20.0, 20.0], "rr_p99_us": [50.0] * 3},
           RN: {"rr_added_p50_us": [40.0, 30.0, 60.0], "rr_p99_us": [100.0, 200.0, 150.0]},
           RNC: {"rr_added_p50_us": [20.0, 20.0, 20.0], "rr_p99_us": [90.0, 90.0, 90.0]},
           "slirp4netns": {"rr_added_p50_us": [20.0, 20.0, 20.0], "rr_p99_us": [100.0, 100.0, 100.0]}}
    rows = {r["key"]: r for r in bench.target_rows(raw, {}, 10000)}
    added = rows["rr_added_p50_us"]
    assert added["anchor_value"] == 20.0
    pure = added["builds"][RN]
    assert pure["value"] == 40.0 and pure["ratio"] == pytest.approx(2.0)
    assert pure["verdict"] == "missed" and pure["rounds_met"] == (1, 3)     # 2.0, 1.5, 3.0
    comp = added["builds"][RNC]
    assert comp["ratio"] == pytest.approx(1.0) and comp["verdict"] == "met" and comp["rounds_met"] == (3, 3)
    p99 = rows["rr_p99_us"]["builds"][RN]
    assert p99["ratio"] == pytest.approx(1.5) and p99["verdict"] == "met"          # ≤ 1.5× holds at 1.5
    assert p99["rounds_met"] == (2, 3)
    # tests that did not run give no rows
    assert "crr_close_cps" not in rows and "fwd_conns_per_s" not in rows


def test_higher_is_better_and_absolute_targets(bench):
    RN, RNC = bench.RN, bench.RNC
    raw = {RN: {"ns2host_65520_gbps": [6.0, 9.0, 12.0], "ready_ms": [140.0, 160.0, 149.0],
                "flows_rss_mib": [70.0] * 3, "flows_held": [9000] * 3},
           RNC: {"ns2host_65520_gbps": ["n/a (broken)"] * 3, "ready_ms": [100.0] * 3},
           "slirp4netns": {"ns2host_65520_gbps": [3.0, 3.0, 3.0], "ready_ms": [40.0] * 3,
                           "flows_rss_mib": [2000.0] * 3, "flows_held": [10000] * 3},
           "rootlesskit": {"ready_ms": [90.0] * 3}}
    rows = bench.target_rows(raw, {}, 10000)
    tput = next(r for r in rows if r["key"] == "ns2host_65520_gbps")
    assert tput["builds"][RN]["ratio"] == pytest.approx(3.0) and tput["builds"][RN]["verdict"] == "met"
    assert tput["builds"][RN]["rounds_met"] == (2, 3)
    assert tput["builds"][RNC]["verdict"] == "not measured"
    ready = next(r for r in rows if r["key"] == "ready_ms" and r["anchor"] == "slirp4netns")
    assert ready["builds"][RN]["value"] == 149.0 and ready["builds"][RN]["verdict"] == "met"
    assert ready["builds"][RN]["rounds_met"] == (2, 3)
    flows = next(r for r in rows if r["key"] == "flows_rss_mib" and r["anchor"] == "slirp4netns")
    assert flows["builds"][RN]["verdict"].startswith("met (only 9000 flows")
    assert "anchor_note" not in flows
    table = bench.target_table(rows)
    assert all(len(line) == len(table[0]) for line in table)
    assert bench.render(table, True).count("\n") == len(table)


def test_fwd_targets_compare_each_build_with_rootlesskit(bench):
    fwd = {"rn-builtin": {"fwd_conns_per_s": [900.0, 1100.0, 1000.0]},
           "rnc-builtin": {"fwd_conns_per_s": [1200.0, 1300.0, 1250.0]},
           "rk-builtin": {"fwd_conns_per_s": [1000.0, 1000.0, 1000.0]}}
    rows = [r for r in bench.target_rows({}, fwd, 10000) if r["anchor"] == "rk-builtin"]
    assert len(rows) == 1
    assert rows[0]["builds"][bench.RN]["ratio"] == pytest.approx(1.0)
    assert rows[0]["builds"][bench.RN]["rounds_met"] == (2, 3)
    assert rows[0]["builds"][bench.RNC]["ratio"] == pytest.approx(1.25)


def test_only_and_the_plan(bench):
    tests, backends, fwd_tests, fwd_backends = bench.parse_only([])
    assert tests == bench.TESTS and backends == bench.BACKENDS
    assert fwd_tests == bench.FWD_TESTS and fwd_backends == bench.FWD_BACKENDS
    plan = dict(bench.make_plan(tests, backends, fwd_tests, fwd_backends))
    assert plan["rr"][0] == "loopback" and "rootlesskit" in plan["ready"] and "veth" in plan["tput"]
    # cpu alone: the ns→host run of tput, on the engines only
    t, b, ft, fb = bench.parse_only(["cpu", bench.RN, "slirp4netns", "veth"])
    plan = dict(bench.make_plan(t, b, ft, fb))
    assert plan == {"tput": [bench.RN, "slirp4netns"]}
    # rr always brings plain loopback, which the time added is measured against
    t, b, ft, fb = bench.parse_only(["rr", bench.RNC])
    assert dict(bench.make_plan(t, b, ft, fb)) == {"rr": ["loopback", bench.RNC]}
    # a build's name selects its port-forwarding backends too
    t, b, ft, fb = bench.parse_only(["fwd-crr", bench.RNC, "rootlesskit"])
    assert t == [] and ft == ["fwd-crr"] and fb == ["rnc-builtin", "rnc-slirp", "rk-builtin", "rk-slirp4netns"]


def test_source_digest_follows_the_sources_only(bench, tmp_path):
    pkg = tmp_path / "rootlessnet"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    (tmp_path / "setup.py").write_text("")
    d1 = bench.source_digest(str(tmp_path))
    (pkg / "a.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\0")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert bench.source_digest(str(tmp_path)) == d1
    (pkg / "a.py").write_text("x = 2\n")
    assert bench.source_digest(str(tmp_path)) != d1


def test_baton_passes_turns_without_polling(bench, tmp_path):
    orch = bench.Baton(str(tmp_path), "orchestrator")
    agent = bench.Baton(str(tmp_path), "agent")
    assert not agent.take(0.01)
    orch.give()
    assert agent.take(1) and not agent.take(0.01)
    agent.give()
    agent.give()
    assert orch.take(1) and orch.take(1) and not orch.take(0.01)
    orch.close()
    agent.close()


def test_process_tree_leaves_out_the_agent(bench, monkeypatch):
    tree = {1: [2, 3], 2: [4], 3: [], 4: [5], 5: []}
    monkeypatch.setattr(bench, "children_of", lambda p: tree[p])
    assert sorted(bench.process_tree(1)) == [1, 2, 3, 4, 5]
    assert sorted(bench.process_tree(1, {4})) == [1, 2, 3]
