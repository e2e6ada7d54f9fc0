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
    ({"loss": 20}, "impair(loss=20): a probability in 0..1 (20 % is 0.2)"),
    ({"loss": -0.1}, "impair(loss=-0.1): a probability in 0..1"),
    ({"duplicate": float("nan")}, "impair(duplicate=nan): must be a finite number"),
    ({"corrupt": True}, "impair(corrupt=True): must be a finite number"),
    ({"delay": -1}, "impair(delay=-1): seconds in 0..60 (0.1 = 100 ms)"),
    ({"delay": 100}, "impair(delay=100): seconds in 0..60 (0.1 = 100 ms)"),
    ({"jitter": "5ms"}, "impair(jitter='5ms'): must be a finite number"),
    ({"rate": 0}, "impair(rate=0): bits per second in 1000..1e12"),
    ({"seed": 1.5}, "impair(seed=1.5): an integer"),
    ({"distribution": "gauss"}, "impair(distribution='gauss'): one of uniform, normal, pareto, paretonormal"),
    ({"reorder": 0.1}, "impair(reorder=0.1): needs a delay > 0"),
    ({"delay": 0.1, "reorder": 0.1, "gap": -1}, "impair(gap=-1): frames in 0..2147483647"),
    ({"overhead": 20}, "impair(overhead=20): applies to the rate"),
    ({"loss": {"model": "gemodel", "p": 2}}, "impair(loss.p=2): a probability in 0..1"),
    ({"loss": {"model": "state", "p13": 0.5, "p14": 0.6}}, "impair(loss.p14=0.6): with p13=0.5, p13 + p14 must be at most 1"),
    ({"loss": 0.1, "loss_correlation": 1.5}, "impair(loss_correlation=1.5): a probability in 0..1"),
    ({"slot": {"min_delay": 0.01, "max_delay": 0.001}}, "impair(slot.max_delay=0.001): seconds, at least min_delay"),
    ({"slot": {"min_delay": 0.001, "packets": 0}}, "impair(slot.packets=0): frames per slot in 1.."),
    ({"limit": 0}, "impair(limit=0): a number of frames in 1..1000000"),
    ({"netem": "delay 10ms loss 5 %"}, "netem: '%' is not a percentage"),
    ({"netem": "delay fast"}, "netem: 'fast' is not a time"),
    ({"netem": "loss 1% ecn"}, "netem: ecn is not supported"),
])
def test_bad_impairments(kw, message):
    with pytest.raises(ValueError) as e:
        impairment(**kw)
    assert message in str(e.value)


def test_impairment_errors_name_the_parameter():
    from rootlessnet.stack.impair import ImpairmentError

    with pytest.raises(ImpairmentError) as e:
        impairment(jitter=-0.5)
    assert (e.value.parameter, e.value.value) == ("jitter", -0.5) and "0..60" in e.value.allowed


def test_impairment_body():
    import datetime

    body = impairment(delay=datetime.timedelta(milliseconds=50), loss=0.25, rate=1_000_000, seed=3)
    assert {k: body[k] for k in ("delay", "jitter", "loss", "rate", "seed", "limit", "distribution")} == {
        "delay": 0.05, "jitter": 0.0, "loss": 0.25, "rate": 1_000_000, "seed": 3, "limit": 1000, "distribution": "uniform"}
    with pytest.raises(TypeError, match="unknown parameter"):
        impairment(latency=1)  # a typo is not silently ignored
    # tc's words give the same settings as the keywords
    assert impairment(netem="delay 100ms 10ms 25% distribution normal loss gemodel 1% 10% 70% 0.1% rate 10mbit 20") == \
        impairment(delay=0.1, jitter=0.01, delay_correlation=0.25, distribution="normal",
                   loss={"model": "gemodel", "p": 0.01, "r": 0.1, "bad_loss": 0.7, "good_loss": 0.001},
                   rate=10_000_000, overhead=20)


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
