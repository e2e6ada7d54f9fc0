"""DHCP server traces: a udhcpc-like guest against the slirp4netns defaults (RFC 2131)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from rootlessnet.stack.dhcp import DECLINE_HOLD, OFFER_HOLD, DhcpServer


def ip(s: str) -> bytes:
    return ipaddress.IPv4Address(s).packed


MAC = bytes.fromhex("525400123456")
MAC2 = bytes.fromhex("5254000000aa")


def server(pool=("10.0.2.15", "10.0.2.30"), **kw) -> DhcpServer:
    return DhcpServer(ip("10.0.2.2"), ip("255.255.255.0"), ip("10.0.2.2"), [ip("10.0.2.3")],
                      ip(pool[0]), ip(pool[1]), **kw)


def client(mtype: str, mac: bytes = MAC, xid: int = 0x1234, ciaddr: str = "0.0.0.0",
           broadcast: bool = False, cid: bool = True, **opts) -> bytes:
    """What udhcpc sends: client id 01+MAC, a parameter list, max size 576."""
    options = [("message-type", mtype)]
    if cid:
        options.append(("client_id", b"\x01" + mac))
    options += [(k, v) for k, v in opts.items()]
    options += [("param_req_list", [1, 3, 6, 12, 15, 28, 42]), ("max_dhcp_size", 576),
                ("vendor_class_id", "udhcp 1.36.1"), "end"]
    return bytes(BOOTP(chaddr=mac, xid=xid, ciaddr=ciaddr, flags=0x8000 if broadcast else 0)
                 / DHCP(options=options))


_TYPES = {2: "offer", 5: "ack", 6: "nak"}


def expect(reply: bytes | None, **want):
    """Decode a reply with scapy and match the given fields (absent = any)."""
    assert reply is not None, "expected a reply"
    p = BOOTP(reply)
    opts = {o[0]: (o[1] if len(o) == 2 else o[1:]) for o in p[DHCP].options if isinstance(o, tuple)}
    got = {
        "op": p.op, "xid": p.xid, "yiaddr": p.yiaddr, "ciaddr": p.ciaddr,
        "type": _TYPES.get(opts.get("message-type"), opts.get("message-type")),
        "server_id": opts.get("server_id"), "lease_time": opts.get("lease_time"),
        "mask": opts.get("subnet_mask"), "router": opts.get("router"),
        "dns": opts.get("name_server"), "mtu": opts.get("interface-mtu"),
        "domain": opts.get("domain"), "chaddr": p.chaddr[:6],
    }
    for k, v in want.items():
        assert got[k] == v, f"{k}: got {got[k]!r}, want {v!r}"
    return got


def dora(s: DhcpServer, mac: bytes = MAC, now: float = 0.0, **opts) -> str:
    offer = expect(s.handle(client("discover", mac, **opts), mac, now), type="offer")
    expect(s.handle(client("request", mac, server_id="10.0.2.2", requested_addr=offer["yiaddr"], **opts),
                    mac, now),
           type="ack", yiaddr=offer["yiaddr"])
    return offer["yiaddr"]


def test_udhcpc_dora():
    s = server(mtu=1500, domain="example")
    # DISCOVER -> OFFER: first pool address, every configured parameter.
    offer = s.handle(client("discover"), MAC, 0.0)
    expect(offer, op=2, xid=0x1234, type="offer", yiaddr="10.0.2.15", ciaddr="0.0.0.0",
           server_id="10.0.2.2", lease_time=86400, mask="255.255.255.0", router="10.0.2.2",
           dns="10.0.2.3", mtu=1500, domain=b"example", chaddr=MAC)
    assert s.reply_broadcast(offer)  # ciaddr 0: the guest has no address yet
    (lease,) = s.leases()
    assert lease.ip == ip("10.0.2.15") and not lease.bound and lease.expires == OFFER_HOLD
    # REQUEST (SELECTING) -> ACK.
    ack = s.handle(client("request", server_id="10.0.2.2", requested_addr="10.0.2.15", hostname="guest"),
                   MAC, 1.0)
    expect(ack, type="ack", yiaddr="10.0.2.15", lease_time=86400, router="10.0.2.2")
    (lease,) = s.leases(now=2.0)
    assert lease.bound and lease.mac == MAC and lease.expires == 86401.0 and lease.hostname == "guest"
    assert s.stats["offer"] == 1 and s.stats["ack"] == 1


def test_same_client_same_address_other_client_next():
    s = server()
    assert dora(s) == "10.0.2.15"
    # Re-DISCOVER while bound: the current binding (RFC 2131 4.3.1), still bound.
    expect(s.handle(client("discover"), MAC, 10.0), yiaddr="10.0.2.15")
    assert s.leases()[0].bound and s.leases()[0].expires == 86400.0
    assert dora(s, MAC2, 10.0) == "10.0.2.16"


def test_client_without_client_id_is_known_by_chaddr():
    s = server()
    expect(s.handle(client("discover", cid=False), MAC, 0.0), yiaddr="10.0.2.15")
    expect(s.handle(client("discover", MAC2, cid=False), MAC2, 0.0), yiaddr="10.0.2.16")
    expect(s.handle(client("discover", cid=False), MAC, 1.0), yiaddr="10.0.2.15")


def test_requested_address_is_preferred_if_free_and_in_pool():
    s = server()
    expect(s.handle(client("discover", requested_addr="10.0.2.20"), MAC, 0.0), yiaddr="10.0.2.20")
    expect(s.handle(client("discover", MAC2, requested_addr="10.0.2.20"), MAC2, 0.0), yiaddr="10.0.2.15")
    s2 = server()
    expect(s2.handle(client("discover", requested_addr="192.168.1.9"), MAC, 0.0), yiaddr="10.0.2.15")


def test_pool_never_contains_our_own_addresses():
    s = server(pool=("10.0.2.2", "10.0.2.4"))
    assert dora(s) == "10.0.2.4"  # .2 is server/router, .3 is DNS
    assert s.handle(client("discover", MAC2), MAC2, 0.0) is None
    assert s.stats["pool_exhausted"] == 1


def test_request_for_another_server_frees_our_offer():
    s = server(pool=("10.0.2.15", "10.0.2.15"))
    expect(s.handle(client("discover"), MAC, 0.0), yiaddr="10.0.2.15")
    assert s.handle(client("request", server_id="10.0.2.99", requested_addr="10.0.2.15"), MAC, 1.0) is None
    assert s.stats["other_server"] == 1
    expect(s.handle(client("discover", MAC2), MAC2, 2.0), yiaddr="10.0.2.15")


def test_init_reboot():
    s = server()
    dora(s)
    # The guest reboots and asks for its remembered address: ACK.
    expect(s.handle(client("request", requested_addr="10.0.2.15"), MAC, 100.0), type="ack", yiaddr="10.0.2.15")
    # Another network's address: NAK, broadcast (RFC 2131 4.3.2, 4.1).
    nak = s.handle(client("request", MAC2, requested_addr="192.168.1.7"), MAC2, 100.0)
    expect(nak, type="nak", yiaddr="0.0.0.0", server_id="10.0.2.2", lease_time=None)
    assert s.reply_broadcast(nak)
    # Someone else's address: NAK.
    expect(s.handle(client("request", MAC2, requested_addr="10.0.2.15"), MAC2, 100.0), type="nak")
    # No record but free: we are authoritative, so ACK (as dnsmasq does).
    expect(s.handle(client("request", MAC2, requested_addr="10.0.2.22"), MAC2, 100.0), type="ack",
           yiaddr="10.0.2.22")
    assert s.stats["nak"] == 2


def test_renewing_and_rebinding_are_unicast_and_extend_the_lease():
    s = server()
    dora(s)
    ack = s.handle(client("request", ciaddr="10.0.2.15"), MAC, 43200.0)
    expect(ack, type="ack", yiaddr="10.0.2.15", ciaddr="10.0.2.15", lease_time=86400)
    assert not s.reply_broadcast(ack)  # RFC 2131 4.1: unicast to ciaddr
    assert s.leases()[0].expires == 43200.0 + 86400
    # Renewing an address the server gave to someone else: NAK.
    expect(s.handle(client("request", MAC2, ciaddr="10.0.2.15"), MAC2, 43201.0), type="nak")


def test_lease_expiry_and_pool_exhaustion():
    s = server(pool=("10.0.2.15", "10.0.2.15"), lease_time=3600)
    assert dora(s, lease_time=100) == "10.0.2.15"  # asks for less: granted
    assert s.leases()[0].expires == 100.0
    assert s.handle(client("discover", MAC2), MAC2, 50.0) is None
    assert s.stats["pool_exhausted"] == 1
    assert s.leases(now=100.0) == []
    assert dora(s, MAC2, 101.0) == "10.0.2.15"
    # The first guest wakes up and renews: the address is gone.
    expect(s.handle(client("request", ciaddr="10.0.2.15"), MAC, 102.0), type="nak")


def test_expired_leases_are_reused_oldest_first_after_fresh_ones():
    s = server(pool=("10.0.2.15", "10.0.2.17"), lease_time=10)
    assert dora(s, MAC, 0.0) == "10.0.2.15"
    assert dora(s, MAC2, 5.0) == "10.0.2.16"
    third = bytes.fromhex("5254000000bb")
    assert dora(s, third, 20.0) == "10.0.2.17"  # never-used first
    fourth = bytes.fromhex("5254000000cc")
    assert dora(s, fourth, 30.0) == "10.0.2.15"  # then the longest-expired
    # MAC's record is gone with its address: it gets MAC2's expired one.
    assert dora(s, MAC, 31.0) == "10.0.2.16"


def test_release_keeps_the_record_for_the_same_client():
    s = server(pool=("10.0.2.15", "10.0.2.16"))
    dora(s)
    assert s.handle(client("release", ciaddr="10.0.2.15", server_id="10.0.2.2"), MAC, 10.0) is None
    assert s.stats["release"] == 1 and s.leases(now=10.0) == []
    expect(s.handle(client("discover"), MAC, 11.0), yiaddr="10.0.2.15")
    # A RELEASE for an address the client does not hold changes nothing.
    assert s.handle(client("release", MAC2, ciaddr="10.0.2.15"), MAC2, 12.0) is None
    assert s.stats["no_record"] == 1


def test_decline_takes_the_address_out_for_a_while():
    s = server(pool=("10.0.2.15", "10.0.2.16"))
    dora(s)
    assert s.handle(client("decline", server_id="10.0.2.2", requested_addr="10.0.2.15"), MAC, 1.0) is None
    assert s.stats["decline"] == 1 and s.leases() == []
    expect(s.handle(client("discover"), MAC, 2.0), yiaddr="10.0.2.16")
    # .15 is declined, .16 is offered to the first guest: nothing for a second one.
    assert s.handle(client("discover", MAC2, requested_addr="10.0.2.15"), MAC2, 3.0) is None
    expect(s.handle(client("discover", MAC2), MAC2, 1.0 + DECLINE_HOLD), yiaddr="10.0.2.15")


def test_inform_gets_parameters_without_a_lease():
    s = server(mtu=1400)
    ack = s.handle(client("inform", ciaddr="10.0.2.100"), MAC, 0.0)
    expect(ack, type="ack", yiaddr="0.0.0.0", ciaddr="10.0.2.100", lease_time=None, dns="10.0.2.3", mtu=1400)
    assert not s.reply_broadcast(ack) and s.leases() == []


def test_broadcast_flag_is_echoed():
    s = server()
    offer = s.handle(client("discover", broadcast=True), MAC, 0.0)
    assert BOOTP(offer).flags == 0x8000 and s.reply_broadcast(offer)


@pytest.mark.parametrize("payload, counter", [
    (b"", "bad"),
    (b"\x01" * 100, "bad"),
    (client("discover")[:236] + b"\x00\x00\x00\x00", "bad"),  # no magic cookie: plain BOOTP
    (bytes(BOOTP(op=2, chaddr=MAC) / DHCP(options=[("message-type", "offer"), "end"])), "not_request"),
    (bytes(BOOTP(chaddr=MAC) / DHCP(options=["end"])), "no_type"),
    (client("offer"), "ignored_type"),
    (client("request"), "bad"),  # neither requested address nor ciaddr
    (client("request", server_id="10.0.2.2"), "bad"),  # SELECTING without an address
    (client("decline", requested_addr="10.0.2.15"), "bad"),  # no server id
])
def test_garbage_is_dropped_and_counted(payload, counter):
    s = server()
    assert s.handle(payload, MAC, 0.0) is None
    assert s.stats[counter] == 1


@given(st.binary(max_size=600))
def test_never_raises(data):
    s = server()
    s.handle(data, MAC, 0.0)
    s.handle(client("discover")[:240] + data, MAC, 0.0)


def test_misuse_raises():
    with pytest.raises(ValueError):
        server(pool=("10.0.2.30", "10.0.2.15"))
    with pytest.raises(ValueError):
        server(pool=("10.0.3.15", "10.0.3.30"))
    with pytest.raises(ValueError):
        DhcpServer(b"\x0a\x00\x02", ip("255.255.255.0"), ip("10.0.2.2"), [], ip("10.0.2.15"), ip("10.0.2.30"))
