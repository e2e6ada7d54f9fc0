"""compat.shims: `rootlessnet shims DIR` — executables named after the tools we stand in for.

Scripts such as Docker's `dockerd-rootless.sh` and nerdctl's
`containerd-rootless.sh` look `rootlesskit` and `slirp4netns` up on PATH
(and run `slirp4netns --help` to pick features). `rootlessnet shims DIR`
writes, into DIR:

    rootlesskit    exec rootlessnet run [--run-flag...] "$@"
    slirp4netns    exec rootlessnet slirp4netns [--slirp4netns-flag...] "$@"

so `PATH=DIR:$PATH dockerd-rootless.sh` runs on rootlessnet unmodified.
The scripts name the interpreter that runs this command (and PYTHONPATH
when rootlessnet would not be importable from it otherwise). Flags given
with --run-flag / --slirp4netns-flag are baked in before the caller's, so a
caller's own flag still wins (the last occurrence does). A file in DIR that
we did not write is not replaced without --force.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

from rootlessnet import __version__
from rootlessnet.errors import UserError

MARKER = "# written by `rootlessnet shims`"
SHIMS = {"rootlesskit": "run", "slirp4netns": "slirp4netns"}


def _python_env() -> list[str]:
    """["PYTHONPATH=..."] when `sys.executable -c 'import rootlessnet'` would not find this rootlessnet."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run([sys.executable, "-c", "import rootlessnet, os; print(os.path.dirname(os.path.dirname("
                            "os.path.abspath(rootlessnet.__file__))))"],
                           capture_output=True, text=True, env=env, cwd="/", timeout=60)
    if probe.returncode == 0 and probe.stdout.strip() == pkg_parent:
        return []
    return [f"PYTHONPATH={pkg_parent}"]


def script(subcommand: str, baked: list[str], env: list[str]) -> str:
    words = [*env, sys.executable, "-m", "rootlessnet", subcommand, *baked]
    exe = "exec env " + " ".join(shlex.quote(w) for w in words) if env else \
        "exec " + " ".join(shlex.quote(w) for w in words)
    return (f"#!/bin/sh\n{MARKER} {__version__}: {subcommand} under the name of the tool it replaces\n"
            f'{exe} "$@"\n')


def write_shims(directory: str, *, run_flags: list[str] = (), slirp4netns_flags: list[str] = (),
                force: bool = False) -> list[str]:
    """Write the shims into `directory` (created if missing); the paths written."""
    if not directory.strip():
        raise UserError("DIR is empty: give the directory to write the shims into")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {directory}: {e.strerror}") from None
    env = _python_env()
    written = []
    for name, sub in SHIMS.items():
        path = os.path.join(directory, name)
        if os.path.lexists(path) and not force:
            try:
                with open(path, errors="replace") as f:
                    ours = MARKER in f.read(4096)
            except OSError:
                ours = False
            if not ours:
                raise UserError(f"{path} exists and was not written by rootlessnet shims (use --force to replace it)")
        baked = list(run_flags if sub == "run" else slirp4netns_flags)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(script(sub, baked, env))
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror}") from None
        written.append(path)
    return written


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shims", help="write rootlesskit and slirp4netns executables that run rootlessnet",
        description="Write DIR/rootlesskit (rootlessnet run) and DIR/slirp4netns (rootlessnet slirp4netns), so that "
                    "scripts that look those tools up on PATH run on rootlessnet: PATH=DIR:$PATH dockerd-rootless.sh")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--run-flag", action="append", default=[], metavar="FLAG",
                   help="a flag the rootlesskit shim passes before the caller's (repeatable), e.g. "
                        "--run-flag=--dns-upstream=127.0.0.1:53")
    p.add_argument("--slirp4netns-flag", action="append", default=[], metavar="FLAG",
                   help="a flag the slirp4netns shim passes before the caller's (repeatable)")
    p.add_argument("--force", action="store_true", help="replace files in DIR that rootlessnet did not write")
    p.set_defaults(func=cmd_shims)


def cmd_shims(args: argparse.Namespace) -> int:
    from rootlessnet.compat import goflags, rootlesskit

    # check the baked flags now, not when a script runs them
    try:
        rootlesskit.flag_set().parse(list(args.run_flag) + ["true"])
    except goflags.FlagError as e:
        raise UserError(f"--run-flag: {e}") from None
    for path in write_shims(args.directory, run_flags=args.run_flag, slirp4netns_flags=args.slirp4netns_flag,
                            force=args.force):
        print(path)
    return 0
