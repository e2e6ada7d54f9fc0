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
from typing import Final, Sized, cast

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

    __slots__ = ("cap", "_chunks", "_starts", "_head", "_start", "_end", "pool")

    _SMALL: Final = 2048
    _COALESCE: Final = 16384

    def __init__(self, cap: int, pool: MemPool | None = None) -> None:
        self.cap = cap
        self.pool = pool
        self._chunks: list[bytes] = []
        self._starts: list[int] = []
        self._head = 0  # index of the first live chunk
        self._start = 0  # absolute offset of the first unacknowledged byte
        self._end = 0  # absolute offset one past the last buffered byte

    def __len__(self) -> int:
        return self._end - self._start

    def space(self) -> int:
        held = self._end - self._start
        pool = self.pool
        if pool is not None and pool.used >= pool.pressure:
            # memory is short: each connection keeps a floor, so acknowledgements still wake it
            cap = min(self.cap, MemPool.SEND_FLOOR)
            return cap - held if held < cap else 0
        return self.cap - held

    def append(self, data) -> int:
        """Take up to ``space()`` bytes of ``data``; return how many."""
        n = len(data)
        room = self.space()
        if n > room:
            n = room
            if n <= 0:
                return 0
            data = bytes(memoryview(data)[:n])
        elif n == 0:
            return 0
        elif type(data) is not bytes:
            data = bytes(data)
        if self.pool is not None:
            self.pool.charge(n)
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
        parts: list[bytes | memoryview] = [memoryview(chunk)[rel:]]
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
        if self.pool is not None:
            self.pool.release(n)
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
        if self.pool is not None:
            self.pool.release(self._end - self._start)
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


class MemPool:
    """Bytes held by the TCP buffers of one engine, with thresholds like Linux's tcp_mem.

    Buffers charge what they really hold: a view of a frame pins the whole
    frame, so it is charged the frame's size (small payloads are copied out
    instead, see ``RecvBuffer``). Above ``pressure`` the receive windows
    offered stop growing, out-of-order segments are dropped and each send
    buffer is held to ``SEND_FLOOR`` bytes; above ``limit`` new in-order data
    is dropped too (the peer retransmits it), unless its connection holds
    nothing yet, so every connection can still make progress.
    """

    __slots__ = ("limit", "pressure", "used", "peak")

    SEND_FLOOR: Final = 65536

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("MemPool: limit must be >= 1 byte")
        self.limit = limit
        self.pressure = limit - limit // 4
        self.used = 0
        self.peak = 0

    def charge(self, n: int) -> None:
        used = self.used + n
        self.used = used
        if used > self.peak:
            self.peak = used

    def release(self, n: int) -> None:
        self.used -= n

    @property
    def under_pressure(self) -> bool:
        return self.used >= self.pressure

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit


def _held(chunk: bytes | memoryview) -> int:
    """What a chunk keeps alive: a view pins its whole underlying object."""
    if type(chunk) is memoryview:
        return len(cast(Sized, chunk.obj))
    return len(chunk) + _BYTES_OVERHEAD


_BYTES_OVERHEAD = 33  # sys.getsizeof(b"") on CPython 3.11


class RecvBuffer:
    """In-order received payloads, charged to a ``MemPool`` as held.

    A payload is kept as a zero-copy view of its frame when it is at least
    half of that frame and ``COPY_BELOW`` bytes or more (the bulk case); a
    smaller one is copied into a tail ``bytearray`` so that a 1-byte segment
    in a 64 KiB padded frame holds 1 byte, not the frame, and a run of tiny
    segments costs about their payload, not an object each. The tail becomes
    an immutable chunk when it is full or read, so views handed out by
    ``peek`` never see it change.
    """

    __slots__ = ("cap", "_chunks", "_len", "_tail", "held", "pool")

    COPY_BELOW: Final = 2048
    TAIL_MAX: Final = 65536

    def __init__(self, cap: int, pool: MemPool | None = None) -> None:
        self.cap = cap
        self._chunks: deque = deque()
        self._len = 0
        self._tail: bytearray | None = None
        self.held = 0
        self.pool = pool

    def __len__(self) -> int:
        return self._len

    def append(self, view: bytes | memoryview) -> None:
        n = len(view)
        if not n:
            return
        if n < self.COPY_BELOW or (type(view) is memoryview and len(cast(Sized, view.obj)) > 2 * n):
            tail = self._tail
            if tail is None:
                tail = self._tail = bytearray()
                charge = n + _BYTES_OVERHEAD
            else:
                charge = n
            tail += view
            if len(tail) >= self.TAIL_MAX:
                self._freeze()
        else:
            if self._tail is not None:
                self._freeze()
            self._chunks.append(view)
            charge = _held(view)
        self._len += n
        self.held += charge
        if self.pool is not None:
            self.pool.charge(charge)

    def _freeze(self) -> None:
        """The tail becomes an immutable chunk (same charge: len + overhead)."""
        tail = self._tail
        self._tail = None
        if tail:
            self._chunks.append(bytes(tail))

    def peek(self, max_bytes: int) -> memoryview | bytes:
        """Up to ``max_bytes`` from the head without consuming.

        Zero-copy when the head chunk alone is big enough (the bulk case);
        otherwise joins chunks into one ``bytes`` of at most ``max_bytes``.
        """
        if self._tail is not None:
            self._freeze()
        chunks = self._chunks
        if not chunks or max_bytes <= 0:
            return b""
        head = chunks[0]
        if len(head) >= max_bytes:
            return head[:max_bytes]
        if len(chunks) == 1:
            return head
        parts: list[bytes | memoryview] = []
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
        if n and self._tail is not None:
            self._freeze()
        left = n
        chunks = self._chunks
        freed = 0
        while left:
            head = chunks[0]
            if len(head) <= left:
                chunks.popleft()
                left -= len(head)
                freed += _held(head)
            else:
                # a slice of bytes is a view of the same object: still charged as that object
                if type(head) is bytes:
                    chunks[0] = memoryview(head)[left:]
                    freed += _BYTES_OVERHEAD  # from now on charged len(obj), as every view
                else:
                    chunks[0] = head[left:]
                left = 0
        self._len -= n
        if freed:
            self.held -= freed
            if self.pool is not None:
                self.pool.release(freed)
        return n

    def clear(self) -> None:
        self._chunks.clear()
        self._tail = None
        self._len = 0
        if self.held:
            if self.pool is not None:
                self.pool.release(self.held)
            self.held = 0
