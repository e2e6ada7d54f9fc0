"""api.network: our API routes for multi-host networks — /v1/hosts, and stack.linkapi's
/v1/links, /v1/pairs, /v1/holds, /v1/partition and /v1/impairments.

The REST face of the engine's switch (io.engine: `ports`, `by_name`,
`links`); api.server calls `handle` for any path
that is not rootlesskit's. Bodies are strict JSON (api.jsonbody): no NaN or
Infinity, bounded nesting; a bad one is a 400 with the reason.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from rootlessnet.api import jsonbody


def _body(body: bytes) -> Any:
    try:
        return jsonbody.loads(body or b"{}")
    except ValueError as e:
        raise ValueError(f"bad JSON: {e}") from None


class NetworkApi:
    """API extensions for multi-host networks: /v1/hosts and stack.linkapi's routes."""

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
        return None
