"""One strict codec for trustd's own files: a document -> frozen dataclasses, by type hints.

The dataclasses *are* the file format (CONVENTIONS 3). Decoding refuses an unknown field, a
missing required field, a wrong type (``true`` is not an integer, a string is not a list)
and any value a field's ``check`` refuses; every refusal is one :class:`DecodeError` naming
the file and the field path (``apps.0.seccomp.rules.2.errno``). Absurd nesting, oversized
input and JSON syntax errors are the same error. Choice and measurements: docs/adr/0011.

Supported field types: ``str``, ``int``, ``bool``, ``float``, ``datetime``, ``Literal[...]``,
``X | None``, ``tuple[X, ...]``, fixed ``tuple[A, B]``, ``Mapping[str, X]`` / ``dict[str, X]``
and nested dataclasses. Field metadata: ``key`` (the name in the file when it differs),
``check`` (value -> problem or None), ``internal`` (never read from a file).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError

T = TypeVar("T")
# RFC 3339 section 5.6 date-time, JSON Schema's "date-time" format (T and Z in either case)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
MAX_DOCUMENT = 4 << 20  # bytes of any one file trustd reads back
_HINTS: dict[type, dict[str, Any]] = {}


class DecodeError(LocalStateError):
    """One of trustd's own files does not decode: syntax, unknown or missing field, type."""

    def __init__(self, source: str, path: tuple[str, ...], problem: str, hint: str = "") -> None:
        field_path = ".".join(path) or "(top level)"
        super().__init__(
            f"{source}: {field_path}: {problem}",
            hint=hint or "the file was not written by this trustd, or was altered",
        )
        self.source, self.field_path, self.problem = source, path, problem


class Invalid(Exception):
    """A refusal at ``path`` while decoding (turned into :class:`DecodeError` at the top)."""

    def __init__(self, path: tuple[str, ...], problem: str) -> None:
        super().__init__(problem)
        self.path, self.problem = path, problem


def hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def file_fields(cls: type) -> list[tuple[str, dataclasses.Field[Any]]]:
    """(key in the file, field) for every field a file may set."""
    return [
        (f.metadata.get("key", f.name), f)
        for f in dataclasses.fields(cls)
        if not f.metadata.get("internal")
    ]


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "an array"
    if dataclasses.is_dataclass(tp) or origin in (Mapping, dict):
        return "a table"
    names = {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        float: "a number",
        datetime: "a date-time",
    }
    return names.get(tp, str(tp))


Step = Callable[[Any, tuple[str, ...], Any], Any]  # (value, path, base) -> decoded


