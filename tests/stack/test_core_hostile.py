"""A hostile guest against the core: garbage in never raises, every drop is counted (stack.core).

hypothesis and scapy build the bad frames; after each one the test checks
that ``Core.receive`` returned normally and that the frame left a trace: a
counter grew (``drop_*`` for drops), or it produced a frame or an event.
Established flows must come through the noise byte-exact.
"""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from rootlessnet.stack.config import GATEWAY_MAC, Limits, NetConfig
from rootlessnet.stack.core import Core, TcpOpen
from test_core import EV_TCP_OPEN, events

GUEST_MAC = "52:54:00:12:34:56"
GW_MAC = ":".join(f"{b:02x}" for b in GATEWAY_MAC)
GUEST, REMOTE = "10.0.2.100", "192.0.2.1"
GUEST6, REMOTE6 = "fd00::100", "2001:db8::1"

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_core(**cfg) -> Core:
    return Core(NetConfig(**cfg))


def drops(core: Core) -> int:
    return sum(v for k, v in core.stats.items() if k.startswith("drop_"))


def trace(core: Core) -> int:
    """Everything a frame can leave behind: counters (core and flows), frames, events.

    Internal errors are not a trace: a bug caught by Core.receive must not pass for a drop."""
    assert not core.stats.get("internal_errors"), core.first_internal_error
    tcp = sum(sum(f.conn.statistics().values()) for f in core.flows.values())
    return sum(core.stats.values()) + tcp + len(core.frames) + len(core._pending_l2) + len(events(core))


def feed(core: Core, frame, now: float = 0.0, vflags: int = 0) -> None:
    core.receive(bytes(frame), vflags, now)


def g(l3):
    return Ether(src=GUEST_MAC, dst=GW_MAC) / l3


VALID = {
    "tcp": g(IP(src=GUEST, dst=REMOTE) / TCP(sport=40000, dport=80, flags="S", seq=1,
                                             options=[("MSS", 1460), ("NOP", None), ("WScale", 7)])),
    "udp": g(IP(src=GUEST, dst=REMOTE) / UDP(sport=5000, dport=9999) / Raw(b"query")),
    "icmp": g(IP(src=GUEST, dst="10.0.2.2") / ICMP(type=8, id=1, seq=1) / Raw(b"ping")),
    "arp": Ether(src=GUEST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=GUEST_MAC, psrc=GUEST, pdst="10.0.2.2"),
    "tcp6": g(IPv6(src=GUEST6, dst=REMOTE6) / TCP(sport=40000, dport=80, flags="S", seq=1)),
    "udp6": g(IPv6(src=GUEST6, dst=REMOTE6) / UDP(sport=5000, dport=9999) / Raw(b"query")),
}


# ----------------------------------------------------------------- random bytes

@SETTINGS
@given(st.binary(max_size=200), st.integers(0, 3))
@example(b"", 0)
@example(b"\xff" * 14, 0)
def test_random_bytes_never_raise(buf: bytes, vflags: int) -> None:
    core = make_core(ipv6=True)
    core.receive(buf, vflags, 0.0)
    assert trace(core) > 0


@SETTINGS
@given(st.sampled_from([0x0800, 0x86DD, 0x0806, 0x88CC, 0x8100]), st.binary(max_size=120), st.integers(0, 3))
def test_random_payload_after_valid_ethernet_header(etype: int, body: bytes, vflags: int) -> None:
    core = make_core(ipv6=True)
    before = drops(core)
    core.receive(bytes(Ether(src=GUEST_MAC, dst=GW_MAC, type=etype)) + body, vflags, 0.0)
    assert trace(core) > 0
    if not core.frames and not core.events:
        assert drops(core) > before or any(k.endswith("_ignored") for k in core.stats)


