"""Core traces: a guest's frames in, the engine's frames and events out (stack.core).

Each test reads like a packet trace: build a frame with scapy, feed it with
``core.receive(bytes(frame), vflags, now)``, then parse ``take_frames()`` back
with scapy and compare with a partial template (a field not set in the
template matches any value). Time is a number; nothing sleeps.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror, defragment
from scapy.layers.l2 import ARP, Ether
from scapy.packet import NoPayload, Packet, Raw

from rootlessnet.stack.config import GATEWAY_MAC, NetConfig
from rootlessnet.stack.core import Core, PingRequest, TcpOpen, UdpDatagram
from rootlessnet.wire.frames import VNET
from rootlessnet.stack.tcp import Notice, State
from rootlessnet.wire.checksum import ones_sum


# The core's typed events as tuples, for traces written before they were typed.
EV_TCP_OPEN, EV_UDP, EV_PING = "tcp_open", "udp", "ping"


def as_tuple(ev):
    if type(ev) is TcpOpen:
        return (EV_TCP_OPEN, ev.flow)
    if type(ev) is UdpDatagram:
        return (EV_UDP, ev.src, ev.sport, ev.dst, ev.dport, ev.payload, ev.header)
    assert type(ev) is PingRequest, ev
    return (EV_PING, ev.src, ev.dst, ev.ident, ev.seq, ev.data)


def events(core) -> list:
    return [as_tuple(e) for e in core.events]

GUEST_MAC = "52:54:00:12:34:56"
GW_MAC = ":".join(f"{b:02x}" for b in GATEWAY_MAC)
GUEST = "10.0.2.100"
GW = "10.0.2.2"
DNS = "10.0.2.3"
REMOTE = "192.0.2.1"
ISS = 0x12345678  # Core's default rand32


def ip4(s: str) -> bytes:
    return ipaddress.IPv4Address(s).packed


# ----------------------------------------------------------------- helpers

def make_core(*, vnet: bool = False, offload: bool = False, **cfg) -> Core:
    return Core(NetConfig(**cfg), vnet=vnet, offload=offload)


def from_guest(l3: Packet, src_mac: str = GUEST_MAC, dst_mac: str = GW_MAC) -> Ether:
    return Ether(src=src_mac, dst=dst_mac) / l3


def feed(core: Core, frame: Packet | bytes, now: float = 0.0, vflags: int = 0) -> None:
    core.receive(bytes(frame), vflags, now)


class Out:
    """One frame the core emitted: the virtio-net header (or None) and the scapy packet."""

    def __init__(self, parts: list, vnet: bool):
        raw = b"".join(bytes(p) for p in parts)
        self.parts = parts
        self.vnet = VNET.unpack_from(raw, 0) if vnet else None
        self.raw = raw[10:] if vnet else raw
        self.pkt = Ether(self.raw)

    def __repr__(self) -> str:
        return f"Out({self.vnet}, {self.pkt.summary()})"


def drain(core: Core) -> list[Out]:
    return [Out(parts, core.fb.vnet) for parts in core.take_frames()]


def mismatches(pkt: Packet, template: Packet) -> list[str]:
    """Fields of ``template`` (only those explicitly set) that ``pkt`` does not have."""
    bad = []
    layer = template
    while layer is not None and not isinstance(layer, NoPayload):
        cls = type(layer)
        if not pkt.haslayer(cls):
            bad.append(f"no {cls.__name__} layer in {pkt.summary()}")
        else:
            got = pkt.getlayer(cls)
            for name, want in layer.fields.items():
                have = got.getfieldval(name)
                if name == "options" and want == [] and cls is IP:
                    continue
                if have != want:
                    bad.append(f"{cls.__name__}.{name}: got {have!r}, want {want!r}")
        layer = layer.payload
    return bad


def assert_match(pkt: Packet, template: Packet) -> None:
    bad = mismatches(pkt, template)
    assert not bad, "\n".join(bad)


def assert_checksums_valid(pkt: Packet) -> None:
    """Scapy re-computes every checksum of the packet: ours must be the same."""
    again = pkt.copy()
    for cls in (IP, TCP, UDP, ICMP):
        if again.haslayer(cls):
            del again.getlayer(cls).chksum
    again = Ether(bytes(again))
    for cls in (IP, TCP, UDP, ICMP):
        if pkt.haslayer(cls):
            assert pkt.getlayer(cls).chksum == again.getlayer(cls).chksum, f"bad {cls.__name__} checksum"


def syn(sport: int = 40000, dst: str = REMOTE, dport: int = 80, seq: int = 1000, mss: int = 1460,
        wscale: int | None = 7, window: int = 64240) -> Ether:
    opts = [("MSS", mss)] + ([("NOP", None), ("WScale", wscale)] if wscale is not None else [])
    return from_guest(IP(src=GUEST, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=seq, window=window,
                                                   options=opts))


def seg(flags: str, seq: int, ack: int, data: bytes = b"", sport: int = 40000, dst: str = REMOTE,
        dport: int = 80, window: int = 5000) -> Ether:
    p = from_guest(IP(src=GUEST, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack,
                                                window=window))
    return p / Raw(data) if data else p


class Conn:
    """A guest-side view of one TCP connection through the core (the test plays guest and shell)."""

    def __init__(self, core: Core, sport: int = 40000, dst: str = REMOTE, dport: int = 80, now: float = 0.0,
                 mss: int = 1460):
        self.core, self.sport, self.dst, self.dport = core, sport, dst, dport
        self.seq = 1000
        feed(core, syn(sport, dst, dport, self.seq, mss=mss), now)
        ev = core.events.pop()
        assert type(ev) is TcpOpen
        self.flow = ev.flow
        core.tcp_accept(self.flow, now)
        core.flush(now)
        (synack,) = drain(core)
        self.synack = synack
        self.seq += 1
        self.ack = synack.pkt[TCP].seq + 1
        feed(core, self.seg("A"), now)
        core.flush(now)
        assert self.flow.conn.established

    def seg(self, flags: str, data: bytes = b"", seq: int | None = None, window: int = 5000) -> Ether:
        return seg(flags, self.seq if seq is None else seq, self.ack, data, self.sport, self.dst, self.dport,
                   window=window)

    def send(self, data: bytes, now: float = 0.0, flags: str = "PA") -> None:
        feed(self.core, self.seg(flags, data), now)
        self.seq += len(data) + ("F" in flags)


# ----------------------------------------------------------------- ARP (RFC 826)

@pytest.mark.parametrize("target", [GW, DNS, "10.0.2.50"])
def test_arp_request_for_virtual_address_answered_with_gateway_mac(target: str) -> None:
    core = make_core()
    feed(core, Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") /
         ARP(op=1, hwsrc=GUEST_MAC, psrc=GUEST, hwdst="00:00:00:00:00:00", pdst=target))
    (out,) = drain(core)
    assert_match(out.pkt, Ether(dst=GUEST_MAC, src=GW_MAC, type=0x0806) /
                 ARP(op=2, hwsrc=GW_MAC, psrc=target, hwdst=GUEST_MAC, pdst=GUEST))
    assert core.statistics()["arp_replies"] == 1


def test_arp_request_for_guest_own_address_not_answered() -> None:
    core = make_core()
    # RFC 5227 probe (sender 0.0.0.0) and a gratuitous ARP for the guest's address
    feed(core, Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=GUEST_MAC, psrc="0.0.0.0", pdst=GUEST))
    feed(core, Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=GUEST_MAC, psrc=GUEST, pdst=GUEST))
    assert drain(core) == []
    assert core.statistics()["arp_ignored"] == 2


def test_arp_for_an_address_the_guest_announced_is_not_answered() -> None:
    core = make_core()
    feed(core, Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=GUEST_MAC, psrc="10.0.2.15", pdst=GW))
    drain(core)
    feed(core, Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") /
         ARP(op=1, hwsrc=GUEST_MAC, psrc="10.0.2.15", pdst="10.0.2.15"))
    assert drain(core) == []


def test_arp_probe_for_dhcp_pool_address_not_answered() -> None:
    core = make_core()
    lo, _hi = core.cfg.dhcp_pool  # 10.0.2.15: what DHCP hands out; dhcpcd probes it before use
    pool_addr = str(ipaddress.IPv4Address(lo))
    feed(core, Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") /
         ARP(op=1, hwsrc=GUEST_MAC, psrc="0.0.0.0", hwdst="00:00:00:00:00:00", pdst=pool_addr))
    assert drain(core) == []


@pytest.mark.parametrize("target", ["10.0.2.15", "10.0.2.30"])
def test_pool_address_neither_arp_nor_echo_answered(target: str) -> None:
    core = make_core()
    feed(core, Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=GUEST_MAC, psrc=GUEST, pdst=target))
    feed(core, from_guest(IP(src=GUEST, dst=target) / ICMP(type=8, id=1, seq=1)))
    assert drain(core) == []  # another guest may own it; the shell's policy refuses the ping event


def test_arp_reply_and_malformed_arp_counted() -> None:
    core = make_core()
    feed(core, Ether(src=GUEST_MAC, dst=GW_MAC) / ARP(op=2, hwsrc=GUEST_MAC, psrc=GUEST, hwdst=GW_MAC, pdst=GW))
    assert core.statistics()["arp_ignored"] == 1
    # short ARP body
    feed(core, bytes(Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff", type=0x0806)) + b"\x00\x01\x08\x00\x06")
    # not Ethernet/IPv4 (hlen 8)
    feed(core, Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwlen=8, hwsrc=GUEST_MAC, pdst=GW))
    s = core.statistics()
    assert s["drop_arp_short"] == 1 and s["drop_arp_bad"] == 1
    assert drain(core) == []


# ----------------------------------------------------------------- ICMP echo

@pytest.mark.parametrize("vnet", [False, True])
def test_echo_to_gateway_answered_locally(vnet: bool) -> None:
    core = make_core(vnet=vnet, offload=vnet)
    feed(core, from_guest(IP(src=GUEST, dst=GW) / ICMP(type=8, id=0x4242, seq=7) / Raw(b"ping-data" * 9)))
    (out,) = drain(core)
    assert_match(out.pkt, Ether(dst=GUEST_MAC, src=GW_MAC) / IP(src=GW, dst=GUEST, proto=1) /
                 ICMP(type=0, code=0, id=0x4242, seq=7) / Raw(load=b"ping-data" * 9))
    assert_checksums_valid(out.pkt)  # ICMP checksums are never offloaded
    if vnet:
        assert out.vnet == (0, 0, 0, 0, 0, 0)
    assert core.events == []
    assert core.statistics()["icmp_echo_local"] == 1


def test_echo_to_outside_address_is_an_event() -> None:
    core = make_core()
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / ICMP(type=8, id=9, seq=1) / Raw(b"abc")))
    assert drain(core) == []
    assert events(core) == [(EV_PING, ip4(GUEST), ip4(REMOTE), 9, 1, b"abc")]
    # the shell's ping socket answered: echo_reply sends it back
    core.echo_reply(ip4(REMOTE), ip4(GUEST), 9, 1, b"abc")
    (out,) = drain(core)
    assert_match(out.pkt, IP(src=REMOTE, dst=GUEST) / ICMP(type=0, id=9, seq=1) / Raw(load=b"abc"))
    assert_checksums_valid(out.pkt)


def test_echo_bad_checksum_dropped_and_counted() -> None:
    core = make_core()
    feed(core, from_guest(IP(src=GUEST, dst=GW) / ICMP(type=8, id=1, seq=1, chksum=0x1234) / Raw(b"x")))
    assert drain(core) == [] and core.events == []
    assert core.statistics()["drop_icmp_bad_checksum"] == 1


def test_icmp_error_from_guest_ignored() -> None:
    core = make_core()
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / ICMP(type=3, code=3) / IPerror(src=REMOTE, dst=GUEST) /
                          UDPerror(sport=53, dport=5000)))
    assert drain(core) == [] and core.events == []
    assert core.statistics()["icmp_ignored"] == 1


# ----------------------------------------------------------------- UDP (RFC 768)

def test_udp_to_outside_is_an_event_with_header_quote() -> None:
    core = make_core()
    dgram = IP(src=GUEST, dst=REMOTE, id=77) / UDP(sport=5000, dport=9999) / Raw(b"query")
    feed(core, from_guest(dgram))
    assert drain(core) == []
    ((ev, src, sport, dst, dport, payload, quote),) = events(core)
    assert (ev, src, sport, dst, dport, payload) == (EV_UDP, ip4(GUEST), 5000, ip4(REMOTE), 9999, b"query")
    assert quote == bytes(dgram)[:28]  # IP header + UDP header, for an ICMP error later


@pytest.mark.parametrize("vnet", [False, True])
def test_udp_out_checksum_valid(vnet: bool) -> None:
    core = make_core(vnet=vnet, offload=vnet)
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / UDP(sport=5000, dport=9999) / Raw(b"q")))
    core.udp_out(ip4(REMOTE), 9999, ip4(GUEST), 5000, b"answer")
    (out,) = drain(core)
    assert_match(out.pkt, Ether(dst=GUEST_MAC, src=GW_MAC) / IP(src=REMOTE, dst=GUEST, proto=17, flags="DF") /
                 UDP(sport=9999, dport=5000, len=14) / Raw(load=b"answer"))
    assert_checksums_valid(out.pkt)


def test_udp_larger_than_mtu_is_fragmented() -> None:
    core = make_core(mtu=1500)
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / UDP(sport=5000, dport=9999) / Raw(b"q")))
    payload = bytes(range(256)) * 15 + b"tail" * 40  # 4000 bytes
    core.udp_out(ip4(REMOTE), 9999, ip4(GUEST), 5000, payload)
    outs = drain(core)
    assert len(outs) == 3
    ips = [o.pkt[IP] for o in outs]
    for o in outs:
        assert len(o.raw) - 14 <= 1500
        hdr = IP(bytes(o.pkt[IP]))
        again = IP(bytes(hdr))
        del again.chksum
        assert IP(bytes(again)).chksum == hdr.chksum
    assert len({ip.id for ip in ips}) == 1
    assert [ip.frag * 8 for ip in ips] == [0, 1480, 2960]
    assert [str(ip.flags) for ip in ips] == ["MF", "MF", ""]
    (whole,) = defragment([IP(bytes(ip)) for ip in ips])
    whole = IP(bytes(whole))
    assert_match(whole, IP(src=REMOTE, dst=GUEST) / UDP(sport=9999, dport=5000, len=8 + 4000))
    assert bytes(whole[UDP].payload) == payload
    again = whole.copy()
    del again[UDP].chksum
    assert IP(bytes(again))[UDP].chksum == whole[UDP].chksum


def test_udp_bad_checksum_dropped_zero_checksum_accepted() -> None:
    core = make_core()
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / UDP(sport=5000, dport=9999, chksum=0xBEEF) / Raw(b"bad")))
    assert core.events == []
    assert core.statistics()["drop_udp_bad_checksum"] == 1
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / UDP(sport=5000, dport=9999, chksum=0) / Raw(b"none")))
    assert [e[5] for e in events(core)] == [b"none"]  # RFC 768: zero = no checksum (IPv4)


def test_udp_checksum_trusted_when_guest_left_it_to_the_device() -> None:
    core = make_core(vnet=True, offload=True)
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / UDP(sport=5000, dport=9999, chksum=0xBEEF) / Raw(b"ok")),
         vflags=1)  # VIRTIO_NET_HDR_F_NEEDS_CSUM
    assert [e[5] for e in events(core)] == [b"ok"]


def test_udp_bad_length_dropped() -> None:
    core = make_core()
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / UDP(sport=5000, dport=9999, len=200) / Raw(b"short")))
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / UDP(sport=5000, dport=9999, len=4)))
    assert core.events == []
    assert core.statistics()["drop_udp_bad_length"] == 2


# ----------------------------------------------------------------- policy through the core

def test_syn_to_gateway_refused_without_host_loopback() -> None:
    core = make_core()
    feed(core, syn(dst=GW, dport=80, seq=5000))
    assert core.events == []
    (out,) = drain(core)
    assert_match(out.pkt, IP(src=GW, dst=GUEST) / TCP(sport=80, dport=40000, flags="RA", seq=0, ack=5001))
    assert_checksums_valid(out.pkt)
    s = core.statistics()
    assert s["refused_host_loopback"] == 1 and s["tcp_refused"] == 1 and s["tcp_flows"] == 0


def test_syn_to_gateway_with_host_loopback_opens_to_127_0_0_1() -> None:
    core = make_core(allow_host_loopback=True)
    feed(core, syn(dst=GW, dport=80))
    ((ev, flow),) = events(core)
    assert ev == EV_TCP_OPEN and flow.handle == ("127.0.0.1", 80)
    assert drain(core) == []  # nothing until the shell accepts


def test_syn_to_dns_port_53_goes_to_upstream() -> None:
    core = make_core(dns_upstream=("198.51.100.53", 5353))
    feed(core, syn(dst=DNS, dport=53))
    ((ev, flow),) = events(core)
    assert flow.handle == ("198.51.100.53", 5353)
    feed(core, syn(sport=40001, dst=DNS, dport=80))
    assert len(events(core)) == 1
    assert core.statistics()["refused_virtual_address"] == 1


def test_syn_to_other_virtual_address_refused() -> None:
    core = make_core(allow_host_loopback=True)
    feed(core, syn(dst="10.0.2.77", dport=22, seq=99))
    assert core.events == []
    (out,) = drain(core)
    assert_match(out.pkt, IP(src="10.0.2.77", dst=GUEST) / TCP(flags="RA", ack=100))
    assert core.statistics()["refused_virtual_address"] == 1


def test_outbound_none_refuses_and_cidr_allows() -> None:
    core = make_core(outbound=())
    feed(core, syn())
    assert core.events == [] and core.statistics()["refused_outbound"] == 1
    assert_match(drain(core)[0].pkt, TCP(flags="RA"))
    core = make_core(outbound=(ipaddress.ip_network("192.0.2.0/24"),))
    feed(core, syn())
    assert events(core)[0][1].handle == (REMOTE, 80)
    feed(core, syn(sport=40001, dst="198.51.100.1"))
    assert len(events(core)) == 1 and core.statistics()["refused_outbound"] == 1


# ----------------------------------------------------------------- TCP through the core (RFC 9293)

@pytest.mark.parametrize("mtu", [1500, 65520])
def test_syn_ack_carries_mss_and_window_scale(mtu: int) -> None:
    core = make_core(mtu=mtu)
    feed(core, syn(seq=1000))
    ((ev, flow),) = events(core)
    core.tcp_accept(flow, 0.0)
    core.flush(0.0)
    (out,) = drain(core)
    assert_match(out.pkt, Ether(dst=GUEST_MAC, src=GW_MAC) / IP(src=REMOTE, dst=GUEST) /
                 TCP(sport=80, dport=40000, flags="SA", seq=ISS, ack=1001))
    opts = dict(out.pkt[TCP].options)
    assert opts["MSS"] == mtu - 40
    assert opts["WScale"] == 7  # 4 MiB receive buffer
    assert_checksums_valid(out.pkt)


def test_data_both_ways_with_correct_seq_and_ack() -> None:
    core = make_core(mtu=1500)
    c = Conn(core)
    flow = c.flow
    c.send(b"GET / HTTP/1.0\r\n\r\n", now=0.1)
    noticed = core.flush(0.1)
    assert flow in noticed and flow.notice & Notice.READABLE
    (ack,) = drain(core)
    assert_match(ack.pkt, TCP(flags="A", seq=c.ack, ack=c.seq))
    # the test is the shell: read the host-bound bytes
    assert flow.conn.readable() == 18
    assert bytes(flow.conn.peek(100)) == b"GET / HTTP/1.0\r\n\r\n"
    flow.conn.consume(18)
    assert flow.conn.send(b"reply") == 5
    core.touch(flow)
    core.flush(0.2)
    (data,) = drain(core)
    assert_match(data.pkt, IP(src=REMOTE, dst=GUEST) / TCP(sport=80, dport=40000, flags="PA", seq=c.ack, ack=c.seq) /
                 Raw(load=b"reply"))
    assert_checksums_valid(data.pkt)
    assert data.parts[-1] == b"reply"  # payload handed over separately (one writev)


def _time_wait(core: Core) -> "Conn":
    """A connection the host closed first, now in TIME-WAIT (the guest's FIN acknowledged)."""
    c = Conn(core)
    flow = c.flow
    flow.conn.close()
    core.touch(flow)
    core.flush(1.0)
    c.ack += 1
    feed(core, c.seg("A"), 1.0)
    c.send(b"", now=1.0, flags="FA")
    core.flush(1.0)
    drain(core)
    assert core.statistics()["tcp_time_wait_entries"] == 1 and flow.key not in core.flows
    return c


def test_close_both_ways_and_time_wait_frees_the_flow() -> None:
    core = make_core(mtu=1500)
    c = Conn(core)
    flow = c.flow
    # the host closed first: FIN to the guest
    flow.conn.close()
    core.touch(flow)
    core.flush(1.0)
    (fin,) = drain(core)
    assert_match(fin.pkt, TCP(flags="FPA", seq=c.ack, ack=c.seq))  # FIN implies PUSH
    c.ack += 1
    # the guest acks and closes
    feed(core, c.seg("A"), 1.1)
    c.send(b"", now=1.1, flags="FA")
    noticed = core.flush(1.1)
    assert flow in noticed and flow.notice & Notice.PEER_FIN and flow.notice & Notice.CLOSED
    (last_ack,) = drain(core)
    assert_match(last_ack.pkt, TCP(flags="A", seq=c.ack, ack=c.seq))
    # TIME-WAIT lives in its own table: the flow (and its buffers) are gone
    st = core.statistics()
    assert st["tcp_flows"] == 0 and st["tcp_time_wait_entries"] == 1 and st["tcp_mem_held"] == 0
    assert core.next_deadline() == pytest.approx(1.1 + 60)
    core.run_timers(1.1 + 30)
    assert core.statistics()["tcp_time_wait_entries"] == 1
    core.run_timers(1.1 + 61)
    assert core.statistics()["tcp_time_wait_entries"] == 0 and core.next_deadline() is None
    assert drain(core) == []


def test_guest_closes_first_last_ack() -> None:
    core = make_core(mtu=1500)
    c = Conn(core)
    flow = c.flow
    c.send(b"bye", flags="FPA", now=0.5)
    core.flush(0.5)
    assert flow.conn.peer_closed and not flow.conn.at_eof
    flow.conn.consume(3)
    assert flow.conn.at_eof
    drain(core)
    flow.conn.close()
    core.touch(flow)
    core.flush(0.6)
    (fin,) = drain(core)
    assert_match(fin.pkt, TCP(flags="FPA", seq=c.ack, ack=c.seq))  # FIN implies PUSH
    c.ack += 1
    feed(core, c.seg("A"), 0.7)
    noticed = core.flush(0.7)
    assert flow in noticed and flow.conn.closed and flow.notice & Notice.CLOSED


def test_new_syn_in_time_wait_recycles_the_flow() -> None:
    core = make_core(mtu=1500)
    c = _time_wait(core)
    feed(core, syn(seq=c.seq + 100000), 2.0)
    ((ev, new),) = events(core)
    assert ev == EV_TCP_OPEN and new is not c.flow and core.flows[new.key] is new
    assert core.statistics()["tcp_time_wait_entries"] == 0


def test_guest_rst_raises_reset_notice() -> None:
    core = make_core(mtu=1500)
    c = Conn(core)
    feed(core, c.seg("R"), 0.3)
    assert c.flow.notice & Notice.RESET
    noticed = core.flush(0.3)
    assert c.flow in noticed and c.flow.conn.closed and c.flow.conn.reset_by_peer
    assert drain(core) == []


def test_rst_out_of_window_gets_challenge_ack() -> None:
    core = make_core(mtu=1500)
    c = Conn(core)
    feed(core, c.seg("R", seq=c.seq + 10), 0.3)  # RFC 5961 §3.2: in window but not RCV.NXT
    core.flush(0.3)
    (ack,) = drain(core)
    assert_match(ack.pkt, TCP(flags="A", seq=c.ack, ack=c.seq))
    assert not c.flow.notice & Notice.RESET


def test_tcp_refuse_sends_rst_ack() -> None:
    core = make_core()
    feed(core, syn(seq=0xFFFFFFFF))  # ISN at the wrap: ACK = 0
    ((ev, flow),) = events(core)
    core.tcp_refuse(flow)
    (out,) = drain(core)
    assert_match(out.pkt, IP(src=REMOTE, dst=GUEST) / TCP(sport=80, dport=40000, flags="RA", seq=0, ack=0))
    assert_checksums_valid(out.pkt)
    assert core.statistics()["tcp_flows"] == 0


def test_tcp_unreachable_sends_icmp_quoting_the_syn() -> None:
    core = make_core()
    feed(core, syn(sport=40123, dport=443, seq=4242))
    ((ev, flow),) = events(core)
    core.tcp_unreachable(flow, 1)  # host unreachable
    (out,) = drain(core)
    assert_match(out.pkt, IP(src=REMOTE, dst=GUEST) / ICMP(type=3, code=1) /
                 IPerror(src=GUEST, dst=REMOTE, proto=6) / TCPerror(sport=40123, dport=443, seq=4242, flags="S"))
    assert_checksums_valid(out.pkt)
    assert core.statistics()["tcp_flows"] == 0 and core.statistics()["icmp_unreachable_sent"] == 1


def test_icmp_unreachable_for_udp_quote() -> None:
    core = make_core()
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / UDP(sport=5000, dport=9) / Raw(b"x")))
    quote = events(core)[0][6]
    core.icmp_unreachable(quote, 3)
    (out,) = drain(core)
    assert_match(out.pkt, IP(src=REMOTE, dst=GUEST) / ICMP(type=3, code=3) / IPerror(src=GUEST, dst=REMOTE) /
                 UDPerror(sport=5000, dport=9))
    assert_checksums_valid(out.pkt)


