"""rootlessnet.stack.tcp.buffers: bounded send and receive byte buffers, O(1) amortised.

``SendBuffer`` keeps bytes from SND.UNA on (unacknowledged + unsent) as a
list of immutable ``bytes`` chunks, so payloads handed out can be zero-copy
memoryviews that stay valid however long the engine holds the segment.

``RecvBuffer`` keeps in-order received payloads as a deque of memoryviews of
the segments' (immutable) payloads: no copy on receipt; ``peek`` returns a
zero-copy view of the head chunk when it is large enough.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

__all__ = ["SendBuffer", "RecvBuffer"]


class SendBuffer:
    """Chunks of immutable ``bytes`` addressed by absolute stream offset.

    ``append`` keeps a ``bytes`` object as is (the engine's ``sock.recv``
    result: no copy) and coalesces small writes; ``get`` returns a zero-copy
    memoryview when the range lies in one chunk (the bulk case: 64 KiB reads,
    64 KiB super-segments), else one joined copy. ``consume`` is O(1)
    amortised (head index advanced, lists compacted lazily); chunk lookup is a
    C-level bisect.
    """

    __slots__ = ("cap", "_chunks", "_starts", "_head", "_start", "_end")

    _SMALL = 2048
    _COALESCE = 16384

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._chunks: list[bytes] = []
        self._starts: list[int] = []
        self._head = 0  # index of the first live chunk
        self._start = 0  # absolute offset of the first unacknowledged byte
        self._end = 0  # absolute offset one past the last buffered byte

    def __len__(self) -> int:
        return self._end - self._start

    def space(self) -> int:
        return self.cap - (self._end - self._start)

    def append(self, data) -> int:
        """Take up to ``space()`` bytes of ``data``; return how many."""
        n = len(data)
        room = self.cap - (self._end - self._start)
        if n > room:
            n = room
            if n <= 0:
                return 0
            data = bytes(memoryview(data)[:n])
        elif n == 0:
            return 0
        elif type(data) is not bytes:
            data = bytes(data)
        chunks = self._chunks
        if n < self._SMALL and len(chunks) > self._head:
            last = chunks[-1]
            if len(last) < self._COALESCE and self._starts[-1] >= self._start:
                chunks[-1] = last + data
                self._end += n
                return n
        chunks.append(data)
        self._starts.append(self._end)
        self._end += n
        return n

    def get(self, offset: int, n: int) -> memoryview | bytes:
        """``n`` bytes starting ``offset`` bytes after the head (view or copy)."""
        pos = self._start + offset
        starts = self._starts
        i = bisect_right(starts, pos, self._head) - 1
        chunk = self._chunks[i]
        rel = pos - starts[i]
        if rel + n <= len(chunk):
            return memoryview(chunk)[rel : rel + n]
        parts = [memoryview(chunk)[rel:]]
        need = n - (len(chunk) - rel)
        chunks = self._chunks
        while need > 0:
            i += 1
            c = chunks[i]
            if len(c) >= need:
                parts.append(memoryview(c)[:need])
                break
            parts.append(c)
            need -= len(c)
        return b"".join(parts)

    def consume(self, n: int) -> None:
        """Drop ``n`` acknowledged bytes from the head."""
        start = self._start + n
        self._start = start
        chunks = self._chunks
        starts = self._starts
        h = self._head
        last = len(chunks)
        while h < last and starts[h] + len(chunks[h]) <= start:
            chunks[h] = b""  # release the memory now
            h += 1
        if h == last:
            chunks.clear()
            starts.clear()
            h = 0
        elif h > 32 and 2 * h > last:
            del chunks[:h]
            del starts[:h]
            h = 0
        self._head = h

    def clear(self) -> None:
        self._chunks = []
        self._starts = []
        self._head = 0
        self._start = self._end


def _as_view(data) -> memoryview:
    """A memoryview that stays valid: copy unless backed by immutable bytes."""
    if type(data) is memoryview:
        if type(data.obj) is bytes:
            return data
        return memoryview(data.tobytes())
    if type(data) is bytes:
        return memoryview(data)
    return memoryview(bytes(data))


class RecvBuffer:
    __slots__ = ("cap", "_chunks", "_len")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._chunks: deque[memoryview] = deque()
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, view: memoryview) -> None:
        if len(view):
            self._chunks.append(view)
            self._len += len(view)

    def peek(self, max_bytes: int) -> memoryview | bytes:
        """Up to ``max_bytes`` from the head without consuming.

        Zero-copy when the head chunk alone is big enough (the bulk case);
        otherwise joins chunks into one ``bytes`` of at most ``max_bytes``.
        """
        chunks = self._chunks
        if not chunks or max_bytes <= 0:
            return b""
        head = chunks[0]
        if len(head) >= max_bytes:
            return head[:max_bytes]
        if len(chunks) == 1:
            return head
        parts = []
        need = max_bytes
        for c in chunks:
            if len(c) >= need:
                parts.append(c[:need])
                break
            parts.append(c)
            need -= len(c)
        return b"".join(parts)

    def consume(self, n: int) -> int:
        """Drop up to ``n`` bytes from the head; return how many were dropped."""
        n = min(n, self._len)
        left = n
        chunks = self._chunks
        while left:
            head = chunks[0]
            if len(head) <= left:
                chunks.popleft()
                left -= len(head)
            else:
                chunks[0] = head[left:]
                left = 0
        self._len -= n
        return n

    def clear(self) -> None:
        self._chunks.clear()
        self._len = 0
