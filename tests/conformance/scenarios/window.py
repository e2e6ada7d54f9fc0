"""Flow control: zero windows both ways and the persist timer (RFC 9293 §3.8.6.1), window scaling
and the never-shrinking right edge (RFC 7323 §2.4), sender silly-window avoidance (§3.8.6.2.1)."""

from __future__ import annotations

import time

from tests.conformance.bench import Run, sdiff, tbin
from tests.conformance.scenarios import scenario
from tests.conformance.scenarios.rst import established

MASK = 0xFFFFFFFF
EDGE_RUNT = ("once a TSO frame it already built reaches the window's edge, Linux (TCP_NODELAY) sends its 152-byte "
             "tail; the engine leaves a runt for the next ACK while more data waits (RFC 9293 §3.8.6.2.1)")


def fill(t: Run, c, limit: int = 48 << 20, rounds: int = 600, settle: float = 0.3) -> tuple[bool, int]:
    """Send what the DUT's window takes until it is zero, everything is ACKed, and it stays so.

    Frames of up to 64000 bytes (both DUTs offer MSS 65480); each round waits for the ACK of
    everything sent (at most 0.2 s). A closed window must stay closed for ``settle`` seconds:
    the engine's buffer also drains into its host socket's, which may take more a moment
    later (it then reopens the window, and the bench fills that too). Returns (closed, ACKed)."""
    start = acked = c.snd_nxt
    win = None
    for _ in range(rounds):
        room = sdiff(c.edge, c.snd_nxt) if c.edge is not None else 0
        while room > 0 and sdiff(c.snd_nxt, start) < limit:
            n = min(room, 64000)
            c.push(bytes(n))
            room -= n
        end = time.time() + 0.2
        while acked != c.snd_nxt or win is None:
            f = c.recv(max(0.0, end - time.time()))
            if f is None:
                break
            if sdiff(f.ack, acked) >= 0:
                acked, win = f.ack, f.win
        if acked == c.snd_nxt and win == 0:
            update = [f for f in c.frames(settle) if f.win]
            if not update:
                return True, sdiff(acked, start)
            win = update[-1].win
        if sdiff(c.snd_nxt, start) >= limit:
            break
    return False, sdiff(acked, start)


def drain(app, quiet: float = 0.5, limit: int = 64 << 20) -> int:
    """Read until nothing comes for ``quiet`` seconds; the byte count."""
    n = 0
    while n < limit:
        r = app.read(1 << 20, quiet, label=None)
        if not isinstance(r, bytes):
            break
        n += len(r)
    return n


@scenario("window/zero-window-receive", solo=True, budget=90)
def zero_receive(t: Run) -> None:
    """The application stops reading: the window closes; a byte sent into it is refused with an ACK of window 0;
    reading opens the window again with an update."""
    app = t.listen(rcvbuf=16384)
    c = t.peer()
    c.open()
    a = app.accept()
    if not a:
        return
    closed, n = fill(t, c)
    t.note("window", "closed" if closed else f"still open after {n} bytes")
    if not closed:
        return
    nxt = c.snd_nxt
    c.push(b"!")
    c.snd_nxt = nxt
    f = c.recv(1.0)
    t.note("byte into the zero window", "none" if f is None else
           f"{c.describe(f, length=True).split()[0]} ack {'unchanged' if f.ack == nxt else 'moved'} "
           f"win={'0' if f.win == 0 else '>0'}")
    got = drain(a)
    t.note("application read everything ACKed", got == n)
    upd = c.frames(0.5)  # the window update (the engine may send more than one while its buffers drain)
    t.note("window update", "win>0" if any(f.win for f in upd) else "none")
    c.push(b"!")
    fs = c.frames(0.5)
    t.note("the byte again", "ACKed" if any(f.ack == c.snd_nxt for f in fs) else "not ACKed")
    t.note("and the application reads it", a.read_exact(1, label=None) == b"!")


@scenario("window/persist-probes")
def persist(t: Run) -> None:
    """The guest's window is 0 and data waits: probes <SEQ=SND.UNA-1> with backoff; data flows when it opens."""
    c, a = established(t)
    if not a:
        return
    a.send_now(b"a" * 1000)
    c.expect("data")
    c.ack(win=0)
    t.sleep(0.05)
    w = time.time()
    a.send_now(b"b" * 1000)
    prev = w
    for k in range(3):
        f = c.expect(f"probe {k + 1}", 2.5, win=False)
        if f is None:
            return
        t.note(f"probe {k + 1} after", tbin(f.t - prev))
        prev = f.t
        c.ack(win=0)
    c.ack()
    c.expect("data when the window opens")


@scenario("window/zero-window-with-data-in-flight")
def zero_in_flight(t: Run) -> None:
    """The guest ACKs half the data with window 0: the head segment is retransmitted as the probe (as Linux does,
    RFC 9293 §3.8.6.1), with backoff; the rest flows when the window opens."""
    c, a = established(t)
    if not a:
        return
    a.write(bytes(8 * 1460))
    fs = c.frames(0.1, accept=False)
    sent = sum(len(f.payload) for f in fs)
    t.note("sent", f"{sent} bytes")
    start = c.rcv_nxt
    half = (start + 4 * 1460) & MASK
    s = c.ack(ack=half, win=0)
    f1 = c.expect("probe 1", 1.5, accept=False, since=s)
    if f1 is None:
        return
    c.ack(ack=half, win=0)
    f2 = c.expect("probe 2", 2.0, accept=False)
    if f2 is not None:
        t.note("probe 2 after probe 1", tbin(f2.t - f1.t))
    c.rcv_nxt = half
    got = 4 * 1460
    end = time.time() + 3
    c.ack()
    while got < sent and time.time() < end:
        f = c.recv(0.5, accept=False)
        if f is None:
            c.ack()
            continue
        if f.payload and f.seq == c.rcv_nxt:
            c.rcv_nxt = (c.rcv_nxt + len(f.payload)) & MASK
            got += len(f.payload)
        c.ack()
    t.note("everything arrives once the window opens", got >= sent)


@scenario("window/right-edge-never-shrinks")
def never_shrinks(t: Run) -> None:
    """Odd-sized segments while the application does not read: the scaled right edge never moves left
    (RFC 7323 §2.4)."""
    c, a = established(t)
    shrunk = 0
    acks = 0
    prev = c.edge
    for _ in range(24):
        c.push(bytes(333))
        f = c.recv(0.3)
        if f is None:
            continue
        acks += 1
        if prev is not None and sdiff(c.edge, prev) < 0:
            shrunk += 1
        prev = c.edge
    t.note("ACKs", "all" if acks == 24 else f"{acks} of 24")
    t.note("right edge moved left", "never" if not shrunk else f"{shrunk} times")


@scenario("window/sender-sws-avoidance", reason=EDGE_RUNT, differs="after the ACK")
def sender_sws(t: Run) -> None:
    """A window of 3072 bytes with more data queued: two full segments, no 152-byte runt (RFC 9293 §3.8.6.2.1)."""
    app = t.listen()
    c = t.peer(win=24)  # 24 << 7 = 3072 bytes
    c.open()
    a = app.accept()
    if not a:
        return
    a.write(bytes(20000))
    fs = c.frames(0.12, accept=False)
    t.note("first burst", f"{sum(len(f.payload) for f in fs)} bytes")
    if fs:
        last = fs[-1]
        c.rcv_nxt = (last.seq + len(last.payload)) & MASK
    c.ack()
    fs = c.frames(0.12, accept=False)
    t.note("after the ACK", f"{sum(len(f.payload) for f in fs)} bytes")
