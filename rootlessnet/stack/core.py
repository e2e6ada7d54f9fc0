"""stack.core: the sans-IO engine — guest frames in, frames and flow events out.

`Core.receive(frame, vnet_flags, now)` parses one Ethernet frame from the
guest's tap and answers what the engine itself owns (ARP, NDP, echo to the
virtual addresses, DHCP, static DNS); guest TCP connections are terminated
here (`stack.tcp`) and guest UDP/ICMP to the outside become *events* for the
shell, which owns host sockets. The shell feeds host-side data back with
`tcp_*`/`udp_out`/`icmp_*` and drains `take_frames()`.

Bad input is dropped and counted in `stats` (names in docs/network.md);
nothing the guest sends raises. Imports no trio/socket/os/time.
"""

from __future__ import annotations

import heapq
import struct
import traceback
from collections import Counter
from typing import Any, Callable

from rootlessnet.stack import policy as pol
from rootlessnet.stack.config import NetConfig
from rootlessnet.stack.frames import ETH, IP4, IP6, TCP, UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, FrameBuilder
from rootlessnet.stack.tcp.connection import TcpConnection, TcpError, rst_for
from rootlessnet.stack.tcp.notice import Notice
from rootlessnet.stack.tcp.segment import Control, Segment
from rootlessnet.stack.tcp.buffers import MemPool
from rootlessnet.stack.tcp.states import State
from rootlessnet.stack.tcp.timers import TcpConfig
from rootlessnet.stack.timewait import TW_ACK, TW_KILL, TW_SYN, TimeWaitTable
from rootlessnet.wire import WireError
from rootlessnet.wire.checksum import ones_sum
from rootlessnet.wire.tcp import TcpOptions, emit_options, parse_options

