"""The ``rendered`` marker root writes into each tree it rendered: the strict codec.

The marker says which bytes the tree was extracted from (the sha512 digest), who signed them
(or that they were admitted unsigned) and when. Root reads it back before reusing a tree, so
it decodes strictly: an unknown, missing or mistyped field is a
:class:`~trustd.shared.codec.DecodeError` naming the file and the field, never a silently
re-used tree with default values. :mod:`~trustd.privileged.treestore.render` writes it with
:func:`encode_marker` and reads it back with :func:`decode_marker`.
"""

from __future__ import annotations

import json
import re
from dataclasses import field
from datetime import UTC, datetime

from trustd.shared._dataclass import frozen
from trustd.shared.codec import DecodeError, decode_json, encode

RENDERED = "rendered"
MAX_MARKER = 64 << 10
_DIGEST = re.compile(r"[0-9a-f]{128}")
_FINGERPRINT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # OpenPGP, or a sigstore key ID
_HINT = "remove the tree (rkt image gc) and render it again"


def _digest(value: str) -> str | None:
    return None if _DIGEST.fullmatch(value) else "must be the sha512 of the image (128 hex)"


def _signers(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if not _FINGERPRINT.fullmatch(v)]
    return f"{bad[0]!r} is not a 40-hex fingerprint or 64-hex key ID" if bad else None


def _aware(value: datetime) -> str | None:
    return None if value.tzinfo is not None else "must carry a time zone"


@frozen
class RenderMarker:
    digest: str = field(metadata={"check": _digest})  # sha512 hex of the uncompressed tar
    signers: tuple[str, ...] = field(metadata={"check": _signers})
    insecure: bool
    rendered_at: datetime = field(metadata={"check": _aware})
    docker_name: str = ""  # docker://HOST/REPO: the signers verified for that docker name
    # a signed docker image: root squashed its signed layers again and got these bytes
    # (a marker without it, written before root did, is not reused for a docker image)
    converted: bool = False

    def __post_init__(self) -> None:
        if self.insecure == bool(self.signers):
            raise ValueError("a tree is either signed (signers) or insecure, exactly one")

    @classmethod
    def now(
        cls,
        digest: str,
        signers: tuple[str, ...],
        insecure: bool,
        docker_name: str = "",
        converted: bool = False,
    ) -> RenderMarker:
        stamp = datetime.now(UTC).replace(microsecond=0)
        return cls(digest, signers, insecure, stamp, docker_name, converted)


def encode_marker(marker: RenderMarker) -> bytes:
    return json.dumps(encode(marker), sort_keys=True).encode()


def decode_marker(data: bytes, source: str) -> RenderMarker:
    """Strict decode of a marker's bytes; refusals are one DecodeError naming ``source``."""
    if len(data) > MAX_MARKER:
        raise DecodeError(source, (), f"larger than {MAX_MARKER} bytes", _HINT)
    return decode_json(data, RenderMarker, source, hint=_HINT)
