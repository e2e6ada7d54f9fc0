"""rootlessnet.stack.tcp.send: the output half of ``TcpConnection``: segments out and timers.

Builds SYN / SYN-ACK, data (up to ``max_tx_payload`` per segment, within
min(peer window, cwnd)), FIN, pure ACKs, zero-window and keepalive probes;
runs the retransmission (RFC 6298, go-back-N from SND.UNA), persist, delayed
ACK, keepalive, FIN-WAIT-2 and TIME-WAIT timers. A mixin: the state lives in
``TcpConnection``'s ``__slots__``.
"""

from __future__ import annotations

from .notice import Notice
from .segment import Control, Segment
from .seq import MASK, sub as _sub
from .state import TcpBase
from .states import Event, State

_NONE = Control.NONE
_PSH = Control.PSH
_SYN = Control.SYN
_FIN = Control.FIN
_RST = Control.RST
_TIMED_OUT = int(Notice.TIMED_OUT)

_S = State
_DATA_STATES = (
    _S.ESTABLISHED,
    _S.CLOSE_WAIT,
    _S.FIN_WAIT_1,
    _S.CLOSING,
    _S.LAST_ACK,
)


class TcpSender(TcpBase):
    """The output half and the timers."""

    __slots__ = ()

    # ------------------------------------------------------------ emitting
    def _emit(self, seg: Segment) -> None:
        self._out.append(seg)
        st = self.stats
        st.segs_out += 1
        if seg.payload:
            st.bytes_out += len(seg.payload)
        if seg.ack is not None:
            # Every segment with ACK acknowledges RCV.NXT: nothing pending any more.
            if self._segs_unacked:
                if self._quick:
                    self._quick -= 1
                self._segs_unacked = 0
                self._bytes_unacked = 0
            self._ack_now = False
            self._delack_at = None

    def _window_field(self) -> int:
        """Raw window for an outgoing non-SYN segment, with receiver SWS avoidance.

        RFC 9293 §3.8.6.2.2: the right edge only moves when it can move by at
        least min(buffer/2, MSS). The edge never moves left (§3.8.6 "shrinking
        the window ... strongly discouraged").
        """
        rb = self._rb
        nxt = self.rcv_nxt
        adv = self._adv_edge
        edge = (nxt + rb.cap - len(rb)) & MASK
        if _sub(edge, adv) >= self._sws_thresh:
            mem = self.cfg.mem
            if mem is None or mem.used < mem.pressure:
                adv = edge  # memory is short: the window is not opened further (never shrunk either)
        win = _sub(adv, nxt)
        if win <= 0:
            self._adv_edge = nxt
            return 0
        shift = self.rcv_wscale
        # Round up, as Linux does: rounding down would move the right edge left of what was
        # already advertised (RFC 7323 §2.4: never shrink). The receive path honours the edge.
        field = (win + (1 << shift) - 1) >> shift
        if field > 0xFFFF:
            field = 0xFFFF
        self._adv_edge = (nxt + (field << shift)) & MASK
        return field

    def _acceptable_seq(self) -> int:
        """SEQ for segments without data (ACK, RST), as Linux's tcp_acceptable_seq.

        RFC 9293 says SND.NXT; after a go-back-N rewind our ``snd_nxt`` is
        below what the peer already holds, and a pure ACK carrying it would be
        unacceptable there (and answered by an ACK, and so on: an ACK war).
        The highest sequence sent, bounded by the peer's window, is always
        acceptable.
        """
        mx = self.snd_max
        end = (self.snd_una + self.snd_wnd) & MASK
        return mx if _sub(mx, end) <= 0 else end

    def _send_ack_now(self) -> None:
        """Emit a pure ACK <ACK=RCV.NXT> right away (not coalesced)."""
        self._emit(Segment(self._acceptable_seq(), self.rcv_nxt, _NONE, self._window_field()))

    def _challenge_ack(self) -> None:
        if self._oow_limited():
            return
        self.stats.challenge_acks += 1
        self._send_ack_now()

    def _oow_limited(self) -> bool:
        """ACK throttling (RFC 5961 §7), as Linux's tcp_invalid_ratelimit: at most one ACK to
        invalid segments (challenges, out-of-window segments without data) per interval, so
        two stacks that disagree cannot ping-pong ACKs. True when this one must be skipped."""
        ivl = self.cfg.oow_ack_interval
        now = self._now
        last = self._oow_at
        if ivl and last is not None and 0 <= now - last < ivl:
            self.stats.oow_acks_limited += 1
            return True
        self._oow_at = now
        return False

    def _emit_rst(self, seq: int, ack: int | None) -> None:
        self.stats.rst_out += 1
        self._emit(Segment(seq & MASK, ack, _RST, 0))

    def _emit_syn(self) -> None:
        """SYN (active) or SYN-ACK (passive); window unscaled (RFC 7323 §2.2)."""
        rb = self._rb
        win = min(rb.cap - len(rb), 0xFFFF)
        passive = self.state is _S.SYN_RECEIVED
        ack = self.rcv_nxt if passive else None
        if passive:
            self._adv_edge = (self.rcv_nxt + win) & MASK
        self._emit(
            Segment(
                self.iss,
                ack,
                _SYN,
                win,
                mss=self.cfg.local_mss,
                wscale=self.rcv_wscale if self._ws_ok else None,
            )
        )

    def _emit_probe(self) -> None:
        """Zero-window / keepalive probe as Linux does: <SEQ=SND.UNA-1>, no data.

        The peer finds it unacceptable and answers with an ACK carrying its
        current window (RFC 9293 §3.8.6.1, §3.8.4).
        """
        self._emit(Segment((self.snd_una - 1) & MASK, self.rcv_nxt, _NONE, self._window_field()))

    # ------------------------------------------------------------ output
    def _output(self, now: float) -> None:
        st = self.state
        if not self._syn_acked:
            if (st is _S.SYN_SENT or st is _S.SYN_RECEIVED) and self.snd_nxt == self.iss:
                if self.snd_max != self.iss:
                    self.stats.retransmits += 1
                elif self._rtt_seq is None:
                    self._rtt_seq = (self.iss + 1) & MASK
                    self._rtt_t = now
                self._emit_syn()
                self.snd_nxt = self.snd_max = (self.iss + 1) & MASK
                if self._rto_at is None:
                    self._rto_at = now + self._rtt.rto
            return
        if st in _DATA_STATES:
            self._output_data(now)
        if self._ack_now:
            if self._wupd:
                self.stats.window_updates += 1
            self._send_ack_now()
        self._wupd = False

    def _output_data(self, now: float) -> None:
        sb = self._sb
        cc = self._cc
        mss = self.send_mss
        maxtx = self.max_tx_payload
        if maxtx > mss:
            maxtx -= maxtx % mss  # super-frames end on a segment boundary: no runt mid-stream
        fin_seq = self._fin_seq
        while True:
            nxt = self.snd_nxt
            avail = len(sb) - _sub(nxt, self._sb_seq)
            fin_pending = fin_seq is not None and _sub(nxt, fin_seq) <= 0
            flight = _sub(nxt, self.snd_una)
            wnd = self.snd_wnd
            cw = cc.cwnd
            usable = (wnd if wnd < cw else cw) - flight
            n = avail if avail < maxtx else maxtx
            if n > usable:
                n = usable if usable > 0 else 0
                # Sender SWS avoidance (RFC 9293 §3.8.6.2.1): no runt while data is
                # in flight; the returning ACKs will open the window. A super-frame the
                # window cuts ends on a segment boundary: its tail would be a runt while
                # more data waits (Linux too, unless a TSO frame it already built reaches the edge).
                if n < mss and flight > 0:
                    n = 0
                elif n > mss:
                    n -= n % mss
            elif n == avail and self._more and flight > 0 and not fin_pending:
                # The rest of the application's data is on its way: no runt tail now (the
                # tail goes with it, or when nothing is in flight any more).
                n = n - n % mss if n > mss else 0
            if n <= 0:
                if not (fin_pending and avail <= 0):
                    break
                n = 0
            fin = fin_pending and n == avail
            payload = sb.get(_sub(nxt, self._sb_seq), n) if n else b""
            if fin:
                ctl = _FIN
            elif n == avail:
                ctl = _PSH
            else:
                ctl = _NONE
            self._emit(Segment(nxt, self.rcv_nxt, ctl, self._window_field(), payload))
            if n and self._lrcv_t is not None and now - self._lrcv_t < self.cfg.delayed_ack:
                self._pingpong = True  # we answer within the ACK delay: interactive (Linux's pingpong)
            end = (nxt + n + fin) & MASK
            if _sub(nxt, self.snd_max) < 0:
                self.stats.retransmits += 1
            elif self._rtt_seq is None:
                self._rtt_seq = end
                self._rtt_t = now
            if _sub(end, self.snd_max) > 0:
                self.snd_max = end
            self.snd_nxt = end
            if self._rto_at is None:
                self._rto_at = now + self._rtt.rto
            self.last_activity = now
            if fin:
                break
        # Persist timer (RFC 9293 §3.8.6.1): peer window is zero, data waits and
        # nothing is outstanding to clock an ACK back.
        if self.snd_wnd == 0:
            if (
                self._persist_at is None
                and self.snd_max == self.snd_una
                and len(sb) - _sub(self.snd_nxt, self._sb_seq) > 0
            ):
                self._persist_at = now + (self._persist_ivl or self._rtt.rto)
        elif self._persist_at is not None:
            self._persist_at = None

    def _head_segment(self) -> Segment | None:
        """The segment at SND.UNA to send again: at most one SMSS of what was already sent
        (data beyond SND.MAX was never sent and may lie past the peer's window), with the FIN
        when it was sent and this segment reaches it."""
        off = _sub(self.snd_una, self._sb_seq)
        avail = len(self._sb) - off
        fin_seq = self._fin_seq
        fin_sent = fin_seq is not None and _sub(self.snd_max, fin_seq) > 0
        sent = _sub(self.snd_max, self.snd_una) - (1 if fin_sent else 0)
        n = min(avail, sent, self.send_mss)
        fin = fin_sent and n == avail
        if n <= 0 and not fin:
            return None
        if n < 0:
            n = 0
        payload = self._sb.get(off, n) if n else b""
        ctl = _FIN if fin else (_PSH if n == avail else _NONE)
        return Segment(self.snd_una, self.rcv_nxt, ctl, self._window_field(), payload)

    def _retransmit_head(self, now: float) -> None:
        """Resend one SMSS from SND.UNA (fast retransmit / NewReno partial ACK)."""
        seg = self._head_segment()
        if seg is None:
            return
        self._emit(seg)
        self.stats.retransmits += 1
        self._rtt_seq = None  # Karn
        self._rto_at = now + self._rtt.rto

    # ------------------------------------------------------------ timers
    def _run_timers(self, now: float) -> None:
        t = self._tw_at
        if t is not None and now >= t:
            self._tw_at = None
            self._fire(Event.TIMEOUT)
            return
        t = self._fw2_at
        if t is not None and now >= t:
            self._fw2_at = None
            if self.state is _S.FIN_WAIT_2:
                # As Linux does when tcp_fin_timeout <= TIME_WAIT length: RST.
                self._emit_rst(self._acceptable_seq(), self.rcv_nxt)
                self._fire(Event.TIMEOUT)
                return
        t = self._rto_at
        if t is not None and now >= t:
            self._on_rto(now)
            if self.state is _S.CLOSED:
                return
        t = self._persist_at
        if t is not None and now >= t:
            self._on_persist(now)
            if self.state is _S.CLOSED:
                return
        t = self._ka_at
        if t is not None and now >= t:
            self._on_keepalive(now)
            if self.state is _S.CLOSED:
                return
        t = self._delack_at
        if t is not None and now >= t:
            self._delack_at = None
            self._ack_now = True
            self._pingpong = False  # the delayed ACK was not carried by an answer: leave interactive mode

    def _on_rto(self, now: float) -> None:
        if self.snd_max == self.snd_una:
            self._rto_at = None
            return
        if self.snd_wnd == 0 and self._syn_acked and self.state in _DATA_STATES:
            self._zero_window_rto(now)
            return
        self._retries += 1
        limit = self.cfg.max_retries if self._syn_acked else self.cfg.syn_retries
        if self._retries > limit:
            self._give_up()
            return
        self.stats.rto_expirations += 1
        rtt = self._rtt
        rtt.backoff()  # RFC 6298 §5.5
        self._rtt_seq = None  # Karn's algorithm
        if self._syn_acked:
            self._cc.on_rto(_sub(self.snd_max, self.snd_una), self.snd_max)
        self.snd_nxt = self.snd_una  # go-back-N (RFC 6298 §5.4 + RFC 5681 §3.1)
        self._rto_at = now + rtt.rto
        self._want_output = True

    def _zero_window_rto(self, now: float) -> None:
        """The peer closed its window with data in flight: the head segment becomes the probe.

        As Linux's tcp_retransmit_timer: the head segment (up to one MSS) is sent
        again although the window is zero (RFC 9293 §3.8.6.1: probe a zero window),
        with exponential backoff; the connection is not timed out while the peer
        keeps answering, only when nothing came from it for twice the maximum RTO.
        """
        if now - self._rcv_t > 2 * self.cfg.rto_max:
            self._give_up()
            return
        self.stats.zero_window_probes += 1
        rtt = self._rtt
        rtt.backoff()
        self._rtt_seq = None  # Karn
        self._cc.on_rto(_sub(self.snd_max, self.snd_una), self.snd_max)
        self.snd_nxt = self.snd_una
        seg = self._head_segment()
        if seg is not None:
            self._emit(seg)
            self.stats.retransmits += 1
            self.snd_nxt = (self.snd_una + len(seg.payload) + (seg.control is _FIN)) & MASK
        self._rto_at = now + rtt.rto

    def _on_persist(self, now: float) -> None:
        sb = self._sb
        if not (
            self.snd_wnd == 0
            and self.snd_max == self.snd_una
            and len(sb) - _sub(self.snd_nxt, self._sb_seq) > 0
        ):
            self._persist_at = None
            return
        self._probes += 1
        if self._probes > self.cfg.max_retries:
            self._give_up()
            return
        self.stats.zero_window_probes += 1
        self._emit_probe()
        self._persist_ivl = min((self._persist_ivl or self._rtt.rto) * 2, self.cfg.rto_max)
        self._persist_at = now + self._persist_ivl

    def _on_keepalive(self, now: float) -> None:
        ka = self.cfg.keepalive
        st = self.state
        if ka is None or not (st is _S.ESTABLISHED or st is _S.CLOSE_WAIT or st is _S.FIN_WAIT_2):
            self._ka_at = None
            return
        idle, interval, count = ka
        if self.snd_max != self.snd_una:
            self._ka_at = now + idle  # retransmission timer is watching (as Linux does)
            return
        if self._ka_probes >= count:
            self._give_up()
            return
        self._ka_probes += 1
        self.stats.keepalive_probes += 1
        self._emit_probe()
        self._ka_at = now + interval

    def _give_up(self) -> None:
        """Retransmission/probe/keepalive limit: RST, report timed out, CLOSED (RFC 9293 §3.8.3)."""
        self.stats.timeouts += 1
        self.timed_out = True
        self._notice |= _TIMED_OUT
        if self._syn_acked or self.state is _S.SYN_RECEIVED:
            self._emit_rst(self._acceptable_seq(), self.rcv_nxt)
        self._fire(Event.GIVE_UP)

