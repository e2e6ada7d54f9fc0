"""Wire layer, DNS messages (RFC 1035 4): header, questions, resource records.

Contract: ``DnsMessage.parse(buf)`` raises only WireError.  Name
decompression (RFC 1035 4.1.4) is bounded: a pointer must point strictly
backwards, at most ``MAX_POINTERS`` are followed, and a name never exceeds
255 octets (RFC 1035 2.3.4), so pointer loops and over-long names fail fast.
Names are ``str`` in master-file notation without the trailing dot (root
is ``""``): ``.`` and ``\\`` inside a label and non-printable bytes are
escaped as ``\\.``/``\\DDD`` (RFC 1035 5.1), so any label round-trips.
The rdata of name-bearing types (NS, CNAME, SOA, PTR, MX, SRV, DNAME) is
decompressed on parse so every record is self-contained; ``emit`` never
compresses.  TCP framing (RFC 1035 4.2.2) is ``tcp_frame``/``tcp_deframe``.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, replace
from typing import Iterable

from rootlessnet.wire import WireError

__all__ = [
    "HEADER", "HEADER_LEN", "MAX_NAME_LEN", "MAX_LABEL_LEN", "MAX_POINTERS", "MAX_UDP_LEN",
    "Opcode", "Rcode", "QType", "QCLASS_IN",
    "Question", "ResourceRecord", "DnsMessage",
    "name_to_wire", "read_name", "a_rdata", "aaaa_rdata",
    "make_query", "make_response", "error_response", "nxdomain", "refused", "servfail",
    "tcp_frame", "tcp_deframe",
]

#: id flags qdcount ancount nscount arcount (RFC 1035 4.1.1)
HEADER = struct.Struct("!HHHHHH")
HEADER_LEN = HEADER.size  # 12
_QFIXED = struct.Struct("!HH")  # qtype qclass
_RRFIXED = struct.Struct("!HHIH")  # type class ttl rdlength
_U16 = struct.Struct("!H")
MAX_NAME_LEN = 255
MAX_LABEL_LEN = 63
MAX_POINTERS = 32  # a real name needs at most one pointer; be generous
MAX_UDP_LEN = 512  # RFC 1035 4.2.1, without EDNS
QCLASS_IN = 1


class Opcode(enum.IntEnum):
    QUERY = 0
    IQUERY = 1
    STATUS = 2
    NOTIFY = 4
    UPDATE = 5


class Rcode(enum.IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5


class QType(enum.IntEnum):
    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    DNAME = 39
    OPT = 41  # EDNS(0) pseudo-record, RFC 6891
    ANY = 255


# --- names --------------------------------------------------------------------


def _label_to_text(label: bytes) -> str:
    out = []
    for b in label:
        if b in (0x2E, 0x5C):  # '.' and '\'
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def _text_to_labels(name: str) -> list[bytes]:
    labels: list[bytes] = []
    cur = bytearray()
    i, n = 0, len(name)
    if name in ("", "."):
        return labels
    while i < n:
        ch = name[i]
        if ch == "\\":
            if name[i + 1:i + 4].isdigit() and len(name[i + 1:i + 4]) == 3:
                v = int(name[i + 1:i + 4])
                if v > 255:
                    raise ValueError(f"bad escape in DNS name {name!r}")
                cur.append(v)
                i += 4
                continue
            if i + 1 >= n:
                raise ValueError(f"dangling escape in DNS name {name!r}")
            cur += name[i + 1].encode("latin-1")
            i += 2
            continue
        if ch == ".":
            if not cur:
                raise ValueError(f"empty label in DNS name {name!r}")
            labels.append(bytes(cur))
            cur = bytearray()
            i += 1
            if i == n:  # trailing dot: fully qualified
                return labels
            continue
        if ord(ch) > 127:
            raise ValueError(f"non-ASCII DNS name {name!r}: pass the IDNA (xn--) form")
        cur.append(ord(ch))
        i += 1
    if not cur:
        raise ValueError(f"empty label in DNS name {name!r}")
    labels.append(bytes(cur))
    return labels


def name_to_wire(name: str) -> bytes:
    """Uncompressed wire form of ``name``; ValueError if it is not a valid name."""
    out = bytearray()
    for label in _text_to_labels(name):
        if len(label) > MAX_LABEL_LEN:
            raise ValueError(f"DNS label longer than 63 octets in {name!r}")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > MAX_NAME_LEN:
        raise ValueError(f"DNS name longer than 255 octets: {name!r}")
    return bytes(out)


def read_name(buf, off: int) -> tuple[str, int]:
    """Read a possibly compressed name at ``off``; return (name, offset after it)."""
    n = len(buf)
    labels: list[str] = []
    total = 1  # the root label
    jumps = 0
    end = -1
    pos = off
    while True:
        if pos >= n:
            raise WireError("dns: name runs past the message")
        length = buf[pos]
        kind = length & 0xC0
        if kind == 0xC0:  # RFC 1035 4.1.4 pointer
            if pos + 1 >= n:
                raise WireError("dns: truncated compression pointer")
            target = ((length & 0x3F) << 8) | buf[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= pos:
                raise WireError("dns: compression pointer does not point backwards")
            jumps += 1
            if jumps > MAX_POINTERS:
                raise WireError("dns: too many compression pointers")
            pos = target
            continue
        if kind:
            raise WireError(f"dns: unsupported label type {length:#04x}")  # RFC 6891 5
        if length == 0:
            pos += 1
            break
        total += length + 1
        if total > MAX_NAME_LEN:
            raise WireError("dns: name longer than 255 octets")
        if pos + 1 + length > n:
            raise WireError("dns: label runs past the message")
        labels.append(_label_to_text(buf[pos + 1:pos + 1 + length]))
        pos += 1 + length
    return ".".join(labels), (end if end >= 0 else pos)


# --- records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    qtype: int
    qclass: int = QCLASS_IN

    def emit(self) -> bytes:
        return name_to_wire(self.name) + _QFIXED.pack(self.qtype, self.qclass)


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    name: str
    rtype: int
    ttl: int
    rdata: bytes
    rclass: int = QCLASS_IN

    def emit(self) -> bytes:
        if len(self.rdata) > 0xFFFF:
            raise ValueError("rdata longer than 65535 bytes")
        return name_to_wire(self.name) + _RRFIXED.pack(self.rtype, self.rclass, self.ttl, len(self.rdata)) + self.rdata


def _decompress_rdata(buf, rtype: int, start: int, end: int) -> bytes:
    """Rdata with embedded names expanded (RFC 3597 4: only the RFC 1035 types
    may be compressed; SRV/DNAME are expanded too, harmlessly)."""
    if rtype in (QType.NS, QType.CNAME, QType.PTR, QType.DNAME):
        prefix, names, suffix = 0, 1, 0
    elif rtype == QType.MX:
        prefix, names, suffix = 2, 1, 0
    elif rtype == QType.SRV:
        prefix, names, suffix = 6, 1, 0
    elif rtype == QType.SOA:
        prefix, names, suffix = 0, 2, 20
    else:
        return bytes(buf[start:end])
    if start + prefix > end:
        raise WireError(f"dns: rdata of type {rtype} too short")
    out = bytearray(buf[start:start + prefix])
    pos = start + prefix
    for _ in range(names):
        name, pos = read_name(buf[:end], pos)
        out += name_to_wire(name)
    if pos + suffix != end:
        raise WireError(f"dns: rdata of type {rtype} has a bad length")
    out += buf[pos:end]
    return bytes(out)


@dataclass(frozen=True, slots=True)
class DnsMessage:
    id: int
    qr: bool = False  # response
    opcode: int = Opcode.QUERY
    aa: bool = False
    tc: bool = False
    rd: bool = True
    ra: bool = False
    ad: bool = False  # RFC 4035 3.2.3
    cd: bool = False  # RFC 4035 3.2.2
    rcode: int = Rcode.NOERROR
    questions: tuple[Question, ...] = ()
    answers: tuple[ResourceRecord, ...] = ()
    authorities: tuple[ResourceRecord, ...] = ()
    additionals: tuple[ResourceRecord, ...] = ()

    def __post_init__(self) -> None:
        if not (0 <= self.id <= 0xFFFF and 0 <= self.opcode <= 15 and 0 <= self.rcode <= 15):
            raise ValueError("DNS id is 16 bits, opcode and rcode 4 bits")

    @property
    def flags(self) -> int:
        return ((self.qr << 15) | (self.opcode << 11) | (self.aa << 10) | (self.tc << 9)
                | (self.rd << 8) | (self.ra << 7) | (self.ad << 5) | (self.cd << 4) | self.rcode)

    @classmethod
    def parse(cls, buf) -> "DnsMessage":
        n = len(buf)
        if n < HEADER_LEN:
            raise WireError(f"dns: {n} bytes is shorter than the 12-byte header")
        ident, flags, qd, an, ns, ar = HEADER.unpack_from(buf)
        pos = HEADER_LEN
        questions = []
        for _ in range(qd):
            name, pos = read_name(buf, pos)
            if pos + 4 > n:
                raise WireError("dns: truncated question")
            qtype, qclass = _QFIXED.unpack_from(buf, pos)
            pos += 4
            questions.append(Question(name, qtype, qclass))
        sections: list[tuple[ResourceRecord, ...]] = []
        for count in (an, ns, ar):
            rrs = []
            for _ in range(count):
                name, pos = read_name(buf, pos)
                if pos + 10 > n:
                    raise WireError("dns: truncated resource record")
                rtype, rclass, ttl, rdlen = _RRFIXED.unpack_from(buf, pos)
                pos += 10
                if pos + rdlen > n:
                    raise WireError("dns: rdata runs past the message")
                rdata = _decompress_rdata(buf, rtype, pos, pos + rdlen)
                pos += rdlen
                rrs.append(ResourceRecord(name, rtype, ttl, rdata, rclass))
            sections.append(tuple(rrs))
        return cls(
            ident, bool(flags & 0x8000), (flags >> 11) & 0xF, bool(flags & 0x0400),
            bool(flags & 0x0200), bool(flags & 0x0100), bool(flags & 0x0080),
            bool(flags & 0x0020), bool(flags & 0x0010), flags & 0xF,
            tuple(questions), *sections,
        )

    def emit(self, max_size: int | None = None) -> bytes:
        """Wire form; if longer than ``max_size``, drop all records and set TC
        (RFC 2181 9: the client retries over TCP)."""
        parts = [HEADER.pack(self.id, self.flags, len(self.questions), len(self.answers),
                             len(self.authorities), len(self.additionals))]
        parts += [q.emit() for q in self.questions]
        for section in (self.answers, self.authorities, self.additionals):
            parts += [rr.emit() for rr in section]
        out = b"".join(parts)
        if max_size is not None and len(out) > max_size:
            return replace(self, tc=True, answers=(), authorities=(), additionals=()).emit()
        return out


# --- builders -----------------------------------------------------------------


def a_rdata(addr: str | bytes) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def aaaa_rdata(addr: str | bytes) -> bytes:
    return ipaddress.IPv6Address(addr).packed


def make_query(ident: int, name: str, qtype: int, rd: bool = True) -> DnsMessage:
    return DnsMessage(ident, rd=rd, questions=(Question(name, qtype),))


def make_response(
    query: DnsMessage,
    records: Iterable[tuple[str, int, int, bytes]] = (),
    *,
    rcode: int = Rcode.NOERROR,
    aa: bool = False,
    ra: bool = True,
) -> DnsMessage:
    """Response to ``query``: id, opcode, RD and the questions echoed
    (RFC 1035 4.1.1); ``records`` are ``(name, type, ttl, rdata)`` answers
    of class IN."""
    answers = tuple(ResourceRecord(name, rtype, ttl, bytes(rdata)) for name, rtype, ttl, rdata in records)
    return DnsMessage(query.id, qr=True, opcode=query.opcode, aa=aa, rd=query.rd, ra=ra,
                      cd=query.cd, rcode=rcode, questions=query.questions, answers=answers)


def error_response(query: DnsMessage, rcode: int) -> DnsMessage:
    return make_response(query, rcode=rcode)


def nxdomain(query: DnsMessage) -> DnsMessage:
    return error_response(query, Rcode.NXDOMAIN)


def refused(query: DnsMessage) -> DnsMessage:
    return error_response(query, Rcode.REFUSED)


def servfail(query: DnsMessage) -> DnsMessage:
    return error_response(query, Rcode.SERVFAIL)


def tcp_frame(message: bytes) -> bytes:
    """Prefix a message with its 2-byte length (RFC 1035 4.2.2)."""
    if len(message) > 0xFFFF:
        raise ValueError("DNS message longer than 65535 bytes")
    return _U16.pack(len(message)) + message


def tcp_deframe(buf) -> tuple[list[bytes], bytes]:
    """Split a TCP stream buffer into complete messages and the unread rest."""
    out: list[bytes] = []
    off, n = 0, len(buf)
    while off + 2 <= n:
        length = _U16.unpack_from(buf, off)[0]
        if off + 2 + length > n:
            break
        out.append(bytes(buf[off + 2:off + 2 + length]))
        off += 2 + length
    return out, bytes(buf[off:])
