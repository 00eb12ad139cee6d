"""Attestation keys the verifier pins: a PEM public key, or the TPM's own TPMT_PUBLIC."""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trustd.shared.attest import _tpm2
from trustd.shared.attest.errors import AttestFormatError
from trustd.shared.attest.model import AttestationKey, PublicKey

MIN_RSA_BITS = 2048
RESTRICTED = 1 << 16
SIGN = 1 << 18
FIXED_TPM = 1 << 1
_AK_ATTRIBUTES = RESTRICTED | SIGN | FIXED_TPM


def load_ak_pem(data: bytes, *, source: str = "AK PEM") -> AttestationKey:
    """A PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo), as ``tpm2_readpublic -f pem`` writes it."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise AttestFormatError(source, "PUBLIC KEY", f"not a PEM public key ({err})") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise AttestFormatError(source, "PUBLIC KEY", f"a {type(key).__name__}, not RSA or EC")
    return AttestationKey(_strong(key, source), source)


def load_ak_tpm(data: bytes, *, source: str = "AK TPMT_PUBLIC") -> AttestationKey:
    """A TPMT_PUBLIC; the key must be a restricted signing key that never leaves its TPM.

    An unrestricted key can sign any bytes, including a forged TPMS_ATTEST, so it cannot vouch
    for a quote.
    """
    key, name, attributes = _tpm2.parse_public(data)
    if attributes & _AK_ATTRIBUTES != _AK_ATTRIBUTES:
        raise AttestFormatError(
            source,
            "objectAttributes",
            f"0x{attributes:08x} lacks restricted|sign|fixedTPM: not an attestation key",
            hint="create the AK as a restricted signing key (tpm2_createak does)",
        )
    return AttestationKey(_strong(key, source), source, name, attributes)


def _strong(key: PublicKey, source: str) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise AttestFormatError(
            source,
            "keyBits",
            f"RSA key of {key.key_size} bits is too weak (at least {MIN_RSA_BITS})",
        )
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in {
        "secp256r1",
        "secp384r1",
        "secp521r1",
    }:
        raise AttestFormatError(source, "curve", f"curve {key.curve.name} is not allowed")
    return key
