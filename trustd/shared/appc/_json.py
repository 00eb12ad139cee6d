"""Strict JSON reading for third-party appc documents (private).

``loads_strict`` turns bytes into plain JSON values under limits a hostile publisher cannot
stretch: a size cap, strict UTF-8 (no BOM, no UTF-16 sniffing), no duplicate object keys (Go's
decoder keeps the last one, so two parsers could disagree about one document), no NaN or
Infinity, bounded nesting, and no NUL or lone surrogate in any string.

:class:`View` walks one JSON object while remembering which keys it consumed, so the caller can
keep every key it does not know (``extras``) and re-serialise the document without loss. Every
problem raises :class:`FieldError` carrying the field path (``app.mountPoints[2].name``); the
public parser turns that into its domain error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import TypeAlias

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
Extras: TypeAlias = tuple[tuple[str, str], ...]
"""Unknown keys of one object, in document order, each with its value as compact JSON text."""

MAX_DEPTH = 64


class FieldError(Exception):
    """A problem at one field path; converted to a domain error by the public parser."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or '<document>'}: {reason}")
        self.path = path
        self.reason = reason


def kind(value: JSONValue) -> str:
    """The JSON name of a value's type, for messages."""
    names: dict[type, str] = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }
    return "null" if value is None else names.get(type(value), "a value")


def dumps(value: JSONValue) -> str:
    """Compact JSON text; the form extras and raw isolator values are kept in."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _pairs(pairs: list[tuple[str, JSONValue]]) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {}
    for key, value in pairs:
        if key in out:
            raise FieldError(key, "the key appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> JSONValue:
    raise FieldError("", f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise FieldError("", f"the number {text[:40]} does not fit a 64-bit float")
    return value


def loads_strict(data: bytes, *, max_size: int) -> JSONValue:
    """Parse ``data`` as one strict JSON document; raise :class:`FieldError` on any problem."""
    if len(data) > max_size:
        raise FieldError("", f"the document is {len(data)} bytes (at most {max_size})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FieldError("", f"not UTF-8 (byte {exc.start})") from exc
    if text.startswith("\ufeff"):
        raise FieldError("", "the document starts with a byte order mark")
    try:
        value: JSONValue = json.loads(
            text, object_pairs_hook=_pairs, parse_constant=_no_constant, parse_float=_finite_float
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise FieldError("", f"not JSON: {exc.msg} ({where})") from exc
    except RecursionError as exc:
        raise FieldError("", f"nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # an integer with more digits than Python converts
        raise FieldError("", f"a number is out of range: {exc}") from exc
    _check_tree(value)
    return value


def _check_tree(root: JSONValue) -> None:
    """Iteratively bound nesting and refuse NUL and lone surrogates in keys and strings."""
    stack: list[tuple[JSONValue, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FieldError("", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise FieldError("", "a string contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FieldError("", "a string contains a lone UTF-16 surrogate") from exc


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class View:
    """One JSON object being decoded: typed getters that name the field path on failure."""

    __slots__ = ("_data", "_used", "path")

    def __init__(self, value: JSONValue, path: str) -> None:
        if not isinstance(value, dict):
            raise FieldError(path, f"expected an object, got {kind(value)}")
        self._data = value
        self._used: set[str] = set()
        self.path = path

    def at(self, key: str) -> str:
        return join(self.path, key)

    def raw(self, key: str) -> JSONValue:
        """The value under ``key``, or None when it is absent or null (Go's omitempty)."""
        self._used.add(key)
        return self._data.get(key)

    def present(self, key: str) -> bool:
        return self._data.get(key) is not None

    def req_str(self, key: str, *, nonempty: bool = True) -> str:
        value = self.opt_str(key)
        if value is None or (nonempty and not value):
            raise FieldError(self.at(key), "is required and must be a non-empty string")
        return value

    def opt_str(self, key: str) -> str | None:
        value = self.raw(key)
        if value is not None and not isinstance(value, str):
            raise FieldError(self.at(key), f"expected a string, got {kind(value)}")
        return value

    def opt_bool(self, key: str) -> bool | None:
        value = self.raw(key)
        if value is not None and not isinstance(value, bool):
            raise FieldError(self.at(key), f"expected true or false, got {kind(value)}")
        return value

    def opt_int(self, key: str, lo: int, hi: int) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        return check_int(value, self.at(key), lo, hi)

    def opt_list(self, key: str) -> list[tuple[str, JSONValue]] | None:
        """Items of an array with their paths (``key[i]``), or None when absent."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise FieldError(self.at(key), f"expected an array, got {kind(value)}")
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]

    def opt_str_list(self, key: str) -> tuple[str, ...] | None:
        items = self.opt_list(key)
        if items is None:
            return None
        return tuple(check_str(item, path) for path, item in items)

    def opt_str_map(self, key: str) -> tuple[tuple[str, str], ...] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise FieldError(self.at(key), f"expected an object, got {kind(value)}")
        return tuple((k, check_str(v, join(self.at(key), k))) for k, v in value.items())

    def extras(self) -> Extras:
        """Every key not consumed so far, with its value as compact JSON, in document order."""
        return tuple((k, dumps(v)) for k, v in self._data.items() if k not in self._used)


def check_str(value: JSONValue, path: str) -> str:
    if not isinstance(value, str):
        raise FieldError(path, f"expected a string, got {kind(value)}")
    return value


def check_int(value: JSONValue, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(path, f"expected an integer, got {kind(value)}")
    if not lo <= value <= hi:
        raise FieldError(path, f"{value} is out of range ({lo}..{hi})")
    return value


def emit(pairs: Iterable[tuple[str, JSONValue]], extras: Extras) -> dict[str, JSONValue]:
    """Build an object from known (key, value) pairs, skipping None, then the kept extras."""
    out: dict[str, JSONValue] = {k: v for k, v in pairs if v is not None}
    for key, text in extras:
        out[key] = json.loads(text)
    return out
