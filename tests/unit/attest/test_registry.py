"""The verifier's AK registry: which identities it enrols, and how it reports them."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.unit.attest._software_tpm import (
    AK_ATTRS,
    Ca,
    activate,
    ecc_public,
    ek_cert,
    make_ca,
    rsa_ek_public,
    tpm2b,
)
from trustd.shared.attest.credential import Credential
from trustd.shared.attest.registry import EnrolmentError, Identity, Registry, check_ak


@dataclass
class SoftTpm:
    ek: rsa.RSAPrivateKey
    ak: ec.EllipticCurvePrivateKey
    identity: Identity
    root: Ca

    def answer(self, challenge: bytes) -> bytes:
        _, name = check_ak(self.identity.ak_public)
        return activate(self.ek, name, Credential.from_file(challenge))


@pytest.fixture(scope="module")
def tpm() -> SoftTpm:
    root = make_ca("vendor root")
    issuing = make_ca("vendor issuing", root)
    ek = rsa.generate_private_key(65537, 2048)
    ak = ec.generate_private_key(ec.SECP256R1())
    identity = Identity(
        tpm2b(rsa_ek_public(ek)),
        ek_cert(issuing, ek.public_key()),
        (issuing.der,),
        tpm2b(ecc_public(ak, AK_ATTRS, ek=False)),
    )
    return SoftTpm(ek, ak, identity, root)


def _enrol(registry: Registry, tpm: SoftTpm, anchors: tuple[x509.Certificate, ...] | None) -> str:
    _, credential = registry.challenge(tpm.identity, anchors)
    challenge = credential.to_file()
    return registry.enroll(challenge, tpm.answer(challenge)).describe()


def test_ca_anchored_enrolment_and_lookup(tpm: SoftTpm, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    described = _enrol(registry, tpm, (tpm.root.cert,))
    assert described == "CA-anchored (EK certificate issued by CN=vendor issuing)"
    assert registry.lookup(tpm.ak.public_key()).anchor == "ca"
    assert not list((tmp_path / "reg/pending").iterdir())


def test_tofu_is_reported_as_tofu(tpm: SoftTpm, tmp_path: Path) -> None:
    no_cert = replace(tpm.identity, ek_cert=None, intermediates=())
    registry = Registry(tmp_path / "reg")
    _, credential = registry.challenge(no_cert, None)
    challenge = credential.to_file()
    record = registry.enroll(challenge, tpm.answer(challenge))
    assert record.anchor == "tofu" and record.describe().startswith("TOFU")


def test_an_ak_never_activated_is_refused(tpm: SoftTpm, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    registry.challenge(tpm.identity, (tpm.root.cert,))
    with pytest.raises(EnrolmentError, match="no credential activation") as err:
        registry.lookup(tpm.ak.public_key())
    assert err.value.check == "enrolled"


def test_an_unknown_ca_is_refused(tpm: SoftTpm, tmp_path: Path) -> None:
    other = make_ca("another vendor")
    with pytest.raises(EnrolmentError, match="does not chain") as err:
        Registry(tmp_path / "reg").challenge(tpm.identity, (other.cert,))
    assert err.value.check == "ek-cert"


def test_a_missing_intermediate_does_not_chain(tpm: SoftTpm, tmp_path: Path) -> None:
    alone = replace(tpm.identity, intermediates=())
    with pytest.raises(EnrolmentError, match="does not chain"):
        Registry(tmp_path / "reg").challenge(alone, (tpm.root.cert,))


def test_an_intermediate_that_is_no_ca_does_not_chain(tpm: SoftTpm, tmp_path: Path) -> None:
    fake = make_ca("not a CA", tpm.root, ca=False)
    identity = replace(
        tpm.identity, ek_cert=ek_cert(fake, tpm.ek.public_key()), intermediates=(fake.der,)
    )
    with pytest.raises(EnrolmentError, match="does not chain"):
        Registry(tmp_path / "reg").challenge(identity, (tpm.root.cert,))


def test_an_ek_certificate_for_another_key_is_refused(tpm: SoftTpm, tmp_path: Path) -> None:
    other = rsa.generate_private_key(65537, 2048)
    identity = replace(tpm.identity, ek_public=tpm2b(rsa_ek_public(other)))
    with pytest.raises(EnrolmentError, match="another key"):
        Registry(tmp_path / "reg").challenge(identity, (tpm.root.cert,))


def test_an_expired_ek_certificate_is_refused(tpm: SoftTpm, tmp_path: Path) -> None:
    issuing = make_ca("vendor issuing 2", tpm.root)
    identity = replace(
        tpm.identity,
        ek_cert=ek_cert(issuing, tpm.ek.public_key(), days=-1),
        intermediates=(issuing.der,),
    )
    with pytest.raises(EnrolmentError, match="not valid now"):
        Registry(tmp_path / "reg").challenge(identity, (tpm.root.cert,))


def test_no_ek_certificate_needs_tofu(tpm: SoftTpm, tmp_path: Path) -> None:
    with pytest.raises(EnrolmentError, match="no EK certificate") as err:
        Registry(tmp_path / "reg").challenge(replace(tpm.identity, ek_cert=None), ())
    assert "--tofu" in err.value.hint


def test_a_wrong_secret_is_refused_and_spends_the_challenge(tpm: SoftTpm, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    _, credential = registry.challenge(tpm.identity, (tpm.root.cert,))
    challenge = credential.to_file()
    with pytest.raises(EnrolmentError, match="not the challenge's"):
        registry.enroll(challenge, os.urandom(32))
    with pytest.raises(EnrolmentError, match="no such challenge"):
        registry.enroll(challenge, tpm.answer(challenge))
    with pytest.raises(EnrolmentError, match="no credential activation"):
        registry.lookup(tpm.ak.public_key())


@pytest.mark.parametrize(
    ("attrs", "why"),
    [
        (AK_ATTRS | 1 << 17, "decrypt"),
        (AK_ATTRS & ~(1 << 1), "not fixedTPM"),
        (AK_ATTRS & ~(1 << 16), "unrestricted"),
        (AK_ATTRS & ~(1 << 5), "key imported, not made in the TPM"),
    ],
)
def test_a_key_that_is_no_ak_is_refused(tpm: SoftTpm, tmp_path: Path, attrs: int, why: str) -> None:
    identity = replace(tpm.identity, ak_public=tpm2b(ecc_public(tpm.ak, attrs, ek=False)))
    with pytest.raises(EnrolmentError, match="sign-only") as err:
        Registry(tmp_path / "reg").challenge(identity, (tpm.root.cert,))
    assert err.value.check == "ak-attributes", why


def test_a_registry_others_can_change_is_refused(tpm: SoftTpm, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    _enrol(registry, tpm, (tpm.root.cert,))
    (tmp_path / "reg/aks").chmod(0o777)
    with pytest.raises(Exception, match="only it can change"):
        registry.lookup(tpm.ak.public_key())


def test_identity_files_round_trip(tpm: SoftTpm, tmp_path: Path) -> None:
    out = tmp_path / "id"
    out.mkdir()
    (out / "ek.pub").write_bytes(tpm.identity.ek_public)
    (out / "ak.pub").write_bytes(tpm.identity.ak_public)
    assert tpm.identity.ek_cert is not None
    (out / "ek.crt").write_bytes(tpm.identity.ek_cert)
    issuing = x509.load_der_x509_certificate(tpm.identity.intermediates[0])
    (out / "ek-intermediates.pem").write_bytes(issuing.public_bytes(serialization.Encoding.PEM))
    assert Identity.load(out) == tpm.identity


def test_the_quote_must_name_the_enrolled_ak_as_its_signer(tpm: SoftTpm, tmp_path: Path) -> None:
    import hashlib  # noqa: PLC0415

    registry = Registry(tmp_path / "reg")
    _enrol(registry, tpm, (tpm.root.cert,))
    record = registry.lookup(tpm.ak.public_key())
    name = bytes.fromhex(record.ak_name)
    owner_qn = name[:2] + hashlib.sha256(bytes.fromhex("40000001") + name).digest()
    record.check_signer(owner_qn)
    endorsement_qn = name[:2] + hashlib.sha256(bytes.fromhex("4000000b") + name).digest()
    with pytest.raises(EnrolmentError, match="qualifiedSigner") as err:
        record.check_signer(endorsement_qn)
    assert err.value.check == "qualified-signer"
