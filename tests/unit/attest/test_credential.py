"""Pure-Python MakeCredential: KDFs against tpm2-pytss's, blobs a software TPM activates."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tpm2_pytss.constants import TPM2_ALG  # type: ignore[import-untyped]
from tpm2_pytss.internal.crypto import _kdfa  # type: ignore[import-untyped]

from tests.unit.attest._software_tpm import AK_ATTRS, activate, ecc_public, rsa_ek_public
from trustd.shared.attest._tpm2 import parse_public
from trustd.shared.attest.credential import (
    Credential,
    kdfa,
    make_credential,
    storage_key,
    strip_tpm2b,
)
from trustd.shared.attest.errors import AttestFormatError
from trustd.shared.attest.model import HashAlg


def _ak_name() -> bytes:
    ak = ec.generate_private_key(ec.SECP256R1())
    return parse_public(ecc_public(ak, AK_ATTRS, ek=False))[1]


@pytest.mark.parametrize("bits", [128, 256, 384, 1024])
def test_kdfa_is_tpm2_pytss_kdfa(bits: int) -> None:
    key, name = os.urandom(32), os.urandom(34)
    ours = kdfa(HashAlg.SHA256, key, b"STORAGE", context_u=name, context_v=b"xy", bits=bits)
    assert ours == _kdfa(TPM2_ALG.SHA256, key, b"STORAGE", name, b"xy", bits)


def test_an_rsa_ek_credential_activates_only_for_its_name() -> None:
    ek = rsa.generate_private_key(65537, 2048)
    target = storage_key(rsa_ek_public(ek))
    name, secret = _ak_name(), os.urandom(32)
    cred = make_credential(target, name, secret)
    assert activate(ek, name, cred) == secret
    with pytest.raises(ValueError, match="integrity"):
        activate(ek, _ak_name(), cred)  # another AK's Name: the HMAC does not match


def test_an_ecc_ek_credential_activates() -> None:
    ek = ec.generate_private_key(ec.SECP256R1())
    target = storage_key(ecc_public(ek, 0x000300B2, ek=True))
    name, secret = _ak_name(), os.urandom(20)
    assert activate(ek, name, make_credential(target, name, secret)) == secret


def test_the_blob_is_tpm2_tools_format_and_round_trips() -> None:
    cred = Credential(b"\x00\x20" + bytes(32) + bytes(34), bytes(256))
    data = cred.to_file()
    assert data[:8] == bytes.fromhex("badcc0de00000001")
    assert Credential.from_file(data) == cred
    with pytest.raises(AttestFormatError, match="trailing"):
        Credential.from_file(data + b"x")
    with pytest.raises(AttestFormatError, match="magic"):
        Credential.from_file(b"\0" * 8 + data[8:])


def test_a_signing_key_is_no_ek() -> None:
    ak = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AttestFormatError):
        storage_key(ecc_public(ak, AK_ATTRS, ek=False))
    unrestricted = rsa_ek_public(rsa.generate_private_key(65537, 2048), attrs=0x000200B2)
    with pytest.raises(AttestFormatError, match="restricted decryption"):
        storage_key(unrestricted)


def test_tpm2b_public_is_unwrapped_strictly() -> None:
    inner = b"abc"
    assert strip_tpm2b(b"\x00\x03abc", "x") == inner
    with pytest.raises(AttestFormatError):
        strip_tpm2b(b"\x00\x04abc", "x")


def test_a_secret_longer_than_a_digest_is_refused() -> None:
    target = storage_key(rsa_ek_public(rsa.generate_private_key(65537, 2048)))
    with pytest.raises(ValueError, match="1 to 32 bytes"):
        make_credential(target, _ak_name(), bytes(33))
