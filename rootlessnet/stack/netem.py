"""stack.netem: tc netem's words -> stack.impair.Impairment's fields.

    parse_netem("delay 100ms 10ms 25% distribution normal loss gemodel 1% 10% 70% 0.1% rate 10mbit 20")

Everything tc-netem(8) accepts except `ecn` and distribution *files*:
limit, delay TIME [JITTER [CORR]] [distribution NAME], loss [random] P [CORR],
loss state p13 [p31 [p32 [p23 [p14]]]], loss gemodel p [r [1-h [1-k]]],
corrupt P [CORR], duplicate P [CORR], reorder P [CORR] [gap N],
rate RATE [OVERHEAD [CELLSIZE [CELLOVERHEAD]]],
slot MIN [MAX] | slot distribution NAME DELAY JITTER, [packets N] [bytes N],
seed N. Times as tc reads them (100ms, 1.5s, 250us; a bare number is
microseconds), percentages with % (a bare number is a fraction), rates in
bit, kbit, mbit, gbit (1000s), kibit, mibit, gibit, or bytes: bps, kbps, mbps.
A word tc would not take raises ValueError naming it.
"""

from __future__ import annotations

import re
from typing import Any

_TIME = {"s": 1.0, "sec": 1.0, "secs": 1.0, "ms": 1e-3, "msec": 1e-3, "msecs": 1e-3,
         "us": 1e-6, "usec": 1e-6, "usecs": 1e-6, "µs": 1e-6, "ns": 1e-9, "nsec": 1e-9, "nsecs": 1e-9, "": 1e-6}
_RATE = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12, "kibit": 1024, "mibit": 1024**2,
         "gibit": 1024**3, "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "": 1}
_NUM = re.compile(r"^([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)([a-zµ%]*)$", re.I)
KEYWORDS = {"limit", "delay", "latency", "loss", "drop", "corrupt", "duplicate", "reorder", "gap", "rate", "slot",
            "seed", "distribution", "packets", "bytes"}


def _split(word: str, what: str) -> tuple[float, str]:
    m = _NUM.match(word)
    if not m:
        raise ValueError(f"netem: {word!r} is not a {what}")
    return float(m.group(1)), m.group(2).lower()


def _time(word: str) -> float:
    v, unit = _split(word, "time (e.g. 100ms)")
    if unit not in _TIME:
        raise ValueError(f"netem: {word!r}: unknown time unit {unit!r} (use s, ms or us)")
    return v * _TIME[unit]


def _percent(word: str) -> float:
    v, unit = _split(word, "percentage (e.g. 1%)")
    if unit not in ("%", ""):
        raise ValueError(f"netem: {word!r} is not a percentage (e.g. 1% or 0.01)")
    return v / 100 if unit == "%" else v


def _rate(word: str) -> float:
    v, unit = _split(word, "rate (e.g. 10mbit)")
    if unit not in _RATE:
        raise ValueError(f"netem: {word!r}: unknown rate unit {unit!r} (use bit, kbit, mbit, gbit or bps, kbps, mbps)")
    return v * _RATE[unit]


def _int(word: str, what: str) -> int:
    try:
        return int(word)
    except ValueError:
        raise ValueError(f"netem: {word!r} is not a whole number of {what}") from None


def _is_value(words: list[str], i: int) -> bool:
    return i < len(words) and words[i].lower() not in KEYWORDS and words[i].lower() not in ("random", "state", "gemodel", "ecn")


def parse_netem(text: str) -> dict[str, Any]:
    words = text.split()
    out: dict[str, Any] = {}
    i = 0

    def take(n_optional: int, conv: Any) -> list[Any]:
        nonlocal i
        vals = []
        while len(vals) < n_optional and _is_value(words, i):
            vals.append(conv(words[i]))
            i += 1
        return vals

    while i < len(words):
        w = words[i].lower()
        i += 1
        if w == "limit":
            out["limit"] = _int(words[i], "packets") if i < len(words) else _missing(w)
            i += 1
        elif w in ("delay", "latency"):
            vals = take(3, lambda x: x)
            if not vals:
                _missing(w)
            out["delay"] = _time(vals[0])
            if len(vals) > 1:
                out["jitter"] = _time(vals[1])
            if len(vals) > 2:
                out["delay_correlation"] = _percent(vals[2])
            if i < len(words) and words[i].lower() == "distribution":
                out["distribution"] = words[i + 1] if i + 1 < len(words) else _missing("distribution")
                i += 2
        elif w in ("loss", "drop"):
            model = words[i].lower() if i < len(words) else _missing(w)
            if model in ("state", "gemodel"):
                i += 1
                vals = take(5 if model == "state" else 4, _percent)
                if not vals:
                    _missing(f"loss {model}")
                names = ["p13", "p31", "p32", "p23", "p14"] if model == "state" else ["p", "r", "bad_loss", "good_loss"]
                out["loss"] = {"model": model, **dict(zip(names, vals))}
            else:
                if model == "random":
                    i += 1
                vals = take(2, _percent)
                if not vals:
                    _missing("loss")
                out["loss"] = vals[0]
                if len(vals) > 1:
                    out["loss_correlation"] = vals[1]
            if i < len(words) and words[i].lower() == "ecn":
                raise ValueError("netem: ecn is not supported (frames are dropped, not marked)")
        elif w in ("corrupt", "duplicate", "reorder"):
            vals = take(2, _percent)
            if not vals:
                _missing(w)
            out[w] = vals[0]
            if len(vals) > 1:
                out[f"{w}_correlation"] = vals[1]
        elif w == "gap":
            out["gap"] = _int(words[i], "frames") if i < len(words) else _missing(w)
            i += 1
        elif w == "rate":
            vals = take(4, lambda x: x)
            if not vals:
                _missing(w)
            out["rate"] = _rate(vals[0])
            for name, v in zip(("overhead", "cell_size", "cell_overhead"), vals[1:]):
                out[name] = _int(v, "bytes")
        elif w == "slot":
            slot: dict[str, Any] = {}
            if i < len(words) and words[i].lower() == "distribution":
                if i + 3 >= len(words):
                    _missing("slot distribution NAME DELAY JITTER")
                slot.update(distribution=words[i + 1], delay=_time(words[i + 2]), jitter=_time(words[i + 3]))
                i += 4
            else:
                vals = take(2, _time)
                if not vals:
                    _missing(w)
                slot["min_delay"] = vals[0]
                if len(vals) > 1:
                    slot["max_delay"] = vals[1]
            while i < len(words) and words[i].lower() in ("packets", "bytes"):
                key = words[i].lower()
                slot[key] = _int(words[i + 1], key) if i + 1 < len(words) else _missing(key)
                i += 2
            out["slot"] = slot
        elif w == "seed":
            out["seed"] = _int(words[i], "a seed") if i < len(words) else _missing(w)
            i += 1
        else:
            raise ValueError(f"netem: unknown word {words[i - 1]!r} (see tc-netem(8))")
    return out


def _missing(what: str) -> Any:
    raise ValueError(f"netem: {what} needs a value")
