"""api.server over a real UNIX socket: every route and status, byte-level abuse, and api.client."""

from __future__ import annotations

import functools
import json
import os
import stat

import pytest
import trio

from api_testlib import INFO, STATS, parse_responses, raw, short_tmpdir, start_server
from rootlessnet.api import server as server_mod
from rootlessnet.api.client import ApiClient, ApiError
from rootlessnet.api.server import serve_api
from rootlessnet.errors import UserError
from rootlessnet.port.spec import PortError, PortSpec


@pytest.fixture
async def srv(nursery):
    s = await start_server(nursery)
    yield s
    s.cleanup()


@pytest.fixture
async def bare(nursery):
    """No port driver, no stats."""
    s = await start_server(nursery, ports=False, stats=False)
    yield s
    s.cleanup()


def req(method: str, path: str, body: bytes | None = None, *, close: bool = True, extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: rootlesskit\r\n{extra}"
    if body is not None:
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + (body or b"")


async def one(path: str, data: bytes, **kw) -> tuple[int, dict[str, str], bytes]:
    responses = parse_responses(await raw(path, data, **kw))
    assert len(responses) == 1, responses
    return responses[0]


async def alive(path: str) -> None:
    """A good request after a bad one still works."""
    status, headers, body = await one(path, req("GET", "/v1/info"))
    assert status == 200 and json.loads(body)["apiVersion"] == "1.1.1"


def message(body: bytes) -> str:
    obj = json.loads(body)
    assert set(obj) == {"message"}
    return obj["message"]


# -- socket lifecycle


async def test_socket_mode_and_removal():
    d = short_tmpdir()
    path = os.path.join(d, "api.sock")
    try:
        async with trio.open_nursery() as nursery:
            started = await nursery.start(functools.partial(serve_api, path, info=lambda: INFO, ports=None, stats=None))
            assert started == path
            st = os.stat(path)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
            await alive(path)
            nursery.cancel_scope.cancel()
        assert not os.path.exists(path)
    finally:
        os.rmdir(d)


async def test_refuses_group_writable_dir():
    d = short_tmpdir()
    try:
        os.chmod(d, 0o770)
        with pytest.raises(UserError, match="group/world-writable"):
            await serve_api(os.path.join(d, "api.sock"), info=lambda: INFO, ports=None, stats=None)
        assert os.listdir(d) == []
    finally:
        os.rmdir(d)


async def test_replaces_stale_socket_but_not_other_files(nursery):
    d = short_tmpdir()
    path = os.path.join(d, "api.sock")
    try:
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(path)  # a crash leftover: bound, nobody listening
        s.close()
        async with trio.open_nursery() as inner:
            await inner.start(functools.partial(serve_api, path, info=lambda: INFO, ports=None, stats=None))
            await alive(path)
            inner.cancel_scope.cancel()
        with open(path, "w") as f:
            f.write("not a socket")
        with pytest.raises(UserError, match="not a socket"):
            await serve_api(path, info=lambda: INFO, ports=None, stats=None)
        assert open(path).read() == "not a socket"
    finally:
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)


# -- routes


async def test_info(srv):
    status, headers, body = await one(srv.path, req("GET", "/v1/info"))
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert json.loads(body) == srv.info


async def test_any_host_query_and_absolute_form(srv):
    for data in (b"GET /v1/info?x=1 HTTP/1.1\r\nHost: whatever.example\r\nConnection: close\r\n\r\n",
                 b"GET http://rootlesskit/v1/info HTTP/1.1\r\nHost: rootlesskit\r\nConnection: close\r\n\r\n",
                 b"GET /v1/info HTTP/1.0\r\nConnection: close\r\n\r\n",  # no Host: fine in HTTP/1.0
                 b"\r\n\r\nGET /v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",  # blank lines first
                 b"GET /v1/info HTTP/1.0\r\n\r\n",  # 1.0: closes by default
                 b"GET /v1/info HTTP/1.1\nHost: x\nConnection: close\n\n"):  # bare LF line ends
        status, _, body = await one(srv.path, data)
        assert status == 200, data
        assert json.loads(body)["childPID"] == 4242


