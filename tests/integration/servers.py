"""Host-side servers for integration tests: all bound to loopback, all stop by themselves.

Each runs in a daemon thread with its own asyncio loop and a lifetime bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import threading

from rootlessnet.wire import dns as wdns

LIFETIME = 300.0


def seeded_sha256(seed: int, n: int) -> str:
    """sha256 of what the source server sends for `SEED N` (1 MiB chunks of one seeded stream)."""
    rng = random.Random(seed)
    h = hashlib.sha256()
    left = n
    while left:
        chunk = rng.randbytes(min(left, 1 << 20))
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


class _LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_later(LIFETIME, self.loop.stop)
        self.loop.call_soon(self.ready.set)
        self.loop.run_forever()

    def start(self, coro_factory) -> object:
        self.thread.start()
        self.ready.wait(10)
        return asyncio.run_coroutine_threadsafe(coro_factory(), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class TcpServers:
    """echo (port), sink (reads to EOF, answers sha256 hex), source (sends N seeded bytes: request 'SEED N\\n')."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.lt = _LoopThread()
        self.connections = 0

    async def _echo(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    async def _sink(self, r, w) -> None:
        h = hashlib.sha256()
        n = 0
        while data := await r.read(1 << 20):
            h.update(data)
            n += len(data)
        w.write(f"{n} {h.hexdigest()}\n".encode())
        await w.drain()
        w.close()

    async def _source(self, r, w) -> None:
        seed, n = (int(x) for x in (await r.readline()).split())
        rng = random.Random(seed)
        left = n
        while left:
            chunk = rng.randbytes(min(left, 1 << 20))
            w.write(chunk)
            await w.drain()
            left -= len(chunk)
        w.close()

    def start(self) -> "TcpServers":
        async def go():
            self.echo = await asyncio.start_server(self._echo, self.host, 0, backlog=1024)
            self.sink = await asyncio.start_server(self._sink, self.host, 0)
            self.source = await asyncio.start_server(self._source, self.host, 0)
            return True

        self.lt.start(go)
        port = lambda s: s.sockets[0].getsockname()[1]  # noqa: E731
        self.echo_port, self.sink_port, self.source_port = port(self.echo), port(self.sink), port(self.source)
        return self

    def stop(self) -> None:
        self.lt.stop()


class UdpEcho:
    def __init__(self, host: str = "127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in range(int(LIFETIME / 0.5)):
            if self._stop.is_set():
                break
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            if data.startswith(b"BIG:"):  # amplify: reply with that many bytes
                data = b"y" * int(data[4:])
            self.sock.sendto(data, addr)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


class DnsServer:
    """A static DNS server on 127.0.0.1 (UDP and TCP, same port): the only resolver tests use."""

    def __init__(self, records: dict[str, str]):
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.queries: list[str] = []
        self.lt = _LoopThread()

    def answer(self, data: bytes) -> bytes:
        q = wdns.DnsMessage.parse(data)
        name = q.questions[0].name.lower()
        self.queries.append(name)
        addr = self.records.get(name)
        qtype = q.questions[0].qtype
        if addr is None:
            return wdns.nxdomain(q).emit() if hasattr(wdns.nxdomain(q), "emit") else wdns.nxdomain(q)
        if qtype == 1 and "." in addr:
            resp = wdns.make_response(q, [(name, 1, 60, wdns.a_rdata(addr))])
        elif qtype == 28 and ":" in addr:
            resp = wdns.make_response(q, [(name, 28, 60, wdns.aaaa_rdata(addr))])
        else:
            resp = wdns.make_response(q, [])
        return resp.emit() if hasattr(resp, "emit") else resp

    def start(self) -> "DnsServer":
        server = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.t = transport

            def datagram_received(self, data, addr):
                try:
                    self.t.sendto(server.answer(data), addr)
                except Exception:  # noqa: BLE001 - a test server ignores garbage
                    pass

        async def tcp(r, w):
            try:
                ln = int.from_bytes(await r.readexactly(2), "big")
                resp = server.answer(await r.readexactly(ln))
                w.write(len(resp).to_bytes(2, "big") + resp)
                await w.drain()
            finally:
                w.close()

        async def go():
            self.tcp = await asyncio.start_server(tcp, "127.0.0.1", 0)
            self.port = self.tcp.sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()
            await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", self.port))
            return True

        self.lt.start(go)
        return self

    def stop(self) -> None:
        self.lt.stop()
