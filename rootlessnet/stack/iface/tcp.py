"""stack.iface.tcp: TCP (RFC 9293) — the flow table, TIME-WAIT, timers, segments in and out.

A guest SYN to the outside makes a ``TcpFlow`` (a ``stack.tcp`` connection
plus the shell's handle) and a ``TcpOpen`` event; the shell connects the host
side and answers with ``tcp_accept``/``tcp_refuse``/``tcp_unreachable``. A
SYN to the DNS address with a static table is served here (DNS over TCP).
TIME-WAIT lives in its own bounded table (stack.timewait). Timers are a heap
of (deadline, seq, flow), cancelled lazily: an entry whose flow's deadline
moved is skipped when it comes up. Segments without options go out from the
flow's header template (wire.frames.TcpTemplate).
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Final

from rootlessnet.stack.dns import DnsOverTcp
from rootlessnet.stack.iface.events import TcpOpen
from rootlessnet.stack.iface.udp import Udp
from rootlessnet.stack.config import Limits
from rootlessnet.stack.tcp.buffers import MemPool
from rootlessnet.stack.tcp.connection import TcpConnection, rst_for
from rootlessnet.stack.tcp.notice import Notice
from rootlessnet.stack.tcp.segment import Control, Segment
from rootlessnet.stack.tcp.states import State
from rootlessnet.stack.tcp.timers import TcpConfig
from rootlessnet.stack.timewait import TW_ACK, TW_KILL, TW_SYN, TimeWait, TimeWaitTable
from rootlessnet.wire.checksum import ones_sum
from rootlessnet.wire.frames import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TcpTemplate
from rootlessnet.wire.ipv4 import HEADER as IP4
from rootlessnet.wire.ipv6 import HEADER as IP6
from rootlessnet.wire.tcp import HEADER as TCP
from rootlessnet.wire.tcp import TcpOptions, emit_options, parse_options

__all__ = ["Tcp", "TcpFlow"]

_SYN_IN_TIME_WAIT: Final = int(Notice.SYN_IN_TIME_WAIT)
_N_RESET: Final = int(Notice.RESET)
_N_CLOSED: Final = int(Notice.CLOSED)
_TRUSTED: Final = 1 | 2  # virtio-net NEEDS_CSUM | DATA_VALID
_C_NONE = Control.NONE
_C_PSH = Control.PSH
_C_SYN = Control.SYN
_C_FIN = Control.FIN
_C_RST = Control.RST
_TIME_WAIT = State.TIME_WAIT


def _flags(seg: Segment) -> int:
    """The header flags of a segment (FIN implies PSH, RFC 9293 §3.10.7.4)."""
    c = seg.control
    f = TCP_ACK if seg.ack is not None else 0
    if c is _C_NONE:
        return f
    if c is _C_PSH:
        return f | TCP_PSH
    if c is _C_FIN:
        return f | TCP_FIN | TCP_PSH
    if c is _C_SYN:
        return f | TCP_SYN
    return f | TCP_RST


class TcpFlow:
    """One guest TCP connection and the shell's handle for its host socket."""

    __slots__ = ("conn", "gip", "gport", "rip", "rport", "key", "handle", "notice", "touched", "deadline", "mss",
                 "tmpl")

    conn: TcpConnection
    gip: bytes
    gport: int
    rip: bytes
    rport: int
    key: tuple[bytes, int, bytes, int]
    handle: Any
    notice: int
    touched: bool
    deadline: float | None
    mss: int
    tmpl: TcpTemplate | None

    def __init__(self, conn: TcpConnection, gip: bytes, gport: int, rip: bytes, rport: int):
        self.conn = conn
        self.gip, self.gport, self.rip, self.rport = gip, gport, rip, rport
        self.key = (gip, gport, rip, rport)
        self.handle = None
        self.notice = 0
        self.touched = False
        self.deadline = None
        self.mss = conn.send_mss
        self.tmpl = None  # the headers of its segments to the guest, built at the first one


