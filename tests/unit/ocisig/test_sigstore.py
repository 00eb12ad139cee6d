"""Keyed sigstore verification: a cosign-made known-answer vector, and openssl-made keys
(ECDSA P-256 with ``openssl dgst -sha256 -sign``, as cosign documents for external signers;
Ed25519 with ``openssl pkeyutl``)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustd.shared.errors import BadSignatureError, UntrustedSignerError
from trustd.shared.ocisig.identity import IdentityMismatchError, SignedIdentity
from trustd.shared.ocisig.name import DockerReference
from trustd.shared.ocisig.payload import build_payload
from trustd.shared.ocisig.sigstore import PemKeyError, parse_pem_key, verify_sigstore_one
from trustd.shared.ocisig.simple import DigestMismatchError

VECTOR = Path(__file__).resolve().parents[2] / "vectors" / "cosign-containers-image"
KAT_REF = DockerReference.parse("192.168.64.2:5000/test-repo-2100826901021538654/alpine")
KAT_DIGEST = "sha256:fa93b01658e3a5a1686dc3ae55f170d8de487006fb53a28efcd12ab0710a2e5f"
RULE = SignedIdentity()


def _kat_key() -> bytes:
    cert = x509.load_pem_x509_certificate((VECTOR / "fulcio-cert.pem").read_bytes())
    return cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_the_cosign_made_vector_verifies() -> None:
    key = parse_pem_key(_kat_key(), source="fulcio-cert.pem")
    assert key.algorithm == "ecdsa-p256"
    payload = (VECTOR / "payload").read_bytes()
    sig = (VECTOR / "signature.b64").read_text().strip()
    result = verify_sigstore_one(payload, sig, [key], KAT_REF, KAT_DIGEST, rule=RULE)
    assert (result.format, result.signer, result.manifest_digest) == (
        "sigstore",
        key.key_id,
        KAT_DIGEST,
    )


def test_the_vector_with_one_byte_changed_does_not_verify() -> None:
    key = parse_pem_key(_kat_key(), source="k")
    payload = (VECTOR / "payload").read_bytes().replace(b"alpine", b"alpino")
    sig = (VECTOR / "signature.b64").read_text().strip()
    with pytest.raises(UntrustedSignerError, match="not made by a key trusted"):
        verify_sigstore_one(payload, sig, [key], KAT_REF, KAT_DIGEST, rule=RULE)


def test_the_vector_against_another_digest_or_name_is_refused() -> None:
    key = parse_pem_key(_kat_key(), source="k")
    payload = (VECTOR / "payload").read_bytes()
    sig = (VECTOR / "signature.b64").read_text().strip()
    with pytest.raises(DigestMismatchError):
        verify_sigstore_one(payload, sig, [key], KAT_REF, "sha256:" + "0" * 64, rule=RULE)
    other = DockerReference.parse("192.168.64.2:5000/other")
    with pytest.raises(IdentityMismatchError):
        verify_sigstore_one(payload, sig, [key], other, KAT_DIGEST, rule=RULE)


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=True).stdout


@pytest.mark.parametrize("algo", ["p256", "ed25519"])
def test_openssl_made_signatures_verify(tmp_path: Path, algo: str) -> None:
    private = tmp_path / "k.pem"
    if algo == "p256":
        _openssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(private))
    else:
        _openssl("genpkey", "-algorithm", "ed25519", "-out", str(private))
    public = _openssl("pkey", "-in", str(private), "-pubout")
    ref = DockerReference.parse("127.0.0.1:5000/ns/app:v1")
    digest = "sha256:" + "ab" * 32
    payload = tmp_path / "payload"
    payload.write_bytes(build_payload(str(ref), digest, "sigstore"))
    if algo == "p256":
        sig = _openssl("dgst", "-sha256", "-sign", str(private), str(payload))
    else:
        sig = _openssl("pkeyutl", "-sign", "-inkey", str(private), "-rawin", "-in", str(payload))
    key = parse_pem_key(public, source="pub.pem")
    result = verify_sigstore_one(
        payload.read_bytes(), base64.b64encode(sig).decode(), [key], ref, digest, rule=RULE
    )
    assert result.signer == key.key_id and len(key.key_id) == 64


def test_other_keys_and_garbage_are_refused_naming_why(tmp_path: Path) -> None:
    private = tmp_path / "k.pem"
    _openssl("ecparam", "-genkey", "-name", "secp384r1", "-noout", "-out", str(private))
    with pytest.raises(PemKeyError, match="ECDSA P-256 or Ed25519"):
        parse_pem_key(_openssl("pkey", "-in", str(private), "-pubout"), source="p384.pem")
    with pytest.raises(PemKeyError, match="not a PEM public key"):
        parse_pem_key(b"-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n", source="x")
    key = parse_pem_key(_kat_key(), source="k")
    with pytest.raises(BadSignatureError, match="not base64"):
        verify_sigstore_one(b"{}", "!!", [key], KAT_REF, KAT_DIGEST, rule=RULE)
