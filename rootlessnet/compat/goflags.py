"""compat.goflags: command lines parsed the way Go's `flag` package parses them.

rootlesskit (urfave/cli v2 over Go's flag.FlagSet) is what tools that start
rootlesskit were written against, so `rootlessnet run` reads its flags the
same way:

- `-flag` and `--flag` are the same; `-flag=value`, `-flag value`;
- a boolean takes no separate value: `--flag` is true, `--flag=false` false
  (strconv.ParseBool: 1 0 t f T F true false TRUE FALSE True False);
  `--flag false` leaves `false` as the first argument of the command;
- an integer is strconv.ParseInt(s, 0, 64): 10, 0x1a, 0o17, 017, 0b11, 1_000;
- a repeated flag: the last occurrence wins; a list flag (urfave's
  StringSliceFlag) collects every occurrence and splits each at commas;
- parsing stops at the first argument that is not a flag (the command), at
  `--` (dropped), or at a lone `-`.

`parse()` returns the values in the order given, so that flags which act on
the same setting (`--allow-host-loopback`, `--disable-host-loopback=false`)
can be resolved by position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

BOOL, STRING, INT, LIST = "bool", "string", "int", "list"

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
_GO_INT = re.compile(r"[+-]?(0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO](_?[0-7])+|0(_?[0-7])*|[1-9](_?[0-9])*)")


class FlagError(ValueError):
    """A command line Go's flag package would refuse; the message is the one it prints (plus a hint)."""


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str
    default: Any = None
    help: str = ""
    aliases: tuple[str, ...] = ()
    category: str = ""
    hidden: bool = False
    metavar: str = "value"

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass
class Parsed:
    """What the command line said: each flag's final value, every occurrence in order, and the rest."""

    values: dict[str, Any]
    given: list[tuple[str, Any]] = field(default_factory=list)  # (flag name, value) in command-line order
    rest: list[str] = field(default_factory=list)
    help: bool = False

    def was_given(self, name: str) -> bool:
        return any(n == name for n, _ in self.given)


def parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("parse error")


def parse_int(text: str) -> int:
    """strconv.ParseInt(text, 0, 64)."""
    if not _GO_INT.fullmatch(text):
        raise ValueError("parse error")
    t = text.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    if len(t) > 1 and t[0] == "0" and t[1] in "0123456789":
        value = int(t, 8)  # Go's legacy octal: 017
    else:
        value = int(t, 0)
    value *= sign
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError("value out of range")
    return value


def _convert(flag: Flag, text: str) -> Any:
    if flag.kind == BOOL:
        return parse_bool(text)
    if flag.kind == INT:
        return parse_int(text)
    if flag.kind == LIST:
        return [part.strip() for part in text.split(",")]
    return text


class FlagSet:
    def __init__(self, flags: list[Flag]):
        self.flags = flags
        self.by_name: dict[str, Flag] = {}
        for f in flags:
            for n in f.names:
                if n in self.by_name:
                    raise ValueError(f"flag {n} defined twice")
                self.by_name[n] = f

    def defaults(self) -> dict[str, Any]:
        return {f.name: list(f.default or []) if f.kind == LIST else f.default for f in self.flags}

    def parse(self, args: list[str]) -> Parsed:
        out = Parsed(self.defaults())
        lists_started: set[str] = set()
        i = 0
        while i < len(args):
            s = args[i]
            if len(s) < 2 or s[0] != "-":
                break  # the first non-flag argument: the command starts here
            minuses = 2 if s[1] == "-" else 1
            if minuses == 2 and len(s) == 2:
                i += 1  # "--" ends the flags and is dropped
                break
            name = s[minuses:]
            if not name or name[0] in "-=":
                raise FlagError(f"bad flag syntax: {s}")
            i += 1
            has_value, value = False, ""
            if "=" in name[1:]:
                name, value = name.split("=", 1)
                has_value = True
            flag = self.by_name.get(name)
            if flag is None:
                if name in ("help", "h"):
                    out.help = True
                    return out
                raise FlagError(f"flag provided but not defined: -{name}")
            if flag.kind == BOOL:
                if not has_value:
                    value = "true"
            elif not has_value:
                if i >= len(args):
                    raise FlagError(f"flag needs an argument: -{name}")
                value = args[i]
                i += 1
            try:
                converted = _convert(flag, value)
            except ValueError as e:
                what = "invalid boolean value" if flag.kind == BOOL else "invalid value"
                raise FlagError(f"{what} {value!r} for flag -{name}: {e}") from None
            if flag.kind == LIST:
                if flag.name not in lists_started:  # occurrences replace the default, then accumulate
                    out.values[flag.name] = []
                    lists_started.add(flag.name)
                out.values[flag.name] += converted
            else:
                out.values[flag.name] = converted
            out.given.append((flag.name, converted))
        out.rest = args[i:]
        return out


def usage_lines(flags: list[Flag], categories: list[str]) -> list[str]:
    """An OPTIONS section in urfave/cli's layout (rootlesskit's --help), grouped by category."""
    lines: list[str] = []
    for cat in categories:
        members = [f for f in flags if f.category == cat and not f.hidden]
        if not members:
            continue
        lines.append(f"  {cat}:")
        for f in members:
            names = ", ".join(("--" if len(n) > 1 else "-") + n + ("" if f.kind == BOOL else f" {f.metavar}")
                              for n in f.names)
            text = f.help
            if f.kind == BOOL:
                text += f" (default: {'true' if f.default else 'false'})"
            elif f.default not in (None, "", [], ()):
                text += f" (default: {f.default!r})".replace("'", '"')
            lines.append(f"    {names:<32} {text}".rstrip())
        lines.append("")
    return lines
