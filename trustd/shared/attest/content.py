"""trustd's CEL content type: the one contract between the measuring side and the verifier.

A trustd measurement is a TCG Canonical Event Log record (CEL-JSON) of this shape::

    {"recnum": 7, "pcr": 16,
     "digests": [{"hashAlg": "sha256", "digest": "<hex>"}, {"hashAlg": "sha384", ...}],
     "content_type": "trustd",
     "content": {"kind": "image", "data": {"pod": "<uuid>", "id": "sha512-...", ...}}}

* ``content`` has exactly two members: ``kind``, a short lowercase name (``[a-z0-9][a-z0-9.-]*``,
  at most 64 characters) saying what was measured, and ``data``, a JSON object.
* Every digest is ``H(canonical_json(content))`` for its ``hashAlg``, and that is what was
  extended into ``pcr``; :func:`event_digest` computes it. The verifier recomputes it from the
  record, so a record whose content was edited is refused even before replay.
* ``canonical_json`` is RFC 8785 (JCS) restricted to what trustd writes: objects, arrays,
  strings, booleans, null and integers within +-(2**53 - 1). No floats (their text form is a
  canonicalization hazard), no duplicate keys, at most 32 levels of nesting. Keys are sorted by
  their UTF-16 code units, there is no whitespace, strings are UTF-8 with only ``"``, ``\\`` and
  control characters escaped.
* Events that belong to a pod start carry ``data.pod``, the pod UUID, so a verifier can group
  them; suggested kinds are ``stage1``, ``image``, ``pod-manifest``, ``isolation``, ``policy``.
  No secrets and no empty fields go into ``data``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeAlias

from trustd.shared._dataclass import frozen
from trustd.shared.attest.errors import AttestFormatError
from trustd.shared.attest.model import HashAlg

TRUSTD_CONTENT_TYPE = "trustd"
MAX_DEPTH = 32
MAX_SAFE_INT = 2**53 - 1
_KIND = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")

Json: TypeAlias = Any  # a value json.loads returns, checked by canonical_json


@frozen
class TrustdContent:
    """The parsed ``content`` of a trustd record. Treat ``data`` as read-only."""

    kind: str
    data: Mapping[str, Json]

    def as_json(self) -> dict[str, Json]:
        return {"kind": self.kind, "data": self.data}


def canonical_json(obj: Json) -> bytes:
    """The canonical UTF-8 bytes of ``obj`` (JCS subset above).

    Raises ValueError (for every problem, type problems included) naming the offending path.
    """
    _check(obj, "$", 0)
    try:
        text = json.dumps(_sorted(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except (ValueError, UnicodeEncodeError) as err:
        raise ValueError(f"cannot be written as canonical JSON: {err}") from None


def _check(obj: Json, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, int):
        if abs(obj) > MAX_SAFE_INT:
            raise ValueError(f"{path}: integer {obj} is outside +-(2**53 - 1)")
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            _check(item, f"{path}[{i}]", depth + 1)
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: key {key!r} is not a string")  # noqa: TRY004
            _check(value, f"{path}.{key}", depth + 1)
    else:
        raise ValueError(f"{path}: {type(obj).__name__} is not allowed (no floats)")  # noqa: TRY004


def _sorted(obj: Json) -> Json:
    if isinstance(obj, Mapping):
        keys = sorted(obj, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return {k: _sorted(obj[k]) for k in keys}
    if isinstance(obj, list | tuple):
        return [_sorted(v) for v in obj]
    return obj


def trustd_content(kind: str, data: Mapping[str, Json]) -> TrustdContent:
    """Build (and check) trustd content; raises ValueError when it could not be measured."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"kind {kind!r} must match {_KIND.pattern}")
    if not isinstance(data, Mapping):
        raise ValueError(f"data must be a JSON object, not {type(data).__name__}")  # noqa: TRY004
    content = TrustdContent(kind, data)
    canonical_json(content.as_json())
    return content


def event_digest(content: TrustdContent | Mapping[str, Json], alg: HashAlg | str) -> bytes:
    """The digest a trustd event extends into its PCR: H(canonical_json(content))."""
    hash_alg = alg if isinstance(alg, HashAlg) else HashAlg.from_label(alg)
    if hash_alg is None:
        raise ValueError(f"unknown hash algorithm {alg!r}")
    if not isinstance(content, TrustdContent):
        content = parse_trustd_content(content, "trustd content")
    return hash_alg.digest(canonical_json(content.as_json()))


def parse_trustd_content(content: Json, structure: str) -> TrustdContent:
    """The ``content`` member of a trustd record, strictly: kind and data, nothing else."""
    if not isinstance(content, Mapping):
        raise AttestFormatError(structure, "content", "must be a JSON object")
    extra = set(content) - {"kind", "data"}
    if extra or "kind" not in content or "data" not in content:
        raise AttestFormatError(
            structure, "content", f"must have exactly kind and data (got {sorted(content)})"
        )
    try:
        return trustd_content(content["kind"], content["data"])
    except ValueError as err:
        raise AttestFormatError(structure, "content", str(err)) from None
