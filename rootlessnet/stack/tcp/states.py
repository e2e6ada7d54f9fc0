"""rootlessnet.stack.tcp.states: the TCP state machine as data, ``(state, event) -> state``.

This file is the single place where connection states change: ``TcpConnection``
only moves between states through :func:`transition`, so the table below is
the whole state diagram (RFC 9293 §3.3.2, Figure 5), one row per arrow, each
citing the section that defines it.

``State.LISTEN`` here means "a SYN arrived and the engine has not yet decided"
(``TcpConnection.from_syn``); there is no long-lived listener object: the
engine plays the listener and creates one connection per SYN (gVisor's
``tcp.Forwarder``). Leaving LISTEN by a refusal or a peer RST goes to CLOSED,
not back to LISTEN (RFC 9293 §3.10.7.4 "first": "return this connection to
LISTEN" applies to a real listener, which the engine keeps).

Pairs that are not in the table are deliberate no-ops: :func:`transition`
returns the state unchanged. What the connection *answers* to such input
(drop, ACK, RST, challenge ACK) is decided by the segment-processing rules of
RFC 9293 §3.10.7 in ``connection.py``, never by an exception.
"""

from __future__ import annotations

import enum

__all__ = ["State", "Event", "TRANSITIONS", "transition", "SYNCHRONIZED"]


