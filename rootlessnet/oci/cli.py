"""`rootlessnet oci-hook ...` and `rootlessnet netns ...` subcommands (register with add_parsers)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from rootlessnet.errors import UserError


def _state_dir(value: str | None) -> str:
    value = value or os.environ.get("ROOTLESSNET_STATE_DIR") or os.environ.get("ROOTLESSKIT_STATE_DIR")
    if not value:
        raise UserError("no instance given: use --state-dir DIR (or set ROOTLESSKIT_STATE_DIR)")
    return os.path.abspath(value)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from rootlessnet.oci import cni

    p = sub.add_parser(
        "oci-hook", help="OCI runtime hook: CNI for runc containers inside an instance",
        description="As an OCI hook (runc gives the state on stdin): createRuntime runs CNI ADD for the container "
                    "inside the instance's namespaces and publishes the ports of the annotation rootlessnet/ports "
                    "(HOSTPORT:CONTAINERPORT/PROTO,...); poststop undoes it. "
                    "`rootlessnet oci-hook install CONFIG.json` adds both hooks to a bundle's config.json.")
    p.add_argument("phase", metavar="createRuntime|poststop|install", help="hook phase, or install")
    p.add_argument("config", nargs="?", metavar="CONFIG.json", help="(install) the bundle's config.json, edited in place")
    p.add_argument("--state-dir", help="the instance's state directory (default: $ROOTLESSKIT_STATE_DIR)")
    p.add_argument("--cni-conf-dir", default=cni.DEFAULT_CONF_DIR, metavar="DIR",
                   help=f"CNI configuration directory as seen inside the instance (default {cni.DEFAULT_CONF_DIR}; the first file in name order is used)")
    p.add_argument("--cni-path", default=":".join(cni.DEFAULT_CNI_PATH), metavar="DIRS",
                   help=f"where to look for CNI plugins (default {':'.join(cni.DEFAULT_CNI_PATH)})")
    p.add_argument("--log", metavar="FILE", help="log file (default STATE/oci-hook.log)")
    p.add_argument("--ifname", default="eth0", help="interface name in the container (default eth0)")
    g = p.add_argument_group("install")
    g.add_argument("--publish", "-p", metavar="PORTS", help="set the annotation rootlessnet/ports, e.g. 8080:80/tcp,8443:443/tcp")
    g.add_argument("--netns", metavar="NAME", help="make the container join the named netns NAME (rootlessnet netns add NAME)")
    g.add_argument("--timeout", type=int, default=120, help="hook timeout in seconds written in the spec (default 120)")
    p.set_defaults(func=cmd_oci_hook)

    p = sub.add_parser("netns", help="named network namespaces inside an instance",
                       description="Named network namespaces pinned at STATE/netns.d/NAME inside a running instance.")
    p.add_argument("action", choices=["add", "del", "delete", "list", "ls", "path"], help="add NAME, del NAME, list, path NAME")
    p.add_argument("name", nargs="?", help="namespace name")
    p.add_argument("--state-dir", help="the instance's state directory (default: $ROOTLESSKIT_STATE_DIR)")
    p.add_argument("--json", action="store_true", help="(list) machine-readable output")
    p.set_defaults(func=cmd_netns)


def _opts(args: argparse.Namespace):
    from rootlessnet.oci.hook import HookOptions

    return HookOptions(state_dir=_state_dir(args.state_dir), conf_dir=args.cni_conf_dir,
                       cni_path=[d for d in args.cni_path.split(":") if d], log=args.log, ifname=args.ifname)


def cmd_oci_hook(args: argparse.Namespace) -> int:
    from rootlessnet.oci import hook

    if args.phase == "install":
        if not args.config:
            raise UserError("missing CONFIG.json: use rootlessnet oci-hook install BUNDLE/config.json [--state-dir DIR]")
        opts = _opts(args)
        try:
            with open(args.config) as f:
                spec = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {args.config}: {e}") from None
        netns_path = None
        if args.netns:
            from rootlessnet.ns.netns import check_name, pin_path

            netns_path = pin_path(opts.state_dir, check_name(args.netns))
        hook.install(spec, opts, ports=args.publish, netns_path=netns_path, timeout=args.timeout)
        tmp = args.config + ".tmp"
        with open(tmp, "w") as f:
            json.dump(spec, f, indent=2)
            f.write("\n")
        os.replace(tmp, args.config)
        print(f"installed rootlessnet hooks (createRuntime, poststop) in {args.config}", file=sys.stderr)
        return 0
    if args.phase not in hook.PHASES_ADD + hook.PHASES_DEL:
        raise UserError(f"unknown phase {args.phase!r}: use createRuntime, poststop or install")
    if args.config:
        raise UserError(f"unexpected argument {args.config!r}")
    return hook.run_hook(args.phase, _opts(args), sys.stdin)


def cmd_netns(args: argparse.Namespace) -> int:
    from rootlessnet.ns import netns as nn

    state_dir = _state_dir(args.state_dir)
    action = {"delete": "del", "ls": "list"}.get(args.action, args.action)
    if action in ("add", "del", "path") and not args.name:
        raise UserError(f"missing NAME: use rootlessnet netns {action} NAME")
    if action == "list" and args.name:
        raise UserError("list takes no NAME")
    if action == "add":
        print(nn.add(state_dir, args.name))
    elif action == "del":
        from rootlessnet.oci import hook

        nn.check_exists(state_dir, args.name)
        hook.detach_named_netns(state_dir, args.name)  # CNI DEL first: it needs the netns alive
        nn.delete(state_dir, args.name)
    elif action == "path":
        from rootlessnet.ns import statedir as sd

        path = nn.pin_path(state_dir, nn.check_name(args.name))
        if not os.path.lexists(path):
            raise UserError(f"no network namespace named {args.name!r} in {state_dir}")
        print(f"{path}\t/proc/{sd.read_child_pid(state_dir)}/root{path}")
    else:
        data = nn.inspect(state_dir)
        if args.json:
            json.dump(data, sys.stdout, indent=1)
            print()
        else:
            print(nn.format_table(data))
    return 0
