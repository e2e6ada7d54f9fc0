"""Seeded simulation: two TcpConnections over a lossy, reordering, duplicating link.

A simulated clock (a heap of deliveries; no real time, no sleeps). The active
side connects, both send 2 MiB, both close; every byte must arrive exactly
and both ends must reach CLOSED. Every loop is bounded.
"""

from __future__ import annotations

import hashlib
import heapq
import random

import pytest

from rootlessnet.stack.tcp.connection import TcpConnection
from rootlessnet.stack.tcp.segment import Control
from rootlessnet.stack.tcp.states import State
from rootlessnet.stack.tcp.timers import TcpConfig

MiB = 1 << 20


class Link:
    def __init__(self, rng: random.Random, loss: float, dup: float, delay: float, jitter: float,
                 drop: set[int] = frozenset()):
        self.rng = rng
        self.drop = drop  # numbers (1-based) of the segments to a -> b that are lost, besides `loss`
        self.to_b = 0
        self.loss = loss
        self.dup = dup
        self.delay = delay
        self.jitter = jitter
        self.heap: list = []
        self.n = 0
        self.sent = 0

    def send(self, now: float, dst: str, seg) -> None:
        self.sent += 1
        if dst == "b":
            self.to_b += 1
            if self.to_b in self.drop:
                return
        rng = self.rng
        copies = 2 if rng.random() < self.dup else 1
        for _ in range(copies):
            if rng.random() < self.loss:
                continue
            t = now + self.delay + rng.random() * self.jitter  # jitter > spacing: reordering
            self.n += 1
            heapq.heappush(self.heap, (t, self.n, dst, seg))

    def next_time(self) -> float | None:
        return self.heap[0][0] if self.heap else None


def _stream(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def run_sim(seed: int, loss: float, dup: float = 0.02, size: int = 2 * MiB,
            max_tx: int | None = None, iss: tuple[int, int] | None = None, jitter: float = 0.004,
            drop: set[int] = frozenset()) -> dict:
    rng = random.Random(seed)
    cfg = TcpConfig(local_mss=1460, recv_buffer=128 * 1024, send_buffer=128 * 1024,
                    time_wait=5.0, max_retries=30, syn_retries=30)
    link = Link(rng, loss, dup, delay=0.005, jitter=jitter, drop=drop)
    iss_a, iss_b = iss if iss is not None else (rng.getrandbits(32), rng.getrandbits(32))
    now = 0.0
    data = {"a": _stream(seed, size), "b": _stream(seed + 1, size)}
    sent = {"a": 0, "b": 0}
    got = {"a": bytearray(), "b": bytearray()}
    conns: dict[str, TcpConnection | None] = {
        "a": TcpConnection.connect(now=now, iss=iss_a, config=cfg),
        "b": None,
    }
    closed_called = {"a": False, "b": False}

    def app(name: str) -> None:
        c = conns[name]
        if c is None or c.closed:
            return
        while c.readable():  # the engine drains the receive buffer
            got[name] += c.peek(65536)
            c.consume(len(c.peek(65536)))
        if not closed_called[name] and c.established:
            d = data[name]
            while sent[name] < len(d) and c.send_space():
                sent[name] += c.send(memoryview(d)[sent[name] : sent[name] + 65536])
            if sent[name] == len(d):
                c.close()
                closed_called[name] = True

    def flush(name: str) -> None:
        c = conns[name]
        if c is None:
            return
        c.poll(now)
        if max_tx and c.established:
            c.max_tx_payload = max_tx
        other = "b" if name == "a" else "a"
        for s in c.take_output():
            link.send(now, other, s)

    for _step in range(2_000_000):
        for name in ("a", "b"):
            app(name)
            flush(name)
        a, b = conns["a"], conns["b"]
        if a.closed and b is not None and b.closed and not link.heap:
            break
        times = [t for t in (link.next_time(), a.poll_at(),
                             b.poll_at() if b is not None else None) if t is not None]
        if not times:
            break
        now = max(now, min(times))
        assert now < 3600, "simulation did not finish within an hour of simulated time"
        while link.heap and link.heap[0][0] <= now:
            _, _, dst, s = heapq.heappop(link.heap)
            if dst == "b" and conns["b"] is None:
                if s.control is Control.SYN and s.ack is None:
                    conns["b"] = TcpConnection.from_syn(s, now=now, iss=iss_b, config=cfg)
                    conns["b"].accept(now)
                continue
            conns[dst].receive(s, now)
    else:
        raise AssertionError("step bound reached")
    a, b = conns["a"], conns["b"]
    app("a")
    app("b")
    assert a.state is State.CLOSED and b.state is State.CLOSED, (a, b)
    assert not a.reset_by_peer and not b.reset_by_peer
    assert not a.timed_out and not b.timed_out
    assert hashlib.sha256(got["b"]).digest() == hashlib.sha256(data["a"]).digest()
    assert hashlib.sha256(got["a"]).digest() == hashlib.sha256(data["b"]).digest()
    return {"a": a.statistics(), "b": b.statistics(), "now": now}


@pytest.mark.parametrize(
    "seed,loss",
    [(1, 0.0), (2, 0.01), (3, 0.05), (4, 0.10), (5, 0.20), (6, 0.15)],
)
def test_transfer_over_lossy_link(seed, loss):
    r = run_sim(seed, loss)
    if loss >= 0.05:
        assert r["a"]["retransmits"] > 0 and r["b"]["retransmits"] > 0


def test_transfer_with_super_segments():
    # GSO-style: the sender emits up to 16 KiB per segment, the receiver reassembles.
    run_sim(7, 0.02, size=MiB, max_tx=16384)


def test_one_lost_segment_is_repaired_by_fast_retransmit_not_rto():
    # no random loss, no reordering: only the 200th segment a -> b is lost, mid-stream, with
    # plenty of segments behind it to make three duplicate ACKs
    r = run_sim(8, 0.0, dup=0.0, jitter=0.0, drop={200})
    assert r["a"]["fast_retransmits"] == 1 and r["a"]["retransmits"] == 1
    assert r["a"]["rto_expirations"] == 0 and r["b"]["rto_expirations"] == 0


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_transfer_across_sequence_number_wraparound(loss):
    """Both ISNs sit just below 2**32: every sequence and ack comparison crosses the wrap."""
    r = run_sim(9, loss, size=MiB, iss=(2**32 - 300_000, 2**32 - 1))
    if loss:
        assert r["a"]["retransmits"] > 0
