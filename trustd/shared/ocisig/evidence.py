"""The signature evidence of a converted Docker image, kept in the store as the image's
signature file: the manifest that was fetched, every signature message, and the reference
that was asked for. The fetch side writes it; root decodes and verifies it again, believing
none of it (the group can rewrite the file, so every fact is re-derived from the bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError

VERSION = 1
MAX_EVIDENCE = 8 * 1024 * 1024
_HINT = "the store was altered; remove the image (rkt image rm) and fetch it again"


@frozen
class Evidence:
    reference: str  # normalized DockerReference text
    manifest: bytes
    messages: tuple[bytes, ...]
    format: str = "simple-signing"
    sigstore: tuple[tuple[bytes, str], ...] = ()  # (payload, base64 signature) per cosign layer

    @property
    def manifest_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    def encode(self) -> bytes:
        doc = {
            "version": VERSION,
            "format": self.format,
            "reference": self.reference,
            "manifest": base64.b64encode(self.manifest).decode(),
            "signatures": [base64.b64encode(m).decode() for m in self.messages],
        }
        if self.sigstore:
            doc["sigstore"] = [
                {"payload": base64.b64encode(p).decode(), "signature": s} for p, s in self.sigstore
            ]
        return json.dumps(doc, sort_keys=True).encode()


def is_evidence(data: bytes) -> bool:
    """A Docker image's evidence (JSON) rather than an ACI's OpenPGP signature."""
    return data[:1] == b"{"


def _field(doc: dict[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise LocalStateError(
            f"docker signature evidence: field {key!r} is missing or mistyped", hint=_HINT
        )
    return value


def decode_evidence(data: bytes) -> Evidence:
    if len(data) > MAX_EVIDENCE:
        raise LocalStateError(f"docker signature evidence is over {MAX_EVIDENCE} bytes", hint=_HINT)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LocalStateError(f"docker signature evidence is not JSON: {exc}", hint=_HINT) from exc
    required = {"version", "format", "reference", "manifest", "signatures"}
    if not isinstance(doc, dict) or not required <= set(doc) <= required | {"sigstore"}:
        raise LocalStateError("docker signature evidence has unexpected fields", hint=_HINT)
    if doc["version"] != VERSION or doc["format"] != "simple-signing":
        raise LocalStateError("docker signature evidence: unknown version or format", hint=_HINT)
    sigs = _field(doc, "signatures", list)
    try:
        manifest = base64.b64decode(_field(doc, "manifest", str), validate=True)
        messages = tuple(base64.b64decode(s, validate=True) for s in sigs if isinstance(s, str))
    except (binascii.Error, ValueError) as exc:
        raise LocalStateError(f"docker signature evidence: bad base64: {exc}", hint=_HINT) from exc
    if len(messages) != len(sigs):
        raise LocalStateError("docker signature evidence: a signature is not a string", hint=_HINT)
    return Evidence(
        _field(doc, "reference", str),
        manifest,
        messages,
        sigstore=_sigstore(doc.get("sigstore", [])),
    )


def _sigstore(items: object) -> tuple[tuple[bytes, str], ...]:
    bad = LocalStateError("docker signature evidence: bad sigstore entry", hint=_HINT)
    if not isinstance(items, list):
        raise bad
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"payload", "signature"}:
            raise bad
        payload, signature = item["payload"], item["signature"]
        if not isinstance(payload, str) or not isinstance(signature, str):
            raise bad
        try:
            out.append((base64.b64decode(payload, validate=True), signature))
        except (binascii.Error, ValueError) as exc:
            raise bad from exc
    return tuple(out)
