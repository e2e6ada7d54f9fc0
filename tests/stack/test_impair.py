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


# -- netem's full vocabulary (the model alone: many frames, tight tolerances) ---------------------

import statistics  # noqa: E402

from rootlessnet.stack.impair import GilbertElliott, ImpairmentError, MarkovLoss, Slot, quantile  # noqa: E402


def fates(imp: Impairment, n: int, step: float = 0.001, size: int = 100) -> tuple[LinkQueue, list[tuple[float, int, float]]]:
    """(queue, [(sent_at, item, released_at)]) for n frames pushed every `step` seconds."""
    q = LinkQueue(imp, "test")
    sent = {}
    out = []
    for i in range(n):
        t = i * step
        sent[i] = t
        q.push(i, size, t)
        out += [(sent[x], x, t2) for t2, x in q.due_timed(t)]
    while (t := q.next_at()) is not None:
        out += [(sent[x], x, t2) for t2, x in q.due_timed(t)]
    return q, out


@pytest.mark.parametrize("dist", ["uniform", "normal", "pareto", "paretonormal"])
def test_delay_distributions_have_netems_moments(dist):
    grid = [quantile(dist, (i + 0.5) / 20000) for i in range(20000)]
    q, out = fates(Impairment(delay=0.1, jitter=0.01, distribution=dist, seed=1, limit=100000), 20000, step=0.0)
    d = [r - s for s, _, r in out]
    assert abs(statistics.fmean(d) - (0.1 + 0.01 * statistics.fmean(grid))) < 0.0003
    assert abs(statistics.pstdev(d) - 0.01 * statistics.pstdev(grid)) < 0.0004
    lo, hi = quantile(dist, 1e-12), quantile(dist, 1 - 1e-12)
    assert min(d) >= 0.1 + 0.01 * lo - 1e-9 and max(d) <= 0.1 + 0.01 * hi + 1e-9


def test_distribution_shapes_are_netems_tables():
    assert quantile("uniform", 0.0) == -1 and quantile("uniform", 1.0) == 1
    assert quantile("normal", 0.5) == pytest.approx(0) and quantile("normal", 0.8413447) == pytest.approx(1, abs=1e-4)
    assert quantile("normal", 1e-12) == pytest.approx(-32767 / 8192)  # clipped as netem's int16 tables are
    assert quantile("pareto", 1e-12) == pytest.approx((1 - 1.5) * 4 / 3)  # the smallest pareto value
    assert quantile("pareto", 1 - 1e-12) == pytest.approx(32767 / 8192)
    # paretonormal: 1/4 normal + 3/4 pareto of the same quantile
    u = 0.7
    assert quantile("paretonormal", u) == pytest.approx(0.25 * quantile("normal", u) + 0.75 * quantile("pareto", u))


def test_delay_correlation_keeps_the_distribution_and_correlates():
    _, out = fates(Impairment(delay=0.05, jitter=0.01, delay_correlation=0.9, distribution="normal", seed=2,
                              limit=100000), 20000, step=0.0)
    d = [r - s for s, _, r in sorted(out, key=lambda e: e[1])]
    assert abs(statistics.pstdev(d) - 0.01) < 0.001  # netem's (1-rho)U + rho last would shrink this
    assert statistics.correlation(d[:-1], d[1:]) > 0.8


def test_correlated_loss_keeps_the_rate():
    q, out = fates(Impairment(loss=0.3, loss_correlation=0.8, seed=3), 50000)
    got = {x for _, x, _ in out}
    lost = [i not in got for i in range(50000)]
    assert abs(sum(lost) / 50000 - 0.3) < 0.02
    after = [lost[i] for i in range(1, 50000) if lost[i - 1]]
    assert abs(sum(after) / len(after) - (0.3 + 0.8 * 0.7)) < 0.02


def test_gilbert_elliott_rate_and_bursts():
    q, out = fates(Impairment(loss=GilbertElliott(p=0.02, r=0.25), seed=4), 100000)
    got = {x for _, x, _ in out}
    lost = [i not in got for i in range(100000)]
    assert abs(sum(lost) / 100000 - 0.02 / 0.27) < 0.01
    bursts, n = [], 0
    for x in lost:
        if x:
            n += 1
        elif n:
            bursts.append(n)
            n = 0
    assert abs(statistics.fmean(bursts) - 4.0) < 0.3
    # 1-h, 1-k: losses in both states
    q, out = fates(Impairment(loss=GilbertElliott(p=0.1, r=0.1, bad_loss=0.5, good_loss=0.1), seed=5), 100000)
    assert abs(1 - len(out) / 100000 - 0.3) < 0.02  # half the time in each state: (0.5 + 0.1) / 2


def test_four_state_markov_defaults_are_tcs():
    m = MarkovLoss(p13=0.1)
    assert (m.p31, m.p32, m.p23, m.p14) == (0.9, 0.0, 1.0, 0.0)
    q, out = fates(Impairment(loss=m, seed=6), 50000)
    assert abs(1 - len(out) / 50000 - 0.1) < 0.01  # with the defaults: independent loss, rate p13


