"""stack.linkapi: the API routes of the switch's impairments, holds and partitions.

Called by the instance's API extension (NetworkApi) for these paths, with
the engine (its `links` table, `by_name` ports, and `control()` to change
the datapath from the API's thread, or `_arm_timer()` to re-arm its timer):

  GET  /v1/links                 {NAME: {"up": SETTINGS, "down": SETTINGS}} for every host and "main"
  GET  /v1/links/NAME            {"up": ..., "down": ..., "statistics": {...}}
  PUT  /v1/links/NAME            SETTINGS (+ "direction": "up" | "down" | "both"): replaces them ({} clears)
  GET  /v1/pairs                 [{"src", "dst", "settings"}]
  PUT  /v1/pairs/SRC/DST         SETTINGS (+ "both": true for DST->SRC too; {} clears); DELETE clears SRC->DST
  PUT  /v1/holds                 {"link": NAME, "direction": ...} or {"pair": [SRC, DST], "both": bool}
  DELETE /v1/holds               the same body: release (the held frames leave in order)
  GET  /v1/partition             {"groups": [[...]], "blocked": [[SRC, DST], ...]}
  PUT  /v1/partition             {"groups": [[...], [...]]} both ways between groups, and/or
                                 {"block": [{"from": [...], "to": [...]}]} one way; replaces the partition
  DELETE /v1/partition           heal
  GET  /v1/impairments           the table's statistics per queue, holds and blocked pairs

SETTINGS are stack.impair.Impairment's fields (JSON), or {"netem": "delay 100ms
10ms distribution normal loss 1%"} in tc's words. Names are the hosts,
"main" and, in pairs and partitions, "host" (the outside). A bad request
raises ValueError (the server's 400) naming what is wrong.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Any

from rootlessnet.stack.impair import Impairment
from rootlessnet.stack.links import HOST

PATHS = ("/v1/links", "/v1/pairs", "/v1/holds", "/v1/partition", "/v1/impairments")


def strict_json(body: bytes) -> Any:
    """The body as JSON: no NaN or Infinity, no number beyond a float, bounded nesting
    (the API passes its own parser, which says the same in its words)."""
    try:
        return json.loads(body or b"{}", parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("bad JSON: nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"bad JSON: {e}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _finite(text: str) -> float:
    v = float(text)
    if v in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large a number")
    return v


def settings(obj: Any) -> tuple[Impairment, dict[str, Any]]:
    """(Impairment, the other keys) from a request body."""
    if not isinstance(obj, dict):
        raise ValueError("the body must be a JSON object of impairment settings")
    obj = dict(obj)
    extra = {k: obj.pop(k) for k in ("direction", "both") if k in obj}
    text = obj.pop("netem", None)
    if text is not None:
        from rootlessnet.stack.netem import parse_netem

        if not isinstance(text, str):
            raise ValueError("netem must be a string of tc netem's parameters, e.g. 'delay 100ms loss 1%'")
        obj = {**parse_netem(text), **obj}
    return Impairment.from_json(obj), extra


def _names(eng: Any, with_host: bool) -> set[str]:
    return set(eng.by_name) | ({HOST} if with_host else set())


def _check(eng: Any, names: Any, with_host: bool = True) -> list[str]:
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"expected a host name or a list of them, not {names!r}")
    known = _names(eng, with_host)
    for n in names:
        if n not in known:
            raise ValueError(f"unknown host {n!r}: use {', '.join(sorted(known))}")
    return names


def _change(eng: Any, fn: Any) -> Any:
    ctl = getattr(eng, "control", None)
    with ctl() if ctl is not None else nullcontext():
        out = fn()
    arm = getattr(eng, "_arm_timer", None)
    if ctl is None and arm is not None:
        arm()  # a trio engine: the timer may now be due earlier
    return out


def _direction(extra: dict[str, Any]) -> str:
    d = extra.get("direction", "both")
    if d not in ("up", "down", "both"):
        raise ValueError(f"direction={d!r}: use 'up' (what the host sends), 'down' (what it receives) or 'both'")
    return d


def _both(extra: dict[str, Any]) -> bool:
    b = extra.get("both", False)
    if not isinstance(b, bool):
        raise ValueError(f"both={b!r}: use true or false")
    return b


def _json(imp: Impairment | None) -> dict[str, Any]:
    return (imp or Impairment()).to_json()


def handle(eng: Any, method: str, path: str, body: bytes, parse: Any = None) -> tuple[int, Any] | None:
    """(status, JSON) for our paths, None for any other. `parse(body)`: the API's JSON parser
    (a ValueError for a bad body), strict_json by default."""
    if not path.startswith(PATHS):
        return None
    _body = parse or strict_json
    table = eng.links
    parts = path.strip("/").split("/")[1:]  # after "v1"
    what = parts[0]
    if what == "links":
        if len(parts) == 1:
            if method != "GET":
                raise ValueError("use GET /v1/links")
            return 200, {n: {d: _json(i) for d, i in table.link_settings(n).items()} for n in eng.by_name}
        if len(parts) != 2:
            return 404, {"message": f"no such path {path}"}
        name = parts[1]
        if name not in eng.by_name:
            return 404, {"message": f"no host named {name!r} (see GET /v1/hosts)"}
        if method == "GET":
            return 200, {**{d: _json(i) for d, i in table.link_settings(name).items()},
                         "statistics": table.link_statistics(name)}
        if method != "PUT":
            raise ValueError("use GET or PUT /v1/links/NAME")
        imp, extra = settings(_body(body))
        direction = _direction(extra)
        _change(eng, lambda: table.set_link(name, imp, direction))
        return 200, imp.to_json()
    if what == "pairs":
        if len(parts) == 1:
            if method != "GET":
                raise ValueError("use GET /v1/pairs, or PUT/DELETE /v1/pairs/SRC/DST")
            return 200, [{"src": s, "dst": d, "settings": i.to_json()} for (s, d), i in sorted(table.pair_settings().items())]
        if len(parts) != 3:
            return 404, {"message": f"no such path {path}: use /v1/pairs/SRC/DST"}
        src, dst = _check(eng, [parts[1], parts[2]])
        if src == dst:
            raise ValueError(f"a pair needs two different ends, not {src!r} twice")
        if method == "DELETE":
            _change(eng, lambda: table.set_pair(src, dst, None))
            return 200, None
        if method != "PUT":
            raise ValueError("use PUT or DELETE /v1/pairs/SRC/DST")
        imp, extra = settings(_body(body))
        both = _both(extra)
        _change(eng, lambda: table.set_pair(src, dst, imp, both))
        return 200, imp.to_json()
    if what == "holds":
        if method == "GET":
            return 200, table.statistics()["held"]
        if method not in ("PUT", "DELETE"):
            raise ValueError("use PUT (hold) or DELETE (release) /v1/holds")
        obj = _body(body)
        if not isinstance(obj, dict) or ("link" in obj) == ("pair" in obj):
            raise ValueError('the body must be {"link": NAME, "direction": "both"} or {"pair": [SRC, DST], "both": false}')
        if "link" in obj:
            (name,) = _check(eng, [obj["link"]], with_host=False)
            keys = table.link_keys(name, _direction(obj))
        else:
            pair = _check(eng, obj["pair"])
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"pair must be two different names, not {obj['pair']!r}")
            keys = table.pair_keys(pair[0], pair[1], _both(obj))
        _change(eng, lambda: table.hold(keys) if method == "PUT" else table.release(keys))
        return 200, table.statistics()["held"]
    if what == "partition":
        if method == "DELETE":
            _change(eng, table.heal)
            return 200, None
        if method == "GET":
            return 200, {"groups": table.groups, "blocked": sorted([a, b] for a, b in table.blocked)}
        if method != "PUT":
            raise ValueError("use GET, PUT or DELETE /v1/partition")
        obj = _body(body)
        if not isinstance(obj, dict) or not (set(obj) <= {"groups", "block"}) or not obj:
            raise ValueError('the body must be {"groups": [["a"], ["b", "c"]]} and/or {"block": [{"from": [...], "to": [...]}]}')
        groups = obj.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
            raise ValueError('the body must be {"groups": [["a"], ["b", "c"]]}')
        seen: set[str] = set()
        for g in groups:
            _check(eng, g)
            if seen & set(g):
                raise ValueError(f"{sorted(seen & set(g))} appear in two groups")
            seen |= set(g)
        blocks = obj.get("block") or []
        if not isinstance(blocks, list) or not all(isinstance(b, dict) and set(b) == {"from", "to"} for b in blocks):
            raise ValueError('block must be a list of {"from": [names], "to": [names]}')
        cuts = [(_check(eng, b["from"]), _check(eng, b["to"])) for b in blocks]

        def apply() -> None:
            table.partition([set(g) for g in groups])
            for a, b in cuts:
                table.block(a, b)

        _change(eng, apply)
        return 200, {"groups": table.groups, "blocked": sorted([a, b] for a, b in table.blocked)}
    if what == "impairments":
        if method != "GET":
            raise ValueError("use GET /v1/impairments")
        out = table.statistics()
        out["links"] = {f"{n}/{d}": i.to_json() for n in eng.by_name for d, i in table.link_settings(n).items() if i}
        out["pairs"] = {f"{s}->{d}": i.to_json() for (s, d), i in table.pair_settings().items()}
        return 200, out
    return None
