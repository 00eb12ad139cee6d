"""Verify one attester's answer to a challenge (``rkt attest verify --remote``), in order.

The answer is the ``results`` of ``GET /v2.1/quotes/integrity`` (trustd/unprivileged/attest/
server.py), decoded strictly. A quote is accepted only when all of these hold:

1. the AK is registered: today the verifier's pinned AK (``--ak``); enrolment is
   ``"pinned"``. Hook for the AK registry (issue #11 part 2): :func:`verify_answer` takes
   ``enrolment`` and ``backend_evidence`` from whoever resolved the AK;
2. the quote checks out (:func:`.verifier.verify_quote`): signature, nonce (the one this
   verifier just generated: an answer to another challenge is refused), PCR selection,
   digest; and it covers every PCR the verifier asked for;
3. the pod event log replays to the quoted PCRs outside 0-7;
4. with a firmware log, it replays to the quoted PCRs 0-7 (:mod:`.boot`); a policy with
   ``[boot]`` requires the log and its reference values / golden log / Secure Boot state;
5. the policy holds for the pod starts (images, signers, isolation) and for the backend.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from trustd.shared._dataclass import frozen
from trustd.shared.attest._pcrfile import parse_pcr_file
from trustd.shared.attest._tpm2 import parse_signature
from trustd.shared.attest.boot import appraise_boot, boot_problems
from trustd.shared.attest.bundle import QuoteBundle
from trustd.shared.attest.cel import parse_cel
from trustd.shared.attest.content import Json
from trustd.shared.attest.errors import AttestFormatError, QuoteError
from trustd.shared.attest.firmware import parse_firmware_log
from trustd.shared.attest.model import AttestationKey
from trustd.shared.attest.policy import BOOT_PCRS, VerifierPolicy, evaluate, hardware_problems
from trustd.shared.attest.report import pod_starts
from trustd.shared.attest.verifier import verify_pod_log, verify_quote
from trustd.shared.codec import DecodeError, decode_doc

BOOT_MASK = tuple(BOOT_PCRS)


@frozen
class RemoteAnswer:
    """``results`` of a quote; extra keys a newer attester adds are refused, as everywhere."""

    quote: str
    hash_alg: str
    pubkey: str
    trustd_event_log: str
    mb_measurement_list: str | None
    ima_measurement_list: str | None
    backend: str
    measurement_pcr: int


def decode_answer(doc: Any, source: str) -> RemoteAnswer:
    return decode_doc(doc, RemoteAnswer, source, hint="the attester is not rkt attest serve")


def answer_bundle(answer: RemoteAnswer, source: str) -> QuoteBundle:
    """Keylime's ``r<attest>:<sig>:<pcrs>`` and the CEL-JSON log as a :class:`QuoteBundle`."""
    parts = answer.quote[1:].split(":") if answer.quote.startswith("r") else []
    if len(parts) != 3:
        raise AttestFormatError(source, "quote", "not r<base64>:<base64>:<base64>")
    try:
        attest, sig, pcrs = (base64.b64decode(p, validate=True) for p in parts)
    except binascii.Error:
        raise AttestFormatError(source, "quote", "a part is not base64") from None
    return QuoteBundle(
        attest=attest,
        signature=parse_signature(sig),
        pcrs=parse_pcr_file(pcrs),
        event_log=parse_cel(answer.trustd_event_log.encode(), source=f"{source} event log"),
    )


def verify_answer(
    doc: Any,
    *,
    source: str,
    ak: AttestationKey,
    nonce: bytes,
    requested: tuple[int, ...],
    policy: VerifierPolicy | None,
    enrolment: str = "pinned",
    backend_evidence: str | None = None,
) -> dict[str, Json]:
    """The report of one node; raises QuoteError / AttestFormatError / DecodeError when the
    answer is refused outright. Policy violations are listed in the report (``accepted``
    false), so a fleet report shows every node's reasons."""
    answer = decode_answer(doc, source)
    bundle = answer_bundle(answer, source)
    quote = verify_quote(bundle, ak, nonce)
    quoted = {i for _, i in quote.quote.selection.pcrs()}
    missing = sorted(set(requested) - quoted)
    if missing:
        raise QuoteError("pcr-selection", f"the quote lacks the requested PCRs {missing}")
    attestation = verify_pod_log(quote, bundle.event_log, sorted(quoted - set(BOOT_PCRS)))
    starts = pod_starts(attestation)
    backend = backend_evidence or f"{answer.backend}, unverified claim"
    violations = hardware_problems(policy, backend, enrolment) if policy else []
    boot: dict[str, Json]
    if answer.mb_measurement_list is not None:
        try:
            raw = base64.b64decode(answer.mb_measurement_list, validate=True)
        except binascii.Error:
            raise AttestFormatError(source, "mb_measurement_list", "not base64") from None
        appraisal = appraise_boot(quote, parse_firmware_log(raw))
        boot = {"appraised": True, **appraisal.as_json()}
        if policy and policy.boot:
            violations += boot_problems(appraisal, policy.boot)
    else:
        boot = {"appraised": False, "reason": "the attester sent no firmware log"}
        if policy and policy.boot:
            violations.append("the policy appraises the boot, the attester sent no firmware log")
    if policy:
        violations += evaluate(policy, starts)
    return {
        "node": source,
        "accepted": not violations,
        "backend": backend,
        "enrolment": enrolment,
        "nonce": nonce.hex(),
        "pcrs": sorted(quoted),
        "boot": boot,
        "ima_log": answer.ima_measurement_list is not None,
        "policy_violations": list(violations),
        "pod_starts": starts,
    }


def refused(
    source: str, exc: QuoteError | AttestFormatError | DecodeError | Exception
) -> dict[str, Json]:
    """The report of a node whose answer was refused (or that could not be reached)."""
    check = getattr(exc, "check", None)
    return {
        "node": source,
        "accepted": False,
        "refused": check or type(exc).__name__,
        "error": str(exc),
    }
