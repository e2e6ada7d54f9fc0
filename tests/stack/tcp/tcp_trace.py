"""Packet-trace helpers for the TCP tests: build segments, expect segments (partial match).

``seg(...)`` builds a Segment; ``flags`` is "S", "SA", "A", "F", "FA", "R",
"RA", "PA". ``expect(conn, {...}, ...)`` drains the connection's output and
matches each segment against a dict in which an absent key means "any value":
keys are seq, ack (None = no ACK flag), ctl (Control name), win, data, len,
mss, wscale.
"""

from __future__ import annotations

from rootlessnet.stack.tcp.connection import TcpConnection
from rootlessnet.stack.tcp.segment import Control, Segment
from rootlessnet.stack.tcp.timers import TcpConfig

GUEST_ISS = 1000  # the peer's ISN in the traces
OUR_ISS = 5000  # the connection's ISN

_CTL = {"S": Control.SYN, "F": Control.FIN, "R": Control.RST, "P": Control.PSH}


def seg(seq, ack=None, flags="A", win=65535, data=b"", **opts) -> Segment:
    ctl = Control.NONE
    for f in flags:
        if f in _CTL:
            ctl = _CTL[f]
    if "A" not in flags:
        ack = None
    return Segment(seq, ack, ctl, win, data, **opts)


def matches(s: Segment, spec: dict) -> bool:
    for k, v in spec.items():
        if k == "ctl":
            if s.control is not (v if isinstance(v, Control) else Control[v]):
                return False
        elif k == "data":
            if bytes(s.payload) != v:
                return False
        elif k == "len":
            if len(s.payload) != v:
                return False
        elif k == "win":
            if s.window != v:
                return False
        elif getattr(s, k) != v:
            return False
    return True


def expect(conn: TcpConnection, *specs: dict, now: float | None = None) -> list[Segment]:
    """poll(now) if given, drain output, assert it matches ``specs`` one to one."""
    if now is not None:
        conn.poll(now)
    out = conn.take_output()
    assert len(out) == len(specs), f"expected {len(specs)} segments {specs}, got {out}"
    for s, spec in zip(out, specs):
        assert matches(s, spec), f"{s!r} does not match {spec}"
    return out


def nothing(conn: TcpConnection, now: float | None = None) -> None:
    expect(conn, now=now)


def passive(cfg: TcpConfig | None = None, *, now: float = 0.0, win: int = 65535,
            mss: int | None = 1460, wscale: int | None = None) -> TcpConnection:
    """An ESTABLISHED passive connection: guest SYN, our SYN-ACK, guest ACK."""
    cfg = cfg or TcpConfig()
    c = TcpConnection.from_syn(seg(GUEST_ISS, flags="S", win=win, mss=mss, wscale=wscale),
                               now=now, iss=OUR_ISS, config=cfg)
    c.accept(now)
    expect(c, {"seq": OUR_ISS, "ack": GUEST_ISS + 1, "ctl": "SYN"})
    c.receive(seg(GUEST_ISS + 1, OUR_ISS + 1, win=win), now)
    c.poll(now)
    assert c.take_output() == []
    assert c.established
    return c


def pump(a: TcpConnection, b: TcpConnection, now: float, rounds: int = 50) -> None:
    """Exchange segments over a perfect link until both are quiet (bounded)."""
    for _ in range(rounds):
        a.poll(now)
        b.poll(now)
        out_a = a.take_output()
        out_b = b.take_output()
        if not out_a and not out_b:
            return
        for s in out_a:
            b.receive(s, now)
        for s in out_b:
            a.receive(s, now)
    raise AssertionError("link did not settle")
