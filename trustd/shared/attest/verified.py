"""The only proofs that a quote (and its event log) checked out (CONVENTIONS 4)."""

from __future__ import annotations

from dataclasses import field

from trustd.shared._dataclass import frozen
from trustd.shared.attest.cel import CelLog
from trustd.shared.attest.model import Attest, HashAlg, PcrValues, QuoteInfo, SigScheme

# Only trustd.shared.attest.verifier holds this; the classes below refuse to exist without it.
_VERIFIER_TOKEN = object()


@frozen
class VerifiedQuote:
    """A quote signed by the pinned AK over ``nonce``, and PCR values that match it."""

    attest: Attest
    quote: QuoteInfo
    pcrs: PcrValues
    nonce: bytes
    scheme: SigScheme
    hash_alg: HashAlg
    ak_source: str
    _token: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _VERIFIER_TOKEN:
            raise TypeError("VerifiedQuote is made only by trustd.shared.attest.verify_quote")

    def quoted(self) -> dict[HashAlg, dict[int, bytes]]:
        return self.pcrs.as_dict()


@frozen
class VerifiedAttestation:
    """A verified quote whose event log replays to exactly the quoted PCR values."""

    quote: VerifiedQuote
    log: CelLog
    _token: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._token is not _VERIFIER_TOKEN:
            raise TypeError(
                "VerifiedAttestation is made only by trustd.shared.attest.verify_bundle"
            )
