"""Each impairment kind measured on real frames between two hosts, within a stated tolerance.

UDP probes (probe.py) go from host a to host b through the engine's switch;
the sender stamps each with CLOCK_MONOTONIC, which the namespaces share, so
one-way delays are exact up to the engine's timer (about a millisecond on a
busy machine). Settings are seeded, so each test makes the same decisions
every run; the tolerances are what the stated model allows for the number
of frames sent (several standard errors), plus the timer for times.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rootlessnet.stack.impair import quantile

PY = sys.executable
PROBE = str(Path(__file__).with_name("probe.py"))

pytestmark = pytest.mark.rootless(names=["a", "b"])


def probe(net, count: int, gap: float, *, size: int = 100, port: int = 9000, idle: float = 1.5,
          src: str = "a", dst: str = "b") -> list[list[float]]:
    """[seq, sent_at, received_at] of what dst received, in arrival order."""
    rx = net.host(dst).popen([PY, PROBE, "recv", str(port), str(count * 3), str(idle)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert rx.stderr.readline() == "ready\n"
    net.host(src).run([PY, PROBE, "send", dst, str(port), str(count), str(gap), str(size)], check=True, timeout=120)
    out, _ = rx.communicate(timeout=120)
    return json.loads(out)


def runs(lost: list[bool], value: bool) -> list[int]:
    """Lengths of the runs of `value` in a sequence of booleans."""
    out, n = [], 0
    for x in lost:
        if x == value:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out + ([n] if n else [])


def test_random_loss_rate_and_correlation(rootless_network):
    net = rootless_network
    n = 2000
    net.pair("a", "b").impair(loss=0.2, seed=1)
    got = {int(r[0]) for r in probe(net, n, 0.0005)}
    assert abs(len(got) / n - 0.8) < 0.04  # 4.5 standard errors of a binomial(2000, 0.2)
    net.pair("a", "b").impair(loss=0.2, loss_correlation=0.5, seed=2)
    got = {int(r[0]) for r in probe(net, n, 0.0005, port=9001)}
    lost = [i not in got for i in range(n)]
    assert abs(sum(lost) / n - 0.2) < 0.05  # the rate stays what was asked
    after_loss = [lost[i] for i in range(1, n) if lost[i - 1]]
    assert abs(sum(after_loss) / len(after_loss) - 0.6) < 0.12  # P(loss | loss) = p + rho (1 - p)
    assert net.impairments()["stages"]["a->b"]["frames"] == 2 * n  # every frame went through the pair's queue


@pytest.mark.parametrize("distribution", ["uniform", "normal", "pareto", "paretonormal"])
def test_delay_distribution_moments(rootless_network, distribution):
    net = rootless_network
    mu, sigma = 0.030, 0.010
    base = statistics.median(r[2] - r[1] for r in probe(net, 50, 0.002))  # the path without impairment
    net.pair("a", "b").impair(delay=mu, jitter=sigma, distribution=distribution, seed=3)
    delays = [r[2] - r[1] - base for r in probe(net, 400, 0.002, port=9001)]
    assert len(delays) == 400
    grid = [quantile(distribution, (i + 0.5) / 20000) for i in range(20000)]  # the model's own moments
    want_mean, want_sd = mu + sigma * statistics.fmean(grid), sigma * statistics.pstdev(grid)
    got_mean, got_sd = statistics.fmean(delays), statistics.pstdev(delays)
    # mean: 3 standard errors plus 2 ms of timer and scheduling; spread: 20 % plus 1 ms
    assert abs(got_mean - want_mean) < 3 * want_sd / 20 + 0.002, (got_mean, want_mean)
    assert abs(got_sd - want_sd) < 0.2 * want_sd + 0.001, (got_sd, want_sd)
    assert min(delays) > mu + sigma * min(grid) - 0.002


def test_rate_with_per_frame_overhead(rootless_network):
    net = rootless_network
    frame = 1000 + 8 + 20 + 14  # UDP payload + headers + Ethernet: what the rate counts

    def measured(port: int) -> float:
        got = probe(net, 150, 0.0, size=1000, port=port)
        assert len(got) == 150
        times = [r[2] for r in got][10:]  # the queue is full by then
        return (len(times) - 1) / (times[-1] - times[0])  # frames per second

    # resolve b's address first: a burst to an unresolved neighbour overflows the kernel's ARP queue
    assert len(probe(net, 3, 0.01, port=9002)) == 3
    net.link("a").impair(direction="up", rate=2_000_000)
    assert abs(measured(9000) / (2_000_000 / (frame * 8)) - 1) < 0.1
    net.link("a").impair(direction="up", rate=2_000_000, overhead=500)
    assert abs(measured(9001) / (2_000_000 / ((frame + 500) * 8)) - 1) < 0.1


def test_reorder_with_and_without_gap(rootless_network):
    net = rootless_network
    n = 1000
    net.pair("a", "b").impair(delay=0.02, reorder=0.25, seed=4)
    got = probe(net, n, 0.001)
    early = [r for r in got if r[2] - r[1] < 0.01]  # reordered frames skip the 20 ms delay
    assert abs(len(early) / n - 0.25) < 0.045
    seqs = [int(r[0]) for r in got]
    assert seqs != sorted(seqs) and sorted(seqs) == list(range(n))
    net.pair("a", "b").impair(delay=0.02, reorder=0.5, gap=5, seed=4)
    got = probe(net, n, 0.001, port=9001)
    early = [r for r in got if r[2] - r[1] < 0.01]
    assert abs(len(early) / n - 1 / (4 + 1 / 0.5)) < 0.035  # 4 delayed, then a geometric wait


def test_gilbert_elliott_burst_lengths(rootless_network):
    net = rootless_network
    n = 3000
    p, r = 0.05, 0.3  # good -> bad, bad -> good; everything lost in the bad state
    net.pair("a", "b").impair(loss={"model": "gemodel", "p": p, "r": r}, seed=5)
    got = {int(x[0]) for x in probe(net, n, 0.0003)}
    lost = [i not in got for i in range(n)]
    assert abs(sum(lost) / n - p / (p + r)) < 0.035
    bursts, gaps = runs(lost, True), runs(lost, False)
    assert abs(statistics.fmean(bursts) - 1 / r) < 0.9  # geometric, mean 3.3: about 3 standard errors
    assert abs(statistics.fmean(gaps) - 1 / p) < 6.0  # mean 20


def test_four_state_markov_loss(rootless_network):
    net = rootless_network
    n = 3000
    net.pair("a", "b").impair(netem="loss state 2% 25% 10% 50% 1%", seed=6)
    got = {int(x[0]) for x in probe(net, n, 0.0003)}
    lost = n - len(got)
    # stationary loss of the chain, from its transition matrix
    p13, p31, p32, p23, p14 = 0.02, 0.25, 0.10, 0.50, 0.01
    P = [[1 - p13 - p14, 0, p13, p14], [0, 1 - p23, p23, 0], [p31, p32, 1 - p31 - p32, 0], [1, 0, 0, 0]]
    pi = [0.25] * 4
    for _ in range(2000):
        pi = [sum(pi[i] * P[i][j] for i in range(4)) for j in range(4)]
    assert abs(lost / n - (pi[2] + pi[3])) < 0.04


def test_duplicate_and_corrupt(rootless_network):
    net = rootless_network
    n = 2000
    net.pair("a", "b").impair(duplicate=0.1, seed=7)
    seqs = [int(x[0]) for x in probe(net, n, 0.0005)]
    assert set(seqs) == set(range(n)) and abs((len(seqs) - n) / n - 0.1) < 0.03
    net.pair("a", "b").impair(corrupt=0.1, seed=7)
    got = probe(net, n, 0.0005, port=9001)
    assert abs(1 - len(got) / n - 0.1) < 0.03  # the receiver's checksums drop the corrupted ones
    stages = net.impairments()["stages"]
    assert abs(stages["a->b"]["corrupted"] / n - 0.1) < 0.03


def test_slots_release_bursts(rootless_network):
    net = rootless_network
    net.pair("a", "b").impair(slot={"min_delay": 0.03, "max_delay": 0.03, "packets": 5}, seed=8)
    got = probe(net, 100, 0.001)
    assert len(got) == 100
    bursts, size = [], 1
    for prev, cur in zip(got, got[1:]):
        if cur[2] - prev[2] > 0.015:
            bursts.append(size)
            size = 1
        else:
            size += 1
    bursts.append(size)
    # each slot lets out 5 frames; an engine woken late lets out the slots it owes at once (as netem
    # does), so a group is a multiple of 5, and the slots' pauses still set the pace
    assert all(b % 5 == 0 for b in bursts) and statistics.mode(bursts) == 5, bursts
    assert got[-1][2] - got[0][2] > 0.8 * (100 // 5 - 1) * 0.03


def test_hold_then_release_in_order(rootless_network):
    net = rootless_network
    net.link("b").hold(direction="down")
    rx = net.host("b").popen([PY, PROBE, "recv", "9000", "50", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    assert rx.stderr.readline() == "ready\n"
    net.host("a").run([PY, PROBE, "send", "b", "9000", "50", "0.001", "100"], check=True, timeout=60)
    deadline = time.monotonic() + 10
    while net.link("b").statistics["queued"] < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert net.link("b").statistics["queued"] == 50  # all held
    net.link("b").release(direction="down")
    got, _ = rx.communicate(timeout=60)
    assert [int(x[0]) for x in json.loads(got)] == list(range(50))  # released in order


def test_one_way_block_and_heal(rootless_network):
    net = rootless_network
    net.block("a", "b")
    assert len(probe(net, 20, 0.001, idle=0.5)) == 0  # a -> b is cut...
    assert len(probe(net, 20, 0.001, port=9001, src="b", dst="a")) == 20  # ...b -> a is not
    net.heal()
    assert len(probe(net, 20, 0.001, port=9002)) == 20


@pytest.mark.rootless(names=["a", "b", "c"])
def test_majority_and_minority(rootless_network):
    net = rootless_network
    net.isolate("a")  # a alone; b and c, main and the outside together
    assert len(probe(net, 10, 0.001, idle=0.5)) == 0
    assert len(probe(net, 10, 0.001, port=9001, src="b", dst="a", idle=0.5)) == 0
    assert len(probe(net, 10, 0.001, port=9002, src="b", dst="c")) == 10
    assert net.partitions == [{"a"}, {"b", "c", "host", "main"}]
    net.heal()
    # a's kernel gave up resolving b's address while cut off (as on a real network), and drops what
    # it sends to b until it tries again: forget that, as a client retrying a while later would
    net.host("a").run(["ip", "neigh", "flush", "dev", "tap0"], check=True)
    assert len(probe(net, 10, 0.001, port=9003)) == 10
