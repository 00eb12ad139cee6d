"""Render ac-discovery URL templates (appc spec 0.8.11, discovery.md).

Variables: ``{name}`` (the full AC name), ``{ext}`` (``aci`` or ``aci.asc``) and
``{<label>}`` for every label, with ``version`` defaulting to ``latest``. Labels called
``name`` or ``ext`` are ignored: those variables are not the caller's to set.

Differences from appc, both on the safe side: substitution is one pass, so a label value
that looks like a variable (``{os}``) is never expanded; and an endpoint is discarded if
any brace at all is left afterwards (appc only looked for ``{...}``), because a URL cannot
contain a raw brace anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from trustd.shared.appc.identifier import ACIdentifier
from trustd.unprivileged.discovery.model import ACIEndpoint

DEFAULT_VERSION = "latest"
_RESERVED = frozenset({"name", "ext"})
_VARIABLE = re.compile(r"\{([^{}]*)\}")


def template_values(name: ACIdentifier, labels: Mapping[str, str]) -> dict[str, str]:
    """The variables a template may use, except ``{ext}``."""
    values = {k: v for k, v in labels.items() if k not in _RESERVED}
    if not values.get("version"):
        values["version"] = DEFAULT_VERSION
    values["name"] = str(name)
    return values


def render(template: str, values: Mapping[str, str]) -> str | None:
    """``template`` with its variables filled in, or None if any brace is left."""
    rendered = _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    if "{" in rendered or "}" in rendered:
        return None
    return rendered


def render_endpoint(
    template: str, name: ACIdentifier, labels: Mapping[str, str]
) -> ACIEndpoint | None:
    """The ACI and signature URLs for ``name`` and ``labels``, or None if not renderable."""
    values = template_values(name, labels)
    aci = render(template, {**values, "ext": "aci"})
    asc = render(template, {**values, "ext": "aci.asc"})
    if aci is None or asc is None:
        return None
    return ACIEndpoint(aci=aci, asc=asc)
