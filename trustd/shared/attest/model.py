"""Typed, frozen models of what a TPM 2.0 quote is made of (TPM 2.0 Library, Part 2)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TypeAlias

from trustd.shared._dataclass import frozen

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
MAX_PCRS = 32  # TPM2_MAX_PCRS: four selection bytes


def __getattr__(name: str) -> Any:
    """``PublicKey`` on first use (PEP 562): a pod start measures events whose hash
    algorithms are named here, and loads no ``cryptography`` for it (issue #14)."""
    if name == "PublicKey":
        from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: PLC0415

        alias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
        globals()["PublicKey"] = alias
        return alias
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class HashAlg(IntEnum):
    """The hash algorithms trustd knows, by their TPM_ALG_ID; anything else is refused."""

    SHA1 = 0x0004
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D

    @property
    def label(self) -> str:
        """The name tpm2-tools and CEL-JSON use: ``sha256``."""
        return self.name.lower()

    @property
    def size(self) -> int:
        return {0x0004: 20, 0x000B: 32, 0x000C: 48, 0x000D: 64}[self.value]

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.label, data).digest()

    def extend(self, pcr: bytes, digest: bytes) -> bytes:
        """The TPM's PCR extend: H(old || digest)."""
        return self.digest(pcr + digest)

    @classmethod
    def from_id(cls, alg_id: int) -> HashAlg | None:
        return cls(alg_id) if alg_id in cls._value2member_map_ else None

    @classmethod
    def from_label(cls, label: str) -> HashAlg | None:
        return next((alg for alg in cls if alg.label == label), None)


class SigScheme(IntEnum):
    """Signature schemes an attestation key may use."""

    RSASSA = 0x0014
    RSAPSS = 0x0016
    ECDSA = 0x0018


@frozen
class PcrSelection:
    """A TPML_PCR_SELECTION: banks in order, each with its selected PCRs in ascending order.

    Banks that select nothing are dropped, so two selections that cover the same PCRs compare
    equal whatever ``sizeofSelect`` they were written with.
    """

    banks: tuple[tuple[HashAlg, tuple[int, ...]], ...]

    def pcrs(self) -> Iterator[tuple[HashAlg, int]]:
        """Every (bank, PCR) in the order a TPM hashes them into pcrDigest."""
        for alg, indexes in self.banks:
            for index in indexes:
                yield alg, index

    def describe(self) -> str:
        return "+".join(f"{a.label}:{','.join(map(str, i))}" for a, i in self.banks) or "(none)"


@frozen
class PcrValues:
    """Reported PCR values: for each bank, (PCR, value) in ascending PCR order."""

    banks: tuple[tuple[HashAlg, tuple[tuple[int, bytes], ...]], ...]

    @classmethod
    def from_mapping(cls, values: Mapping[HashAlg, Mapping[int, bytes]]) -> PcrValues:
        return cls(tuple((alg, tuple(sorted(v.items()))) for alg, v in values.items() if v))

    def selection(self) -> PcrSelection:
        return PcrSelection(tuple((alg, tuple(i for i, _ in v)) for alg, v in self.banks))

    def as_dict(self) -> dict[HashAlg, dict[int, bytes]]:
        return {alg: dict(values) for alg, values in self.banks}

    def ordered(self) -> Iterator[bytes]:
        for _, values in self.banks:
            for _, value in values:
                yield value


@frozen
class ClockInfo:
    clock: int  # milliseconds the TPM has been powered
    reset_count: int
    restart_count: int
    safe: bool


@frozen
class QuoteInfo:
    """TPMS_QUOTE_INFO: the signed selection and the digest of the selected PCR values."""

    selection: PcrSelection
    pcr_digest: bytes


@frozen
class Attest:
    """TPMS_ATTEST as read; ``quote`` is None when ``type`` is not TPM_ST_ATTEST_QUOTE."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    quote: QuoteInfo | None


@frozen
class TpmSignature:
    """TPMT_SIGNATURE; for ECDSA, ``signature`` is already DER (r, s) for ``cryptography``."""

    scheme: SigScheme
    hash_alg: HashAlg
    signature: bytes


@frozen
class AttestationKey:
    """The public part of an attestation key the verifier pins.

    ``name`` (nameAlg || H(TPMT_PUBLIC)) and ``attributes`` are known only when the key was
    given as a TPMT_PUBLIC; a PEM key carries neither.
    """

    public_key: PublicKey
    source: str
    name: bytes | None = None
    attributes: int | None = None

    def same_key(self, other: AttestationKey) -> bool:
        return self.public_key.public_numbers() == other.public_key.public_numbers()
