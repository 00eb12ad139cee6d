"""A policy file in compiled form, cached by its digest (issue #14, ADR 0020).

Parsing and checking a 10,000-scope file takes hundreds of milliseconds; a pod start needs
one scope. :func:`load_cached` reads the file and hashes it every time (the digest is the
cache key, so a changed file is never served from the cache), then, on a hit, takes
``[default]`` and the top-level keys from the cache and decodes a scope only when it is
looked up, from the raw table the full check accepted. Every scope key and table was checked
when the file was compiled; each table is decoded again, by the same code, when it is used.

The cache's bytes live where only root can write (``<data-dir>/private/policy.cache``, see
:class:`PolicyCache`); a cache that does not decode is a miss and is rewritten.

Format: ``trustd-policy-cache 1 <digest>\\n``, one JSON line (version, seccomp profiles,
the raw ``[default]``), then one line per scope: ``<key>\\t<raw table as JSON>``. TOML
date-times are ``{"$datetime": ISO}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from trustd.shared.codec import Invalid
from trustd.shared.policy._codec import (
    PolicyFileError,
    assemble,
    decode_default,
    decode_scope,
    loads_policy_doc,
    policy_digest,
)
from trustd.shared.policy.model import Policy, Scope

MAGIC = b"trustd-policy-cache 1 "
_DATETIME = "$datetime"


class PolicyCache(Protocol):
    """Where the compiled form lives: bytes only root can write."""

    def read(self) -> bytes | None: ...

    def write(self, data: bytes) -> None: ...


def _tag(value: object) -> object:
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    raise TypeError(f"{type(value).__name__} has no cached form")


def _revive(obj: dict[str, Any]) -> object:
    if len(obj) == 1 and isinstance(obj.get(_DATETIME), str):
        return datetime.fromisoformat(obj[_DATETIME])
    return obj


def _dumps(value: object) -> bytes:
    return json.dumps(value, default=_tag, separators=(",", ":"), ensure_ascii=True).encode()


def compile_doc(doc: dict[str, Any], digest: str) -> bytes | None:
    """The cached form of a parsed file that passed every check; None when it has none."""
    head = {k: v for k, v in doc.items() if k != "scopes"}
    try:
        lines = [MAGIC + digest.encode(), _dumps(head)]
        for key, table in doc.get("scopes", {}).items():
            if "\t" in key or "\n" in key:  # refused at load already; never ambiguous here
                return None
            lines.append(key.encode() + b"\t" + _dumps(table))
    except (TypeError, ValueError):
        return None
    return b"\n".join(lines) + b"\n"


class CompiledScopes(Mapping[str, Scope]):
    """Scope key -> :class:`Scope`, each decoded from its checked raw table on first use."""

    __slots__ = ("_default", "_done", "_raw", "_source")

    def __init__(self, raw: dict[str, bytes], default: Scope, source: str) -> None:
        self._raw, self._default, self._source = raw, default, source
        self._done: dict[str, Scope] = {}

    def __getitem__(self, key: str) -> Scope:
        scope = self._done.get(key)
        if scope is None:
            table = json.loads(self._raw[key], object_hook=_revive)
            try:
                scope = decode_scope(key, table, self._default)
            except Invalid as exc:  # the file passed when it was compiled: the cache is bad
                raise PolicyFileError(
                    self._source, exc.path, f"{exc.problem} (compiled form)", None
                ) from exc
            self._done[key] = scope
        return scope

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        return key in self._raw


def _from_cache(cached: bytes, digest: str, text: str, source: str) -> Policy | None:
    first, _, rest = cached.partition(b"\n")
    if first != MAGIC + digest.encode() or not rest.endswith(b"\n"):
        return None
    head_line, _, body = rest.partition(b"\n")
    raw: dict[str, bytes] = {}
    for line in body.split(b"\n")[:-1]:
        key, tab, table = line.partition(b"\t")
        if not tab:
            return None
        raw[key.decode()] = table
    head = json.loads(head_line, object_hook=_revive)
    if not isinstance(head, dict) or "default" not in head:
        return None
    try:
        default = decode_default(head)
        scopes = CompiledScopes(raw, default, source)
        return assemble(head, default, scopes=scopes, source=source, digest=digest, text=text)
    except Invalid:
        return None


def load_cached(data: bytes, source: str, cache: PolicyCache) -> Policy:
    """The policy in ``data`` (a file's bytes): from ``cache`` when it holds this digest's
    compiled form, else parsed and checked in full, and the compiled form stored."""
    digest = policy_digest(data)
    cached = cache.read()
    if cached is not None:
        try:
            policy = _from_cache(cached, digest, data.decode("utf-8"), source)
        except (ValueError, UnicodeDecodeError):
            policy = None
        if policy is not None:
            return policy
    policy, doc = loads_policy_doc(data, source)
    compiled = compile_doc(doc, digest)
    if compiled is not None:
        cache.write(compiled)
    return policy


__all__ = ["CompiledScopes", "PolicyCache", "compile_doc", "decode_scope", "load_cached"]
