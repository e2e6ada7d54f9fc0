"""Small network programs the examples run *inside* sandboxes (python3 netprog.py COMMAND ...).

kv-serve PORT                      line protocol: "SET k v" -> "OK", "GET k" -> "VALUE v" | "NONE"
kv HOST PORT CMD...                one request, a few attempts; exit 1 with "cannot reach" when it fails
kv-session HOST PORT               one connection ("connected"), then requests from stdin, answers to stdout
udp-serve PORT                     UDP echo
udp-ask HOST PORT                  --count N requests, each retried (--timeout, --attempts)
udp-rtt HOST PORT                  --count N round trips: prints the median in seconds

Every server stops by itself after --lifetime seconds (default 120).
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import statistics
import sys
import threading
import time


def kv_serve(port: int, lifetime: float) -> None:
    data: dict[str, str] = {}

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                parts = raw.decode().split()
                if parts[:1] == ["SET"] and len(parts) == 3:
                    data[parts[1]] = parts[2]
                    self.wfile.write(b"OK\n")
                elif parts[:1] == ["GET"] and len(parts) == 2:
                    v = data.get(parts[1])
                    self.wfile.write(f"VALUE {v}\n".encode() if v is not None else b"NONE\n")
                else:
                    self.wfile.write(b"ERROR\n")

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    with Server(("0.0.0.0", port), Handler) as srv:
        threading.Timer(lifetime, srv.shutdown).start()
        srv.serve_forever()


def kv(host: str, port: int, words: list[str], timeout: float, attempts: int) -> int:
    last = None
    for _ in range(attempts):
        try:
            with socket.create_connection((host, port), timeout=timeout) as s:
                s.sendall((" ".join(words) + "\n").encode())
                answer = s.makefile().readline()
                if answer:
                    print(answer, end="")
                    return 0
                last = "connection closed"
        except OSError as e:
            last = e
            time.sleep(min(timeout, 0.2))
    print(f"kv: cannot reach {host}:{port} after {attempts} attempts: {last}", file=sys.stderr)
    return 1


def kv_session(host: str, port: int, timeout: float) -> int:
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(None)  # once connected, TCP itself rides out packet loss and partitions
    f = s.makefile("rw")
    print("connected", flush=True)
    for line in sys.stdin:
        f.write(line)
        f.flush()
        print(f.readline(), end="", flush=True)
    return 0


def udp_serve(port: int, lifetime: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    deadline = time.monotonic() + lifetime
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            break
        s.sendto(data, peer)


def _udp_exchange(s: socket.socket, payload: bytes, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        s.send(payload)
        while True:
            if s.recv(2048) == payload:
                return True  # (an older request's late answer is skipped)
    except ConnectionRefusedError:  # ICMP port unreachable: the server is not up yet
        time.sleep(timeout)
        return False
    except socket.timeout:
        return False


def udp_ask(host: str, port: int, count: int, timeout: float, attempts: int) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    tries = 0
    for i in range(count):
        payload = f"request {i}".encode()
        for _ in range(attempts):
            tries += 1
            if _udp_exchange(s, payload, timeout):
                break
        else:
            print(f"udp-ask: gave up on request {i} after {attempts} attempts ({host}:{port} does not answer)",
                  file=sys.stderr)
            return 2
    print(f"answered {count}/{count} with {tries} attempts")
    return 0


def udp_rtt(host: str, port: int, count: int) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    for _ in range(50):  # wait (bounded) until the server answers
        if _udp_exchange(s, b"warm-up", 0.5):
            break
    samples = []
    for i in range(count):
        t = time.monotonic()
        if _udp_exchange(s, f"ping {i}".encode(), 5.0):
            samples.append(time.monotonic() - t)
    if not samples:
        print("udp-rtt: no answer", file=sys.stderr)
        return 1
    print(f"{statistics.median(samples):.6f}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command")
    p.add_argument("args", nargs="*")
    p.add_argument("--lifetime", type=float, default=120.0)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--attempts", type=int, default=3)
    p.add_argument("--count", type=int, default=10)
    a = p.parse_args()
    if a.command == "kv-serve":
        kv_serve(int(a.args[0]), a.lifetime)
    elif a.command == "kv":
        return kv(a.args[0], int(a.args[1]), a.args[2:], a.timeout, a.attempts)
    elif a.command == "kv-session":
        return kv_session(a.args[0], int(a.args[1]), a.timeout)
    elif a.command == "udp-serve":
        udp_serve(int(a.args[0]), a.lifetime)
    elif a.command == "udp-ask":
        return udp_ask(a.args[0], int(a.args[1]), a.count, a.timeout, a.attempts)
    elif a.command == "udp-rtt":
        return udp_rtt(a.args[0], int(a.args[1]), a.count)
    else:
        p.error(f"unknown command {a.command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
