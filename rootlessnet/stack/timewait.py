"""stack.timewait: TIME-WAIT kept apart from live flows, bounded like Linux's tcp_max_tw_buckets.

When the engine closed first and the guest's FIN has been acknowledged, the
connection only has to answer stray segments for 2MSL. A full
``TcpConnection`` (buffers, timers, a host socket slot) is far more than that
needs, and counting it against the flow table let ~1,100 host-first closes per
second fill the table. A ``TimeWaitTable`` keeps what Linux's
``inet_timewait_sock`` keeps: the sequence numbers and the window, with one
shared expiry queue (every entry lives the same 2MSL, so it is a FIFO; a
restarted timer re-queues lazily). When the table is full a new TIME-WAIT is
simply not kept (Linux: "time wait bucket table overflow").

``process`` applies Linux's tcp_timewait_state_process rules to a segment and
returns what the engine must do. Pure: time is an argument.
"""

from __future__ import annotations

from collections import deque

from rootlessnet.stack.tcp.segment import Control, Segment
from rootlessnet.stack.tcp.seq import MASK, sub

__all__ = ["TimeWait", "TimeWaitTable", "TW_ACK", "TW_KILL", "TW_SYN", "TW_NONE"]

TW_NONE, TW_ACK, TW_KILL, TW_SYN = 0, 1, 2, 3
OOW_RATE_LIMIT = 0.5  # Linux's net.ipv4.tcp_invalid_ratelimit


class TimeWait:
    __slots__ = ("key", "rcv_nxt", "snd_nxt", "window", "expires", "last_oow")

    def __init__(self, key: tuple, rcv_nxt: int, snd_nxt: int, window: int, expires: float):
        self.key = key
        self.rcv_nxt = rcv_nxt
        self.snd_nxt = snd_nxt
        self.window = window  # the raw window field of our last segment
        self.expires = expires
        self.last_oow = -1e9  # when the last rate-limited ACK was sent

    def ack(self) -> Segment:
        """The ACK TIME-WAIT sends (<SEQ=SND.NXT><ACK=RCV.NXT>)."""
        return Segment(self.snd_nxt, self.rcv_nxt, Control.NONE, self.window)

    def new_iss(self) -> int:
        """ISN for a new incarnation, as Linux does: beyond anything the old one could have used."""
        return (self.snd_nxt + 65535 + 2) & MASK


class TimeWaitTable:
    def __init__(self, max_entries: int, duration: float):
        self.max_entries = max_entries
        self.duration = duration
        self.entries: dict[tuple, TimeWait] = {}
        self._queue: deque[tuple[float, TimeWait]] = deque()
        self.overflows = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: tuple) -> TimeWait | None:
        return self.entries.get(key)

    def add(self, key: tuple, rcv_nxt: int, snd_nxt: int, window: int, now: float) -> bool:
        """Keep a TIME-WAIT; False when the table is full (the connection is just forgotten)."""
        if key in self.entries:
            self.remove(key)
        if len(self.entries) >= self.max_entries:
            self.overflows += 1
            return False
        tw = TimeWait(key, rcv_nxt, snd_nxt, window, now + self.duration)
        self.entries[key] = tw
        self._queue.append((tw.expires, tw))
        return True

    def remove(self, key: tuple) -> None:
        self.entries.pop(key, None)  # its queue item is skipped when it comes up

    def restart(self, tw: TimeWait, now: float) -> None:
        tw.expires = now + self.duration  # lazily re-queued by expire()

    def expire(self, now: float, budget: int = 4096) -> int:
        """Drop entries whose 2MSL is over (at most `budget` per call); how many were dropped."""
        q = self._queue
        entries = self.entries
        n = 0
        while q and q[0][0] <= now and budget > 0:
            budget -= 1
            _at, tw = q.popleft()
            if entries.get(tw.key) is not tw:
                continue  # removed or replaced
            if tw.expires > now:
                q.append((tw.expires, tw))  # restarted
                continue
            del entries[tw.key]
            n += 1
        return n

    def next_deadline(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def process(self, tw: TimeWait, seg: Segment, now: float) -> int:
        """What a segment for this TIME-WAIT calls for (Linux tcp_timewait_state_process).

        - At RCV.NXT, an RST ends TIME-WAIT (tcp_rfc1337=0) and a bare ACK restarts it.
        - A SYN without ACK beyond RCV.NXT starts a new incarnation (RFC 6191 / RFC 1122 4.2.2.13).
        - Any other segment but an RST is answered with an ACK (a retransmitted FIN,
          a SYN at or below RCV.NXT: the challenge that makes the peer RST).
        - Other RSTs are ignored.
        """
        ctl = seg.control
        seglen = len(seg.payload) + (ctl is Control.SYN or ctl is Control.FIN)
        if seg.seq == tw.rcv_nxt and (seglen == 0 or ctl is Control.RST):
            if ctl is Control.RST:
                self.remove(tw.key)
                return TW_KILL
            self.restart(tw, now)
            return TW_NONE
        if ctl is Control.SYN and seg.ack is None and sub(seg.seq, tw.rcv_nxt) > 0:
            self.remove(tw.key)
            return TW_SYN
        if ctl is Control.RST:
            return TW_NONE
        if seg.ack is not None:
            self.restart(tw, now)
        if (seglen == 0 or ctl is Control.SYN) and now - tw.last_oow < OOW_RATE_LIMIT:
            return TW_NONE  # as Linux's tcp_oow_rate_limited: no ACK ping-pong with a flooding peer
        tw.last_oow = now
        return TW_ACK
