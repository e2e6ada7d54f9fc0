"""api.network: our API routes for multi-host networks — /v1/hosts, /v1/links, /v1/partition.

The REST face of the engine's switch (io.engine: `ports`, `by_name`,
`impair`, `partition`, `groups`); api.server calls `handle` for any path
that is not rootlesskit's. Bodies are strict JSON (api.jsonbody): no NaN or
Infinity, bounded nesting; a bad one is a 400 with the reason.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from rootlessnet.api import jsonbody
from rootlessnet.stack.impair import Impairment


def _body(body: bytes) -> Any:
    try:
        return jsonbody.loads(body or b"{}")
    except ValueError as e:
        raise ValueError(f"bad JSON: {e}") from None


class NetworkApi:
    """API extensions for multi-host networks: /v1/hosts, /v1/links, /v1/partition."""

    def __init__(self, engine: Any):
        self.engine = engine

    async def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any] | None:
        """(status, JSON or None) for our paths, None for others; ValueError is a 400 with its message."""
        if body.strip():
            _body(body)  # strict JSON before any route sees it: no NaN/Infinity, bounded nesting
        eng = self.engine
        from rootlessnet.stack import linkapi  # links, pairs, holds, partitions (stack.links)

        got = linkapi.handle(eng, method, path, body, parse=_body)  # the API's strict JSON
        if got is not None:
            return got
        if path == "/v1/hosts":
            if method != "GET":
                raise ValueError("use GET /v1/hosts")
            return 200, [{"name": p.name, "ipv4": str(ipaddress.ip_address(p.cfg.guest)),
                          "ipv6": str(ipaddress.ip_address(p.cfg.guest6)) if p.cfg.ipv6 else None}
                         for p in eng.ports[1:]]
        if path == "/v1/links":
            return 200, {p.name: p.impairment.to_json() for p in eng.ports}
        if path.startswith("/v1/links/"):
            name = path[len("/v1/links/"):]
            port = eng.by_name.get(name)
            if port is None:
                return 404, {"message": f"no host named {name!r} (see GET /v1/hosts)"}
            if method == "GET":
                return 200, port.impairment.to_json()
            if method != "PUT":
                raise ValueError("use GET or PUT /v1/links/NAME")
            imp = Impairment.from_json(_body(body))
            port.impair(imp)
            return 200, imp.to_json()
        if path == "/v1/partition":
            if method == "DELETE":
                eng.partition(None)
                return 200, None
            if method == "GET":
                return 200, {"groups": [sorted(g) for g in eng.groups or []]}
            if method != "PUT":
                raise ValueError("use GET, PUT or DELETE /v1/partition")
            obj = _body(body)
            groups = obj.get("groups") if isinstance(obj, dict) else None
            if not isinstance(groups, list) or not all(isinstance(g, list) and all(isinstance(n, str) for n in g) for g in groups):
                raise ValueError('the body must be {"groups": [["a"], ["b", "c"]]}')
            known = set(eng.by_name) | {"host"}
            for g in groups:
                for n in g:
                    if n not in known:
                        raise ValueError(f"unknown host {n!r}: use {', '.join(sorted(known))}")
            seen: set[str] = set()
            for g in groups:
                if seen & set(g):
                    raise ValueError(f"{sorted(seen & set(g))} appear in two groups")
                seen |= set(g)
            eng.partition([set(g) for g in groups])
            return 200, {"groups": [sorted(g) for g in groups]}
        return None
