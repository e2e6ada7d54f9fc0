"""rootlessnet.stack.tcp.segment: the parsed TCP segment the engine feeds and receives.

A ``Segment`` carries only what TCP processing needs; addresses and ports are
the engine's business (it keys connections by 4-tuple). Flags are one
``Control`` value plus an optional ACK number, as smoltcp does, so that
illegal combinations (SYN+RST, SYN+FIN, ...) cannot be built:

* ``control`` is one of NONE, PSH, SYN, FIN, RST;
* ``ack`` is ``None`` when the ACK flag is clear, else the acknowledgment number;
* FIN implies push (RFC 9293 §3.10.7.4 "eighth, check the FIN bit": "FIN
  implies PUSH"): the codec may set PSH on FIN segments when emitting and
  folds FIN+PSH into FIN when parsing. PSH is otherwise only advisory.
* A codec meeting an illegal combination on the wire (SYN+RST, SYN+FIN,
  FIN+RST) should drop it: Linux drops SYN+FIN/SYN+RST too.

URG is not represented (RFC 9293 §3.8.5: urgent data is legacy; the engine
treats the urgent pointer as absent). ``timestamps`` (RFC 7323 TSopt) is
parsed and carried but the connection does not negotiate it: it never sends
TSopt in a SYN, so a conforming peer never uses it.
"""

from __future__ import annotations

import enum

__all__ = ["Control", "Segment"]


class Control(enum.Enum):
    """The one non-ACK control of a segment (smoltcp's ``TcpControl``)."""

    NONE = 0
    PSH = 1
    SYN = 2
    FIN = 3
    RST = 4


_SYN = Control.SYN
_FIN = Control.FIN
_EMPTY = b""


class Segment:
    """One TCP segment's header fields and payload (``__slots__``; hot path)."""

    __slots__ = (
        "seq",
        "ack",
        "control",
        "window",
        "payload",
        "mss",
        "wscale",
        "sack_permitted",
        "sack_blocks",
        "timestamps",
    )

    def __init__(
        self,
        seq: int,
        ack: int | None = None,
        control: Control = Control.NONE,
        window: int = 0,
        payload: bytes | memoryview = _EMPTY,
        *,
        mss: int | None = None,
        wscale: int | None = None,
        sack_permitted: bool = False,
        sack_blocks: tuple = (),
        timestamps: tuple[int, int] | None = None,
    ) -> None:
        self.seq = seq
        self.ack = ack
        self.control = control
        self.window = window  # raw 16-bit header field, *unscaled*
        self.payload = payload
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = sack_permitted
        self.sack_blocks = sack_blocks
        self.timestamps = timestamps

    @property
    def seg_len(self) -> int:
        """Sequence space used: payload + 1 for SYN + 1 for FIN (RFC 9293 §3.4)."""
        c = self.control
        return len(self.payload) + (1 if (c is _SYN or c is _FIN) else 0)

    def __repr__(self) -> str:
        parts = [f"seq={self.seq}"]
        if self.ack is not None:
            parts.append(f"ack={self.ack}")
        if self.control is not Control.NONE:
            parts.append(self.control.name)
        parts.append(f"win={self.window}")
        if self.payload:
            parts.append(f"len={len(self.payload)}")
        if self.mss is not None:
            parts.append(f"mss={self.mss}")
        if self.wscale is not None:
            parts.append(f"ws={self.wscale}")
        if self.sack_permitted:
            parts.append("sackok")
        return "Segment(" + " ".join(parts) + ")"
