"""JSON Schema (draft 2020-12) of the policy file, generated from the models' type hints."""

from __future__ import annotations

from typing import Any

from trustd.shared.jsonschema import SchemaBuilder
from trustd.shared.policy._codec import toml_fields
from trustd.shared.policy.model import Policy, Scope


def policy_schema() -> dict[str, Any]:
    """Scopes inherit every key they leave out from ``[default]``: none is required there."""
    builder = SchemaBuilder(fields=toml_fields, all_optional=(Scope,))
    return builder.document(
        Policy,
        **{"$id": "https://trustd.invalid/schema/policy-v1.json"},
        title="trustd policy.toml",
    )
