"""Fuzzing the core: one input = one program run against a fresh Core with a mock clock and shell.

An input is read as 8-byte records. The first is the configuration (IPv6, virtio header and
offloads, MTU, buffer sizes, ACK policy, ISNs near the 2**32 wrap, flow-table size, what the
shell does with new flows). Each further record is one action:

* the **guest** (a model TCP/IP host that keeps per-connection sequence state from what the
  core sent it): open connections (SYN with real clients' options), send in-window data, ACKs,
  window updates, FIN, RST, out-of-order and retransmitted segments, GSO super-frames, any flag
  combination; ARP, ping, UDP, DHCP, DNS, NDP; capture templates with byte patches whose
  lengths and checksums are fixed up or not; garbage;
* the **shell** (what io/nat.py does, with decisions taken from the input): accept, refuse or
  leave pending the flows the core asks for (TcpOpen events), host data in and out
  (send/peek/consume), host EOF, abort, active opens (tcp_connect), UDP and ping replies,
  ICMP errors, DNS forwarding (stack.dns) and DNS over TCP from the static table;
* the **clock**: advance by steps chosen so that delayed ACK, RTO and its backoff, persist,
  keepalive, FIN-WAIT-2, TIME-WAIT, connect timeouts and router advertisements fire.

After every action the shell processes events and notices like io/engine.py's ``process`` and
every frame the core emitted is checked (``model.OutputChecker``), and so are cheap invariants of
each connection. A failure is one of: crash (an exception escapes the core or its shell-facing
API), internal error (the core counted one: ``stats["internal_errors"]``, or the old catch-all's
``drop_malformed_{IndexError,ValueError,error}``), invariant violation (named).
"""

from __future__ import annotations

import struct
import traceback

from rootlessnet.stack.config import NetConfig
from rootlessnet.stack.core import Core, PingRequest, TcpOpen, UdpDatagram
from rootlessnet.stack.dhcp import DhcpServer
from rootlessnet.stack.dns import DnsForwarder, StaticResolver, lcg_ids, servfail_for, tcp_frames
from rootlessnet.stack.ndp import NdpResponder
from rootlessnet.stack.tcp.connection import TcpConnection
from rootlessnet.stack.tcp.notice import Notice
from rootlessnet.stack.tcp.timers import TCP_CONFIG_FIELDS, TcpConfig
from rootlessnet.wire import WireError

try:
    from rootlessnet.stack.config import Limits as _LIMITS
except ImportError:  # before the engine had limits (NetConfig.extra)
    _LIMITS = None

from . import codecs
from . import model as m
from .common import (DNS4, DNS6, ISS_BASE, LENS, OOO_BLOCKS, RECV_BUF, SEND_BUF, TABLE, _RNG_BUF, _S2, GConn, HostFlow,
                     sub)
from .invariants import Checks, Failure
from .ops import OPS

REC = 8
_HAS_INTERNAL = hasattr(Core, "internal_error")
_HAS_RELEASE = hasattr(TcpConnection, "release")
# what the old catch-all in Core.receive turned into "malformed" although they are bugs
_OLD_INTERNAL = ("drop_malformed_IndexError", "drop_malformed_ValueError", "drop_malformed_error",
                 "drop_malformed_KeyError", "drop_malformed_TypeError")
N_RESET_OR_TIMEOUT = int(Notice.RESET) | int(Notice.TIMED_OUT)
N_DATA = int(Notice.READABLE) | int(Notice.PEER_FIN)
N_ESTABLISHED, N_CLOSED = int(Notice.ESTABLISHED), int(Notice.CLOSED)
_UPSTREAM = StaticResolver(TABLE)  # what the forwarded queries' upstream answers