@SETTINGS
@given(st.sampled_from([6, 17, 1, 58, 47, 132]), st.binary(max_size=80), st.booleans())
def test_random_l4_in_valid_ip_header(proto: int, l4: bytes, v6: bool) -> None:
    core = make_core(ipv6=True)
    l3 = IPv6(src=GUEST6, dst=REMOTE6, nh=proto) if v6 else IP(src=GUEST, dst=REMOTE, proto=proto)
    core.receive(bytes(g(l3 / Raw(l4))), 0, 0.0)
    assert trace(core) > 0


# ----------------------------------------------------------------- truncation and bad headers

@pytest.mark.parametrize("kind", sorted(VALID))
def test_truncated_at_every_length_is_dropped(kind: str) -> None:
    raw = bytes(VALID[kind])
    core = make_core(ipv6=True)
    for n in range(len(raw)):
        before = drops(core)
        core.receive(raw[:n], 0, 0.0)
        assert drops(core) == before + 1, f"{kind} cut at {n}: {core.statistics()}"
    assert core.events == [] and core.frames == []
    core.receive(raw, 0, 0.0)  # the whole frame still works
    assert events(core) or core.frames


@pytest.mark.parametrize("kind", ["tcp", "udp", "icmp"])
def test_wrong_ip_total_length(kind: str) -> None:
    pkt = VALID[kind].copy()
    real = len(pkt[IP])
    for total in list(range(0, real)) + [real + 1, real + 100, 0xFFFF]:
        core = make_core()
        bad = pkt.copy()
        bad[IP].len = total
        del bad[IP].chksum  # a valid header checksum over the lie
        before = drops(core)
        feed(core, bad)
        assert drops(core) == before + 1, f"total={total}: {core.statistics()}"
        assert core.events == [] and core.frames == []


def test_ethernet_padding_after_ip_total_length_is_ignored() -> None:
    core = make_core()
    feed(core, bytes(VALID["tcp"]) + b"\x00" * 6)
    feed(core, bytes(VALID["udp"]) + b"\xaa" * 10)
    assert [e[0] for e in events(core)] == [EV_TCP_OPEN, "udp"]
    assert events(core)[1][5] == b"query"


def test_ip_options_are_skipped() -> None:
    core = make_core()
    feed(core, g(IP(src=GUEST, dst=REMOTE, options=[b"\x94\x04\x00\x00"]) / UDP(sport=1, dport=2) / Raw(b"ra")))
    assert events(core)[0][5] == b"ra"


@pytest.mark.parametrize("kind", ["tcp", "udp", "icmp"])
def test_bad_ip_header_checksum(kind: str) -> None:
    core = make_core()
    bad = VALID[kind].copy()
    bad[IP].chksum = (IP(bytes(bad[IP])).chksum + 1) & 0xFFFF
    feed(core, bad)
    assert core.stats["drop_ip4_bad_checksum"] == 1 and not core.events and not core.frames


@pytest.mark.parametrize("version", [0, 5, 6, 15])
def test_bad_ip_version_or_ihl(version: int) -> None:
    core = make_core()
    bad = VALID["udp"].copy()
    bad[IP].version = version
    feed(core, bad)
    bad = VALID["udp"].copy()
    bad[IP].ihl = 4
    feed(core, bad)
    assert core.stats["drop_ip4_bad_header"] == 2


@pytest.mark.parametrize("flags,frag", [("MF", 0), ("MF", 185), ("", 185), ("DF+MF", 0), ("", 1)])
@pytest.mark.parametrize("kind", ["tcp", "udp", "icmp"])
def test_ipv4_fragments_dropped(kind: str, flags: str, frag: int) -> None:
    core = make_core()
    f = VALID[kind].copy()
    f[IP].flags = flags
    f[IP].frag = frag
    feed(core, f)
    assert core.stats["drop_ip4_fragment"] == 1 and not core.events and not core.frames


