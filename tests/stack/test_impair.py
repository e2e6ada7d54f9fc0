"""stack.impair: seeded, repeatable link impairments (time is a number)."""

from __future__ import annotations

import pytest

from rootlessnet.stack.impair import Impairment, LinkQueue


def run(imp: Impairment, n: int = 1000, size: int = 1000, step: float = 0.001):
    q = LinkQueue(imp, 1, corrupt_fn=lambda item, rng: ("corrupt", item))
    out = []
    t = 0.0
    for i in range(n):
        q.push(i, size, t)
        out += [(t, x) for x in q.due(t)]
        t += step
    for _ in range(100000):
        nxt = q.next_at()
        if nxt is None:
            break
        out += [(nxt, x) for x in q.due(nxt)]
    return q, out


def test_no_impairment_is_inactive_and_passes_everything_in_order():
    imp = Impairment()
    assert not imp.active
    q, out = run(imp, 100)
    assert [x for _, x in out] == list(range(100))


def test_delay_holds_each_frame_and_keeps_order():
    q = LinkQueue(Impairment(delay=0.1), 0)
    q.push("a", 100, 1.0)
    q.push("b", 100, 1.01)
    assert q.due(1.09) == [] and q.next_at() == pytest.approx(1.1)
    assert q.due(1.1) == ["a"]
    assert q.due(1.2) == ["b"]


def test_loss_is_about_the_probability_and_repeatable_with_a_seed():
    q1, out1 = run(Impairment(loss=0.2, seed=7))
    q2, out2 = run(Impairment(loss=0.2, seed=7))
    assert out1 == out2
    assert 150 < q1.stats["lost"] < 250
    _, out3 = run(Impairment(loss=0.2, seed=8))
    assert out3 != out1


def test_duplicate_and_corrupt():
    q, out = run(Impairment(duplicate=0.1, corrupt=0.1, seed=1))
    items = [x for _, x in out]
    assert len(items) == 1000 + q.stats["duplicated"] and q.stats["duplicated"] > 50
    assert sum(1 for x in items if isinstance(x, tuple)) == q.stats["corrupted"] > 50


def test_rate_limit_serialises_frames():
    # 1 Mbit/s, 1000-byte frames pushed at once: one every 8 ms
    q = LinkQueue(Impairment(rate=1_000_000), 0)
    for i in range(5):
        q.push(i, 1000, 0.0)
    times = []
    while q.next_at() is not None:
        t = q.next_at()
        times += [t] * len(q.due(t))
    assert times == pytest.approx([0.008, 0.016, 0.024, 0.032, 0.040])


def test_reorder_lets_some_frames_overtake():
    _, out = run(Impairment(delay=0.05, reorder=0.25, seed=3), 400)
    items = [x for _, x in out]
    assert sorted(items) == list(range(400))
    assert items != list(range(400))


def test_jitter_spreads_delays():
    q, out = run(Impairment(delay=0.05, jitter=0.02, seed=2), 200, step=0.0)
    assert len({round(t, 4) for t, _ in out}) > 50
    assert all(0.03 - 1e-9 <= t <= 0.07 + 1e-9 for t, _ in out)


@pytest.mark.parametrize("kw,word", [({"loss": 2}, "probability"), ({"delay": -1}, "seconds"), ({"rate": 10}, "rate"),
                                     ({"seed": 1.5}, "seed"), ({"jitter": "x"}, "jitter")])
def test_bad_values_say_what_is_allowed(kw, word):
    with pytest.raises(ValueError, match=word):
        Impairment(**kw)


def test_from_json_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown field"):
        Impairment.from_json({"latency": 1})
    assert Impairment.from_json({"delay": 0.1}).delay == 0.1


def test_queue_is_bounded_by_limit_under_a_flood():
    """A UDP flood into a rate-limited link used to grow the queue without end."""
    q = LinkQueue(Impairment(rate=1_000_000), 0)  # 1 Mbit/s: 1,500-byte frames leave every 12 ms
    for i in range(50_000):
        q.push(i, 1500, 0.0)
    assert len(q) == 1000 and q.stats["overlimit"] == 49_000
    assert q.due(0.012 * 10 + 1e-9) == list(range(10))  # the first ones still leave at the rate
    small = LinkQueue(Impairment(delay=1.0, limit=5), 0)
    for i in range(8):
        small.push(i, 100, 0.0)
    assert len(small) == 5 and small.stats["overlimit"] == 3


def test_limit_is_validated():
    with pytest.raises(ValueError, match="limit"):
        Impairment(limit=0)
