"""Policy: where a guest's outbound flow goes on the host, or why not (stack.policy)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rootlessnet.stack import policy as pol
from rootlessnet.stack.config import ConfigError, NetConfig, parse_outbound
from rootlessnet.stack.policy import Policy


def a(s: str) -> bytes:
    return ipaddress.ip_address(s).packed


def net(s: str):
    return ipaddress.ip_network(s)


def translate(dst: str, port: int = 80, **cfg):
    return Policy(NetConfig(ipv6=True, **cfg)).translate(a(dst), port)


# ----------------------------------------------------------------- IPv4

def test_gateway_is_host_loopback_only_when_allowed() -> None:
    assert translate("10.0.2.2") == pol.REFUSED_HOST_LOOPBACK
    assert translate("10.0.2.2", 8080, allow_host_loopback=True) == ("127.0.0.1", 8080)


def test_dns_address_reaches_upstream_on_port_53_only() -> None:
    up = ("198.51.100.53", 53)
    assert translate("10.0.2.3", 53, dns_upstream=up) == up
    assert translate("10.0.2.3", 853, dns_upstream=up) == pol.REFUSED_VIRTUAL
    assert translate("10.0.2.3", 53) == pol.REFUSED_VIRTUAL  # no upstream configured


@pytest.mark.parametrize("dst", ["10.0.2.0", "10.0.2.1", "10.0.2.50", "10.0.2.77", "10.0.2.100", "10.0.2.255"])
def test_other_virtual_addresses_never_leave(dst: str) -> None:
    assert translate(dst, allow_host_loopback=True) == pol.REFUSED_VIRTUAL


@pytest.mark.parametrize("dst", ["127.0.0.1", "127.1.2.3", "0.0.0.0", "224.0.0.251", "239.1.1.1", "169.254.169.254"])
def test_loopback_multicast_linklocal_refused(dst: str) -> None:
    assert translate(dst, allow_host_loopback=True) == pol.REFUSED_LOOPBACK_DST


def test_outbound_all_none_and_cidrs() -> None:
    assert translate("192.0.2.1") == ("192.0.2.1", 80)
    assert translate("192.0.2.1", outbound=()) == pol.REFUSED_OUTBOUND
    assert translate("192.0.2.1", outbound=(net("192.0.2.0/24"),)) == ("192.0.2.1", 80)
    assert translate("192.0.3.1", outbound=(net("192.0.2.0/24"),)) == pol.REFUSED_OUTBOUND


def test_outbound_none_keeps_loopback_and_dns_upstream() -> None:
    assert translate("10.0.2.2", 22, outbound=(), allow_host_loopback=True) == ("127.0.0.1", 22)
    assert translate("10.0.2.3", 53, outbound=(), dns_upstream=("192.0.2.53", 53)) == ("192.0.2.53", 53)


def test_other_cidr() -> None:
    p = Policy(NetConfig(cidr=ipaddress.IPv4Network("192.168.77.0/24"), allow_host_loopback=True))
    assert p.translate(a("192.168.77.2"), 80) == ("127.0.0.1", 80)
    assert p.translate(a("10.0.2.2"), 80) == ("10.0.2.2", 80)  # just another outside address now
    assert p.is_virtual(a("192.168.77.3")) and not p.is_virtual(a("192.168.77.100"))


# ----------------------------------------------------------------- IPv6

def test_v6_gateway_and_dns() -> None:
    assert translate("fd00::2") == pol.REFUSED_HOST_LOOPBACK
    assert translate("fd00::2", 443, allow_host_loopback=True) == ("::1", 443)
    assert translate("fd00::3", 53, dns_upstream=("2001:db8::53", 53)) == ("2001:db8::53", 53)
    assert translate("fd00::3", 80, dns_upstream=("2001:db8::53", 53)) == pol.REFUSED_VIRTUAL


@pytest.mark.parametrize("dst", ["fd00::1", "fd00::77", "fd00::100", "fd00::ffff:ffff:ffff:ffff"])
def test_v6_prefix_is_virtual(dst: str) -> None:
    assert translate(dst, allow_host_loopback=True) == pol.REFUSED_VIRTUAL


@pytest.mark.parametrize("dst", ["::1", "::", "fe80::1", "fe80::2", "ff02::1", "ff05::fb"])
def test_v6_loopback_linklocal_multicast_refused(dst: str) -> None:
    assert translate(dst, allow_host_loopback=True) == pol.REFUSED_LOOPBACK_DST


def test_v6_outbound() -> None:
    assert translate("2001:db8::1") == ("2001:db8::1", 80)
    assert translate("2001:db8::1", outbound=()) == pol.REFUSED_OUTBOUND
    assert translate("2001:db8::1", outbound=(net("2001:db8::/32"),)) == ("2001:db8::1", 80)
    # an IPv4-only list allows no IPv6 destination, and the other way round
    assert translate("2001:db8::1", outbound=(net("0.0.0.0/0"),)) == pol.REFUSED_OUTBOUND
    assert translate("192.0.2.1", outbound=(net("::/0"),)) == pol.REFUSED_OUTBOUND


@pytest.mark.parametrize("dst", ["::ffff:127.0.0.1", "::ffff:0.0.0.0"])
def test_v4_mapped_loopback_refused(dst: str) -> None:
    assert isinstance(translate(dst), str)


def test_v4_mapped_follows_ipv4_outbound_rules() -> None:
    # IPv6 anywhere, IPv4 nowhere: ::ffff:198.51.100.1 is 198.51.100.1 on the host
    assert isinstance(translate("::ffff:198.51.100.1", outbound=(net("::/0"),)), str)


def test_v4_mapped_gets_ipv4_answers() -> None:
    assert translate("::ffff:192.0.2.1") == ("192.0.2.1", 80)
    assert translate("::ffff:192.0.2.1", outbound=(net("192.0.2.0/24"),)) == ("192.0.2.1", 80)
    assert translate("::ffff:127.0.0.1", allow_host_loopback=True) == pol.REFUSED_LOOPBACK_DST
    for dst in ("::ffff:10.0.2.2", "::ffff:10.0.2.3", "::ffff:10.0.2.50"):
        assert translate(dst, 53, allow_host_loopback=True, dns_upstream=("192.0.2.53", 53)) == pol.REFUSED_VIRTUAL


# ----------------------------------------------------------------- is_virtual

def test_is_virtual() -> None:
    p = Policy(NetConfig(ipv6=True))
    for v in ("10.0.2.2", "10.0.2.3", "10.0.2.50", "fd00::2", "fd00::3", "fe80::2"):
        assert p.is_virtual(a(v)), v
    for v in ("10.0.2.100", "10.0.3.2", "192.0.2.1", "fd00::100", "fd00::50", "fe80::1"):
        assert not p.is_virtual(a(v)), v


def test_dhcp_pool_is_not_virtual_but_never_leaves() -> None:
    p = Policy(NetConfig())
    assert [p.is_virtual(a(f"10.0.2.{n}")) for n in (14, 15, 22, 30, 31)] == [True, False, False, False, True]
    assert p.translate(a("10.0.2.20"), 80) == pol.REFUSED_VIRTUAL


@given(st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16), st.integers(0, 65535),
       st.booleans(), st.sampled_from([None, (), (net("0.0.0.0/1"), net("2000::/3"))]))
def test_translate_total(dst: bytes, port: int, loop: bool, outbound) -> None:
    """Every address gets an answer: a (host, port) pair or one of the named refusals."""
    r = Policy(NetConfig(ipv6=True, allow_host_loopback=loop, outbound=outbound)).translate(dst, port)
    if isinstance(r, str):
        assert r in (pol.REFUSED_HOST_LOOPBACK, pol.REFUSED_OUTBOUND, pol.REFUSED_VIRTUAL, pol.REFUSED_LOOPBACK_DST)
    else:
        host, p = r
        assert p == port
        ip = ipaddress.ip_address(host)
        if host not in ("127.0.0.1", "::1"):
            assert not ip.is_loopback and not ip.is_multicast and not ip.is_unspecified
            assert ip not in NetConfig().cidr and ip not in NetConfig().prefix6


# ----------------------------------------------------------------- config bits the policy depends on

def test_parse_outbound() -> None:
    assert parse_outbound("all") is None
    assert parse_outbound("none") == ()
    assert parse_outbound("192.0.2.0/24, 2001:db8::/32") == (net("192.0.2.0/24"), net("2001:db8::/32"))
    with pytest.raises(ConfigError, match="not a CIDR"):
        parse_outbound("example.com")
