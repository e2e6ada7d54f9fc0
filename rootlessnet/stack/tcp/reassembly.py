"""rootlessnet.stack.tcp.reassembly: out-of-order segment store, bounded by the receive window.

Blocks are kept sorted and non-overlapping, keyed by *stream offset* (an
unbounded int counting payload bytes from the first byte after the peer's
SYN), so no modular arithmetic is needed here. New data is trimmed against
what is already held (first copy wins, like Linux). The caller only offers
bytes inside the receive window, so the bytes held never exceed the window;
``max_blocks`` additionally bounds the bookkeeping against 1-byte-hole
patterns.
"""

from __future__ import annotations

__all__ = ["Reassembler"]


class Reassembler:
    __slots__ = ("_blocks", "max_blocks", "fin_off", "held")

    def __init__(self, max_blocks: int = 256) -> None:
        self._blocks: list[tuple[int, int, memoryview]] = []
        self.max_blocks = max_blocks
        self.fin_off: int | None = None  # stream offset of an out-of-order FIN
        self.held = 0

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
                s, e, _ = blocks[j]
                if s > pos:
                    pieces.append((pos, s, data[pos - start : s - start]))
                    new += s - pos
                if e > pos:
                    pos = e
                j += 1
            else:
                pieces.append((pos, end, data[pos - start :]))
                new += end - pos
                pos = end
        if not pieces:
            return 0
        if n + len(pieces) > self.max_blocks:
            return -1
        merged = blocks[i:j] + pieces
        merged.sort(key=_start)
        blocks[i:j] = merged
        self.held += new
        return new

    def pop_ready(self, cur: int, out: list) -> int:
        """Append to ``out`` the views that continue the stream at ``cur``; return new ``cur``."""
        blocks = self._blocks
        while blocks and blocks[0][0] <= cur:
            s, e, mv = blocks.pop(0)
            self.held -= e - s
            if e > cur:
                out.append(mv[cur - s :])
                cur = e
        return cur

    def clear(self) -> None:
        self._blocks.clear()
        self.held = 0
        self.fin_off = None


def _start(block):
    return block[0]
