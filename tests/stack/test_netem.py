"""stack.netem: tc netem's words become Impairment's fields; a word tc would refuse is an error."""

from __future__ import annotations

import pytest

from rootlessnet.stack.impair import Impairment
from rootlessnet.stack.netem import parse_netem


@pytest.mark.parametrize("text, want", [
    ("delay 100ms", {"delay": 0.1}),
    ("delay 100ms 10ms 25% distribution pareto", {"delay": 0.1, "jitter": 0.01, "delay_correlation": 0.25,
                                                  "distribution": "pareto"}),
    ("delay 1s 500us", {"delay": 1.0, "jitter": 0.0005}),
    ("delay 2000", {"delay": 0.002}),  # tc's bare number: microseconds
    ("loss 0.3%", {"loss": 0.003}),
    ("loss random 5% 25%", {"loss": 0.05, "loss_correlation": 0.25}),
    ("drop 0.1", {"loss": 0.1}),
    ("loss state 1% 30% 5% 60% 0.5%", {"loss": {"model": "state", "p13": 0.01, "p31": 0.3, "p32": 0.05, "p23": 0.6,
                                                "p14": 0.005}}),
    ("loss gemodel 1% 10%", {"loss": {"model": "gemodel", "p": 0.01, "r": 0.1}}),
    ("duplicate 1% corrupt 0.1% 50%", {"duplicate": 0.01, "corrupt": 0.001, "corrupt_correlation": 0.5}),
    ("delay 10ms reorder 25% 50% gap 5", {"delay": 0.01, "reorder": 0.25, "reorder_correlation": 0.5, "gap": 5}),
    ("rate 10mbit 20 48 5", {"rate": 10_000_000, "overhead": 20, "cell_size": 48, "cell_overhead": 5}),
    ("rate 1kbps", {"rate": 8000}),
    ("rate 1mibit -20", {"rate": 1024 ** 2, "overhead": -20}),
    ("slot 1ms 5ms packets 4 bytes 3000", {"slot": {"min_delay": 0.001, "max_delay": 0.005, "packets": 4, "bytes": 3000}}),
    ("slot distribution normal 10ms 2ms packets 2", {"slot": {"distribution": "normal", "delay": 0.01, "jitter": 0.002,
                                                               "packets": 2}}),
    ("limit 50 seed 7", {"limit": 50, "seed": 7}),
])
def test_tc_words(text, want):
    got = parse_netem(text)
    flat = all(isinstance(v, (int, float, str)) for v in want.values())
    assert (got == pytest.approx(want)) if flat else (got == want)
    Impairment(**got)  # and they make a valid impairment


@pytest.mark.parametrize("text, word", [
    ("delay", "delay needs a value"), ("delay fast", "'fast' is not a time"), ("delay 10parsecs", "unknown time unit"),
    ("loss 5 %", "'%' is not a percentage"), ("rate 10furlongs", "unknown rate unit"), ("limit many", "whole number"),
    ("loss 1% ecn", "ecn is not supported"), ("jitter 10ms", "unknown word 'jitter'"),
    ("slot distribution normal 10ms", "slot distribution NAME DELAY JITTER"),
])
def test_bad_words(text, word):
    with pytest.raises(ValueError, match=word):
        parse_netem(text)
