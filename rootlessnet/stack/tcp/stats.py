"""rootlessnet.stack.tcp.stats: per-connection counters (every drop has a name)."""

from __future__ import annotations

__all__ = ["TcpStats"]

_FIELDS = (
    "segs_in",
    "segs_out",
    "bytes_in",  # in-order payload bytes delivered to the receive buffer
    "bytes_out",  # payload bytes emitted, retransmissions included
    "retransmits",  # segments re-sent (RTO go-back-N, fast retransmit, partial ACK)
    "rto_expirations",
    "fast_retransmits",
    "dup_acks_in",
    "dup_segments",  # fully duplicate segments (answered with an ACK)
    "dup_bytes",  # duplicate payload bytes trimmed
    "out_of_window",  # unacceptable segments (RFC 9293 §3.10.7.4 first)
    "beyond_window_bytes",  # payload trimmed at the right window edge
    "ooo_segments",  # out-of-order arrivals queued for reassembly
    "ooo_dropped",  # out-of-order segments dropped (block or byte limit of the reassembly queue)
    "mem_dropped",  # in-window payload dropped because the engine-wide memory limit was reached
    "no_ack_dropped",  # segment without ACK in a synchronized state
    "bad_ack",  # ACK of something never sent (answered with ACK or RST)
    "old_ack",  # ACK too far behind SND.UNA (RFC 5961 §5), dropped
    "challenge_acks",  # RFC 5961 §3.2/§4.2
    "oow_acks_limited",  # ACKs to invalid segments not sent: one per 0.5 s (RFC 5961 §7, as Linux)
    "rst_in",  # RSTs that reset the connection
    "rst_ignored",  # RSTs dropped (out of window, bad ACK in SYN-SENT, TIME-WAIT not at RCV.NXT)
    "time_wait_killed",  # TIME-WAIT ended by an RST at RCV.NXT (as Linux with tcp_rfc1337=0)
    "ooo_merged",  # out-of-order blocks merged with a neighbour
    "rst_out",
    "syn_absorbed",  # retransmitted SYNs while pending or in SYN-RECEIVED
    "syn_data_dropped",  # payload on a SYN (not accepted; peer retransmits)
    "zero_window_probes",
    "keepalive_probes",
    "window_updates",  # pure ACKs sent because the receive window opened
    "timeouts",  # gave up (retransmissions, probes, keepalive)
)


class TcpStats:
    __slots__ = _FIELDS

    segs_in: int
    segs_out: int
    bytes_in: int
    bytes_out: int
    retransmits: int
    rto_expirations: int
    fast_retransmits: int
    dup_acks_in: int
    dup_segments: int
    dup_bytes: int
    out_of_window: int
    beyond_window_bytes: int
    ooo_segments: int
    ooo_dropped: int
    mem_dropped: int
    no_ack_dropped: int
    bad_ack: int
    old_ack: int
    challenge_acks: int
    oow_acks_limited: int
    rst_in: int
    rst_ignored: int
    time_wait_killed: int
    ooo_merged: int
    rst_out: int
    syn_absorbed: int
    syn_data_dropped: int
    zero_window_probes: int
    keepalive_probes: int
    window_updates: int
    timeouts: int

    def __init__(self) -> None:
        self.segs_in = 0
        self.segs_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.retransmits = 0
        self.rto_expirations = 0
        self.fast_retransmits = 0
        self.dup_acks_in = 0
        self.dup_segments = 0
        self.dup_bytes = 0
        self.out_of_window = 0
        self.beyond_window_bytes = 0
        self.ooo_segments = 0
        self.ooo_dropped = 0
        self.mem_dropped = 0
        self.no_ack_dropped = 0
        self.bad_ack = 0
        self.old_ack = 0
        self.challenge_acks = 0
        self.oow_acks_limited = 0
        self.rst_in = 0
        self.rst_ignored = 0
        self.time_wait_killed = 0
        self.ooo_merged = 0
        self.rst_out = 0
        self.syn_absorbed = 0
        self.syn_data_dropped = 0
        self.zero_window_probes = 0
        self.keepalive_probes = 0
        self.window_updates = 0
        self.timeouts = 0

    def snapshot(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in _FIELDS}

    def __repr__(self) -> str:
        return "TcpStats(" + ", ".join(f"{k}={v}" for k, v in self.snapshot().items() if v) + ")"