VNET_NEEDS_CSUM, VNET_DATA_VALID = 1, 2
MAX_GUEST_IPS = 1024
BROADCAST = b"\xff" * 6
_U16 = struct.Struct("!H")
_HH = struct.Struct("!HH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_V6_LOOPBACK = bytes(15) + b"\x01"
_SYN_IN_TIME_WAIT = int(Notice.SYN_IN_TIME_WAIT)
_N_RESET = int(Notice.RESET)
_N_CLOSED = int(Notice.CLOSED)
_TIME_WAIT = State.TIME_WAIT
from rootlessnet.stack.dns import DnsOverTcp as _DnsOverTcp  # noqa: E402
_V6_ANY = bytes(16)

# events for the shell
EV_TCP_OPEN = "tcp_open"  # (EV, flow): connect the host side, then tcp_accept/tcp_refuse
EV_UDP = "udp"  # (EV, src, sport, dst, dport, payload)
EV_PING = "ping"  # (EV, src, dst, ident, seq, data)


class TcpFlow:
    """One guest TCP connection and the shell's handle for its host socket."""

    __slots__ = ("conn", "gip", "gport", "rip", "rport", "key", "handle", "notice", "touched", "deadline", "mss")

    def __init__(self, conn: TcpConnection, gip: bytes, gport: int, rip: bytes, rport: int):
        self.conn = conn
        self.gip, self.gport, self.rip, self.rport = gip, gport, rip, rport
        self.key = (gip, gport, rip, rport)
        self.handle: Any = None
        self.notice = 0
        self.touched = False
        self.deadline: float | None = None
        self.mss = conn.send_mss


class Core:
    def __init__(self, cfg: NetConfig, *, vnet: bool = False, offload: bool = False,
                 rand32: Callable[[], int] = lambda: 0x12345678, tcp_config: TcpConfig | None = None,
                 dhcp: Any = None, ndp: Any = None, resolver: Any = None):
        self.cfg = cfg
        self.policy = pol.Policy(cfg)
        self.stats: Counter[str] = Counter()
        self.frames: list[list] = []  # each item: [headers, payload] or [frame]
        self.events: list[tuple] = []
        self.fb = FrameBuilder(cfg.gateway_mac, BROADCAST, vnet=vnet, offload=offload)
        self.guest_mac: bytes | None = None
        self.guest_ips: set[bytes] = set()  # addresses of the subnet the guest uses (no ARP answers for them)
        self._own4 = frozenset((cfg.gateway, cfg.dns))
        self.rand32 = rand32
        self.flows: dict[tuple, TcpFlow] = {}
        self._touched: list[TcpFlow] = []
        self._gone: list[TcpFlow] = []
        self._timers: list[tuple[float, int, TcpFlow]] = []
        self._timer_seq = 0
        self._pending_l2: list[list] = []  # frames waiting for the guest's MAC
        mss4 = cfg.mtu - 40
        lim = cfg.limits
        self.limits = lim
        self.mem = MemPool(lim.tcp_mem)
        self.tcp_cfg4 = tcp_config or TcpConfig(local_mss=mss4, recv_buffer=lim.tcp_rmem, send_buffer=lim.tcp_wmem,
                                                 ack_every=0, default_peer_mss=536,
                                                 max_ooo_blocks=lim.ooo_blocks, mem=self.mem)
        self.tcp_cfg6 = TcpConfig(**{k: getattr(self.tcp_cfg4, k) for k in self.tcp_cfg4.__slots__} | {
            "local_mss": cfg.mtu - 60, "default_peer_mss": 1220})
        self.max_tx = (65535 - 80) if offload and vnet else None
        self.dhcp = dhcp
        self.ndp = ndp
        self.resolver = resolver
        self._opts_cache: dict[tuple, bytes] = {}
        self.time_wait = TimeWaitTable(lim.time_wait, self.tcp_cfg4.time_wait)
        self.first_internal_error: str | None = None
        self.on_internal_error: Callable[[str], None] | None = None  # the shell logs it (once)

    # ------------------------------------------------------------------ output
    def _out(self, item: list) -> None:
        if self.guest_mac is None:
            if not self._pending_l2:
                self._arp_request(self.cfg.guest)
            if len(self._pending_l2) < 256:
                self._pending_l2.append(item)
            else:
                self.stats["drop_no_guest_mac"] += 1
            return
        self.frames.append(item)

    def _arp_request(self, target: bytes) -> None:
        """Who has TARGET? (used to learn the guest's MAC before talking first)."""
        req = _ARP.pack(1, 0x0800, 6, 4, 1, self.cfg.gateway_mac, self.cfg.gateway, b"\0" * 6, target)
        self.frames.append([self.fb.l2_frame(BROADCAST, 0x0806, req)])
        self.stats["arp_requests"] += 1

    def _note_guest_ip(self, ip: bytes) -> None:
        """An address the guest uses: the engine stops answering ARP for it (bounded set)."""
        if ip not in self.guest_ips and len(ip) == 4 and ip not in self._own4 and self.policy.is_virtual(ip) \
                and len(self.guest_ips) < MAX_GUEST_IPS:
            self.guest_ips.add(ip)

    def take_frames(self) -> list[list]:
        out = self.frames
        self.frames = []
        return out

    def _learn_mac(self, mac: bytes) -> None:
        if mac != self.guest_mac and not (mac[0] & 1):
            self.guest_mac = mac
            self.fb.dst_mac = mac
            if self._pending_l2:
                for item in self._pending_l2:
                    h = item[0]
                    off = 10 if self.fb.vnet else 0
                    item[0] = h[:off] + mac + h[off + 6 :]
                    self.frames.append(item)
                self._pending_l2.clear()

    # ------------------------------------------------------------------ input
    def receive(self, frame, vflags: int, now: float) -> None:
        """One Ethernet frame from the guest. Never raises.

        Only a codec's `WireError` means malformed input (counted as
        ``drop_malformed``); any other exception is a bug in the engine: it is
        counted as ``internal_errors``, the first traceback is kept in
        ``first_internal_error`` and handed to ``on_internal_error``, and the
        frame is dropped so the engine keeps serving everyone else.
        """
        try:
            self._receive(memoryview(frame), vflags, now)
        except WireError:
            self.stats["drop_malformed"] += 1
        except Exception as e:  # noqa: BLE001 - a bug, not bad input: counted and reported, never fatal
            self.internal_error(e)

    def internal_error(self, exc: BaseException) -> None:
        """Count a bug (an exception that is not a codec error) and report the first one."""
        self.stats["internal_errors"] += 1
        if self.first_internal_error is None:
            self.first_internal_error = "".join(traceback.format_exception(exc))
            if self.on_internal_error is not None:
                self.on_internal_error(self.first_internal_error)

    def _receive(self, mv: memoryview, vflags: int, now: float) -> None:
        if len(mv) < 14:
            self.stats["drop_runt"] += 1
            return
        dst_mac, src_mac, etype = ETH.unpack_from(mv, 0)
        if src_mac[0] & 1:
            self.stats["drop_bad_src_mac"] += 1
            return
        if dst_mac != self.cfg.gateway_mac and not (dst_mac[0] & 1):
            self.stats["drop_not_for_us"] += 1
            return
        if etype == 0x0800:
            self._ip4(mv[14:], vflags, now, src_mac)
        elif etype == 0x86DD:
            self._ip6(mv[14:], vflags, now, src_mac)
        elif etype == 0x0806:
            self._arp(mv[14:], src_mac)
        else:
            self.stats["drop_ethertype"] += 1

    # -- ARP (RFC 826) -----------------------------------------------------------
    def _arp(self, mv: memoryview, src_mac: bytes) -> None:
        if len(mv) < 28:
            self.stats["drop_arp_short"] += 1
            return
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(mv, 0)
        if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
            self.stats["drop_arp_bad"] += 1
            return
        self._learn_mac(src_mac)
        if spa in self._own4:
            # A guest claiming the gateway or the DNS address (a gratuitous ARP, a conflict):
            # counted, and the engine goes on answering for its own addresses.
            self.stats["arp_conflict"] += 1
        elif spa != b"\0\0\0\0":
            self._note_guest_ip(spa)
        if op == 1 and tpa not in self.guest_ips and self.policy.is_virtual(tpa):
            reply = _ARP.pack(1, 0x0800, 6, 4, 2, self.cfg.gateway_mac, tpa, sha, spa)
            self._out([self.fb.l2_frame(sha, 0x0806, reply)])
            self.stats["arp_replies"] += 1
        else:
            self.stats["arp_ignored"] += 1

    # -- IPv4 (RFC 791) ----------------------------------------------------------
    def _ip4(self, mv: memoryview, vflags: int, now: float, src_mac: bytes) -> bool:
        n = len(mv)
        if n < 20:
            self.stats["drop_ip4_short"] += 1
            return False
        vihl = mv[0]
        ihl = (vihl & 15) * 4
        total = _U16.unpack_from(mv, 2)[0]
        if vihl >> 4 != 4 or ihl < 20 or total < ihl or total > n:
            self.stats["drop_ip4_bad_header"] += 1
            return False
        if ones_sum(mv[:ihl]) != 0xFFFF:
            self.stats["drop_ip4_bad_checksum"] += 1
            return False
        frag = _U16.unpack_from(mv, 6)[0]
        if frag & 0x3FFF:  # MF or an offset: fragments are not reassembled
            self.stats["drop_ip4_fragment"] += 1
            return True
        proto = mv[9]
        src = bytes(mv[12:16])
        dst = bytes(mv[16:20])
        if src[0] == 127 or src[0] >= 224 or src == b"\0\0\0\0" and proto != 17:
            self.stats["drop_ip4_bad_source"] += 1
            return False
        if src in self._own4:
            self.stats["drop_ip4_spoofed_own"] += 1  # the engine's own address as a source
            return False
        self._learn_mac(src_mac)
        l4 = mv[ihl:total]
        if proto == 6:
            self._tcp_in(src, dst, l4, vflags, now, mv[:total])
        elif proto == 17:
            self._udp_in(src, dst, l4, vflags, now, mv[:total])
        elif proto == 1:
            self._icmp4_in(src, dst, l4, mv[:total])
        else:
            self.stats["drop_ip4_proto"] += 1
        return True

    def _pseudo4(self, src: bytes, dst: bytes, proto: int, length: int) -> int:
        return ones_sum(src + dst + struct.pack("!xBH", proto, length))

    def _pseudo6(self, src: bytes, dst: bytes, proto: int, length: int) -> int:
        return ones_sum(src + dst + struct.pack("!IxxxB", length, proto))

    def _l4_csum_ok(self, src: bytes, dst: bytes, proto: int, l4: memoryview, vflags: int) -> bool:
        if vflags & (VNET_NEEDS_CSUM | VNET_DATA_VALID):
            return True  # the guest kernel left it to the device (us): trust it
        ps = (self._pseudo4 if len(src) == 4 else self._pseudo6)(src, dst, proto, len(l4))
        return ones_sum(l4, ps) == 0xFFFF

    # -- IPv6 (RFC 8200) ---------------------------------------------------------
    def _ip6(self, mv: memoryview, vflags: int, now: float, src_mac: bytes) -> None:
        if len(mv) < 40:
            self.stats["drop_ip6_short"] += 1
            return
        vtf, plen, nh, hlim, src, dst = IP6.unpack_from(mv, 0)
        if vtf >> 28 != 6 or 40 + plen > len(mv):
            self.stats["drop_ip6_bad_header"] += 1
            return
        if not self.cfg.ipv6:
            self.stats["drop_ip6_disabled"] += 1
            return
        if src[0] != 0xFF and src != _V6_ANY:
            self._learn_mac(src_mac)
        if src[0] == 0xFF or src == _V6_LOOPBACK or (src == _V6_ANY and nh != 58):
            self.stats["drop_ip6_bad_source"] += 1  # multicast, loopback; :: only for NDP (DAD)
            return
        l4 = mv[40 : 40 + plen]
        if nh == 6:
            self._tcp_in(src, dst, l4, vflags, now, mv[: 40 + plen])
        elif nh == 17:
            self._udp_in(src, dst, l4, vflags, now, mv[: 40 + plen])
        elif nh == 58:
            self._icmp6_in(src, dst, hlim, l4, vflags, now, src_mac, mv[: 40 + plen])
        elif nh == 44:
            self.stats["drop_ip6_fragment"] += 1
        else:
            self.stats["drop_ip6_next_header"] += 1

    # -- ICMP (RFC 792) ------------------------------------------------------------
    def _icmp4_in(self, src: bytes, dst: bytes, l4: memoryview, packet: memoryview) -> None:
        if len(l4) < 8:
            self.stats["drop_icmp_short"] += 1
            return
        if ones_sum(l4) != 0xFFFF:
            self.stats["drop_icmp_bad_checksum"] += 1
            return
        itype, code = l4[0], l4[1]
        if itype != 8 or code != 0:
            self.stats["icmp_ignored"] += 1  # errors from the guest about our flows: nothing to do
            return
        ident, seq = _HH.unpack_from(l4, 4)
        data = bytes(l4[8:])
        if dst == self.cfg.gateway or dst == self.cfg.dns or self.policy.is_virtual(dst):
            self.icmp4_echo_reply(dst, src, ident, seq, data)
            self.stats["icmp_echo_local"] += 1
            return
        self.events.append((EV_PING, src, dst, ident, seq, data))

    def icmp4_echo_reply(self, src: bytes, dst: bytes, ident: int, seq: int, data: bytes) -> None:
        msg = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + data
        msg = msg[:2] + _U16.pack(0xFFFF - ones_sum(msg)) + msg[4:]
        self._out([self.fb.ip_frame(src, dst, 1, msg)])

    def icmp_unreachable(self, packet: bytes, code: int) -> None:
        """ICMP destination unreachable (or ICMPv6 type 1) about a guest packet."""
        if not packet:
            return
        src, dst = (packet[12:16], packet[16:20]) if packet[0] >> 4 == 4 else (packet[8:24], packet[24:40])
        if len(src) == 4:
            quote = packet[:548]
            msg = struct.pack("!BBHI", 3, code, 0, 0) + quote
            msg = msg[:2] + _U16.pack(0xFFFF - ones_sum(msg)) + msg[4:]
            self._out([self.fb.ip_frame(dst, src, 1, msg)])
        else:
            code6 = {1: 3, 3: 4, 13: 1, 10: 1}.get(code, 0)  # host->address, port->port, admin->admin
            quote = packet[: 1280 - 48]
            msg = struct.pack("!BBHI", 1, code6, 0, 0) + quote
            ck = 0xFFFF - ones_sum(msg, self._pseudo6(dst, src, 58, len(msg)))
            msg = msg[:2] + _U16.pack(ck) + msg[4:]
            self._out([self.fb.ip_frame(dst, src, 58, msg)])
        self.stats["icmp_unreachable_sent"] += 1

    def _icmp6_in(self, src, dst, hlim, l4: memoryview, vflags, now, src_mac, packet) -> None:
        if len(l4) < 8 or not self._l4_csum_ok(src, dst, 58, l4, 0):
            self.stats["drop_icmp6_bad"] += 1
            return
        itype = l4[0]
        if 133 <= itype <= 137:
            if self.ndp is None:
                self.stats["drop_ndp_disabled"] += 1
                return
            for r in self.ndp.handle(src, dst, hlim, bytes(l4), src_mac, now):
                self._ndp_out(r)
            return
        if itype == 128 and l4[1] == 0:
            ident, seq = _HH.unpack_from(l4, 4)
            data = bytes(l4[8:])
            if self.policy.is_virtual(dst):
                self.icmp6_echo_reply(dst, src, ident, seq, data)
                self.stats["icmp6_echo_local"] += 1
            else:
                self.events.append((EV_PING, src, dst, ident, seq, data))
            return
        self.stats["icmp6_ignored"] += 1

    def _ndp_out(self, r) -> None:
        frame = self.fb.ip_frame(r.src, r.dst, 58, r.icmp, dst_mac=r.dst_mac, hop_limit=255)
        self.frames.append([frame])  # NDP goes out even before the guest's MAC is known (multicast)

    def ndp_poll(self, now: float) -> float | None:
        """Send due unsolicited router advertisements; the next time to call again."""
        if self.ndp is None:
            return None
        r = self.ndp.unsolicited_ra(now)
        if r is not None:
            self._ndp_out(r)
        return self.ndp.poll_at()

    def icmp6_echo_reply(self, src: bytes, dst: bytes, ident: int, seq: int, data: bytes) -> None:
        msg = struct.pack("!BBHHH", 129, 0, 0, ident, seq) + data
        ck = 0xFFFF - ones_sum(msg, self._pseudo6(src, dst, 58, len(msg)))
        msg = msg[:2] + _U16.pack(ck) + msg[4:]
        self._out([self.fb.ip_frame(src, dst, 58, msg)])

    def echo_reply(self, src: bytes, dst: bytes, ident: int, seq: int, data: bytes) -> None:
        """A reply from the host's ping socket, back to the guest."""
        (self.icmp4_echo_reply if len(src) == 4 else self.icmp6_echo_reply)(src, dst, ident, seq, data)

    # -- UDP (RFC 768) -------------------------------------------------------------
    def _udp_in(self, src: bytes, dst: bytes, l4: memoryview, vflags: int, now: float, packet: memoryview) -> None:
        if len(l4) < 8:
            self.stats["drop_udp_short"] += 1
            return
        sport, dport, ulen, csum = UDP.unpack_from(l4, 0)
        if ulen < 8 or ulen > len(l4):
            self.stats["drop_udp_bad_length"] += 1
            return
        hl = len(packet) - len(l4)  # IP header length, options included
        l4 = l4[:ulen]
        if (csum or len(src) == 16) and not self._l4_csum_ok(src, dst, 17, l4, vflags):
            self.stats["drop_udp_bad_checksum"] += 1
            return
        payload = bytes(l4[8:])
        if dport == 67 and self.dhcp is not None and len(src) == 4 and (dst == b"\xff\xff\xff\xff" or dst == self.cfg.gateway):
            reply = self.dhcp.handle(payload, self.guest_mac or b"\0" * 6, now)
            if reply is not None:
                yi = reply[16:20]
                bcast = self.dhcp.reply_broadcast(reply)
                to = b"\xff\xff\xff\xff" if bcast else yi
                for f in self.fb.udp_frames(self.cfg.gateway, to, 67, 68, reply, self.cfg.mtu,
                                           dst_mac=BROADCAST if bcast else None):
                    self._out([f])
                self.stats["dhcp_replies"] += 1
            else:
                self.stats["drop_dhcp"] += 1
            return
        if src == b"\0\0\0\0":
            self.stats["drop_ip4_bad_source"] += 1
            return
        self._note_guest_ip(src)
        if dport == 53 and self.resolver is not None and (dst == self.cfg.dns or dst == self.cfg.dns6):
            answer = self.resolver.answer(payload)
            if answer is not None:
                self.udp_out(dst, 53, src, sport, answer)
                self.stats["dns_static_answers"] += 1
            else:
                self.stats["drop_dns_static"] += 1
            return
        self.events.append((EV_UDP, src, sport, dst, dport, payload, bytes(packet[: hl + 8])))

    def udp_out(self, src: bytes, sport: int, dst: bytes, dport: int, payload: bytes) -> None:
        for f in self.fb.udp_frames(src, dst, sport, dport, payload, self.cfg.mtu):
            self._out([f])

    # -- TCP (RFC 9293) --------------------------------------------------------------
    def _tcp_in(self, src: bytes, dst: bytes, l4: memoryview, vflags: int, now: float, packet: memoryview) -> None:
        n = len(l4)
        if n < 20:
            self.stats["drop_tcp_short"] += 1
            return
        sport, dport, seq, ack, off, flags, win, _csum, _urg = TCP.unpack_from(l4, 0)
        thl = (off >> 4) * 4
        if thl < 20 or thl > n:
            self.stats["drop_tcp_bad_offset"] += 1
            return
        if not (vflags & (VNET_NEEDS_CSUM | VNET_DATA_VALID)) and not self._l4_csum_ok(src, dst, 6, l4, 0):
            self.stats["drop_tcp_bad_checksum"] += 1
            return
        if flags & TCP_SYN:
            if flags & (TCP_RST | TCP_FIN):
                self.stats["drop_tcp_bad_flags"] += 1
                return
            control = Control.SYN
        elif flags & TCP_RST:
            control = Control.RST
        elif flags & TCP_FIN:
            control = Control.FIN
        elif flags & TCP_PSH:
            control = Control.PSH
        else:
            control = Control.NONE
        if thl > 20:
            o = parse_options(l4[20:thl])
            seg = Segment(seq, ack if flags & TCP_ACK else None, control, win, l4[thl:], mss=o.mss, wscale=o.wscale,
                          sack_permitted=o.sack_permitted, sack_blocks=o.sack_blocks, timestamps=o.timestamps)
        else:
            seg = Segment(seq, ack if flags & TCP_ACK else None, control, win, l4[thl:])
        key = (src, sport, dst, dport)
        flow = self.flows.get(key)
        if flow is None:
            tw = self.time_wait.get(key) if self.time_wait.entries else None
            if tw is not None:
                self._time_wait_in(tw, seg, now)
                return
            if control is Control.SYN and seg.ack is None:
                self._tcp_new(src, sport, dst, dport, seg, now)
                return
            self.stats["tcp_no_flow"] += 1
            reply = rst_for(seg)
            if reply is not None:
                self._emit_segment(dst, src, dport, sport, reply, 1460)
            return
        n = flow.conn.receive(seg, now)
        if n & _SYN_IN_TIME_WAIT:
            # The new incarnation takes the 4-tuple; the old one (its data still unread by the
            # host, or it would be in the TIME-WAIT table) is handed back to the shell as closed.
            self._free(flow)
            if type(flow.handle) is _DnsOverTcp:
                flow.conn.release()
            else:
                flow.notice |= _N_CLOSED
                self._gone.append(flow)
            self._tcp_new(src, sport, dst, dport, seg, now)
            return
        flow.notice |= n
        self._touch(flow)

    def _time_wait_in(self, tw, seg: Segment, now: float) -> None:
        """A segment for a connection in the TIME-WAIT table (stack.timewait)."""
        gip, gport, rip, rport = tw.key
        action = self.time_wait.process(tw, seg, now)
        if action == TW_ACK:
            self.stats["tcp_time_wait_acks"] += 1
            self._emit_segment(rip, gip, rport, gport, tw.ack(), 1460)
        elif action == TW_KILL:
            self.stats["tcp_time_wait_killed"] += 1
        elif action == TW_SYN:
            self.stats["tcp_time_wait_reused"] += 1
            self._tcp_new(gip, gport, rip, rport, seg, now, iss=tw.new_iss())

    def _to_time_wait(self, flow: TcpFlow, now: float) -> None:
        """The connection reached TIME-WAIT and the shell has read everything: keep only its numbers."""
        conn = flow.conn
        if self.time_wait.add(flow.key, conn.rcv_nxt, conn.snd_nxt, conn.time_wait_window(), now):
            self.stats["tcp_time_wait"] += 1
        else:
            self.stats["tcp_time_wait_overflow"] += 1
        self._free(flow)

    def _tcp_new(self, src: bytes, sport: int, dst: bytes, dport: int, seg: Segment, now: float,
                 iss: int | None = None) -> None:
        if len(self.flows) >= self.limits.tcp_flows:
            self.stats["tcp_refused_table_full"] += 1
            self._emit_segment(dst, src, dport, sport, rst_for(seg), 1460)
            return
        cfg = self.tcp_cfg4 if len(src) == 4 else self.tcp_cfg6
        if iss is None:
            iss = self.rand32() & 0xFFFFFFFF
        conn = TcpConnection.from_syn(seg, now=now, iss=iss, config=cfg)
        if self.max_tx:
            conn.max_tx_payload = max(conn.send_mss, (self.max_tx // conn.send_mss) * conn.send_mss)
        flow = TcpFlow(conn, src, sport, dst, dport)
        self.flows[flow.key] = flow
        self._note_guest_ip(src)
        self.stats["tcp_syn"] += 1
        if dport == 53 and self.resolver is not None and (dst == self.cfg.dns or dst == self.cfg.dns6):
            # A static table answers every transport: DNS over TCP is served here, nothing leaves.
            flow.handle = _DnsOverTcp(self.resolver)
            self.stats["dns_tcp_static"] += 1
            conn.accept(now)
            self._touch(flow)
            return
        dest = self.policy.translate(dst, dport)
        if isinstance(dest, str):
            self.stats[dest] += 1
            self.tcp_refuse(flow)
            return
        flow.handle = dest
        self.events.append((EV_TCP_OPEN, flow))

    def tcp_connect(self, src: bytes, sport: int, dst: bytes, dport: int, now: float) -> TcpFlow | None:
        """Active open towards the guest (port forwarding): src:sport is who the guest
        sees connecting. None if that 4-tuple is in use."""
        key = (dst, dport, src, sport)
        if key in self.flows:
            return None
        cfg = self.tcp_cfg4 if len(src) == 4 else self.tcp_cfg6
        conn = TcpConnection.connect(now=now, iss=self.rand32() & 0xFFFFFFFF, config=cfg)
        if self.max_tx:
            conn.max_tx_payload = self.max_tx
        flow = TcpFlow(conn, dst, dport, src, sport)
        self.flows[key] = flow
        self.stats["tcp_forward_connects"] += 1
        self._touch(flow)
        return flow

    def tcp_accept(self, flow: TcpFlow, now: float) -> None:
        flow.conn.accept(now)
        self._touch(flow)

    def tcp_refuse(self, flow: TcpFlow) -> None:
        """RST the guest's SYN (host refused, or policy) and forget the flow."""
        flow.conn.refuse()
        self._drain(flow)
        self._free(flow)
        self.stats["tcp_refused"] += 1

    def tcp_unreachable(self, flow: TcpFlow, packet_code: int) -> None:
        """The host could not reach the destination: ICMP to the guest, forget the flow."""
        c = flow.conn
        ip = self._fake_syn_packet(flow)
        self.icmp_unreachable(ip, packet_code)
        c.abort()
        c.take_output()
        self._free(flow)

    def _fake_syn_packet(self, flow: TcpFlow) -> bytes:
        th = TCP.pack(flow.gport, flow.rport, flow.conn.irs, 0, 0x50, TCP_SYN, 0, 0, 0)
        if len(flow.gip) == 4:
            h = IP4.pack(0x45, 0, 40, 0, 0x4000, 64, 6, 0, flow.gip, flow.rip)
            return h[:10] + _U16.pack(0xFFFF - ones_sum(h)) + h[12:] + th
        return IP6.pack(0x60000000, 20, 6, 64, flow.gip, flow.rip) + th

    def touch(self, flow: TcpFlow) -> None:
        """The shell changed the connection (send/consume/close): poll it at flush."""
        self._touch(flow)

    def _touch(self, flow: TcpFlow) -> None:
        if not flow.touched:
            flow.touched = True
            self._touched.append(flow)

    def _free(self, flow: TcpFlow) -> None:
        if self.flows.get(flow.key) is flow:
            del self.flows[flow.key]
        flow.deadline = None
        if not flow.conn.readable():
            flow.conn.release()  # else the shell still drains it, and releases it when done

    def flush(self, now: float) -> list[TcpFlow]:
        """Poll touched connections, emit their segments; returns the flows with notices."""
        touched = self._touched
        self._touched = []
        noticed = self._gone  # flows freed by input, whose end the shell must still hear of
        if noticed:
            self._gone = []
        for flow in touched:
            flow.touched = False
            if self.flows.get(flow.key) is not flow:
                continue
            try:
                conn = flow.conn
                flow.notice |= conn.poll(now)
                self._drain(flow)
                if flow.notice and type(flow.handle) is _DnsOverTcp:
                    self._serve_dns_tcp(flow, now)
                if conn.state is _TIME_WAIT and not conn.readable():
                    self._to_time_wait(flow, now)
                    flow.notice |= _N_CLOSED  # the shell closes the host side
                    noticed.append(flow)
                    continue
                if flow.notice:
                    noticed.append(flow)
                at = conn.poll_at()
                if at is not None and (flow.deadline is None or at < flow.deadline or flow.deadline <= now):
                    flow.deadline = at
                    self._timer_seq += 1
                    heapq.heappush(self._timers, (at, self._timer_seq, flow))
                elif at is None:
                    flow.deadline = None
            except Exception as e:  # noqa: BLE001 - a bug in the TCP code: lose this flow, not the engine
                self.internal_error(e)
                self._kill(flow)
                if flow not in noticed:
                    noticed.append(flow)
        return noticed

    def _serve_dns_tcp(self, flow: TcpFlow, now: float) -> None:
        """The engine's own DNS-over-TCP server (static table): read queries, send answers."""
        n = flow.notice
        flow.notice = 0
        conn = flow.conn
        session = flow.handle
        if n & (_N_RESET | _N_CLOSED) or conn.closed:
            self._free(flow)
            conn.release()
            return
        while conn.readable() and session.wants() > 0:
            data = conn.read(session.wants())
            answers = session.feed(data)
            if answers is None:
                self.stats["drop_dns_tcp"] += 1
                conn.abort()
                self._drain(flow)
                self._free(flow)
                conn.release()
                return
            for a in answers:
                if conn.send_space() >= len(a):
                    conn.send(a)
                else:
                    self.stats["drop_dns_tcp_answer"] += 1  # the guest does not read its answers
        if conn.at_eof and not conn.closed:
            conn.close(orphan=True)
        conn.poll(now)
        self._drain(flow)

    def _kill(self, flow: TcpFlow) -> None:
        """After an internal error on a flow: reset it towards the guest and tell the shell."""
        conn = flow.conn
        try:
            conn.abort()
            self._drain(flow)
        except Exception:  # noqa: BLE001 - the connection's state is broken: forget it regardless
            pass
        flow.notice |= _N_RESET
        self._free(flow)

    def run_timers(self, now: float) -> None:
        """Touch every flow whose deadline has come (call flush afterwards)."""
        tw = self.time_wait
        if tw._queue and tw._queue[0][0] <= now:
            tw.expire(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            at, _, flow = heapq.heappop(timers)
            if flow.deadline is not None and flow.deadline <= now:
                flow.deadline = None
                self._touch(flow)

    def next_deadline(self) -> float | None:
        """When run_timers has work (entries are lazy: an early wake-up is harmless)."""
        timers = self._timers
        while timers and timers[0][2].deadline != timers[0][0]:
            heapq.heappop(timers)  # stale: the flow was freed or its deadline moved
        t = timers[0][0] if timers else None
        tw = self.time_wait.next_deadline()
        if tw is not None and (t is None or tw < t):
            t = tw
        return t

    def free_flow(self, flow: TcpFlow) -> None:
        """The shell is done with a closed flow."""
        self._free(flow)

    def _drain(self, flow: TcpFlow) -> None:
        segs = flow.conn.take_output()
        if segs:
            mss = flow.conn.send_mss
            for seg in segs:
                self._emit_segment(flow.rip, flow.gip, flow.rport, flow.gport, seg, mss)

    def _emit_segment(self, src: bytes, dst: bytes, sport: int, dport: int, seg: Segment | None, mss: int) -> None:
        if seg is None:
            return
        c = seg.control
        flags = TCP_ACK if seg.ack is not None else 0
        if c is Control.SYN:
            flags |= TCP_SYN
        elif c is Control.FIN:
            flags |= TCP_FIN | TCP_PSH
        elif c is Control.RST:
            flags |= TCP_RST
        elif c is Control.PSH:
            flags |= TCP_PSH
        if seg.mss is not None or seg.wscale is not None or seg.sack_permitted or seg.sack_blocks:
            k = (seg.mss, seg.wscale, seg.sack_permitted, seg.sack_blocks)
            opts = self._opts_cache.get(k)
            if opts is None:
                opts = emit_options(TcpOptions(mss=seg.mss, wscale=seg.wscale, sack_permitted=seg.sack_permitted,
                                               sack_blocks=seg.sack_blocks))
                if not seg.sack_blocks:
                    self._opts_cache[k] = opts
        else:
            opts = b""
        payload = seg.payload
        hdr = self.fb.tcp(src, dst, sport, dport, seg.seq, seg.ack or 0, flags, seg.window, opts, payload, mss)
        self._out([hdr, payload] if payload else [hdr])
        self.stats["tcp_segments_out"] += 1

    # ------------------------------------------------------------------ stats
    def statistics(self) -> dict[str, Any]:
        snap: dict[str, Any] = dict(self.stats)
        snap["tcp_flows"] = len(self.flows)
        snap["tcp_time_wait_entries"] = len(self.time_wait)
        snap["tcp_mem_held"] = self.mem.used
        snap["tcp_mem_peak"] = self.mem.peak
        return snap
