"""The slirp4netns API socket protocol and command line, against a fake port driver.

Expected bytes are slirp4netns 1.2.0's, measured against /usr/bin/slirp4netns
(Debian) with the same requests.
"""

from __future__ import annotations

import json
import os
import socket

import pytest
import trio

from rootlessnet.compat import slirp4netns as s4
from rootlessnet.compat import slirp4netns_api as api
from rootlessnet.errors import UserError
from rootlessnet.port.spec import PortError, PortStatus, conflicts


class FakeDriver:
    name = "slirp4netns"
    protos = ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6")
    disallow_loopback_child_ip = True

    def __init__(self, fail: str | None = None):
        self.ports: dict[int, PortStatus] = {}
        self.next_id = 1
        self.fail = fail
        self.removed: list[int] = []

    async def add(self, spec):
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise PortError(self.fail)
        for st in self.ports.values():
            if conflicts(st.spec, spec):
                raise PortError(f"conflict with ID {st.id}")
        st = PortStatus(self.next_id, spec)
        self.next_id += 1
        self.ports[st.id] = st
        return st

    async def remove(self, port_id):
        await trio.lowlevel.checkpoint()
        if port_id not in self.ports:
            raise PortError(f"unknown id {port_id}")
        del self.ports[port_id]
        self.removed.append(port_id)

    def list(self):
        return list(self.ports.values())


def req(execute: str, **arguments) -> bytes:
    obj: dict = {"execute": execute}
    if arguments:
        obj["arguments"] = arguments
    return json.dumps(obj).encode()


def add(**kw) -> bytes:
    return req("add_hostfwd", **kw)


def err(desc: str) -> bytes:
    return b'{"error":{"desc":"bad request: ' + desc.encode() + b'"}}'


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver()


@pytest.fixture
def handler(driver) -> api.ApiHandler:
    return api.ApiHandler(driver, "10.0.2.100")


# -- requests that never reach the driver ---------------------------------------------------------

@pytest.mark.parametrize("data, desc", [
    (b"", "cannot parse JSON"),
    (b"x", "cannot parse JSON"),
    (b"\xff\xfe", "cannot parse JSON"),
    (b'{"execute":"list_hostfwd","execute":"nope"}', "cannot parse JSON"),
    (b"[1]", "json_object() failed"),
    (b'"str"', "json_object() failed"),
    (b"{}", "no execute found"),
    (b'{"execute": 1}', "no execute found"),
    (b'{"Execute":"list_hostfwd"}', "no execute found"),
    (b'{"execute": "nope"}', "unknown execute"),
    (b'{"execute":"list_hostfwd"}' + b" " * (4096 - 26), "too large message"),
])
async def test_bad_requests(handler, data, desc):
    assert await handler.handle(data) == err(desc)


async def test_request_just_under_the_limit_is_served(handler):
    data = b'{"execute":"list_hostfwd"}' + b" " * (4095 - 26)
    assert len(data) == 4095
    assert await handler.handle(data) == b'{"entries":[]}'


@pytest.mark.parametrize("data", [b'{"execute":"list_hostfwd"}\n', b' {"execute":"list_hostfwd"} trailing'])
async def test_whitespace_and_trailing_bytes_are_ignored_as_parson_does(handler, data):
    assert await handler.handle(data) == b'{"entries":[]}'


# -- add_hostfwd -------------------------------------------------------------------------------------

async def test_add_list_remove_exact_bytes(handler, driver):
    assert await handler.handle(add(proto="tcp", host_port=18080, guest_port=80)) == b'{"return":{"id":1}}'
    assert await handler.handle(add(proto="udp", host_addr="127.0.0.1", host_port=18080,
                                    guest_addr="10.0.2.100", guest_port=53)) == b'{"return":{"id":2}}'
    assert await handler.handle(req("list_hostfwd")) == (
        b'{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":18080,"guest_addr":"10.0.2.100",'
        b'"guest_port":80},{"id":2,"proto":"udp","host_addr":"127.0.0.1","host_port":18080,'
        b'"guest_addr":"10.0.2.100","guest_port":53}]}')
    assert await handler.handle(req("remove_hostfwd", id=1)) == b'{"return":{}}'
    assert await handler.handle(req("remove_hostfwd", id=1)) == err("remove_hostfwd: bad arguments.id")
    assert driver.removed == [1]
    assert await handler.handle(req("list_hostfwd", x=1)) == (
        b'{"entries":[{"id":2,"proto":"udp","host_addr":"127.0.0.1","host_port":18080,'
        b'"guest_addr":"10.0.2.100","guest_port":53}]}')