@frozen
class Decoder:
    """How a document's scalars look: TOML has real date-times, JSON has ISO strings.

    Each type is compiled once into a function (cached), so decoding a file is one call per
    value with no type inspection on the way."""

    dates_as_text: bool = False
    rfc3339_text: bool = False  # text date-times too, but only RFC 3339 ones (TOML: quoted)
    noun: str = "field"  # what the file format calls a member ("key" in TOML)
    _steps: dict[Any, Step] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def value(self, value: Any, tp: Any, path: tuple[str, ...], base: Any = None) -> Any:
        return self.step(tp)(value, path, base)

    def table(self, value: Any, cls: type[T], path: tuple[str, ...], base: Any = None) -> T:
        """``value`` as ``cls``; a field it leaves out comes from ``base`` (an instance of
        ``cls``) when given, else the field's default, else it is missing."""
        decoded: T = self.step(cls)(value, path, base)
        return decoded

    def step(self, tp: Any) -> Step:
        found = self._steps.get(tp)
        if found is None:
            found = self._compile(tp)
            self._steps[tp] = found
        return found

    def _compile(self, tp: Any) -> Step:  # noqa: PLR0911 - one branch per kind of type
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            return self._optional(tp)
        if origin is typing.Literal:
            return _literal(tp)
        if origin is tuple:
            return self._tuple(tp)
        if origin in (Mapping, dict):
            return self._mapping(tp)
        if dataclasses.is_dataclass(tp):
            return self._table(typing.cast(type, tp))
        if isinstance(tp, type) and issubclass(tp, enum.Flag):
            return _flag(tp)
        if tp is datetime:
            return self._datetime
        if tp is float:
            return _float
        if tp is Any:
            return lambda v, _p, _b: v
        if tp in (str, int, bool):
            return _exact(tp)
        raise TypeError(f"the codec cannot decode {tp!r}")

    def _optional(self, tp: Any) -> Step:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(tp))
        inner = self.step(args[0]) if len(args) == 1 else self._tagged(args)

        def optional(value: Any, path: tuple[str, ...], base: Any) -> Any:
            if value is None and nullable:
                return None
            return inner(value, path, base)

        return optional

    def _tagged(self, classes: list[Any]) -> Step:
        """A union of dataclasses, told apart by their ``kind: Literal[...]`` field."""
        by_kind: dict[Any, Step] = {}
        for cls in classes:
            kind = hints(cls).get("kind") if isinstance(cls, type) else None
            if typing.get_origin(kind) is not typing.Literal:
                raise TypeError(f"the codec cannot tell the members of a union apart: {cls!r}")
            for tag in typing.get_args(kind):
                by_kind[tag] = self.step(cls)
        kinds = ", ".join(sorted(map(repr, by_kind)))

        def tagged(value: Any, path: tuple[str, ...], base: Any) -> Any:
            if not isinstance(value, dict):
                raise Invalid(path, f"expected a table, not {_kind(value)}")
            step = by_kind.get(value.get("kind"))
            if step is None:
                raise Invalid((*path, "kind"), f"{value.get('kind')!r} is not one of {kinds}")
            return step(value, path, base)

        return tagged

    def _tuple(self, tp: Any) -> Step:
        args = typing.get_args(tp)
        name = type_name(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = self.step(args[0])

            def homogeneous(value: Any, path: tuple[str, ...], _base: Any) -> tuple[Any, ...]:
                if type(value) is not list and type(value) is not tuple:
                    raise Invalid(path, f"expected {name}, not {_kind(value)}")
                try:  # the item's index joins the path only when it is refused (hot loop)
                    return tuple([item(v, path, None) for v in value])
                except Invalid as exc:
                    index = next(i for i, v in enumerate(value) if _refuses(item, v, path))
                    exc.path = (*path, str(index), *exc.path[len(path) :])
                    raise

            return homogeneous
        items = [self.step(a) for a in args]

        def fixed(value: Any, path: tuple[str, ...], _base: Any) -> tuple[Any, ...]:
            if type(value) is not list and type(value) is not tuple:
                raise Invalid(path, f"expected {name}, not {_kind(value)}")
            if len(value) != len(items):
                raise Invalid(path, f"expected {len(items)} items, not {len(value)}")
            return tuple(
                f(v, (*path, str(i)), None)
                for i, (v, f) in enumerate(zip(value, items, strict=True))
            )

        return fixed

    def _mapping(self, tp: Any) -> Step:
        item = self.step(typing.get_args(tp)[1])

        def mapping(value: Any, path: tuple[str, ...], base: Any) -> Any:
            if not isinstance(value, dict):
                raise Invalid(path, f"expected a table, not {_kind(value)}")
            return types.MappingProxyType(
                {str(k): item(v, (*path, str(k)), base) for k, v in value.items()}
            )

        return mapping

    def _table(self, cls: type) -> Step:
        fields = file_fields(cls)
        known = frozenset(k for k, _ in fields)
        listed = ", ".join(sorted(known))
        plan: list[tuple[str, str, bool, Callable[[Any], str | None] | None]] = []
        self._steps[cls] = lambda v, p, b: self._steps[cls](v, p, b)  # noqa: PLW0108 - recursion
        tps = hints(cls)
        for key, f in fields:
            has_default = (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            plan.append((key, f.name, has_default, f.metadata.get("check")))
        steps = {key: self.step(tps[f.name]) for key, f in fields}

        def table(value: Any, path: tuple[str, ...], base: Any) -> Any:
            if not isinstance(value, dict):
                raise Invalid(path, f"expected a table, not {_kind(value)}")
            if not known.issuperset(value):
                unknown = sorted((k for k in value if k not in known), key=str)
                raise Invalid((*path, str(unknown[0])), f"unknown {self.noun} (known: {listed})")
            kwargs: dict[str, Any] = {}
            for key, name, has_default, check in plan:
                sub = None if base is None else getattr(base, name)
                if key in value:
                    decoded = steps[key](value[key], (*path, key), sub)
                elif base is not None:
                    decoded = sub
                elif has_default:
                    continue
                else:
                    raise Invalid((*path, key), f"missing required {self.noun}")
                if check is not None and (problem := check(decoded)):
                    raise Invalid((*path, key), problem)
                kwargs[name] = decoded
            try:
                return cls(**kwargs)
            except (TypeError, ValueError) as exc:  # a __post_init__ refusal
                raise Invalid(path, str(exc)) from exc

        return table

    def _datetime(self, value: Any, path: tuple[str, ...], _base: Any) -> datetime:
        if self.rfc3339_text and isinstance(value, str):
            if not RFC3339.fullmatch(value):
                raise Invalid(
                    path, f"{value!r} is not an RFC 3339 date-time (e.g. 2030-01-01T00:00:00Z)"
                )
            try:
                return datetime.fromisoformat(value.upper())
            except ValueError as exc:
                raise Invalid(path, f"{value!r} is not a valid date-time: {exc}") from exc
        if self.dates_as_text and isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError as exc:
                raise Invalid(path, f"{value!r} is not an ISO 8601 date-time") from exc
        if type(value) is date:
            raise Invalid(path, "expected a date-time with a zone (2026-06-30T00:00:00Z)")
        if not isinstance(value, datetime):
            raise Invalid(path, f"expected a date-time, not {_kind(value)}")
        return value


def _refuses(step: Step, value: Any, path: tuple[str, ...]) -> bool:
    try:
        step(value, path, None)
    except Invalid:
        return True
    return False


def _exact(tp: type) -> Step:
    name = type_name(tp)

    def exact(value: Any, path: tuple[str, ...], _base: Any) -> Any:
        if type(value) is not tp:
            raise Invalid(path, f"expected {name}, not {_kind(value)}")
        return value

    return exact


def _flag(tp: type[enum.Flag]) -> Step:
    """An ``enum.Flag`` travels as its integer; unknown bits are refused."""
    every = 0
    for member in tp:
        every |= member.value

    def flag(value: Any, path: tuple[str, ...], _base: Any) -> Any:
        if type(value) is not int or value < 0 or value & ~every:
            raise Invalid(path, f"{value!r} is not a set of {tp.__name__} bits")
        return tp(value)

    return flag


def _float(value: Any, path: tuple[str, ...], _base: Any) -> float:
    if type(value) not in (int, float):
        raise Invalid(path, f"expected a number, not {_kind(value)}")
    return float(value)


def _literal(tp: Any) -> Step:
    allowed = typing.get_args(tp)
    name = type_name(tp)

    def literal(value: Any, path: tuple[str, ...], _base: Any) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise Invalid(path, f"{value!r} is not {name}")
        return value

    return literal


def _kind(value: Any) -> str:
    names = {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        float: "a number",
        list: "an array",
        dict: "a table",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


JSON = Decoder(dates_as_text=True)


def decode_json(data: bytes | str, cls: type[T], source: str, hint: str = "") -> T:
    """Strict JSON -> ``cls``; every problem is one :class:`DecodeError` naming ``source``."""
    if len(data) > MAX_DOCUMENT:
        raise DecodeError(source, (), f"larger than {MAX_DOCUMENT} bytes", hint)
    try:
        doc = json.loads(data)
    except RecursionError as exc:
        raise DecodeError(source, (), "nested too deeply", hint) from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DecodeError(source, (), f"not valid JSON: {exc}", hint) from exc
    return decode_doc(doc, cls, source, hint)


def decode_doc(doc: Any, cls: type[T], source: str, hint: str = "", decoder: Decoder = JSON) -> T:
    """An already parsed document -> ``cls`` (see :func:`decode_json`)."""
    try:
        return decoder.table(doc, cls, ())
    except Invalid as exc:
        raise DecodeError(source, exc.path, exc.problem, hint) from exc
    except RecursionError as exc:
        raise DecodeError(source, (), "nested too deeply", hint) from exc


TOML = Decoder(noun="key")


def read_toml(path: Path, cls: type[T], hint: str = "") -> T:
    """Read a small TOML file of trustd's own and decode it strictly (see decode_json)."""
    import tomllib  # noqa: PLC0415 - only the few TOML files need it

    data = _read(path, hint)
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise DecodeError(str(path), (), "nested too deeply", hint) from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DecodeError(str(path), (), f"not valid TOML: {exc}", hint) from exc
    return decode_doc(doc, cls, str(path), hint, TOML)


def _read(path: Path, hint: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_DOCUMENT + 1)
    except OSError as exc:
        raise DecodeError(str(path), (), f"cannot read: {exc.strerror}", hint) from exc
    if len(data) > MAX_DOCUMENT:
        raise DecodeError(str(path), (), f"larger than {MAX_DOCUMENT} bytes", hint)
    return data


def read_json(path: Path, cls: type[T], hint: str = "") -> T:
    """Read ``path`` (size-capped) and decode it; unreadable is the same error."""
    return decode_json(_read(path, hint), cls, str(path), hint)


def encode(obj: Any) -> Any:
    """A dataclass tree -> JSON-able values (tuples as lists, datetimes as ISO text), using
    each field's file key; the inverse of decoding."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {key: encode(getattr(obj, f.name)) for key, f in file_fields(type(obj))}
    if isinstance(obj, tuple | list):
        return [encode(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, enum.Flag):
        return obj.value
    return obj
