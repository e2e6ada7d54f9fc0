"""Hypothesis strategies and helpers shared by the tests/wire suite."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from rootlessnet.wire import WireError

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
mac = st.binary(min_size=6, max_size=6)
ip4 = st.binary(min_size=4, max_size=4)
ip6 = st.binary(min_size=16, max_size=16)
payload = st.binary(max_size=200)


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """A valid packet damaged the way a wire damages it: truncated, bytes
    flipped, bytes inserted or deleted."""
    buf = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "set", "insert", "delete"]))
        if not buf:
            break
        i = draw(st.integers(0, len(buf) - 1))
        if op == "truncate":
            del buf[i:]
        elif op == "flip":
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xC0, 0xFF, draw(u8)]))
        elif op == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del buf[i:i + draw(st.integers(1, 8))]
    return bytes(buf)


def only_wire_error(parse, buf) -> None:
    """Call ``parse(buf)``: returning or raising WireError are both fine."""
    try:
        parse(buf)
    except WireError:
        pass
