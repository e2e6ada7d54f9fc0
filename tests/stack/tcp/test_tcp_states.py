"""The (state, event) table, and walks of every (state, input) pair on real connections."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rootlessnet.stack.tcp.connection import TcpConnection, TcpError
from rootlessnet.stack.tcp.segment import Control, Segment
from rootlessnet.stack.tcp.seq import MASK
from rootlessnet.stack.tcp.states import TRANSITIONS, Event, State, diagram, transition
from rootlessnet.stack.tcp.timers import TcpConfig
from tcp_trace import GUEST_ISS as G
from tcp_trace import OUR_ISS as L
from tcp_trace import passive, seg

R = G + 1
S = L + 1


# ---------------------------------------------------------------- the table itself
# RFC 9293 Figure 5, written down from the RFC independently of the table: (from, to).
_S = State
FIGURE_5 = {
    (_S.CLOSED, _S.SYN_SENT),  # active OPEN / snd SYN
    (_S.LISTEN, _S.SYN_RECEIVED),  # rcv SYN / snd SYN,ACK
    (_S.SYN_SENT, _S.SYN_RECEIVED),  # rcv SYN / snd ACK (simultaneous open)
    (_S.SYN_SENT, _S.ESTABLISHED),  # rcv SYN,ACK / snd ACK
    (_S.SYN_SENT, _S.CLOSED),  # CLOSE / delete TCB
    (_S.SYN_RECEIVED, _S.ESTABLISHED),  # rcv ACK of SYN
    (_S.SYN_RECEIVED, _S.FIN_WAIT_1),  # CLOSE / snd FIN
    (_S.ESTABLISHED, _S.FIN_WAIT_1),  # CLOSE / snd FIN
    (_S.ESTABLISHED, _S.CLOSE_WAIT),  # rcv FIN / snd ACK
    (_S.FIN_WAIT_1, _S.FIN_WAIT_2),  # rcv ACK of FIN
    (_S.FIN_WAIT_1, _S.CLOSING),  # rcv FIN / snd ACK
    (_S.FIN_WAIT_2, _S.TIME_WAIT),  # rcv FIN / snd ACK
    (_S.CLOSING, _S.TIME_WAIT),  # rcv ACK of FIN
    (_S.CLOSE_WAIT, _S.LAST_ACK),  # CLOSE / snd FIN
    (_S.LAST_ACK, _S.CLOSED),  # rcv ACK of FIN
    (_S.TIME_WAIT, _S.CLOSED),  # timeout = 2MSL
}
# Arrows the figure leaves out but the text (or Linux) has: resets, aborts, user timeouts,
# the engine's LISTEN-as-pending-SYN, and Linux's FIN-WAIT-2 timeout.
_TO_CLOSED_BY = {Event.RCV_RST, Event.APP_ABORT, Event.GIVE_UP, Event.APP_REFUSE, Event.APP_CLOSE, Event.TIMEOUT}
_EXTRA = {(_S.CLOSED, _S.LISTEN), (_S.LISTEN, _S.LISTEN), (_S.SYN_RECEIVED, _S.CLOSE_WAIT),
          (_S.TIME_WAIT, _S.TIME_WAIT)}


def test_the_table_has_every_arrow_of_rfc_9293_figure_5():
    arrows = {(a, b) for (a, _e), (b, _why) in TRANSITIONS.items()}
    assert FIGURE_5 - arrows == set()


def test_every_arrow_beyond_the_figure_is_a_reset_abort_timeout_or_listed():
    for (a, e), (b, why) in TRANSITIONS.items():
        if (a, b) in FIGURE_5 or (a, b) in _EXTRA:
            continue
        assert b is State.CLOSED and e in _TO_CLOSED_BY, (a, e, b, why)


@pytest.mark.parametrize("state", [s for s in State if s not in (State.CLOSED, State.LISTEN, State.SYN_SENT)],
                         ids=lambda s: s.name)
def test_abort_and_acceptable_rst_close_every_synchronized_state(state):
    assert transition(state, Event.APP_ABORT) is State.CLOSED
    assert transition(state, Event.RCV_RST) is State.CLOSED  # TIME-WAIT too, as Linux (tcp_rfc1337=0)


def test_every_entry_cites_its_source():
    for (s, e), (n, why) in TRANSITIONS.items():
        assert "RFC" in why or "Linux" in why, (s, e, why)
    assert "TIME-WAIT" in diagram()


def _reachable(start: State) -> set[State]:
    seen = {start}
    todo = [start]
    while todo:
        s = todo.pop()
        for (a, _), (b, _) in TRANSITIONS.items():
            if a is s and b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


def test_all_states_reachable_and_all_lead_to_closed():
    assert _reachable(State.CLOSED) == set(State)
    for s in State:
        assert State.CLOSED in _reachable(s) or s is State.CLOSED


def _closure(state: State, steps: int = 3) -> set[State]:
    out = {state}
    frontier = {state}
    for _ in range(steps):
        frontier = {b for (a, _), (b, _) in TRANSITIONS.items() if a in frontier}
        out |= frontier
    return out


# ---------------------------------------------------------------- connections in every state
def _fin_wait_1():
    c = passive()
    c.close()
    c.poll(0)
    c.take_output()
    return c


def _fin_wait_2():
    c = _fin_wait_1()
    c.receive(seg(R, S + 1), 0)
    return c


def _close_wait():
    c = passive()
    c.receive(seg(R, S, flags="FA"), 0)
    c.poll(0)
    c.take_output()
    return c


def _last_ack():
    c = _close_wait()
    c.close()
    c.poll(0)
    c.take_output()
    return c


def _closing():
    c = _fin_wait_1()
    c.receive(seg(R, S, flags="FA"), 0)
    return c


def _time_wait():
    c = _fin_wait_2()
    c.receive(seg(R, S + 1, flags="FA"), 0)
    return c


def _listen():
    return TcpConnection.from_syn(seg(G, flags="S", mss=1460), now=0, iss=L)


def _syn_received():
    c = _listen()
    c.accept(0)
    c.take_output()
    return c


def _syn_sent():
    c = TcpConnection.connect(now=0, iss=L)
    c.take_output()
    return c


def _closed():
    c = passive()
    c.abort()
    c.take_output()
    return c


BUILDERS = {
    State.LISTEN: _listen,
    State.SYN_SENT: _syn_sent,
    State.SYN_RECEIVED: _syn_received,
    State.ESTABLISHED: passive,
    State.FIN_WAIT_1: _fin_wait_1,
    State.FIN_WAIT_2: _fin_wait_2,
    State.CLOSE_WAIT: _close_wait,
    State.CLOSING: _closing,
    State.LAST_ACK: _last_ack,
    State.TIME_WAIT: _time_wait,
    State.CLOSED: _closed,
}


def _peer(c: TcpConnection, kind: str) -> Segment:
    """A segment of the given kind, relative to the connection's variables."""
    nxt = c.rcv_nxt if c.rcv_nxt else R
    una, mx = c.snd_una, c.snd_max
    return {
        "syn": lambda: seg(G + 777, flags="S", mss=1400),
        "syn_retx": lambda: seg(c.irs or G, flags="S", mss=1460),
        "synack": lambda: seg(c.irs or G, (c.iss + 1) & MASK, flags="SA", mss=1460),
        "ack_syn": lambda: seg(nxt, (c.iss + 1) & MASK),
        "ack_all": lambda: seg(nxt, mx),
        "data": lambda: seg(nxt, una, data=b"d" * 100),
        "fin": lambda: seg(nxt, mx, flags="FA"),
        "data_fin": lambda: seg(nxt, mx, flags="FA", data=b"e" * 10),
        "rst_exact": lambda: seg(nxt, flags="R"),
        "rst_in_window": lambda: seg((nxt + 10) & MASK, flags="R"),
        "rst_ack": lambda: seg(nxt, mx, flags="RA"),
        "old_data": lambda: seg((nxt - 1000) & MASK, una, data=b"o" * 50),
        "future": lambda: seg((nxt + 10**6) & MASK, una, data=b"f"),
        "ooo": lambda: seg((nxt + 200) & MASK, una, data=b"x" * 100),
        "bad_ack": lambda: seg(nxt, (mx + 10**6) & MASK),
        "old_ack": lambda: seg(nxt, (una - 10**6) & MASK),
        "no_ack": lambda: seg(nxt, flags="", data=b"n"),
        "zero_win": lambda: seg(nxt, mx, win=0),
    }[kind]()


