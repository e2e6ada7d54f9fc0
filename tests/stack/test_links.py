"""stack.links: frames routed through uplink, pair and downlink queues; holds; partitions (time is a number)."""

from __future__ import annotations

import pytest

from rootlessnet.stack.impair import Impairment
from rootlessnet.stack.links import Impairments


def drain(t: Impairments, until: float = 100.0) -> list[tuple[float, str, str, object]]:
    out = []
    while (n := t.next_at()) is not None and n <= until:
        out += [(n, s, d, x) for s, d, x in t.due(n)]
    return out


def test_nothing_configured_is_quiet_and_passes_frames_at_once():
    t = Impairments()
    assert t.quiet and t.send("a", "b", "x", 100, 0.0) == "x" and t.next_at() is None


def test_a_frame_crosses_uplink_pair_and_downlink():
    t = Impairments()
    t.set_link("a", Impairment(delay=0.01), direction="up")
    t.set_pair("a", "b", Impairment(delay=0.02))
    t.set_link("b", Impairment(delay=0.04), direction="down")
    assert not t.quiet
    assert t.send("a", "b", "ab", 100, 0.0) is None
    assert t.send("a", "c", "ac", 100, 0.0) is None  # only a's uplink
    assert t.send("c", "a", "ca", 100, 0.0) == "ca"  # a's downlink is not impaired
    assert drain(t) == [(pytest.approx(0.01), "a", "c", "ac"), (pytest.approx(0.07), "a", "b", "ab")]


def test_late_due_calls_change_no_time():
    t = Impairments()
    t.set_link("a", Impairment(delay=0.01))
    t.set_pair("a", "b", Impairment(delay=0.01))
    t.send("a", "b", 1, 100, 0.0)
    t.send("a", "b", 2, 100, 0.005)
    assert t.due(1.0) == [("a", "b", 1), ("a", "b", 2)]  # each stage used the previous one's release time


def test_pair_both_ways_and_one_way():
    t = Impairments()
    t.set_pair("a", "b", Impairment(loss=1.0))
    assert t.send("a", "b", 1, 100, 0.0) is None and t.send("b", "a", 2, 100, 0.0) == 2
    t.set_pair("a", "b", Impairment(loss=1.0), both=True)
    assert t.send("b", "a", 3, 100, 0.0) is None and drain(t) == []
    t.set_pair("a", "b", None, both=True)
    assert t.quiet


def test_partitions_symmetric_one_way_and_in_flight():
    t = Impairments()
    t.partition([{"a"}, {"b", "host"}])
    assert not t.allowed("a", "b") and not t.allowed("host", "a") and t.allowed("b", "host") and t.allowed("a", "c")
    t.heal()
    t.block(["a"], ["b"])
    assert not t.allowed("a", "b") and t.allowed("b", "a")
    t.heal()
    t.set_pair("a", "b", Impairment(delay=0.1))
    t.send("a", "b", "in flight", 100, 0.0)
    t.block(["a"], ["b"])
    assert drain(t) == [] and t.drop_partitioned == 1  # a frame on a path cut meanwhile is lost
    t.unblock(["a"], ["b"])
    assert t.allowed("a", "b")


def test_hold_and_release_in_order_without_impairment():
    t = Impairments()
    t.hold(t.link_keys("b", "down"))
    for i in range(5):
        assert t.send("a", "b", i, 100, i * 0.001) is None
    assert t.send("b", "a", "other way", 100, 0.0) == "other way"
    assert t.next_at() is None and t.stage_statistics(("down", "b"))["queued"] == 5
    t.release(t.link_keys("b", "down"))
    assert [x for _, _, _, x in drain(t)] == [0, 1, 2, 3, 4]
    assert t.quiet  # the stage goes once empty


def test_new_settings_apply_to_new_frames_queued_ones_keep_theirs():
    t = Impairments()
    t.set_link("a", Impairment(delay=1.0), direction="up")
    t.send("a", "b", "old", 100, 0.0)
    t.set_link("a", Impairment(delay=0.1), direction="up")
    t.send("a", "b", "new", 100, 0.0)
    assert drain(t) == [(pytest.approx(0.1), "a", "b", "new"), (pytest.approx(1.0), "a", "b", "old")]
    st = t.link_statistics("a")
    assert st["frames"] == 2 and st["delivered"] == 2


def test_seeded_paths_repeat():
    def run() -> list:
        t = Impairments(corrupt_fn=lambda item, rng: (item, rng.randrange(1000)))
        t.set_link("a", Impairment(loss=0.1, corrupt=0.1, delay=0.01, jitter=0.005, seed=1))
        t.set_pair("a", "b", Impairment(duplicate=0.2, seed=1))
        for i in range(500):
            t.send("a", "b", i, 100, i * 0.001)
        return drain(t)

    assert run() == run()


def test_direction_is_checked():
    with pytest.raises(ValueError, match="direction='sideways'"):
        Impairments().set_link("a", Impairment(), direction="sideways")
