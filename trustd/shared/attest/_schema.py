"""JSON Schema (draft 2020-12) of a strictly decoded file, from its dataclasses' type hints.

The same types :mod:`trustd.shared.codec` decodes; ``additionalProperties: false`` everywhere,
as the codec refuses unknown keys. Field ``doc`` metadata becomes ``description``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from trustd.shared.codec import file_fields, hints

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    bool: {"type": "boolean"},
    float: {"type": "number"},
}


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _schema(args[0], defs)
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is tuple:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0], defs)}
    if origin in (Mapping, dict):
        return {"type": "object", "additionalProperties": _schema(typing.get_args(tp)[1], defs)}
    if dataclasses.is_dataclass(tp):
        cls = typing.cast(type, tp)
        if cls.__name__ not in defs:
            defs[cls.__name__] = {}
            defs[cls.__name__] = _object(cls, defs)
        return {"$ref": f"#/$defs/{cls.__name__}"}
    return dict(_SCALARS[tp])


def _object(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    tps = hints(cls)
    for key, f in file_fields(cls):
        prop = _schema(tps[f.name], defs)
        if "doc" in f.metadata:
            prop = {**prop, "description": f.metadata["doc"]}
        if f.default is not dataclasses.MISSING and isinstance(f.default, bool | int | str):
            prop = {**prop, "default": f.default}
        props[key] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(key)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if cls.__doc__:
        out["description"] = cls.__doc__.strip().splitlines()[0]
    if required:
        out["required"] = required
    return out


def schema_of(cls: type, title: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    root = _object(cls, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        **root,
        "minProperties": 1,
        "$defs": defs,
    }
