"""The pure parts of the OCI hook: port annotation, CNI chain mechanics, spec install, peer resolution."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from rootlessnet.errors import UserError
from rootlessnet.ns.netns import check_name, format_table, resolve_peers
from rootlessnet.oci import cni, hook


# -- rootlessnet/ports

def test_parse_ports_defaults_and_forms():
    ms = hook.parse_ports("8080:80/tcp, 8443:443 ,5353:53/udp,0.0.0.0:9000:90/tcp,[::1]:9001:91/tcp")
    assert [str(m) for m in ms] == ["127.0.0.1:8080:80/tcp", "127.0.0.1:8443:443/tcp", "127.0.0.1:5353:53/udp",
                                    "0.0.0.0:9000:90/tcp", "[::1]:9001:91/tcp"]
    assert hook.parse_ports("") == [] and hook.parse_ports(None) == []


@pytest.mark.parametrize("bad, words", [
    ("80", "bad mapping"), ("8080:80/sctp", "unknown protocol"), ("0:80", "out of range"),
    ("70000:80", "out of range"), ("x:80", "bad host port"), ("1.2.3:8080:80", "bad host address"),
    ("8080:80,8080:81", "given twice"), ("[::1:8080:80", "IPv6"),
])
def test_parse_ports_errors_say_what(bad, words):
    with pytest.raises(UserError) as e:
        hook.parse_ports(bad)
    assert words in str(e.value) and "rootlessnet/ports" in str(e.value)


def test_api_spec_parent_port_is_child_port():
    m = hook.PortMapping("127.0.0.1", 8080, 80, "tcp")
    assert hook.api_spec(m, loopback_child=True) == {"proto": "tcp", "parentIP": "127.0.0.1", "parentPort": 8080,
                                                     "childIP": "127.0.0.1", "childPort": 8080}
    assert hook.api_spec(m, loopback_child=False)["childIP"] == ""
    assert hook.api_spec(m, loopback_child=True, child_port=80)["childPort"] == 80  # no CNI: straight to the container port


def test_read_state():
    st = hook.read_state('{"ociVersion":"1.0.2","id":"c1","pid":42,"bundle":"/b","annotations":{"rootlessnet/ports":"1:2"}}')
    assert st["id"] == "c1" and st["pid"] == 42
    for bad in ("", "[]", '{"pid": 1}', '{"id": "../x"}'):
        with pytest.raises(UserError):
            hook.read_state(bad)


def test_runtime_config_only_for_declared_capabilities():
    nl = cni.parse_conf({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "bridge", "bridge": "cni0"}, {"type": "portmap", "capabilities": {"portMappings": True}}]})
    rc = cni.port_mappings_runtime_config(hook.parse_ports("8080:80/tcp"))
    assert rc == {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    b = cni.plugin_stdin(nl, nl.plugins[0], None, rc)
    p = cni.plugin_stdin(nl, nl.plugins[1], {"cniVersion": "1.0.0", "ips": []}, rc)
    assert "runtimeConfig" not in b and b["name"] == "n" and b["cniVersion"] == "1.0.0" and "prevResult" not in b
    assert p["runtimeConfig"] == rc and p["prevResult"] == {"cniVersion": "1.0.0", "ips": []}
    assert "runtimeConfig" not in nl.plugins[1]  # the list itself is untouched


def test_load_conf_dir_takes_the_first_file_and_wraps_a_conf(tmp_path):
    with pytest.raises(cni.CniError, match="no CNI configuration directory"):
        cni.load_conf_dir(str(tmp_path / "none"))
    with pytest.raises(cni.CniError, match="no CNI network configuration"):
        cni.load_conf_dir(str(tmp_path))
    (tmp_path / "20-b.conflist").write_text(json.dumps({"cniVersion": "0.4.0", "name": "b", "plugins": [{"type": "bridge"}]}))
    (tmp_path / "10-a.conf").write_text(json.dumps({"cniVersion": "0.3.1", "name": "a", "type": "ptp", "ipam": {}}))
    (tmp_path / "05-ignored.txt").write_text("x")
    nl = cni.load_conf_dir(str(tmp_path))
    assert nl.name == "a" and nl.cni_version == "0.3.1" and nl.plugins == [{"type": "ptp", "ipam": {}}]
    (tmp_path / "00-bad.conflist").write_text("{")
    with pytest.raises(cni.CniError, match="00-bad.conflist"):
        cni.load_conf_dir(str(tmp_path))
    with pytest.raises(cni.CniError, match="type"):
        cni.parse_conf({"name": "x", "plugins": [{"type": "../evil"}]})


# -- the chain, with fake plugins that record what they got

FAKE = """#!{py}
import json, os, sys
conf = json.load(sys.stdin)
with open(os.path.join({log!r}, "calls"), "a") as f:
    f.write(json.dumps({{"type": conf["type"], "cmd": os.environ["CNI_COMMAND"], "netns": os.environ["CNI_NETNS"],
                        "id": os.environ["CNI_CONTAINERID"], "ifname": os.environ["CNI_IFNAME"], "path": os.environ["PATH"],
                        "prev": conf.get("prevResult"), "rc": conf.get("runtimeConfig")}}) + "\\n")
