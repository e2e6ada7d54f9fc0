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

    def __init__(self) -> None:
        for f in _FIELDS:
            setattr(self, f, 0)

    def snapshot(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in _FIELDS}

    def __repr__(self) -> str:
        return "TcpStats(" + ", ".join(f"{k}={v}" for k, v in self.snapshot().items() if v) + ")"
