"""stack.impair: per-link impairments applied by the engine (no netem needed).

A `LinkQueue` is one direction of one host's link: frames go in with
`push(item, size, now)` and come out of `due(now)` at their release time.
Loss, duplication, corruption, reordering, delay with jitter and a rate
limit (serialisation at `rate` bits/s) are decided with a seeded
`random.Random`, so a run is repeatable. Time is an argument.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import asdict, dataclass
from typing import Any

FIELDS = ("delay", "jitter", "loss", "rate", "reorder", "duplicate", "corrupt", "seed", "limit")


@dataclass(frozen=True)
class Impairment:
    delay: float = 0.0  # seconds added to every frame
    jitter: float = 0.0  # +/- seconds, uniform
    loss: float = 0.0  # probability a frame is dropped
    rate: float | None = None  # bits per second (None: unlimited)
    reorder: float = 0.0  # probability a frame skips the delay (overtakes the queue)
    duplicate: float = 0.0  # probability a frame is sent twice
    corrupt: float = 0.0  # probability one byte of the frame is flipped (the receiver's checksum catches it)
    seed: int = 0
    limit: int = 1000  # frames held at once (delayed or waiting for the rate); more are dropped, as netem's limit

    def __post_init__(self) -> None:
        for name in ("delay", "jitter"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 60:
                raise ValueError(f"{name} must be a number of seconds in 0..60, not {v!r}")
        for name in ("loss", "reorder", "duplicate", "corrupt"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
                raise ValueError(f"{name} must be a probability in 0..1, not {v!r}")
        if self.rate is not None and (not isinstance(self.rate, (int, float)) or isinstance(self.rate, bool) or self.rate < 1000):
            raise ValueError(f"rate must be bits per second >= 1000 (or null for unlimited), not {self.rate!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, not {self.seed!r}")
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or not 1 <= self.limit <= 1_000_000:
            raise ValueError(f"limit must be a number of frames in 1..1000000, not {self.limit!r}")

    @property
    def active(self) -> bool:
        return any((self.delay, self.jitter, self.loss, self.rate, self.reorder, self.duplicate, self.corrupt))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> "Impairment":
        if not isinstance(obj, dict):
            raise ValueError("the link settings must be a JSON object")
        unknown = sorted(set(obj) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}: use {', '.join(FIELDS)}")
        return cls(**obj)


class LinkQueue:
    """One direction of a link. Items are opaque; `corrupt_fn(item, rng)` returns a damaged copy."""

    def __init__(self, imp: Impairment, salt: int, corrupt_fn=None):
        self.imp = imp
        self.rng = random.Random(imp.seed * 1_000_003 + salt)
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = 0
        self._free_at = 0.0  # when the (rate-limited) link is idle again
        self._last_release = 0.0  # FIFO: frames without reorder never overtake each other
        self.corrupt_fn = corrupt_fn
        self.stats = {"frames": 0, "lost": 0, "duplicated": 0, "corrupted": 0, "reordered": 0, "overlimit": 0}

    def push(self, item: Any, size: int, now: float) -> None:
        imp, rng = self.imp, self.rng
        self.stats["frames"] += 1
        if imp.loss and rng.random() < imp.loss:
            self.stats["lost"] += 1
            return
        copies = 2 if imp.duplicate and rng.random() < imp.duplicate else 1
        if copies == 2:
            self.stats["duplicated"] += 1
        for _ in range(copies):
            if len(self._heap) >= imp.limit:
                self.stats["overlimit"] += 1  # the queue is full: tail drop, as netem
                continue
            it = item
            if imp.corrupt and self.corrupt_fn is not None and rng.random() < imp.corrupt:
                it = self.corrupt_fn(item, rng)
                self.stats["corrupted"] += 1
            t = now
            if imp.rate:
                start = max(now, self._free_at)
                self._free_at = start + size * 8 / imp.rate
                t = self._free_at
            if imp.reorder and rng.random() < imp.reorder:
                self.stats["reordered"] += 1  # skips the delay: overtakes what is queued
            else:
                d = imp.delay + (rng.uniform(-imp.jitter, imp.jitter) if imp.jitter else 0.0)
                t = max(t + max(d, 0.0), self._last_release) if not imp.jitter else t + max(d, 0.0)
                self._last_release = t
            self._seq += 1
            heapq.heappush(self._heap, (t, self._seq, it))

    def due(self, now: float) -> list[Any]:
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        return out

    def next_at(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
