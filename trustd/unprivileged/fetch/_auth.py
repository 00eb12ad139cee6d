"""Credentials from rkt's ``auth.d``: kind ``auth`` (per domain: basic and oauth) and kind
``dockerAuth`` (per Docker registry: user and password). Sent over https only.

auth.d holds passwords, so it may be ``0600 root:root``. :func:`load_auth` reads it in the
process that runs ``rkt fetch``, before root forks the unprivileged fetch child: the child
gets the parsed :class:`AuthConfig` in its memory (it is a fork) and never opens the files.
A user who runs ``rkt fetch`` unprivileged reads them with their own rights; a file they
cannot read is an error naming it when a credential is looked up, never a request sent
silently without credentials.
"""

from __future__ import annotations

import base64
import json
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trustd.shared._dataclass import frozen
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


def _unreadable(path: Path) -> UserError:
    return UserError(
        f"cannot read credentials {path}: permission denied",
        hint="auth.d holds passwords and may be readable by root only (0600 root:root is "
        "right): run the fetch as root (sudo rkt fetch ...), or ask an administrator to fetch "
        "the image for you",
    )


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """(kind, document) of one auth.d file, its kind and version checked."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG)
    except PermissionError as exc:
        raise _unreadable(path) from exc
    except OSError as exc:
        raise _bad(path, f"cannot read it: {exc.strerror}") from exc
    try:
        doc = json.loads(data)
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


@frozen
class AuthConfig:
    """auth.d as read before any privilege drop, in file order (later files override)."""

    domains: tuple[tuple[tuple[str, ...], str], ...] = field(default=(), repr=False)
    registries: tuple[tuple[tuple[str, ...], tuple[str, str]], ...] = field(default=(), repr=False)
    unreadable: tuple[Path, ...] = ()  # files this user may not read (root-only secrets)

    def check_readable(self) -> None:
        """Refuse to look credentials up when some could not be read (see the module)."""
        if self.unreadable:
            raise _unreadable(self.unreadable[0])


def _auth_files(directory: Path) -> list[Path]:
    auth_dir = directory / "auth.d"
    try:
        found = sorted(p for p in auth_dir.iterdir() if p.name.endswith(".json"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError as exc:
        raise _unreadable(auth_dir) from exc
    return found


def _docker_entry(path: Path, doc: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, str]]:
    try:
        registries = tuple(_registry_key(str(r)) for r in doc["registries"])
        creds = doc["credentials"]
        return registries, (str(creds["user"]), str(creds["password"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise _bad(path, f"{type(exc).__name__}: {exc}") from exc


def load_auth(config_dirs: tuple[Path, ...]) -> AuthConfig:
    """Every auth.d file under ``config_dirs`` (system, local, user), parsed now.

    Call it before dropping privileges; a malformed file is an error at once, a file this
    user cannot read is recorded and refused at the first lookup."""
    domains: list[tuple[tuple[str, ...], str]] = []
    registries: list[tuple[tuple[str, ...], tuple[str, str]]] = []
    unreadable: list[Path] = []
    for directory in config_dirs:
        try:
            files = _auth_files(directory)
        except UserError:
            unreadable.append(directory / "auth.d")
            continue
        for path in files:
            try:
                kind, doc = _read(path)
            except UserError as exc:
                if isinstance(exc.__cause__, PermissionError):
                    unreadable.append(path)
                    continue
                raise
            if kind == "dockerAuth":
                registries.append(_docker_entry(path, doc))
            else:
                domains.extend((tuple(d), h) for d, h in _load(path))
    return AuthConfig(tuple(domains), tuple(registries), tuple(unreadable))


def docker_credentials(registry: str, auth: AuthConfig) -> tuple[str, str] | None:
    """(user, password) for a Docker registry (``host[:port]``) from ``dockerAuth`` files.

    Later directories override earlier ones, as for ``auth``. The registry client sends them
    only over https.
    """
    auth.check_readable()
    wanted = _registry_key(registry)
    found: tuple[str, str] | None = None
    for registries, pair in auth.registries:
        if wanted in registries:
            found = pair
    return found


def auth_headers(url: str, auth: AuthConfig) -> dict[str, str]:
    """The Authorization header for ``url``'s host, later directories overriding earlier.

    Credentials are only ever sent over https; the transport drops them on a redirect to
    another host.
    """
    parts = urlsplit(url)
    if parts.scheme != "https":
        return {}
    auth.check_readable()
    host = parts.netloc.lower()
    header: str | None = None
    for domains, value in auth.domains:
        if host in (d.lower() for d in domains):
            header = value
    return {"Authorization": header} if header else {}
