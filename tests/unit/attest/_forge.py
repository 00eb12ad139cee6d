"""A software stand-in for the TPM: builds and signs TPMS_ATTEST with a P-256 key.

The unit tier has no TPM, so the end-to-end CEL tests quote with this key instead. The byte
layouts are the TPM 2.0 Part 2 ones; the real-TPM path is covered by the swtpm vector here and
by the integration tier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from trustd.shared.attest import (
    AttestationKey,
    CelLog,
    HashAlg,
    PcrValues,
    encode_pcr_file,
    load_ak_pem,
    replay_cel,
)
from trustd.shared.attest.model import TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE


def tpm2b(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def marshal_attest(
    values: PcrValues,
    nonce: bytes,
    *,
    magic: int = TPM_GENERATED_VALUE,
    attest_type: int = TPM_ST_ATTEST_QUOTE,
    digest_alg: HashAlg = HashAlg.SHA256,
) -> bytes:
    selection = values.selection()
    out = magic.to_bytes(4, "big") + attest_type.to_bytes(2, "big")
    out += tpm2b(b"\x00\x0b" + bytes(32)) + tpm2b(nonce)
    out += (1234).to_bytes(8, "big") + (1).to_bytes(4, "big") + bytes(4) + b"\x01"
    out += (0x2019).to_bytes(8, "big")
    out += len(selection.banks).to_bytes(4, "big")
    for alg, pcrs in selection.banks:
        bits = bytearray(3)
        for index in pcrs:
            bits[index // 8] |= 1 << (index % 8)
        out += alg.value.to_bytes(2, "big") + b"\x03" + bytes(bits)
    return out + tpm2b(digest_alg.digest(b"".join(values.ordered())))


@dataclass
class SoftTpm:
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def ak(self) -> AttestationKey:
        return load_ak_pem(self.pem(), source="soft TPM")

    def sign(self, attest: bytes) -> bytes:
        r, s = decode_dss_signature(self.key.sign(attest, ec.ECDSA(hashes.SHA256())))
        sig = (0x0018).to_bytes(2, "big") + HashAlg.SHA256.value.to_bytes(2, "big")
        return sig + tpm2b(r.to_bytes(32, "big")) + tpm2b(s.to_bytes(32, "big"))

    def bundle(self, directory: Path, log: CelLog, nonce: bytes, pcrs: tuple[int, ...]) -> Path:
        """Quote ``pcrs`` (sha256) as they stand after ``log`` and write a bundle directory."""
        replayed = replay_cel(log).get(HashAlg.SHA256, {})
        values = PcrValues(
            ((HashAlg.SHA256, tuple((i, replayed.get(i, bytes(32))) for i in pcrs)),)
        )
        attest = marshal_attest(values, nonce)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ak.pub.pem").write_bytes(self.pem())
        (directory / "quote.attest").write_bytes(attest)
        (directory / "quote.sig").write_bytes(self.sign(attest))
        (directory / "quote.pcrs").write_bytes(encode_pcr_file(values))
        (directory / "eventlog.json").write_bytes(log.to_bytes())
        return directory
