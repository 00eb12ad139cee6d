"""Strict TOML -> :class:`Policy`, driven by the models' type hints (CONVENTIONS 3), with
trustd's one codec (:mod:`trustd.shared.codec`, docs/adr/0011).

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
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from trustd.shared.codec import Decoder, Invalid, file_fields, hints
from trustd.shared.errors import LocalStateError
from trustd.shared.policy.model import Policy, Scope
from trustd.shared.policy.scopes import scope_problem

MAX_POLICY_BYTES = 1 << 20
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
T = TypeVar("T")
__all__ = [
    "PolicyFileError",
    "find_location",
    "hints",
    "load_policy",
    "loads_policy",
    "toml_fields",
]


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


# TOML date-times are real values; a quoted RFC 3339 string is accepted too, since the
# JSON Schema (``rkt policy schema``) can only say "a date-time string".
_DECODER = Decoder(noun="key", rfc3339_text=True)
toml_fields = file_fields  # the schema module's name for it


def _decode_table(value: Any, cls: type[T], path: tuple[str, ...], base: Any) -> T:
    return _DECODER.table(value, cls, path, base)


def _scope_rules(scope: Scope, path: tuple[str, ...]) -> None:
    if scope.mode == "warn" and scope.exception is None:
        raise Invalid(
            (*path, "exception"), 'mode "warn" needs exception = {owner = ..., expires = ...}'
        )
    if scope.mode == "enforce" and scope.exception is not None:
        raise Invalid((*path, "exception"), 'an exception only makes sense with mode "warn"')
    req = scope.require
    if req.type == "signed" and not req.keystore and not req.fingerprints:
        raise Invalid((*path, "require"), "signed needs keystore = true or fingerprints")
    fprs = [p.fingerprint for p in req.fingerprints]
    if len(set(fprs)) != len(fprs):
        raise Invalid((*path, "require", "fingerprints"), "a fingerprint is listed twice")
    if len(set(req.formats)) != len(req.formats):
        raise Invalid((*path, "require", "formats"), "a format is listed twice")
    identity = req.signed_identity.problem()
    if identity:
        raise Invalid((*path, "require", "signed_identity"), identity)


def _build(doc: dict[str, Any], source: str, digest: str, text: str = "") -> Policy:
    for key in ("version", "default"):
        if key not in doc:
            raise Invalid((key,), "missing required key")
    default = decode_default(doc)
    raw_scopes = doc.get("scopes", {})
    if not isinstance(raw_scopes, dict):
        raise Invalid(("scopes",), "expected a table of scopes")
    scopes: dict[str, Scope] = {}
    for key, table in raw_scopes.items():
        problem = scope_problem(key)
        if problem:
            raise Invalid(("scopes", key), f"unreachable scope: {problem}")
        scopes[key] = decode_scope(key, table, default)
    return assemble(
        doc, default, scopes=types.MappingProxyType(scopes), source=source, digest=digest, text=text
    )


def decode_default(doc: dict[str, Any]) -> Scope:
    """``[default]`` of a parsed file, checked."""
    default = _decode_table(doc["default"], Scope, ("default",), None)
    _scope_rules(default, ("default",))
    return default


def decode_scope(key: str, table: Any, default: Scope) -> Scope:
    """One ``[scopes."key"]`` table over ``default``, checked (its key is checked apart)."""
    scope = _decode_table(table, Scope, ("scopes", key), default)
    if "exception" not in table and "mode" in table and table["mode"] == "enforce":
        scope = dataclasses.replace(scope, exception=None)
    _scope_rules(scope, ("scopes", key))
    return scope


def assemble(
    doc: dict[str, Any],
    default: Scope,
    *,
    scopes: Mapping[str, Scope],
    source: str,
    digest: str,
    text: str,
) -> Policy:
    """The :class:`Policy` of ``doc`` (its top-level keys decoded here), with its scopes."""
    rest = {k: v for k, v in doc.items() if k not in ("default", "scopes")}
    top = _decode_table({**rest, "default": {}}, Policy, (), None)
    return Policy(
        version=top.version,
        default=default,
        scopes=scopes,
        seccomp_profiles=top.seccomp_profiles,
        layouts=top.layouts,
        source=source,
        digest=digest,
        text=text,
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


def find_location(text: str, path: tuple[str, ...], value: str = "") -> tuple[int, int] | None:
    """(line, column), both 1-based, of the key ``path`` sets (or of ``value`` inside it, a
    string in its array or inline table), best effort: the longest prefix of ``path`` that
    a header or ``key =`` line sets, refined to an inline key on that line."""
    table: tuple[str, ...] = ()
    best_len, best = 0, None
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        full: tuple[str, ...] = ()
        if stripped.startswith("["):
            table = _header_path(stripped) or ()
            full = table
        elif key := _key_path(stripped):
            full = (*table, *key)
        if full and path[: len(full)] == full and len(full) > best_len:
            best_len, best = len(full), (number, indent, offset)
        offset += len(line)
    if best is None:
        return None
    number, column, start = best
    line_text = text[start:].split("\n", 1)[0]
    for part in path[best_len:]:  # an inline table: ``require = { threshold = 2 }``
        found = re.search(rf"[{{,\s]\"?{re.escape(part)}\"?\s*=", line_text[column:])
        if found is None:
            break
        column += found.start() + 1
    if value:
        hit = _string_at(text, start + column, value)
        if hit is not None:
            return _line_col(text, hit)
    return number, column + 1


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _string_at(text: str, start: int, value: str) -> int | None:
    """The offset of the string ``value`` in the TOML value that follows ``key =`` at
    ``start`` (arrays and inline tables may span lines), else None."""
    i, depth, began = text.find("=", start) + 1, 0, False
    while 0 < i < len(text):
        ch = text[i]
        if ch == "#":  # a comment runs to the end of its line
            i = text.find("\n", i)
            continue
        if (ch == "\n" and depth == 0 and began) or (ch in "]}" and depth <= 1):
            break  # the value ended
        if ch in "[{":
            depth, began = depth + 1, True
        elif ch in "]}":
            depth -= 1
        elif ch in "\"'":
            end = i + 1
            while end < len(text) and text[end] not in (ch, "\n"):
                end += 2 if ch == '"' and text[end] == "\\" else 1
            if text[i + 1 : end] == value:
                return i
            if depth == 0:
                break  # a plain string, and not the one
            i, began = end, True
        i += 1
    return None


def _single_path(obj: Any) -> tuple[str, ...]:
    out: list[str] = []
    while isinstance(obj, dict) and len(obj) == 1:
        key, obj = next(iter(obj.items()))
        out.append(key)
        if isinstance(obj, list) and obj and isinstance(obj[0], dict):
            obj = obj[0]
    return tuple(out)


def _header_path(line: str) -> tuple[str, ...] | None:
    import tomllib  # noqa: PLC0415 - a start served by the compiled cache parses no TOML

    try:
        return _single_path(tomllib.loads(line))
    except tomllib.TOMLDecodeError:
        return None


def _key_path(line: str) -> tuple[str, ...] | None:
    if "=" not in line or line.startswith("#"):
        return None
    key = line.split("=", 1)[0]
    import tomllib  # noqa: PLC0415 - a start served by the compiled cache parses no TOML

    try:
        return _single_path(tomllib.loads(f"{key} = 0"))
    except tomllib.TOMLDecodeError:
        return None


def policy_digest(data: bytes) -> str:
    return "sha256-" + hashlib.sha256(data).hexdigest()


def loads_policy(data: bytes, source: str) -> Policy:
    """Parse policy bytes; anything wrong is a :class:`PolicyFileError`."""
    return _loads(data, source)[0]


def loads_policy_doc(data: bytes, source: str) -> tuple[Policy, dict[str, Any]]:
    """As :func:`loads_policy`, with the parsed TOML document (for the compiled cache)."""
    return _loads(data, source)


def _loads(data: bytes, source: str) -> tuple[Policy, dict[str, Any]]:
    import tomllib  # noqa: PLC0415 - a start served by the compiled cache parses no TOML

    digest = policy_digest(data)
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
        return _build(doc, source, digest, text), doc
    except Invalid as exc:
        raise PolicyFileError(source, exc.path, exc.problem, find_line(text, exc.path)) from exc
    except RecursionError as exc:
        raise PolicyFileError(source, (), "nested too deeply", None) from exc


def load_policy(path: Path) -> Policy:
    return loads_policy(read_policy_file(path), str(path))


def read_policy_file(path: Path) -> bytes:
    """The file's bytes, at most :data:`MAX_POLICY_BYTES`."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyFileError(str(path), (), f"cannot read: {exc.strerror}", None) from exc
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyFileError(str(path), (), f"larger than {MAX_POLICY_BYTES} bytes", None)
    return data
