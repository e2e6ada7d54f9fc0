"""rootlessnet.stack.tcp: sans-IO TCP (RFC 9293) terminating the guest's connections.

Pure: no trio/socket/os/time/select/threading imports, no randomness. Time is
the ``now`` argument (float seconds, monotonic, from the caller); ISNs come
from the caller. The engine converts wire bytes <-> :class:`Segment` (flags as
one :class:`Control` plus ``ack: int | None``, as smoltcp does).

Modules (split by concern, as gVisor's tcp package):

* ``seq``         32-bit modular sequence arithmetic.
* ``segment``     ``Segment`` (``__slots__``), ``Control``.
* ``states``      ``State``, ``Event`` and the ``(state, event) -> state``
                  table, each arrow citing RFC 9293; the only source of state
                  changes.
* ``state``       ``TcpBase``: every variable, typed, and ``_fire``; ``rst_for``.
* ``send``        ``TcpSender(TcpBase)``: output path and timers (RFC 6298,
                  persist, delayed ACK, keepalive, FIN-WAIT-2, TIME-WAIT).
* ``receive``     ``TcpReceiver(TcpSender)``: input path (RFC 9293 §3.10.7,
                  RFC 5961, RFC 5681/6582).
* ``connection``  ``TcpConnection(TcpReceiver)``: construction and the
                  engine API (one line of inheritance: native classes under
                  mypyc, see docs/design.md).
* ``buffers``     bounded ``SendBuffer`` (chunks of bytes, zero-copy slices)
                  and ``RecvBuffer`` (deque of payload views, zero-copy peek).
* ``reassembly``  out-of-order store bounded by the receive window.
* ``congestion``  NewReno in bytes (RFC 5681, 6582, IW10 per RFC 6928).
* ``timers``      ``RtoEstimator`` (RFC 6298) and ``TcpConfig``.
* ``notice``      ``Notice`` bits returned by ``receive``/``poll``.
* ``stats``       ``TcpStats``: one named counter per drop/event.

Engine API (compact)::

    cfg = TcpConfig(local_mss=..., recv_buffer=..., send_buffer=..., ack_every=1, ...)
    c = TcpConnection.from_syn(syn, now=, iss=, config=cfg)   # state LISTEN (pending)
    c.accept(now) | c.refuse()                  # SYN,ACK | RST,ACK
    c = TcpConnection.connect(now=, iss=, config=cfg)          # active: SYN queued
    bits = c.receive(seg, now)                  # Notice bits (int)
    bits = c.poll(now); segs = c.take_output(); t = c.poll_at()   # t <= now: poll again now
    c.readable(); c.peek(n); c.consume(n); c.read(n); c.peer_closed; c.at_eof
    c.send_space(); c.send(data) -> n; c.close(orphan=False); c.abort()
    c.max_tx_payload = 65000                    # GSO super-segments (default send_mss)
    c.state; c.established; c.closed; c.reset_by_peer; c.timed_out; c.last_activity
    c.send_mss; c.unacked; c.statistics()
    rst_for(seg)                                # for segments of unknown flows

Calling convention: ``receive`` every segment of a tap read batch, then one
``poll(now)`` + ``take_output()`` per touched connection, so that cumulative
ACKs are coalesced per batch; replies that must not be coalesced (duplicate
ACKs for out-of-order data, challenge ACKs, RSTs) are queued by ``receive``
itself. Call ``poll`` after ``send``/``close``/``consume``/``accept`` as well.
Misuse of the API raises ``TcpError``; bad peer input never raises (it is
dropped or answered and counted in ``stats``).

Choices and deviations (documented where implemented):

* Minimum RTO 200 ms as Linux (RFC 6298 says 1 s); maximum 120 s; give up
  after 15 retransmissions (6 for SYN/SYN,ACK), with RST and ``TIMED_OUT``.
  A handshake without an RTT sample (its SYN was retransmitted) starts data
  with a 3 s RTO (RFC 6298 §5.7); a backed-off RTO is kept until a valid
  sample (Karn), as Linux does.
* Go-back-N from SND.UNA on RTO; fast retransmit on 3 duplicate ACKs with
  NewReno recovery; no SACK (never offered), no RFC 7323 timestamps (never
  offered; a peer's TSopt is ignored), no Nagle (the engine pushes what the
  host socket produced), no urgent data.
* Slow start grows cwnd by the bytes acknowledged (Linux's per-packet count
  for GSO super-segments) instead of RFC 3465's 2*SMSS cap.
* Pure ACKs/RSTs carry Linux's ``tcp_acceptable_seq`` (highest sequence sent,
  bounded by the peer's window) rather than a rewound SND.NXT.
* Zero-window and keepalive probes are Linux-style (SEQ=SND.UNA-1, no data).
* FIN-WAIT-2 times out only for orphaned connections (``close(orphan=True)``),
  like Linux's tcp_fin_timeout; TIME-WAIT lasts ``TcpConfig.time_wait``
  (60 s) and ignores RSTs (RFC 1337); a new SYN in TIME-WAIT raises
  ``Notice.SYN_IN_TIME_WAIT`` for the engine to recycle the 4-tuple.
* ``close()`` in SYN-RECEIVED is queued until ESTABLISHED (RFC 9293 §3.10.4).
"""

from .connection import DEFAULT_CONFIG, TcpConnection, TcpError, rst_for
from .notice import Notice
from .segment import Control, Segment
from .states import Event, State
from .stats import TcpStats
from .timers import TcpConfig

__all__ = [
    "Control",
    "DEFAULT_CONFIG",
    "Event",
    "Notice",
    "Segment",
    "State",
    "TcpConfig",
    "TcpConnection",
    "TcpError",
    "TcpStats",
    "rst_for",
]
