"""Credentials from rkt's ``auth.d``: kind ``auth`` (per domain: basic and oauth) and kind
``dockerAuth`` (per Docker registry: user and password). Sent over https only."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trustd.shared.errors import UserError

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


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """(kind, document) of one auth.d file, its kind and version checked."""
    try:
        doc = json.loads(path.read_bytes()[:MAX_CONFIG])
        kind, version = doc.get("rktKind"), doc.get("rktVersion")
    except (ValueError, TypeError, AttributeError) as exc:
        raise _bad(path, f"{type(exc).__name__}: {exc}") from exc
    if kind not in ("auth", "dockerAuth"):
        raise _bad(path, f"kind {kind!r} does not belong in auth.d")
    if version != "v1":
        raise _bad(path, "rktVersion must be v1")
    return str(kind), doc


def _load(path: Path) -> list[tuple[list[str], str]]:
    kind, doc = _read(path)
    if kind == "dockerAuth":
        return []  # registries: see docker_credentials
    try:
        return [([str(d) for d in doc["domains"]], _header(doc, path))]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _bad(path, f"{type(exc).__name__}: {exc}") from exc


_DOCKER_HUB = frozenset({"registry-1.docker.io", "index.docker.io", "docker.io"})


def _registry_key(name: str) -> str:
    host = name.lower().strip()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/", 1)[0]
    return "registry-1.docker.io" if host in _DOCKER_HUB else host


def docker_credentials(registry: str, config_dirs: tuple[Path, ...]) -> tuple[str, str] | None:
    """(user, password) for a Docker registry (``host[:port]``) from ``dockerAuth`` files.

    Later directories override earlier ones, as for ``auth``. The registry client sends them
    only over https.
    """
    wanted = _registry_key(registry)
    found: tuple[str, str] | None = None
    for directory in config_dirs:
        auth_dir = directory / "auth.d"
        if not auth_dir.is_dir():
            continue
        for path in sorted(auth_dir.glob("*.json")):
            kind, doc = _read(path)
            if kind != "dockerAuth":
                continue
            try:
                registries = [_registry_key(str(r)) for r in doc["registries"]]
                creds = doc["credentials"]
                pair = (str(creds["user"]), str(creds["password"]))
            except (KeyError, TypeError, AttributeError) as exc:
                raise _bad(path, f"{type(exc).__name__}: {exc}") from exc
            if wanted in registries:
                found = pair
    return found


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
