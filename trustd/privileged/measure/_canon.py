"""The digest contract shared with the verifier: ``trustd.shared.attest.content`` defines it.

A trustd event's content is ``{"kind": KIND, "data": {...}}``; the digest extended for bank
``alg`` is ``attest.event_digest(content, alg)`` = H(``attest.canonical_json``
(content)), which the verifier recomputes from the record itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from trustd.shared.attest.content import (
    canonical_json,
    event_digest,
    parse_trustd_content,
    trustd_content,
)

# Banks trustd extends when the TPM has them allocated (all of them: an allocated bank left
# unextended could be made to match a forged log). Nothing trusts SHA-1 (CONVENTIONS 10).
DIGEST_SIZES: Final = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}

__all__ = [
    "DIGEST_SIZES",
    "canonical_json",
    "check_event",
    "event_digest",
    "parse_trustd_content",
]


def _no_empty(value: object, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not key:
                raise ValueError(f"{where}: an empty key")
            _no_empty(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _no_empty(item, f"{where}[{i}]")
    elif value is None or value == "":
        raise ValueError(f"{where} is empty")


def check_event(content: Mapping[str, object]) -> None:
    """Exactly ``kind`` and a non-empty ``data``; no empty fields (rkt's were always empty)."""
    if set(content) != {"kind", "data"}:
        raise ValueError(f"must have exactly kind and data, not {sorted(content)}")
    kind, data = content["kind"], content["data"]
    if not isinstance(data, Mapping) or not data:
        raise ValueError("data must be a non-empty JSON object")
    _no_empty(data, "data")
    trustd_content(kind, data)  # type: ignore[arg-type]  # checks kind and canonical JSON