class Session:
    """One input: a fresh core, the mock shell and the model guest."""

    def __init__(self, data: bytes, templates: list, *, checks: Checks):
        self.data = data
        self.templates = templates
        self.tcp_t = [t for t in templates if t.proto == 6]
        self.udp_t = [t for t in templates if t.proto == 17]
        self.dhcp_t = [t for t in self.udp_t if t.dport == 67] or [None]
        self.pay_t = [t.payload for t in templates if t.payload] or [b"x"]
        self.opt_t = [t.tcp_opts for t in self.tcp_t if t.tcp_opts] or [b""]
        self.checks = checks
        c = (data[:REC] + bytes(REC))[:REC]
        self.v6 = not c[0] & 1
        vnet = bool(c[0] & 2)
        offload = vnet and bool(c[0] & 4)
        mtu = [65520, 1500, 1280, 9000][c[1] & 3]
        self.mtu = mtu
        small_retries = bool(c[4] & 0x80)
        # TCP behaviour the input chooses (on top of the engine's own TcpConfig)
        tcp_over = dict(window_scaling=not c[0] & 0x80, ack_every=[1, 2, 3, 1][c[2] & 3],
                        delayed_ack=[0.001, 0.04, 0.2, 0.5][(c[2] >> 2) & 3],
                        keepalive=(10.0, 1.0, 3) if c[0] & 0x40 else None,
                        time_wait=[60.0, 1.0, 0.5, 120.0][(c[4] >> 4) & 3],
                        fin_wait_2_timeout=1.0 if c[4] & 0x40 else 60.0,
                        max_retries=3 if small_retries else 15, syn_retries=2 if small_retries else 6)
        rbuf, sbuf, ooo = RECV_BUF[(c[1] >> 2) & 3], SEND_BUF[(c[1] >> 4) & 3], OOO_BLOCKS[(c[1] >> 6) & 3]
        small_table = bool(c[2] & 0x80)
        net = dict(ipv6=self.v6, mtu=mtu, allow_host_loopback=bool(c[0] & 8), dns_upstream=("127.0.0.1", 53),
                   dns_hosts=None if c[0] & 0x20 else TABLE)
        if _LIMITS is not None:
            lim = _LIMITS(tcp_flows=3 if small_table else 65536, tcp_rmem=max(2048, rbuf), tcp_wmem=max(2048, sbuf),
                          ooo_blocks=ooo, time_wait=2 if c[5] & 0x80 else 32768,
                          tcp_mem=(48 << 10) if c[5] & 0x40 else (128 << 20))
            cfg = NetConfig(**net, limits=lim)
            tcfg = None
        else:
            cfg = NetConfig(**net, extra={"max_tcp_flows": 3} if small_table else {})
            tcfg = TcpConfig(local_mss=mtu - 40, recv_buffer=rbuf, send_buffer=sbuf, default_peer_mss=536,
                             max_ooo_blocks=ooo, **tcp_over)
        lo, hi = cfg.dhcp_pool
        dhcp = None if c[0] & 0x10 else DhcpServer(server_ip=cfg.gateway, netmask=cfg.netmask, router=cfg.gateway,
                                                   dns=[cfg.dns], pool_start=lo, pool_end=hi, mtu=mtu)
        ndp = NdpResponder(router_mac=cfg.gateway_mac, router_ip=cfg.gateway6, link_local=cfg.link_local6,
                           prefix=cfg.prefix6.network_address.packed, prefix_len=cfg.prefix6.prefixlen,
                           dns=cfg.dns6, virtual_addrs={cfg.gateway6, cfg.dns6}, mtu=mtu) if self.v6 else None
        self.resolver = StaticResolver(TABLE) if cfg.dns_hosts is not None else None
        iss = [ISS_BASE[(c[2] >> 4) & 7]]

        def rand32() -> int:
            iss[0] = (iss[0] + 0x01000193) & 0xFFFFFFFF
            return iss[0]

        self.core = core = Core(cfg, vnet=vnet, offload=offload, rand32=rand32, tcp_config=tcfg, dhcp=dhcp, ndp=ndp,
                                resolver=self.resolver)
        if tcfg is None:  # the engine built its TcpConfig from the limits: the input's choices on top
            for attr in ("tcp_cfg4", "tcp_cfg6"):
                base = getattr(core, attr)
                setattr(core, attr, TcpConfig(**({k: getattr(base, k) for k in TCP_CONFIG_FIELDS} | tcp_over)))
            tw = getattr(core, "time_wait", None)
            if tw is not None:
                core.time_wait = type(tw)(cfg.limits.time_wait, tcp_over["time_wait"])
        self.cfg = cfg
        self.open_policy = c[3]
        self.auto_read = not c[4] & 1
        self.answer_udp = bool(c[4] & 2)
        self.answer_ping = bool(c[4] & 4)
        self.forward_dns = bool(c[4] & 8)
        self.vnet = vnet
        self.out = m.OutputChecker(vnet=vnet, offload=offload, mtu=mtu)
        self.fwd = DnsForwarder(max_pending=8, timeout=2.0, id_source=lcg_ids(c[5] | 1))
        self.fwd_n = 0
        self.now = 1000.0
        self.ndp_at = 0.0 if ndp is not None else None
        self.gconns: list[GConn | None] = [None] * 8
        self.by_key: dict[tuple, GConn] = {}
        self.pending: list = []  # flows waiting for the shell's connect (TcpOpen)
        self.draining: list[HostFlow] = []  # freed by the core, unread data still going to the host app
        self.hosts: list[HostFlow] = []  # every host socket the shell holds (pruned of closed ones)
        self.opens = 0
        self.last_udp = None
        self.last_ping = None
        self.last_raw = None
        self.frames = 0
        self.states: set = set()
        self.snap: dict | None = None
        self.mac_before: bytes | None = None

    # ------------------------------------------------------------------ running
    def run(self) -> Failure | None:
        data = self.data
        core = self.core
        ops = OPS
        checks = self.checks
        checks.new_session()
        for off in range(REC, len(data), REC):
            r = data[off : off + REC]
            if len(r) < REC:
                r = r + bytes(REC - len(r))
            try:
                self.snap = checks.snapshot(core)
                self.mac_before = core.guest_mac
                ops[r[0] & 63](self, r)
                self.process()
                self.after_op()
            except Failure as f:
                return f
            except Exception as e:  # noqa: BLE001 - an exception out of the core or its shell API: a crash
                return Failure("crash", _signature(e), "".join(traceback.format_exception(e)))
        return None

    def after_op(self) -> None:
        core = self.core
        st = core.stats
        if st.get("internal_errors", 0):
            tb = getattr(core, "first_internal_error", None) or "(no traceback kept)"
            raise Failure("internal", _tb_signature(tb), tb)
        for k in _OLD_INTERNAL:
            if st.get(k):
                raise Failure("internal", k, f"Core.receive counted {k}: an exception that is not a codec error")
        self.checks.after_op(self, self.snap)

    # ------------------------------------------------------------------ guest -> core
    def send(self, frame: bytes, vflags: int = 0) -> None:
        self.frames += 1
        codecs.check(frame)
        core = self.core
        if not _HAS_INTERNAL:
            try:
                core._receive(memoryview(frame), vflags, self.now)
            except WireError:
                core.stats["drop_malformed"] += 1
            except (IndexError, ValueError, struct.error) as e:
                raise Failure("internal", _signature(e), "".join(traceback.format_exception(e))) from None
        else:
            core.receive(frame, vflags, self.now)

    # ------------------------------------------------------------------ shell
    def process(self) -> None:
        core = self.core
        now = self.now
        for _ in range(16):
            events = core.events
            if events:
                core.events = []
                for ev in events:
                    kind = type(ev)
                    if kind is TcpOpen:
                        self.on_open(ev.flow)
                    elif kind is UdpDatagram:
                        self.on_udp(ev)
                    elif kind is PingRequest:
                        self.last_ping = ev
                        if self.answer_ping:
                            core.echo_reply(ev.dst, ev.src, ev.ident, ev.seq, ev.data)
            for flow in core.flush(now):
                self.on_notice(flow)
            if not core.events and not core._touched:
                break
        frames = core.take_frames()
        if frames:
            self.check_frames(frames)
        core.next_deadline()  # the engine arms its timer after every batch (it drops stale heap entries)

    def on_open(self, flow) -> None:
        """TcpOpen: the host connect succeeds at once, fails, or stays in progress (decided by the input)."""
        self.opens += 1
        hc = HostFlow(flow, self.now, connecting=True)
        flow.handle = hc
        self.hosts.append(hc)
        decision = (self.open_policy >> (2 * (self.opens & 3))) & 3
        if decision <= 1:
            self.connected(hc)
        elif decision == 2:
            self.connect_failed(hc, self.opens)
        else:
            self.pending.append(hc)

    def connected(self, hc: HostFlow) -> None:
        hc.connecting = False
        self.core.tcp_accept(hc.flow, self.now)

    def connect_failed(self, hc: HostFlow, how: int) -> None:
        """TcpNat._connect_failed: ICMP unreachable for EHOSTUNREACH & co, else RST."""
        hc.dead = True
        hc.connecting = False
        if how & 4:
            self.core.tcp_unreachable(hc.flow, [0, 1, 13, 3][how & 3])
        else:
            self.core.tcp_refuse(hc.flow)

    def on_udp(self, ev) -> None:
        src, sport, dst, dport, payload = ev.src, ev.sport, ev.dst, ev.dport, ev.payload
        self.last_udp = ev
        core = self.core
        if dport == 53 and dst in (DNS4, DNS6) and self.forward_dns:
            # io's DNS forwarding with stack.dns.DnsForwarder; the "upstream" answers from a table,
            # and now and then with a spoofed id, another question or a truncated message
            q = self.fwd.query((src, sport, dst), payload, self.now)
            if q is not None:
                uid, upstream = q
                ans = _UPSTREAM.answer(upstream)
                if ans is not None:
                    self.fwd_n += 1
                    k = self.fwd_n & 7
                    if k == 5:
                        ans = ans[: self.fwd_n % 14]
                    elif k == 6:
                        ans = bytes((ans[0] ^ 0x5A,)) + ans[1:]
                    elif k == 7 and len(ans) > 13:
                        ans = ans[:13] + bytes((ans[13] ^ 0x20,)) + ans[14:]
                    got = self.fwd.response(ans, self.now)
                    if got is not None:
                        (csrc, csport, cdst), resp = got
                        core.udp_out(cdst, 53, csrc, csport, resp)
            return
        if self.answer_udp:
            core.udp_out(dst, dport, src, sport, payload[::-1])

    def on_notice(self, flow) -> None:
        """io/nat.py TcpNat.on_notice, with the host socket mocked."""
        core = self.core
        n = flow.notice
        flow.notice = 0
        hc = flow.handle
        conn = flow.conn
        self.states.add(conn.state)
        if not isinstance(hc, HostFlow):
            return
        if n & N_RESET_OR_TIMEOUT:
            core.free_flow(flow)
            if hc.dead:
                return
            if hc.connecting:
                self.close_host(hc)
                return
            self.start_drain(hc)  # the guest's last data reaches the host app first, then the reset
            return
        if hc.close_pending and n & N_ESTABLISHED:
            hc.close_pending = False
            conn.close()
            core.touch(flow)
        if not hc.dead and not hc.connecting:
            if n & N_DATA:
                self.push(hc)
            if not hc.dead and hc.host_eof and hc.shut_wr and not conn.readable():
                self.close_host(hc)  # both directions done
        if n & N_CLOSED or conn.closed:
            core.free_flow(flow)
            if not hc.dead:
                self.start_drain(hc)

    def start_drain(self, hc: HostFlow) -> None:
        """TcpNat._start_drain: the core forgot the flow; its unread data still goes to the host app."""
        hc.drain_since = self.now
        self.drain(hc)
        if not hc.dead:
            self.draining.append(hc)

    def drain(self, hc: HostFlow, limit: int | None = None) -> None:
        conn = hc.flow.conn
        if conn.readable() and not hc.shut_wr:
            self.push(hc, limit)
        if not conn.readable():
            self.close_host(hc)

    def close_host(self, hc: HostFlow) -> None:
        """TcpNat._close: a draining connection's buffers go with its host socket."""
        if hc.dead:
            return
        hc.dead = True
        hc.connecting = False
        if hc.drain_since is not None and _HAS_RELEASE:
            hc.flow.conn.release()

    def push(self, hc: HostFlow, limit: int | None = None) -> None:
        """Guest -> host: the host socket takes what it takes (everything in auto-read mode)."""
        conn = hc.flow.conn
        if hc.dns_buf is not None:
            self.dns_over_tcp(hc)
        elif self.auto_read or limit is not None:
            left = conn.readable() if limit is None else min(limit, conn.readable())
            while left > 0:
                chunk = conn.peek(left)
                if not len(chunk):
                    break
                left -= conn.consume(len(chunk))
            self.core.touch(hc.flow)
        if conn.at_eof and not hc.shut_wr:
            hc.shut_wr = True

    def dns_over_tcp(self, hc: HostFlow) -> None:
        """DNS over TCP answered from the static table (stack.dns tcp_frames + StaticResolver)."""
        conn = hc.flow.conn
        while conn.readable():
            chunk = conn.peek(conn.readable())
            hc.dns_buf += bytes(chunk)
            conn.consume(len(chunk))
        for q in tcp_frames(hc.dns_buf):
            ans = self.resolver.answer(q, max_size=65535) if self.resolver is not None else servfail_for(q)
            if ans is not None and not hc.host_eof and conn.send_space() >= len(ans) + 2:
                conn.send(_S2.pack(len(ans)) + ans)
        if len(hc.dns_buf) > 70000:
            hc.dns_buf.clear()
        self.core.touch(hc.flow)

    def check_frames(self, frames: list) -> None:
        out = self.out
        # Frames held for the guest's MAC go out when it is learned, however old (some may be
        # segments of connections long gone): they are only parsed, not held to the current state.
        fresh = self.mac_before is not None or self.core.guest_mac is None
        for parts in frames:
            problem, seg = out.check(parts)
            if problem is not None:
                raise Failure("invariant", "frame: " + problem.split(":")[0][:60], problem)
            if seg is not None:
                if fresh:
                    self.checks.tcp_out(self, seg)
                self.guest_sees(seg)

    def guest_sees(self, seg: m.TcpOut) -> None:
        key = (seg.dst, seg.dport, seg.src, seg.sport)
        g = self.by_key.get(key)
        f = seg.flags
        if g is None:
            if not (f & m.SYN) or f & m.ACK:
                return
            # the engine's active open (tcp_connect): the guest model takes it in a free-ish slot
            slot = (seg.sport + seg.dport) & 7
            g = GConn(len(seg.dst) == 16, seg.dst, seg.src, seg.dport, seg.sport, 0x5EED0000 + seg.sport, 7)
            g.active = True
            self._install(slot, g)
        if f & m.SYN:
            g.peer_iss = seg.seq
            g.peer_nxt = (seg.seq + 1) & 0xFFFFFFFF
            g.eng_ws = min(seg.wscale, 14) if (seg.wscale is not None and g.ws is not None) else 0
            g.eng_mss = seg.mss or 536
            g.eng_win = seg.win
        else:
            end = (seg.seq + seg.plen + (1 if f & m.FIN else 0)) & 0xFFFFFFFF
            if g.peer_iss is not None and sub(end, g.peer_nxt) > 0 and not f & m.RST:
                g.peer_nxt = end
            g.eng_win = seg.win << g.eng_ws
        if f & m.ACK and not f & m.RST:
            g.eng_ack = seg.ack

    def _install(self, slot: int, g: GConn) -> None:
        old = self.gconns[slot]
        if old is not None and self.by_key.get((old.gip, old.gport, old.rip, old.rport)) is old:
            del self.by_key[(old.gip, old.gport, old.rip, old.rport)]
        self.gconns[slot] = g
        self.by_key[(g.gip, g.gport, g.rip, g.rport)] = g

    # ------------------------------------------------------------------ helpers
    def payload(self, code: int, n: int) -> bytes:
        if n <= 0:
            return b""
        k = code & 3
        if k == 0:
            off = (code * 4099) & 0xFFFF
            return _RNG_BUF[off : off + n]
        if k == 1:
            p = self.pay_t[(code >> 2) % len(self.pay_t)]
            return (p * (n // len(p) + 1))[:n]
        if k == 2:
            return bytes(n)
        return bytes((code,)) * n

    def length(self, code: int, g: GConn | None) -> int:
        v = LENS[code % len(LENS)]
        if type(v) is int:
            return v
        wnd = g.eng_win if g is not None else 1000
        mss = g.eng_mss if g is not None else 536
        n = {"wnd": wnd, "wnd+1": wnd + 1, "wnd-1": wnd - 1, "mss": mss, "mss+1": mss + 1, "2mss": 2 * mss}[v]
        return max(0, min(n, 65000))

    def gconn(self, b: int) -> GConn | None:
        g = self.gconns[b & 7]
        if g is None:
            for g in self.gconns:
                if g is not None:
                    return g
        return g

    def seq_for(self, g: GConn, code: int, extra: int) -> int:
        code %= 20
        if code < 8:
            return g.snd_nxt
        return (g.snd_nxt + {8: -1, 9: 1, 10: sub(g.eng_ack, g.snd_nxt), 11: sub(g.eng_ack, g.snd_nxt) + g.eng_win,
                             12: sub(g.eng_ack, g.snd_nxt) + g.eng_win - 1, 13: sub(g.eng_ack, g.snd_nxt) + g.eng_win + 1,
                             14: 1 << 31, 15: -(1 << 31) + 1, 16: -65536, 17: -(sub(g.snd_nxt, g.iss)),
                             18: extra * 0x01010101, 19: -2}[code]) & 0xFFFFFFFF

    def ack_for(self, g: GConn, code: int) -> int | None:
        code %= 16
        if code < 7:
            return g.peer_nxt
        if code == 15:
            return None
        base = g.peer_iss if g.peer_iss is not None else 0
        return {7: g.peer_nxt - 1, 8: g.peer_nxt + 1, 9: base, 10: base + 1, 11: 0, 12: g.peer_nxt + (1 << 31),
                13: g.peer_nxt - 1000, 14: g.peer_nxt + 65536}[code] & 0xFFFFFFFF

    def tcp(self, g: GConn, seq: int, ack: int | None, flags: int, win: int, opts: bytes = b"", payload=b"",
            *, good_csum: bool = True, vflags: int = 0) -> None:
        if ack is not None:
            flags |= m.ACK
        else:
            flags &= ~m.ACK
        l4 = m.tcp_l4(g.gip, g.rip, g.gport, g.rport, seq, ack or 0, flags, win, opts, payload, good_csum=good_csum)
        self.send(m.ip_frame(g.gip, g.rip, 6, l4), vflags)

    def flow_at(self, b: int):
        flows = self.core.flows
        if not flows:
            return None
        vals = list(flows.values())
        return vals[b % len(vals)]


def _signature(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = next((f"{fr.filename.rsplit('rootlessnet/', 1)[-1]}:{fr.lineno}" for fr in reversed(tb)
                  if "/rootlessnet/" in fr.filename), tb[-1].filename.rsplit("/", 1)[-1] + f":{tb[-1].lineno}" if tb else "?")
    return f"{type(e).__name__} at {where}"


def _tb_signature(tb: str) -> str:
    lines = [ln.strip() for ln in tb.strip().splitlines() if ln.strip()]
    where = next((ln for ln in reversed(lines) if ln.startswith("File ") and "/rootlessnet/" in ln), "")
    where = where.split("/rootlessnet/", 1)[-1].replace('", line ', ":").split(",")[0] if where else "?"
    return f"{lines[-1].split(':')[0] if lines else '?'} at {where}"

