"""rootlessnet.stack.tcp.state: ``TcpBase``, the state of one TCP connection and its one way to change.

Every variable of a connection is declared here, once, with its type; the
output path and timers (``send.TcpSender``), the input path
(``receive.TcpReceiver``) and the engine-facing API (``connection.TcpConnection``)
are subclasses in a single line of inheritance, so each file keeps one
concern and the whole compiles as native classes (mypyc) as well as it runs
interpreted. Every state change goes through ``_fire(event)``, i.e. through
the table in ``states.py``.
"""

from __future__ import annotations

from .buffers import RecvBuffer, SendBuffer
from .congestion import NewReno
from .notice import Notice
from .reassembly import Reassembler
from .segment import Control, Segment
from .seq import MASK
from .states import Event, State, transition
from .stats import TcpStats
from .timers import RtoEstimator, TcpConfig

__all__ = ["TcpBase", "TcpError", "rst_for"]

_S = State
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


class TcpBase:
    """A connection's variables (RFC 9293 §3.3.1 and the engine's own) and ``_fire``."""

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

    cfg: TcpConfig
    state: State
    stats: TcpStats
    iss: int
    irs: int
    snd_una: int
    snd_nxt: int
    snd_max: int
    snd_wnd: int
    snd_wl1: int
    snd_wl2: int
    max_snd_wnd: int
    snd_wscale: int
    rcv_wscale: int
    rcv_nxt: int
    send_mss: int
    _max_tx: int | None
    _ws_ok: bool
    _sb: SendBuffer
    _rb: RecvBuffer
    _reasm: Reassembler
    _sb_seq: int
    _rcv_off: int
    _adv_edge: int
    _sws_thresh: int
    _fin_seq: int | None
    _close_deferred: bool
    _orphan: bool
    _syn_acked: bool
    _peer_fin: bool
    _ack_now: bool
    _wupd: bool
    _delack_at: float | None
    _segs_unacked: int
    _bytes_unacked: int
    _quick: int
    _pingpong: bool
    _lrcv_t: float | None
    _rcv_mss: int
    _more: bool
    _rtt: RtoEstimator
    _rtt_seq: int | None
    _rtt_t: float
    _cc: NewReno
    _rto_at: float | None
    _retries: int
    _persist_at: float | None
    _persist_ivl: float | None
    _probes: int
    _tw_at: float | None
    _fw2_at: float | None
    _ka_at: float | None
    _ka_probes: int
    _out: list[Segment]
    _notice: int
    _now: float
    _want_output: bool
    _oow_at: float | None
    last_activity: float
    reset_by_peer: bool
    timed_out: bool
    _rcv_t: float

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

    @property
    def max_tx_payload(self) -> int:
        """Largest payload per emitted segment (default: send_mss; GSO engines raise it)."""
        m = self._max_tx
        return self.send_mss if m is None else m

    @max_tx_payload.setter
    def max_tx_payload(self, value: int) -> None:
        # (the same type as the getter's: mypyc miscompiles a setter whose type differs)
        if value < 1:
            raise TcpError("max_tx_payload must be >= 1")
        self._max_tx = value

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
