"""Wire layer, Internet checksum (RFC 1071): one's complement sums over bytes.

Contract: every function takes any bytes-like object (bytes, bytearray,
memoryview) and returns a plain ``int``.  No per-word Python loop: the
buffer is read as one big integer and reduced modulo 0xFFFF, which is the
one's complement sum because 2**16 == 1 (mod 0xFFFF) (RFC 1071 section 2,
"(B) Associative" and "(C) Byte order independence" justify the regrouping).
A 64 KiB buffer costs one ``int.from_bytes`` and one small-divisor modulo.
"""

from __future__ import annotations

__all__ = [
    "fold",
    "ones_sum",
    "internet_checksum",
    "pseudo_header_sum_v4",
    "pseudo_header_sum_v6",
    "checksum_ok",
]


def fold(x: int) -> int:
    """Fold a non-negative sum to 16 bits with end-around carry.

    Same result as repeating ``x = (x & 0xFFFF) + (x >> 16)``: 0 stays 0,
    any other value lands in 1..0xFFFF (one's complement has two zeros and
    a non-zero sum never folds to +0).
    """
    if x == 0:
        return 0
    return x % 0xFFFF or 0xFFFF


def ones_sum(data, initial: int = 0) -> int:
    """16-bit one's complement sum of ``data`` (big-endian words) plus ``initial``.

    Odd length: the last byte is padded with a zero byte on the right
    (RFC 1071 section 4.1).  Returns the folded, uncomplemented sum; feed it
    as ``initial`` to continue summing another buffer that starts on an
    even offset.
    """
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    return fold(n + initial)


def internet_checksum(data, initial: int = 0) -> int:
    """The 16-bit value to store in a checksum field (complement of the sum).

    Computing it over a buffer whose checksum field already holds a correct
    value gives 0 (see :func:`checksum_ok`).
    """
    return ~ones_sum(data, initial) & 0xFFFF


def checksum_ok(data, initial: int = 0) -> bool:
    """True when ``data`` (checksum field included) sums to all ones."""
    return ones_sum(data, initial) == 0xFFFF


def pseudo_header_sum_v4(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Folded sum of the IPv4 pseudo-header (RFC 9293 3.1, RFC 768).

    src(4) dst(4) zero(1) proto(1) length(2); ``length`` is the
    transport header plus payload.
    """
    return fold(int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + length)


def pseudo_header_sum_v6(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Folded sum of the IPv6 pseudo-header (RFC 8200 8.1).

    src(16) dst(16) upper-layer length(4) zero(3) next header(1).
    """
    return fold(
        int.from_bytes(src, "big")
        + int.from_bytes(dst, "big")
        + (length >> 16)
        + (length & 0xFFFF)
        + proto
    )