async def test_ports_add_list_remove(srv):
    status, _, body = await one(srv.path, req("GET", "/v1/ports"))
    assert (status, json.loads(body)) == (200, [])

    spec = {"proto": "tcp", "parentIP": "127.0.0.1", "parentPort": 8080, "childIP": "", "childPort": 80}
    status, headers, body = await one(srv.path, req("POST", "/v1/ports", json.dumps(spec).encode()))
    assert status == 201
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"id": 1, "spec": spec}

    # rootlessctl leaves out empty fields (omitempty)
    status, _, body = await one(srv.path, req("POST", "/v1/ports", b'{"proto":"udp","parentPort":5353,"childPort":53}'))
    assert status == 201 and json.loads(body)["id"] == 2

    status, _, body = await one(srv.path, req("GET", "/v1/ports"))
    assert status == 200
    assert [p["id"] for p in json.loads(body)] == [1, 2]
    assert json.loads(body)[0] == {"id": 1, "spec": spec}

    status, headers, body = await one(srv.path, req("DELETE", "/v1/ports/1"))
    assert (status, body, headers["content-length"]) == (200, b"", "0")
    assert "content-type" not in headers
    assert [st.id for st in srv.ports.list()] == [2]

    status, _, body = await one(srv.path, req("DELETE", "/v1/ports/1"))
    assert status == 400 and "unknown id 1" in message(body)


@pytest.mark.parametrize("body, expect", [
    (b"{", "bad JSON"),
    (b"", "bad JSON"),
    (b"\xff\xfe\x00", "bad JSON"),
    (b"[" * 100000, "bad JSON"),  # nesting deeper than the recursion limit
    (b'{"proto":"tcp","parentPort":8080,"childPort":80,"x":' + b"[" * 3000 + b"]" * 3000 + b"}", "nested more than"),
    (b'{"proto":"tcp","parentPort":8080,"childPort":1e999}', "out of range"),  # not an infinity
    (b'{"proto":"tcp","parentPort":NaN,"childPort":80}', "NaN is not JSON"),
    (b'{"proto":"tcp","parentPort":Infinity,"childPort":80}', "Infinity is not JSON"),
    (b'{"proto":"tcp","parentPort":8080,"childPort":80' + b"1" * 5000 + b"}", "bad JSON"),  # > int digit limit
    (b"[1, 2]", "must be a JSON object"),
    (b'{"proto":"tcp","parentPort":8080,"childPort":80,"bogus":1}', "unknown field(s) bogus"),
    (b'{"proto":"tcp","parentPort":0,"childPort":80}', "out of range"),
    (b'{"proto":"tcp","parentPort":8080,"childPort":65536}', "out of range"),
    (b'{"proto":"tcp","parentPort":"8080","childPort":80}', "parentPort must be an integer"),
    (b'{"proto":"sctp","parentPort":8080,"childPort":80}', "'sctp' is not supported"),
    (b'{"proto":"icmp","parentPort":8080,"childPort":80}', "unknown proto"),
    (b'{"proto":"tcp","parentIP":"localhost","parentPort":8080,"childPort":80}', "not an IP address"),
    (b'{"proto":"tcp4","parentIP":"::1","parentPort":8080,"childPort":80}', "does not match proto"),
    (b'{"parentPort":8080,"childPort":80}', "missing proto"),
])
async def test_post_rejects(srv, body, expect):
    status, headers, resp = await one(srv.path, req("POST", "/v1/ports", body))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert expect in message(resp)
    assert srv.ports.list() == []
    await alive(srv.path)


async def test_post_conflicts(srv):
    def post(spec: str) -> bytes:
        proto, _, rest = spec.partition(" ")
        ip, port = rest.rsplit(":", 1)
        return req("POST", "/v1/ports", json.dumps(
            {"proto": proto, "parentIP": ip, "parentPort": int(port), "childPort": 80}).encode())

    assert (await one(srv.path, post("tcp 127.0.0.1:8080")))[0] == 201
    status, _, body = await one(srv.path, post("tcp 0.0.0.0:8080"))
    assert status == 400 and message(body) == "conflict with ID 1"
    assert (await one(srv.path, post("udp 127.0.0.1:8080")))[0] == 201
    assert (await one(srv.path, post("tcp4 127.0.0.2:9090")))[0] == 201
    assert (await one(srv.path, post("tcp6 ::1:9090")))[0] == 201  # tcp4 and tcp6 do not conflict
    status, _, body = await one(srv.path, post("tcp 127.0.0.1:8080"))
    assert status == 400 and message(body) == "conflict with ID 1"
    assert [st.id for st in srv.ports.list()] == [1, 2, 3, 4]


@pytest.mark.parametrize("target", ["/v1/ports/abc", "/v1/ports/", "/v1/ports/1.0", "/v1/ports/+1", "/v1/ports/-5",
                                    "/v1/ports/0x1", "/v1/ports/%31", "/v1/ports/" + "9" * 5000])
async def test_delete_bad_ids(srv, target):
    await one(srv.path, req("POST", "/v1/ports", b'{"proto":"tcp","parentPort":8080,"childPort":80}'))
    status, _, body = await one(srv.path, req("DELETE", target))
    assert status == 400, body
    assert message(body)
    assert [st.id for st in srv.ports.list()] == [1]
    await alive(srv.path)


