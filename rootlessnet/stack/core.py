"""stack.core: the sans-IO engine — guest frames in, frames and flow events out.

`Core.receive(frame, vnet_flags, now)` parses one Ethernet frame from the
guest's tap and answers what the engine itself owns (ARP, NDP, echo to the
virtual addresses, DHCP, static DNS); guest TCP connections are terminated
here (`stack.tcp`) and guest UDP/ICMP to the outside become typed *events*
(`TcpOpen`, `UdpDatagram`, `PingRequest`) for the shell, which owns host
sockets. The shell feeds host-side data back with `tcp_*`/`udp_out`/
`echo_reply`/`icmp_unreachable` and drains `take_frames()`.

The layers are in stack/iface (link, ip, icmp, udp, tcp); `Core` is the
last of their line and holds the state. Bad input is dropped and counted in
`stats` (names in docs/network.md); nothing the guest sends raises. Imports
no trio/socket/os/time.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from rootlessnet.stack import policy as pol
from rootlessnet.stack.config import NetConfig
from rootlessnet.stack.iface.events import Event, PingRequest, TcpOpen, UdpDatagram
from rootlessnet.stack.iface.ip import VNET_DATA_VALID, VNET_NEEDS_CSUM
from rootlessnet.stack.iface.link import BROADCAST, MAX_GUEST_IPS
from rootlessnet.stack.iface.tcp import Tcp, TcpFlow
from rootlessnet.stack.tcp.buffers import MemPool
from rootlessnet.stack.tcp.timers import TCP_CONFIG_FIELDS, TcpConfig
from rootlessnet.stack.timewait import TimeWaitTable
from rootlessnet.wire.frames import FrameBuilder

__all__ = ["Core", "TcpFlow", "TcpOpen", "UdpDatagram", "PingRequest", "Event", "BROADCAST", "MAX_GUEST_IPS",
           "VNET_NEEDS_CSUM", "VNET_DATA_VALID"]


def _fixed_iss() -> int:
    return 0x12345678


#: Called with every new Core (test suites check them all for internal errors; the compiled
#: Core's class cannot be patched).
ON_CREATE: list[Callable[["Core"], None]] = []


class Core(Tcp):
    """One guest's side of the engine (a port): every layer of stack.iface, and their state."""

    def __init__(self, cfg: NetConfig, *, vnet: bool = False, offload: bool = False,
                 rand32: Callable[[], int] = _fixed_iss, tcp_config: TcpConfig | None = None,
                 dhcp: Any = None, ndp: Any = None, resolver: Any = None):
        self.cfg = cfg
        self.policy = pol.Policy(cfg)
        self.stats = Counter()
        self.frames = []  # each item: [headers] or [headers, payload]
        self.events = []
        self.fb = FrameBuilder(cfg.gateway_mac, BROADCAST, vnet=vnet, offload=offload)
        self.guest_mac = None
        self.guest_ips = set()  # addresses of the subnet the guest uses (no ARP answers for them)
        self._own4 = frozenset((cfg.gateway, cfg.dns))
        self._pending_l2 = []  # frames waiting for the guest's MAC
        self.first_internal_error = None
        self.on_internal_error = None  # the shell logs it (once)
        self.ndp = ndp
        self.dhcp = dhcp
        self.resolver = resolver
        self.rand32 = rand32
        self.flows = {}
        self._touched = []
        self._gone = []
        self._timers = []
        self._timer_seq = 0
        lim = cfg.limits
        self.limits = lim
        self.mem = MemPool(lim.tcp_mem)
        self.tcp_cfg4 = tcp_config or TcpConfig(local_mss=cfg.mtu - 40, recv_buffer=lim.tcp_rmem,
                                                 send_buffer=lim.tcp_wmem, ack_every=0, default_peer_mss=536,
                                                 max_ooo_blocks=lim.ooo_blocks, mem=self.mem)
        self.tcp_cfg6 = TcpConfig(**{k: getattr(self.tcp_cfg4, k) for k in TCP_CONFIG_FIELDS} | {
            "local_mss": cfg.mtu - 60, "default_peer_mss": 1220})
        self.max_tx = (65535 - 80) if offload and vnet else None
        self._opts_cache = {}
        self.time_wait = TimeWaitTable(lim.time_wait, self.tcp_cfg4.time_wait)
        for hook in ON_CREATE:
            hook(self)

    def statistics(self) -> dict[str, Any]:
        snap: dict[str, Any] = dict(self.stats)
        snap["tcp_flows"] = len(self.flows)
        snap["tcp_time_wait_entries"] = len(self.time_wait)
        snap["tcp_mem_held"] = self.mem.used
        snap["tcp_mem_peak"] = self.mem.peak
        return snap