def test_ipv6_fragment_header_dropped() -> None:
    core = make_core(ipv6=True)
    feed(core, g(IPv6(src=GUEST6, dst=REMOTE6) / IPv6ExtHdrFragment(m=1, id=7) / UDP(sport=1, dport=2) / Raw(b"x")))
    feed(core, g(IPv6(src=GUEST6, dst=REMOTE6) / IPv6ExtHdrFragment(m=0, offset=0, id=8) / UDP(sport=1, dport=2)))
    assert core.stats["drop_ip6_fragment"] == 2 and not core.events


def test_ipv6_disabled_drops_everything_v6() -> None:
    core = make_core()
    feed(core, VALID["tcp6"])
    assert core.stats["drop_ip6_disabled"] == 1 and not core.events and not core.frames


@pytest.mark.parametrize("src", ["127.0.0.1", "224.0.0.1", "255.255.255.255", "0.0.0.0"])
def test_bad_ipv4_source_dropped(src: str) -> None:
    core = make_core()
    feed(core, g(IP(src=src, dst=REMOTE) / TCP(sport=1, dport=80, flags="S")))
    feed(core, g(IP(src=src, dst=REMOTE) / UDP(sport=1, dport=80)))
    assert core.stats["drop_ip4_bad_source"] == 2 and not core.events and not core.frames


@pytest.mark.parametrize("src", ["ff02::1", "::1"])
def test_bad_ipv6_source_dropped(src: str) -> None:
    core = make_core(ipv6=True)
    feed(core, g(IPv6(src=src, dst=REMOTE6) / TCP(sport=1, dport=80, flags="S")))
    assert not core.events and not core.frames


# ----------------------------------------------------------------- TCP flags

@pytest.mark.parametrize("flags", ["SR", "SF", "SRA", "SFA", "SFRPAU"])
def test_illegal_syn_combinations_dropped(flags: str) -> None:
    core = make_core()
    feed(core, g(IP(src=GUEST, dst=REMOTE) / TCP(sport=40000, dport=80, flags=flags, seq=1)))
    assert core.stats["drop_tcp_bad_flags"] == 1
    assert not core.events and not core.frames and not core.flows


@pytest.mark.parametrize("doff", [0, 1, 4, 15])
def test_bad_tcp_data_offset(doff: int) -> None:
    core = make_core()
    f = VALID["tcp"].copy()
    f[TCP].dataofs = doff
    f[TCP].options = []
    del f[TCP].chksum
    feed(core, f)
    assert drops(core) == 1 and not core.events


