"""Strict JSON <-> frozen dataclasses, driven by the type hints (CONVENTIONS 3).

For trustd's own documents: every field must be known and of its declared type; a missing
field without a default, an unknown key, a bool where an int belongs or a string where a
list belongs is refused with the field's path (``apps[0].mounts[1].target``). A union of
dataclasses is told apart by a ``kind: Literal[...]`` field. ``enum.Flag`` values travel as
their integer and must not carry unknown bits.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any

_HINTS: dict[type, dict[str, Any]] = {}


class StrictJSONError(ValueError):
    """A document does not match its type; ``path`` names the field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or '(top level)'}: {problem}")
        self.path, self.problem = path, problem


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _kind_of(cls: type) -> tuple[Any, ...]:
    hint = _hints(cls).get("kind")
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else ()


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def _union(value: Any, options: tuple[Any, ...], path: str) -> Any:
    if value is None and type(None) in options:
        return None
    rest = [o for o in options if o is not type(None)]
    classes = [o for o in rest if dataclasses.is_dataclass(o) and isinstance(o, type)]
    if classes and isinstance(value, dict):
        for cls in classes:
            if value.get("kind") in _kind_of(cls):
                return decode(value, cls, path)
        if len(classes) > 1:
            raise StrictJSONError(_join(path, "kind"), f"unknown kind {value.get('kind')!r}")
    if len(rest) == 1:
        return decode(value, rest[0], path)
    for option in rest:
        try:
            return decode(value, option, path)
        except StrictJSONError:
            continue
    raise StrictJSONError(path, f"{type(value).__name__} fits none of the allowed types")


def _dataclass(value: Any, cls: type, path: str) -> Any:
    if not isinstance(value, dict):
        raise StrictJSONError(path, "must be an object")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise StrictJSONError(_join(path, unknown[0]), "unknown field")
    kwargs = {}
    hints = _hints(cls)
    for name, field in fields.items():
        if name in value:
            kwargs[name] = decode(value[name], hints[name], _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise StrictJSONError(_join(path, name), "missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise StrictJSONError(path, str(exc)) from exc


def _scalar(value: Any, tp: type, path: str) -> Any:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise StrictJSONError(path, f"must be {tp.__name__}, not {type(value).__name__}")
    return value


def _flag(value: Any, tp: type[enum.Flag], path: str) -> Any:
    every = 0
    for member in tp:
        every |= member.value
    if not isinstance(value, int) or isinstance(value, bool) or value & ~every or value < 0:
        raise StrictJSONError(path, f"must be a {tp.__name__} bit set")
    return tp(value)


def _literal(value: Any, tp: Any, path: str) -> Any:
    allowed = typing.get_args(tp)
    if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) for a in allowed):
        choices = ", ".join(repr(a) for a in allowed)
        raise StrictJSONError(path, f"{value!r} is not one of {choices}")
    return value


def _tuple(value: Any, tp: Any, path: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise StrictJSONError(path, "must be an array")
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(decode(v, args[0], _join(path, i)) for i, v in enumerate(value))
    if len(value) != len(args):
        raise StrictJSONError(path, f"must have {len(args)} items")
    return tuple(
        decode(v, a, _join(path, i)) for i, (v, a) in enumerate(zip(value, args, strict=True))
    )


def _none(value: Any, _tp: Any, path: str) -> None:
    if value is not None:
        raise StrictJSONError(path, "must be null")


def decode(value: Any, tp: Any, path: str = "") -> Any:
    """``value`` (parsed JSON) as an instance of ``tp``, or :class:`StrictJSONError`."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        how: Any = _literal
    elif origin in (typing.Union, types.UnionType):
        return _union(value, typing.get_args(tp), path)
    elif origin is tuple:
        how = _tuple
    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        how = _dataclass
    elif isinstance(tp, type) and issubclass(tp, enum.Flag):
        how = _flag
    elif tp is type(None):
        how = _none
    elif isinstance(tp, type):
        how = _scalar
    else:
        raise TypeError(f"no strict JSON decoding for {tp!r}")  # a programming error
    return how(value, tp, path)


def to_jsonable(obj: Any) -> Any:
    """The JSON form :func:`decode` reads back."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Flag):
        return obj.value
    if isinstance(obj, tuple | list):
        return [to_jsonable(v) for v in obj]
    return obj


def loads(data: bytes | str, tp: Any) -> Any:
    """Parse and decode; JSON syntax, depth and type errors all become :class:`StrictJSONError`."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise StrictJSONError("", f"not JSON: {exc}") from exc
    return decode(raw, tp)


def dumps(obj: Any, *, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(obj), indent=indent, sort_keys=True)