def test_segment_for_unknown_flow_gets_rst() -> None:
    core = make_core()
    # RFC 9293 §3.10.7.1: ACK set -> <SEQ=SEG.ACK><CTL=RST>
    feed(core, seg("A", seq=5, ack=777, sport=40001))
    (out,) = drain(core)
    assert_match(out.pkt, IP(src=REMOTE, dst=GUEST) / TCP(sport=80, dport=40001, flags="R", seq=777))
    assert_checksums_valid(out.pkt)
    # no ACK -> <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    feed(core, from_guest(IP(src=GUEST, dst=REMOTE) / TCP(sport=40002, dport=80, flags="F", seq=10) / Raw(b"abc")))
    (out,) = drain(core)
    assert_match(out.pkt, TCP(flags="RA", seq=0, ack=14))
    # an RST is never answered
    feed(core, seg("R", seq=5, ack=0, sport=40003))
    assert drain(core) == []
    assert core.statistics()["tcp_no_flow"] == 3


# ----------------------------------------------------------------- offload (virtio-net header)

def _finish_checksum(out: Out) -> Ether:
    """Do what the device does for NEEDS_CSUM: sum from csum_start, store at csum_start+csum_offset."""
    flags, _gso, _hl, _gs, start, off = out.vnet
    raw = bytearray(out.raw)
    ck = 0xFFFF - ones_sum(raw[start:])
    raw[start + off : start + off + 2] = struct.pack("!H", ck)
    return Ether(bytes(raw))


