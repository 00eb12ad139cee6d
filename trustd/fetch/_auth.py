"""Per-domain credentials from rkt's ``auth.d`` (kind ``auth``: basic and oauth), https only."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trustd.errors import UserError

MAX_CONFIG = 64 * 1024


def _bad(path: Path, why: str) -> UserError:
    return UserError(
        f"bad auth config {path}: {why}",
        hint='rkt\'s auth.d format: {"rktKind": "auth", "rktVersion": "v1", '
        '"domains": [...], "type": "basic", "credentials": {...}}',
    )


def _header(doc: dict[str, Any], path: Path) -> str:
    creds = doc["credentials"]
    if doc["type"] == "basic":
        token = base64.b64encode(f"{creds['user']}:{creds['password']}".encode()).decode()
        return f"Basic {token}"
    if doc["type"] == "oauth":
        return f"Bearer {creds['token']}"
    raise _bad(path, f"type {doc['type']!r} is not supported (basic, oauth)")


def _load(path: Path) -> list[tuple[list[str], str]]:
    try:
        doc = json.loads(path.read_bytes()[:MAX_CONFIG])
        kind, version = doc.get("rktKind"), doc.get("rktVersion")
        if kind not in ("auth", "dockerAuth"):
            raise _bad(path, f"kind {kind!r} does not belong in auth.d")
        if version != "v1":
            raise _bad(path, "rktVersion must be v1")
        if kind == "dockerAuth":
            return []  # docker registries (issue #7)
        return [([str(d) for d in doc["domains"]], _header(doc, path))]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _bad(path, f"{type(exc).__name__}: {exc}") from exc


def auth_headers(url: str, config_dirs: tuple[Path, ...]) -> dict[str, str]:
    """The Authorization header for ``url``'s host, later directories overriding earlier.

    Credentials are only ever sent over https; the transport drops them on a redirect to
    another host.
    """
    parts = urlsplit(url)
    if parts.scheme != "https":
        return {}
    host = parts.netloc.lower()
    header: str | None = None
    for directory in config_dirs:
        auth_dir = directory / "auth.d"
        if not auth_dir.is_dir():
            continue
        for path in sorted(auth_dir.glob("*.json")):
            for domains, value in _load(path):
                if host in (d.lower() for d in domains):
                    header = value
    return {"Authorization": header} if header else {}
