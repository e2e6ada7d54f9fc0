"""rootlessnet.stack.tcp.congestion: NewReno congestion control in bytes (RFC 5681, RFC 6582).

cwnd and ssthresh are byte counts so that super-segments (GSO, up to 64 KiB
per ``Segment``) are accounted exactly. Slow start grows cwnd by the bytes
newly acknowledged, which equals Linux's per-packet counting for a
super-segment's worth of MSS-sized packets (RFC 3465 would cap L at 2*SMSS
per ACK; with one ACK per 64 KiB super-segment that cap would slow start to a
crawl). Congestion avoidance uses RFC 5681 §3.1 byte counting: +1 SMSS per
cwnd of acknowledged bytes. Initial window: 10 SMSS (RFC 6928).
"""

from __future__ import annotations

__all__ = ["NewReno"]

_CWND_CAP = 1 << 30


class NewReno:
    __slots__ = ("mss", "cwnd", "ssthresh", "in_recovery", "recover", "dupacks", "_acc")

    def __init__(self, mss: int, iw_segments: int, iss: int) -> None:
        self.mss = mss
        self.cwnd = iw_segments * mss
        self.ssthresh = _CWND_CAP  # RFC 5681 §3.1: arbitrarily high
        self.in_recovery = False
        self.recover = iss  # RFC 6582 §3.2 step 1: initialised to ISS
        self.dupacks = 0
        self._acc = 0

    def set_mss(self, mss: int, iw_segments: int) -> None:
        self.mss = mss
        self.cwnd = iw_segments * mss

    def on_ack(self, acked: int) -> None:
        """New data acknowledged outside recovery (RFC 5681 §3.1)."""
        self.dupacks = 0
        if self.cwnd < self.ssthresh:
            self.cwnd = min(self.cwnd + acked, _CWND_CAP)
        else:
            self._acc += acked
            if self._acc >= self.cwnd:
                self._acc -= self.cwnd
                self.cwnd = min(self.cwnd + self.mss, _CWND_CAP)

    def enter_recovery(self, flight: int, snd_max: int) -> None:
        """Third duplicate ACK (RFC 6582 §3.2 step 2)."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss
        self.recover = snd_max
        self.in_recovery = True

    def on_dupack_in_recovery(self) -> None:
        """RFC 6582 §3.2 step 3: inflate by one SMSS."""
        self.cwnd += self.mss

    def on_partial_ack(self, acked: int) -> None:
        """RFC 6582 §3.2 step 5, partial ACK: deflate by acked, add back SMSS."""
        self.cwnd = max(self.cwnd - acked, 0)
        if acked >= self.mss:
            self.cwnd += self.mss

    def on_full_ack(self, flight: int) -> None:
        """RFC 6582 §3.2 step 5, full ACK: leave recovery."""
        self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)
        self.in_recovery = False
        self.dupacks = 0
        self._acc = 0

    def on_rto(self, flight: int, snd_max: int) -> None:
        """RFC 5681 §3.1 eq. (4): ssthresh = max(FlightSize/2, 2*SMSS); cwnd = LW = 1 SMSS."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self.in_recovery = False
        self.recover = snd_max  # RFC 6582 §3.2 step 4 note: avoid false fast retransmit
        self.dupacks = 0
        self._acc = 0
