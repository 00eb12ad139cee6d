"""Both formats at once: every simple signature and every sigstore signature of the
manifest, each judged alone; the image passes when at least one verifies, and each distinct
signer counts once (k-of-n is the policy's, across formats; ADR 0008, 0016)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from trustd.shared.errors import BadSignatureError, TrustdError
from trustd.shared.ocisig.identity import SignedIdentity
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.ocisig.sigstore import PemKey, verify_sigstore_one
from trustd.shared.ocisig.simple import (
    MAX_SIGNATURES,
    ImageSignature,
    NoSignatureError,
    best_refusal,
    verify_simple_one,
)
from trustd.shared.verify import Keyring

SigstorePair = tuple[bytes, str]  # (payload bytes, base64 signature)


def verify_image_signatures(
    messages: Sequence[bytes],
    sigstore: Sequence[SigstorePair],
    keyring: Keyring,
    pem_keys: Sequence[PemKey],
    image: DockerReference,
    *,
    manifest_digest: str,
    rule: SignedIdentity,
    where: str,
    now: datetime | None = None,
) -> tuple[ImageSignature, ...]:
    """Every distinct signer that verifies, simple signing first; raise when none does."""
    if not messages and not sigstore:
        raise NoSignatureError(
            f"{image} ({manifest_digest}) has no signature in {where}",
            hint="sign it (skopeo copy --sign-by FINGERPRINT, or cosign sign --key), configure "
            "where its signatures are (registries.d), or (not recommended) "
            "--insecure-options=image",
        )
    if len(messages) + len(sigstore) > MAX_SIGNATURES:
        raise BadSignatureError(
            f"{image} has {len(messages) + len(sigstore)} signatures (at most {MAX_SIGNATURES})"
        )
    found: dict[str, ImageSignature] = {}
    refusals: list[TrustdError] = []
    via = f'prefix "{image.name}"'
    for message in messages:
        try:
            result = verify_simple_one(message, keyring, image, manifest_digest, rule, now=now)
        except TrustdError as exc:
            refusals.append(exc)
            continue
        found.setdefault(result.signer, result)
    for payload, signature in sigstore:
        try:
            result = verify_sigstore_one(
                payload, signature, pem_keys, image, manifest_digest, rule=rule, trusted_via=via
            )
        except TrustdError as exc:
            refusals.append(exc)
            continue
        found.setdefault(result.signer, result)
    if not found:
        raise best_refusal(refusals)
    return tuple(found.values())