@SETTINGS
@given(st.binary(min_size=1, max_size=40))
def test_garbage_tcp_options_never_raise(opts: bytes) -> None:
    opts = opts + b"\x00" * (-len(opts) % 4)
    core = make_core()
    raw = bytes(g(IP(src=GUEST, dst=REMOTE) / TCP(sport=40000, dport=80, flags="S", seq=1, dataofs=5 + len(opts) // 4)
                  / Raw(opts)))
    # scapy put our bytes after a 20-byte header: they are the options now; fix the checksum by re-parsing
    p = Ether(raw)
    del p[TCP].chksum
    core.receive(bytes(Ether(bytes(p))), 0, 0.0)
    assert trace(core) > 0


# ----------------------------------------------------------------- established flows under fire

class Guest:
    """The guest's side of one TCP connection through the core; the test is also the shell."""

    def __init__(self, core: Core, sport: int = 40000):
        self.core, self.sport = core, sport
        self.seq = 1000
        feed(core, g(IP(src=GUEST, dst=REMOTE) / TCP(sport=sport, dport=80, flags="S", seq=self.seq,
                                                     options=[("MSS", 1460), ("NOP", None), ("WScale", 7)])))
        self.flow = core.events.pop().flow
        core.tcp_accept(self.flow, 0.0)
        core.flush(0.0)
        synack = Ether(b"".join(core.take_frames()[0]))
        self.seq += 1
        self.ack = synack[TCP].seq + 1
        self.raw(self.seq, "A")
        core.flush(0.0)
        assert self.flow.conn.established

    def raw(self, seq: int, flags: str = "PA", data: bytes = b"", ack: int | None = None) -> None:
        p = g(IP(src=GUEST, dst=REMOTE) / TCP(sport=self.sport, dport=80, flags=flags, seq=seq & 0xFFFFFFFF,
                                              ack=(self.ack if ack is None else ack) & 0xFFFFFFFF, window=5000))
        feed(self.core, p / Raw(data) if data else p)

    def send(self, data: bytes) -> None:
        self.raw(self.seq, "PA", data)
        self.seq += len(data)

    def read_all(self) -> bytes:
        c = self.flow.conn
        out = bytes(c.peek(c.readable()))
        c.consume(len(out))
        return out


WINDOW = 4 << 20  # the core's receive buffer


@SETTINGS
@given(st.one_of(st.integers(WINDOW, 2**31 - 1), st.integers(-(2**31), -1)), st.binary(min_size=1, max_size=64))
def test_out_of_window_data_does_not_corrupt_stream(offset: int, junk: bytes) -> None:
    core = make_core(mtu=1500)
    guest = Guest(core)
    guest.send(b"first ")
    core.flush(0.0)
    core.take_frames()
    if offset < 0:
        offset = min(offset, -len(junk))  # wholly before RCV.NXT: an old duplicate
    guest.raw(guest.seq + offset, "PA", junk)
    core.flush(0.0)
    acks = [Ether(b"".join(f)) for f in core.take_frames()]
    assert all(a[TCP].ack == guest.seq and not a[TCP].payload for a in acks)  # at most a dup ACK
    guest.send(b"second")
    core.flush(0.0)
    assert guest.read_all() == b"first second"
    assert guest.flow.conn.established and core.flows[guest.flow.key] is guest.flow


def test_overlapping_retransmission_keeps_first_bytes() -> None:
    core = make_core(mtu=1500)
    guest = Guest(core)
    guest.send(b"hello")
    guest.raw(guest.seq - 5, "PA", b"XXXXX")  # a retransmission that lies: ignored (already received)
    guest.raw(guest.seq - 2, "PA", b"XX world")  # overlaps RCV.NXT: only the new part counts
    guest.seq += 6
    core.flush(0.0)
    assert guest.read_all() == b"hello world"


def test_syn_flood_of_2000_ports() -> None:
    core = make_core()
    template = bytes(VALID["tcp"])
    p = Ether(template)
    for port in range(20000, 22000):
        p[TCP].sport = port
        del p[TCP].chksum
        core.receive(bytes(p), 0, 0.0)
    assert len(events(core)) == 2000
    assert {e[1].gport for e in events(core)} == set(range(20000, 22000))
    assert core.statistics()["tcp_flows"] == 2000 and core.statistics()["tcp_syn"] == 2000
    assert core.frames == []  # nothing answered until the shell accepts


def test_syn_flood_beyond_table_limit_is_refused_and_counted() -> None:
    core = Core(NetConfig(limits=Limits(tcp_flows=100)))
    p = Ether(bytes(VALID["tcp"]))
    for port in range(30000, 30150):
        p[TCP].sport = port
        del p[TCP].chksum
        core.receive(bytes(p), 0, 0.0)
    assert len(events(core)) == 100 and core.stats["tcp_refused_table_full"] == 50
    rsts = [Ether(b"".join(f)) for f in core.take_frames()]
    assert len(rsts) == 50 and all(r[TCP].flags == "RA" for r in rsts)


def test_repeated_syn_same_port_is_one_flow() -> None:
    core = make_core()
    for _ in range(5):
        feed(core, VALID["tcp"])
    assert len(events(core)) == 1 and len(core.flows) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([0x0800, 0x86DD, 0x0806, 0x1234]), st.binary(max_size=100)),
                min_size=1, max_size=20))
