"""DNS traces (RFC 1035): queries from the guest, our answers, hostile compression."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX, DNSRRSOA
from wire_strategies import FAST, FUZZ, mutated, only_wire_error, u16, u32

from rootlessnet.wire import WireError
from rootlessnet.wire.dns import (
    MAX_POINTERS,
    DnsMessage,
    QType,
    Question,
    Rcode,
    ResourceRecord,
    a_rdata,
    aaaa_rdata,
    make_query,
    make_response,
    name_to_wire,
    nxdomain,
    read_name,
    refused,
    servfail,
    tcp_deframe,
    tcp_frame,
)


def test_query_from_scapy() -> None:
    raw = bytes(DNS(id=0x1234, rd=1, qd=DNSQR(qname="example.com", qtype="AAAA")))
    q = DnsMessage.parse(raw)
    assert q.id == 0x1234 and not q.qr and q.rd and q.opcode == 0
    assert q.questions == (Question("example.com", QType.AAAA),)
    assert make_query(0x1234, "example.com", QType.AAAA).emit() == raw


def test_response_builder_read_back_by_scapy() -> None:
    q = make_query(7, "host.test", QType.A)
    resp = make_response(q, [("host.test", QType.A, 60, a_rdata("10.0.2.2")),
                             ("host.test", QType.A, 60, a_rdata(bytes([1, 2, 3, 4])))])
    pkt = DNS(resp.emit())
    assert pkt.id == 7 and pkt.qr == 1 and pkt.ra == 1 and pkt.rd == 1 and pkt.rcode == 0
    assert pkt.qd[0].qname == b"host.test." and pkt.ancount == 2
    assert [rr.rdata for rr in pkt.an] == ["10.0.2.2", "1.2.3.4"]
    assert DnsMessage.parse(resp.emit()) == resp


def test_compressed_answers_are_decompressed() -> None:
    # scapy compresses names in responses: owner names and names inside rdata.
    raw = bytes(DNS(id=1, qr=1, qd=DNSQR(qname="www.example.com"), an=[
        DNSRR(rrname="www.example.com", type="CNAME", rdata="web.example.com", ttl=5),
        DNSRR(rrname="web.example.com", type="AAAA", rdata="2001:db8::1", ttl=5),
        DNSRRMX(rrname="example.com", preference=10, exchange="mail.example.com"),
    ], ns=[DNSRRSOA(rrname="example.com", mname="ns.example.com", rname="admin.example.com", serial=42)]).compress())
    assert b"\xc0" in raw  # really compressed
    msg = DnsMessage.parse(raw)
    cname, aaaa, mx = msg.answers
    assert cname.rdata == name_to_wire("web.example.com")
    assert aaaa.name == "web.example.com" and aaaa.rdata == aaaa_rdata("2001:db8::1")
    assert mx.rdata == b"\x00\x0a" + name_to_wire("mail.example.com")
    soa = msg.authorities[0]
    assert soa.rdata[:-20] == name_to_wire("ns.example.com") + name_to_wire("admin.example.com")
    assert struct.unpack("!I", soa.rdata[-20:-16])[0] == 42
    # self-contained records re-emit without compression and parse the same
    assert DnsMessage.parse(msg.emit()) == msg


@pytest.mark.parametrize("make", [nxdomain, refused, servfail])
def test_error_responses_echo_question(make) -> None:
    q = DnsMessage.parse(bytes(DNS(id=99, rd=1, cd=1, qd=DNSQR(qname="nope.test", qtype="A"))))
    r = make(q)
    pkt = DNS(r.emit())
    assert pkt.id == 99 and pkt.qr == 1 and pkt.rd == 1 and pkt.cd == 1
    assert pkt.rcode == {nxdomain: Rcode.NXDOMAIN, refused: Rcode.REFUSED, servfail: Rcode.SERVFAIL}[make]
    assert pkt.qd[0].qname == b"nope.test." and pkt.ancount == 0


def test_all_header_flags_roundtrip() -> None:
    msg = DnsMessage(0xFFFF, qr=True, opcode=5, aa=True, tc=True, rd=False, ra=True, ad=True, cd=True, rcode=15)
    raw = msg.emit()
    assert raw[2:4] == b"\xae\xbf"
    assert DnsMessage.parse(raw) == msg


def test_truncation_sets_tc() -> None:
    q = make_query(1, "big.test", QType.TXT)
    resp = make_response(q, [("big.test", QType.TXT, 0, b"\xff" + b"x" * 255)] * 3)
    raw = resp.emit(max_size=512)
    pkt = DnsMessage.parse(raw)
    assert pkt.tc and pkt.answers == () and pkt.questions == q.questions and len(raw) <= 512


# --- hostile names ------------------------------------------------------------


def header(qd: int = 1) -> bytes:
    return struct.pack("!HHHHHH", 1, 0x0100, qd, 0, 0, 0)


def test_pointer_to_itself() -> None:
    with pytest.raises(WireError, match="backwards"):
        DnsMessage.parse(header() + b"\xc0\x0c" + b"\x00\x01\x00\x01")


def test_pointer_loop_between_two_names() -> None:
    # name 1 at 12: label "a" then pointer to 17; name 2 at 17: label "b" then pointer to 12.
    body = b"\x01a\xc0\x11" + b"\x00" + b"\x01b\xc0\x0c"
    with pytest.raises(WireError):
        read_name(header() + body, 17)


def test_forward_pointer_rejected() -> None:
    with pytest.raises(WireError, match="backwards"):
        DnsMessage.parse(header() + b"\xc0\x20" + bytes(40))


def test_pointer_chain_is_bounded() -> None:
    # Each name is just a pointer to the previous one: no labels, so only
    # the pointer bound stops the walk.
    buf = bytearray(header(0)) + b"\x00"
    for i in range(MAX_POINTERS + 2):
        buf += struct.pack("!H", 0xC000 | (len(buf) - 2 if i else 12))
    with pytest.raises(WireError, match="too many"):
        read_name(bytes(buf), len(buf) - 2)
    assert read_name(bytes(buf), 15) == ("", 17)


def test_over_long_name() -> None:
    name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"  # 257 octets
    with pytest.raises(WireError, match="255"):
        read_name(header() + name, 12)
    # also through pointers: 3 labels + pointer back to another 2 labels
    part = b"\x3f" + b"a" * 63
    buf = header() + part * 2 + b"\x00" + part * 3 + b"\xc0\x0c"
    with pytest.raises(WireError, match="255"):
        read_name(buf, 12 + 129)


@pytest.mark.parametrize(
    "body",
    [b"\x05ab", b"\xc0", b"\x40abc\x00\x00\x01\x00\x01", b"\x03abc\x00\x00\x01"],
    ids=["label-past-end", "half-pointer", "extended-label", "short-question"],
)
def test_truncated_or_reserved(body: bytes) -> None:
    with pytest.raises(WireError):
        DnsMessage.parse(header() + body)


def test_rdata_past_message_and_bad_name_rdata() -> None:
    rr = b"\x00" + struct.pack("!HHIH", 1, 1, 0, 10) + b"\x01\x02"
    with pytest.raises(WireError, match="rdata"):
        DnsMessage.parse(struct.pack("!HHHHHH", 1, 0, 0, 1, 0, 0) + rr)
    cname = b"\x00" + struct.pack("!HHIH", 5, 1, 0, 2) + b"\x01a\x00"  # name longer than rdlength
    with pytest.raises(WireError):
        DnsMessage.parse(struct.pack("!HHHHHH", 1, 0, 0, 1, 0, 0) + cname)


# --- names ----------------------------------------------------------------------


def test_name_escapes_roundtrip() -> None:
    wire = b"\x04a.b\\\x03\x00 \xff\x00"
    name, end = read_name(wire, 0)
    assert name == "a\\.b\\\\.\\000\\032\\255" and end == len(wire)
    assert name_to_wire(name) == wire
    assert name_to_wire("") == name_to_wire(".") == b"\x00"
    assert name_to_wire("Example.COM.") == b"\x07Example\x03COM\x00"


@pytest.mark.parametrize("bad", ["a..b", ".a", "a" * 64, ".".join(["abcdefgh"] * 30), "caf\u00e9", "a\\"])
def test_invalid_names_are_value_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        name_to_wire(bad)


labels = st.lists(st.binary(min_size=1, max_size=20), max_size=6)


@FAST
@given(labels)
def test_any_label_bytes_roundtrip(parts: list[bytes]) -> None:
    wire = b"".join(bytes([len(p)]) + p for p in parts) + b"\0"
    name, _ = read_name(wire, 0)
    assert name_to_wire(name) == wire


names = labels.map(lambda parts: read_name(b"".join(bytes([len(p)]) + p for p in parts) + b"\0", 0)[0])
records = st.builds(ResourceRecord, names, st.sampled_from([1, 16, 28, 99, 41]), u32, st.binary(max_size=30), u16)
messages = st.builds(
    DnsMessage, u16, st.booleans(), st.integers(0, 15), st.booleans(), st.booleans(), st.booleans(),
    st.booleans(), st.booleans(), st.booleans(), st.integers(0, 15),
    st.lists(st.builds(Question, names, u16, u16), max_size=2).map(tuple),
    st.lists(records, max_size=3).map(tuple), st.lists(records, max_size=2).map(tuple),
    st.lists(records, max_size=2).map(tuple),
)


@FAST
@given(messages)
def test_dns_roundtrip(msg: DnsMessage) -> None:
    raw = msg.emit()
    assert DnsMessage.parse(raw) == msg
    assert DNS(raw).id == msg.id


# --- TCP framing ------------------------------------------------------------------


def test_tcp_framing() -> None:
    a, b = make_query(1, "a.test", 1).emit(), make_query(2, "b.test", 28).emit()
    stream = tcp_frame(a) + tcp_frame(b)
    assert tcp_deframe(stream) == ([a, b], b"")
    assert tcp_deframe(stream[:-3]) == ([a], tcp_frame(b)[:-3])
    assert tcp_deframe(b"\x00") == ([], b"\x00")
    with pytest.raises(ValueError):
        tcp_frame(bytes(70000))


# --- fuzz -------------------------------------------------------------------------

SEED = bytes(DNS(id=1, qr=1, qd=DNSQR(qname="www.example.com"), an=[
    DNSRR(rrname="www.example.com", type="CNAME", rdata="web.example.com"),
    DNSRRMX(rrname="example.com", exchange="mail.example.com"),
], ns=[DNSRRSOA(rrname="example.com", mname="ns.example.com", rname="a.example.com")]).compress())


@FUZZ
@given(st.one_of(st.binary(max_size=120), mutated(SEED), st.binary(max_size=100).map(lambda b: header(3) + b)))
def test_dns_fuzz(buf: bytes) -> None:
    only_wire_error(DnsMessage.parse, buf)
    try:
        msg = DnsMessage.parse(buf)
    except WireError:
        return
    assert DnsMessage.parse(msg.emit()) == msg  # whatever parses re-emits faithfully