async def test_add_maps_to_port_spec(handler, driver):
    await handler.handle(add(proto="tcp", host_addr="127.0.0.1", host_port=8080, guest_addr="10.0.2.5", guest_port=80))
    (st,) = driver.list()
    sp = st.spec
    assert (sp.proto, sp.parent_ip, sp.parent_port, sp.child_ip, sp.child_port) == (
        "tcp4", "127.0.0.1", 8080, "10.0.2.5", 80)


@pytest.mark.parametrize("extra", [{}, {"host_addr": "", "guest_addr": ""}, {"host_addr": None}, {"host_addr": 5}])
async def test_add_defaults_as_slirp4netns(handler, driver, extra):
    assert await handler.handle(add(proto="tcp", host_port=18082, guest_port=80, **extra)) == b'{"return":{"id":1}}'
    sp = driver.list()[0].spec
    assert (sp.parent_ip, sp.child_ip) == ("0.0.0.0", "10.0.2.100")


async def test_add_guest_default_follows_cidr(driver):
    h = api.ApiHandler(driver, "10.9.0.100")
    await h.handle(add(proto="tcp", host_port=18082, guest_port=80))
    assert driver.list()[0].spec.child_ip == "10.9.0.100"


async def test_fractional_ports_truncate_as_slirp4netns(handler, driver):
    assert await handler.handle(add(proto="tcp", host_port=18084.9, guest_port=80)) == b'{"return":{"id":1}}'
    assert driver.list()[0].spec.parent_port == 18084
    assert await handler.handle(req("remove_hostfwd", id=1.5)) == b'{"return":{}}'


@pytest.mark.parametrize("args, field", [
    ({"proto": "sctp", "host_port": 1, "guest_port": 1}, "proto"),
    ({"proto": "TCP", "host_port": 1, "guest_port": 1}, "proto"),
    ({"host_port": 1, "guest_port": 1}, "proto"),  # slirp4netns 1.2.0 crashes on this one
    ({"proto": 6, "host_port": 1, "guest_port": 1}, "proto"),
    ({"proto": "tcp", "host_addr": "localhost", "host_port": 1, "guest_port": 1}, "host_addr"),
    ({"proto": "tcp", "host_addr": "1.2.3", "host_port": 1, "guest_port": 1}, "host_addr"),
    ({"proto": "tcp", "host_port": "18083", "guest_port": 80}, "host_port"),
    ({"proto": "tcp", "host_port": True, "guest_port": 80}, "host_port"),
    ({"proto": "tcp", "host_port": 0, "guest_port": 0}, "host_port"),
    ({"proto": "tcp", "guest_port": 80}, "host_port"),
    ({"proto": "tcp", "host_port": -5, "guest_port": 80}, "host_port"),  # slirp4netns accepts it
    ({"proto": "tcp", "host_port": 70000, "guest_port": 80}, "host_port"),  # slirp4netns accepts it
    ({"proto": "tcp", "host_port": 1e300, "guest_port": 80}, "host_port"),
    ({"proto": "tcp", "host_port": 18086, "guest_addr": "nope", "guest_port": 80}, "guest_addr"),
    ({"proto": "tcp", "host_port": 18085}, "guest_port"),
    ({"proto": "tcp", "host_port": 18094, "guest_port": 0}, "guest_port"),
    ({"proto": "tcp", "host_port": 18094, "guest_port": 65536}, "guest_port"),
])
async def test_add_bad_arguments(handler, driver, args, field):
    assert await handler.handle(add(**args)) == err(f"add_hostfwd: bad arguments.{field}")
    assert driver.list() == []


async def test_add_without_arguments_object(handler):
    assert await handler.handle(b'{"execute":"add_hostfwd"}') == err("add_hostfwd: bad arguments.proto")
    assert await handler.handle(b'{"execute":"add_hostfwd","arguments":[1]}') == err("add_hostfwd: bad arguments.proto")


