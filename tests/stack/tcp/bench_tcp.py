"""Micro-benchmark: push 1 GiB through two connected TcpConnection instances.

Not collected by pytest (no test_ prefix). Run:
    PYTHONPATH=. /opt/rn-dev/bin/python tests/stack/tcp/bench_tcp.py [MiB]
Prints MB/s of payload moved (sender send() -> receiver peek()/consume()),
both ends in this process, 64 KiB super-segments (max_tx_payload = 65536), for
two shapes:

* batched: host reads of 64 KiB (aligned with segments: zero-copy), the
  receiver polls once per batch (ACKs coalesced, as the engine does per tap
  read batch);
* per-segment: host reads of 60000 bytes (segments straddle chunks: one join
  copy each), the receiver polls and ACKs after every segment.
"""

from __future__ import annotations

import sys
import time

from rootlessnet.stack.tcp.connection import TcpConnection
from rootlessnet.stack.tcp.timers import TcpConfig


def run(total_mib: int, per_segment: bool) -> None:
    cfg = TcpConfig(local_mss=65495, recv_buffer=4 << 20, send_buffer=4 << 20, ack_every=1)
    now = 0.0
    a = TcpConnection.connect(now=now, iss=1, config=cfg)
    syn = a.take_output()[0]
    b = TcpConnection.from_syn(syn, now=now, iss=2, config=cfg)
    b.accept(now)
    for s in b.take_output():
        a.receive(s, now)
    a.poll(now)
    for s in a.take_output():
        b.receive(s, now)
    assert a.established and b.established, (a, b)
    a.max_tx_payload = 65536
    chunk = (bytes(range(256)) * 256)[: 60000 if per_segment else 65536]
    total = total_mib << 20
    sent = received = 0
    t0 = time.perf_counter()
    while received < total:
        while sent < total and a.send_space() >= len(chunk):
            sent += a.send(chunk)
        a.poll(now)
        for s in a.take_output():
            b.receive(s, now)
            if per_segment:
                while b.readable():
                    received += b.consume(len(b.peek(65536)))
                b.poll(now)
                for ack in b.take_output():
                    a.receive(ack, now)
        while b.readable():  # as the engine does: peek, sock.send(view), consume
            received += b.consume(len(b.peek(65536)))
        b.poll(now)
        for s in b.take_output():
            a.receive(s, now)
        now += 0.0001
    dt = time.perf_counter() - t0
    mode = "per-segment" if per_segment else "batched"
    print(f"{mode:>11}: {received / dt / 1e6:.0f} MB/s ({received >> 20} MiB in {dt:.2f} s, "
          f"{a.stats.segs_out} data segs, {b.stats.segs_out} acks)")


def main(total_mib: int = 1024) -> None:
    run(total_mib, per_segment=False)
    run(total_mib, per_segment=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024)
