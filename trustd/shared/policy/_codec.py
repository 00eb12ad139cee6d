"""Strict TOML -> :class:`Policy`, driven by the models' type hints (CONVENTIONS 3).

Every problem (TOML syntax, an unknown or missing key, a wrong type, a value a field's
``check`` refuses, a scope key no image can match) becomes one :class:`PolicyFileError`
naming the file, the line when it can be found, and the key path.

Scopes inherit every key they leave out from ``[default]`` (not from a broader scope): the
most specific scope applies alone, so what it does not say comes from the one table every
policy must have. ``[default]`` itself falls back to the strict built-ins of the models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from trustd.shared.errors import LocalStateError
from trustd.shared.policy.model import Policy, Scope
from trustd.shared.policy.scopes import scope_problem

MAX_POLICY_BYTES = 1 << 20
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_HINTS: dict[type, dict[str, Any]] = {}


class PolicyFileError(LocalStateError):
    """The policy file cannot be used: syntax, unknown key, wrong type or refused value."""

    def __init__(self, source: str, path: tuple[str, ...], problem: str, line: int | None) -> None:
        where = source + (f":{line}" if line else "")
        key = ".".join(path) or "(top level)"
        super().__init__(
            f"policy {where}: {key}: {problem}",
            hint="fix the policy file; check it with: rkt policy check FILE",
        )
        self.source, self.key_path, self.problem, self.line = source, path, problem, line


class _Invalid(Exception):
    def __init__(self, path: tuple[str, ...], problem: str) -> None:
        super().__init__(problem)
        self.path, self.problem = path, problem


def hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def toml_fields(cls: type) -> list[tuple[str, dataclasses.Field[Any]]]:
    """(TOML key, field) for every field a file may set."""
    return [
        (f.metadata.get("toml", f.name), f)
        for f in dataclasses.fields(cls)
        if not f.metadata.get("internal")
    ]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "an array"
    if dataclasses.is_dataclass(tp) or origin in (Mapping, dict):
        return "a table"
    return {str: "a string", int: "an integer", bool: "a boolean", datetime: "a date-time"}.get(
        tp, str(tp)
    )


def _decode(value: Any, tp: Any, path: tuple[str, ...], base: Any = None) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(value, args[0], path, base)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise _Invalid(path, f"{value!r} is not {_type_name(tp)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise _Invalid(path, f"expected {_type_name(tp)}")
        item = typing.get_args(tp)[0]
        return tuple(_decode(v, item, (*path, str(i)), None) for i, v in enumerate(value))
    if origin in (Mapping, dict):
        if not isinstance(value, dict):
            raise _Invalid(path, "expected a table")
        item = typing.get_args(tp)[1]
        return types.MappingProxyType(
            {k: _decode(v, item, (*path, k), base) for k, v in value.items()}
        )
    if dataclasses.is_dataclass(tp):
        return _decode_table(value, typing.cast(type, tp), path, base)
    return _scalar(value, tp, path)


def _scalar(value: Any, tp: Any, path: tuple[str, ...]) -> Any:
    if tp is datetime:
        if type(value) is date:
            raise _Invalid(path, "expected a date-time with a zone (2026-06-30T00:00:00Z)")
        if not isinstance(value, datetime):
            raise _Invalid(path, f"expected {_type_name(tp)}")
        return value
    if tp is int and (type(value) is not int):
        raise _Invalid(path, f"expected {_type_name(tp)}")
    if tp in (str, bool) and type(value) is not tp:
        raise _Invalid(path, f"expected {_type_name(tp)}")
    return value


def _decode_table(value: Any, cls: type, path: tuple[str, ...], base: Any) -> Any:
    if not isinstance(value, dict):
        raise _Invalid(path, "expected a table")
    fields = toml_fields(cls)
    known = {k for k, _ in fields}
    unknown = sorted(set(value) - known)
    if unknown:
        raise _Invalid((*path, unknown[0]), f"unknown key (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    tps = hints(cls)
    for key, f in fields:
        sub = base if base is None else getattr(base, f.name)
        fpath = (*path, key)
        if key in value:
            decoded = _decode(value[key], tps[f.name], fpath, sub)
        elif base is not None:
            decoded = sub
        elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        else:
            raise _Invalid(fpath, "missing required key")
        check = f.metadata.get("check")
        problem = check(decoded) if check else None
        if problem:
            raise _Invalid(fpath, problem)
        kwargs[f.name] = decoded
    return cls(**kwargs)


def _scope_rules(scope: Scope, path: tuple[str, ...]) -> None:
    if scope.mode == "warn" and scope.exception is None:
        raise _Invalid(
            (*path, "exception"), 'mode "warn" needs exception = {owner = ..., expires = ...}'
        )
    if scope.mode == "enforce" and scope.exception is not None:
        raise _Invalid((*path, "exception"), 'an exception only makes sense with mode "warn"')
    req = scope.require
    if req.type == "signed" and not req.keystore and not req.fingerprints:
        raise _Invalid((*path, "require"), "signed needs keystore = true or fingerprints")
    fprs = [p.fingerprint for p in req.fingerprints]
    if len(set(fprs)) != len(fprs):
        raise _Invalid((*path, "require", "fingerprints"), "a fingerprint is listed twice")


def _build(doc: dict[str, Any], source: str, digest: str) -> Policy:
    for key in ("version", "default"):
        if key not in doc:
            raise _Invalid((key,), "missing required key")
    default = _decode_table(doc["default"], Scope, ("default",), None)
    _scope_rules(default, ("default",))
    raw_scopes = doc.get("scopes", {})
    if not isinstance(raw_scopes, dict):
        raise _Invalid(("scopes",), "expected a table of scopes")
    scopes: dict[str, Scope] = {}
    for key, table in raw_scopes.items():
        problem = scope_problem(key)
        if problem:
            raise _Invalid(("scopes", key), f"unreachable scope: {problem}")
        scope = _decode_table(table, Scope, ("scopes", key), default)
        if "exception" not in table and "mode" in table and table["mode"] == "enforce":
            scope = dataclasses.replace(scope, exception=None)
        _scope_rules(scope, ("scopes", key))
        scopes[key] = scope
    rest = {k: v for k, v in doc.items() if k not in ("default", "scopes")}
    top = _decode_table(
        {**rest, "default": {}},
        Policy,
        (),
        None,
    )
    return Policy(
        version=top.version,
        default=default,
        scopes=types.MappingProxyType(scopes),
        seccomp_profiles=top.seccomp_profiles,
        source=source,
        digest=digest,
    )


def find_line(text: str, path: tuple[str, ...]) -> int | None:
    """The line that sets the longest prefix of ``path`` (a header or ``key =``), best effort."""
    table: tuple[str, ...] = ()
    best_len, best_line = 0, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            table = _header_path(stripped) or ()
            full = table
        else:
            key = _key_path(stripped)
            if not key:
                continue
            full = (*table, *key)
        if full and path[: len(full)] == full and len(full) > best_len:
            best_len, best_line = len(full), number
    return best_line


def _single_path(obj: Any) -> tuple[str, ...]:
    out: list[str] = []
    while isinstance(obj, dict) and len(obj) == 1:
        key, obj = next(iter(obj.items()))
        out.append(key)
        if isinstance(obj, list) and obj and isinstance(obj[0], dict):
            obj = obj[0]
    return tuple(out)


def _header_path(line: str) -> tuple[str, ...] | None:
    try:
        return _single_path(tomllib.loads(line))
    except tomllib.TOMLDecodeError:
        return None


def _key_path(line: str) -> tuple[str, ...] | None:
    if "=" not in line or line.startswith("#"):
        return None
    key = line.split("=", 1)[0]
    try:
        return _single_path(tomllib.loads(f"{key} = 0"))
    except tomllib.TOMLDecodeError:
        return None


def loads_policy(data: bytes, source: str) -> Policy:
    """Parse policy bytes; anything wrong is a :class:`PolicyFileError`."""
    digest = "sha256-" + hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
        doc = tomllib.loads(text)
    except RecursionError as exc:
        raise PolicyFileError(
            source, (), "nested too deeply (tables and arrays more than a few levels)", None
        ) from exc
    except UnicodeDecodeError as exc:
        raise PolicyFileError(source, (), f"not UTF-8 ({exc.reason})", None) from exc
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        raise PolicyFileError(source, (), f"not valid TOML: {exc}", line) from exc
    try:
        return _build(doc, source, digest)
    except _Invalid as exc:
        raise PolicyFileError(source, exc.path, exc.problem, find_line(text, exc.path)) from exc
    except RecursionError as exc:
        raise PolicyFileError(source, (), "nested too deeply", None) from exc


def load_policy(path: Path) -> Policy:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyFileError(str(path), (), f"cannot read: {exc.strerror}", None) from exc
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyFileError(str(path), (), f"larger than {MAX_POLICY_BYTES} bytes", None)
    return loads_policy(data, str(path))
