"""Mistakes a test author can make, caught in Python before anything starts (no namespaces needed)."""

from __future__ import annotations

import subprocess

import pytest

from rootlessnet import Network, Sandbox
from rootlessnet.harness import CommandFailed, UnknownHostError
from rootlessnet.harness.network import impairment, partition_body


@pytest.mark.parametrize("options, message", [
    ({"hosts": {"db.test": "10.0.2.300"}}, "'db.test' -> '10.0.2.300' is not an IP address"),
    ({"hosts": {"db.test": []}}, "'db.test' has no address"),
    ({"hosts": {"bad name": "10.0.2.2"}}, "is not a DNS name"),
    ({"mtu": 100}, "mtu=100: use an integer in 1280..65520"),
    ({"outbound": "everything"}, "'everything' is not 'all', 'none' or a CIDR"),
    ({"port_driver": "magic"}, "port_driver='magic'"),
    ({"start_timeout": 0}, "start_timeout=0"),
])
def test_bad_sandbox_options(options, message):
    with pytest.raises(ValueError) as e:
        Sandbox(**options)
    assert message in str(e.value)


def test_unknown_option_names_the_known_ones():
    with pytest.raises(TypeError) as e:
        Sandbox(dns={"a": "10.0.2.2"})
    assert "unknown option(s) dns" in str(e.value) and "hosts" in str(e.value)
    with pytest.raises(TypeError, match="extra_args= must be a list"):
        Sandbox(extra_args="--pidns")


def test_hosts_table_accepts_one_or_many_addresses():
    sb = Sandbox(hosts={"db.test": "10.0.2.2", "Both.Test": ["10.0.2.2", "fd00::2"]})
    assert sb.options._dns == {"db.test": ["10.0.2.2"], "Both.Test": ["10.0.2.2", "fd00::2"]}


@pytest.mark.parametrize("names, message", [
    ("abc", "give a list of host names"),
    ([], "0 hosts"),
    (["a", "a"], "duplicate host name(s) a"),
    (["A"], "'A' is not a valid host name"),
    (["under_score"], "is not a valid host name"),
    (["x" * 32], "is not a valid host name"),
    (["host"], "'host' is reserved"),
    (["main"], "'main' is reserved"),
])
def test_bad_network_names(names, message):
    with pytest.raises((ValueError, TypeError)) as e:
        Network(names)
    assert message in str(e.value)


@pytest.mark.parametrize("kw, message", [
    ({"loss": 20}, "loss=20): use a fraction between 0 and 1 (20 % is 0.2)"),
    ({"loss": -0.1}, "use a fraction between 0 and 1"),
    ({"duplicate": float("nan")}, "duplicate=nan"),
    ({"corrupt": True}, "corrupt=True"),
    ({"delay": -1}, "use a number of seconds >= 0"),
    ({"delay": 100}, "100 s is over 60 s; delays are in seconds (0.1 = 100 ms)"),
    ({"jitter": "5ms"}, "jitter='5ms'"),
    ({"rate": 0}, "rate=0): use bits per second >= 1000"),
    ({"seed": 1.5}, "seed=1.5): use an integer"),
])
def test_bad_impairments(kw, message):
    with pytest.raises(ValueError) as e:
        impairment(**kw)
    assert message in str(e.value)


def test_impairment_body():
    import datetime

    assert impairment(delay=datetime.timedelta(milliseconds=50), loss=0.25, rate=1_000_000, seed=3) == {
        "delay": 0.05, "jitter": 0.0, "loss": 0.25, "reorder": 0.0, "duplicate": 0.0, "corrupt": 0.0,
        "rate": 1_000_000, "seed": 3, "limit": 1000}
    with pytest.raises(ValueError, match=r"limit=0\): use a number of frames"):
        impairment(limit=0)
    with pytest.raises(TypeError):
        impairment(latency=1)  # a typo is not silently ignored


def test_partition_checks():
    known = ["a", "b", "c"]
    assert partition_body(({"a"}, {"c", "b"}), known) == {"groups": [["a"], ["b", "c"]]}
    assert partition_body(("a", ["host", "main"]), known) == {"groups": [["a"], ["host", "main"]]}
    with pytest.raises(UnknownHostError) as e:
        partition_body(({"a"}, {"zz"}), known)
    assert isinstance(e.value, KeyError)
    assert str(e.value) == "unknown host 'zz': this network has a, b, c, host, main"
    with pytest.raises(ValueError, match="'a' is in two groups"):
        partition_body(({"a"}, {"a", "b"}), known)
    with pytest.raises(ValueError, match="at least two groups"):
        partition_body(({"a", "b"},), known)
    with pytest.raises(ValueError, match="empty group"):
        partition_body(({"a"}, set()), known)


def test_command_failed_shows_stderr():
    e = CommandFailed(3, ["curl", "x"], "", "curl: (6) Could not resolve host: x\n")
    assert isinstance(e, subprocess.CalledProcessError)
    assert str(e) == ("Command '['curl', 'x']' returned non-zero exit status 3.\n"
                      "stderr:\ncurl: (6) Could not resolve host: x")
    assert "stderr was not captured" in str(CommandFailed(1, ["x"]))
    assert "stderr was empty" in str(CommandFailed(1, ["x"], b"", b""))


def test_not_started():
    sb = Sandbox()
    with pytest.raises(Exception, match="has not been started"):
        sb.run(["true"])
    sb.stop()  # harmless


def test_import_rootlessnet_stays_cheap():
    import sys

    code = ("import sys, rootlessnet; "
            "print(sorted(m for m in sys.modules if m.startswith(('rootlessnet.', 'trio', 'pytest'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