def test_offload_small_segment_has_partial_checksum() -> None:
    core = make_core(vnet=True, offload=True)
    c = Conn(core)
    assert c.synack.vnet == (1, 0, 0, 0, 34, 16)
    c.flow.conn.send(b"small")
    core.touch(c.flow)
    core.flush(0.1)
    (out,) = drain(core)
    assert out.vnet == (1, 0, 0, 0, 34, 16)
    assert_checksums_valid(_finish_checksum(out))


def test_offload_large_send_is_one_gso_frame() -> None:
    core = make_core(vnet=True, offload=True)  # mtu 65520: the guest's MSS limits
    c = Conn(core, mss=1460)
    data = bytes(i % 251 for i in range(60000))
    assert c.flow.conn.send(data) == 60000
    core.touch(c.flow)
    core.flush(0.1)
    (out,) = drain(core)  # one super-segment, whatever the congestion window allows
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = out.vnet
    assert (flags, gso_type, gso_size, csum_start, csum_offset) == (1, 1, 1460, 34, 16)
    assert hdr_len == 14 + 20 + 20
    tcp = out.pkt[TCP]
    n = len(tcp.payload)
    assert n > 1460 and n % 1460 == 0
    assert bytes(tcp.payload) == data[:n]
    assert_match(out.pkt, IP(src=REMOTE, dst=GUEST, len=40 + n) / TCP(seq=c.ack, ack=c.seq))
    pseudo = ones_sum(ip4(REMOTE) + ip4(GUEST) + struct.pack("!xBH", 6, 20 + n))
    assert tcp.chksum == pseudo  # the folded pseudo-header sum, not complemented
    assert_checksums_valid(_finish_checksum(out))
    # ack it: the rest follows, still as GSO frames
    feed(core, seg("A", c.seq, c.ack + n), 0.2)
    core.flush(0.2)
    rest = drain(core)
    assert rest and all(o.vnet[1] == 1 and o.vnet[3] == 1460 for o in rest if len(o.pkt[TCP].payload) > 1460)
    got = data[:n] + b"".join(bytes(o.pkt[TCP].payload) for o in rest)
    assert data.startswith(got) and len(got) > n