class State(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


class Event(enum.Enum):
    """What can move a connection: local calls, peer segments, timers."""

    APP_CONNECT = "connect()"
    PEER_SYN = "SYN received"  # while LISTEN (passive) or SYN-SENT (simultaneous open)
    APP_ACCEPT = "accept()"
    APP_REFUSE = "refuse()"
    RCV_SYN_ACK = "SYN+ACK received, acking our SYN"
    RCV_ACK_OF_SYN = "ACK of our SYN received"
    RCV_FIN = "FIN received (in order)"
    RCV_ACK_OF_FIN = "ACK of our FIN received"
    RCV_RST = "acceptable RST received"
    APP_CLOSE = "close()"
    APP_ABORT = "abort()"
    TIMEOUT = "2MSL / FIN-WAIT-2 timer expired"
    GIVE_UP = "retransmission / keepalive / probe limit reached"


S = State
E = Event

#: ``(state, event) -> (next_state, where the RFC says so)``.
TRANSITIONS: dict[tuple[State, Event], tuple[State, str]] = {
    # --- opening ---------------------------------------------------------
    (S.CLOSED, E.APP_CONNECT): (S.SYN_SENT, "RFC 9293 §3.10.1 OPEN active"),
    (S.CLOSED, E.PEER_SYN): (S.LISTEN, "RFC 9293 §3.10.7.2 (SYN held for the engine's decision)"),
    (S.LISTEN, E.PEER_SYN): (S.LISTEN, "RFC 9293 §3.10.7.2 retransmitted SYN absorbed"),
    (S.LISTEN, E.APP_ACCEPT): (S.SYN_RECEIVED, "RFC 9293 §3.10.7.2 third: send SYN,ACK"),
    (S.LISTEN, E.APP_REFUSE): (S.CLOSED, "RFC 9293 §3.10.7.1 (no listener: RST,ACK)"),
    (S.LISTEN, E.APP_CLOSE): (S.CLOSED, "RFC 9293 §3.10.4 CLOSE in LISTEN"),
    (S.LISTEN, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT in LISTEN"),
    (S.SYN_SENT, E.RCV_SYN_ACK): (S.ESTABLISHED, "RFC 9293 §3.10.7.3 fourth"),
    (S.SYN_SENT, E.PEER_SYN): (S.SYN_RECEIVED, "RFC 9293 §3.10.7.3 fourth (simultaneous open)"),
    (S.SYN_SENT, E.RCV_RST): (S.CLOSED, "RFC 9293 §3.10.7.3 second"),
    (S.SYN_SENT, E.APP_CLOSE): (S.CLOSED, "RFC 9293 §3.10.4 CLOSE in SYN-SENT"),
    (S.SYN_SENT, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT in SYN-SENT"),
    (S.SYN_SENT, E.GIVE_UP): (S.CLOSED, "RFC 9293 §3.10.8 user timeout"),
    (S.SYN_RECEIVED, E.RCV_ACK_OF_SYN): (S.ESTABLISHED, "RFC 9293 §3.10.7.4 fifth"),
    (S.SYN_RECEIVED, E.RCV_RST): (S.CLOSED, "RFC 9293 §3.10.7.4 first (RST)"),
    (S.SYN_RECEIVED, E.RCV_FIN): (S.CLOSE_WAIT, "RFC 9293 §3.10.7.4 eighth"),
    (S.SYN_RECEIVED, E.APP_CLOSE): (S.FIN_WAIT_1, "RFC 9293 §3.10.4 CLOSE in SYN-RECEIVED"),
    (S.SYN_RECEIVED, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT"),
    (S.SYN_RECEIVED, E.GIVE_UP): (S.CLOSED, "RFC 9293 §3.10.8 user timeout"),
    # --- data transfer ---------------------------------------------------
    (S.ESTABLISHED, E.RCV_FIN): (S.CLOSE_WAIT, "RFC 9293 §3.10.7.4 eighth"),
    (S.ESTABLISHED, E.APP_CLOSE): (S.FIN_WAIT_1, "RFC 9293 §3.10.4 CLOSE in ESTABLISHED"),
    (S.ESTABLISHED, E.RCV_RST): (S.CLOSED, "RFC 9293 §3.10.7.4 first (RST)"),
    (S.ESTABLISHED, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT"),
    (S.ESTABLISHED, E.GIVE_UP): (S.CLOSED, "RFC 9293 §3.10.8 user timeout"),
    # --- we close first --------------------------------------------------
    (S.FIN_WAIT_1, E.RCV_ACK_OF_FIN): (S.FIN_WAIT_2, "RFC 9293 §3.10.7.4 fifth FIN-WAIT-1"),
    (S.FIN_WAIT_1, E.RCV_FIN): (S.CLOSING, "RFC 9293 §3.10.7.4 eighth FIN-WAIT-1"),
    (S.FIN_WAIT_1, E.RCV_RST): (S.CLOSED, "RFC 9293 §3.10.7.4 first (RST)"),
    (S.FIN_WAIT_1, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT"),
    (S.FIN_WAIT_1, E.GIVE_UP): (S.CLOSED, "RFC 9293 §3.10.8 user timeout"),
    (S.FIN_WAIT_2, E.RCV_FIN): (S.TIME_WAIT, "RFC 9293 §3.10.7.4 eighth FIN-WAIT-2"),
    (S.FIN_WAIT_2, E.RCV_RST): (S.CLOSED, "RFC 9293 §3.10.7.4 first (RST)"),
    (S.FIN_WAIT_2, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT"),
    (S.FIN_WAIT_2, E.TIMEOUT): (S.CLOSED, "tcp_fin_timeout as Linux does (orphaned only)"),
    (S.FIN_WAIT_2, E.GIVE_UP): (S.CLOSED, "RFC 9293 §3.10.8 user timeout (keepalive)"),
    (S.CLOSING, E.RCV_ACK_OF_FIN): (S.TIME_WAIT, "RFC 9293 §3.10.7.4 fifth CLOSING"),
    (S.CLOSING, E.RCV_RST): (S.CLOSED, "RFC 9293 §3.10.7.4 first (RST)"),
    (S.CLOSING, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT"),
    (S.CLOSING, E.GIVE_UP): (S.CLOSED, "RFC 9293 §3.10.8 user timeout"),
    (S.TIME_WAIT, E.RCV_FIN): (S.TIME_WAIT, "RFC 9293 §3.10.7.4 eighth TIME-WAIT (restart 2MSL)"),
    (S.TIME_WAIT, E.RCV_RST): (S.CLOSED, "RST at RCV.NXT ends TIME-WAIT as Linux does (tcp_rfc1337=0; RFC 1337 §2)"),
    (S.TIME_WAIT, E.TIMEOUT): (S.CLOSED, "RFC 9293 §3.10.8 time-wait timeout"),
    (S.TIME_WAIT, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT in TIME-WAIT"),
    # --- peer closes first -----------------------------------------------
    (S.CLOSE_WAIT, E.APP_CLOSE): (S.LAST_ACK, "RFC 9293 §3.10.4 CLOSE in CLOSE-WAIT"),
    (S.CLOSE_WAIT, E.RCV_RST): (S.CLOSED, "RFC 9293 §3.10.7.4 first (RST)"),
    (S.CLOSE_WAIT, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT"),
    (S.CLOSE_WAIT, E.GIVE_UP): (S.CLOSED, "RFC 9293 §3.10.8 user timeout"),
    (S.LAST_ACK, E.RCV_ACK_OF_FIN): (S.CLOSED, "RFC 9293 §3.10.7.4 fifth LAST-ACK"),
    (S.LAST_ACK, E.RCV_RST): (S.CLOSED, "RFC 9293 §3.10.7.4 first (RST)"),
    (S.LAST_ACK, E.APP_ABORT): (S.CLOSED, "RFC 9293 §3.10.5 ABORT"),
    (S.LAST_ACK, E.GIVE_UP): (S.CLOSED, "RFC 9293 §3.10.8 user timeout"),
}

del S, E

#: States in which both ISNs are known (RFC 9293 §3.10.7.4 applies).
SYNCHRONIZED = frozenset(
    {
        State.SYN_RECEIVED,
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
    }
)


# The table keyed by the members' ids: Enum.__hash__ is a Python function, and this lookup
# happens at every state change of every connection.
_BY_ID: dict[tuple[int, int], State] = {(id(s), id(e)): n for (s, e), (n, _why) in TRANSITIONS.items()}
#: ids of the SYNCHRONIZED states (the same reason)
SYNCHRONIZED_IDS: frozenset[int] = frozenset(id(s) for s in SYNCHRONIZED)


def transition(state: State, event: Event) -> State:
    """Next state; a pair missing from the table leaves the state unchanged."""
    n = _BY_ID.get((id(state), id(event)))
    return state if n is None else n


def diagram() -> str:
    """The table as text, one arrow per line (for docs and debugging)."""
    return "\n".join(
        f"{s.value:>12} --{e.name:<15}--> {n.value:<12} ({why})"
        for (s, e), (n, why) in TRANSITIONS.items()
    )