async def test_driver_refusal_and_crash(srv):
    srv.ports.fail_with = PortError("cannot listen on 127.0.0.1:8080: address in use")
    status, _, body = await one(srv.path, req("POST", "/v1/ports", b'{"proto":"tcp","parentPort":8080,"childPort":80}'))
    assert (status, message(body)) == (400, "cannot listen on 127.0.0.1:8080: address in use")
    srv.ports.fail_with = RuntimeError("driver bug")
    status, _, body = await one(srv.path, req("POST", "/v1/ports", b'{"proto":"tcp","parentPort":8080,"childPort":80}'))
    assert status == 500 and "driver bug" in message(body)
    srv.ports.fail_with = None
    await alive(srv.path)


async def test_no_port_driver_no_stats(bare):
    for data in (req("GET", "/v1/ports"), req("POST", "/v1/ports", b'{"proto":"tcp","parentPort":1,"childPort":1}'),
                 req("DELETE", "/v1/ports/1")):
        status, _, body = await one(bare.path, data)
        assert status == 400 and "no port driver" in message(body)
    status, _, body = await one(bare.path, req("GET", "/v1/stats"))
    assert status == 404 and "stats" in message(body)
    await alive(bare.path)


async def test_stats(srv):
    status, headers, body = await one(srv.path, req("GET", "/v1/stats"))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == STATS


@pytest.mark.parametrize("target", ["/", "/v1", "/v1/", "/v2/info", "/v1/info/", "/v1/ports/1/x", "/v1/portsx"])
async def test_not_found(srv, target):
    status, headers, body = await one(srv.path, req("GET", target))
    assert status == 404 and headers["content-type"] == "application/json"
    assert message(body)


@pytest.mark.parametrize("method, target, allow", [
    ("POST", "/v1/info", "GET"), ("DELETE", "/v1/info", "GET"), ("PUT", "/v1/ports", "GET, POST"),
    ("DELETE", "/v1/ports", "GET, POST"), ("GET", "/v1/ports/1", "DELETE"), ("POST", "/v1/ports/1", "DELETE"),
    ("POST", "/v1/stats", "GET"),
])
async def test_method_not_allowed(srv, method, target, allow):
    status, headers, body = await one(srv.path, req(method, target))
    assert status == 405 and headers["allow"] == allow
    assert message(body)
    assert srv.ports.list() == []


async def test_head_answer_has_no_body(srv):
    data = req("HEAD", "/v1/info", close=False) + req("GET", "/v1/info")
    out = await raw(srv.path, data)
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 405 ") and b"Allow: GET" in first
    [(status, _, body)] = parse_responses(rest)
    assert status == 200 and json.loads(body)["apiVersion"] == "1.1.1"


async def test_random_garbage_fuzz(srv):
    import random

    rng = random.Random(1234)
    good = [req("GET", "/v1/info", close=False), req("DELETE", "/v1/ports/1", close=False),
            req("POST", "/v1/ports", b'{"proto":"tcp","parentPort":8080,"childPort":80}', close=False)]
    for _ in range(300):
        data = bytearray(rng.choice(good) * rng.randint(1, 3))
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(3)
            i = rng.randrange(len(data) + 1)
            if op == 0 and data:
                del data[i:i + rng.randint(1, 8)]
            elif op == 1:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                data[i:i] = rng.choice([b"\r\n", b"\n", b":", b" ", b"\r\n\r\n", b"Content-Length: 9999999\r\n"])
        out = await raw(srv.path, bytes(data), shutdown=True)
        assert out == b"" or out.startswith(b"HTTP/1.1 ")
    await alive(srv.path)


# -- HTTP abuse: each answered (or dropped) and the server survives