def test_duplicate_corrupt_reorder_correlations_apply():
    q, out = fates(Impairment(duplicate=0.2, duplicate_correlation=0.5, seed=7), 20000)
    assert abs(q.stats["duplicated"] / 20000 - 0.2) < 0.02
    q = LinkQueue(Impairment(corrupt=0.2, corrupt_correlation=0.5, seed=7), "c", corrupt_fn=lambda it, rng: ("c", it))
    for i in range(20000):
        q.push(i, 100, 0.0)
    assert abs(q.stats["corrupted"] / 20000 - 0.2) < 0.02


def test_reorder_gap_lets_every_nth_frame_overtake():
    q, out = fates(Impairment(delay=0.1, reorder=1.0, gap=4, seed=8), 40, step=0.01)
    early = sorted(x for s, x, r in out if r == s)
    assert early == [3, 7, 11, 15, 19, 23, 27, 31, 35, 39]  # three delayed, then one sent at once


def test_rate_counts_overhead_and_cells():
    q = LinkQueue(Impairment(rate=8000, overhead=-50, cell_size=48, cell_overhead=5), "r")  # 1000 bytes/s
    q.push("a", 150, 0.0)  # 100 bytes -> 3 cells of 53 bytes -> 159 ms
    assert q.next_at() == pytest.approx(0.159)


def test_slots_release_in_bursts():
    q = LinkQueue(Impairment(slot=Slot(min_delay=0.1, max_delay=0.1, packets=3), seed=9), "s")
    for i in range(7):
        q.push(i, 100, 0.0)
    assert q.due(0.0) == [0, 1, 2]  # the first slot is open at once
    assert q.due(0.05) == [] and q.next_at() == pytest.approx(0.1)
    assert q.due(0.1) == [3, 4, 5]
    assert q.due(0.2) == [6]
    q = LinkQueue(Impairment(slot=Slot(min_delay=0.001, bytes=250), seed=9), "s")
    for i in range(4):
        q.push(i, 100, 0.0)
    assert q.due(0.0) == [0, 1, 2]  # 300 bytes: the slot's budget is spent on the third


def test_hold_keeps_frames_then_releases_them_in_order():
    q = LinkQueue(Impairment(delay=0.01), "h")
    q.hold()
    for i in range(5):
        q.push(i, 100, i * 0.001)
    assert q.due(1.0) == [] and q.next_at() is None and len(q) == 5
    q.release()
    assert q.next_at() == pytest.approx(0.01) and q.due(1.0) == [0, 1, 2, 3, 4]


def test_same_seed_same_decisions_frame_for_frame():
    imp = Impairment(delay=0.02, jitter=0.01, distribution="paretonormal", loss=GilbertElliott(p=0.05, r=0.3),
                     duplicate=0.05, corrupt=0.05, reorder=0.1, gap=2, rate=1_000_000, seed=42)

    def run() -> list:
        q = LinkQueue(imp, "same", corrupt_fn=lambda it, rng: (it, rng.randrange(1 << 30)))
        return fates_with(q)

    def fates_with(q: LinkQueue) -> list:
        out = []
        for i in range(3000):
            q.push(i, 500, i * 0.0005)
            out += q.due_timed(i * 0.0005)
        while (t := q.next_at()) is not None:
            out += q.due_timed(t)
        return out

    assert run() == run()
    other = Impairment(**{**imp.to_json(), "loss": imp.loss, "seed": 43})
    assert fates_with(LinkQueue(other, "same", corrupt_fn=lambda it, rng: (it, rng.randrange(1 << 30)))) != run()


@pytest.mark.parametrize("kw, parameter", [
    ({"delay_correlation": 2}, "delay_correlation"), ({"distribution": "cauchy"}, "distribution"),
    ({"loss": {"model": "gemodel", "p": 0.1, "r": -1}}, "loss.r"), ({"loss": {"model": "state", "p13": 1.5}}, "loss.p13"),
    ({"loss": {"model": "bogus"}}, "loss"), ({"loss": GilbertElliott(0.1), "loss_correlation": 0.2}, "loss_correlation"),
    ({"duplicate_correlation": -0.1}, "duplicate_correlation"), ({"corrupt_correlation": 1.1}, "corrupt_correlation"),
    ({"reorder": 0.1}, "reorder"), ({"delay": 0.1, "gap": 3}, "gap"), ({"delay": 0.1, "reorder": 0.1, "gap": 1.5}, "gap"),
    ({"rate": 1e13}, "rate"), ({"rate": 1e6, "overhead": 70000}, "overhead"), ({"rate": 1e6, "cell_size": -1}, "cell_size"),
    ({"cell_overhead": 5}, "cell_overhead"), ({"slot": {"packets": 0}}, "slot.packets"), ({"slot": {"bytes": -1}}, "slot.bytes"),
    ({"slot": {"distribution": "x"}}, "slot.distribution"), ({"slot": {"min_delay": 61}}, "slot.min_delay"),
    ({"slot": "fast"}, "slot"), ({"slot": {"speed": 1}}, "slot"), ({"limit": 10**7}, "limit"), ({"seed": 2**64}, "seed"),
    ({"jitter": float("inf")}, "jitter"),
])
def test_every_parameter_is_validated_and_named(kw, parameter):
    with pytest.raises(ImpairmentError) as e:
        Impairment(**kw)
    assert e.value.parameter == parameter and str(e.value).startswith(f"{parameter}=")
