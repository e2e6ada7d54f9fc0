"""Fuzzing the core: shared tables (addresses, lengths, windows, clock steps) and the small state
classes of the model guest and the mock shell."""

from __future__ import annotations

import struct

CONNECT_TIMEOUT = 75.0  # io/nat.py TcpNat.CONNECT_TIMEOUT
RESET_DRAIN_TIMEOUT = 30.0  # io/nat.py: how long a reset flow's last data may take to reach the host app

# --- addresses -------------------------------------------------------------------------------
A4 = lambda s: bytes(int(x) for x in s.split("."))  # noqa: E731
GUEST4, GW4, DNS4 = A4("10.0.2.100"), A4("10.0.2.2"), A4("10.0.2.3")
GUEST6 = bytes.fromhex("fd000000000000000000000000000100")
GW6 = bytes.fromhex("fd000000000000000000000000000002")
DNS6 = bytes.fromhex("fd000000000000000000000000000003")
LL_GUEST6 = bytes.fromhex("fe80000000000000505400fffe123456")
LL_GW6 = bytes.fromhex("fe800000000000000000000000000002")
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
REMOTE4 = [A4("192.0.2.1"), GW4, DNS4, A4("198.51.100.7"), A4("10.0.2.7"), A4("192.0.2.1"), A4("203.0.113.9"),
           A4("10.0.2.100"), A4("127.0.0.1"), A4("255.255.255.255"), A4("10.0.2.15"), A4("224.0.0.251")]
REMOTE6 = [bytes.fromhex("20010db8000000000000000000000001"), GW6, DNS6, bytes.fromhex("20010db8000000000000000000000002"),
           bytes.fromhex("00000000000000000000ffffc0000201"), bytes.fromhex("fd000000000000000000000000000007"),
           LL_GW6, bytes.fromhex("00000000000000000000000000000001"), ALL_NODES, GUEST6]
SRC4 = [GUEST4, GUEST4, GUEST4, A4("10.0.2.15"), A4("0.0.0.0"), GW4, A4("127.0.0.1"), A4("224.0.0.1"), A4("10.0.2.101")]
SRC6 = [GUEST6, GUEST6, GUEST6, LL_GUEST6, bytes(16), GW6, ALL_NODES, bytes.fromhex("fd000000000000000000000000000101")]
PORTS = [80, 53, 443, 7000, 67, 68, 0, 22, 8080, 65535, 1, 5353]
TCP_PORTS = [80, 443, 53, 80, 7000, 8080, 22, 0]

# --- value tables (indexed by record bytes) -----------------------------------------------------
LENS = [0, 1, 2, 7, 20, 64, 100, 300, 512, 535, 536, 537, 1000, 1219, 1220, 1380, 1439, 1440, 1460, 1461, 1500,
        2000, 2920, 4000, 8192, 16384, 32768, 65000, "wnd", "wnd+1", "wnd-1", "mss", "mss+1", "2mss", 1, 10, 100]
WINS = [65535, 65535, 64240, 502, 0, 1, 2, 255, 512, 1024, 8192, 30000, 16, 63, 128, 0xFFFF]
DTS = [0.0, 0.0005, 0.001, 0.01, 0.04, 0.1, 0.2, 0.21, 0.5, 1.0, 1.01, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 61.0,
       75.0, 120.0, 200.0, 600.0, 7200.0, 0.3]
ISS_BASE = [0x12345678, 0xFFFFFFF0, 0x7FFFFFF0, 0, 0xFFFF0000, 0x80000000, 0xFFFFFFFF, 0xDEADBEEF]
RECV_BUF = [4 << 20, 65535, 3000, 200]
SEND_BUF = [4 << 20, 65535, 3000, 200]
OOO_BLOCKS = [256, 8, 2, 1]
# guest TCP option blocks: real clients' (templates, chosen at run time) and edge cases
OPTS = [b"", b"\x02\x04\x05\xb4", b"\x02\x04\x05\xb4\x01\x03\x03\x07", b"\x01\x03\x03\x0e", b"\x01\x03\x03\x0f",
        b"\x02\x04\x00\x00", b"\x02\x04\x00\x01", b"\x02\x04\xff\xff\x01\x03\x03\xff", b"\x04\x02\x08\x0a" + bytes(8),
        b"\x01\x01\x05\x0a\x00\x00\x00\x01\x00\x00\x00\x02", b"\x02\x03\x05", b"\x02", b"\x03\x03", b"\xfe\x02",
        b"\x01" * 40, b"\x08\x0a" + bytes(8) + b"\x01\x01", b"\x00\x02\x04\x05\xb4", b"\x05\x02"]
DNS_NAMES = [b"\x04fuzz\x04test\x00", b"\x06nosuch\x04fuzz\x04test\x00", b"\x00", b"\xc0\x0c", b"\x04FUZZ\x04TeSt\x00",
             b"\x3f" + b"a" * 63 + b"\x00", b"\x01a\xc0\x0c", b"\x04fuzz\x04test", b"\x02\x00\x00\x00", b"\x01.\x00"]
QTYPES = [1, 28, 255, 5, 16, 0, 41, 12, 65535, 2]
TABLE = {"fuzz.test": ["10.0.2.2", "fd00::2"], "a.fuzz.test": ["192.0.2.1"], "six.fuzz.test": ["2001:db8::1"]}
_RNG_BUF = bytes((i * 2654435761 >> 13) & 0xFF for i in range(1 << 16)) * 2  # deterministic "random" payloads

_S2 = struct.Struct("!H")


def sub(a: int, b: int) -> int:
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d >= 1 << 31 else d


class GConn:
    """The model guest's view of one TCP connection."""

    __slots__ = ("v6", "gip", "rip", "gport", "rport", "iss", "snd_nxt", "ws", "peer_iss", "peer_nxt", "eng_ack",
                 "eng_win", "eng_ws", "eng_mss", "active")

    def __init__(self, v6, gip, rip, gport, rport, iss, ws):
        self.v6, self.gip, self.rip, self.gport, self.rport = v6, gip, rip, gport, rport
        self.iss = iss & 0xFFFFFFFF
        self.snd_nxt = (iss + 1) & 0xFFFFFFFF
        self.ws = ws
        self.peer_iss = None
        self.peer_nxt = 0
        self.eng_ack = self.snd_nxt
        self.eng_win = 65535
        self.eng_ws = 0
        self.eng_mss = 536
        self.active = False  # the engine opened it (tcp_connect): the guest answers SYN,ACK


class HostFlow:
    """The mock shell's host socket for one core flow (io/nat.py HostConn)."""

    __slots__ = ("flow", "connecting", "host_eof", "shut_wr", "dead", "close_pending", "since", "dns_buf",
                 "drain_since")

    def __init__(self, flow, now, connecting):
        self.flow = flow
        self.connecting = connecting
        self.host_eof = self.shut_wr = self.dead = self.close_pending = False
        self.since = now
        self.drain_since: float | None = None
        self.dns_buf = bytearray() if flow.rport == 53 and flow.rip in (DNS4, DNS6) else None


