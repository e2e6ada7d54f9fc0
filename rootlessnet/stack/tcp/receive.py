"""rootlessnet.stack.tcp.receive: the input half of ``TcpConnection`` (RFC 9293 §3.10.7).

Segment arrival per state: LISTEN (a pending SYN), SYN-SENT, and the
synchronized states (acceptability test, RST with RFC 5961 challenge ACKs,
SYN, ACK with RFC 5681/6582 duplicate-ACK and NewReno recovery, window update
by SND.WL1/WL2, segment text with out-of-order reassembly, FIN). Nothing the
peer sends raises: bad input is dropped or answered and counted in ``stats``.
"""

from __future__ import annotations

from .buffers import _as_view
from .notice import Notice
from .segment import Control, Segment
from .seq import MASK, sub as _sub
from .send import TcpSender
from .states import Event, State

_NONE = Control.NONE
_PSH = Control.PSH
_SYN = Control.SYN
_FIN = Control.FIN
_RST = Control.RST
_S = State
_EST = State.ESTABLISHED
_READABLE = int(Notice.READABLE)
_WRITABLE = int(Notice.WRITABLE)


# notice bits as plain ints: `int |= IntFlag` would make the accumulator an IntFlag (slow enum ops)
_N_SYN_IN_TIME_WAIT = int(Notice.SYN_IN_TIME_WAIT)
_N_RESET = int(Notice.RESET)
_N_PEER_FIN = int(Notice.PEER_FIN)

