"""The verifier against real gpg-made keys: what it accepts and every way it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Keys
from trustd.shared.appc import ACIdentifier
from trustd.shared.errors import BadSignatureError, RefusedKeyError, UntrustedSignerError
from trustd.shared.verify import (
    Keyring,
    TrustedKey,
    VerifiedSignature,
    parse_public_keys,
    verify_detached,
)

NAME = ACIdentifier("example.com/app")


def keyring(keys: Keys, *fprs: str) -> Keyring:
    trusted = tuple(
        TrustedKey(parse_public_keys(keys.public(f), source=f)[0], NAME, "local", Path(f))
        for f in fprs
    )
    return Keyring(subject=NAME, keys=trusted)


@pytest.mark.parametrize("sig", ["good", "good-binary"])
def test_primary_key_signature_verifies(keys: Keys, sig: str) -> None:
    result = verify_detached(keys.message, keys.sigs[sig], keyring(keys, keys.good))
    assert result.signer == keys.good.lower()
    assert result.signing_key == keys.good.lower()
    assert result.user_ids == ("Good Signer <good@example.com>",)
    assert result.subject == NAME


def test_rsa2048_signature_verifies_from_a_file(keys: Keys, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(keys.message)
    result = verify_detached(data, keys.sigs["rsa"], keyring(keys, keys.rsa))
    assert result.signer == keys.rsa.lower()
    data.write_bytes(keys.message.replace(b"test", b"tost"))
    with pytest.raises(BadSignatureError, match="does not match"):
        verify_detached(data, keys.sigs["rsa"], keyring(keys, keys.rsa))


def test_signing_subkey_of_trusted_primary_verifies(keys: Keys) -> None:
    result = verify_detached(keys.message, keys.sigs["sub"], keyring(keys, keys.with_sub))
    assert result.signer == keys.with_sub.lower()
    assert result.signing_key == keys.sub.lower()


def test_tampered_data_is_refused(keys: Keys) -> None:
    with pytest.raises(BadSignatureError, match="does not match"):
        verify_detached(keys.message + b"x", keys.sigs["good"], keyring(keys, keys.good))


def test_unknown_signer_names_the_key_and_the_fix(keys: Keys) -> None:
    with pytest.raises(UntrustedSignerError) as err:
        verify_detached(keys.message, keys.sigs["good"], keyring(keys, keys.rsa))
    shown = keys.good[:4]
    assert shown in err.value.message
    assert 'not trusted for prefix "example.com/app"' in err.value.message
    assert err.value.hint == 'run: rkt trust --prefix "example.com/app"'


def test_revoked_key_is_refused(keys: Keys) -> None:
    with pytest.raises(RefusedKeyError, match="has been revoked"):
        verify_detached(keys.message, keys.sigs["revoked"], keyring(keys, keys.revoked))


def test_revoked_signing_subkey_is_refused(keys: Keys) -> None:
    ring = keyring(keys, keys.revoked_sub_primary)
    with pytest.raises(RefusedKeyError, match=r"signing subkey .* has been revoked"):
        verify_detached(keys.message, keys.sigs["revoked-sub"], ring)


def test_expired_key_is_refused_even_for_a_signature_made_before_expiry(keys: Keys) -> None:
    with pytest.raises(RefusedKeyError, match="expired on 2020-01-02"):
        verify_detached(keys.message, keys.sigs["expired"], keyring(keys, keys.expired))


def test_sha1_signature_is_refused(keys: Keys) -> None:
    with pytest.raises(BadSignatureError, match="uses SHA1, which is refused"):
        verify_detached(keys.message, keys.sigs["sha1"], keyring(keys, keys.rsa))


def test_rsa1024_key_is_refused_as_weak(keys: Keys) -> None:
    with pytest.raises(RefusedKeyError, match="too weak: RSA key of 1024 bits"):
        verify_detached(keys.message, keys.sigs["weak"], keyring(keys, keys.weak))


@pytest.mark.parametrize("garbage", [b"", b"not a signature", b"-----BEGIN PGP SIGNATURE-----"])
def test_garbage_signature_is_refused(keys: Keys, garbage: bytes) -> None:
    with pytest.raises(BadSignatureError, match="not an OpenPGP signature"):
        verify_detached(keys.message, garbage, keyring(keys, keys.good))


def test_verified_signature_cannot_be_forged_outside_the_verifier() -> None:
    with pytest.raises(TypeError, match="made only by"):
        VerifiedSignature(NAME, "a" * 40, "a" * 40, (), None, "SHA256", "root", object())
