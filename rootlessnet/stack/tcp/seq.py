"""rootlessnet.stack.tcp.seq: 32-bit modular sequence-number arithmetic (RFC 9293 §3.4).

Sequence numbers are plain ``int`` in ``[0, 2**32)``. Comparisons follow the
"serial number" convention: ``a`` is before ``b`` when ``(a - b) mod 2**32``
is in the upper half. Differences never exceed 2**31 in a correct stack
(windows are at most 2**30 with RFC 7323 scaling).
"""

from __future__ import annotations

MOD = 1 << 32
MASK = MOD - 1
_HALF = 1 << 31


def add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32 (``n`` may be negative)."""
    return (a + n) & MASK


def sub(a: int, b: int) -> int:
    """Signed distance ``a - b`` in ``[-2**31, 2**31)``."""
    d = (a - b) & MASK
    return d - MOD if d >= _HALF else d


def lt(a: int, b: int) -> bool:
    """``a`` strictly before ``b``."""
    return ((a - b) & MASK) >= _HALF


def le(a: int, b: int) -> bool:
    return a == b or ((a - b) & MASK) >= _HALF


def gt(a: int, b: int) -> bool:
    return ((b - a) & MASK) >= _HALF


def ge(a: int, b: int) -> bool:
    return a == b or ((b - a) & MASK) >= _HALF


def in_window(x: int, start: int, size: int) -> bool:
    """``start <= x < start + size`` in sequence space (``size`` >= 0)."""
    return ((x - start) & MASK) < size
