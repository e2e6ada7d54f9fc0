"""compat.rootlesskit: `rootlessnet run`'s command line — every rootlesskit 1.x/2.x/3.x flag, and ours.

Flags are parsed as rootlesskit parses them (compat.goflags: Go's flag
package under urfave/cli v2) and mapped to instance.RunOptions. A flag that
picks an engine or helper binary we do not use is accepted and mapped to the
nearest thing we do; where that changes the meaning, one note goes to stderr
(`-q` silences it). docs/compat.md has the table; `FLAGS` below is its
source, and a test keeps the two in step.

`rootlessnet run --version` and `--print-semver` answer as rootlesskit does,
for scripts that parse them, with the rootlesskit release whose flags and API
this matches (COMPAT_VERSION).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from rootlessnet.compat.goflags import BOOL, INT, LIST, STRING, Flag, FlagError, FlagSet, Parsed, usage_lines
from rootlessnet.errors import UserError
from rootlessnet.instance import PORT_DRIVERS, REAPERS, SANDBOX_MODES, RunOptions, load_dns_hosts
from rootlessnet.ns import timing
from rootlessnet.ns.syscalls import PROPAGATION

COMPAT_VERSION = "2.3.6"  # the rootlesskit release we answer --version / --print-semver as
PROG = "rootlessnet run"

# rootlesskit's network drivers and what we run instead
NETS = {"slirp4netns": "slirp", "slirp": "slirp", "host": "host", "none": "none",
        "pasta": "slirp", "vpnkit": "slirp", "lxc-user-nic": "slirp", "gvisor-tap-vsock": "slirp"}
NET_NOTES = {
    "pasta": "pasta is not run: rootlessnet's engine serves the network, with slirp4netns's addresses "
             "(10.0.2.0/24) rather than copies of the host's",
    "vpnkit": "VPNKit is not run: rootlessnet's engine serves the network (10.0.2.0/24, gateway 10.0.2.2, "
              "DNS 10.0.2.3) instead of VPNKit's 192.168.65.0/24",
    "lxc-user-nic": "lxc-user-nic is not run: rootlessnet's engine serves the network on a tap device "
                    "(10.0.2.0/24) instead of a veth on the host bridge",
    "gvisor-tap-vsock": "gvisor-tap-vsock is not run: rootlessnet's engine serves the network (10.0.2.0/24)",
}
PORT_DRIVER_MAP = {"none": "none", "builtin": "builtin", "slirp4netns": "slirp", "slirp": "slirp",
                   "implicit": "builtin", "gvisor-tap-vsock": "slirp"}
PORT_DRIVER_NOTES = {
    "implicit": "pasta's implicit forwarding is not there: -p ports go through the builtin port driver",
    "gvisor-tap-vsock": "the engine forwards the ports (our slirp port driver), as gvisor-tap-vsock's would",
}
SUBID_SOURCES = {"auto": "auto", "dynamic": "auto", "static": "static", "none": "none"}
BINARY_FLAGS = ("slirp4netns-binary", "pasta-binary", "vpnkit-binary", "lxc-user-nic-binary", "lxc-user-nic-bridge")

CATEGORIES = ["Misc", "Mount", "Network", "Network [rootlessnet]", "Network [slirp4netns]", "Network [pasta]",
              "Network [vpnkit]", "Network [lxc-user-nic]", "Port", "Process", "State", "SubID", "Sandbox"]

FLAGS: list[Flag] = [
    # Misc
    Flag("debug", BOOL, False, "debug mode (accepted; rootlessnet prints no debug log)", category="Misc"),
    Flag("print-semver", STRING, "", "print a version component as a decimal integer [major, minor, patch]",
         category="Misc"),
    Flag("version", BOOL, False, "print the version", aliases=("v",), category="Misc"),
    Flag("quiet", BOOL, False, "no warnings or notes", aliases=("q",), category="Misc"),
    # Mount
    Flag("copy-up", LIST, [], 'mount a filesystem and copy-up the contents. e.g. "--copy-up=/etc" (repeatable)',
         category="Mount"),
    Flag("copy-up-mode", STRING, "tmpfs+symlink", "copy-up mode [tmpfs+symlink]", category="Mount"),
    Flag("propagation", STRING, "rprivate", "mount propagation [rprivate, rslave, ...]", category="Mount"),
    # Network
    Flag("net", STRING, "slirp", "network driver [slirp4netns (alias slirp: rootlessnet's engine), none, host; "
         "pasta, vpnkit, lxc-user-nic, gvisor-tap-vsock run rootlessnet's engine too]", category="Network"),
    Flag("mtu", INT, 0, "MTU for non-host network (0: 65520)", category="Network"),
    Flag("cidr", STRING, "", "CIDR for the network (default: 10.0.2.0/24)", category="Network"),
    Flag("ifname", STRING, "", "network interface name (default: tap0)", category="Network"),
    Flag("disable-host-loopback", BOOL, False, "prohibit connecting to 127.0.0.1:* on the host namespace "
         "(rootlessnet's default; =false allows it; the last of this and --allow-host-loopback wins)",
         category="Network"),
    Flag("ipv6", BOOL, False, "enable IPv6 (fd00::/64, gateway fd00::2, DNS fd00::3)", category="Network"),
    Flag("detach-netns", BOOL, False, "keep the command in the host netns; pin the new netns at STATE/netns",
         category="Network"),
    Flag("allow-host-loopback", BOOL, False, "let the gateway address reach the host's 127.0.0.1 / ::1",
         category="Network [rootlessnet]"),
    Flag("outbound", STRING, "all", "host-side destinations the engine may connect to: all|none|CIDR,...",
         category="Network [rootlessnet]", metavar="all|none|CIDR,..."),
    Flag("dns-upstream", STRING, None, "DNS server behind 10.0.2.3 (default: first nameserver of /etc/resolv.conf)",
         category="Network [rootlessnet]", metavar="ADDR[:PORT]"),
    Flag("dns-hosts", STRING, None, "answer DNS from this static table {name: address(es)}; nothing is forwarded",
         category="Network [rootlessnet]", metavar="FILE.json"),
    Flag("pcap", STRING, None, "write every frame on the tap to FILE (pcap)", category="Network [rootlessnet]",
         metavar="FILE"),
    Flag("hosts", STRING, "", "a multi-host network: one netns with its own tap per host (STATE/netns.d/NAME)",
         category="Network [rootlessnet]", metavar="A,B,..."),
    Flag("limit", LIST, [], "change one of the engine's bounds (repeatable), e.g. tcp_mem=256M (docs/robustness.md)",
         category="Network [rootlessnet]", metavar="NAME=VALUE"),
    Flag("no-vnet-hdr", BOOL, False, "open the tap without virtio headers", category="Network [rootlessnet]",
         hidden=True),
    Flag("slirp4netns-binary", STRING, "slirp4netns", "accepted; not run (rootlessnet's engine serves the network)",
         category="Network [slirp4netns]"),
    Flag("slirp4netns-sandbox", STRING, None, "confine the engine's filesystem access (Landlock) [auto, true, false]",
         category="Network [slirp4netns]"),
    Flag("slirp4netns-seccomp", STRING, None, "confine the engine's syscalls (seccomp) [auto, true, false]",
         category="Network [slirp4netns]"),
    Flag("pasta-binary", STRING, "pasta", "accepted; not run", category="Network [pasta]"),
    Flag("vpnkit-binary", STRING, "vpnkit", "accepted; not run", category="Network [vpnkit]"),
    Flag("lxc-user-nic-binary", STRING, "", "accepted; not run", category="Network [lxc-user-nic]"),
    Flag("lxc-user-nic-bridge", STRING, "lxcbr0", "accepted; not used", category="Network [lxc-user-nic]"),
    # Port
    Flag("port-driver", STRING, "", "port driver [none, builtin (default with a network), slirp4netns; "
         "implicit, gvisor-tap-vsock mapped]", category="Port"),
    Flag("publish", LIST, [], 'publish ports. e.g. "127.0.0.1:8080:80/tcp" (repeatable)', aliases=("p",),
         category="Port"),
    Flag("source-ip-transparent", BOOL, False, "accepted (rootlesskit 3); the builtin driver does not keep "
         "the client's address (the slirp4netns port driver does)", category="Port"),
    # Process
    Flag("pidns", BOOL, False, "create a PID namespace", category="Process"),
    Flag("cgroupns", BOOL, False, "create a cgroup namespace", category="Process"),
    Flag("utsns", BOOL, False, "create a UTS namespace", category="Process"),
    Flag("ipcns", BOOL, False, "create an IPC namespace", category="Process"),
    Flag("reaper", STRING, "auto", "enable process reaper. Requires --pidns. [auto,true,false]", category="Process"),
    Flag("evacuate-cgroup2", STRING, "", "accepted; not done (rootlessnet does not manage cgroups)",
         category="Process"),
    # State
    Flag("state-dir", STRING, None, "state directory (default: a temporary one, removed on exit)", category="State"),
    # SubID
    Flag("subid-source", STRING, "auto", "the source of the subids [auto, dynamic (= auto), static, none]",
         category="SubID"),
    # Sandbox
    Flag("sandbox", STRING, "auto", "once set up, the launcher confines itself: no_new_privs, Landlock, seccomp "
         "[auto, true, false] (docs/robustness.md)", category="Sandbox"),
]

DESCRIPTION = """\
NAME:
   rootlessnet run - rootless namespaces with a userspace network engine (rootlesskit's command line)

USAGE:
   rootlessnet run [global options] [--] COMMAND [ARGS...]

VERSION:
   {version}

DESCRIPTION:
   Runs COMMAND as uid 0 in new user + mount (+ network) namespaces, rootlesskit-style, with
   rootlessnet's engine on tap0. Every rootlesskit 1.x-3.x flag is accepted (docs/compat.md).
   Flags are parsed as Go's flag package does: -flag and --flag, --flag=false, last one wins;
   the first argument that is not a flag starts COMMAND.

OPTIONS:
"""


@dataclass
class Outcome:
    """What `rootlessnet run ARGS` asked for: options to run, or text to print and exit."""

    opts: RunOptions | None = None
    text: str | None = None
    notes: list[str] | None = None
    exit_code: int = 0


def flag_set(extra: list[Flag] = (), defaults: dict[str, Any] | None = None) -> FlagSet:
    """The run flags (plus `extra`, e.g. rootlessnet containerd's), with some defaults changed."""
    import dataclasses

    flags = [dataclasses.replace(f, default=defaults[f.name]) if defaults and f.name in defaults else f
             for f in FLAGS]
    return FlagSet(flags + list(extra))


def help_text(fs: FlagSet | None = None) -> str:
    fs = fs or flag_set()
    return DESCRIPTION.format(version=version_line()) + "\n".join(usage_lines(fs.flags, CATEGORIES + ["containerd"])) + "\n"


def version_line() -> str:
    return f"rootlesskit version {COMPAT_VERSION}"


def semver(component: str) -> str:
    major, minor, patch = COMPAT_VERSION.split(".")
    parts = {"major": major, "minor": minor, "patch": patch}
    if component not in parts:
        raise UserError(f"expected --print-semver=(major|minor|patch), got {component!r}")
    return parts[component]


def _choice(flag: str, value: str, allowed) -> str:
    if value not in allowed:
        raise UserError(f"unknown --{flag} {value!r}: use one of {', '.join(allowed)}")
    return value


def host_loopback(parsed: Parsed) -> bool:
    """--allow-host-loopback and --disable-host-loopback[=false]: the last one given wins (off by default)."""
    allowed = False
    for name, value in parsed.given:
        if name == "allow-host-loopback":
            allowed = bool(value)
        elif name == "disable-host-loopback":
            allowed = not value
    return allowed


def to_options(parsed: Parsed, notes: list[str]) -> RunOptions:
    """RunOptions from parsed run flags; `notes` gets one line per flag whose meaning we change."""
    v = parsed.values
    net_in = v["net"]
    if net_in not in NETS:
        raise UserError(f"unknown --net {net_in!r}: use one of slirp4netns (slirp), none, host "
                        "(pasta, vpnkit, lxc-user-nic, gvisor-tap-vsock: accepted, served by rootlessnet's engine)")
    net = NETS[net_in]
    if net_in in NET_NOTES:
        notes.append(f"--net={net_in}: {NET_NOTES[net_in]}")
    for name in BINARY_FLAGS:
        if parsed.was_given(name):
            notes.append(f"--{name}={v[name]}: not used (rootlessnet's engine serves the network)")
    if parsed.was_given("source-ip-transparent") and v["source-ip-transparent"]:
        notes.append("--source-ip-transparent: the builtin port driver does not keep the client's address "
                     "(--port-driver=slirp4netns does)")
    if v["evacuate-cgroup2"]:
        if not (v["cgroupns"] and v["pidns"]):
            raise UserError("--evacuate-cgroup2 requires --pidns and --cgroupns")
        notes.append(f"--evacuate-cgroup2={v['evacuate-cgroup2']}: not done (rootlessnet does not manage cgroups)")
    port_driver = None
    if v["port-driver"]:
        pd = v["port-driver"]
        if pd not in PORT_DRIVER_MAP:
            raise UserError(f"unknown --port-driver {pd!r}: use one of builtin, slirp4netns (slirp), none "
                            "(implicit, gvisor-tap-vsock: accepted, mapped)")
        if pd in PORT_DRIVER_NOTES:
            notes.append(f"--port-driver={pd}: {PORT_DRIVER_NOTES[pd]}")
        port_driver = PORT_DRIVER_MAP[pd]
        assert port_driver in PORT_DRIVERS
    mtu = v["mtu"]
    if mtu < 0 or mtu > 65521:
        raise UserError(f"--mtu must be <= 65521, got {mtu}")
    if mtu == 65521:  # slirp4netns's own maximum; ours is one less (a multiple of 8 for IPv4 fragments)
        notes.append("--mtu=65521: using 65520, the engine's maximum")
        mtu = 65520
    ifname = v["ifname"] or ("eth0" if net_in == "lxc-user-nic" else "tap0")
    if v["copy-up-mode"] != "tmpfs+symlink":
        raise UserError(f"unknown --copy-up-mode {v['copy-up-mode']!r}: use tmpfs+symlink")
    sandbox = _choice("sandbox", v["sandbox"], SANDBOX_MODES)
    sandbox_fs = v["slirp4netns-sandbox"]
    sandbox_seccomp = v["slirp4netns-seccomp"]
    for flag, value in (("slirp4netns-sandbox", sandbox_fs), ("slirp4netns-seccomp", sandbox_seccomp)):
        if value is not None:
            _choice(flag, value, SANDBOX_MODES)
    reaper = _choice("reaper", v["reaper"], REAPERS)
    propagation = _choice("propagation", v["propagation"], sorted(PROPAGATION))
    subid = SUBID_SOURCES.get(v["subid-source"])
    if subid is None:
        raise UserError(f"unknown --subid-source {v['subid-source']!r}: use one of auto, dynamic, static, none")
    return RunOptions(
        command=list(parsed.rest), net=net, detach_netns=v["detach-netns"], pidns=v["pidns"], utsns=v["utsns"],
        ipcns=v["ipcns"], cgroupns=v["cgroupns"], reaper=reaper, copy_up=list(v["copy-up"]),
        propagation=propagation, state_dir=v["state-dir"], subid_source=subid, quiet=v["quiet"],
        mtu=mtu or 65520, cidr=v["cidr"] or "10.0.2.0/24", ifname=ifname, ipv6=v["ipv6"],
        allow_host_loopback=host_loopback(parsed), outbound=v["outbound"], dns_upstream=v["dns-upstream"],
        pcap=v["pcap"], vnet_hdr=not v["no-vnet-hdr"], port_driver=port_driver, publish=list(v["publish"]),
        hosts=[h for h in v["hosts"].split(",") if h], dns_hosts=load_dns_hosts(v["dns-hosts"]),
        limits=list(v["limit"]), sandbox=sandbox, sandbox_fs=sandbox_fs, sandbox_seccomp=sandbox_seccomp,
        own_process=True,
    )


def parse(argv: list[str], fs: FlagSet | None = None) -> tuple[Outcome, Parsed | None]:
    """`rootlessnet run ARGV` -> what to do (raises UserError with exit_code 2 for a bad command line)."""
    fs = fs or flag_set()
    try:
        parsed = fs.parse(argv)
    except FlagError as e:
        raise UserError(f"{e} (see {PROG} --help)", exit_code=2) from None
    if parsed.help:
        return Outcome(text=help_text(fs)), parsed
    if parsed.values.get("version"):
        return Outcome(text=version_line() + "\n"), parsed
    if parsed.values.get("print-semver"):
        try:
            return Outcome(text=semver(parsed.values["print-semver"]) + "\n"), parsed
        except UserError as e:
            raise UserError(str(e), exit_code=2) from None
    notes: list[str] = []
    try:
        opts = to_options(parsed, notes)
    except UserError as e:  # a bad flag value: a command-line mistake, status 2 as for a bad flag
        raise UserError(str(e), exit_code=2) from None
    return Outcome(opts=opts, notes=notes), parsed


def print_notes(notes: list[str], quiet: bool) -> None:
    if quiet:
        return
    for line in notes:
        print(f"rootlessnet: note: {line}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    """`rootlessnet run ARGV`: the command's exit status."""
    from rootlessnet import instance

    outcome, _parsed = parse(argv)
    if outcome.text is not None:
        sys.stdout.write(outcome.text)
        sys.stdout.flush()
        return outcome.exit_code
    assert outcome.opts is not None
    print_notes(outcome.notes or [], outcome.opts.quiet)
    timing.phase("flags parsed")
    return instance.run(outcome.opts)
