"""stack.impair: tc netem's model of a link, sans-IO and seeded.

`Impairment` holds netem's parameters, each validated (a bad value raises
`ImpairmentError`, a ValueError naming the parameter and its range; nothing
is clamped). `LinkQueue` is one direction of one link, netem's queue:
frames go in with `push(item, size, now)` and come out of `due(now)` at
their release time; `next_at()` is the next release. Time is an argument
and every random choice comes from a `random.Random` seeded from
(seed, the queue's salt), so the same seed and traffic give the same
decisions, frame for frame.

What a frame goes through, in netem's order (net/sched/sch_netem.c):
duplicate? (the copy goes through loss, corruption and delay on its own),
loss (random, Gilbert-Elliott or the 4-state Markov model), corruption (one
bit flipped by `corrupt_fn(item, rng)`), the queue limit (tail drop), then
either reordering (sent at once, ahead of the queue: with `gap` N only
every Nth frame may) or delay (+ jitter drawn from a distribution,
correlated) and the rate (serialisation at `rate` bit/s of size + per-frame
overhead, in cells if `cell_size`). A queue with `slot` releases frames only
in slots (bursts of `packets`/`bytes`, then a pause). A held queue releases
nothing until `release()`; then everything due leaves in order.

Where netem is known to misbehave we keep the distribution instead:
correlated loss/duplicate/corrupt/reorder is a two-state Markov chain whose
marginal probability stays the one asked (netem's `(1-ρ)·U + ρ·last` shifts
it), and delay correlation is an AR(1) Gaussian copula, so the delay keeps
its distribution whatever the correlation. The delay distributions are
netem's tables computed exactly: normal (clipped at ±4σ as the tables are),
pareto (shape 3: `(u^-1/3 - 1.5)·4/3`, at most 4σ) and paretonormal
(`0.25·normal + 0.75·pareto` of the same quantile).

Interface for the engine (the switch), in `rootlessnet.stack.links`:
`Impairments` routes a frame through up to three queues (the sender's
uplink, the pair's queue, the receiver's downlink), applies partitions and
holds; see that module.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import asdict, dataclass, fields
from statistics import NormalDist
from typing import Any, Callable

DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
MAX_DELAY = 60.0
_TABLE_MAX = 32767 / 8192  # netem's tables are int16 in units of sigma/8192: about ±4 sigma
_STD_NORMAL = NormalDist()


class ImpairmentError(ValueError):
    """A bad impairment value: names the parameter and what is allowed."""

    def __init__(self, parameter: str, value: Any, allowed: str, context: str = ""):
        self.parameter = parameter
        self.value = value
        self.allowed = allowed
        where = f"{context}({parameter}={value!r})" if context else f"{parameter}={value!r}"
        super().__init__(f"{where}: {allowed}")


def _number(name: str, v: Any) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise ImpairmentError(name, v, "must be a finite number")
    return float(v)


def _seconds(name: str, v: Any, lo: float = 0.0) -> float:
    f = _number(name, v)
    if not lo <= f <= MAX_DELAY:
        raise ImpairmentError(name, v, f"seconds in {lo:g}..{MAX_DELAY:g} (0.1 = 100 ms)")
    return f


def _probability(name: str, v: Any) -> float:
    f = _number(name, v)
    if not 0.0 <= f <= 1.0:
        hint = " (20 % is 0.2)" if 1 < f <= 100 else ""
        raise ImpairmentError(name, v, f"a probability in 0..1{hint}")
    return f


def _integer(name: str, v: Any, lo: int, hi: int, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ImpairmentError(name, v, f"{what} in {lo}..{hi}")
    return v


@dataclass(frozen=True)
class GilbertElliott:
    """netem's `loss gemodel p [r [1-h [1-k]]]`: a good and a bad state.

    p: good -> bad per frame; r: bad -> good (default 1 - p); bad_loss (tc's
    1-h): loss probability in the bad state (default 1); good_loss (tc's
    1-k): in the good state (default 0). With the defaults, losses come in
    bursts of mean length 1/r, at a rate p/(p+r)."""

    p: float
    r: float | None = None
    bad_loss: float = 1.0
    good_loss: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _probability("loss.p", self.p))
        object.__setattr__(self, "r", 1.0 - self.p if self.r is None else _probability("loss.r", self.r))
        object.__setattr__(self, "bad_loss", _probability("loss.bad_loss (tc's 1-h)", self.bad_loss))
        object.__setattr__(self, "good_loss", _probability("loss.good_loss (tc's 1-k)", self.good_loss))

    def to_json(self) -> dict[str, Any]:
        return {"model": "gemodel", **asdict(self)}


@dataclass(frozen=True)
class MarkovLoss:
    """netem's `loss state p13 [p31 [p32 [p23 [p14]]]]`, the 4-state model.

    States: 1 frames delivered in a gap, 2 delivered within a burst, 3 lost
    within a burst, 4 an isolated loss. Defaults as tc's: p31 = 1 - p13,
    p32 = 0, p23 = 1, p14 = 0."""

    p13: float
    p31: float | None = None
    p32: float = 0.0
    p23: float = 1.0
    p14: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p13", "p32", "p23", "p14"):
            object.__setattr__(self, name, _probability(f"loss.{name}", getattr(self, name)))
        p31 = 1.0 - self.p13 if self.p31 is None else _probability("loss.p31", self.p31)
        object.__setattr__(self, "p31", p31)
        if self.p13 + self.p14 > 1.0 + 1e-12:
            raise ImpairmentError("loss.p14", self.p14, f"with p13={self.p13:g}, p13 + p14 must be at most 1")
        if p31 + self.p32 > 1.0 + 1e-12:
            raise ImpairmentError("loss.p32", self.p32, f"with p31={p31:g}, p31 + p32 must be at most 1")

    def to_json(self) -> dict[str, Any]:
        return {"model": "state", **asdict(self)}


@dataclass(frozen=True)
class Slot:
    """netem's `slot MIN [MAX] [packets N] [bytes N]` or `slot distribution D DELAY JITTER ...`:
    frames leave only in slots; a slot lets out up to `packets` frames or
    `bytes` bytes (None: no bound), then the next opens after a pause drawn
    uniformly in min_delay..max_delay, or from `distribution` (delay, jitter)."""

    min_delay: float = 0.0
    max_delay: float | None = None
    packets: int | None = None
    bytes: int | None = None
    distribution: str | None = None
    delay: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_delay", _seconds("slot.min_delay", self.min_delay))
        mx = self.min_delay if self.max_delay is None else _seconds("slot.max_delay", self.max_delay)
        if mx < self.min_delay:
            raise ImpairmentError("slot.max_delay", self.max_delay, f"seconds, at least min_delay ({self.min_delay:g})")
        object.__setattr__(self, "max_delay", mx)
        if self.packets is not None:
            _integer("slot.packets", self.packets, 1, 2**31 - 1, "frames per slot")
        if self.bytes is not None:
            _integer("slot.bytes", self.bytes, 1, 2**31 - 1, "bytes per slot")
        if self.distribution is not None and self.distribution not in DISTRIBUTIONS:
            raise ImpairmentError("slot.distribution", self.distribution, f"one of {', '.join(DISTRIBUTIONS)}")
        object.__setattr__(self, "delay", _seconds("slot.delay", self.delay))
        object.__setattr__(self, "jitter", _seconds("slot.jitter", self.jitter))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _loss_model(v: Any) -> float | GilbertElliott | MarkovLoss:
    if isinstance(v, (GilbertElliott, MarkovLoss)):
        return v
    if isinstance(v, dict):
        d = dict(v)
        model = d.pop("model", "random")
        try:
            if model == "gemodel":
                return GilbertElliott(**d)
            if model == "state":
                return MarkovLoss(**d)
        except TypeError as e:
            raise ImpairmentError("loss", v, f"bad {model} parameters ({e})") from None
        if model == "random" and set(d) <= {"p"}:
            return _probability("loss", d.get("p", 0.0))
        raise ImpairmentError("loss", v, "a probability, or {'model': 'gemodel', 'p', 'r', 'bad_loss', 'good_loss'}"
                                         " or {'model': 'state', 'p13', 'p31', 'p32', 'p23', 'p14'}")
    return _probability("loss", v)


@dataclass(frozen=True)
class Impairment:
    """netem's parameters for one direction of a link (see the module's docstring)."""

    delay: float = 0.0  # seconds added to every frame
    jitter: float = 0.0  # seconds: the spread of the delay (its distribution's sigma; uniform: +/-)
    delay_correlation: float = 0.0
    distribution: str = "uniform"  # of the jitter: uniform, normal, pareto, paretonormal
    loss: Any = 0.0  # a probability (random), GilbertElliott or MarkovLoss
    loss_correlation: float = 0.0  # random loss only
    duplicate: float = 0.0
    duplicate_correlation: float = 0.0
    corrupt: float = 0.0  # one bit of the frame flipped: the receiver's checksum catches it
    corrupt_correlation: float = 0.0
    reorder: float = 0.0  # probability a frame is sent at once, ahead of the delayed ones
    reorder_correlation: float = 0.0
    gap: int = 0  # with reorder: only every gap-th frame may be reordered (0: as 1, every frame)
    rate: float | None = None  # bits per second (None: unlimited)
    overhead: int = 0  # bytes added to each frame's size for the rate (may be negative)
    cell_size: int = 0  # the rate counts whole cells of this many bytes (0: bytes)
    cell_overhead: int = 0  # bytes added to each cell
    slot: Slot | None = None
    limit: int = 1000  # frames queued at once; more are dropped, as netem's limit
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731 - frozen dataclass
        set_("delay", _seconds("delay", self.delay))
        set_("jitter", _seconds("jitter", self.jitter))
        if self.distribution not in DISTRIBUTIONS:
            raise ImpairmentError("distribution", self.distribution, f"one of {', '.join(DISTRIBUTIONS)}")
        set_("loss", _loss_model(self.loss))
        for name in ("duplicate", "corrupt", "reorder", "delay_correlation", "loss_correlation",
                     "duplicate_correlation", "corrupt_correlation", "reorder_correlation"):
            set_(name, _probability(name, getattr(self, name)))
        if self.loss_correlation and not isinstance(self.loss, float):
            raise ImpairmentError("loss_correlation", self.loss_correlation,
                                  "applies to random loss only (the loss models have their own states)")
        _integer("gap", self.gap, 0, 2**31 - 1, "frames")
        if self.gap and not self.reorder:
            raise ImpairmentError("gap", self.gap, "needs reorder > 0 (gap says which frames may be reordered)")
        if self.reorder and not self.delay:
            raise ImpairmentError("reorder", self.reorder, "needs a delay > 0 (reordered frames skip the delay)")
        if self.rate is not None:
            r = _number("rate", self.rate)
            if not 1000 <= r <= 1e12:
                raise ImpairmentError("rate", self.rate,
                                      "bits per second in 1000..1e12 (1_000_000 = 1 Mbit/s), or None for no rate")
        for name in ("overhead", "cell_overhead"):
            _integer(name, getattr(self, name), -65535, 65535, "bytes")
        _integer("cell_size", self.cell_size, 0, 65535, "bytes")
        if (self.overhead or self.cell_size or self.cell_overhead) and self.rate is None:
            bad = "overhead" if self.overhead else "cell_size" if self.cell_size else "cell_overhead"
            raise ImpairmentError(bad, getattr(self, bad), "applies to the rate: give rate= too")
        if self.slot is not None and not isinstance(self.slot, Slot):
            if not isinstance(self.slot, dict):
                raise ImpairmentError("slot", self.slot, "a Slot(...) or {'min_delay': s, 'max_delay': s, ...}")
            try:
                set_("slot", Slot(**self.slot))
            except TypeError as e:
                raise ImpairmentError("slot", self.slot, f"unknown slot parameter ({e})") from None
        _integer("limit", self.limit, 1, 1_000_000, "a number of frames")
        _integer("seed", self.seed, -(2**63), 2**63 - 1, "an integer")

    @property
    def active(self) -> bool:
        return bool(self.delay or self.jitter or self.loss or self.rate is not None or self.reorder
                    or self.duplicate or self.corrupt or self.slot is not None)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["loss"] = self.loss.to_json() if isinstance(self.loss, (GilbertElliott, MarkovLoss)) else self.loss
        out["slot"] = self.slot.to_json() if self.slot is not None else None
        return out

    @classmethod
    def from_json(cls, obj: Any) -> "Impairment":
        if not isinstance(obj, dict):
            raise ImpairmentError("settings", obj, "the link settings must be a JSON object")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(obj) - set(names))
        if unknown:
            raise ImpairmentError(unknown[0], obj[unknown[0]], f"unknown field(s) {', '.join(unknown)}: use {', '.join(names)}")
        return cls(**obj)


# -- random draws ------------------------------------------------------------------------

class _Chance:
    """A Bernoulli draw with lag-1 correlation rho and marginal probability p (a two-state Markov chain)."""

    __slots__ = ("p", "hit_after_hit", "hit_after_miss", "last")

    def __init__(self, p: float, rho: float):
        self.p = p
        self.hit_after_hit = p + rho * (1.0 - p)
        self.hit_after_miss = p * (1.0 - rho)
        self.last: bool | None = None

    def __call__(self, rng: random.Random) -> bool:
        if self.last is None:
            q = self.p
        else:
            q = self.hit_after_hit if self.last else self.hit_after_miss
        self.last = rng.random() < q
        return self.last


def quantile(distribution: str, u: float) -> float:
    """netem's distribution at quantile u in (0, 1), in units of sigma (mean about 0)."""
    if distribution == "uniform":
        return 2.0 * u - 1.0
    if distribution == "normal":
        return max(-_TABLE_MAX, min(_TABLE_MAX, _STD_NORMAL.inv_cdf(u)))
    par = (1.0 - u) ** (-1.0 / 3.0) - 1.5  # pareto, shape 3, increasing with u
    if distribution == "pareto":
        return min(_TABLE_MAX, par * 4.0 / 3.0)
    return max(-_TABLE_MAX, min(_TABLE_MAX, 0.25 * _STD_NORMAL.inv_cdf(u) + par))  # paretonormal