def test_vnet_without_offload_has_zero_header_and_full_checksums() -> None:
    core = make_core(vnet=True, offload=False, mtu=1500)
    c = Conn(core)
    assert c.synack.vnet == (0, 0, 0, 0, 0, 0)
    assert_checksums_valid(c.synack.pkt)
    c.flow.conn.send(b"z" * 5000)
    core.touch(c.flow)
    core.flush(0.1)
    outs = drain(core)
    assert [len(o.pkt[TCP].payload) for o in outs] == [1460, 1460, 1460, 620]
    for o in outs:
        assert o.vnet == (0, 0, 0, 0, 0, 0)
        assert_checksums_valid(o.pkt)


def test_guest_checksum_offload_flag_skips_verification() -> None:
    core = make_core(vnet=True, offload=True)
    frame = syn()
    frame[TCP].chksum = 0x1111  # partial: the guest kernel left it to the device (us)
    feed(core, frame, vflags=1)
    assert [e[0] for e in events(core)] == [EV_TCP_OPEN]
    feed(core, frame, vflags=0)  # the same bytes without the flag: verified, dropped
    assert len(events(core)) == 1 and core.statistics()["drop_tcp_bad_checksum"] == 1


# ----------------------------------------------------------------- guest MAC learning

def test_frames_before_guest_mac_known_are_sent_once_it_is() -> None:
    core = make_core(vnet=True, offload=True)
    core.udp_out(ip4(REMOTE), 9999, ip4(GUEST), 5000, b"early")
    core.echo_reply(ip4(REMOTE), ip4(GUEST), 1, 1, b"early ping")
    early = drain(core)  # only one broadcast ARP request to learn the guest's MAC; the frames wait
    assert len(early) == 1 and early[0].pkt[Ether].dst == "ff:ff:ff:ff:ff:ff"
    assert_match(early[0].pkt, ARP(op=1, psrc=GW, pdst=GUEST))
    feed(core, Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=GUEST_MAC, psrc=GUEST, pdst=GW))
    outs = drain(core)
    assert len(outs) == 3
    assert all(o.pkt[Ether].dst == GUEST_MAC and o.pkt[Ether].src == GW_MAC for o in outs)
    assert_match(outs[0].pkt, UDP(sport=9999, dport=5000) / Raw(load=b"early"))
    assert_match(outs[1].pkt, ICMP(type=0) / Raw(load=b"early ping"))
    assert_match(outs[2].pkt, ARP(op=2, psrc=GW))
    assert_checksums_valid(outs[0].pkt)


