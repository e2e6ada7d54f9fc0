"""DNS traces: dig-like queries to the static table, forwarding id rewrites, TCP framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRROPT

from rootlessnet.stack.dns import DnsForwarder, StaticResolver, lcg_ids, servfail_for, tcp_frames

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

HOSTS = {
    "host.example": ["10.0.2.100", "fd00::100"],
    "v4only.example.": ["192.0.2.1"],
    "Many.Example": [f"198.51.100.{i}" for i in range(1, 41)],
}


def dig(name: str, qtype: str = "A", ident: int = 0x2A2A, edns: int | None = 1232,
        qclass: str = "IN", **kw) -> bytes:
    """What `dig name qtype` sends: RD, one question, EDNS(0) OPT with a 1232-byte payload."""
    ar = [DNSRROPT(rclass=edns)] if edns else []
    return bytes(DNS(id=ident, rd=1, qd=[DNSQR(qname=name, qtype=qtype, qclass=qclass)], ar=ar, **kw))


def expect(resp: bytes | None, **want) -> DNS:
    assert resp is not None, "expected a response"
    d = DNS(resp)
    got = {"id": d.id, "qr": d.qr, "rcode": d.rcode, "aa": d.aa, "ra": d.ra, "rd": d.rd, "tc": d.tc,
           "opcode": d.opcode, "qd": d.qdcount,
           "answers": sorted((rr.rrname.decode(), rr.type, rr.ttl, rr.rdata) for rr in (d.an or [])),
           "edns": [rr.rclass for rr in (d.ar or []) if rr.type == 41]}
    for k, v in want.items():
        assert got[k] == v, f"{k}: got {got[k]!r}, want {v!r}"
    return d


# --- StaticResolver -----------------------------------------------------------


def test_a_query_answered_from_the_table():
    r = StaticResolver(HOSTS)
    expect(r.answer(dig("host.example")), id=0x2A2A, qr=1, rcode=NOERROR, aa=1, ra=1, rd=1, qd=1,
           answers=[("host.example.", 1, 60, "10.0.2.100")], edns=[1232])
    assert r.stats["answered"] == 1


def test_names_are_case_insensitive_and_echoed_as_asked():
    r = StaticResolver(HOSTS, ttl=5)
    expect(r.answer(dig("HoSt.ExAmPlE.", "AAAA", edns=None)), rcode=NOERROR, edns=[],
           answers=[("HoSt.ExAmPlE.", 28, 5, "fd00::100")])
    expect(r.answer(dig("v4only.EXAMPLE")), answers=[("v4only.EXAMPLE.", 1, 5, "192.0.2.1")])


def test_any_returns_both_families():
    r = StaticResolver(HOSTS)
    d = expect(r.answer(dig("host.example", "ALL")), rcode=NOERROR)
    assert {rr.type for rr in d.an} == {1, 28}


def test_nodata_nxdomain_refused_notimp():
    r = StaticResolver(HOSTS)
    # RFC 2308 2.2: the name exists, not the type.
    expect(r.answer(dig("v4only.example", "AAAA")), rcode=NOERROR, answers=[], aa=1)
    expect(r.answer(dig("v4only.example", "MX")), rcode=NOERROR, answers=[])
    expect(r.answer(dig("nowhere.example")), rcode=NXDOMAIN, answers=[], qd=1)
    expect(r.answer(dig("version.bind", "TXT", qclass="CH")), rcode=REFUSED)
    expect(r.answer(dig("host.example", opcode=2)), rcode=NOTIMP, opcode=2, qd=0)  # STATUS
    assert (r.stats["nodata"], r.stats["nxdomain"], r.stats["refused"], r.stats["notimp"]) == (2, 1, 1, 1)


def test_formerr_for_garbage_with_a_header():
    r = StaticResolver(HOSTS)
    q = dig("host.example")
    expect(r.answer(q[:20]), rcode=FORMERR, id=0x2A2A, qd=0)  # question cut short
    two = bytes(DNS(id=9, qd=[DNSQR(qname="a.example"), DNSQR(qname="b.example")]))
    expect(r.answer(two), rcode=FORMERR, id=9)
    none = bytes(DNS(id=10, qd=[]))
    expect(r.answer(none), rcode=FORMERR, id=10)
    loop = bytes.fromhex("000b0100000100000000000" "0") + b"\xc0\x0c\x00\x01\x00\x01"  # pointer to itself
    expect(r.answer(loop), rcode=FORMERR, id=11)
    assert r.stats["formerr"] == 4


def test_no_answer_without_a_header_or_to_a_response():
    r = StaticResolver(HOSTS)
    assert r.answer(b"\x00\x01\x01") is None
    assert r.answer(bytes(DNS(id=1, qr=1, qd=DNSQR(qname="host.example")))) is None
    assert r.stats["short"] == 1 and r.stats["not_query"] == 1


def test_truncation_without_edns_and_full_answer_with_it():
    r = StaticResolver(HOSTS)
    small = r.answer(dig("many.example", edns=None))
    assert len(small) <= 512
    expect(small, tc=1, answers=[], rcode=NOERROR)  # RFC 2181 9: retry over TCP
    big = r.answer(dig("many.example"))
    assert 512 < len(big) <= 1232
    assert len(expect(big, tc=0).an) == 40
    tcp = r.answer(dig("many.example", edns=None), max_size=65535)
    assert len(expect(tcp, tc=0).an) == 40


@given(st.binary(max_size=300))
def test_resolver_never_raises(data):
    StaticResolver(HOSTS).answer(data)
    StaticResolver(HOSTS).answer(dig("host.example")[:12] + data)


def test_bad_table_is_a_caller_error():
    with pytest.raises(ValueError):
        StaticResolver({"x.example": ["10.0.2.300"]})


# --- DnsForwarder -------------------------------------------------------------

GUEST = ("10.0.2.15", 40000)
GUEST6 = ("fd00::100", 40000)


def upstream_answer(upstream_query: bytes, addr: str = "93.184.216.34") -> bytes:
    """What the upstream resolver sends back: same id and question, one A record."""
    q = DNS(upstream_query)
    return bytes(DNS(id=q.id, qr=1, rd=1, ra=1, qd=q.qd, an=DNSRR(rrname=q.qd[0].qname, rdata=addr)))


def test_query_id_rewritten_and_restored():
    f = DnsForwarder(id_source=iter([0xBEEF]).__next__)
    q = dig("www.example.com", ident=0x1111)
    uid, up = f.query(GUEST, q, 0.0)
    assert uid == 0xBEEF and up == b"\xbe\xef" + q[2:] and len(f) == 1
    key, resp = f.response(upstream_answer(up), 0.1)
    assert key == GUEST
    expect(resp, id=0x1111, rcode=NOERROR, answers=[("www.example.com.", 1, 0, "93.184.216.34")])
    assert len(f) == 0 and f.poll_at() is None
    # The same answer again (duplicate or spoof): dropped.
    assert f.response(upstream_answer(up), 0.2) is None
    assert f.stats["unknown_id"] == 1


def test_two_clients_with_the_same_id_get_distinct_upstream_ids():
    f = DnsForwarder()
    u1, up1 = f.query(GUEST, dig("a.example", ident=7), 0.0)
    u2, up2 = f.query(GUEST6, dig("b.example", ident=7), 0.0)
    assert u1 != u2
    assert f.response(upstream_answer(up2), 0.1)[0] == GUEST6
    assert f.response(upstream_answer(up1), 0.1)[0] == GUEST


def test_spoofed_answer_with_the_wrong_question_does_not_displace_the_real_one():
    f = DnsForwarder()
    uid, up = f.query(GUEST, dig("bank.example"), 0.0)
    forged = bytes(DNS(id=uid, qr=1, qd=DNSQR(qname="evil.example"), an=DNSRR(rrname="bank.example", rdata="6.6.6.6")))
    assert f.response(forged, 0.01) is None and f.stats["mismatch"] == 1
    key, resp = f.response(upstream_answer(up), 0.02)
    assert key == GUEST
    # Case differences are not a mismatch (RFC 4343).
    uid, up = f.query(GUEST, dig("Bank.Example"), 1.0)
    assert f.response(upstream_answer(up.replace(b"Bank", b"bank")), 1.1) is not None


def test_stub_retransmission_reuses_the_upstream_id():
    f = DnsForwarder(timeout=5.0)
    q = dig("slow.example", ident=0x55)
    u1, _ = f.query(GUEST, q, 0.0)
    u2, _ = f.query(GUEST, q, 4.0)  # glibc resends the same id
    assert u1 == u2 and len(f) == 1 and f.stats["retransmits"] == 1
    assert f.poll_at() == 9.0  # deadline refreshed


def test_timeouts_come_back_for_servfail():
    f = DnsForwarder(timeout=5.0)
    q = dig("dead.example", ident=0x77)
    _, up = f.query(GUEST, q, 0.0)
    f.query(GUEST, dig("later.example", ident=0x78), 3.0)
    assert f.expire(4.9) == []
    assert f.expire(5.0) == [(GUEST, q)]
    expect(servfail_for(q), id=0x77, qr=1, rcode=SERVFAIL, qd=1, answers=[])
    assert f.response(upstream_answer(up), 5.5) is None  # too late
    assert len(f) == 1 and f.stats["timeouts"] == 1


def test_servfail_for_unparseable_and_short_queries():
    assert DNS(servfail_for(b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\x05ab")).rcode == SERVFAIL
    assert servfail_for(b"\x12") is None


def test_pending_is_bounded_oldest_dropped():
    f = DnsForwarder(max_pending=2)
    _, up1 = f.query(GUEST, dig("one.example", ident=1), 0.0)
    f.query(GUEST, dig("two.example", ident=2), 0.1)
    f.query(GUEST, dig("three.example", ident=3), 0.2)
    assert len(f) == 2 and f.stats["evicted"] == 1
    assert f.response(upstream_answer(up1), 0.3) is None


def test_colliding_ids_are_skipped():
    f = DnsForwarder(id_source=iter([5, 5, 5, 9]).__next__)
    assert f.query(GUEST, dig("a.example", ident=1), 0.0)[0] == 5
    assert f.query(GUEST, dig("b.example", ident=2), 0.0)[0] == 9
    assert f.stats["id_collisions"] == 2


def test_lcg_walks_every_id_once():
    nxt = lcg_ids(seed=1234)
    assert len({nxt() for _ in range(65536)}) == 65536


@pytest.mark.parametrize("msg, counter", [
    (b"\x00", "short"),
    (bytes(DNS(id=1, qr=1, qd=DNSQR(qname="a.example"))), "bad_query"),  # a response as a query
    (b"\x00\x01\x01\x00\x00\x01" + bytes(6) + b"\x3fab", "bad_query"),
])
def test_bad_queries_counted(msg, counter):
    f = DnsForwarder()
    assert f.query(GUEST, msg, 0.0) is None and f.stats[counter] == 1 and len(f) == 0


def test_bad_responses_counted():
    f = DnsForwarder()
    uid, up = f.query(GUEST, dig("a.example"), 0.0)
    assert f.response(b"\x00\x00", 0.0) is None
    assert f.response(up, 0.0) is None  # QR clear: not a response
    assert f.response(up[:2] + b"\x81\x80\x00\x01" + bytes(6) + b"\x3f", 0.0) is None
    assert (f.stats["short"], f.stats["not_response"], f.stats["bad_response"]) == (1, 1, 1)
    assert len(f) == 1


@given(st.binary(max_size=200))
def test_forwarder_never_raises(data):
    f = DnsForwarder()
    f.query(GUEST, data, 0.0)
    f.response(data, 0.0)
    f.expire(10.0)
    servfail_for(data)


# --- DNS over TCP framing (RFC 1035 4.2.2) -------------------------------------


def test_tcp_frames_consumes_complete_messages_only():
    r = StaticResolver(HOSTS)
    q1, q2 = dig("host.example", ident=1), dig("v4only.example", ident=2)
    stream = len(q1).to_bytes(2, "big") + q1 + len(q2).to_bytes(2, "big") + q2
    buf = bytearray()
    buf += stream[:5]
    assert tcp_frames(buf) == [] and buf == stream[:5]
    buf += stream[5:len(q1) + 4]
    assert tcp_frames(buf) == [q1] and buf == stream[len(q1) + 2:len(q1) + 4]
    buf += stream[len(q1) + 4:]
    (msg,) = tcp_frames(buf)
    assert buf == bytearray() and expect(r.answer(msg, max_size=65535), id=2).an[0].rdata == "192.0.2.1"
