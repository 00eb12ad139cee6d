"""``json.loads`` with its shortcut: the C scanner straight away for text that is one JSON
value with nothing around it (what trustd's writers store: index columns, a pod's info.json),
else ``json.loads`` itself (ADR 0020 decision 12: ``rkt image list`` and ``rkt list`` at
scale)."""

from __future__ import annotations

import json
from typing import Any

_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner


def loads_exact(text: Any) -> Any:
    """``json.loads(text)``: the C scanner straight away when ``text`` is one JSON value with
    nothing around it (what the index's writers store), else ``json.loads`` itself, which
    then takes it or raises, so what decodes is exactly what ``json.loads`` decodes."""
    try:
        value, end = _SCAN(text, 0)
    except (StopIteration, TypeError, ValueError):
        return json.loads(text)
    return value if end == len(text) else json.loads(text)
