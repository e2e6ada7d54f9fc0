"""`rootlessnet run` reads rootlesskit's flags as rootlesskit does (Go's flag package) and maps them."""

from __future__ import annotations

import pytest

from rootlessnet.compat import goflags, rootlesskit
from rootlessnet.compat.goflags import BOOL, INT, LIST, STRING, Flag, FlagError, FlagSet
from rootlessnet.errors import UserError

# Every flag of rootlesskit's cmd/rootlesskit/main.go in v1.0.0 ... v3.0.1 (read from the tags), with its kind.
ROOTLESSKIT_FLAGS = {
    "debug": BOOL, "print-semver": STRING, "state-dir": STRING, "net": STRING, "pasta-binary": STRING,
    "slirp4netns-binary": STRING, "slirp4netns-sandbox": STRING, "slirp4netns-seccomp": STRING,
    "vpnkit-binary": STRING, "lxc-user-nic-binary": STRING, "lxc-user-nic-bridge": STRING, "mtu": INT,
    "cidr": STRING, "ifname": STRING, "disable-host-loopback": BOOL, "ipv6": BOOL, "copy-up": LIST,
    "copy-up-mode": STRING, "port-driver": STRING, "publish": LIST, "source-ip-transparent": BOOL,
    "pidns": BOOL, "cgroupns": BOOL, "utsns": BOOL, "ipcns": BOOL, "detach-netns": BOOL,
    "propagation": STRING, "reaper": STRING, "evacuate-cgroup2": STRING, "subid-source": STRING,
}
# urfave/cli's own: --help/-h (handled by the parser), --version/-v; and -p for --publish
ALIASES = {"p": "publish", "v": "version"}

DOCKER_20_10 = ["--net=slirp4netns", "--mtu=65520", "--slirp4netns-sandbox=auto", "--slirp4netns-seccomp=auto",
                "--disable-host-loopback", "--port-driver=builtin", "--copy-up=/etc", "--copy-up=/run",
                "--propagation=rslave", "/usr/share/docker.io/contrib/dockerd-rootless.sh", "--debug"]


def parse(*argv: str):
    outcome, parsed = rootlesskit.parse(list(argv))
    return outcome, parsed


def opts(*argv: str):
    outcome, _ = parse(*argv)
    assert outcome.opts is not None, outcome
    return outcome.opts


def test_every_rootlesskit_flag_is_known_with_its_kind():
    fs = rootlesskit.flag_set()
    for name, kind in ROOTLESSKIT_FLAGS.items():
        assert name in fs.by_name, name
        assert fs.by_name[name].kind == kind, name
    for short, long in ALIASES.items():
        assert fs.by_name[short].name == long


@pytest.mark.parametrize("name", sorted(ROOTLESSKIT_FLAGS))
def test_every_rootlesskit_flag_is_accepted(name):
    value = {"print-semver": None, "state-dir": "/tmp/x", "net": "slirp4netns", "pasta-binary": "pasta",
             "slirp4netns-binary": "slirp4netns", "slirp4netns-sandbox": "auto", "slirp4netns-seccomp": "false",
             "vpnkit-binary": "vpnkit", "lxc-user-nic-binary": "/usr/lib/lxc", "lxc-user-nic-bridge": "lxcbr0",
             "mtu": "1500", "cidr": "10.0.3.0/24", "ifname": "tap1", "copy-up": "/etc", "copy-up-mode": "tmpfs+symlink",
             "port-driver": "builtin", "publish": "127.0.0.1:8080:80/tcp", "propagation": "rslave", "reaper": "auto",
             "evacuate-cgroup2": "x", "subid-source": "dynamic"}.get(name)
    if name == "print-semver":
        outcome, _ = parse("--print-semver=major")
        assert outcome.text == "2\n"
        return
    extra = ["--pidns", "--cgroupns"] if name == "evacuate-cgroup2" else []
    argv = [f"--{name}"] if ROOTLESSKIT_FLAGS[name] == BOOL else [f"--{name}={value}"]
    o = opts(*extra, *argv, "true")
    assert o.command == ["true"]