async def test_add_conflict_is_slirp_add_hostfwd_failed_with_detail(handler):
    assert await handler.handle(add(proto="tcp", host_port=18080, guest_port=80)) == b'{"return":{"id":1}}'
    out = json.loads(await handler.handle(add(proto="tcp", host_port=18080, guest_port=80)))
    assert out == {"error": {"desc": "bad request: add_hostfwd: slirp_add_hostfwd failed", "detail": "conflict with ID 1"}}
    # another address on the same port is no conflict (slirp4netns: 127.0.0.1 after 0.0.0.0 was removed)
    assert await handler.handle(add(proto="udp", host_port=18080, guest_port=80)) == b'{"return":{"id":2}}'


async def test_driver_failure_keeps_the_reason():
    h = api.ApiHandler(FakeDriver(fail="bind 127.0.0.1:80: Permission denied"))
    out = json.loads(await h.handle(add(proto="tcp", host_addr="127.0.0.1", host_port=80, guest_port=80)))
    assert out["error"] == {"desc": "bad request: add_hostfwd: slirp_add_hostfwd failed",
                            "detail": "bind 127.0.0.1:80: Permission denied"}


async def test_ipv6_extension(handler, driver):
    assert await handler.handle(add(proto="tcp", host_addr="::1", host_port=18081, guest_addr="fd00::100",
                                    guest_port=80)) == b'{"return":{"id":1}}'
    sp = driver.list()[0].spec
    assert (sp.proto, sp.parent_ip, sp.child_ip) == ("tcp6", "::1", "fd00::100")
    listed = json.loads(await handler.handle(req("list_hostfwd")))
    assert listed["entries"][0]["proto"] == "tcp" and listed["entries"][0]["host_addr"] == "::1"


async def test_plain_proto_when_the_driver_has_no_families(handler):
    d = FakeDriver()
    d.protos = ("tcp", "udp")
    await api.ApiHandler(d).handle(add(proto="udp", host_port=5353, guest_port=53))
    assert d.list()[0].spec.proto == "udp"


@pytest.mark.parametrize("args", [{}, {"id": "2"}, {"id": None}, {"id": 99}])
async def test_remove_bad_id(handler, args):
    await handler.handle(add(proto="tcp", host_port=18080, guest_port=80))
    assert await handler.handle(req("remove_hostfwd", **args)) == err("remove_hostfwd: bad arguments.id")


async def test_remove_failure():
    d = FakeDriver()
    h = api.ApiHandler(d)
    await h.handle(add(proto="tcp", host_port=18080, guest_port=80))

    async def boom(port_id):
        raise PortError("close failed")

    d.remove = boom
    out = json.loads(await h.handle(req("remove_hostfwd", id=1)))
    assert out["error"] == {"desc": "bad request: remove_hostfwd: slirp_remove_hostfwd failed", "detail": "close failed"}


# -- the socket shell -----------------------------------------------------------------------------

async def _call(path: str, data: bytes, shutdown: bool = True) -> bytes:
    s = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    with s:
        await s.connect(path)
        view = memoryview(data)
        while view:
            view = view[await s.send(view):]
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := await s.recv(65536):
            out += chunk
        return out


