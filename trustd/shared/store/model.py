"""What the image store records about an image, and the one way an image gets admitted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trustd.shared.appc.aci import AciInfo
from trustd.shared.codec import decode_doc, decode_json
from trustd.shared.verify import VerifiedSignature

ID_PREFIX = "sha512-"
KEY_HEX = 64  # rkt's store key: sha512- and the first 64 hex digits (256 bits)
SHORT_HEX = 32  # rkt's short form on the command line
_HINT = "the store index was altered; remove the image (rkt image rm ID) and fetch it again"

# Only trustd.shared.store.admit holds this (CONVENTIONS 4).
_ADMIT_TOKEN = object()


def store_key(image_id: str) -> str:
    """``sha512-<128 hex>`` (or an already short key) -> rkt's ``sha512-<64 hex>`` key."""
    return image_id[: len(ID_PREFIX) + KEY_HEX]


@dataclass(frozen=True, slots=True)
class Provenance:
    """Why the store believes an image: who signed it, or that the user opted out."""

    signers: tuple[str, ...]  # primary fingerprints that verified it
    insecure: bool  # imported with --insecure-options=image
    verified_at: str  # ISO time of the verification
    trusted_via: str = ""
    source_digest: str = ""  # e.g. a docker manifest digest (sha256:...) it was converted from

    def to_json(self) -> dict[str, Any]:
        return {
            "signers": list(self.signers),
            "insecure": self.insecure,
            "verified_at": self.verified_at,
            "trusted_via": self.trusted_via,
            "source_digest": self.source_digest,
        }

    @classmethod
    def from_json(cls, obj: Any, source: str = "store index: provenance") -> Provenance:
        """Strict: an unknown, missing or mistyped field is a DecodeError naming it (a
        provenance that decoded loosely could turn ``"insecure": "false"`` into True)."""
        return decode_doc(obj, cls, source, hint=_HINT)

    @classmethod
    def decode(cls, text: str | bytes, source: str = "store index: provenance") -> Provenance:
        """:meth:`from_json` of the JSON text the index stores."""
        return decode_json(text, cls, source, hint=_HINT)


@dataclass(frozen=True, slots=True)
class AdmittedImage:
    """An archive that passed inspection and the signature gate (or an explicit opt-out)."""

    info: AciInfo
    signature: VerifiedSignature | None
    provenance: Provenance
    _token: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _ADMIT_TOKEN:
            raise TypeError("AdmittedImage is made only by trustd.shared.store.admit")

    @property
    def key(self) -> str:
        return store_key(self.info.image_id)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One row of the store index."""

    key: str
    digest: str  # full sha512 hex of the uncompressed tar
    name: str
    labels: tuple[tuple[str, str], ...]
    import_time: datetime
    last_used: datetime
    size: int  # bytes of the original (as signed) archive
    uncompressed_size: int
    source: str
    provenance: Provenance

    def label(self, name: str) -> str | None:
        return next((v for k, v in self.labels if k == name), None)