class Tcp(Udp):
    """The TCP layer."""

    flows: dict[tuple[bytes, int, bytes, int], TcpFlow]
    _touched: list[TcpFlow]
    _gone: list[TcpFlow]
    _timers: list[tuple[float, int, TcpFlow]]
    _timer_seq: int
    rand32: Callable[[], int]
    limits: Limits
    mem: MemPool
    tcp_cfg4: TcpConfig
    tcp_cfg6: TcpConfig
    max_tx: int | None
    _opts_cache: dict[tuple[Any, ...], bytes]
    time_wait: TimeWaitTable

    # -- input ---------------------------------------------------------------------
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
        if not (vflags & _TRUSTED) and not self._l4_csum_ok(src, dst, 6, l4, 0):
            self.stats["drop_tcp_bad_checksum"] += 1
            return
        if flags & TCP_SYN:
            if flags & (TCP_RST | TCP_FIN):
                self.stats["drop_tcp_bad_flags"] += 1
                return
            control = _C_SYN
        elif flags & TCP_RST:
            control = _C_RST
        elif flags & TCP_FIN:
            control = _C_FIN
        elif flags & TCP_PSH:
            control = _C_PSH
        else:
            control = _C_NONE
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
            if control is _C_SYN and seg.ack is None:
                self._tcp_new(src, sport, dst, dport, seg, now)
                return
            self.stats["tcp_no_flow"] += 1
            reply = rst_for(seg)
            if reply is not None:
                self._emit_segment(dst, src, dport, sport, reply, 1460)
            return
        bits = flow.conn.receive(seg, now)
        if bits & _SYN_IN_TIME_WAIT:
            # The new incarnation takes the 4-tuple; the old one (its data still unread by the
            # host, or it would be in the TIME-WAIT table) is handed back to the shell as closed.
            self._free(flow)
            if type(flow.handle) is DnsOverTcp:
                flow.conn.release()
            else:
                flow.notice |= _N_CLOSED
                self._gone.append(flow)
            self._tcp_new(src, sport, dst, dport, seg, now)
            return
        flow.notice |= bits
        self._touch(flow)

    def _time_wait_in(self, tw: TimeWait, seg: Segment, now: float) -> None:
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
        max_tx = self.max_tx
        if max_tx:
            conn.max_tx_payload = max(conn.send_mss, (max_tx // conn.send_mss) * conn.send_mss)
        flow = TcpFlow(conn, src, sport, dst, dport)
        self.flows[flow.key] = flow
        self._note_guest_ip(src)
        self.stats["tcp_syn"] += 1
        cfgn = self.cfg
        if dport == 53 and self.resolver is not None and (dst == cfgn.dns or dst == cfgn.dns6):
            # A static table answers every transport: DNS over TCP is served here, nothing leaves.
            flow.handle = DnsOverTcp(self.resolver)
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
        self.events.append(TcpOpen(flow))

    # -- the shell's calls -------------------------------------------------------------
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
        self.icmp_unreachable(self._fake_syn_packet(flow), packet_code)
        c.abort()
        c.take_output()
        self._free(flow)

    def _fake_syn_packet(self, flow: TcpFlow) -> bytes:
        th = TCP.pack(flow.gport, flow.rport, flow.conn.irs, 0, 0x50, TCP_SYN, 0, 0, 0)
        if len(flow.gip) == 4:
            h = IP4.pack(0x45, 0, 40, 0, 0x4000, 64, 6, 0, flow.gip, flow.rip)
            return h[:10] + (0xFFFF - ones_sum(h)).to_bytes(2, "big") + h[12:] + th
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

    def free_flow(self, flow: TcpFlow) -> None:
        """The shell is done with a closed flow."""
        self._free(flow)

    # -- polling ---------------------------------------------------------------------
    def flush(self, now: float) -> list[TcpFlow]:
        """Poll touched connections, emit their segments; returns the flows with notices."""
        touched = self._touched
        self._touched = []
        noticed = self._gone  # flows freed by input, whose end the shell must still hear of
        if noticed:
            self._gone = []
        flows = self.flows
        for flow in touched:
            flow.touched = False
            if flows.get(flow.key) is not flow:
                continue
            try:
                conn = flow.conn
                flow.notice |= conn.poll(now)
                self._drain(flow)
                if flow.notice and type(flow.handle) is DnsOverTcp:
                    self._serve_dns_tcp(flow, now)
                if conn.state is _TIME_WAIT and not conn.readable():
                    self._to_time_wait(flow, now)
                    flow.notice |= _N_CLOSED  # the shell closes the host side
                    noticed.append(flow)
                    continue
                if flow.notice:
                    noticed.append(flow)
                at = conn.poll_at()
                if at is not None:
                    dl = flow.deadline
                    if dl is None or at < dl or dl <= now:
                        flow.deadline = at
                        self._timer_seq += 1
                        heapq.heappush(self._timers, (at, self._timer_seq, flow))
                else:
                    flow.deadline = None
            except Exception as e:  # noqa: BLE001 - a bug in the TCP code: lose this flow, not the engine
                self.internal_error(e)
                self._kill(flow)
                if flow not in noticed:
                    noticed.append(flow)
        return noticed

    def _serve_dns_tcp(self, flow: TcpFlow, now: float) -> None:
        """The engine's own DNS-over-TCP server (static table): read queries, send answers."""
        bits = flow.notice
        flow.notice = 0
        conn = flow.conn
        session: DnsOverTcp = flow.handle
        if bits & (_N_RESET | _N_CLOSED) or conn.closed:
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
        twd = tw.next_deadline()
        if twd is not None and twd <= now:
            tw.expire(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _at, _, flow = heapq.heappop(timers)
            dl = flow.deadline
            if dl is not None and dl <= now:
                flow.deadline = None
                self._touch(flow)

    def next_deadline(self) -> float | None:
        """When run_timers has work (entries are lazy: an early wake-up is harmless)."""
        timers = self._timers
        while timers and timers[0][2].deadline != timers[0][0]:
            heapq.heappop(timers)  # stale: the flow was freed or its deadline moved
        t = timers[0][0] if timers else None
        twd = self.time_wait.next_deadline()
        if twd is not None and (t is None or twd < t):
            t = twd
        return t

    # -- output ----------------------------------------------------------------------
    def _drain(self, flow: TcpFlow) -> None:
        segs = flow.conn.take_output()
        if segs:
            mss = flow.conn.send_mss
            for seg in segs:
                if seg.mss is None and seg.wscale is None and not seg.sack_permitted and not seg.sack_blocks:
                    self._emit_from_template(flow, seg, mss)
                else:
                    self._emit_segment(flow.rip, flow.gip, flow.rport, flow.gport, seg, mss)

    def _emit_from_template(self, flow: TcpFlow, seg: Segment, mss: int) -> None:
        """A segment without options: the flow's template, only the changing fields written."""
        tmpl = flow.tmpl
        if tmpl is None or tmpl.generation != self.fb.generation:
            tmpl = flow.tmpl = self.fb.tcp_template(flow.rip, flow.gip, flow.rport, flow.gport)
        ack = seg.ack
        payload = seg.payload
        hdr = tmpl.build(seg.seq, ack or 0, _flags(seg), seg.window, payload, mss)
        self._out([hdr, payload] if payload else [hdr])
        self.stats["tcp_segments_out"] += 1

    def _emit_segment(self, src: bytes, dst: bytes, sport: int, dport: int, seg: Segment | None, mss: int) -> None:
        if seg is None:
            return
        flags = _flags(seg)
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
