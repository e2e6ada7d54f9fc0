"""Multi-host networks (--hosts): switching, names, impairments and partitions in the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rootlessnet.api.client import ApiClient, ApiError
from tests.integration.conftest import requires_userns, rn, rn_popen, wait_for

pytestmark = [pytest.mark.integration, requires_userns]
PY = sys.executable


@pytest.fixture
def net(state_dir):
    p = rn_popen("run", "-q", "--state-dir", str(state_dir), "--hosts", "a,b,c", "--ipv6", "--allow-host-loopback",
                 "--", "sleep", "120")
    wait_for(lambda: (state_dir / "child_pid").exists() or p.poll() is not None, what="child_pid")
    assert p.poll() is None, p.stderr.read()
    yield state_dir
    p.terminate()
    p.communicate(timeout=30)


def on(state, host, *argv, **kw):
    return rn("nsenter", "--state-dir", str(state), "--netns", host, "--hostname", host, "--", *argv, **kw)


def rtt_ms(state, src, dst) -> float:
    r = on(state, src, "busybox", "ping", "-c", "3", "-W", "3", dst)
    assert r.returncode == 0, r.stdout + r.stderr
    return float(r.stdout.strip().splitlines()[-1].split("=")[1].split("/")[1])  # avg


def test_hosts_have_names_addresses_and_reach_each_other_and_the_host(net):
    hosts = ApiClient(str(net / "api.sock")).request("GET", "/v1/hosts")
    assert [(h["name"], h["ipv4"], h["ipv6"]) for h in hosts] == [
        ("a", "10.0.2.101", "fd00::101"), ("b", "10.0.2.102", "fd00::102"), ("c", "10.0.2.103", "fd00::103")]
    r = on(net, "a", "sh", "-c", "hostname; ip -o -4 addr show tap0")
    assert r.stdout.split()[0] == "a" and "10.0.2.101/24" in r.stdout
    server = "import socket; s=socket.socket(); s.bind(('0.0.0.0',9000)); s.listen(); c,a=s.accept(); c.sendall(a[0].encode())"
    srv = subprocess.Popen(["python3", "-m", "rootlessnet", "nsenter", "--state-dir", str(net), "--netns", "b", "--", PY, "-c", server],
                           env={**os.environ}, stdout=subprocess.PIPE, text=True)
    try:
        client = ("import socket,time\nfor i in range(50):\n    try: s=socket.create_connection(('b',9000),timeout=5); break\n"
                  "    except OSError: time.sleep(0.1)\nprint(s.recv(100).decode())")
        r = on(net, "a", PY, "-c", client)
        assert r.stdout.strip() == "10.0.2.101", r.stderr  # b sees a's own address: switched, not NATed
    finally:
        srv.wait(timeout=20)
    assert rtt_ms(net, "a", "10.0.2.102") < 50
    assert rtt_ms(net, "c", "10.0.2.2") < 50  # the gateway, from a host


def test_link_delay_partition_and_heal(net):
    api = ApiClient(str(net / "api.sock"))
    base = rtt_ms(net, "a", "10.0.2.102")
    got = api.request("PUT", "/v1/links/a", {"delay": 0.1, "seed": 3})
    assert got["delay"] == 0.1
    slow = rtt_ms(net, "a", "10.0.2.102")
    assert 180 < slow - base < 400  # 100 ms each way on a's link
    assert rtt_ms(net, "b", "10.0.2.103") < 50  # other links untouched
    api.request("PUT", "/v1/links/a", {})
    api.request("PUT", "/v1/partition", {"groups": [["a"], ["b", "c"]]})
    r = on(net, "a", "busybox", "ping", "-c", "1", "-W", "1", "10.0.2.102")
    assert r.returncode != 0
    assert rtt_ms(net, "b", "10.0.2.103") < 50
    assert rtt_ms(net, "a", "10.0.2.2") < 50  # "host" is in no group: a still reaches it
    api.request("DELETE", "/v1/partition")
    assert rtt_ms(net, "a", "10.0.2.102") < 50


def test_partition_from_the_outside(net):
    """"host" in a group cuts the hosts of other groups off the outside (NAT, host loopback), both ways."""
    api = ApiClient(str(net / "api.sock"))
    assert rtt_ms(net, "a", "10.0.2.2") < 50
    api.request("PUT", "/v1/partition", {"groups": [["a"], ["b", "host"]]})
    r = on(net, "a", "busybox", "ping", "-c", "2", "-W", "1", "10.0.2.2")
    assert r.returncode != 0, r.stdout
    assert rtt_ms(net, "b", "10.0.2.2") < 50
    stats = api.request("GET", "/v1/stats")["engine"]["hosts"]["a"]
    assert stats["drop_partitioned"] >= 2
    api.request("DELETE", "/v1/partition")
    assert rtt_ms(net, "a", "10.0.2.2") < 50


def test_bad_link_and_partition_requests_are_400(net):
    api = ApiClient(str(net / "api.sock"))
    for path, body, word in (("/v1/links/a", {"loss": 3}, "probability"), ("/v1/links/a", {"latency": 1}, "unknown field"),
                             ("/v1/partition", {"groups": [["zz"]]}, "unknown host"),
                             ("/v1/partition", {"groups": [["a"], ["a"]]}, "two groups")):
        with pytest.raises(ApiError) as e:
            api.request("PUT", path, body)
        assert e.value.status == 400 and word in str(e.value)
    with pytest.raises(ApiError) as e:
        api.request("PUT", "/v1/links/nosuch", {})
    assert e.value.status == 404


def test_host_flag_errors_are_one_line():
    for hosts, word in (("A,b", "bad host name"), ("a,a", "twice"), ("main", "bad host name")):
        r = rn("run", "--hosts", hosts, "--", "true")
        assert r.returncode != 0 and word in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
