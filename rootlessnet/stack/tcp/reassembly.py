"""rootlessnet.stack.tcp.reassembly: out-of-order segment store, bounded in bytes, blocks and memory.

Blocks are kept sorted and non-overlapping, keyed by *stream offset* (an
unbounded int counting payload bytes from the first byte after the peer's
SYN), so no modular arithmetic is needed here. New data is trimmed against
what is already held (first copy wins, like Linux). The caller only offers
bytes inside the receive window, so the bytes held never exceed the window.

Memory is counted as held: a piece that is small next to the frame it came
in is copied out (a 1-byte segment in a padded 64 KiB frame must not pin the
frame), and adjacent small blocks are merged, so a run of tiny segments is
one block. ``max_blocks`` bounds the bookkeeping against 1-byte-hole
patterns; charges go to the engine's ``MemPool`` when there is one.
"""

from __future__ import annotations

from typing import Sized, cast

from .buffers import MemPool, _held

__all__ = ["Reassembler"]

COPY_BELOW = 2048  # as RecvBuffer: smaller pieces are copied out of their frame
MERGE_MAX = 16384  # adjacent blocks are merged (copied) while the result stays this small


def _own(piece: memoryview) -> bytes | memoryview:
    """A piece to keep: itself when it is most of its frame, else a copy."""
    if len(piece) < COPY_BELOW or len(cast(Sized, piece.obj)) > 2 * len(piece):
        return bytes(piece)
    return piece


class Reassembler:
    __slots__ = ("_blocks", "max_blocks", "fin_off", "held", "nbytes", "pool", "merged")

    def __init__(self, max_blocks: int = 64, pool: MemPool | None = None) -> None:
        self._blocks: list[list] = []  # [start, end, data] with data bytes or a view of bytes
        self.max_blocks = max_blocks
        self.fin_off: int | None = None  # stream offset of an out-of-order FIN
        self.held = 0  # memory kept alive (charged to the pool)
        self.nbytes = 0  # payload bytes queued
        self.pool = pool
        self.merged = 0

    def __bool__(self) -> bool:
        return bool(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)

    def add(self, start: int, data: memoryview) -> int:
        """Store ``data`` at ``start``; return the count of new bytes (-1: no room)."""
        end = start + len(data)
        blocks = self._blocks
        n = len(blocks)
        i = 0
        while i < n and blocks[i][1] <= start:
            i += 1
        pieces = []
        pos = start
        j = i
        new = 0
        while pos < end:
            if j < n and blocks[j][0] < end:
                s, e = blocks[j][0], blocks[j][1]
                if s > pos:
                    pieces.append([pos, s, data[pos - start : s - start]])
                    new += s - pos
                if e > pos:
                    pos = e
                j += 1
            else:
                pieces.append([pos, end, data[pos - start :]])
                new += end - pos
                pos = end
        if not pieces:
            return 0
        if n + len(pieces) > self.max_blocks:
            return -1
        charge = 0
        for p in pieces:
            p[2] = _own(p[2]) if type(p[2]) is memoryview else bytes(p[2])
            charge += _held(p[2])
        merged = blocks[i:j] + pieces
        merged.sort(key=_start)
        blocks[i:j] = merged
        charge += self._merge(max(i - 1, 0), i + len(merged) + 1)
        self.held += charge
        self.nbytes += new
        if self.pool is not None:
            self.pool.charge(charge)
        return new

    def _merge(self, lo: int, hi: int) -> int:
        """Join adjacent small blocks in blocks[lo:hi]; returns the change in held memory."""
        blocks = self._blocks
        delta = 0
        k = lo
        while k + 1 < min(hi, len(blocks)):
            a, b = blocks[k], blocks[k + 1]
            if a[1] == b[0] and (b[1] - a[0]) <= MERGE_MAX:
                joined = bytes(a[2]) + bytes(b[2])
                delta += _held(joined) - _held(a[2]) - _held(b[2])
                blocks[k] = [a[0], b[1], joined]
                del blocks[k + 1]
                hi -= 1
                self.merged += 1
            else:
                k += 1
        return delta

    def pop_ready(self, cur: int, out: list) -> int:
        """Append to ``out`` the views that continue the stream at ``cur``; return new ``cur``."""
        blocks = self._blocks
        freed = 0
        while blocks and blocks[0][0] <= cur:
            s, e, data = blocks.pop(0)
            freed += _held(data)
            self.nbytes -= e - s
            if e > cur:
                mv = data if type(data) is memoryview else memoryview(data)
                out.append(mv[cur - s :])
                cur = e
        if freed:
            self.held -= freed
            if self.pool is not None:
                self.pool.release(freed)
        return cur

    def clear(self) -> None:
        self._blocks.clear()
        if self.held and self.pool is not None:
            self.pool.release(self.held)
        self.held = 0
        self.nbytes = 0
        self.fin_off = None


def _start(block):
    return block[0]