def test_docker_20_10_command_line():
    o = opts(*DOCKER_20_10)
    assert o.command == ["/usr/share/docker.io/contrib/dockerd-rootless.sh", "--debug"]  # flags end at the command
    assert (o.net, o.mtu, o.port_driver, o.copy_up, o.propagation) == ("slirp", 65520, "builtin", ["/etc", "/run"],
                                                                       "rslave")
    assert (o.sandbox_fs, o.sandbox_seccomp) == ("auto", "auto")
    assert not o.allow_host_loopback
    o = opts(*DOCKER_20_10[:9], "--disable-host-loopback=false", DOCKER_20_10[9])  # $DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS
    assert o.allow_host_loopback
    outcome, _ = parse(*DOCKER_20_10)
    assert outcome.notes == []  # nothing Docker passes changes meaning


@pytest.mark.parametrize("argv, allowed", [
    ([], False),
    (["--disable-host-loopback"], False),
    (["--disable-host-loopback=false"], True),
    (["--disable-host-loopback", "--disable-host-loopback=false"], True),
    (["--disable-host-loopback=false", "--disable-host-loopback"], False),
    (["--allow-host-loopback"], True),
    (["--allow-host-loopback", "--disable-host-loopback"], False),  # in either order, the last one wins
    (["--disable-host-loopback", "--allow-host-loopback"], True),
    (["--allow-host-loopback", "--allow-host-loopback=false"], False),
    (["-disable-host-loopback=0"], True),
    (["-disable-host-loopback=T"], False),
])
def test_host_loopback_last_one_wins(argv, allowed):
    assert opts(*argv, "true").allow_host_loopback is allowed


def test_go_syntax():
    o = opts("-net", "none", "-pidns", "-state-dir=/tmp/s", "--mtu", "0x5dc", "-p", "8080:80/tcp,8443:443/tcp",
             "--publish=9090:90/udp", "--", "--not-a-flag")
    assert (o.net, o.pidns, o.state_dir, o.mtu) == ("none", True, "/tmp/s", 1500)
    assert o.publish == ["8080:80/tcp", "8443:443/tcp", "9090:90/udp"]  # lists split at commas and accumulate
    assert o.command == ["--not-a-flag"]  # "--" ends the flags and is dropped
    assert opts("--ipv6", "false").command == ["false"]  # a bool takes no separate value
    assert opts("--ipv6=false", "true").ipv6 is False
    assert opts("--mtu=1500", "--mtu=9000", "true").mtu == 9000  # last wins
    assert opts("-", "x").command == ["-", "x"]  # a lone dash is an argument
    assert opts("--state-dir", "--weird", "true").state_dir == "--weird"  # a value may start with a dash


@pytest.mark.parametrize("argv, error", [
    (["--no-such-flag", "true"], "flag provided but not defined: -no-such-flag"),
    (["--mtu"], "flag needs an argument: -mtu"),
    (["--mtu=abc", "true"], "invalid value 'abc' for flag -mtu"),
    (["--ipv6=yes", "true"], "invalid boolean value 'yes' for flag -ipv6"),
    (["---net=host", "true"], "bad flag syntax: ---net=host"),
    (["-=x", "true"], "bad flag syntax: -=x"),
])
def test_go_errors_are_one_line_status_2(argv, error):
    with pytest.raises(UserError) as e:
        parse(*argv)
    assert error in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == 2


def test_go_integers():
    assert [goflags.parse_int(t) for t in ("10", "0x1a", "0o17", "017", "0b11", "1_000", "-5", "0")] == \
           [10, 26, 15, 15, 3, 1000, -5, 0]
    for bad in ("08", "1__0", "", "0x", "1e3", "9223372036854775808"):
        with pytest.raises(ValueError):
            goflags.parse_int(bad)