def test_guest_mac_not_learned_from_multicast_source() -> None:
    core = make_core()
    feed(core, Ether(src="01:00:5e:00:00:01", dst=GW_MAC) / IP(src=GUEST, dst=GW) / ICMP())
    assert core.guest_mac is None and core.statistics()["drop_bad_src_mac"] == 1


def test_frame_for_another_mac_ignored() -> None:
    core = make_core()
    feed(core, Ether(src=GUEST_MAC, dst="52:54:00:99:99:99") / IP(src=GUEST, dst=GW) / ICMP())
    assert drain(core) == [] and core.statistics()["drop_not_for_us"] == 1


# ----------------------------------------------------------------- statistics

def test_statistics_is_a_snapshot() -> None:
    core = make_core()
    snap = core.statistics()
    feed(core, b"\x00" * 5)
    assert snap.get("drop_runt", 0) == 0 and core.statistics()["drop_runt"] == 1
    assert core.statistics()["tcp_flows"] == 0


# ----------------------------------------------------------------- IPv6 through the core

GUEST6, REMOTE6 = "fd00::100", "2001:db8::1"


def test_v6_syn_opens_and_syn_ack_uses_v6_mss() -> None:
    from scapy.layers.inet6 import IPv6

    core = make_core(ipv6=True, mtu=1500)
    feed(core, from_guest(IPv6(src=GUEST6, dst=REMOTE6) / TCP(sport=40000, dport=443, flags="S", seq=7,
                                                                options=[("MSS", 1440)])))
    ((ev, flow),) = events(core)
    assert flow.handle == (REMOTE6, 443)
    core.tcp_accept(flow, 0.0)
    core.flush(0.0)
    (out,) = drain(core)
    assert_match(out.pkt, IPv6(src=REMOTE6, dst=GUEST6) / TCP(sport=443, dport=40000, flags="SA", ack=8))
    assert dict(out.pkt[TCP].options)["MSS"] == 1500 - 60
    assert_checksums_valid(out.pkt)


