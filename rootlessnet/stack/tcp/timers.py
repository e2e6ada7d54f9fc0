"""rootlessnet.stack.tcp.timers: retransmission timeout estimation (RFC 6298) and connection config.

``RtoEstimator`` implements RFC 6298 §2 (SRTT/RTTVAR, K=4, alpha=1/8,
beta=1/4) with clock granularity G taken as 1 ms, exponential backoff (§5.5)
and Karn's algorithm (the caller never samples a retransmitted segment).
Deviation, as Linux does: the minimum RTO is 200 ms instead of RFC 6298's 1 s
(§2.4 "SHOULD"), because the guest sits on a tap device with sub-ms RTT.
"""

from __future__ import annotations

__all__ = ["RtoEstimator", "TcpConfig", "TCP_CONFIG_FIELDS"]


class RtoEstimator:
    __slots__ = ("srtt", "rttvar", "rto", "_base", "rto_min", "rto_max")

    def __init__(self, initial: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto_min = rto_min
        self.rto_max = rto_max
        self._base = initial  # RTO before backoff
        self.rto = initial

    def sample(self, r: float) -> None:
        """Feed one RTT measurement (RFC 6298 §2.2/2.3); resets the backoff."""
        if r < 0:
            return
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        base = self.srtt + max(0.001, 4 * self.rttvar)
        base = min(max(base, self.rto_min), self.rto_max)
        self._base = base
        self.rto = base

    def backoff(self) -> None:
        """RFC 6298 §5.5: double the RTO (bounded by ``rto_max``)."""
        self.rto = min(self.rto * 2, self.rto_max)

    def reset_backoff(self) -> None:
        self.rto = self._base

    def fallback(self, rto: float) -> None:
        """RFC 6298 §5.7: the handshake gave no RTT sample (its SYN was retransmitted, Karn):
        data starts with an RTO of 3 s, as Linux's TCP_TIMEOUT_FALLBACK. No-op once sampled."""
        if self.srtt is None:
            self._base = self.rto = min(rto, self.rto_max)


class TcpConfig:
    """Per-engine TCP settings, shared by many connections (read-only by convention)."""

    __slots__ = (
        "local_mss",
        "recv_buffer",
        "send_buffer",
        "window_scaling",
        "default_peer_mss",
        "ack_every",
        "delayed_ack",
        "rto_initial",
        "rto_min",
        "rto_max",
        "max_retries",
        "syn_retries",
        "time_wait",
        "fin_wait_2_timeout",
        "keepalive",
        "initial_window_segments",
        "quickack",
        "max_ooo_blocks",
        "mem",
        "rto_fallback",
        "oow_ack_interval",
    )

    def __init__(
        self,
        *,
        local_mss: int = 1460,
        recv_buffer: int = 256 * 1024,
        send_buffer: int = 256 * 1024,
        window_scaling: bool = True,
        default_peer_mss: int = 536,  # RFC 9293 §3.7.1 (IPv4); the engine passes 1220 for IPv6
        ack_every: int = 2,  # also ACK every this many segments, whatever their size (0: only Linux's byte rule)
        delayed_ack: float = 0.040,  # Linux's delack floor (RFC 9293: < 0.5 s)
        rto_initial: float = 1.0,  # RFC 6298 §2.1
        rto_min: float = 0.2,  # Linux TCP_RTO_MIN (RFC 6298 says 1 s)
        rto_max: float = 120.0,  # Linux TCP_RTO_MAX
        max_retries: int = 15,  # Linux tcp_retries2
        syn_retries: int = 6,  # Linux tcp_syn_retries
        time_wait: float = 60.0,  # 2MSL, Linux TCP_TIMEWAIT_LEN
        fin_wait_2_timeout: float = 60.0,  # Linux tcp_fin_timeout (orphans only)
        keepalive: tuple[float, float, int] | None = None,  # (idle, interval, count)
        initial_window_segments: int = 10,  # RFC 6928
        quickack: int = 16,  # quick ACKs at the start and after idle (Linux TCP_MAX_QUICKACKS); 0: none
        max_ooo_blocks: int = 256,
        mem=None,  # a buffers.MemPool shared by the engine's connections (None: no global limit)
        rto_fallback: float = 3.0,  # RFC 6298 §5.7 (no RTT sample from the handshake), Linux TCP_TIMEOUT_FALLBACK
        oow_ack_interval: float = 0.5,  # RFC 5961 §7 ACK throttling, Linux tcp_invalid_ratelimit (0: off)
    ) -> None:
        if local_mss < 64 or recv_buffer < 1 or send_buffer < 1 or ack_every < 0:
            raise ValueError("TcpConfig: local_mss >= 64, buffers >= 1, ack_every >= 0")
        self.local_mss = local_mss
        self.recv_buffer = recv_buffer
        self.send_buffer = send_buffer
        self.window_scaling = window_scaling
        self.default_peer_mss = default_peer_mss
        self.ack_every = ack_every
        self.delayed_ack = delayed_ack
        self.rto_initial = rto_initial
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.max_retries = max_retries
        self.syn_retries = syn_retries
        self.time_wait = time_wait
        self.fin_wait_2_timeout = fin_wait_2_timeout
        self.keepalive = keepalive
        self.initial_window_segments = initial_window_segments
        self.quickack = quickack
        self.max_ooo_blocks = max_ooo_blocks
        self.mem = mem
        self.rto_fallback = rto_fallback
        self.oow_ack_interval = oow_ack_interval


#: TcpConfig's settings by name (a copy with some changed: ``TcpConfig(**{f: getattr(c, f) ...} | changes)``)
TCP_CONFIG_FIELDS: tuple[str, ...] = ("local_mss", "recv_buffer", "send_buffer", "window_scaling", "default_peer_mss", "ack_every", "delayed_ack", "rto_initial", "rto_min", "rto_max", "max_retries", "syn_retries", "time_wait", "fin_wait_2_timeout", "keepalive", "initial_window_segments", "quickack", "max_ooo_blocks", "mem", "rto_fallback", "oow_ack_interval")
