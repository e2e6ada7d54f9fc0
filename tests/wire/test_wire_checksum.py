"""RFC 1071 checksums: the big-int implementation against a per-word reference."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from wire_strategies import FAST

from rootlessnet.wire.checksum import (
    checksum_ok,
    fold,
    internet_checksum,
    ones_sum,
    pseudo_header_sum_v4,
    pseudo_header_sum_v6,
)


def ref_ones_sum(data: bytes, initial: int = 0) -> int:
    data = bytes(data)
    if len(data) % 2:
        data += b"\0"
    s = initial
    for (w,) in struct.iter_unpack("!H", data):
        s += w
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ref_checksum(data: bytes, initial: int = 0) -> int:
    return ~ref_ones_sum(data, initial) & 0xFFFF


def test_rfc1071_worked_example() -> None:
    # RFC 1071 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


def test_zero_and_all_ones() -> None:
    assert ones_sum(b"") == 0 and internet_checksum(b"") == 0xFFFF
    assert ones_sum(bytes(64)) == 0
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert ones_sum(b"\xff\xff\xff\xff") == 0xFFFF  # never folds to +0
    assert ones_sum(b"\x00\x01", initial=0xFFFE) == 0xFFFF


@FAST
@given(st.binary(max_size=3000), st.integers(0, 0xFFFF))
def test_matches_reference(data: bytes, initial: int) -> None:
    assert ones_sum(data, initial) == ref_ones_sum(data, initial)
    assert internet_checksum(data, initial) == ref_checksum(data, initial)
    assert internet_checksum(memoryview(data), initial) == ref_checksum(data, initial)
    assert internet_checksum(bytearray(data), initial) == ref_checksum(data, initial)


@FAST
@given(st.binary(max_size=600), st.integers(0, 300))
def test_memoryview_slices_at_odd_offsets(data: bytes, start: int) -> None:
    view = memoryview(data)[start:]
    assert ones_sum(view) == ref_ones_sum(data[start:])


@FAST
@given(st.binary(max_size=500).map(lambda b: b if len(b) % 2 == 0 else b + b"\0"), st.binary(max_size=500))
def test_sums_chain_over_even_split(head: bytes, tail: bytes) -> None:
    assert ones_sum(tail, ones_sum(head)) == ref_ones_sum(head + tail)


@FAST
@given(st.binary(min_size=2, max_size=500))
def test_stored_checksum_verifies(data: bytes) -> None:
    buf = bytearray(data if len(data) % 2 == 0 else data + b"\0")
    buf[0:2] = b"\0\0"
    struct.pack_into("!H", buf, 0, internet_checksum(buf))
    assert checksum_ok(buf)


@FAST
@given(st.integers(0, 1 << 200))
def test_fold_matches_carry_loop(x: int) -> None:
    s = x
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert fold(x) == s


@FAST
@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4), st.integers(0, 255), st.integers(0, 0xFFFF))
def test_pseudo_header_v4(src: bytes, dst: bytes, proto: int, length: int) -> None:
    raw = src + dst + struct.pack("!BBH", 0, proto, length)
    assert pseudo_header_sum_v4(src, dst, proto, length) == ref_ones_sum(raw)


@FAST
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.integers(0, 255), st.integers(0, 0xFFFFFFFF))
def test_pseudo_header_v6(src: bytes, dst: bytes, proto: int, length: int) -> None:
    raw = src + dst + struct.pack("!I3xB", length, proto)
    assert pseudo_header_sum_v6(src, dst, proto, length) == ref_ones_sum(raw)


def test_64k_buffer_matches_reference() -> None:
    data = bytes(range(256)) * 256 + b"\x01"  # 65537 bytes, odd
    assert internet_checksum(data) == ref_checksum(data)
    assert internet_checksum(memoryview(data)[1:]) == ref_checksum(data[1:])
