"""rootlessnet.stack.tcp.connection: ``TcpConnection``, one sans-IO TCP endpoint (RFC 9293).

Construction and the engine-facing API live here; the variables and ``_fire``
are ``state.TcpBase``, the output path and timers ``send.TcpSender``, the input
path ``receive.TcpReceiver`` (one line of inheritance, see state.py).

Calling convention (the engine): feed segments with ``receive(seg, now)``,
call API methods, then ``poll(now)`` once per batch and ``take_output()``;
sleep until ``poll_at()``. ``receive`` queues only replies that must not be
coalesced (RST, challenge/duplicate/out-of-window ACKs); data, FIN and
cumulative ACKs are built by ``poll``, so one ACK covers a whole batch.
"""

from __future__ import annotations

from .receive import TcpReceiver
from .segment import Control, Segment
from .seq import MASK
from .state import TcpError, rst_for
from .states import SYNCHRONIZED_IDS, Event, State
from .timers import TcpConfig

__all__ = ["TcpConnection", "TcpError", "rst_for", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = TcpConfig()

_S = State
_SYN = Control.SYN
_RST = Control.RST


class TcpConnection(TcpReceiver):
    """One TCP connection; see the package docstring for the API summary."""

    __slots__ = ()

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
        if st is _S.ESTABLISHED or id(st) in SYNCHRONIZED_IDS:
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

