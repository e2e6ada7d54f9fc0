"""Stack layer, the engine's DNS on 10.0.2.3 / fd00::3: a static table and forwarding bookkeeping.

Contract: ``StaticResolver.answer(query)`` returns a complete response
message (or None when the bytes do not even hold a header);
``DnsForwarder`` rewrites query ids for an upstream server and maps the
responses back.  Neither does I/O nor reads a clock (``now`` is passed
in); bad input is dropped and counted in ``stats``, never raised.
``tcp_frames`` cuts DNS-over-TCP messages out of a stream buffer.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable, Hashable

from rootlessnet.wire import WireError
from rootlessnet.wire.dns import (
    HEADER,
    HEADER_LEN,
    MAX_UDP_LEN,
    QCLASS_IN,
    DnsMessage,
    Opcode,
    QType,
    Rcode,
    ResourceRecord,
    make_response,
    read_name,
    tcp_deframe,
)

__all__ = ["StaticResolver", "DnsForwarder", "Pending", "servfail_for", "tcp_frames", "lcg_ids"]

_QR = 0x8000
_OPCODE_SHIFT = 11
_RD = 0x0100
_EDNS_SIZE = 1232  # what we advertise and the most we send over UDP (DNS flag day 2020)
_QCLASS_ANY = 255


def _header_only(query: bytes, rcode: int) -> bytes:
    """A response with no sections, for queries we could not parse: id,
    opcode and RD copied (RFC 1035 4.1.1)."""
    ident, flags = HEADER.unpack_from(query)[:2]
    out = _QR | (flags & (0xF << _OPCODE_SHIFT)) | (flags & _RD) | 0x0080 | rcode
    return HEADER.pack(ident, out, 0, 0, 0, 0)


def servfail_for(query: bytes) -> bytes | None:
    """SERVFAIL answering ``query`` (e.g. after the upstream timed out)."""
    if len(query) < HEADER_LEN:
        return None
    try:
        msg = DnsMessage.parse(query)
    except WireError:
        return _header_only(query, Rcode.SERVFAIL)
    return make_response(msg, rcode=Rcode.SERVFAIL).emit()


def tcp_frames(buf: bytearray) -> list[bytes]:
    """Remove and return the complete length-prefixed messages at the start
    of ``buf`` (RFC 1035 4.2.2); a partial message stays for later."""
    frames, rest = tcp_deframe(buf)
    del buf[:len(buf) - len(rest)]
    return frames


# --- static table -------------------------------------------------------------


def _norm(name: str) -> str:
    # RFC 4343: DNS names compare case-insensitively (ASCII only).
    return name.rstrip(".").lower()


class StaticResolver:
    """Answers A/AAAA from ``hosts`` (name -> address strings); all else is NXDOMAIN."""

    _STATS = ("queries", "answered", "nodata", "nxdomain", "formerr", "notimp", "refused",
              "short", "not_query")

    def __init__(self, hosts: dict[str, list[str]], *, ttl: int = 60) -> None:
        if not 0 <= ttl <= 0x7FFFFFFF:  # RFC 2181 8
            raise ValueError("StaticResolver: ttl must be 0..2**31-1")
        self.ttl = ttl
        self._table: dict[str, tuple[list[bytes], list[bytes]]] = {}
        for name, addrs in hosts.items():
            v4, v6 = self._table.setdefault(_norm(name), ([], []))
            for a in addrs:
                ip = ipaddress.ip_address(a)  # ValueError: a typo in the caller's table
                (v4 if ip.version == 4 else v6).append(ip.packed)
        self.stats: dict[str, int] = dict.fromkeys(self._STATS, 0)

    def statistics(self) -> dict[str, int]:
        return dict(self.stats)

    def answer(self, query: bytes, *, max_size: int | None = None) -> bytes | None:
        """The response to ``query``.  ``max_size`` caps it (TC set if over,
        RFC 2181 9); default 512, or the EDNS payload size the client
        advertised (RFC 6891 6.2.5) up to 1232.  Pass 65535 over TCP."""
        self.stats["queries"] += 1
        if len(query) < HEADER_LEN:
            self.stats["short"] += 1
            return None
        flags = HEADER.unpack_from(query)[1]
        if flags & _QR:  # a response sent to us: answering could start a loop
            self.stats["not_query"] += 1
            return None
        if (flags >> _OPCODE_SHIFT) & 0xF != Opcode.QUERY:
            self.stats["notimp"] += 1  # RFC 1035 4.1.1: opcode not supported
            return _header_only(query, Rcode.NOTIMP)
        try:
            msg = DnsMessage.parse(query)
        except WireError:
            self.stats["formerr"] += 1
            return _header_only(query, Rcode.FORMERR)
        opts = [rr for rr in msg.additionals if rr.rtype == QType.OPT]
        # RFC 9619: exactly one question; RFC 6891 6.1.1: at most one OPT.
        if len(msg.questions) != 1 or len(opts) > 1 or msg.answers:
            self.stats["formerr"] += 1
            return _header_only(query, Rcode.FORMERR)
        if max_size is None:
            max_size = MAX_UDP_LEN
            if opts:
                max_size = min(_EDNS_SIZE, max(MAX_UDP_LEN, opts[0].rclass))
        q = msg.questions[0]
        rcode, records = Rcode.NOERROR, []
        if q.qclass not in (QCLASS_IN, _QCLASS_ANY):
            self.stats["refused"] += 1
            rcode = Rcode.REFUSED
        else:
            entry = self._table.get(_norm(q.name))
            if entry is None:
                self.stats["nxdomain"] += 1
                rcode = Rcode.NXDOMAIN
            else:
                v4, v6 = entry
                if q.qtype in (QType.A, QType.ANY):
                    records += [(q.name, QType.A, self.ttl, a) for a in v4]
                if q.qtype in (QType.AAAA, QType.ANY):
                    records += [(q.name, QType.AAAA, self.ttl, a) for a in v6]
                # RFC 2308 2.2: the name exists, the type does not: NOERROR, no answers.
                self.stats["answered" if records else "nodata"] += 1
        resp = make_response(msg, records, rcode=rcode, aa=True, ra=True)
        if opts:
            # RFC 6891 7: answer EDNS with EDNS (version 0, DO clear: no DNSSEC here).
            opt = ResourceRecord("", QType.OPT, 0, b"", _EDNS_SIZE)
            resp = replace(resp, additionals=(opt,))
        return resp.emit(max_size)


# --- forwarding ---------------------------------------------------------------


def lcg_ids(seed: int = 1) -> Callable[[], int]:
    """A deterministic walk over all 65536 ids (full-period LCG mod 2**16:
    a = 1 mod 4, c odd).  Only for tests and hermetic runs; the engine
    passes a random source (RFC 5452 9.2)."""
    state = [seed & 0xFFFF]

    def nxt() -> int:
        state[0] = (25173 * state[0] + 13849) & 0xFFFF
        return state[0]

    return nxt


def _question_key(buf: bytes) -> tuple | None:
    """The first question, lowercased, for matching responses (RFC 5452 9.1).
    Raises WireError when it is malformed."""
    qd = HEADER.unpack_from(buf)[2]
    if qd == 0:
        return ()
    name, pos = read_name(buf, HEADER_LEN)
    if pos + 4 > len(buf):
        raise WireError("dns: truncated question")
    return (name.lower(), buf[pos:pos + 4])


@dataclass(frozen=True, slots=True)
class Pending:
    client_key: Hashable
    query: bytes  # as the client sent it (original id)
    deadline: float
    question: tuple | None  # None: the query had no parsable question


class DnsForwarder:
    """Query-id rewriting for an upstream resolver, bounded to ``max_pending``."""

    _STATS = ("queries", "retransmits", "responses", "short", "bad_query", "bad_response",
              "not_response", "unknown_id", "mismatch", "evicted", "timeouts", "id_collisions")

    def __init__(self, max_pending: int = 1024, timeout: float = 5.0,
                 id_source: Callable[[], int] | None = None) -> None:
        if max_pending < 1 or max_pending > 0x8000:
            raise ValueError("DnsForwarder: max_pending must be 1..32768 (16-bit ids)")
        if timeout <= 0:
            raise ValueError("DnsForwarder: timeout must be positive")
        self.max_pending = max_pending
        self.timeout = timeout
        self._ids = id_source or lcg_ids()
        # upstream id -> Pending, in deadline order (insertion order: now never goes back)
        self._pending: OrderedDict[int, Pending] = OrderedDict()
        self._by_client: dict[tuple[Hashable, int], int] = {}
        self.stats: dict[str, int] = dict.fromkeys(self._STATS, 0)

    def __len__(self) -> int:
        return len(self._pending)

    def statistics(self) -> dict[str, int]:
        return dict(self.stats)

    def poll_at(self) -> float | None:
        """When ``expire`` next has something to do."""
        return next(iter(self._pending.values())).deadline if self._pending else None

    def query(self, client_key: Hashable, query: bytes, now: float) -> tuple[int, bytes] | None:
        """Remember ``query`` from ``client_key``; return (upstream id, query to send upstream)."""
        self.stats["queries"] += 1
        if len(query) < HEADER_LEN:
            self.stats["short"] += 1
            return None
        if HEADER.unpack_from(query)[1] & _QR:
            self.stats["bad_query"] += 1
            return None
        try:
            question = _question_key(query)
        except WireError:
            self.stats["bad_query"] += 1
            return None
        orig = int.from_bytes(query[:2], "big")
        uid = self._by_client.get((client_key, orig))
        if uid is not None:
            # The stub resent its query (same id): one upstream id, new deadline.
            self.stats["retransmits"] += 1
            del self._pending[uid]
        else:
            while len(self._pending) >= self.max_pending:
                old_uid, old = self._pending.popitem(last=False)
                del self._by_client[(old.client_key, int.from_bytes(old.query[:2], "big"))]
                self.stats["evicted"] += 1
            uid = self._fresh_id()
            if uid is None:
                return None
            self._by_client[(client_key, orig)] = uid
        self._pending[uid] = Pending(client_key, bytes(query), now + self.timeout, question)
        return uid, uid.to_bytes(2, "big") + bytes(query[2:])

    def response(self, resp: bytes, now: float) -> tuple[Hashable, bytes] | None:
        """Map an upstream response back: (client key, response with the client's id)."""
        if len(resp) < HEADER_LEN:
            self.stats["short"] += 1
            return None
        if not HEADER.unpack_from(resp)[1] & _QR:
            self.stats["not_response"] += 1
            return None
        uid = int.from_bytes(resp[:2], "big")
        p = self._pending.get(uid)
        if p is None:  # never asked, already answered, or timed out: maybe spoofed
            self.stats["unknown_id"] += 1
            return None
        try:
            question = _question_key(resp)
        except WireError:
            self.stats["bad_response"] += 1
            return None
        # RFC 5452 9.1: id AND question must match.  A mismatch keeps the
        # entry, so a forged packet cannot take the place of the real answer.
        # (A FORMERR may come back without the question: accept that.)
        if question != p.question and question != ():
            self.stats["mismatch"] += 1
            return None
        self._drop(uid)
        self.stats["responses"] += 1
        return p.client_key, p.query[:2] + bytes(resp[2:])

    def expire(self, now: float) -> list[tuple[Hashable, bytes]]:
        """Forget queries older than ``timeout``; return (client key, original
        query) for each, so the engine can answer ``servfail_for(query)``."""
        out = []
        while self._pending:
            uid, p = next(iter(self._pending.items()))
            if p.deadline > now:
                break
            self._drop(uid)
            self.stats["timeouts"] += 1
            out.append((p.client_key, p.query))
        return out

    def _drop(self, uid: int) -> None:
        p = self._pending.pop(uid)
        del self._by_client[(p.client_key, int.from_bytes(p.query[:2], "big"))]

    def _fresh_id(self) -> int | None:
        # At most half the id space is in use, so a few draws nearly always do.
        for _ in range(64):
            uid = self._ids() & 0xFFFF
            if uid not in self._pending:
                return uid
            self.stats["id_collisions"] += 1
        return None


class DnsOverTcp:
    """DNS over TCP (RFC 7766 §8: a 2-byte length before each message) answered by a resolver.

    The engine serves TCP connections to its DNS address itself when it has a
    static table, so no query of any transport leaves it. ``feed`` takes the
    bytes the guest sent and returns the framed answers; ``None`` means the
    stream is broken (an empty message, or one the resolver would not answer)
    and the connection should be closed.
    """

    __slots__ = ("resolver", "_buf")

    MAX_BUFFER = 2 + 65535  # one whole message at most is ever held

    def __init__(self, resolver: StaticResolver) -> None:
        self.resolver = resolver
        self._buf = bytearray()

    def wants(self) -> int:
        """How many more bytes may be fed now (the rest stays in the TCP receive buffer)."""
        return self.MAX_BUFFER - len(self._buf)

    def feed(self, data) -> list[bytes] | None:
        buf = self._buf
        buf += data
        out = []
        while len(buf) >= 2:
            n = int.from_bytes(buf[:2], "big")
            if n == 0:
                return None
            if len(buf) < 2 + n:
                break
            query = bytes(buf[2 : 2 + n])
            del buf[: 2 + n]
            ans = self.resolver.answer(query, max_size=65535)
            if ans is None:
                return None
            out.append(len(ans).to_bytes(2, "big") + ans)
        return out
