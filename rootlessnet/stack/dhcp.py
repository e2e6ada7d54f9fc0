"""Stack layer, DHCPv4 server (RFC 2131) for the guest link: payload in, payload out.

Contract: ``DhcpServer.handle(payload, client_mac, now)`` takes the UDP
payload of a client message (to port 67) and returns the UDP payload of the
reply (to port 68) or None.  Garbage is never raised: it is dropped and
counted in ``stats``.  ``reply_broadcast(reply)`` tells the engine where the
reply goes (RFC 2131 4.1).  Time is the caller's ``now`` (seconds); leases
expire lazily, when an address is looked at.

The server is authoritative for its (virtual, single-guest) link, as dnsmasq
with ``dhcp-authoritative``: an INIT-REBOOT or RENEWING request for a free
pool address it has no record of is granted instead of ignored (RFC 2131
4.3.2 asks non-authoritative servers to stay silent so several can share a
wire; here there is never a second server, and a restarted engine must not
leave a rebooted guest waiting for its timeouts).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from rootlessnet.wire import WireError
from rootlessnet.wire.dhcp import (
    OP_REQUEST,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    make_nak,
    make_reply,
)

__all__ = ["DhcpLease", "DhcpServer", "OFFER_HOLD", "DECLINE_HOLD"]

OFFER_HOLD = 60.0  # seconds an offered address stays reserved (RFC 2131 4.3.1, "a reasonable time")
DECLINE_HOLD = 600.0  # seconds a DECLINEd address stays out of the pool (RFC 2131 4.3.3)
_ZERO4 = bytes(4)

_STATS = (
    "rx", "bad", "not_request", "no_type", "ignored_type",
    "discover", "offer", "pool_exhausted",
    "request", "ack", "nak", "other_server", "no_record",
    "decline", "release", "inform",
)


@dataclass(frozen=True, slots=True)
class DhcpLease:
    """One address binding, as ``leases()`` shows it."""

    ip: bytes
    mac: bytes
    client_id: bytes  # option 61, or htype + chaddr when the client sent none
    expires: float
    bound: bool  # False: only offered (RFC 2131 4.3.1 reservation)
    hostname: str | None = None


def _ip(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _b(n: int) -> bytes:
    return n.to_bytes(4, "big")


class DhcpServer:
    """The engine's DHCP server (slirp4netns: pool 10.0.2.15-30, server/router 10.0.2.2, DNS 10.0.2.3)."""

    def __init__(
        self,
        server_ip: bytes,
        netmask: bytes,
        router: bytes,
        dns: list[bytes],
        pool_start: bytes,
        pool_end: bytes,
        lease_time: int = 86400,
        mtu: int | None = None,
        domain: str | None = None,
    ) -> None:
        for name, a in (("server_ip", server_ip), ("netmask", netmask), ("router", router),
                        ("pool_start", pool_start), ("pool_end", pool_end), *(("dns", d) for d in dns)):
            if len(a) != 4:
                raise ValueError(f"DhcpServer: {name} must be 4 bytes, got {a!r}")
        lo, hi, mask = _ip(pool_start), _ip(pool_end), _ip(netmask)
        if lo > hi:
            raise ValueError("DhcpServer: pool_start is after pool_end")
        if (lo & mask) != (_ip(server_ip) & mask) or (hi & mask) != (_ip(server_ip) & mask):
            raise ValueError("DhcpServer: the pool is not in the server's subnet")
        if not 1 <= lease_time <= 0xFFFFFFFE:
            raise ValueError("DhcpServer: lease_time must be 1..2**32-2 seconds")
        if mtu is not None and not 68 <= mtu <= 0xFFFF:
            raise ValueError("DhcpServer: mtu must be 68..65535 (RFC 2132 5.1)")
        self.server_ip = bytes(server_ip)
        self.netmask = bytes(netmask)
        self.router = bytes(router)
        self.dns = tuple(bytes(d) for d in dns)
        self.lease_time = lease_time
        self.mtu = mtu
        if domain is not None and not domain.isascii():
            raise ValueError("DhcpServer: domain must be ASCII (use the IDNA xn-- form)")
        self.domain = domain
        # Our own addresses are never handed out, even if the pool covers them.
        self._own = frozenset({_ip(server_ip), _ip(router), *(_ip(d) for d in dns)})
        self._pool = range(lo, hi + 1)
        self._by_ip: dict[int, DhcpLease] = {}  # kept after expiry: RFC 2131 4.3.1 "previous address"
        self._by_client: dict[bytes, int] = {}
        self._declined: dict[int, float] = {}  # ip -> until
        self.stats: dict[str, int] = dict.fromkeys(_STATS, 0)

    # --- public API -----------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        return dict(self.stats)

    def leases(self, now: float | None = None) -> list[DhcpLease]:
        """Snapshot of the bindings (offers included), live at ``now`` if given."""
        out = [x for x in self._by_ip.values() if now is None or x.expires > now]
        return sorted(out, key=lambda x: x.ip)

    @staticmethod
    def reply_broadcast(reply: bytes) -> bool:
        """Whether ``reply`` goes to 255.255.255.255 / ff:ff:ff:ff:ff:ff (RFC 2131 4.1).

        NAKs are always broadcast; a reply carrying ciaddr (renewal, INFORM)
        is unicast to ciaddr; otherwise the BROADCAST flag decides.  A client
        without an address (ciaddr 0) is broadcast to as well, flag or not:
        on a one-guest tap link this reaches the same guest, and it works
        for clients that cannot take unicast before configuring (slirp does
        the same).  Otherwise unicast to yiaddr at chaddr.
        """
        try:
            msg = DhcpMessage.parse(reply)
        except WireError:
            return True
        if msg.message_type == DhcpMessageType.NAK:
            return True
        return msg.ciaddr == _ZERO4

    def handle(self, payload: bytes, client_mac: bytes, now: float) -> bytes | None:
        self.stats["rx"] += 1
        try:
            msg = DhcpMessage.parse(payload)
        except WireError:
            self.stats["bad"] += 1
            return None
        if msg.op != OP_REQUEST:  # RFC 2131 2: servers only take BOOTREQUEST
            self.stats["not_request"] += 1
            return None
        mtype = msg.message_type
        if mtype is None:  # plain BOOTP (RFC 951) is not served
            self.stats["no_type"] += 1
            return None
        key = msg.client_id or bytes((msg.htype,)) + msg.chaddr  # RFC 2131 4.2
        if mtype == DhcpMessageType.DISCOVER:
            reply = self._discover(msg, key, client_mac, now)
        elif mtype == DhcpMessageType.REQUEST:
            reply = self._request(msg, key, client_mac, now)
        elif mtype == DhcpMessageType.DECLINE:
            self._decline(msg, key, now)
            reply = None
        elif mtype == DhcpMessageType.RELEASE:
            self._release(msg, key, now)
            reply = None
        elif mtype == DhcpMessageType.INFORM:
            self.stats["inform"] += 1
            # RFC 2131 4.3.5: parameters only, no lease, no yiaddr; ciaddr is copied.
            reply = self._reply(msg, DhcpMessageType.ACK, _ZERO4, None)
            self.stats["ack"] += 1
        else:  # OFFER/ACK/NAK from a client, or an unknown type
            self.stats["ignored_type"] += 1
            reply = None
        return None if reply is None else reply.emit()

    # --- message handlers -----------------------------------------------------

    def _discover(self, msg: DhcpMessage, key: bytes, mac: bytes, now: float) -> DhcpMessage | None:
        self.stats["discover"] += 1
        ip = self._choose(key, msg.requested_ip, now)
        if ip is None:
            self.stats["pool_exhausted"] += 1
            return None
        old = self._by_ip.get(ip)
        if old is not None and old.client_id == key and old.bound and old.expires > now:
            expires = old.expires  # an offer never shortens a live binding
            bound = True
        else:
            expires, bound = now + OFFER_HOLD, False
        self._bind(ip, key, mac, expires, bound, msg.hostname)
        self.stats["offer"] += 1
        return self._reply(msg, DhcpMessageType.OFFER, _b(ip), self._lease_for(msg))

    def _request(self, msg: DhcpMessage, key: bytes, mac: bytes, now: float) -> DhcpMessage | None:
        self.stats["request"] += 1
        sid, req, ciaddr = msg.server_id, msg.requested_ip, msg.ciaddr
        if sid is not None:
            # RFC 2131 4.3.2 SELECTING: server id, requested IP, ciaddr 0.
            if sid != self.server_ip:
                # The client took another server's offer: free ours.
                self.stats["other_server"] += 1
                n = self._by_client.get(key)
                lease = None if n is None else self._by_ip.get(n)
                if n is not None and lease is not None and not lease.bound:
                    self._by_ip[n] = replace(lease, expires=now)
                return None
            if req is None or ciaddr != _ZERO4:
                self.stats["bad"] += 1
                return None
            ip = _ip(req)
        elif req is not None and ciaddr == _ZERO4:
            ip = _ip(req)  # INIT-REBOOT: the client checks a remembered address
        elif req is None and ciaddr != _ZERO4:
            ip = _ip(ciaddr)  # RENEWING (unicast) or REBINDING (broadcast)
        else:
            self.stats["bad"] += 1
            return None
        if not self._in_pool(ip) or not self._available(ip, key, now):
            # Not ours to give (wrong subnet after a move, or someone else's):
            # RFC 2131 4.3.2 says NAK so the client restarts at INIT.
            self.stats["nak"] += 1
            return make_nak(msg, self.server_ip, "address not available")
        lease_time = self._lease_for(msg)
        self._bind(ip, key, mac, now + lease_time, True, msg.hostname)
        self.stats["ack"] += 1
        reply = self._reply(msg, DhcpMessageType.ACK, _b(ip), lease_time)
        # RFC 2131 table 3: an ACK carries the request's ciaddr (so it is
        # unicast to a renewing client, 4.1).
        return replace(reply, ciaddr=ciaddr)

    def _decline(self, msg: DhcpMessage, key: bytes, now: float) -> None:
        # RFC 2131 4.3.3: the client found the address in use (ARP probe).
        if msg.server_id != self.server_ip or msg.requested_ip is None:
            self.stats["bad"] += 1
            return None
        ip = _ip(msg.requested_ip)
        lease = self._by_ip.get(ip)
        if lease is None or lease.client_id != key:
            self.stats["no_record"] += 1
            return None
        self.stats["decline"] += 1
        self._forget(ip)
        self._declined[ip] = now + DECLINE_HOLD
        return None

    def _release(self, msg: DhcpMessage, key: bytes, now: float) -> None:
        # RFC 2131 4.3.4: free the address but keep the record, so the client
        # gets the same one back next time.
        ip = _ip(msg.ciaddr)
        lease = self._by_ip.get(ip)
        if msg.server_id not in (None, self.server_ip) or lease is None or lease.client_id != key:
            self.stats["no_record"] += 1
            return None
        self.stats["release"] += 1
        self._by_ip[ip] = replace(lease, expires=now, bound=False)
        return None

    # --- address bookkeeping --------------------------------------------------

    def _in_pool(self, ip: int) -> bool:
        return ip in self._pool and ip not in self._own  # range membership is O(1)

    def _available(self, ip: int, key: bytes, now: float) -> bool:
        until = self._declined.get(ip)
        if until is not None:
            if until > now:
                return False
            del self._declined[ip]
        lease = self._by_ip.get(ip)
        return lease is None or lease.client_id == key or lease.expires <= now

    def _choose(self, key: bytes, requested: bytes | None, now: float) -> int | None:
        """RFC 2131 4.3.1 order: current or previous binding, the requested
        address, then a fresh one (never-used first, else the longest-expired)."""
        prev = self._by_client.get(key)
        if prev is not None and self._available(prev, key, now):
            return prev
        if requested is not None:
            r = _ip(requested)
            if self._in_pool(r) and self._available(r, key, now):
                return r
        stale: tuple[float, int] | None = None
        # A linear walk: fine for slirp-sized pools (16 addresses).
        for n in self._pool:
            if n in self._own or not self._available(n, key, now):
                continue
            lease = self._by_ip.get(n)
            if lease is None:
                return n
            if stale is None or lease.expires < stale[0]:
                stale = (lease.expires, n)
        return None if stale is None else stale[1]

    def _bind(self, ip: int, key: bytes, mac: bytes, expires: float, bound: bool, host: str | None) -> None:
        old = self._by_client.get(key)
        if old is not None and old != ip:
            self._forget(old)  # one address per client
        prev_owner = self._by_ip.get(ip)
        if prev_owner is not None and prev_owner.client_id != key:
            self._by_client.pop(prev_owner.client_id, None)  # reusing an expired address
        self._by_ip[ip] = DhcpLease(_b(ip), bytes(mac), key, expires, bound, host)
        self._by_client[key] = ip

    def _forget(self, ip: int) -> None:
        lease = self._by_ip.pop(ip, None)
        if lease is not None and self._by_client.get(lease.client_id) == ip:
            del self._by_client[lease.client_id]

    def _lease_for(self, msg: DhcpMessage) -> int:
        # RFC 2131 4.3.1: the client may ask for a lease time; grant at most ours.
        v = msg.option(DhcpOption.LEASE_TIME)
        if v is not None and len(v) == 4:
            return max(1, min(self.lease_time, struct.unpack("!I", v)[0]))
        return self.lease_time

    def _reply(self, msg: DhcpMessage, mtype: int, yiaddr: bytes, lease_time: int | None) -> DhcpMessage:
        return make_reply(
            msg, mtype, server_id=self.server_ip, yiaddr=yiaddr, subnet_mask=self.netmask,
            router=self.router, dns=self.dns, lease_time=lease_time, mtu=self.mtu,
            domain_name=self.domain,
        )
