"""api.jsonbody: strict JSON for request bodies and answers.

Python's json accepts what JSON does not: `NaN`, `Infinity`, numbers that
overflow to infinity (`1e999`), and it recurses once per nesting level (3 KB
of `[` is a RecursionError). Bodies that clients send go through `loads`,
which refuses all of that with a ValueError saying why; answers go through
`dumps`, which never writes a non-finite number.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64  # more nesting than any request of ours has, far below the recursion limit


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """The deepest nesting of arrays/objects in `text` (strings skipped), up to limit + 1."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse strict JSON; ValueError (with a reason) for anything else."""
    try:
        text = data.decode() if isinstance(data, (bytes, bytearray, memoryview)) else data
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    if nesting_depth(text, max_depth) > max_depth:
        raise ValueError(f"nested more than {max_depth} levels deep")
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_constant)
    except RecursionError:  # not reached after the depth check; kept so no input can escape as one
        raise ValueError(f"nested more than {max_depth} levels deep") from None


def dumps(obj: Any) -> str:
    """Compact JSON (Go's encoding/json style); a non-finite float is a ValueError, never `Infinity`."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
