"""rootlessnet.stack.tcp.notice: what a connection tells the engine after receive()/poll()."""

from __future__ import annotations

import enum

__all__ = ["Notice"]


class Notice(enum.IntFlag):
    """Bits returned by ``TcpConnection.receive``/``poll`` (edge-triggered)."""

    NONE = 0
    READABLE = 1  # new in-order bytes in the receive buffer
    PEER_FIN = 2  # peer's FIN processed: after draining, shut down the host socket's write side
    WRITABLE = 4  # acknowledged bytes freed send-buffer space: resume reading the host socket
    ESTABLISHED = 8  # handshake completed
    RESET = 16  # peer reset the connection: close the host socket with RST (SO_LINGER 0)
    TIMED_OUT = 32  # retransmission / probe / keepalive limit: connection aborted with RST
    CLOSED = 64  # entered CLOSED: the connection can be freed (after draining readable data)
    SYN_IN_TIME_WAIT = 128  # new SYN for this 4-tuple in TIME-WAIT: free this one, from_syn() anew
