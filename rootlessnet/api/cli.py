"""api.cli: `rootlessnet ports list|add|remove`, `rootlessnet info`, `rootlessnet stats`.

The rootlessctl equivalents, talking to a running instance's `STATE/api.sock`
(or `--socket PATH`). Register with `add_parsers(sub)` on the main
subparsers object; each command's `func(args)` returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Iterable, TextIO

from rootlessnet.api.client import ApiClient
from rootlessnet.errors import UserError
from rootlessnet.port.spec import SpecError, parse_spec

SOCKET_NAME = "api.sock"


def _common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    p.add_argument("--state-dir", metavar="DIR",
                   help="the instance's state directory (default: $ROOTLESSNET_STATE_DIR or $ROOTLESSKIT_STATE_DIR)")
    p.add_argument("--socket", metavar="PATH", help=f"the API socket (default: STATE/{SOCKET_NAME})")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ports", help="list, add or remove port forwardings of a running instance",
                       description="Port forwardings of a running instance (like rootlessctl list-ports/add-ports/remove-ports).")
    p.set_defaults(func=lambda args: _missing(p))
    psub = p.add_subparsers(dest="ports_command", metavar="COMMAND", parser_class=type(p))

    q = psub.add_parser("list", help="list port forwardings", description="List the port forwardings.")
    _common(q)
    q.set_defaults(func=cmd_ports_list)

    q = psub.add_parser("add", help="add port forwardings",
                        description="Add port forwardings; prints one id per line.")
    q.add_argument("specs", nargs="+", metavar="SPEC",
                   help="[PARENTIP:]PARENTPORT[:CHILDIP]:CHILDPORT/PROTO, e.g. 127.0.0.1:8080:80/tcp")
    _common(q)
    q.set_defaults(func=cmd_ports_add)

    q = psub.add_parser("remove", help="remove port forwardings", description="Remove port forwardings by id.")
    q.add_argument("ids", nargs="+", metavar="ID", help="an id from `rootlessnet ports list`")
    _common(q, json_flag=False)
    q.set_defaults(func=cmd_ports_remove)

    q = sub.add_parser("info", help="show a running instance's info",
                       description="Show the API info of a running instance (like rootlessctl info).")
    _common(q)
    q.set_defaults(func=cmd_info)

    q = sub.add_parser("stats", help="show a running instance's network counters",
                       description="Show the network engine's counters of a running instance.")
    _common(q)
    q.set_defaults(func=cmd_stats)


def _missing(p: argparse.ArgumentParser) -> int:
    p.print_usage(sys.stderr)
    print(f"{p.prog}: missing command: list, add or remove (see {p.prog} --help)", file=sys.stderr)
    return 2


def socket_path(args: argparse.Namespace) -> str:
    if getattr(args, "socket", None):
        return args.socket
    from rootlessnet.ns.statedir import from_environment

    return os.path.join(from_environment(getattr(args, "state_dir", None)), SOCKET_NAME)


def client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(socket_path(args))


def _print_json(obj: Any, out: TextIO) -> None:
    print(json.dumps(obj, indent=2), file=out)


def table(rows: Iterable[Iterable[Any]], out: TextIO) -> None:
    """Columns padded like rootlessctl's Go tabwriter (padding 4), without trailing blanks."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows if i < len(r)) + 4 for i in range(max(map(len, rows)))]
    for r in rows:
        print("".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip(), file=out)


def cmd_ports_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    ports = client(args).list_ports()
    if args.json:
        _print_json(ports, out)
        return 0
    rows = [["ID", "PROTO", "PARENTIP", "PARENTPORT", "CHILDIP", "CHILDPORT"]]
    for st in ports:
        s = st.get("spec", {})
        rows.append([st.get("id", ""), s.get("proto", ""), s.get("parentIP", ""), s.get("parentPort", ""),
                     s.get("childIP", ""), s.get("childPort", "")])
    table(rows, out)
    return 0


def cmd_ports_add(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        specs = [parse_spec(s) for s in args.specs]
    except SpecError as e:
        raise UserError(str(e)) from None
    c = client(args)
    for spec in specs:  # like rootlessctl: one request per spec, stop at the first refusal
        st = c.add_port(spec)
        if args.json:
            print(json.dumps(st), file=out)
        else:
            print(st["id"], file=out)
        out.flush()
    return 0


def cmd_ports_remove(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    ids = []
    for raw in args.ids:
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise UserError(f"bad port id {raw!r}: use an id from `rootlessnet ports list`")
        ids.append(int(raw))
    c = client(args)
    for port_id in ids:
        c.remove_port(port_id)
        print(port_id, file=out)
        out.flush()
    return 0


def cmd_info(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    info = client(args).info()
    if args.json:
        _print_json(info, out)
        return 0
    rows: list[list[Any]] = []
    version = info.get("version", "?")
    if info.get("apiVersion"):
        version = f"{version} (API {info['apiVersion']})"
    rows.append(["Version:", version])
    rows.append(["State dir:", info.get("stateDir", "")])
    rows.append(["Child PID:", info.get("childPID", "")])
    net = info.get("networkDriver") or {}
    if net.get("driver"):
        rows.append(["Network driver:", net["driver"]])
        if net.get("childIP"):
            rows.append(["  Child IP:", net["childIP"] + (" (dynamic)" if net.get("dynamicChildIP") else "")])
        if net.get("dns"):
            rows.append(["  DNS:", ", ".join(map(str, net["dns"]))])
    else:
        rows.append(["Network driver:", "host (none)"])
    port = info.get("portDriver") or {}
    if port.get("driver"):
        rows.append(["Port driver:", port["driver"]])
        if port.get("protos"):
            rows.append(["  Protos:", ", ".join(map(str, port["protos"]))])
        rows.append(["  Loopback child IP:", "disallowed" if port.get("disallowLoopbackChildIP") else "allowed"])
    else:
        rows.append(["Port driver:", "none"])
    box = info.get("sandbox")
    if isinstance(box, dict):  # rootlessnet's extension (docs/robustness.md)
        what = (["no_new_privs"] if box.get("noNewPrivs") else []) + (
            [f"Landlock ABI {box.get('landlockABI')}"] if box.get("landlock") == "on" else []) + (
            ["seccomp"] if box.get("seccomp") == "on" else [])
        rows.append(["Sandbox:", ", ".join(what) or "off"])
    _kv(rows, out)
    return 0


def _kv(rows: list[list[Any]], out: TextIO) -> None:
    width = max(len(str(k)) for k, _ in rows)
    for k, v in rows:
        print(f"{str(k).ljust(width)}  {v}", file=out)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        items: list[tuple[str, Any]] = []
        for k, v in obj.items():
            items += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return items
    if isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj):
        items = []
        for i, v in enumerate(obj):
            items += _flatten(v, f"{prefix}[{i}]")
        return items
    return [(prefix, obj)]


def cmd_stats(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    stats = client(args).stats()
    if args.json:
        _print_json(stats, out)
        return 0
    rows = _flatten(stats)
    if not rows:
        print("(no counters)", file=out)
        return 0
    rows = [(k, json.dumps(v) if isinstance(v, (list, bool)) or v is None else v) for k, v in rows]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}", file=out)
    return 0
