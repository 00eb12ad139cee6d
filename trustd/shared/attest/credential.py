"""TPM2_MakeCredential in pure Python (TPM 2.0 Part 1 §24, Part 3 §12.6; no TPM needed).

The verifier encrypts a random secret so that only the TPM holding the EK's private key, and
holding a key whose Name is the AK's, can recover it (TPM2_ActivateCredential): a seed is
shared with the EK (RSA-OAEP with label ``IDENTITY``, or ECDH + KDFe for an ECC EK), the
secret is encrypted under ``KDFa(seed, "STORAGE", name)`` with the EK's symmetric algorithm
(AES-CFB, zero IV) and protected by an HMAC under ``KDFa(seed, "INTEGRITY")`` over the
ciphertext and the AK's Name.

The challenge file is tpm2-tools' credential-blob format (``tpm2_makecredential -o``,
``tpm2_activatecredential -i``): magic ``0xBADCC0DE``, version 1, TPM2B_ID_OBJECT,
TPM2B_ENCRYPTED_SECRET.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from trustd.shared._dataclass import frozen
from trustd.shared.attest import _tpm2
from trustd.shared.attest._reader import Reader
from trustd.shared.attest.errors import AttestFormatError
from trustd.shared.attest.model import HashAlg, PublicKey

MAGIC: Final = 0xBADCC0DE
VERSION: Final = 1
TPM_ALG_AES: Final = 0x0006
TPM_ALG_CFB: Final = 0x0043
MAX_SECRET: Final = 64  # TPM2B_DIGEST
MAX_ID_OBJECT: Final = 2 + 64 + 2 + 64  # outer HMAC + encrypted TPM2B_DIGEST
MAX_ENCRYPTED_SECRET: Final = 512  # TPM2B_ENCRYPTED_SECRET (RSA-4096 or an ECC point)
_HASHES: Final[dict[HashAlg, hashes.HashAlgorithm]] = {
    HashAlg.SHA1: hashes.SHA1(),  # noqa: S303 (only if an EK's nameAlg is SHA-1; never chosen)
    HashAlg.SHA256: hashes.SHA256(),
    HashAlg.SHA384: hashes.SHA384(),
    HashAlg.SHA512: hashes.SHA512(),
}


@frozen
class StorageKey:
    """What MakeCredential needs from a (restricted decryption) EK's TPMT_PUBLIC."""

    key: PublicKey
    name_alg: HashAlg
    sym_bits: int  # AES key size; mode CFB
    attributes: int
    name: bytes


@frozen
class Credential:
    """TPM2B_ID_OBJECT's and TPM2B_ENCRYPTED_SECRET's contents, as ActivateCredential takes them."""

    id_object: bytes
    encrypted_secret: bytes

    def to_file(self) -> bytes:
        """tpm2-tools' credential-blob file."""
        return (
            MAGIC.to_bytes(4, "big")
            + VERSION.to_bytes(4, "big")
            + _tpm2b(self.id_object)
            + _tpm2b(self.encrypted_secret)
        )

    @classmethod
    def from_file(cls, data: bytes, source: str = "credential blob") -> Credential:
        reader = Reader(data, source)
        if reader.u32("magic") != MAGIC:
            raise reader.fail("magic", "not 0xBADCC0DE: not a tpm2-tools credential blob")
        version = reader.u32("version")
        if version != VERSION:
            raise reader.fail("version", f"version {version}, only {VERSION} is known")
        id_object = reader.sized("credentialBlob", max_size=MAX_ID_OBJECT)
        secret = reader.sized("secret", max_size=MAX_ENCRYPTED_SECRET)
        reader.end()
        return cls(id_object, secret)


def _tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def strip_tpm2b(data: bytes, source: str) -> bytes:
    """The TPMT_PUBLIC inside a TPM2B_PUBLIC (``tpm2_createek -u``, ``tpm2_readpublic -o``)."""
    reader = Reader(data, source)
    inner = reader.sized("size", max_size=1024)
    reader.end()
    return inner


def kdfa(
    alg: HashAlg, key: bytes, label: bytes, *, context_u: bytes, context_v: bytes, bits: int
) -> bytes:
    """KDFa (Part 1 §11.4.10.2): HMAC in counter mode; the label is NUL-terminated."""
    if not label.endswith(b"\0"):
        label += b"\0"
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        msg = counter.to_bytes(4, "big") + label + context_u + context_v + bits.to_bytes(4, "big")
        out += hmac.new(key, msg, alg.label).digest()
    return _truncate(out, bits)


