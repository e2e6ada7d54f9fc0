"""stack.links: the switch's impairments, holds and partitions, per link, per pair and per direction.

Sans-IO (time is an argument). The engine asks one `Impairments` object
about every frame between two endpoints (a host's name, "main", or "host"
for the outside: the engine's own stack and NAT):

    table = Impairments(corrupt_fn)                 # corrupt_fn(item, rng) -> damaged copy
    item = table.send(src, dst, item, size, now)    # the item: deliver it now; None: queued or dropped
    for src, dst, item in table.due(now): ...       # frames whose path is complete, in release order
    table.next_at()                                 # when due() has something next (None: nothing queued)
    table.quiet                                     # nothing configured: the engine may skip the table

A frame from src to dst goes through up to three netem queues, each a
`stack.impair.LinkQueue` with its own seeded random stream: src's uplink
("up", src), the pair's queue ("pair", src, dst), and dst's downlink
("down", dst); "host" has no link of its own (use pairs with it). Each
queue's release time is the next one's arrival time, so a late `due()` call
changes nothing. Partitions are directed pairs that drop frames, checked
when a frame is sent and again when it would be delivered (frames in flight
on a cut path are lost). A held queue keeps its frames (up to its limit)
until released; then they leave in order. Every change takes effect at once
for new frames; frames already queued keep the settings they were queued with.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from rootlessnet.stack.impair import STAT_NAMES, Impairment, LinkQueue

HOST = "host"
DIRECTIONS = ("up", "down")

Key = tuple  # ("up", name) | ("down", name) | ("pair", src, dst)


def key_name(key: Key) -> str:
    return f"{key[1]}->{key[2]}" if key[0] == "pair" else f"{key[1]}/{key[0]}"


class Impairments:
    def __init__(self, corrupt_fn: Callable[[Any, Any], Any] | None = None):
        self.corrupt_fn = corrupt_fn
        self.settings: dict[Key, Impairment] = {}  # active impairments
        self.queues: dict[Key, LinkQueue] = {}  # current queue of each stage that exists
        self.retired: list[tuple[Key, LinkQueue]] = []  # queues of replaced settings, still draining
        self.held: set[Key] = set()
        self.blocked: set[tuple[str, str]] = set()
        self.groups: list[list[str]] = []  # the last partition's groups (for reporting)
        self.totals: dict[Key, dict[str, int]] = {}  # statistics of retired queues
        self.drop_partitioned = 0
        self._paths: dict[tuple[str, str], tuple[Key, ...]] = {}
        self._seq = 0
        self.quiet = True

    # -- configuration --------------------------------------------------------------------
    def _changed(self) -> None:
        self._paths.clear()
        self.quiet = not self.queues and not self.retired and not self.blocked

    def _set(self, key: Key, imp: Impairment | None) -> None:
        old = self.queues.pop(key, None)
        if old is not None:
            if len(old):
                self.retired.append((key, old))  # its frames leave with the settings they came with
            else:
                self._retire_stats(key, old)
        if imp is not None and imp.active:
            self.settings[key] = imp
        else:
            self.settings.pop(key, None)
        if key in self.settings or key in self.held:
            q = LinkQueue(self.settings.get(key, Impairment()), "/".join(map(str, key)), self._corrupt)
            q.held = key in self.held
            self.queues[key] = q
        self._changed()

    def _corrupt(self, rec: tuple, rng: Any) -> tuple:
        if self.corrupt_fn is None:
            return rec
        return (*rec[:2], self.corrupt_fn(rec[2], rng), *rec[3:])

    def set_link(self, name: str, imp: Impairment | None, direction: str = "both") -> None:
        """`name`'s link to the switch: "up" carries what it sends, "down" what it receives."""
        for d in _directions(direction):
            self._set((d, name), imp)

    def set_pair(self, src: str, dst: str, imp: Impairment | None, both: bool = False) -> None:
        """Frames from src to dst (and from dst to src with both=True), after src's uplink."""
        self._set(("pair", src, dst), imp)
        if both:
            self._set(("pair", dst, src), imp)

    def link_settings(self, name: str) -> dict[str, Impairment | None]:
        return {d: self.settings.get((d, name)) for d in DIRECTIONS}

    def pair_settings(self) -> dict[tuple[str, str], Impairment]:
        return {(k[1], k[2]): v for k, v in self.settings.items() if k[0] == "pair"}

    def forget(self, name: str) -> None:
        """Drop every setting, hold and block that names `name`."""
        for key in [k for k in set(self.queues) | set(self.settings) | self.held if name in k[1:]]:
            self.held.discard(key)
            self._set(key, None)
        self.blocked = {b for b in self.blocked if name not in b}
        self._changed()

    # -- holds ------------------------------------------------------------------------------
    def hold(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.held.add(key)
            q = self.queues.get(key)
            if q is None:
                self._set(key, self.settings.get(key))
            else:
                q.held = True
            for k, rq in self.retired:
                if k == key:
                    rq.held = True
        self._changed()

    def release(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.held.discard(key)
            for k, q in [(key, self.queues.get(key)), *self.retired]:
                if k == key and q is not None:
                    q.held = False
        self._changed()

    @staticmethod
    def link_keys(name: str, direction: str = "both") -> list[Key]:
        return [(d, name) for d in _directions(direction)]

    @staticmethod
    def pair_keys(src: str, dst: str, both: bool = False) -> list[Key]:
        return [("pair", src, dst)] + ([("pair", dst, src)] if both else [])

    # -- partitions --------------------------------------------------------------------------
    def partition(self, groups: list[Iterable[str]] | None) -> None:
        """Frames between different groups are dropped, both ways; replaces every earlier cut."""
        self.blocked = set()
        self.groups = [sorted(g) for g in groups or []]
        for i, a in enumerate(self.groups):
            for j, b in enumerate(self.groups):
                if i != j:
                    self.blocked.update((x, y) for x in a for y in b)
        self._changed()

    def block(self, srcs: Iterable[str], dsts: Iterable[str]) -> None:
        """One way: frames from any of srcs to any of dsts are dropped (the other way still passes)."""
        dsts = list(dsts)
        self.blocked.update((s, d) for s in srcs for d in dsts if s != d)
        self._changed()

    def unblock(self, srcs: Iterable[str], dsts: Iterable[str]) -> None:
        dsts = list(dsts)
        self.blocked.difference_update((s, d) for s in srcs for d in dsts)
        self._changed()

    def heal(self) -> None:
        self.blocked = set()
        self.groups = []
        self._changed()

    def allowed(self, src: str, dst: str) -> bool:
        return (src, dst) not in self.blocked

    # -- the datapath ---------------------------------------------------------------------------
    def _path(self, src: str, dst: str) -> tuple[Key, ...]:
        path = self._paths.get((src, dst))
        if path is None:
            candidates = [("up", src), ("pair", src, dst), ("down", dst)]
            path = tuple(k for k in candidates if k in self.queues and not (k[1] == HOST and k[0] != "pair"))
            self._paths[(src, dst)] = path
        return path

    def send(self, src: str, dst: str, item: Any, size: int, now: float) -> Any:
        """A frame enters; returns it when it may be delivered at once, else None (queued or dropped)."""
        if (src, dst) in self.blocked:
            self.drop_partitioned += 1
            return None
        path = self._path(src, dst)
        if not path:
            return item
        self.queues[path[0]].push((src, dst, item, size, path, 0), size, now)
        return None

    def due(self, now: float) -> list[tuple[str, str, Any]]:
        """Frames that completed their path by `now`, in the order they arrived."""
        out: list[tuple[float, int, tuple]] = []
        for _ in range(64):  # each round moves frames one stage on; paths have at most three
            moved = False
            for q in [*self.queues.values(), *(rq for _, rq in self.retired)]:
                for t, rec in q.due_timed(now):
                    moved = True
                    src, dst, item, size, path, i = rec
                    i += 1
                    while i < len(path) and path[i] not in self.queues:
                        i += 1  # that stage was cleared meanwhile
                    if i < len(path):
                        self.queues[path[i]].push((src, dst, item, size, path, i), size, t)
                    else:
                        self._seq += 1
                        out.append((t, self._seq, rec))
            if not moved:
                break
        idle = [k for k, q in self.queues.items() if k not in self.settings and k not in self.held and not len(q)]
        for key in idle:  # a hold released, nothing configured: the stage goes
            self._retire_stats(key, self.queues.pop(key))
        if self.retired or idle:
            for key, rq in [r for r in self.retired if not len(r[1])]:
                self._retire_stats(key, rq)
            self.retired = [r for r in self.retired if len(r[1])]
            self._changed()
        out.sort(key=lambda e: (e[0], e[1]))
        delivered = []
        for _t, _s, rec in out:
            if (rec[0], rec[1]) in self.blocked:
                self.drop_partitioned += 1  # cut while in flight
            else:
                delivered.append((rec[0], rec[1], rec[2]))
        return delivered

    def next_at(self) -> float | None:
        best = None
        for q in [*self.queues.values(), *(rq for _, rq in self.retired)]:
            t = q.next_at()
            if t is not None and (best is None or t < best):
                best = t
        return best

    # -- statistics ---------------------------------------------------------------------------
    def _retire_stats(self, key: Key, q: LinkQueue) -> None:
        acc = self.totals.setdefault(key, dict.fromkeys(STAT_NAMES, 0))
        for k, v in q.stats.items():
            acc[k] += v

    def stage_statistics(self, key: Key) -> dict[str, int]:
        out = dict(self.totals.get(key, dict.fromkeys(STAT_NAMES, 0)))
        for k, q in [(key, self.queues.get(key)), *self.retired]:
            if k == key and q is not None:
                for name, v in q.stats.items():
                    out[name] += v
        out["queued"] = sum(len(q) for k, q in [(key, self.queues.get(key)), *self.retired] if k == key and q is not None)
        out["held"] = int(key in self.held)
        return out

    def link_statistics(self, name: str) -> dict[str, int]:
        """Both directions of `name`'s link added up (the engine's per-host `link` counters)."""
        out: dict[str, int] = {}
        for d in DIRECTIONS:
            for k, v in self.stage_statistics((d, name)).items():
                out[k] = out.get(k, 0) + v
        return out

    def statistics(self) -> dict[str, Any]:
        keys = set(self.totals) | set(self.queues) | {k for k, _ in self.retired}
        return {
            "stages": {key_name(k): self.stage_statistics(k) for k in sorted(keys)},
            "drop_partitioned": self.drop_partitioned,
            "held": sorted(key_name(k) for k in self.held),
            "blocked": sorted(f"{a}->{b}" for a, b in self.blocked),
        }


def _directions(direction: str) -> tuple[str, ...]:
    if direction == "both":
        return DIRECTIONS
    if direction in DIRECTIONS:
        return (direction,)
    raise ValueError(f"direction={direction!r}: use 'up' (what the host sends), 'down' (what it receives) or 'both'")