async def test_socket_round_trip(tmp_path, driver):
    path = str(tmp_path / "api.sock")
    open(path, "w").close()
    os.unlink(path)
    sock = api.bind_socket(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(api.serve, api.ApiHandler(driver), sock)
        with trio.fail_after(10):
            assert await _call(path, add(proto="tcp", host_port=18080, guest_port=80)) == b'{"return":{"id":1}}'
            # a client that does not shut down its write side is answered once its JSON is complete
            assert await _call(path, req("list_hostfwd"), shutdown=False) == (
                b'{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":18080,'
                b'"guest_addr":"10.0.2.100","guest_port":80}]}')
            # a partial request followed by EOF is a parse error, not a hang
            assert await _call(path, b'{"execute":') == err("cannot parse JSON")
            # too large: the answer arrives intact (no reset) even though the client sent more
            assert await _call(path, b" " * 5000) == err("too large message")
            # concurrent clients get distinct ids
            results = []

            async def one(port):
                results.append(await _call(path, add(proto="tcp", host_port=port, guest_port=80)))

            async with trio.open_nursery() as inner:
                for port in range(18100, 18110):
                    inner.start_soon(one, port)
            ids = sorted(json.loads(r)["return"]["id"] for r in results)
            assert ids == list(range(2, 12))
        nursery.cancel_scope.cancel()


def test_bind_replaces_a_stale_socket_but_not_a_file(tmp_path):
    path = str(tmp_path / "api.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    api.bind_socket(path).close()
    other = tmp_path / "file"
    other.write_text("keep")
    with pytest.raises(OSError):
        api.bind_socket(str(other))
    assert other.read_text() == "keep"


# -- command line -----------------------------------------------------------------------------------

def test_help_lists_what_we_support_and_nothing_else():
    text = s4.parse_args(["--help"])
    for flag in ("--configure", "--exit-fd", "--ready-fd", "--mtu", "--enable-ipv6", "--api-socket", "--cidr",
                 "--disable-host-loopback", "--netns-type", "--userns-path", "--disable-dns", "--macaddress",
                 "--enable-sandbox", "--enable-seccomp", "--outbound-addr", "--outbound-addr6"):
        assert flag in text  # podman and rootlesskit enable features by grepping --help
    for flag in ("--create-sandbox",):
        assert flag not in text
    assert s4.parse_args(["-h"]) == text


def test_version():
    text = s4.parse_args(["--version"])
    assert text.startswith("slirp4netns version 1.2.0")
    assert s4.parse_args(["-v"]) == text


def test_main_help_exits_zero(capsys):
    assert s4.main(["--help"]) == 0
    assert "--netns-type" in capsys.readouterr().out


def test_defaults_are_slirp4netns_ones():
    o = s4.parse_args(["1234"])
    assert (o.target, o.tapname, o.mtu, o.host_loopback, o.dns, o.netns_type, o.configure) == (
        "1234", "tap0", 1500, True, True, "pid", False)
    assert o.ns_paths() == ("/proc/1234/ns/user", "/proc/1234/ns/net")
    cfg = o.net_config()
    assert cfg.allow_host_loopback and cfg.mtu == 1500


def test_rootlesskit_command_line():
    r, w = os.pipe()
    try:
        o = s4.parse_args(["--mtu", "65520", "-r", str(w), "--disable-host-loopback", "--api-socket", "/x/.s4nn.sock",
                           "4321", "tap0"])
        assert (o.mtu, o.ready_fd, o.host_loopback, o.api_socket, o.target) == (65520, w, False, "/x/.s4nn.sock", "4321")
        o = s4.parse_args(["--mtu", "65520", "-r", str(w), "--userns-path=/proc/7/ns/user", "--netns-type=path",
                           "/run/netns/x", "tap0"])
        assert o.ns_paths() == ("/proc/7/ns/user", "/run/netns/x")
    finally:
        os.close(r)
        os.close(w)


def test_short_and_long_forms():
    o = s4.parse_args(["-c6", "-m1400", "--cidr=10.8.0.0/24", "--disable-dns", "--macaddress=02:11:22:33:44:55",
                       "9", "tapx"])
    assert (o.configure, o.ipv6, o.mtu, o.cidr, o.dns, o.macaddress, o.tapname) == (
        True, True, 1400, "10.8.0.0/24", False, "02:11:22:33:44:55", "tapx")
    assert s4.parse_args(["--netns-type", "path", "/run/netns/a"]).ns_paths() == (None, "/run/netns/a")


@pytest.mark.parametrize("argv, words", [
    (["--outbound-addr=192.0.2.1", "1"], "cannot bind to 192.0.2.1"),  # TEST-NET-1: no host has it
    (["--outbound-addr=::1", "1"], "not an IPv4 address"),
    (["--outbound-addr=no-such-if0", "1"], "neither an IPv4 address nor an interface with one"),
    (["-6", "--outbound-addr6=127.0.0.1", "1"], "not an IPv6 address"),
    (["--outbound-addr6", "::1", "1"], "--outbound-addr6 needs --enable-ipv6"),
    (["--dns-upstream=[::1", "1"], "missing ']'"),
    (["--dns-upstream=", "1"], "--dns-upstream is empty"),
    (["--outbound=10.0.0.0/33", "1"], "--outbound: '10.0.0.0/33' is not a CIDR"),
    (["1", "a b"], "TAPNAME 'a b'"),
    (["1", "lo"], "TAPNAME 'lo'"),
    (["--create-sandbox", "1"], "--create-sandbox is not supported"),
    (["--target-type=bess", "1"], "--target-type=bess is not supported"),
    (["--bogus", "1"], "unrecognized arguments: --bogus"),
    ([], "missing PID|PATH"),
    (["abc"], "'abc' is not a PID"),
    (["0"], "is not a PID"),
    (["--netns-type=foo", "1"], "--netns-type=foo: use pid or path"),
    (["--mtu", "100", "1"], "--mtu 100 is out of range"),
    (["--mtu", "65521", "1"], "--mtu 65521 is out of range"),
    (["--mtu", "big", "1"], "invalid int value"),
    (["--cidr", "nope", "1"], "--cidr 'nope'"),
    (["--macaddress", "02:11:22:33:44:55", "1"], "--macaddress needs -c/--configure"),
    (["-c", "--macaddress", "01:11:22:33:44:55", "1"], "use a unicast MAC"),
    (["-c", "--macaddress", "zz", "1"], "use a unicast MAC"),
    (["-r", "987", "1"], "--ready-fd=987: not an open file descriptor"),
    (["-e", "x", "1"], "not a file descriptor number"),
    (["1", "a-very-long-tap-name"], "use 1-15 letters"),
])
def test_errors_are_one_line(argv, words, capsys):
    with pytest.raises(UserError) as e:
        s4.parse_args(argv)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert s4.main(argv) == 1
    errs = capsys.readouterr().err
    assert errs.count("\n") == 1 and errs.startswith("rootlessnet slirp4netns: ") and words in errs


def test_help_flag_name_is_not_caught_as_unsupported_after_double_dash():
    # "--" ends the options: what follows is positional (a path may look like anything)
    o = s4.parse_args(["--netns-type=path", "--", "/run/netns/--enable-sandbox"])
    assert o.target == "/run/netns/--enable-sandbox"


def test_outbound_addresses():
    o = s4.parse_args(["--outbound-addr=127.0.0.2", "1"])
    assert o.outbound_addr == "127.0.0.2" and o.net_config().outbound_addr == "127.0.0.2"
    assert s4.parse_args(["--outbound-addr=lo", "1"]).outbound_addr == "127.0.0.1"  # an interface: its address
    o = s4.parse_args(["-6", "--outbound-addr6=lo", "--outbound-addr6", "::1", "1"])
    assert o.outbound_addr6 == "::1" and o.net_config().outbound_addr6 == "::1"


def test_dns_upstream_and_outbound_extensions():
    cfg = s4.parse_args(["--dns-upstream=127.0.0.1:5353", "--outbound=127.0.0.0/8", "1"]).net_config()
    assert cfg.dns_upstream == ("127.0.0.1", 5353)
    assert [str(n) for n in cfg.outbound] == ["127.0.0.0/8"]
    assert s4.parse_args(["--disable-dns", "--dns-upstream=127.0.0.1", "1"]).net_config().dns_upstream is None


@pytest.mark.parametrize("data", [
    b"[" * 3000,  # once a RecursionError that ended the engine
    b'{"execute": "add_hostfwd", "arguments": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    b"{" * 4095,
    b'{"execute": "list_hostfwd", "x": ' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}",
])
async def test_deep_json_is_a_parse_error(handler, driver, data):
    assert api.is_complete(data) is False
    assert await handler.handle(data) in (err("cannot parse JSON"), err("too large message"))
    assert await handler.handle(req("list_hostfwd")) == b'{"entries":[]}'


async def test_non_finite_numbers(handler, driver):
    for value in (b"1e999", b"-1e999", b"Infinity", b"NaN"):
        data = b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":' + value + b',"guest_port":80}}'
        assert await handler.handle(data) in (err("add_hostfwd: bad arguments.host_port"), err("cannot parse JSON"))
    assert driver.ports == {}