@pytest.mark.parametrize("data, status", [
    (b"garbage\r\n\r\n", 400),
    (b"GET\r\n\r\n", 400),
    (b"GET /v1/info\r\n\r\n", 400),  # HTTP/0.9
    (b"GET  /v1/info HTTP/1.1\r\n\r\n", 400),
    (b"GET /v1/info HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET v1/info HTTP/1.1\r\n\r\n", 400),
    (b"G(T /v1/info HTTP/1.1\r\n\r\n", 400),
    (b"GET /v1/info HTTP/1.x\r\n\r\n", 400),
    (b"GET /v1/\xff HTTP/1.1\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    (b"GET /v1/info HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /v1/info HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    (b"GET /v1/info HTTP/1.1\r\nConnection: close\r\n\r\n", 400),  # HTTP/1.1 without Host (RFC 9112 3.2)
    (b"POST /v1/ports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 411),
    (b"GET /v1/info HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET /v1/info HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"POST /v1/ports HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /v1/ports HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /v1/ports HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    (b"POST /v1/ports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411),
    (b"POST /v1/ports HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n", 413),
    (b"POST /v1/ports HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    (b"GET /v1/info HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET /v1/info HTTP/1.1\r\nX: " + b"a" * 20000, 431),  # never ends
])
async def test_malformed_requests(srv, data, status):
    responses = parse_responses(await raw(srv.path, data))
    assert [r[0] for r in responses] == [status]
    assert responses[0][1]["connection"] == "close"
    assert message(responses[0][2])
    await alive(srv.path)


async def test_body_too_large_while_client_keeps_sending(srv):
    body = b"x" * (2 * 1024 * 1024)
    head = f"POST /v1/ports HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with trio.fail_after(10):
        stream = await trio.open_unix_socket(srv.path)
        async with stream:
            await stream.send_all(head)
            try:
                await stream.send_all(body)
            except trio.BrokenResourceError:
                pass  # allowed: the server stopped reading after answering
            data = b""
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                data += chunk
    assert parse_responses(data)[0][0] == 413
    assert srv.ports.list() == []
    await alive(srv.path)


async def test_body_at_limit_is_read(srv):
    body = b" " * (1024 * 1024 - 50) + b'{"proto":"tcp","parentPort":8080,"childPort":80}'
    body = body[-1024 * 1024:]
    status, _, resp = await one(srv.path, req("POST", "/v1/ports", body), timeout=10)
    assert status == 201 and json.loads(resp)["id"] == 1


@pytest.mark.parametrize("data", [
    b"",
    b"GET /v1/in",
    b"GET /v1/info HTTP/1.1\r\nHost: x\r\n",
    b"POST /v1/ports HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"proto\"",
])
async def test_client_disconnects_mid_request(srv, data):
    for shutdown in (False, True):
        stream = await trio.open_unix_socket(srv.path)
        await stream.send_all(data)
        if shutdown:  # half-close: the server sees EOF and gives up without answering
            await stream.send_eof()
            with trio.fail_after(5):
                assert await stream.receive_some(100) == b""
        await stream.aclose()
    await alive(srv.path)
    assert srv.ports.list() == []


async def test_client_disconnects_before_reading_answer(srv):
    for _ in range(20):
        stream = await trio.open_unix_socket(srv.path)
        await stream.send_all(req("GET", "/v1/info", close=False) * 50)
        await stream.aclose()
    await alive(srv.path)


async def test_keep_alive_two_requests_one_connection(srv):
    with trio.fail_after(5):
        stream = await trio.open_unix_socket(srv.path)
        async with stream:
            await stream.send_all(req("POST", "/v1/ports", b'{"proto":"tcp","parentPort":8080,"childPort":80}', close=False))
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"}\n"):
                data += await stream.receive_some(65536)
            [(status, headers, _)] = parse_responses(data)
            assert status == 201 and "connection" not in headers
            await stream.send_all(req("GET", "/v1/ports", close=True))
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    [(status, headers, body)] = parse_responses(data)
    assert status == 200 and headers["connection"] == "close"
    assert [p["id"] for p in json.loads(body)] == [1]


async def test_pipelined_requests(srv):
    data = (req("GET", "/v1/info", close=False) + req("DELETE", "/v1/ports/7", close=False)
            + req("GET", "/nope", close=False) + req("GET", "/v1/stats"))
    responses = parse_responses(await raw(srv.path, data))
    assert [r[0] for r in responses] == [200, 400, 404, 200]


async def test_pipelined_request_after_error_is_not_served(srv):
    data = b"BAD\r\n\r\n" + req("POST", "/v1/ports", b'{"proto":"tcp","parentPort":8080,"childPort":80}')
    responses = parse_responses(await raw(srv.path, data))
    assert [r[0] for r in responses] == [400]
    assert srv.ports.list() == []


async def test_http10_is_answered_and_closed(srv):
    # h11 serves HTTP/1.0 without keep-alive (its documented choice); clients of this API speak 1.1
    data = await raw(srv.path, b"GET /v1/info HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    [(status, headers, _)] = parse_responses(data)
    assert status == 200 and headers["connection"] == "close"


async def test_obsolete_line_folding_is_unfolded(srv):
    # RFC 9112 5.2 lets a server replace obs-fold with a space instead of refusing it; h11 does
    status, _, body = await one(srv.path, b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n"
                                          b"Connection: close\r\n\r\n")
    assert status == 200 and json.loads(body)["apiVersion"] == "1.1.1"


async def test_expect_100_continue(srv):
    body = b'{"proto":"tcp","parentPort":8080,"childPort":80}'
    with trio.fail_after(5):
        stream = await trio.open_unix_socket(srv.path)
        async with stream:
            await stream.send_all(b"POST /v1/ports HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                  b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
            assert await stream.receive_some(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            await stream.send_all(body)
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    assert parse_responses(data)[0][0] == 201


async def test_timeouts(srv, monkeypatch):
    monkeypatch.setattr(server_mod, "IDLE_TIMEOUT", 0.2)
    monkeypatch.setattr(server_mod, "REQUEST_TIMEOUT", 0.3)
    with trio.fail_after(5):
        # idle: closed without an answer
        stream = await trio.open_unix_socket(srv.path)
        assert await stream.receive_some(100) == b""
        await stream.aclose()
        # a request that never completes: 408
        stream = await trio.open_unix_socket(srv.path)
        await stream.send_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
        await stream.aclose()
    assert parse_responses(data)[0][0] == 408
    await alive(srv.path)


async def test_many_concurrent_connections(srv):
    results = []

    async def get(i):
        status, _, body = await one(srv.path, req("GET", "/v1/info"))
        results.append(status)

    idle = [await trio.open_unix_socket(srv.path) for _ in range(50)]  # idle clients do not block others
    async with trio.open_nursery() as n:
        for i in range(100):
            n.start_soon(get, i)
    assert results == [200] * 100
    for s in idle:
        await s.aclose()


# -- the synchronous client


async def test_client_round_trip(srv):
    c = ApiClient(srv.path)
    run = trio.to_thread.run_sync
    assert await run(c.info) == srv.info
    assert await run(c.list_ports) == []
    st = await run(c.add_port, PortSpec("tcp", "127.0.0.1", 8080, "", 80))
    assert st == {"id": 1, "spec": {"proto": "tcp", "parentIP": "127.0.0.1", "parentPort": 8080, "childIP": "", "childPort": 80}}
    st = await run(c.add_port, {"proto": "udp", "parentPort": 5353, "childPort": 53})
    assert st["id"] == 2 and st["spec"]["parentIP"] == ""
    assert [p["id"] for p in await run(c.list_ports)] == [1, 2]
    assert await run(c.remove_port, 1) is None
    assert await run(c.stats) == STATS

    with pytest.raises(ApiError) as e:
        await run(c.remove_port, 1)
    assert e.value.status == 400 and e.value.message == "unknown id 1"
    assert isinstance(e.value, UserError)
    with pytest.raises(ApiError, match="conflict with ID 2"):
        await run(c.add_port, {"proto": "udp", "parentIP": "127.0.0.1", "parentPort": 5353, "childPort": 53})
    with pytest.raises(ApiError, match="unknown field"):
        await run(c.add_port, {"proto": "udp", "parentPort": 5353, "childPort": 53, "x": 1})
    with pytest.raises(ApiError) as e:
        await run(c.add_port, {"proto": "tcp", "parentPort": 1, "childPort": 2, "pad": "x" * (2 << 20)})
    assert e.value.status == 413


async def test_client_without_driver_or_stats(bare):
    c = ApiClient(bare.path)
    with pytest.raises(ApiError) as e:
        await trio.to_thread.run_sync(c.list_ports)
    assert e.value.status == 400 and "no port driver" in e.value.message
    with pytest.raises(ApiError) as e:
        await trio.to_thread.run_sync(c.stats)
    assert e.value.status == 404


async def test_client_missing_or_dead_socket(tmp_path):
    with pytest.raises(UserError, match="no API socket at .*is the instance running"):
        ApiClient(str(tmp_path / "api.sock")).info()
    import socket

    path = short_tmpdir() + "/api.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)  # exists, nobody listening: ECONNREFUSED
    s.close()
    try:
        with pytest.raises(UserError, match="no API socket at"):
            ApiClient(path).list_ports()
    finally:
        os.unlink(path)
        os.rmdir(os.path.dirname(path))


async def test_socket_path_longer_than_sun_path(tmp_path):
    """A state directory deep in a tree: the socket is bound and reached through its directory's fd."""
    d = tmp_path / ("x" * 60) / ("y" * 60)
    d.mkdir(parents=True)
    d.chmod(0o700)
    path = str(d / "api.sock")
    assert len(path) > 107
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve_api, path, info=lambda: INFO, ports=None, stats=None))
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert await trio.to_thread.run_sync(ApiClient(path).info) == INFO
        nursery.cancel_scope.cancel()
    assert not os.path.exists(path)
