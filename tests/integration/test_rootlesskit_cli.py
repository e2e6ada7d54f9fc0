"""`rootlessnet run` with rootlesskit's command line, on real namespaces (the parsing itself: tests/compat)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import NO_DNS, one_line_error, requires_userns, rn
from tests.integration.containers import PeerServer

pytestmark = [pytest.mark.integration, requires_userns]


def test_command_without_double_dash_and_single_dash_flags():
    r = rn("run", NO_DNS, "-net", "none", "-pidns", "sh", "-c", "echo $$; ip -o link | wc -l", "--ignored-by-us")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "1"]  # the command's sh is PID 2 under the reaper; only lo


@pytest.mark.parametrize("flags, reached", [
    (["--disable-host-loopback"], False),
    (["--disable-host-loopback", "--disable-host-loopback=false"], True),  # what dockerd-rootless.sh users write
    (["--disable-host-loopback=false", "--disable-host-loopback"], False),
    (["--allow-host-loopback", "--disable-host-loopback"], False),
    (["--disable-host-loopback", "--allow-host-loopback"], True),
])
def test_host_loopback_follows_the_last_flag(flags, reached):
    server = PeerServer("127.0.0.1")
    try:
        r = rn("run", NO_DNS, "--outbound=none", *flags, "--", "sh", "-c",
               f"nc -w 5 10.0.2.2 {server.port} </dev/null")
    finally:
        server.stop()
    assert (r.returncode == 0 and r.stdout.encode() == PeerServer.GREETING) is reached, r
    assert server.peers == (["127.0.0.1"] if reached else [])


def test_a_note_only_where_the_meaning_changes():
    r = rn("run", NO_DNS, "--net=vpnkit", "--vpnkit-binary=/opt/vpnkit", "--", "true")
    assert r.returncode == 0
    notes = r.stderr.strip().splitlines()
    assert len(notes) == 2 and all(n.startswith("rootlessnet: note: ") for n in notes), notes
    r = rn("run", NO_DNS, "-q", "--net=vpnkit", "--", "true")
    assert (r.returncode, r.stderr) == (0, "")
    r = rn("run", NO_DNS, "--net=slirp4netns", "--mtu=65520", "--slirp4netns-sandbox=auto",
           "--slirp4netns-seccomp=auto", "--disable-host-loopback", "--port-driver=builtin", "--copy-up=/etc",
           "--copy-up=/run", "--propagation=rslave", "true")
    assert (r.returncode, r.stderr) == (0, "")  # Docker's flags: no note, no warning


def test_bad_flags_are_one_line_with_status_2():
    for argv, words in ((["--bogus", "true"], "flag provided but not defined: -bogus"),
                        (["--ipv6=maybe", "true"], "invalid boolean value 'maybe' for flag -ipv6"),
                        (["--net=bogus", "true"], "unknown --net 'bogus'")):
        r = rn("run", *argv)
        assert r.returncode == 2 and words in one_line_error(r.stderr), r.stderr