class _Delay:
    """delay + jitter * quantile(u), u correlated across frames through an AR(1) Gaussian copula."""

    def __init__(self, imp: Impairment):
        self.mu = imp.delay
        self.sigma = imp.jitter
        self.dist = imp.distribution
        self.rho = imp.delay_correlation
        self.z: float | None = None

    def __call__(self, rng: random.Random) -> float:
        if not self.sigma:
            return self.mu
        if self.rho:
            e = rng.gauss(0.0, 1.0)
            self.z = e if self.z is None else self.rho * self.z + math.sqrt(1.0 - self.rho * self.rho) * e
            u = _STD_NORMAL.cdf(self.z)
        else:
            u = rng.random()
        u = min(max(u, 1e-12), 1.0 - 1e-12)
        return self.mu + self.sigma * quantile(self.dist, u)


class _Loss:
    def __init__(self, imp: Impairment):
        self.model = imp.loss
        self.state = 1  # gemodel: 1 good, 2 bad; state: 1..4 as in MarkovLoss
        self.chance = _Chance(imp.loss, imp.loss_correlation) if isinstance(imp.loss, float) and imp.loss else None

    def __call__(self, rng: random.Random) -> bool:
        m = self.model
        if self.chance is not None:
            return self.chance(rng)
        if isinstance(m, GilbertElliott):
            bad = self.state == 2
            lost = rng.random() < (m.bad_loss if bad else m.good_loss)
            r = 1.0 - m.p if m.r is None else m.r  # set by __post_init__
            if rng.random() < (r if bad else m.p):
                self.state = 1 if bad else 2
            return lost
        if isinstance(m, MarkovLoss):
            u = rng.random()
            s = self.state
            if s == 1:
                self.state = 4 if u < m.p14 else 3 if u < m.p14 + m.p13 else 1
            elif s == 2:
                self.state = 3 if u < m.p23 else 2
            elif s == 3:
                p31 = 1.0 - m.p13 if m.p31 is None else m.p31  # set by __post_init__
                self.state = 1 if u < p31 else 2 if u < p31 + m.p32 else 3
            else:
                self.state = 1
            return self.state in (3, 4)
        return False