def test_garbage_after_valid_flow_does_not_affect_it(garbage) -> None:
    core = make_core(mtu=1500, ipv6=True)
    guest = Guest(core)
    guest.send(b"request")
    core.flush(0.0)
    assert guest.read_all() == b"request"
    core.take_frames()
    segs_in = guest.flow.conn.stats.segs_in
    for etype, body in garbage:
        t = trace(core)
        core.receive(bytes(Ether(src=GUEST_MAC, dst=GW_MAC, type=etype)) + body, 0, 0.1)
        assert trace(core) > t
    # none of the garbage reached the connection (random bytes cannot hit its 4-tuple and checksum)
    assert guest.flow.conn.stats.segs_in == segs_in
    core.take_frames()
    core.events.clear()
    # the flow carries on, both ways
    guest.send(b" more")
    guest.flow.conn.send(b"response")
    core.touch(guest.flow)
    core.flush(0.2)
    assert guest.read_all() == b" more"
    (data,) = [Ether(b"".join(f)) for f in core.take_frames()]
    assert data[TCP].seq == guest.ack and data[TCP].ack == guest.seq and bytes(data[TCP].payload) == b"response"
    assert data.dst == GUEST_MAC


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.sampled_from(["A", "PA", "R", "RA", "FA", "S", "SA"]),
       st.binary(max_size=32))
@example(1004, 0x12345679, "PA", b"in order, right ack")  # the guest's own next segment: taken
@example(1004, 0, "PA", b"in order, ack far off")  # RFC 5961 §5.2: unacceptable ACK, text dropped
@example(1002, 0x12345679, "PA", b"xxoverlap")
@example(1004, 0x12345679, "R", b"")  # exact RST: a reset, nothing read
def test_forged_segments_on_a_flow_never_raise_nor_inject(seq: int, ack: int, flags: str, data: bytes) -> None:
    """Blind injection (RFC 5961): random seq/ack on the flow's 4-tuple; data only enters at RCV.NXT."""
    core = make_core(mtu=1500)
    guest = Guest(core)
    guest.send(b"abc")
    core.flush(0.0)
    guest.read_all()
    guest.raw(seq, flags, data, ack=ack)
    core.flush(0.0)
    got = guest.read_all()
    if got:
        assert seq == guest.seq or 0 < (guest.seq - seq) % 2**32 < len(data)  # touched RCV.NXT
    assert trace(core) > 0


def test_drops_are_counted_by_name() -> None:
    core = make_core(ipv6=True)
    cases = {
        "drop_runt": b"\x00" * 10,
        "drop_bad_src_mac": bytes(Ether(src="01:00:00:00:00:01", dst=GW_MAC) / IP()),
        "drop_not_for_us": bytes(Ether(src=GUEST_MAC, dst="52:54:00:00:00:99") / IP()),
        "drop_ethertype": bytes(Ether(src=GUEST_MAC, dst=GW_MAC, type=0x88CC) / Raw(b"lldp")),
        "drop_ip4_proto": bytes(g(IP(src=GUEST, dst=REMOTE, proto=47) / Raw(b"gre!"))),
        "drop_ip6_next_header": bytes(g(IPv6(src=GUEST6, dst=REMOTE6, nh=59))),
        "drop_tcp_bad_checksum": bytes(g(IP(src=GUEST, dst=REMOTE) / TCP(chksum=1))),
        "drop_udp_short": bytes(g(IP(src=GUEST, dst=REMOTE, proto=17) / Raw(b"1234"))),
        "drop_tcp_short": bytes(g(IP(src=GUEST, dst=REMOTE, proto=6) / Raw(b"1234"))),
        "drop_icmp_short": bytes(g(IP(src=GUEST, dst=REMOTE, proto=1) / Raw(b"1234"))),
        "drop_icmp6_bad": bytes(g(IPv6(src=GUEST6, dst=REMOTE6, nh=58) / Raw(b"1234"))),
    }
    for name, raw in cases.items():
        before = dict(core.stats)
        core.receive(raw, 0, 0.0)
        assert core.stats[name] == before.get(name, 0) + 1, name
