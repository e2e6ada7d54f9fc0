"""Command-line entry points: `rootlessnet SUBCOMMAND ...` and `python -m rootlessnet`.

Every user mistake ends as one line on stderr and a non-zero exit status;
tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from rootlessnet import __version__
from rootlessnet.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line that says what to do."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _command(rest: list[str]) -> list[str]:
    return rest[1:] if rest[:1] == ["--"] else rest


def _default_state_dir(value: str | None) -> str:
    value = value or os.environ.get("ROOTLESSNET_STATE_DIR") or os.environ.get("ROOTLESSKIT_STATE_DIR")
    if not value:
        raise UserError("no instance given: use --state-dir DIR (or set ROOTLESSKIT_STATE_DIR)")
    return value


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    from rootlessnet.ns.launcher import NETS, REAPERS, SANDBOX_MODES
    from rootlessnet.ns.idmap import SUBID_SOURCES
    from rootlessnet.ns.syscalls import PROPAGATION

    p = sub.add_parser("run", help="run a command in new rootless namespaces",
                       description="Run CMD in a new user + mount (+ network) namespace as uid 0, rootlesskit-style.")
    p.add_argument("--net", default="slirp", choices=NETS, help="network: slirp (userspace engine on tap0, default; slirp4netns is an alias), none (lo only) or host")
    p.add_argument("--detach-netns", action="store_true", help="keep CMD in the host netns; pin a new netns at STATE/netns")
    p.add_argument("--pidns", action="store_true", help="new PID namespace with a fresh /proc")
    p.add_argument("--utsns", action="store_true", help="new UTS namespace")
    p.add_argument("--ipcns", action="store_true", help="new IPC namespace")
    p.add_argument("--cgroupns", action="store_true", help="new cgroup namespace")
    p.add_argument("--reaper", default="auto", choices=REAPERS, help="reap zombies (auto: with --pidns)")
    p.add_argument("--copy-up", action="append", default=[], metavar="DIR", help="make DIR writable (tmpfs + symlinks to the original); repeatable")
    p.add_argument("--copy-up-mode", default="tmpfs+symlink", choices=["tmpfs+symlink"], help=argparse.SUPPRESS)
    p.add_argument("--propagation", default="rprivate", choices=sorted(PROPAGATION), help="mount propagation of / (default rprivate)")
    p.add_argument("--state-dir", help="state directory (default: a temporary one, removed on exit)")
    p.add_argument("--subid-source", default="auto", choices=SUBID_SOURCES, help="where subordinate ids come from (none: single-id map)")
    p.add_argument("-q", "--quiet", action="store_true", help="no warnings")
    p.add_argument("--sandbox", default="auto", choices=SANDBOX_MODES,
                   help="once set up, the launcher (engine, ports, API) confines itself: no_new_privs, Landlock, "
                        "seccomp (auto, default: what the kernel offers; true: all or fail; docs/robustness.md)")
    p.add_argument("--slirp4netns-sandbox", choices=SANDBOX_MODES, metavar="auto|true|false",
                   help="rootlesskit's flag: the filesystem (Landlock) part of --sandbox")
    p.add_argument("--slirp4netns-seccomp", choices=SANDBOX_MODES, metavar="auto|true|false",
                   help="rootlesskit's flag: the seccomp part of --sandbox")
    g = p.add_argument_group("--net=slirp")
    g.add_argument("--mtu", type=int, default=65520, help="MTU of the tap device (1280..65520, default 65520)")
    g.add_argument("--cidr", default="10.0.2.0/24", help="virtual IPv4 network (default 10.0.2.0/24)")
    g.add_argument("--ifname", default="tap0", help="name of the tap device (default tap0)")
    g.add_argument("--ipv6", action="store_true", help="IPv6 too: fd00::/64, gateway fd00::2, DNS fd00::3 (SLAAC)")
    g.add_argument("--allow-host-loopback", action="store_true", help="let the gateway address reach the host's 127.0.0.1 / ::1")
    g.add_argument("--disable-host-loopback", action="store_true", help="(default; accepted for rootlesskit compatibility)")
    g.add_argument("--outbound", default="all", metavar="all|none|CIDR,...", help="host-side destinations the engine may connect to")
    g.add_argument("--dns-upstream", metavar="ADDR[:PORT]", help="DNS server behind 10.0.2.3 (default: first nameserver of /etc/resolv.conf)")
    g.add_argument("--pcap", metavar="FILE", help="write every frame on the tap to FILE (pcap)")
    g.add_argument("--no-vnet-hdr", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--hosts", metavar="A,B,...", help="a multi-host network: one netns with its own tap per host (STATE/netns.d/NAME), switched by the engine")
    g.add_argument("--dns-hosts", metavar="FILE.json", help="answer DNS from this static table {name: address(es)}; everything else is NXDOMAIN and no upstream is asked")
    g.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                   help="change one of the engine's bounds (repeatable), e.g. tcp_mem=256M; names and defaults in docs/robustness.md")
    g = p.add_argument_group("ports")
    g.add_argument("--port-driver", choices=["builtin", "slirp", "slirp4netns", "none"],
                   help="builtin (default with --net=slirp): the child dials, bytes move by splice; slirp: the engine forwards")
    g.add_argument("-p", "--publish", action="append", default=[], metavar="[PARENTIP:]PARENTPORT[:CHILDIP]:CHILDPORT/PROTO",
                   help="publish a port (repeatable), e.g. 8080:80/tcp")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import trio

    from rootlessnet.ns.launcher import RunOptions, run_command

    opts = RunOptions(
        command=_command(args.command), net=args.net, detach_netns=args.detach_netns, pidns=args.pidns,
        utsns=args.utsns, ipcns=args.ipcns, cgroupns=args.cgroupns, reaper=args.reaper,
        copy_up=args.copy_up, propagation=args.propagation, state_dir=args.state_dir,
        subid_source=args.subid_source, quiet=args.quiet, mtu=args.mtu, cidr=args.cidr, ifname=args.ifname,
        ipv6=args.ipv6, allow_host_loopback=args.allow_host_loopback and not args.disable_host_loopback,
        outbound=args.outbound, dns_upstream=args.dns_upstream, pcap=args.pcap, vnet_hdr=not args.no_vnet_hdr,
        port_driver=args.port_driver, publish=args.publish,
        hosts=[h for h in (args.hosts or "").split(",") if h], dns_hosts=_load_dns_hosts(args.dns_hosts),
        limits=args.limit, sandbox=args.sandbox, sandbox_fs=args.slirp4netns_sandbox, sandbox_seccomp=args.slirp4netns_seccomp,
        own_process=True,
    )
    opts.validate()
    return trio.run(run_command, opts)


def _load_dns_hosts(path: str | None) -> dict[str, list[str]] | None:
    """--dns-hosts FILE.json: {name: "addr" | ["addr", ...]}."""
    if path is None:
        return None
    import ipaddress
    import json

    try:
        with open(path) as f:
            table = json.load(f)
    except OSError as e:
        raise UserError(f"--dns-hosts {path}: {e.strerror}") from None
    except ValueError as e:
        raise UserError(f"--dns-hosts {path}: not JSON ({e})") from None
    if not isinstance(table, dict):
        raise UserError(f"--dns-hosts {path}: must be a JSON object {{name: address or [addresses]}}")
    out: dict[str, list[str]] = {}
    for name, addrs in table.items():
        addrs = [addrs] if isinstance(addrs, str) else addrs
        if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
            raise UserError(f"--dns-hosts {path}: {name!r} must map to an address or a list of addresses")
        for a in addrs:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise UserError(f"--dns-hosts {path}: {a!r} (for {name!r}) is not an IP address") from None
        out[name] = addrs
    return out


def add_nsenter_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nsenter", help="run a command inside a running instance",
                       description="Run CMD in a running instance's user, mount and network namespaces.")
    p.add_argument("--state-dir", help="the instance's state directory (default: $ROOTLESSKIT_STATE_DIR)")
    p.add_argument("--no-net", action="store_true", help="stay in the host network namespace")
    p.add_argument("--netns", metavar="NAME", help="a named netns of the instance (STATE/netns.d/NAME, e.g. a --hosts host)")
    p.add_argument("--hostname", metavar="NAME", help="run in a new UTS namespace with this hostname")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    p.set_defaults(func=cmd_nsenter)


def cmd_nsenter(args: argparse.Namespace) -> int:
    from rootlessnet.ns import nsenter

    return nsenter.run(_default_state_dir(args.state_dir), _command(args.command), net=not args.no_net,
                       netns=args.netns, hostname=args.hostname)


def add_api_parsers(sub: argparse._SubParsersAction) -> None:
    from rootlessnet.api.cli import add_parsers

    add_parsers(sub)


def add_slirp4netns_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("slirp4netns", add_help=False, help="the engine alone, with slirp4netns's command line",
                       description="slirp4netns-compatible front end: rootlessnet slirp4netns --help")
    p.add_argument("args", nargs=argparse.REMAINDER)  # main() dispatches before argparse; listed for --help


def add_oci_parsers(sub: argparse._SubParsersAction) -> None:
    from rootlessnet.oci.cli import add_parsers

    add_parsers(sub)


def add_containerd_parser(sub: argparse._SubParsersAction) -> None:
    from rootlessnet.oci.containerd import add_parsers

    add_parsers(sub)


PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_run_parser, add_nsenter_parser, add_api_parsers, add_slirp4netns_parser, add_oci_parsers, add_containerd_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rootlessnet", description="Rootless networking for Linux.")
    parser.add_argument("--version", action="version", version=f"rootlessnet {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser)
    for add in PARSERS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["slirp4netns"]:  # its own command line, --help included (rootlesskit greps it)
        from rootlessnet.slirp4netns import main as slirp4netns_main

        return slirp4netns_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        print("rootlessnet: missing subcommand (see rootlessnet --help)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BaseException as e:  # noqa: BLE001 - unwrap nursery exception groups
        err = find_user_error(e)
        if err is None:
            raise
        print(f"rootlessnet {args.subcommand}: {err}", file=sys.stderr)
        return err.exit_code


def find_user_error(exc: BaseException) -> UserError | None:
    """The UserError in `exc`, looking inside (nested) exception groups."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = find_user_error(sub)
            if found is not None:
                return found
    return None