# -- the queue ---------------------------------------------------------------------------------

STAT_NAMES = ("frames", "lost", "duplicated", "corrupted", "reordered", "overlimit", "delivered")


class LinkQueue:
    """One direction of one link (netem's qdisc). Items are opaque; `corrupt_fn(item, rng)` returns
    a damaged copy (the engine flips one bit past the Ethernet header)."""

    def __init__(self, imp: Impairment, salt: Any, corrupt_fn: Callable[[Any, random.Random], Any] | None = None):
        self.imp = imp
        self.rng = random.Random(f"rootlessnet-impair:{imp.seed}:{salt}")
        self.corrupt_fn = corrupt_fn
        self._heap: list[tuple[float, int, int, Any, int]] = []  # (time, 0 head / 1 tfifo, seq, item, size)
        self._seq = 0
        self._last = float("-inf")  # release time of the last frame through the delay/rate path
        self._loss = _Loss(imp)
        self._delay = _Delay(imp)
        self._dup = _Chance(imp.duplicate, imp.duplicate_correlation) if imp.duplicate else None
        self._corrupt = _Chance(imp.corrupt, imp.corrupt_correlation) if imp.corrupt else None
        self._reorder = _Chance(imp.reorder, imp.reorder_correlation) if imp.reorder else None
        self._gap = max(imp.gap, 1)
        self._counter = 0
        self._slot_next = float("-inf")  # the first slot is open at once, as netem's
        self._slot_packets = 0
        self._slot_bytes = 0
        if imp.slot is not None:
            self._refill_slot()
        self.held = False
        self.stats = dict.fromkeys(STAT_NAMES, 0)

    # -- in -----------------------------------------------------------------------------------
    def push(self, item: Any, size: int, now: float) -> None:
        """A frame of `size` bytes enters at `now`: decide its fate and, if it lives, its release time."""
        rng = self.rng
        self.stats["frames"] += 1
        copies = 2 if self._dup is not None and self._dup(rng) else 1
        if copies == 2:
            self.stats["duplicated"] += 1
        for _ in range(copies):
            self._one(item, size, now, rng)

    def _one(self, item: Any, size: int, now: float, rng: random.Random) -> None:
        imp = self.imp
        if self._loss(rng):
            self.stats["lost"] += 1
            return
        if self._corrupt is not None and self._corrupt(rng) and self.corrupt_fn is not None:
            item = self.corrupt_fn(item, rng)
            self.stats["corrupted"] += 1
        if len(self._heap) >= imp.limit:
            self.stats["overlimit"] += 1  # the queue is full: tail drop, as netem
            return
        self._seq += 1
        if (self._reorder is not None and self._counter >= self._gap - 1 and self._reorder(rng)):
            self._counter = 0
            self.stats["reordered"] += 1
            heapq.heappush(self._heap, (now, 0, self._seq, item, size))  # at the head: sent at once
            return
        self._counter += 1
        t = now + max(self._delay(rng), 0.0)
        if imp.rate is not None:
            # the last frame queued is the reference: serialisation starts when it has left
            t = max(t, self._last) + self._wire_time(size)
        self._last = max(self._last, t) if imp.rate is not None else t
        heapq.heappush(self._heap, (t, 1, self._seq, item, size))

    def _wire_time(self, size: int) -> float:
        imp = self.imp
        n = max(size + imp.overhead, 0)
        if imp.cell_size:
            cells = -(-n // imp.cell_size)
            n = cells * (imp.cell_size + imp.cell_overhead)
        return max(n, 0) * 8.0 / imp.rate  # type: ignore[operator]

    # -- out ----------------------------------------------------------------------------------
    def due(self, now: float) -> list[Any]:
        return [item for _, item in self.due_timed(now)]

    def due_timed(self, now: float) -> list[tuple[float, Any]]:
        """Frames released by `now`, with the time each left, in order."""
        if self.held:
            return []
        out = []
        heap = self._heap
        slot = self.imp.slot
        while heap and heap[0][0] <= now:
            t = heap[0][0]
            if slot is not None:
                if self._slot_next > now:
                    break
                t = max(t, self._slot_next)
            entry = heapq.heappop(heap)
            out.append((t, entry[3]))
            self.stats["delivered"] += 1
            if slot is not None:
                self._slot_packets -= 1
                self._slot_bytes -= entry[4]
                if self._slot_packets <= 0 or self._slot_bytes <= 0:
                    self._slot_next = t + self._slot_pause()
                    self._refill_slot()
        return out

    def _slot_pause(self) -> float:
        s = self.imp.slot
        assert s is not None
        if s.distribution is not None:
            u = min(max(self.rng.random(), 1e-12), 1.0 - 1e-12)
            return max(s.delay + s.jitter * quantile(s.distribution, u), 0.0)
        return s.min_delay + (s.max_delay - s.min_delay) * self.rng.random()  # type: ignore[operator]

    def _refill_slot(self) -> None:
        s = self.imp.slot
        assert s is not None
        self._slot_packets = s.packets if s.packets is not None else 2**31
        self._slot_bytes = s.bytes if s.bytes is not None else 2**62

    def next_at(self) -> float | None:
        """When the next frame leaves (None: nothing queued, or held)."""
        if not self._heap or self.held:
            return None
        t = self._heap[0][0]
        if self.imp.slot is not None:
            t = max(t, self._slot_next)
        return t

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False

    def take_all(self) -> list[tuple[float, Any]]:
        """Everything queued, in release order (to carry it into a queue with new settings)."""
        out = [(e[0], e[3]) for e in sorted(self._heap)]
        self._heap.clear()
        return out

    def __len__(self) -> int:
        return len(self._heap)


__all__ = ["Impairment", "ImpairmentError", "GilbertElliott", "MarkovLoss", "Slot", "LinkQueue", "DISTRIBUTIONS",
           "quantile"]