def test_v6_unreachable_is_icmpv6_quoting_the_syn() -> None:
    from scapy.layers.inet6 import ICMPv6DestUnreach, IPerror6, IPv6

    core = make_core(ipv6=True)
    feed(core, from_guest(IPv6(src=GUEST6, dst=REMOTE6) / TCP(sport=40000, dport=443, flags="S", seq=7)))
    ((ev, flow),) = events(core)
    core.tcp_unreachable(flow, 3)
    (out,) = drain(core)
    assert_match(out.pkt, IPv6(src=REMOTE6, dst=GUEST6) / ICMPv6DestUnreach(code=4) /
                 IPerror6(src=GUEST6, dst=REMOTE6) / TCPerror(sport=40000, dport=443, seq=7))
    again = out.pkt.copy()
    del again[ICMPv6DestUnreach].cksum
    assert Ether(bytes(again))[ICMPv6DestUnreach].cksum == out.pkt[ICMPv6DestUnreach].cksum


def test_v6_echo_to_gateway_answered() -> None:
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6

    core = make_core(ipv6=True)
    feed(core, from_guest(IPv6(src=GUEST6, dst="fd00::2") / ICMPv6EchoRequest(id=3, seq=4, data=b"hi")))
    (out,) = drain(core)
    assert_match(out.pkt, IPv6(src="fd00::2", dst=GUEST6) / ICMPv6EchoReply(id=3, seq=4, data=b"hi"))
    feed(core, from_guest(IPv6(src=GUEST6, dst=REMOTE6) / ICMPv6EchoRequest(id=3, seq=5, data=b"out")))
    assert events(core) == [(EV_PING, ipaddress.IPv6Address(GUEST6).packed, ipaddress.IPv6Address(REMOTE6).packed,
                            3, 5, b"out")]


