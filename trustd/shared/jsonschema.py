"""JSON Schema (draft 2020-12) of a strictly decoded file, from its dataclasses' type hints.

The same types :mod:`trustd.shared.codec` decodes, so ``additionalProperties: false``
everywhere (the codec refuses unknown keys). Field ``doc`` metadata becomes ``description``.
Used for the run policy (``rkt policy schema``) and the verifier policy (``rkt attest
policy-schema``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from trustd.shared.codec import file_fields, hints

Fields = Callable[[type], list[tuple[str, "dataclasses.Field[Any]"]]]
_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    bool: {"type": "boolean"},
    float: {"type": "number"},
    datetime: {
        "type": "string",
        "format": "date-time",
        "$comment": "RFC 3339, with an offset (2030-01-01T00:00:00Z); in TOML quoted or bare",
    },
}


@dataclasses.dataclass(frozen=True)
class SchemaBuilder:
    """How one file format's dataclasses become a schema."""

    fields: Fields = file_fields
    all_optional: tuple[type, ...] = ()  # classes whose keys all have defaults elsewhere
    defaults: bool = False  # state simple defaults (bool, int, str)

    def value(self, tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            return self.value(args[0], defs)
        if origin is typing.Literal:
            return {"enum": list(typing.get_args(tp))}
        if origin is tuple:
            return {"type": "array", "items": self.value(typing.get_args(tp)[0], defs)}
        if origin in (Mapping, dict):
            item = self.value(typing.get_args(tp)[1], defs)
            return {"type": "object", "additionalProperties": item}
        if dataclasses.is_dataclass(tp):
            cls = typing.cast(type, tp)
            if cls.__name__ not in defs:
                defs[cls.__name__] = {}
                defs[cls.__name__] = self.object(cls, defs)
            return {"$ref": f"#/$defs/{cls.__name__}"}
        return dict(_SCALARS[tp])

    def object(self, cls: type, defs: dict[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = {}
        required: list[str] = []
        tps = hints(cls)
        for key, f in self.fields(cls):
            prop = self.value(tps[f.name], defs)
            if "doc" in f.metadata:
                prop = {**prop, "description": f.metadata["doc"]}
            if self.defaults and isinstance(f.default, bool | int | str):
                prop = {**prop, "default": f.default}
            props[key] = prop
            no_default = (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            )
            if no_default and cls not in self.all_optional:
                required.append(key)
        out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if cls.__doc__:
            out["description"] = cls.__doc__.strip().splitlines()[0]
        if required:
            out["required"] = required
        return out

    def document(self, cls: type, **head: Any) -> dict[str, Any]:
        defs: dict[str, Any] = {}
        root = self.object(cls, defs)
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **head, **root,
                "$defs": defs}  # fmt: skip
