"""A software EK and AK: TPMT_PUBLIC areas, EK certificates and ActivateCredential's inverse.

The unit tier has no TPM; the real swtpm (and tpm2-tools) are in
tests/integration/test_attest_enrol.py. Layouts are TPM 2.0 Part 2's.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.x509.oid import NameOID

from trustd.shared.attest.credential import Credential, kdfa, kdfe
from trustd.shared.attest.model import HashAlg

# fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt
EK_ATTRS = 0x000300B2
# fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign | noDA
AK_ATTRS = 0x00050472
EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")


def tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def rsa_ek_public(key: rsa.RSAPrivateKey, attrs: int = EK_ATTRS) -> bytes:
    """TPMT_PUBLIC of an RSA 2048 EK (TCG EK profile template L-1)."""
    modulus = key.public_key().public_numbers().n.to_bytes(256, "big")
    return (
        u16(0x0001) + u16(0x000B) + attrs.to_bytes(4, "big") + tpm2b(EK_POLICY)
        + u16(0x0006) + u16(128) + u16(0x0043) + u16(0x0010) + u16(2048)
        + (0).to_bytes(4, "big") + tpm2b(modulus)
    )  # fmt: skip


def ecc_public(key: ec.EllipticCurvePrivateKey, attrs: int, *, ek: bool) -> bytes:
    """TPMT_PUBLIC of a P-256 key: an EK (AES-128-CFB, no scheme) or an AK (ECDSA-SHA256)."""
    numbers = key.public_key().public_numbers()
    sym = u16(0x0006) + u16(128) + u16(0x0043) if ek else u16(0x0010)
    scheme = u16(0x0010) if ek else u16(0x0018) + u16(0x000B)
    return (
        u16(0x0023) + u16(0x000B) + attrs.to_bytes(4, "big")
        + tpm2b(EK_POLICY if ek else b"") + sym + scheme + u16(0x0003) + u16(0x0010)
        + tpm2b(numbers.x.to_bytes(32, "big")) + tpm2b(numbers.y.to_bytes(32, "big"))
    )  # fmt: skip


def activate(
    ek: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, name: bytes, cred: Credential
) -> bytes:
    """What TPM2_ActivateCredential computes (Part 1 §24.5); ValueError on a bad HMAC."""
    alg = HashAlg.SHA256
    if isinstance(ek, rsa.RSAPrivateKey):
        oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"IDENTITY\0")
        seed = ek.decrypt(cred.encrypted_secret, oaep)
    else:
        size = int.from_bytes(cred.encrypted_secret[:2], "big")
        x = cred.encrypted_secret[2 : 2 + size]
        y = cred.encrypted_secret[4 + size :]
        peer = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
        z = ek.exchange(ec.ECDH(), peer)
        ek_x = ek.public_key().public_numbers().x.to_bytes(32, "big")
        seed = kdfe(alg, z, b"IDENTITY", party_u=x, party_v=ek_x, bits=256)
    size = int.from_bytes(cred.id_object[:2], "big")
    outer, enc = cred.id_object[2 : 2 + size], cred.id_object[2 + size :]
    hmac_key = kdfa(alg, seed, b"INTEGRITY", context_u=b"", context_v=b"", bits=256)
    if not hmac.compare_digest(outer, hmac.new(hmac_key, enc + name, hashlib.sha256).digest()):
        raise ValueError("integrity check failed")
    sym = kdfa(alg, seed, b"STORAGE", context_u=name, context_v=b"", bits=128)
    plain = Cipher(algorithms.AES(sym), CFB(bytes(16))).decryptor().update(enc)
    return plain[2 : 2 + int.from_bytes(plain[:2], "big")]


@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str, parent: Ca | None = None, *, ca: bool = True) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(parent.cert.subject if parent else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    cert = builder.sign(parent.key if parent else key, hashes.SHA256())
    return Ca(key, cert)


def ek_cert(
    issuer: Ca, ek: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, *, days: int = 30
) -> bytes:
    """An EK certificate as TPM vendors issue them: empty subject, critical SAN of TPM
    directory attributes (here: a directoryName with the manufacturer)."""
    now = datetime.datetime.now(datetime.UTC)
    tpm_manufacturer = x509.ObjectIdentifier("2.23.133.2.1")
    san = x509.SubjectAlternativeName(
        [x509.DirectoryName(x509.Name([x509.NameAttribute(tpm_manufacturer, "id:00001014")]))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.cert.subject)
        .public_key(ek)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(san, critical=True)
        .sign(issuer.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)