PEER_INPUTS = ["syn", "syn_retx", "synack", "ack_syn", "ack_all", "data", "fin", "data_fin",
               "rst_exact", "rst_in_window", "rst_ack", "old_data", "future", "ooo",
               "bad_ack", "old_ack", "no_ack", "zero_win"]
API_INPUTS = ["accept", "refuse", "close", "close_orphan", "abort", "send", "consume",
              "tick", "tick_long"]
INPUTS = PEER_INPUTS + API_INPUTS


def _apply(c: TcpConnection, kind: str, now: float) -> float:
    if kind in PEER_INPUTS:
        s = _peer(c, kind)
        c.receive(s, now)
        if s.control is Control.RST:
            # Never answer a RST with a RST (RFC 9293 §3.10.7).
            assert all(o.control is not Control.RST for o in c._out)
    elif kind == "accept":
        c.accept(now)
    elif kind == "refuse":
        c.refuse()
    elif kind == "close":
        c.close()
    elif kind == "close_orphan":
        c.close(orphan=True)
    elif kind == "abort":
        c.abort()
    elif kind == "send":
        c.send(b"s" * 3000)
    elif kind == "consume":
        c.consume(c.readable())
    elif kind == "tick":
        now += 0.25
    elif kind == "tick_long":
        now += 500.0
    c.poll(now)
    # After poll(now) nothing is due at `now` any more: no busy loop for the engine.
    t = c.poll_at()
    assert t is None or t > now, (kind, c, t)
    return now


