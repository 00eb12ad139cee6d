"""Sigstore (cosign) signatures with a key: ECDSA P-256 (SHA-256) or Ed25519 over the
simple-signing payload bytes (docs/adr/0024-sigstore-keyless.md).

A cosign signature is a payload (``critical.type`` = ``cosign container image signature``)
and the base64 of a signature over exactly those bytes, carried as the
``dev.cosignproject.cosign/signature`` annotation of a layer of the ``sha256-<hex>.sig``
image. The key ID is the sha256 of the key's DER SubjectPublicKeyInfo (64 hex), which is
also its file name in the keystore.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING

from trustd.shared._dataclass import frozen
from trustd.shared.errors import BadSignatureError, UntrustedSignerError, UserError
from trustd.shared.ocisig.identity import SignedIdentity, check_identity
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.ocisig.payload import parse_payload
from trustd.shared.ocisig.simple import DigestMismatchError, ImageSignature

if TYPE_CHECKING:  # cryptography loads on first use: a pod start never needs it (issue #14)
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    PublicKeyType = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

ANNOTATION = "dev.cosignproject.cosign/signature"
MAX_PEM = 16 * 1024


class PemKeyError(UserError):
    """Bytes that are not an allowed sigstore public key."""


@frozen
class PemKey:
    """A sigstore public key: its ID (sha256 of the DER SubjectPublicKeyInfo) and PEM text."""

    key_id: str
    algorithm: str  # "ecdsa-p256" or "ed25519"
    pem: str
    public: PublicKeyType = field(repr=False, compare=False)


def is_pem_public_key(data: bytes) -> bool:
    return b"-----BEGIN PUBLIC KEY-----" in data[:4096]


def parse_pem_key(data: bytes, *, source: str) -> PemKey:
    """An ECDSA P-256 or Ed25519 public key in PEM; anything else is refused naming why."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: PLC0415

    hint = "export the public key with: openssl ec -in KEY.pem -pubout (or cosign public-key)"
    if len(data) > MAX_PEM:
        raise PemKeyError(f"{source} is larger than {MAX_PEM} bytes", hint=hint)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise PemKeyError(f"{source} is not a PEM public key: {exc}", hint=hint) from exc
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        algorithm = "ecdsa-p256"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    else:
        raise PemKeyError(
            f"{source} holds a {type(key).__name__.removeprefix('_')} key; sigstore keys must "
            "be ECDSA P-256 or Ed25519",
            hint=hint,
        )
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return PemKey(hashlib.sha256(der).hexdigest(), algorithm, pem, key)


def _check(key: PemKey, signature: bytes, payload: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: PLC0415

    try:
        if isinstance(key.public, ed25519.Ed25519PublicKey):
            key.public.verify(signature, payload)
        else:
            key.public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def verify_sigstore_one(
    payload: bytes,
    signature_b64: str,
    keys: Sequence[PemKey],
    image: DockerReference,
    manifest_digest: str,
    *,
    rule: SignedIdentity,
    trusted_via: str = "",
    now: datetime | None = None,
) -> ImageSignature:
    """One cosign signature by one of ``keys`` (those trusted for the image), or raise."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadSignatureError(
            f"the sigstore signature for {image} is not base64", hint="sign it again with cosign"
        ) from exc
    signer = next((k for k in keys if _check(k, signature, payload)), None)
    if signer is None:
        raise UntrustedSignerError(
            f"the sigstore signature for {image} was not made by a key trusted for "
            f'prefix "{image.name}" ({len(keys)} trusted sigstore key(s))',
            hint=f'run: rkt trust --prefix "{image.name}" cosign.pub',
        )
    content = parse_payload(payload, "sigstore")  # only bytes that verified are parsed
    if content.manifest_digest != manifest_digest:
        raise DigestMismatchError(
            f"the sigstore signature by key {signer.key_id[:16]} is for manifest "
            f"{content.manifest_digest}, but {image} is {manifest_digest}",
            hint="ask the publisher to sign the current manifest (cosign sign)",
        )
    check_identity(rule, image, content.reference)
    return ImageSignature(
        "sigstore", signer.key_id, manifest_digest, content.docker_reference, trusted_via
    )
