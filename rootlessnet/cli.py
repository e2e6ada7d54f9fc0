"""Command-line entry points: `rootlessnet SUBCOMMAND ...` and `python -m rootlessnet`.

`run`, `containerd` and `slirp4netns` keep the command lines of the tools
they stand in for (compat/): Go-style flags for the first two, slirp4netns's
getopt for the last; they are dispatched before argparse sees them. The
others are argparse subcommands.

Every user mistake ends as one line on stderr and a non-zero exit status, and
so does an environment failure (out of fds, a full disk): tracebacks are
for bugs only.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from rootlessnet import __version__
from rootlessnet.errors import describe, find_environment_error, find_user_error


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line that says what to do."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _command(rest: list[str]) -> list[str]:
    return rest[1:] if rest[:1] == ["--"] else rest


def _own_parser(sub: argparse._SubParsersAction, name: str, help: str, usage: str) -> None:
    """A subcommand whose command line is parsed by its compat module (listed here for --help)."""
    p = sub.add_parser(name, add_help=False, help=help, description=f"{usage} (see rootlessnet {name} --help)")
    p.add_argument("args", nargs=argparse.REMAINDER)


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
    from rootlessnet.ns.statedir import from_environment

    return nsenter.run(from_environment(args.state_dir), _command(args.command), net=not args.no_net,
                       netns=args.netns, hostname=args.hostname)


def add_api_parsers(sub: argparse._SubParsersAction) -> None:
    from rootlessnet.api.cli import add_parsers

    add_parsers(sub)


def add_shims_parser(sub: argparse._SubParsersAction) -> None:
    from rootlessnet.compat.shims import add_parser

    add_parser(sub)


def add_oci_parsers(sub: argparse._SubParsersAction) -> None:
    from rootlessnet.oci.cli import add_parsers

    add_parsers(sub)


def add_own_parsers(sub: argparse._SubParsersAction) -> None:
    _own_parser(sub, "run", "run a command in new rootless namespaces (rootlesskit's flags)",
                "rootlessnet run [FLAGS] [--] CMD [ARGS...]")
    _own_parser(sub, "slirp4netns", "the engine alone, with slirp4netns's command line",
                "rootlessnet slirp4netns [OPTIONS] PID|PATH [TAPNAME]")
    _own_parser(sub, "containerd", "run a rootless containerd (in a rootlessnet instance)",
                "rootlessnet containerd [RUN FLAGS] [-- CONTAINERD ARGS]")


PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_own_parsers, add_nsenter_parser, add_api_parsers, add_shims_parser, add_oci_parsers]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rootlessnet", description="Rootless networking for Linux.")
    parser.add_argument("--version", action="version", version=f"rootlessnet {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser)
    for add in PARSERS:
        add(sub)
    return parser


def _run(argv: list[str]) -> int:
    from rootlessnet.compat import rootlesskit

    return rootlesskit.main(argv)


def _slirp4netns(argv: list[str]) -> int:
    from rootlessnet.compat import slirp4netns

    return slirp4netns.main(argv)


def _containerd(argv: list[str]) -> int:
    from rootlessnet.oci import containerd

    return containerd.main(argv)


OWN_COMMAND_LINES: dict[str, Callable[[list[str]], int]] = {
    "run": _run, "containerd": _containerd, "slirp4netns": _slirp4netns}


def _exit_now(code: int) -> None:
    from rootlessnet.ns import timing

    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            code = code or 120  # as the interpreter's exit would: output was lost
    timing.phase("exit")
    os._exit(code)


def report(prog: str, exc: BaseException) -> int | None:
    """Print `exc` as one line if it is a user mistake or an environment failure; the exit status, or None."""
    err = find_user_error(exc)
    if err is not None:
        print(f"{prog}: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    env = find_environment_error(exc)
    if env is not None:
        print(f"{prog}: {describe(env)}", file=sys.stderr, flush=True)
        return 1
    return None


def main(argv: list[str] | None = None) -> int:
    """The command line; `argv` None: this process is `rootlessnet` (sys.argv), and `run` leaves
    with os._exit once done (its instance is stopped and cleaned by then): tearing down an
    interpreter that loaded trio and the engine takes 20-40 ms and does nothing useful."""
    from rootlessnet.ns import timing

    timing.start()
    program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    own = OWN_COMMAND_LINES.get(argv[0]) if argv else None
    if own is not None:
        if argv[0] == "slirp4netns":  # it reports its own errors, in slirp4netns's words
            return own(argv[1:])
        try:
            code = own(argv[1:])
        except KeyboardInterrupt:
            code = 130
        except BaseException as e:  # noqa: BLE001 - unwrap nursery exception groups
            code = report(f"rootlessnet {argv[0]}", e)
            if code is None:
                raise
        if program and argv[0] == "run":
            _exit_now(code)
        return code
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
        code = report(f"rootlessnet {args.subcommand}", e)
        if code is None:
            raise
        return code
