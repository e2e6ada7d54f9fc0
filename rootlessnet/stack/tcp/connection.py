"""rootlessnet.stack.tcp.connection: ``TcpConnection``, one sans-IO TCP endpoint (RFC 9293).

Construction, the engine-facing API and state changes live here; the input
path is ``receive.py`` and the output path and timers are ``send.py`` (mixins
sharing this class's ``__slots__``). Every state change goes through
``_fire(event)``, i.e. through the table in ``states.py``.

Calling convention (the engine): feed segments with ``receive(seg, now)``,
call API methods, then ``poll(now)`` once per batch and ``take_output()``;
sleep until ``poll_at()``. ``receive`` queues only replies that must not be
coalesced (RST, challenge/duplicate/out-of-window ACKs); data, FIN and
cumulative ACKs are built by ``poll``, so one ACK covers a whole batch.
"""

from __future__ import annotations

from .buffers import RecvBuffer, SendBuffer
from .congestion import NewReno
from .notice import Notice
from .reassembly import Reassembler
from .receive import ReceiverMixin
from .segment import Control, Segment
from .send import SenderMixin
from .seq import MASK
from .states import SYNCHRONIZED, Event, State, transition
from .stats import TcpStats
from .timers import RtoEstimator, TcpConfig

__all__ = ["TcpConnection", "TcpError", "rst_for", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = TcpConfig()

_S = State
_SYN = Control.SYN
_RST = Control.RST


# notice bits as plain ints: `int |= IntFlag` would make the accumulator an IntFlag (slow enum ops)
_N_CLOSED = int(Notice.CLOSED)
_N_ESTABLISHED = int(Notice.ESTABLISHED)

class TcpError(Exception):
    """The engine misused the API (e.g. send() after close(), accept() twice)."""


def rst_for(seg: Segment) -> Segment | None:
    """Reply to a segment for which no connection exists (RFC 9293 §3.10.7.1).

    ``None`` for an incoming RST; ``<SEQ=SEG.ACK><CTL=RST>`` when it carries an
    ACK; else ``<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>``.
    """
    if seg.control is _RST:
        return None
    if seg.ack is not None:
        return Segment(seg.ack, None, _RST, 0)
    return Segment(0, (seg.seq + seg.seg_len) & MASK, _RST, 0)


def _wscale_for(cap: int) -> int:
    """Smallest shift that lets the whole buffer be advertised (RFC 7323 §2.3, max 14)."""
    s = 0
    while s < 14 and (cap >> s) > 0xFFFF:
        s += 1
    return s


class TcpConnection(ReceiverMixin, SenderMixin):
    """One TCP connection; see the package docstring for the API summary."""

    __slots__ = (
        "cfg", "state", "stats", "iss", "irs",
        "snd_una", "snd_nxt", "snd_max", "snd_wnd", "snd_wl1", "snd_wl2", "max_snd_wnd",
        "snd_wscale", "rcv_wscale", "rcv_nxt", "send_mss", "_max_tx",
        "_ws_ok", "_sb", "_rb", "_reasm", "_sb_seq", "_rcv_off", "_adv_edge", "_sws_thresh",
        "_fin_seq", "_close_deferred", "_orphan", "_syn_acked", "_peer_fin",
        "_ack_now", "_wupd", "_delack_at", "_segs_unacked", "_bytes_unacked",
        "_quick", "_pingpong", "_lrcv_t", "_rcv_mss", "_more",
        "_rtt", "_rtt_seq", "_rtt_t", "_cc", "_rto_at", "_retries",
        "_persist_at", "_persist_ivl", "_probes", "_tw_at", "_fw2_at", "_ka_at", "_ka_probes",
        "_out", "_notice", "_now", "_want_output", "_oow_at",
        "last_activity", "reset_by_peer", "timed_out", "_rcv_t",
    )  # fmt: skip

    def __init__(self, config: TcpConfig, iss: int, now: float) -> None:
        """Private: use :meth:`from_syn` or :meth:`connect`."""
        cfg = config
        self.cfg = cfg
        self.state = _S.CLOSED
        self.stats = TcpStats()
        iss &= MASK
        self.iss = iss
        self.irs = 0
        self.snd_una = self.snd_nxt = self.snd_max = iss
        self.snd_wnd = self.snd_wl1 = self.snd_wl2 = self.max_snd_wnd = 0
        self.snd_wscale = 0
        self._ws_ok = cfg.window_scaling
        self.rcv_wscale = _wscale_for(cfg.recv_buffer) if cfg.window_scaling else 0
        self.rcv_nxt = 0
        self.send_mss = min(cfg.default_peer_mss, cfg.local_mss)
        self._max_tx = None
        self._sb = SendBuffer(cfg.send_buffer, cfg.mem)
        self._rb = RecvBuffer(cfg.recv_buffer, cfg.mem)
        self._reasm = Reassembler(cfg.max_ooo_blocks, cfg.mem)
        self._sb_seq = (iss + 1) & MASK
        self._rcv_off = 0
        self._adv_edge = 0
        self._sws_thresh = max(1, min(cfg.recv_buffer // 2, cfg.local_mss))
        self._fin_seq = None
        self._close_deferred = False
        self._orphan = False
        self._syn_acked = False
        self._peer_fin = False
        self._ack_now = False
        self._wupd = False
        self._delack_at = None
        self._segs_unacked = 0
        self._bytes_unacked = 0
        self._more = False  # the application has more data coming at once (see send)
        self._quick = 0  # quick ACKs left (Linux's icsk_ack.quick)
        self._pingpong = False  # interactive: ACKs wait to ride on our answer
        self._lrcv_t = None  # when data last arrived
        self._rcv_mss = max(88, min(536, cfg.local_mss))  # the peer's segment size, as Linux estimates it
        self._rtt = RtoEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max)
        self._rtt_seq = None
        self._rtt_t = 0.0
        self._cc = NewReno(self.send_mss, cfg.initial_window_segments, iss)
        self._rto_at = None
        self._retries = 0
        self._persist_at = None
        self._persist_ivl = None  # None: the current RTO
        self._probes = 0
        self._tw_at = None
        self._fw2_at = None
        self._ka_at = None
        self._ka_probes = 0
        self._oow_at = None  # when the last ACK to an invalid segment went out (RFC 5961 §7)
        self._out: list[Segment] = []
        self._notice = 0
        self._now = now
        self._want_output = False
        self.last_activity = now
        self._rcv_t = now  # when the peer last sent anything (zero-window probing gives up on silence)
        self.reset_by_peer = False
        self.timed_out = False

    # ------------------------------------------------------------ construction
    @classmethod
    def from_syn(
        cls, syn: Segment, *, now: float, iss: int, config: TcpConfig = DEFAULT_CONFIG
    ) -> TcpConnection:
        """Passive open from the guest's SYN; state LISTEN until accept()/refuse().

        Raises ``TcpError`` unless ``syn`` is a SYN without ACK (the engine
        answers anything else for an unknown flow with :func:`rst_for`).
        """
        if syn.control is not _SYN or syn.ack is not None:
            raise TcpError(f"from_syn() needs a SYN without ACK, got {syn!r}")
        c = cls(config, iss, now)
        c._ws_ok = config.window_scaling and syn.wscale is not None
        c._take_syn(syn)
        c.snd_wnd = c.max_snd_wnd = syn.window
        c._fire(Event.PEER_SYN)
        return c

    @classmethod
    def connect(
        cls, *, now: float, iss: int, config: TcpConfig = DEFAULT_CONFIG
    ) -> TcpConnection:
        """Active open (port forwarding into the guest): queues a SYN."""
        c = cls(config, iss, now)
        c._fire(Event.APP_CONNECT)
        c._output(now)
        return c

    def _take_syn(self, syn: Segment) -> None:
        """Record the peer's ISN and options (RFC 9293 §3.7.1, RFC 7323 §2.2)."""
        cfg = self.cfg
        self.irs = syn.seq & MASK
        self.rcv_nxt = (syn.seq + 1) & MASK
        self._adv_edge = self.rcv_nxt
        peer_mss = syn.mss if syn.mss else cfg.default_peer_mss
        self.send_mss = max(64, min(peer_mss, cfg.local_mss))
        if self._ws_ok and syn.wscale is not None:
            self.snd_wscale = min(syn.wscale, 14)  # RFC 7323 §2.3: > 14 is taken as 14
        else:
            self._ws_ok = False
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self._cc.set_mss(self.send_mss, cfg.initial_window_segments)
        if syn.payload:
            self.stats.syn_data_dropped += 1  # not acked: the peer sends it again

    def accept(self, now: float) -> None:
        """Answer the pending SYN with SYN,ACK (RFC 9293 §3.10.7.2)."""
        if self.state is not _S.LISTEN:
            raise TcpError(f"accept() in state {self.state.value}, expected LISTEN")
        self._now = now
        self._fire(Event.APP_ACCEPT)
        self._output(now)

    def refuse(self) -> None:
        """Answer the pending SYN with <SEQ=0><ACK=ISN+1><CTL=RST,ACK> and close."""
        if self.state is not _S.LISTEN:
            raise TcpError(f"refuse() in state {self.state.value}, expected LISTEN")
        self._emit_rst(0, self.rcv_nxt)
        self._fire(Event.APP_REFUSE)

    # ------------------------------------------------------------ events in
    def receive(self, seg: Segment, now: float) -> int:
        """Process one incoming segment (RFC 9293 §3.10.7).

        Returns the ``Notice`` bits raised (a plain int: test with ``&``).
        """
        self._now = now
        self.stats.segs_in += 1
        self.last_activity = now
        self._rcv_t = now
        st = self.state
        if st is _S.ESTABLISHED or st in SYNCHRONIZED:
            self._rx_sync(seg, now)
        elif st is _S.SYN_SENT:
            self._rx_syn_sent(seg, now)
        elif st is _S.LISTEN:
            self._rx_listen(seg)
        else:
            reply = rst_for(seg)  # CLOSED: §3.10.7.1
            if reply is not None:
                self._emit_rst(reply.seq, reply.ack)
        n = self._notice
        self._notice = 0
        return n

    def poll(self, now: float) -> int:
        """Run due timers and build the segments that can be sent now; returns ``Notice`` bits."""
        self._now = now
        st = self.state
        if st is not _S.CLOSED and st is not _S.LISTEN:
            self._run_timers(now)
            if self.state is not _S.CLOSED:
                self._output(now)
        self._want_output = False
        n = self._notice
        self._notice = 0
        return n

    def take_output(self) -> list[Segment]:
        """Drain the queued outgoing segments (oldest first)."""
        out = self._out
        if out:
            self._out = []
        return out

    @property
    def wants_poll(self) -> bool:
        """Something to send now (a window update, data, an ACK): poll() soon."""
        return self._want_output or self._ack_now

    def poll_at(self) -> float | None:
        """Earliest time ``poll`` has work; a time <= now means "poll now"."""
        if self.state is _S.CLOSED:
            return None
        if self._want_output or self._ack_now:
            return self._now
        t = None
        for x in (self._rto_at, self._persist_at, self._delack_at, self._tw_at, self._fw2_at,
                  self._ka_at):  # fmt: skip
            if x is not None and (t is None or x < t):
                t = x
        return t

    # ------------------------------------------------------------ receive side API
    def readable(self) -> int:
        """In-order bytes waiting in the receive buffer."""
        return len(self._rb)

    def peek(self, max_bytes: int) -> memoryview | bytes:
        """Up to ``max_bytes`` in-order bytes without consuming (maybe fewer than readable())."""
        return self._rb.peek(max_bytes)

    def consume(self, n: int) -> int:
        """Drop ``n`` bytes read via peek(); may queue a window update."""
        n = self._rb.consume(n)
        if n:
            st = self.state
            if st is _S.ESTABLISHED or st is _S.FIN_WAIT_1 or st is _S.FIN_WAIT_2:
                # Window update when the window at least doubles and moves by the
                # SWS threshold (RFC 9293 §3.8.6.2.2; Linux's tcp_cleanup_rbuf).
                rb = self._rb
                free = rb.cap - len(rb)
                cur = (self._adv_edge - self.rcv_nxt) & MASK
                if cur >= 1 << 31:
                    cur = 0
                if free - cur >= self._sws_thresh and free >= 2 * cur:
                    self._ack_now = True
                    self._wupd = True
                    self._want_output = True
        return n

    def read(self, max_bytes: int) -> memoryview | bytes:
        """peek() + consume() in one call."""
        data = self._rb.peek(max_bytes)
        self.consume(len(data))
        return data

    @property
    def peer_closed(self) -> bool:
        """The peer's FIN was received (no more data will arrive)."""
        return self._peer_fin

    @property
    def at_eof(self) -> bool:
        """Peer FIN received and every byte consumed: shut the host socket's write side."""
        return self._peer_fin and not len(self._rb)

    # ------------------------------------------------------------ send side API
    def _can_send(self) -> bool:
        st = self.state
        return self._fin_seq is None and st is not _S.CLOSED and (
            st is _S.ESTABLISHED
            or st is _S.CLOSE_WAIT
            or st is _S.LISTEN
            or st is _S.SYN_SENT
            or st is _S.SYN_RECEIVED
        )

    def send_space(self) -> int:
        """Bytes send() would accept now (0 once closed)."""
        return self._sb.space() if self._can_send() else 0

    def send(self, data, more: bool = False) -> int:
        """Buffer up to send_space() bytes; returns how many were taken.

        ``more``: the caller expects more data at once (it read a full chunk from the host),
        so a segment tail shorter than the MSS waits for it while data is in flight, as
        MSG_MORE / TCP_CORK would make it; the next send() without it lets the tail go.
        """
        if not self._can_send():
            raise TcpError(f"send() after close()/reset (state {self.state.value})")
        n = self._sb.append(data)
        self._more = more
        if n:
            self._want_output = True
        return n

    @property
    def unacked(self) -> int:
        """Bytes in the send buffer (unsent + unacknowledged)."""
        return len(self._sb)

    @property
    def max_tx_payload(self) -> int:
        """Largest payload per emitted segment (default: send_mss; GSO engines raise it)."""
        m = self._max_tx
        return self.send_mss if m is None else m

    @max_tx_payload.setter
    def max_tx_payload(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise TcpError("max_tx_payload must be >= 1 (or None for send_mss)")
        self._max_tx = value

    def close(self, *, orphan: bool = False) -> None:
        """Half-close: FIN after the buffered data; receiving continues.

        ``orphan=True`` tells that nobody reads any more (host socket fully
        closed): only then does FIN-WAIT-2 time out (as Linux's
        tcp_fin_timeout applies to orphans only). A second call only updates
        ``orphan``.
        """
        st = self.state
        if orphan and not self._orphan:
            self._orphan = True
            if st is _S.FIN_WAIT_2 and self._fw2_at is None:
                self._fw2_at = self._now + self.cfg.fin_wait_2_timeout
        if self._fin_seq is not None or st is _S.CLOSED:
            return
        if st is _S.LISTEN:
            self.refuse()
            return
        if st is _S.SYN_SENT:
            self._fire(Event.APP_CLOSE)
            return
        self._fin_seq = (self._sb_seq + len(self._sb)) & MASK
        self._want_output = True
        if st is _S.SYN_RECEIVED:
            # RFC 9293 §3.10.4: queue the close until ESTABLISHED.
            self._close_deferred = True
        else:
            self._fire(Event.APP_CLOSE)

    def abort(self) -> None:
        """Send RST (when the peer knows us) and close at once (RFC 9293 §3.10.5)."""
        st = self.state
        if st is _S.CLOSED:
            return
        if st is _S.LISTEN:
            self._emit_rst(0, self.rcv_nxt)
        elif st is not _S.SYN_SENT and st is not _S.TIME_WAIT:
            self._emit_rst(self._acceptable_seq(), self.rcv_nxt)
        self._rb.clear()
        self._fire(Event.APP_ABORT)

    def release(self) -> None:
        """Free every buffer (and its charge to the engine's memory pool); idempotent.

        The engine calls it when it forgets the connection; data not yet read is lost.
        """
        self._rb.clear()
        self._sb.clear()
        self._reasm.clear()

    def time_wait_window(self) -> int:
        """The window field for ACKs sent from TIME-WAIT (what was last advertised)."""
        return self._window_field()

    def held(self) -> int:
        """Memory this connection's buffers keep alive (what the memory pool is charged)."""
        return self._rb.held + self._reasm.held + len(self._sb)

    # ------------------------------------------------------------ state
    @property
    def established(self) -> bool:
        return self._syn_acked and self.state is not _S.CLOSED

    @property
    def closed(self) -> bool:
        """CLOSED: the engine can free it (after draining readable())."""
        return self.state is _S.CLOSED

    def statistics(self) -> dict[str, int]:
        """Snapshot of the named counters."""
        return self.stats.snapshot()

    def _fire(self, ev: Event) -> None:
        """The only place ``self.state`` changes: via the ``states.py`` table."""
        old = self.state
        new = transition(old, ev)
        if new is old:
            return
        self.state = new
        now = self._now
        if new is _S.CLOSED:
            self._notice |= _N_CLOSED
            self._rto_at = self._persist_at = self._delack_at = None
            self._tw_at = self._fw2_at = self._ka_at = None
            self._ack_now = self._want_output = False
            self._sb.clear()
            self._reasm.clear()
        elif new is _S.TIME_WAIT:
            self._tw_at = now + self.cfg.time_wait
            self._rto_at = self._persist_at = self._ka_at = self._fw2_at = None
        elif new is _S.FIN_WAIT_2:
            if self._orphan:
                self._fw2_at = now + self.cfg.fin_wait_2_timeout
        elif new is _S.ESTABLISHED:
            self._notice |= _N_ESTABLISHED
            # No RTT sample from the handshake (its SYN or SYN-ACK was retransmitted):
            # RFC 6298 §5.7's 3 s. A passive open samples just after this, in _on_new_ack.
            self._rtt.fallback(self.cfg.rto_fallback)
            ka = self.cfg.keepalive
            if ka is not None:
                self._ka_at = now + ka[0]
            if self._close_deferred:
                self._close_deferred = False
                self._fire(Event.APP_CLOSE)

    def __repr__(self) -> str:
        return (
            f"<TcpConnection {self.state.value} una={self.snd_una} nxt={self.snd_nxt} "
            f"wnd={self.snd_wnd} rcv_nxt={self.rcv_nxt} buf={len(self._sb)}/{len(self._rb)}>"
        )
