"""Verifier side of TPM 2.0 attestation, pure Python (``cryptography``; no TPM needed).

Read a quote bundle, check it against a pinned attestation key and a fresh nonce, replay its
CEL-JSON log (or a TCG binary firmware log) and list the pod starts it proves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trustd.shared.attest._pcrfile import MAX_SIZE as MAX_PCR_FILE_SIZE
    from trustd.shared.attest._pcrfile import encode_pcr_file, parse_pcr_file
    from trustd.shared.attest._tpm2 import parse_attest, parse_signature
    from trustd.shared.attest.bundle import QuoteBundle
    from trustd.shared.attest.cel import (
        CelLog,
        CelRecord,
        Replay,
        parse_cel,
        replay_cel,
        trustd_record,
    )
    from trustd.shared.attest.content import (
        TRUSTD_CONTENT_TYPE,
        TrustdContent,
        canonical_json,
        event_digest,
        trustd_content,
    )
    from trustd.shared.attest.errors import AttestFormatError, QuoteError
    from trustd.shared.attest.firmware import (
        FirmwareEvent,
        FirmwareLog,
        parse_firmware_log,
        replay_firmware_log,
    )
    from trustd.shared.attest.keys import load_ak_pem, load_ak_tpm
    from trustd.shared.attest.model import (
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
    from trustd.shared.attest.report import pod_starts
    from trustd.shared.attest.verified import VerifiedAttestation, VerifiedQuote
    from trustd.shared.attest.verifier import check_replay, replay, verify_bundle, verify_quote

# Loaded on first use (PEP 562): the measurement side imports only the content contract and the
# PCR-file codec, and should not pay for the quote verifier, the firmware-log parser and the key
# loaders on every pod start.
_LAZY: dict[str, tuple[str, str]] = {
    "Attest": ("trustd.shared.attest.model", "Attest"),
    "AttestFormatError": ("trustd.shared.attest.errors", "AttestFormatError"),
    "AttestationKey": ("trustd.shared.attest.model", "AttestationKey"),
    "CelLog": ("trustd.shared.attest.cel", "CelLog"),
    "CelRecord": ("trustd.shared.attest.cel", "CelRecord"),
    "ClockInfo": ("trustd.shared.attest.model", "ClockInfo"),
    "FirmwareEvent": ("trustd.shared.attest.firmware", "FirmwareEvent"),
    "FirmwareLog": ("trustd.shared.attest.firmware", "FirmwareLog"),
    "HashAlg": ("trustd.shared.attest.model", "HashAlg"),
    "MAX_PCR_FILE_SIZE": ("trustd.shared.attest._pcrfile", "MAX_SIZE"),
    "PcrSelection": ("trustd.shared.attest.model", "PcrSelection"),
    "PcrValues": ("trustd.shared.attest.model", "PcrValues"),
    "QuoteBundle": ("trustd.shared.attest.bundle", "QuoteBundle"),
    "QuoteError": ("trustd.shared.attest.errors", "QuoteError"),
    "QuoteInfo": ("trustd.shared.attest.model", "QuoteInfo"),
    "Replay": ("trustd.shared.attest.cel", "Replay"),
    "SigScheme": ("trustd.shared.attest.model", "SigScheme"),
    "TRUSTD_CONTENT_TYPE": ("trustd.shared.attest.content", "TRUSTD_CONTENT_TYPE"),
    "TpmSignature": ("trustd.shared.attest.model", "TpmSignature"),
    "TrustdContent": ("trustd.shared.attest.content", "TrustdContent"),
    "VerifiedAttestation": ("trustd.shared.attest.verified", "VerifiedAttestation"),
    "VerifiedQuote": ("trustd.shared.attest.verified", "VerifiedQuote"),
    "canonical_json": ("trustd.shared.attest.content", "canonical_json"),
    "check_replay": ("trustd.shared.attest.verifier", "check_replay"),
    "encode_pcr_file": ("trustd.shared.attest._pcrfile", "encode_pcr_file"),
    "event_digest": ("trustd.shared.attest.content", "event_digest"),
    "load_ak_pem": ("trustd.shared.attest.keys", "load_ak_pem"),
    "load_ak_tpm": ("trustd.shared.attest.keys", "load_ak_tpm"),
    "parse_attest": ("trustd.shared.attest._tpm2", "parse_attest"),
    "parse_cel": ("trustd.shared.attest.cel", "parse_cel"),
    "parse_firmware_log": ("trustd.shared.attest.firmware", "parse_firmware_log"),
    "parse_pcr_file": ("trustd.shared.attest._pcrfile", "parse_pcr_file"),
    "parse_signature": ("trustd.shared.attest._tpm2", "parse_signature"),
    "pod_starts": ("trustd.shared.attest.report", "pod_starts"),
    "replay": ("trustd.shared.attest.verifier", "replay"),
    "replay_cel": ("trustd.shared.attest.cel", "replay_cel"),
    "replay_firmware_log": ("trustd.shared.attest.firmware", "replay_firmware_log"),
    "trustd_content": ("trustd.shared.attest.content", "trustd_content"),
    "trustd_record": ("trustd.shared.attest.cel", "trustd_record"),
    "verify_bundle": ("trustd.shared.attest.verifier", "verify_bundle"),
    "verify_quote": ("trustd.shared.attest.verifier", "verify_quote"),
}


def __getattr__(name: str) -> object:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