def test_help_version_semver():
    outcome, _ = parse("--version")
    assert outcome.text == "rootlesskit version 2.3.6\n"  # rootlesskit's own format
    assert parse("-v")[0].text == outcome.text
    assert [parse(f"--print-semver={c}")[0].text for c in ("major", "minor", "patch")] == ["2\n", "3\n", "6\n"]
    with pytest.raises(UserError, match=r"expected --print-semver=\(major\|minor\|patch\)"):
        parse("--print-semver=build")
    text = parse("--help")[0].text
    for name, flag in rootlesskit.flag_set().by_name.items():
        if len(name) > 1 and not flag.hidden:
            assert f"--{name}" in text, name  # scripts grep --help for features (--detach-netns, ...)
    assert parse("-h")[0].text == text


@pytest.mark.parametrize("argv, net, port_driver, note", [
    (["--net=pasta"], "slirp", None, "pasta is not run"),
    (["--net=vpnkit"], "slirp", None, "VPNKit is not run"),
    (["--net=lxc-user-nic"], "slirp", None, "lxc-user-nic is not run"),
    (["--net=gvisor-tap-vsock", "--port-driver=gvisor-tap-vsock"], "slirp", "slirp", "gvisor-tap-vsock is not run"),
    (["--net=pasta", "--port-driver=implicit"], "slirp", "builtin", "implicit forwarding"),
    (["--net=slirp4netns", "--slirp4netns-binary=/opt/s4"], "slirp", None, "--slirp4netns-binary=/opt/s4: not used"),
    (["--source-ip-transparent"], "slirp", None, "does not keep the client's address"),
])
def test_engines_we_do_not_run_are_mapped_with_a_note(argv, net, port_driver, note):
    outcome, _ = parse(*argv, "true")
    assert (outcome.opts.net, outcome.opts.port_driver) == (net, port_driver)
    assert any(note in n for n in outcome.notes), outcome.notes


@pytest.mark.parametrize("argv", [
    ["--net=slirp4netns", "--port-driver=slirp4netns", "--ipv6", "--mtu=1500"],
    ["--net=host"], ["--net=none", "--detach-netns"], ["--source-ip-transparent=false"],
    ["--slirp4netns-sandbox=true", "--slirp4netns-seccomp=false"], ["--debug"], ["--subid-source=dynamic"],
    ["--copy-up-mode=tmpfs+symlink"], ["--reaper=false"],
])
def test_no_note_where_the_meaning_is_the_same(argv):
    outcome, _ = parse(*argv, "true")
    assert outcome.notes == []


def test_mapped_values():
    assert opts("--net=lxc-user-nic", "true").ifname == "eth0"  # rootlesskit's default for that driver
    assert opts("--mtu=0", "true").mtu == 65520
    assert opts("--mtu=65521", "true").mtu == 65520
    assert opts("--subid-source=dynamic", "true").subid_source == "auto"
    assert opts("--port-driver=slirp4netns", "true").port_driver == "slirp"
    with pytest.raises(UserError, match="requires --pidns and --cgroupns"):
        opts("--evacuate-cgroup2=x", "true")
    with pytest.raises(UserError, match="unknown --net 'bogus'"):
        opts("--net=bogus", "true")
    with pytest.raises(UserError, match="mtu must be <= 65521"):
        opts("--mtu=70000", "true")


def test_flag_set_mechanics():
    fs = FlagSet([Flag("a", BOOL, False), Flag("l", LIST, ["x"]), Flag("s", STRING, "d", aliases=("S",))])
    p = fs.parse(["-a=t", "-l=1,2", "--l", "3", "-S", "v", "cmd", "-a"])
    assert p.values == {"a": True, "l": ["1", "2", "3"], "s": "v"}  # a given list replaces the default
    assert p.rest == ["cmd", "-a"]
    assert p.given == [("a", True), ("l", ["1", "2"]), ("l", ["3"]), ("s", "v")]
    assert fs.parse([]).values == {"a": False, "l": ["x"], "s": "d"}
    assert fs.parse(["--help", "--bogus"]).help
    with pytest.raises(FlagError):
        fs.parse(["--bogus", "--help"])
