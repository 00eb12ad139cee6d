"""Verifying an image's simple signatures: the whole rule, used by the fetch side before any
layer is downloaded and again by root from the bytes kept in the store.

Each signature must (in this order) be an OpenPGP signed message by a key trusted for the
image's Docker name (``docker.d`` prefixes plus root keys), carry a well-formed payload,
name the manifest digest that was actually fetched, and name the image under the scope's
identity rule. The result lists each distinct signer once (k-of-n counts signers, ADR 0008).
No signature that verifies: the most telling refusal is raised (a digest or identity
mismatch by a trusted key before an untrusted key, before a malformed signature).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from trustd.shared._dataclass import frozen
from trustd.shared.errors import (
    BadSignatureError,
    RefusedKeyError,
    RemoteLiedError,
    TrustdError,
    UntrustedSignerError,
    UserError,
)
from trustd.shared.ocisig.identity import IdentityMismatchError, SignedIdentity, check_identity
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.ocisig.payload import Format, parse_payload
from trustd.shared.verify import Keyring, verify_message

MAX_SIGNATURES = 16


class DigestMismatchError(RemoteLiedError):
    """A trusted signature over another manifest than the one fetched."""


class NoSignatureError(UserError):
    """An image that has no signature where its signatures are configured to be."""


@frozen
class ImageSignature:
    """One signer's verified statement about the fetched manifest."""

    format: Format
    signer: str  # primary key fingerprint (OpenPGP) or key ID (sigstore PEM)
    manifest_digest: str
    docker_reference: str  # as signed
    trusted_via: str

    def to_json(self) -> dict[str, str]:
        return {
            "format": self.format,
            "signer": self.signer,
            "manifest_digest": self.manifest_digest,
            "docker_reference": self.docker_reference,
            "trusted_via": self.trusted_via,
        }


# The order refusals are reported in when no signature verifies: the first kind found wins.
_RANK: tuple[type[TrustdError], ...] = (
    DigestMismatchError,
    IdentityMismatchError,
    RefusedKeyError,
    UntrustedSignerError,
    BadSignatureError,
)


def _rank(exc: TrustdError) -> int:
    return next((i for i, t in enumerate(_RANK) if isinstance(exc, t)), len(_RANK))


def best_refusal(refusals: list[TrustdError]) -> TrustdError:
    """The most telling of several refusals (the order of ``_RANK``)."""
    return min(refusals, key=_rank)


def verify_simple_one(
    message: bytes,
    keyring: Keyring,
    image: DockerReference,
    manifest_digest: str,
    rule: SignedIdentity,
    *,
    now: datetime | None = None,
) -> ImageSignature:
    proof, content = verify_message(message, keyring, now=now)
    payload = parse_payload(content, "simple-signing")
    if payload.manifest_digest != manifest_digest:
        raise DigestMismatchError(
            f"the signature by key {proof.signer.upper()} is for manifest "
            f"{payload.manifest_digest}, but {image} is {manifest_digest} (the tag moved "
            "after signing, or the signature belongs to another image)",
            hint="ask the publisher to sign the current manifest, or fetch the signed one by "
            f"digest: docker://{image.name.text}@{payload.manifest_digest}",
        )
    check_identity(rule, image, payload.reference)
    return ImageSignature(
        "simple-signing", proof.signer, manifest_digest, payload.docker_reference, proof.trusted_via
    )


def verify_simple(
    messages: Sequence[bytes],
    keyring: Keyring,
    image: DockerReference,
    manifest_digest: str,
    rule: SignedIdentity,
    *,
    where: str,
    now: datetime | None = None,
) -> tuple[ImageSignature, ...]:
    """Every distinct signer whose signature verifies; raise when none does."""
    if not messages:
        raise NoSignatureError(
            f"{image} ({manifest_digest}) has no signature in {where}",
            hint="sign it (skopeo copy --sign-by FINGERPRINT), configure where its signatures "
            "are (registries.d lookaside), or (not recommended) --insecure-options=image",
        )
    if len(messages) > MAX_SIGNATURES:
        raise BadSignatureError(
            f"{image} has {len(messages)} signatures (at most {MAX_SIGNATURES})"
        )
    found: dict[str, ImageSignature] = {}
    refusals: list[TrustdError] = []
    for message in messages:
        try:
            result = verify_simple_one(message, keyring, image, manifest_digest, rule, now=now)
        except TrustdError as exc:
            refusals.append(exc)
            continue
        found.setdefault(result.signer, result)
    if not found:
        raise best_refusal(refusals)
    return tuple(found.values())
