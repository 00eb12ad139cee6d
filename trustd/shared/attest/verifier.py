"""Quote verification and event-log replay, in the order the checks must run.

1. ``signature``: the pinned AK signed the TPMS_ATTEST bytes, with an allowed hash
   (SHA-256/384/512; SHA-1 only with ``allow_sha1=True``) and a scheme that fits the key.
2. ``magic``: TPM_GENERATED_VALUE, so the TPM itself made the structure.
3. ``type``: TPM_ST_ATTEST_QUOTE.
4. ``nonce``: extraData equals the verifier's nonce (freshness).
5. ``pcr-selection``: the signed selection equals the selection of the reported values.
   pcrDigest hashes values without their indexes, so without this check reported values could
   be relabelled to other PCRs (Keylime skips it).
6. ``pcr-digest``: pcrDigest equals H(reported values in selection order).
7. ``event-digest`` and ``replay``: every trustd record's digest is the hash of its content,
   and the log replays to every quoted PCR (a PCR the log never extends must still be zero).
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from trustd.shared.attest._tpm2 import parse_attest
from trustd.shared.attest.bundle import QuoteBundle
from trustd.shared.attest.cel import CelLog, Replay, replay_cel
from trustd.shared.attest.errors import QuoteError
from trustd.shared.attest.firmware import FirmwareLog, replay_firmware_log
from trustd.shared.attest.model import (
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    AttestationKey,
    HashAlg,
    QuoteInfo,
    SigScheme,
    TpmSignature,
)
from trustd.shared.attest.verified import _VERIFIER_TOKEN, VerifiedAttestation, VerifiedQuote
from trustd.shared.errors import UserError

STRONG = frozenset({HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512})
_HASHES: dict[HashAlg, type[hashes.HashAlgorithm]] = {
    HashAlg.SHA1: hashes.SHA1,
    HashAlg.SHA256: hashes.SHA256,
    HashAlg.SHA384: hashes.SHA384,
    HashAlg.SHA512: hashes.SHA512,
}


MIN_NONCE_BYTES = 8  # refused below: a recorded swtpm vector quotes over 8 bytes
NONCE_BYTES = 16  # what every piece of advice says (128 bits: no replay by guessing)
NONCE_ADVICE = (
    f"use a fresh random nonce of {NONCE_BYTES} bytes for every quote: "
    f"""python3 -c 'import secrets; print(secrets.token_hex({NONCE_BYTES}))'"""
)


def verify_quote(
    bundle: QuoteBundle,
    ak: AttestationKey,
    nonce: bytes,
    *,
    allow_sha1: bool = False,
    min_nonce_bytes: int = MIN_NONCE_BYTES,
) -> VerifiedQuote:
    """Checks 1-6; raises QuoteError naming the first that fails, never returns False."""
    if len(nonce) < min_nonce_bytes:
        raise UserError(
            f"the nonce is {len(nonce)} bytes, at least {min_nonce_bytes} are needed",
            hint=NONCE_ADVICE,
        )
    _check_signature(bundle, ak, allow_sha1=allow_sha1)
    attest = parse_attest(bundle.attest)
    if attest.magic != TPM_GENERATED_VALUE:
        raise QuoteError("magic", f"magic is 0x{attest.magic:08x}, not 0x{TPM_GENERATED_VALUE:08x}")
    if attest.quote is None or attest.type != TPM_ST_ATTEST_QUOTE:
        raise QuoteError("type", f"type is 0x{attest.type:04x}, not TPM_ST_ATTEST_QUOTE (0x8018)")
    if not hmac.compare_digest(attest.extra_data, nonce):
        raise QuoteError(
            "nonce",
            f"the quote is over nonce {attest.extra_data.hex() or '(empty)'}, not {nonce.hex()}",
            hint="the quote is stale or replayed; ask for a new one with this nonce",
        )
    _check_pcrs(bundle, attest.quote, bundle.signature.hash_alg)
    return VerifiedQuote(
        attest,
        attest.quote,
        bundle.pcrs,
        nonce,
        bundle.signature.scheme,
        bundle.signature.hash_alg,
        ak.source,
        _VERIFIER_TOKEN,
    )


def _check_signature(bundle: QuoteBundle, ak: AttestationKey, *, allow_sha1: bool) -> None:
    sig = bundle.signature
    allowed = STRONG | ({HashAlg.SHA1} if allow_sha1 else set())
    if sig.hash_alg not in allowed:
        raise QuoteError(
            "signature",
            f"the quote is signed with {sig.hash_alg.label}, which is refused as too weak",
            hint="quote with a SHA-256 signing scheme (tpm2_quote -g sha256)",
        )
    try:
        _verify(sig, ak, bundle.attest)
    except InvalidSignature:
        other = bundle.ak is not None and not bundle.ak.same_key(ak)
        raise QuoteError(
            "signature",
            f"the {sig.scheme.name}-{sig.hash_alg.label} signature over TPMS_ATTEST does not "
            f"verify with the AK from {ak.source}",
            hint="the bundle's ak.pub.pem is a different key than the pinned AK"
            if other
            else "the quote or its signature was altered, or another key made it",
        ) from None


def _verify(sig: TpmSignature, ak: AttestationKey, data: bytes) -> None:
    key, algorithm = ak.public_key, _HASHES[sig.hash_alg]()
    if isinstance(key, rsa.RSAPublicKey) and sig.scheme is SigScheme.RSASSA:
        key.verify(sig.signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, rsa.RSAPublicKey) and sig.scheme is SigScheme.RSAPSS:
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
        key.verify(sig.signature, data, pss, algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey) and sig.scheme is SigScheme.ECDSA:
        key.verify(sig.signature, data, ec.ECDSA(algorithm))
    else:
        raise QuoteError(
            "signature", f"a {sig.scheme.name} signature cannot come from the AK in {ak.source}"
        )


def _check_pcrs(bundle: QuoteBundle, quote: QuoteInfo, alg: HashAlg) -> None:
    reported = bundle.pcrs.selection()
    if quote.selection != reported:
        raise QuoteError(
            "pcr-selection",
            f"the quote covers {quote.selection.describe()}, "
            f"the reported values are for {reported.describe()}",
        )
    digest = alg.digest(b"".join(bundle.pcrs.ordered()))
    if not hmac.compare_digest(digest, quote.pcr_digest):
        raise QuoteError(
            "pcr-digest",
            f"pcrDigest is {quote.pcr_digest.hex()}, the reported PCR values hash to "
            f"{digest.hex()}",
            hint="a reported PCR value was changed after the quote was made",
        )


def replay(log: CelLog | FirmwareLog) -> Replay:
    """Final PCR values per bank of either kind of event log."""
    return replay_cel(log) if isinstance(log, CelLog) else replay_firmware_log(log)


def check_replay(
    quote: VerifiedQuote,
    replayed: Mapping[HashAlg, Mapping[int, bytes]],
    *,
    pcrs: Collection[int] | None = None,
) -> None:
    """Every quoted PCR (or only ``pcrs``) must equal the replay; absent PCRs replay to zero."""
    quoted = quote.quoted()
    if pcrs is not None and not set(pcrs) <= {i for bank in quoted.values() for i in bank}:
        raise UserError(f"PCRs {sorted(pcrs)} are not all in the quote")
    for alg, values in quoted.items():
        for index, value in values.items():
            if pcrs is not None and index not in pcrs:
                continue
            expected = replayed.get(alg, {}).get(index, bytes(alg.size))
            if not hmac.compare_digest(expected, value):
                raise QuoteError(
                    "replay",
                    f"{alg.label} PCR {index} is {value.hex()} in the quote, the event log "
                    f"replays to {expected.hex()}",
                    hint="an event was added to, removed from or changed in the log",
                )


def verify_bundle(
    bundle: QuoteBundle,
    ak: AttestationKey,
    nonce: bytes,
    *,
    allow_sha1: bool = False,
    min_nonce_bytes: int = MIN_NONCE_BYTES,
) -> VerifiedAttestation:
    """All checks: the quote, then the CEL log's digests and its replay to every quoted PCR."""
    quote = verify_quote(bundle, ak, nonce, allow_sha1=allow_sha1, min_nonce_bytes=min_nonce_bytes)
    check_replay(quote, replay_cel(bundle.event_log))
    return VerifiedAttestation(quote, bundle.event_log, _VERIFIER_TOKEN)


def verify_pod_log(quote: VerifiedQuote, log: CelLog, pcrs: Collection[int]) -> VerifiedAttestation:
    """The pod event log replays to the quoted ``pcrs`` (the firmware's PCRs 0-7 are the boot
    appraisal's), and has no record in any other PCR, which nothing would vouch for."""
    stray = sorted({r.pcr for r in log.records} - set(pcrs))
    if stray:
        raise QuoteError(
            "replay",
            f"the pod event log has records in PCRs {stray}, outside the replayed {sorted(pcrs)}",
            hint="trustd measures pod starts only into its measurement PCR",
        )
    check_replay(quote, replay_cel(log), pcrs=pcrs)
    return VerifiedAttestation(quote, log, _VERIFIER_TOKEN)