def _check(c: TcpConnection, before: State) -> None:
    assert isinstance(c.state, State)
    assert c.state in _closure(before), f"{before} -> {c.state} not in the table"
    for o in c.take_output():
        assert 0 <= o.seq <= MASK and (o.ack is None or 0 <= o.ack <= MASK)
        assert 0 <= o.window <= 0xFFFF
        assert isinstance(o.control, Control)
    assert c.readable() <= c.cfg.recv_buffer + (1 << c.rcv_wscale)  # the edge is rounded up to the scale
    assert c._reasm.nbytes <= c.cfg.recv_buffer
    assert c._reasm.held <= c._reasm.nbytes + 64 * c.cfg.max_ooo_blocks
    assert c.unacked <= c.cfg.send_buffer


def _misuse(c: TcpConnection, kind: str) -> bool:
    """Is `kind` a misuse of the API in c's present state (documented to raise TcpError)?"""
    if kind in ("accept", "refuse"):
        return c.state is not State.LISTEN
    if kind == "send":
        return c.send_space() == 0 and not c._can_send()
    return False


def _step(c: TcpConnection, kind: str, now: float) -> float:
    """Apply one input; TcpError exactly when the API was misused, and then nothing changed."""
    before = c.state
    if _misuse(c, kind):
        with pytest.raises(TcpError):
            _apply(c, kind, now)
        assert c.state is before
        return now
    return _apply(c, kind, now)


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
def test_every_input_in_every_state(state):
    for kind in INPUTS:
        c = BUILDERS[state]()
        assert c.state is state
        before = c.state
        _step(c, kind, 1.0)
        _check(c, before)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(State)), st.lists(st.sampled_from(INPUTS), max_size=15))
def test_random_walks_never_raise(state, kinds):
    c = BUILDERS[state]()
    now = 1.0
    for kind in kinds:
        before = c.state
        now = _step(c, kind, now)
        _check(c, before)


def test_small_buffers_walk():
    cfg = TcpConfig(recv_buffer=150, send_buffer=200)
    c = passive(cfg)
    now = 0.0
    for kind in INPUTS * 3:
        before = c.state
        now = _step(c, kind, now)
        _check(c, before)
