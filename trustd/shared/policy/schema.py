"""JSON Schema (draft 2020-12) of the policy file, generated from the models' type hints."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from trustd.shared.policy._codec import hints, toml_fields
from trustd.shared.policy.model import Policy, Scope

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    bool: {"type": "boolean"},
    datetime: {
        "type": "string",
        "format": "date-time",
        "$comment": "RFC 3339, with an offset (2030-01-01T00:00:00Z); in TOML quoted or bare",
    },
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
    for key, f in toml_fields(cls):
        prop = _schema(tps[f.name], defs)
        if "doc" in f.metadata:
            prop = {**prop, "description": f.metadata["doc"]}
        props[key] = prop
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and cls is not Scope:
            required.append(key)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if cls.__doc__:
        out["description"] = cls.__doc__.strip().splitlines()[0]
    if required:
        out["required"] = required
    return out


def policy_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    root = _object(Policy, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://trustd.invalid/schema/policy-v1.json",
        "title": "trustd policy.toml",
        **root,
        "$defs": defs,
    }
