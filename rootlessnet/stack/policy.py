"""stack.policy: where a guest's outbound flow goes on the host, or why not.

Pure address logic. The gateway address reaches the host's loopback only
with allow_host_loopback; the DNS address reaches the DNS upstream (port 53
only); other addresses of the virtual network never leave it; everything
else is subject to `outbound` (None = all, () = none, else CIDRs).
Host loopback (when allowed) and the DNS upstream stay reachable under
`outbound=none`.
"""

from __future__ import annotations

import ipaddress

from rootlessnet.stack.config import NetConfig

# refusal reasons (also counter names)
REFUSED_HOST_LOOPBACK = "refused_host_loopback"
REFUSED_OUTBOUND = "refused_outbound"
REFUSED_VIRTUAL = "refused_virtual_address"
REFUSED_LOOPBACK_DST = "refused_loopback_destination"

_LOOP4 = ipaddress.ip_network("127.0.0.0/8")


class Policy:
    def __init__(self, cfg: NetConfig):
        self.cfg = cfg
        self.gw4, self.dns4 = cfg.gateway, cfg.dns
        self.gw6, self.dns6 = cfg.gateway6, cfg.dns6
        self.net4 = cfg.cidr
        self.net6 = cfg.prefix6
        self.outbound = cfg.outbound
        lo, hi = cfg.dhcp_pool
        self._pool = (int.from_bytes(lo, "big"), int.from_bytes(hi, "big"))

    def translate(self, dst: bytes, port: int) -> tuple[str, int] | str:
        """(host address, port) to connect/send to, or a refusal reason string."""
        if dst == self.gw4:
            return ("127.0.0.1", port) if self.cfg.allow_host_loopback else REFUSED_HOST_LOOPBACK
        if dst == self.gw6:
            return ("::1", port) if self.cfg.allow_host_loopback else REFUSED_HOST_LOOPBACK
        if dst == self.dns4 or dst == self.dns6:
            if port == 53 and self.cfg.dns_upstream is not None:
                return self.cfg.dns_upstream
            return REFUSED_VIRTUAL
        addr = ipaddress.ip_address(dst)
        if addr.version == 6 and addr.ipv4_mapped is not None:
            # ::ffff:a.b.c.d reaches a.b.c.d over IPv4 on a dual-stack host: apply the IPv4 rules
            v4 = addr.ipv4_mapped.packed
            return self.translate(v4, port) if v4 not in (self.gw4, self.dns4) else REFUSED_VIRTUAL
        if addr in (self.net4 if addr.version == 4 else self.net6):
            return REFUSED_VIRTUAL
        if addr.is_loopback or addr.is_unspecified or addr.is_multicast or addr.is_link_local:
            return REFUSED_LOOPBACK_DST
        if self.outbound is not None and not any(addr in n for n in self.outbound if n.version == addr.version):
            return REFUSED_OUTBOUND
        return (str(addr), port)

    def is_virtual(self, dst: bytes) -> bool:
        """An address the engine itself owns (answers ARP/NDP and echo for)."""
        if len(dst) == 4:
            if dst == self.cfg.guest or ipaddress.IPv4Address(dst) not in self.net4:
                return False
            n = int.from_bytes(dst, "big")
            # DHCP pool addresses belong to guests (RFC 5227 probes must go unanswered)
            return not self._pool[0] <= n <= self._pool[1]
        return dst in (self.gw6, self.dns6, self.cfg.link_local6)