def test_v6_syn_to_v4_mapped_loopback_refused() -> None:
    from scapy.layers.inet6 import IPv6

    core = make_core(ipv6=True)
    feed(core, from_guest(IPv6(src=GUEST6, dst="::ffff:127.0.0.1") / TCP(sport=40000, dport=22, flags="S")))
    assert core.events == []


# ----------------------------------------------------------------- ICMP error quotes

def test_udp_quote_covers_ip_options() -> None:
    core = make_core()
    dgram = IP(src=GUEST, dst=REMOTE, options=[b"\x94\x04\x00\x00"]) / UDP(sport=5000, dport=9) / Raw(b"x")
    feed(core, from_guest(dgram))
    quote = events(core)[0][6]
    assert quote == bytes(dgram)[:24 + 8]
    core.icmp_unreachable(quote, 3)
    (out,) = drain(core)
    assert_match(out.pkt, ICMP(type=3, code=3) / UDPerror(sport=5000, dport=9))


def test_tcp_unreachable_quote_has_valid_ip_checksum() -> None:
    core = make_core()
    feed(core, syn(sport=40123, dport=443, seq=4242))
    ((ev, flow),) = events(core)
    core.tcp_unreachable(flow, 1)
    (out,) = drain(core)
    inner = IP(bytes(out.pkt[IPerror]))
    again = inner.copy()
    del again.chksum
    assert IP(bytes(again)).chksum == inner.chksum