if conf.get("fail") and os.environ["CNI_COMMAND"] == "ADD":
    print(json.dumps({{"cniVersion": conf["cniVersion"], "code": 11, "msg": "no can do", "details": "really"}}))
    sys.exit(1)
if os.environ["CNI_COMMAND"] == "ADD":
    prev = conf.get("prevResult") or {{"cniVersion": conf["cniVersion"], "ips": []}}
    prev["ips"] = prev["ips"] + [{{"address": conf["type"]}}]
    print(json.dumps(prev))
"""


@pytest.fixture
def fake_plugins(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("one", "two", "ports"):
        p = bindir / name
        p.write_text(FAKE.format(py=sys.executable, log=str(tmp_path)))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def _calls(d):
    return [json.loads(l) for l in (d / "calls").read_text().splitlines()]


def test_chain_add_passes_prev_result_and_del_runs_in_reverse(fake_plugins):
    nl = cni.parse_conf({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "one"}, {"type": "two"}, {"type": "ports", "capabilities": {"portMappings": True}}]})
    chain = cni.Chain(nl, [str(fake_plugins / "nope"), str(fake_plugins / "bin")])
    rc = {"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]}
    res = chain.add("c1", "/proc/1/ns/net", "eth0", rc)
    assert [ip["address"] for ip in res["ips"]] == ["one", "two", "ports"]
    calls = _calls(fake_plugins)
    assert [c["type"] for c in calls] == ["one", "two", "ports"]
    assert calls[0]["prev"] is None and [ip["address"] for ip in calls[2]["prev"]["ips"]] == ["one", "two"]
    assert calls[0]["rc"] is None and calls[2]["rc"] == rc
    assert all(c["path"] == cni.PLUGIN_PATH and c["id"] == "c1" and c["ifname"] == "eth0" for c in calls)
    (fake_plugins / "calls").unlink()
    chain.delete("c1", "", "eth0", rc, prev_result=res)
    calls = _calls(fake_plugins)
    assert [c["type"] for c in calls] == ["ports", "two", "one"] and all(c["cmd"] == "DEL" for c in calls)
    assert all(c["prev"] == res and c["netns"] == "" for c in calls)
    (fake_plugins / "calls").unlink()
    chain.add("c2", "/x", "eth0", rc, prev_result=res, only_caps="portMappings")
    assert [c["type"] for c in _calls(fake_plugins)] == ["ports"]


def test_chain_errors_name_the_plugin(fake_plugins):
    nl = cni.parse_conf({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "one", "fail": True}]})
    with pytest.raises(cni.CniError, match=r"CNI plugin one ADD failed: no can do \(really\)"):
        cni.Chain(nl, [str(fake_plugins / "bin")]).add("c", "/x", "eth0")
    nl = cni.parse_conf({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "missing"}]})
    with pytest.raises(cni.CniError, match="'missing' not found in .*containernetworking-plugins"):
        cni.Chain(nl, [str(fake_plugins / "bin")]).add("c", "/x", "eth0")


def test_del_before_0_4_0_gets_no_prev_result(fake_plugins):
    nl = cni.parse_conf({"cniVersion": "0.3.1", "name": "n", "plugins": [{"type": "one"}]})
    cni.Chain(nl, [str(fake_plugins / "bin")]).delete("c", "", "eth0", prev_result={"ips": []})
    assert _calls(fake_plugins)[0]["prev"] is None


# -- install

def test_install_adds_hooks_netns_and_annotation_idempotently(tmp_path):
    spec = {"ociVersion": "1.0.2", "hooks": {"poststop": [{"path": "/bin/other"}]},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}
    opts = hook.HookOptions(state_dir=str(tmp_path / "S"), conf_dir="/etc/cni/other", log="/tmp/l")
    for _ in range(2):
        hook.install(spec, opts, ports="8080:80/tcp", netns_path="/S/netns.d/pod")
    cr, ps = spec["hooks"]["createRuntime"], spec["hooks"]["poststop"]
    assert len(cr) == 1 and len(ps) == 2 and ps[0] == {"path": "/bin/other"}
    h = cr[0]
    assert h["path"] == sys.executable and os.path.isabs(h["path"])
    assert h["args"][1:4] == ["-m", "rootlessnet", "oci-hook"] and h["args"][-1] == "createRuntime"
    assert ["--state-dir", str(tmp_path / "S")] == h["args"][4:6]
    assert "--cni-conf-dir" in h["args"] and "--log" in h["args"] and "--cni-path" not in h["args"]
    assert any(e.startswith("PATH=") and "/usr/sbin" in e for e in h["env"])
    assert ps[1]["args"][-1] == "poststop"
    assert {"type": "network", "path": "/S/netns.d/pod"} in spec["linux"]["namespaces"]
    assert spec["annotations"]["rootlessnet/ports"] == "8080:80/tcp"
    with pytest.raises(UserError):
        hook.install(spec, opts, ports="nope")


# -- netns names and peer resolution

def test_netns_names():
    assert check_name("pod-1.a_b") == "pod-1.a_b"
    for bad in ("", ".", "..", "a/b", "-x", "x" * 64):
        with pytest.raises(UserError):
            check_name(bad)


def _if(index, name, kind="", link=None, nsid=None, master=None, addrs=()):
    return {"index": index, "name": name, "kind": kind, "state": "UP", "link": link, "link_netnsid": nsid,
            "master_index": master, "addresses": list(addrs)}


def test_resolve_peers_across_namespaces_by_index_and_nsid():
    main = {"name": "main", "kind": "instance", "path": "/S/netns", "interfaces": [
        _if(1, "lo"), _if(3, "cni0", "bridge", addrs=["10.4.0.1/24"]),
        _if(4, "veth1", "veth", link=2, nsid=0, master=3), _if(5, "veth2", "veth", link=2, nsid=1, master=3)]}
    a = {"name": "a", "kind": "named", "path": "/S/netns.d/a", "interfaces": [
        _if(1, "lo"), _if(2, "eth0", "veth", link=5, nsid=0, addrs=["10.4.0.3/24"])]}
    b = {"name": "container:c1", "kind": "container", "path": "/S/cni-netns/c1", "interfaces": [
        _if(1, "lo"), _if(2, "eth0", "veth", link=4, nsid=0, addrs=["10.4.0.2/24"])]}
    nss = [main, a, b]
    resolve_peers(nss)
    m = {l["name"]: l for l in main["interfaces"]}
    assert m["veth1"]["master"] == "cni0" and m["veth1"]["peer"]["netns"] == "container:c1"
    assert m["veth1"]["peer"]["name"] == "eth0"
    assert m["veth2"]["peer"]["netns"] == "a"
    assert a["interfaces"][1]["peer"] == {"netns": "main", "name": "veth2", "index": 5, "master": "cni0"}
    text = format_table(nss)
    assert "veth1@if2" in text and "peer eth0 in container:c1" in text and "peer veth2 in main (master cni0)" in text


def test_resolve_peers_same_netns_and_unknown():
    ns = {"name": "main", "kind": "instance", "path": "p", "interfaces": [
        _if(7, "va", "veth", link=8), _if(8, "vb", "veth", link=7), _if(9, "vx", "veth", link=2, nsid=5)]}
    resolve_peers([ns])
    ls = {l["name"]: l for l in ns["interfaces"]}
    assert ls["va"]["peer"]["name"] == "vb" and ls["vb"]["peer"]["name"] == "va"
    assert ls["vx"]["peer"] == {"netns": None, "netnsid": 5, "name": None, "index": 2, "master": None}
    assert "netnsid 5" in format_table([ns])
