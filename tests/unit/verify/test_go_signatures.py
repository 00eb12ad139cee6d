"""Signatures and keys made by Go's x/crypto/openpgp (rkt's signer), built in the test.

Go writes RSA signature MPIs with a bit count that is too long whenever the value has a
leading zero octet; Sequoia refuses those packets, gpg accepts them. trustd re-encodes the
MPI (``trustd/shared/verify/_mpi.py``) and then judges the signature like any other: the
weak-hash and weak-key refusals still hold.
"""

from __future__ import annotations

from pathlib import Path

import pysequoia
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pysequoia.packet import PacketPile

from tests._gosigner import GoSigner
from tests.conftest import Keys
from trustd.shared.appc import ACIdentifier
from trustd.shared.errors import BadSignatureError, RefusedKeyError
from trustd.shared.verify import Keyring, TrustedKey, parse_public_keys, verify_detached
from trustd.shared.verify._mpi import canonical_rsa_body

NAME = ACIdentifier("example.com/app")
VECTOR = Path(__file__).parents[2] / "vectors" / "go-openpgp-rsa-mpi-leading-zero"


def keyring(public: bytes) -> Keyring:
    key = parse_public_keys(public, source="go key")[0]
    return Keyring(subject=NAME, keys=(TrustedKey(key, NAME, "local", Path("go.asc")),))


def sequoia_refuses(signature: bytes) -> bool:
    try:
        pysequoia.Sig.from_bytes(signature)
    except RuntimeError:
        return True
    return False


def go_signature(go: GoSigner, key: Path, hash_name: str = "sha256") -> tuple[bytes, bytes]:
    """A Go-made signature whose MPI has a leading zero octet (about one in two are)."""
    for i in range(64):
        data = f"go-signed message {i}\n".encode()
        signature = go.sign(key, data, hash_name)
        if sequoia_refuses(signature):
            return data, signature
    raise AssertionError("64 Go signatures in a row had canonical MPIs")  # p = 2**-64


@pytest.fixture(scope="module")
def go_key(gosigner: GoSigner) -> Path:
    return gosigner.generate("Go Signer", 2048)


def test_committed_vector_is_still_refused_by_sequoia_and_accepted_by_us() -> None:
    signature = (VECTOR / "message.data.asc").read_bytes()
    assert sequoia_refuses(signature)  # the vector still shows the flaw
    result = verify_detached(
        (VECTOR / "message.data").read_bytes(),
        signature,
        keyring((VECTOR / "key.pub.asc").read_bytes()),
    )
    assert result.signer == "82cd6a68d6c541daf102a265ef56e5891647c61e"
    assert result.hash_algorithm == "SHA256"


def test_committed_vector_over_altered_data_is_refused() -> None:
    with pytest.raises(BadSignatureError, match="does not match"):
        verify_detached(
            b"altered\n",
            (VECTOR / "message.data.asc").read_bytes(),
            keyring((VECTOR / "key.pub.asc").read_bytes()),
        )


def test_go_made_key_and_signature_verify(gosigner: GoSigner, go_key: Path) -> None:
    data, signature = go_signature(gosigner, go_key)
    public = parse_public_keys(go_key.read_bytes(), source="go key")[0]
    assert public.weak_reason is None  # its self-signatures had the same flaw
    assert public.user_ids == ("Go Signer <Go Signer@example.com>",)
    result = verify_detached(data, signature, keyring(go_key.read_bytes()))
    assert result.signer == public.fingerprint


def test_go_signature_over_other_data_is_refused(gosigner: GoSigner, go_key: Path) -> None:
    data, signature = go_signature(gosigner, go_key)
    with pytest.raises(BadSignatureError, match="does not match"):
        verify_detached(data + b"x", signature, keyring(go_key.read_bytes()))


def test_go_signature_by_a_gpg_key_verifies(gosigner: GoSigner, keys: Keys) -> None:
    """rkt's own tests: keys from gpg (tests/secring.gpg), signatures from Go."""
    secret = gosigner.work / "rsa.sec"
    secret.write_bytes(keys.gpg.run("--armor", "--export-secret-keys", keys.rsa).encode())
    data, signature = go_signature(gosigner, secret)
    result = verify_detached(data, signature, keyring(keys.public(keys.rsa)))
    assert result.signer == keys.rsa.lower()


def test_go_sha1_signature_is_still_refused(gosigner: GoSigner, go_key: Path) -> None:
    data, signature = go_signature(gosigner, go_key, "sha1")
    with pytest.raises(BadSignatureError, match="uses SHA1, which is refused"):
        verify_detached(data, signature, keyring(go_key.read_bytes()))


def test_go_rsa1024_key_is_still_refused(gosigner: GoSigner) -> None:
    weak = gosigner.generate("Weak Go", 1024)
    data, signature = go_signature(gosigner, weak)
    with pytest.raises(RefusedKeyError, match="too weak: RSA key of 1024 bits"):
        verify_detached(data, signature, keyring(weak.read_bytes()))


def _body(bits: int, value: bytes) -> bytes:
    # v4, binary, RSA, SHA-256, empty hashed and unhashed areas, digest prefix, one MPI
    return bytes([4, 0, 1, 8, 0, 0, 0, 0, 0xAB, 0xCD]) + bits.to_bytes(2, "big") + value


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=8))
def test_repair_keeps_the_integer_and_is_exact(value: bytes, zeros: int) -> None:
    padded = b"\x00" * zeros + value
    fixed = canonical_rsa_body(_body(8 * len(padded), padded))
    number = int.from_bytes(padded, "big")
    if number == 0 or number.bit_length() == 8 * len(padded):
        assert fixed is None  # nothing to repair, or nothing a repair could make valid
        return
    assert fixed is not None
    bits = int.from_bytes(fixed[10:12], "big")
    assert bits == number.bit_length()
    assert int.from_bytes(fixed[12:], "big") == number
    assert fixed[12] != 0
    assert canonical_rsa_body(fixed) is None  # idempotent


@pytest.mark.parametrize(
    "body",
    [
        b"",
        bytes([3, 0, 1, 8]) + b"\x00" * 20,  # v3
        bytes([4, 0, 22, 8, 0, 0, 0, 0, 0, 0, 0, 8, 0x01]),  # EdDSA: not ours to touch
        _body(2048, b"\x00\x01"),  # declared length does not match the bytes: left to Sequoia
        _body(16, b"\x00\x00"),  # zero
    ],
)
def test_repair_leaves_other_bodies_alone(body: bytes) -> None:
    assert canonical_rsa_body(body) is None


def test_vector_is_one_signature_packet() -> None:
    packets = list(PacketPile.from_bytes((VECTOR / "message.data.asc").read_bytes()))
    assert len(packets) == 1
