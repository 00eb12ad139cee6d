"""Verifier side of TPM 2.0 attestation, pure Python (``cryptography``; no TPM needed).

Read a quote bundle, check it against a pinned attestation key and a fresh nonce, replay its
CEL-JSON log (or a TCG binary firmware log) and list the pod starts it proves.
"""

from trustd.attest._pcrfile import MAX_SIZE as MAX_PCR_FILE_SIZE
from trustd.attest._pcrfile import encode_pcr_file, parse_pcr_file
from trustd.attest._tpm2 import parse_attest, parse_signature
from trustd.attest.bundle import QuoteBundle
from trustd.attest.cel import CelLog, CelRecord, Replay, parse_cel, replay_cel, trustd_record
from trustd.attest.content import (
    TRUSTD_CONTENT_TYPE,
    TrustdContent,
    canonical_json,
    event_digest,
    trustd_content,
)
from trustd.attest.errors import AttestFormatError, QuoteError
from trustd.attest.firmware import (
    FirmwareEvent,
    FirmwareLog,
    parse_firmware_log,
    replay_firmware_log,
)
from trustd.attest.keys import load_ak_pem, load_ak_tpm
from trustd.attest.model import (
    Attest,
    AttestationKey,
    ClockInfo,
    HashAlg,
    PcrSelection,
    PcrValues,
    QuoteInfo,
    SigScheme,
    TpmSignature,
)
from trustd.attest.report import pod_starts
from trustd.attest.verified import VerifiedAttestation, VerifiedQuote
from trustd.attest.verifier import check_replay, replay, verify_bundle, verify_quote

__all__ = [
    "MAX_PCR_FILE_SIZE",
    "TRUSTD_CONTENT_TYPE",
    "Attest",
    "AttestFormatError",
    "AttestationKey",
    "CelLog",
    "CelRecord",
    "ClockInfo",
    "FirmwareEvent",
    "FirmwareLog",
    "HashAlg",
    "PcrSelection",
    "PcrValues",
    "QuoteBundle",
    "QuoteError",
    "QuoteInfo",
    "Replay",
    "SigScheme",
    "TpmSignature",
    "TrustdContent",
    "VerifiedAttestation",
    "VerifiedQuote",
    "canonical_json",
    "check_replay",
    "encode_pcr_file",
    "event_digest",
    "load_ak_pem",
    "load_ak_tpm",
    "parse_attest",
    "parse_cel",
    "parse_firmware_log",
    "parse_pcr_file",
    "parse_signature",
    "pod_starts",
    "replay",
    "replay_cel",
    "replay_firmware_log",
    "trustd_content",
    "trustd_record",
    "verify_bundle",
    "verify_quote",
]