class TcpReceiver(TcpSender):
    """The input half (RFC 9293 §3.10.7)."""

    __slots__ = ()

    # ------------------------------------------------------------ LISTEN / SYN-SENT
    def _rx_listen(self, seg: Segment) -> None:
        """A SYN is pending the engine's accept()/refuse() (RFC 9293 §3.10.7.2)."""
        ctl = seg.control
        if ctl is _RST:
            self.stats.rst_ignored += 1  # §3.10.7.2 first: ignore RST in LISTEN
        elif seg.ack is not None:
            self.stats.bad_ack += 1  # §3.10.7.2 second: <SEQ=SEG.ACK><CTL=RST>
            self._emit_rst(seg.ack, None)
        elif ctl is _SYN:
            self.stats.syn_absorbed += 1
            if seg.seq != self.irs:
                self._take_syn(seg)  # a new attempt on the same 4-tuple: latest wins
                self.snd_wnd = seg.window
        else:
            self.stats.no_ack_dropped += 1

    def _rx_syn_sent(self, seg: Segment, now: float) -> None:
        """RFC 9293 §3.10.7.3."""
        ack = seg.ack
        ctl = seg.control
        if ack is not None and (_sub(ack, self.iss) <= 0 or _sub(ack, self.snd_max) > 0):
            if ctl is _RST:
                self.stats.rst_ignored += 1
            else:
                self.stats.bad_ack += 1
                self._emit_rst(ack, None)
            return
        if ctl is _RST:
            if ack is None:
                self.stats.rst_ignored += 1
            else:
                self._peer_reset()
            return
        if ctl is not _SYN:
            self.stats.no_ack_dropped += 1
            return
        self._take_syn(seg)
        self.snd_wnd = seg.window  # never scaled in a SYN (RFC 7323 §2.2)
        self.max_snd_wnd = seg.window
        self.snd_wl1 = seg.seq
        if ack is not None:
            self.snd_wl2 = ack
            self.snd_una = ack
            self._syn_acked = True
            self._retries = 0
            if self._rtt_seq is not None and _sub(ack, self._rtt_seq) >= 0:
                self._rtt.sample(now - self._rtt_t)
                self._rtt_seq = None
            self._rto_at = None
            self._ack_now = True
            self._want_output = True
            self._fire(Event.RCV_SYN_ACK)
        else:
            # Simultaneous open: answer with SYN,ACK from ISS again.
            self.snd_nxt = self.iss
            self._want_output = True
            self._fire(Event.PEER_SYN)

    # ------------------------------------------------------------ synchronized states
    def _rx_sync(self, seg: Segment, now: float) -> None:
        st = self.state
        ctl = seg.control
        stats = self.stats
        ka = self.cfg.keepalive
        if self._ka_at is not None and ka is not None:
            self._ka_at = now + ka[0]
            self._ka_probes = 0
        if ctl is _SYN:
            self._rx_sync_syn(seg, now)
            return
        seq = seg.seq
        payload = seg.payload
        fin = ctl is _FIN
        # RCV.WND is the window advertised (RFC 9293 §3.10.7.4; Linux's tcp_receive_window), not the
        # buffer space freed since, which the peer was not told of (receiver SWS avoidance): a probe
        # into a zero window is refused until a window update says otherwise. The edge may pass the
        # buffer by less than one scale unit (rounded up, never shrunk): it is honoured.
        wnd = _sub(self._adv_edge, self.rcv_nxt)
        if wnd < 0:
            wnd = 0
        d = _sub(seq, self.rcv_nxt)
        seglen = len(payload) + fin
        # first: acceptability (RFC 9293 §3.10.7.4, as Linux's tcp_sequence for
        # segments straddling the whole window); zero window: only SEG.SEQ=RCV.NXT,
        # whose ACK/RST are processed and whose text is trimmed below.
        if wnd == 0:
            ok = d == 0
        elif seglen == 0:
            ok = 0 <= d < wnd
        else:
            ok = d < wnd and d + seglen > 0
        if not ok:
            if ctl is _RST:
                stats.rst_ignored += 1
                return
            if d < 0:
                stats.dup_segments += 1
            else:
                stats.out_of_window += 1
            if fin and st is _S.TIME_WAIT:
                self._tw_at = now + self.cfg.time_wait  # retransmitted FIN: restart 2MSL
            if seglen == 0 and self._oow_limited():
                return  # throttled; segments with data are always answered (as Linux)
            self._send_ack_now()
            return
        # second: RST (RFC 5961 §3.2)
        if ctl is _RST:
            if st is _S.TIME_WAIT:
                if d == 0:
                    # As Linux with tcp_rfc1337=0 (its default): an RST at RCV.NXT ends TIME-WAIT, so a
                    # peer that reconnects from the same port is not held up for 2MSL. RFC 1337 names
                    # the hazard; Linux accepts it. Any other RST here is ignored, without a challenge.
                    stats.time_wait_killed += 1
                    self._fire(Event.RCV_RST)
                else:
                    stats.rst_ignored += 1
            elif d != 0:
                self._challenge_ack()
            else:
                self._peer_reset()
            return
        # fifth: ACK
        ack = seg.ack
        if ack is None:
            stats.no_ack_dropped += 1
            return
        if st is _S.SYN_RECEIVED:
            if _sub(ack, self.snd_una) > 0 and _sub(ack, self.snd_max) <= 0:
                self._establish_passive(seg, ack)
            else:
                stats.bad_ack += 1
                self._emit_rst(ack, None)
                return
        if not self._process_ack(seg, ack, now):
            return
        st = self.state
        if st is _S.CLOSED:
            return
        # seventh/eighth: text and FIN
        if seglen:
            if st is _EST or st is _S.FIN_WAIT_1 or st is _S.FIN_WAIT_2:
                self._process_text(payload, d, fin, wnd, now)
            else:
                # CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer's FIN was
                # already received; text is ignored (§3.10.7.4 seventh).
                stats.dup_segments += 1
                self._ack_now = True

    def _rx_sync_syn(self, seg: Segment, now: float) -> None:
        st = self.state
        ack = seg.ack
        if st is _S.SYN_RECEIVED and seg.seq == self.irs:
            if ack is None:
                # Retransmitted SYN: our SYN,ACK was lost; send it again.
                self.stats.syn_absorbed += 1
                self._emit_syn()
                return
            if ack == self.snd_max:
                # Simultaneous open, RFC 9293 Figure 8: SYN,ACK in SYN-RECEIVED.
                self.snd_wnd = seg.window
                self.snd_wl1 = seg.seq
                self.snd_wl2 = ack
                self.snd_una = ack
                self._syn_acked = True
                self._rto_at = None
                self._ack_now = True
                self._want_output = True
                self._fire(Event.RCV_ACK_OF_SYN)
                return
        if st is _S.TIME_WAIT and ack is None and _sub(seg.seq, self.rcv_nxt) > 0:
            # A new incarnation (as Linux's tcp_timewait_state_process TCP_TW_SYN).
            self._notice |= _N_SYN_IN_TIME_WAIT
            return
        # RFC 9293 §3.10.7.4 fourth / RFC 5961 §4.2: challenge ACK, whatever the seq.
        self._challenge_ack()

    def _establish_passive(self, seg: Segment, ack: int) -> None:
        self._syn_acked = True
        self.snd_wnd = seg.window << self.snd_wscale
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = seg.seq
        self.snd_wl2 = ack
        self._fire(Event.RCV_ACK_OF_SYN)

    def _peer_reset(self) -> None:
        self.stats.rst_in += 1
        self.reset_by_peer = True
        self._notice |= _N_RESET
        # The receive buffer is kept: data that arrived before the RST is still delivered, as
        # Linux's recv() returns queued data before it reports ECONNRESET.
        self._fire(Event.RCV_RST)

    def _process_ack(self, seg: Segment, ack: int, now: float) -> bool:
        """RFC 9293 §3.10.7.4 fifth; False when the segment must be dropped."""
        una = self.snd_una
        self._probes = 0  # the peer answers: persist probes are not unanswered
        if _sub(ack, self.snd_max) > 0:
            self.stats.bad_ack += 1
            self._send_ack_now()
            return False
        d = _sub(ack, una)
        if d < 0:
            if -d > max(self.max_snd_wnd, self.send_mss):
                self.stats.old_ack += 1  # RFC 5961 §5.2
                if not self._oow_limited():
                    self._send_ack_now()
                return False
            return True  # old duplicate ACK: ignore the ACK field
        new_wnd = seg.window << self.snd_wscale
        if d == 0:
            if (
                not seg.payload
                and seg.control is not _FIN
                and new_wnd == self.snd_wnd
                and self.snd_max != una
            ):
                self._on_dupack(ack, now)
        else:
            self._on_new_ack(ack, d, now)
            if self.state is _S.CLOSED:
                return False
        # Window update (RFC 9293 §3.10.7.4 fifth, SND.WL1/SND.WL2 rule).
        sseq = seg.seq
        wl1 = _sub(sseq, self.snd_wl1)
        if wl1 > 0 or (wl1 == 0 and _sub(ack, self.snd_wl2) >= 0):
            if new_wnd != self.snd_wnd:
                if new_wnd > self.snd_wnd:
                    self._want_output = True
                    self._persist_ivl = None  # persist backoff restarts
                self.snd_wnd = new_wnd
                if new_wnd > self.max_snd_wnd:
                    self.max_snd_wnd = new_wnd
            self.snd_wl1 = sseq
            self.snd_wl2 = ack
        return True

    def _on_new_ack(self, ack: int, acked: int, now: float) -> None:
        sb = self._sb
        nb = _sub(ack, self._sb_seq)
        if nb > 0:
            if nb > len(sb):
                nb = len(sb)
            if nb:
                sb.consume(nb)
                self._sb_seq = (self._sb_seq + nb) & MASK
                self._notice |= _WRITABLE
        self.snd_una = ack
        if _sub(self.snd_nxt, ack) < 0:
            self.snd_nxt = ack
        rtt = self._rtt
        # Only a valid RTT sample collapses a backed-off RTO (RFC 6298 §5 after (5.7), Karn's
        # algorithm; as Linux's tcp_ack_update_rtt): an ACK of retransmitted data keeps it.
        if self._rtt_seq is not None and _sub(ack, self._rtt_seq) >= 0:
            rtt.sample(now - self._rtt_t)
            self._rtt_seq = None
        self._retries = 0
        self._rto_at = None if ack == self.snd_max else now + rtt.rto
        self._want_output = True
        cc = self._cc
        # Congestion control counts payload bytes only (nb), not SYN/FIN.
        if cc.in_recovery:
            if _sub(ack, cc.recover) >= 0:
                cc.on_full_ack(_sub(self.snd_max, ack))
            else:
                cc.on_partial_ack(nb if nb > 0 else 0)
                self._retransmit_head(now)
        elif nb > 0:
            cc.on_ack(nb)
        fin_seq = self._fin_seq
        if fin_seq is not None and _sub(ack, fin_seq) > 0:
            self._fire(Event.RCV_ACK_OF_FIN)

    def _on_dupack(self, ack: int, now: float) -> None:
        """RFC 5681 §3.2 fast retransmit, RFC 6582 NewReno."""
        self.stats.dup_acks_in += 1
        cc = self._cc
        if cc.in_recovery:
            cc.on_dupack_in_recovery()
            self._want_output = True
            return
        cc.dupacks += 1
        if cc.dupacks == 3 and _sub(ack, cc.recover) > 0:
            cc.enter_recovery(_sub(self.snd_max, self.snd_una), self.snd_max)
            self.stats.fast_retransmits += 1
            self._retransmit_head(now)

    def _process_text(self, payload, d: int, fin: bool, wnd: int, now: float) -> None:
        """RFC 9293 §3.10.7.4 seventh (text) and eighth (FIN)."""
        stats = self.stats
        view = _as_view(payload) if payload else payload
        ack_now = False
        if d < 0:
            cut = -d
            if cut >= len(view):
                # Only a (new) FIN remains after trimming duplicate bytes.
                stats.dup_bytes += len(view)
                view = b""
            else:
                stats.dup_bytes += cut
                view = view[cut:]
            d = 0
            ack_now = True
        room = wnd - d
        if len(view) > room:
            stats.beyond_window_bytes += len(view) - room
            view = view[:room] if room > 0 else b""
            fin = False
            ack_now = True
        mem = self.cfg.mem
        if d:
            # Out of order: queue and send an immediate duplicate ACK (RFC 5681 §4.2).
            stats.ooo_segments += 1
            reasm = self._reasm
            if mem is not None and mem.used >= mem.pressure:
                stats.ooo_dropped += 1  # memory is short: out-of-order data goes first (as Linux prunes)
            elif view and reasm.add(self._rcv_off + d, view) < 0:
                stats.ooo_dropped += 1
            elif fin:
                reasm.fin_off = self._rcv_off + d + len(view)
            self._send_ack_now()
            return
        n = len(view)
        rb = self._rb
        if n and mem is not None and mem.used >= mem.limit and (len(rb) or self._reasm):
            # Over the engine-wide limit: drop the text (the peer retransmits it); a connection
            # that holds nothing may still take it, so none is starved.
            stats.mem_dropped += n
            self._send_ack_now()
            return
        if n:
            rb.append(view)
            self._rcv_off += n
            self.rcv_nxt = (self.rcv_nxt + n) & MASK
            stats.bytes_in += n
            self._notice |= _READABLE
        reasm = self._reasm
        if reasm:
            parts: list = []
            off = self._rcv_off
            cur = reasm.pop_ready(off, parts)
            if cur != off:
                for p in parts:
                    rb.append(p)
                stats.bytes_in += cur - off
                self._rcv_off = cur
                self.rcv_nxt = (self.rcv_nxt + cur - off) & MASK
                self._notice |= _READABLE
                ack_now = True  # a hole was filled: ACK at once (RFC 5681 §4.2)
        if fin or (reasm.fin_off is not None and reasm.fin_off == self._rcv_off):
            self._process_fin()
            return
        # Delayed ACK as Linux does it (tcp_event_data_recv, __tcp_ack_snd_check): quick ACKs
        # for the first segments and after an idle RTO, unless the flow is interactive
        # (pingpong: we answer within the ACK delay, so the ACK rides on the answer); else an
        # ACK once more than one full segment is unacknowledged (RFC 9293 §3.8.6.3: at least
        # every second full-sized one), or after the delay.
        if n:
            last = self._lrcv_t
            if last is None or now - last > self._rtt.rto:
                q = (rb.cap - len(rb)) // (2 * self._rcv_mss)
                self._quick = min(self.cfg.quickack, q if q > 2 else 2)
            self._lrcv_t = now
            if n > self._rcv_mss:
                self._rcv_mss = n if n < self.cfg.local_mss else self.cfg.local_mss
        self._segs_unacked += 1
        self._bytes_unacked += n
        if (
            ack_now
            or self._bytes_unacked > self._rcv_mss
            or 0 < self.cfg.ack_every <= self._segs_unacked
            or (self._quick and not self._pingpong)
        ):
            self._ack_now = True
            self._want_output = True
        elif self._delack_at is None:
            self._delack_at = now + self.cfg.delayed_ack

    def _process_fin(self) -> None:
        self.rcv_nxt = (self.rcv_nxt + 1) & MASK
        self._peer_fin = True
        self._reasm.clear()
        self._notice |= _N_PEER_FIN
        self._ack_now = True
        self._want_output = True
        self._fire(Event.RCV_FIN)