def kdfe(
    alg: HashAlg, z: bytes, label: bytes, *, party_u: bytes, party_v: bytes, bits: int
) -> bytes:
    """KDFe (Part 1 §11.4.10.3): the SP 800-56A concatenation KDF over the ECDH secret Z."""
    if not label.endswith(b"\0"):
        label += b"\0"
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        out += hashlib.new(
            alg.label, counter.to_bytes(4, "big") + z + label + party_u + party_v
        ).digest()
    return _truncate(out, bits)


def _truncate(out: bytes, bits: int) -> bytes:
    data = out[: (bits + 7) // 8]
    if bits % 8:
        data = bytes([data[0] & (0xFF >> (8 - bits % 8))]) + data[1:]
    return data


def storage_key(tpmt_public: bytes, source: str = "EK TPMT_PUBLIC") -> StorageKey:
    """The EK's key, nameAlg, symmetric key size and Name; refused unless MakeCredential can
    target it (restricted decryption key, AES-CFB, RSA or ECC)."""
    key, name, attributes = _tpm2.parse_public(tpmt_public)
    reader = Reader(tpmt_public, source)
    reader.u16("type")
    name_alg = _tpm2.hash_alg(reader, "nameAlg")
    reader.u32("objectAttributes")
    reader.sized("authPolicy", max_size=_tpm2.DIGEST_MAX)
    sym = reader.u16("parameters.symmetric.algorithm")
    if sym != TPM_ALG_AES:
        raise reader.fail("parameters.symmetric.algorithm", f"0x{sym:04x}, not AES")
    bits = reader.u16("parameters.symmetric.keyBits")
    mode = reader.u16("parameters.symmetric.mode")
    if mode != TPM_ALG_CFB or bits not in (128, 192, 256):
        raise reader.fail("parameters.symmetric", f"AES-{bits} mode 0x{mode:04x}, not AES-CFB")
    decrypt, restricted = 1 << 17, 1 << 16
    if attributes & (decrypt | restricted) != decrypt | restricted:
        raise AttestFormatError(
            source, "objectAttributes", f"0x{attributes:08x}: not a restricted decryption key"
        )
    return StorageKey(key, name_alg, bits, attributes, name)


def make_credential(ek: StorageKey, name: bytes, secret: bytes) -> Credential:
    """Encrypt ``secret`` for the TPM holding ``ek``, releasable only to the object ``name``."""
    if not 1 <= len(secret) <= ek.name_alg.size:
        raise ValueError(f"a credential is 1 to {ek.name_alg.size} bytes, not {len(secret)}")
    size = ek.name_alg.size
    if isinstance(ek.key, rsa.RSAPublicKey):
        seed = os.urandom(size)
        oaep = padding.OAEP(
            mgf=padding.MGF1(_HASHES[ek.name_alg]),
            algorithm=_HASHES[ek.name_alg],
            label=b"IDENTITY\0",
        )
        encrypted = ek.key.encrypt(seed, oaep)
    else:
        curve = ek.key.curve
        ephemeral = ec.generate_private_key(curve)
        z = ephemeral.exchange(ec.ECDH(), ek.key)
        width = (curve.key_size + 7) // 8
        eph = ephemeral.public_key().public_numbers()
        qe_x, qe_y = eph.x.to_bytes(width, "big"), eph.y.to_bytes(width, "big")
        ek_x = ek.key.public_numbers().x.to_bytes(width, "big")
        seed = kdfe(ek.name_alg, z, b"IDENTITY", party_u=qe_x, party_v=ek_x, bits=size * 8)
        encrypted = _tpm2b(qe_x) + _tpm2b(qe_y)  # TPMS_ECC_POINT
    sym_key = kdfa(ek.name_alg, seed, b"STORAGE", context_u=name, context_v=b"", bits=ek.sym_bits)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = encryptor.update(_tpm2b(secret)) + encryptor.finalize()
    hmac_key = kdfa(ek.name_alg, seed, b"INTEGRITY", context_u=b"", context_v=b"", bits=size * 8)
    outer = hmac.new(hmac_key, enc_identity + name, ek.name_alg.label).digest()
    return Credential(_tpm2b(outer) + enc_identity, encrypted)
