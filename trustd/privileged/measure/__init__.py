"""TPM 2.0 measurement of pod starts, the CEL-JSON event log, and quotes (issue 5).

Imported by the root-only executor: nothing here reaches the network or the fetch side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trustd.privileged.measure._canon import DIGEST_SIZES, canonical_json, event_digest
from trustd.privileged.measure.backend import (
    ENV_TCTI,
    BackendChoice,
    BackendStatus,
    Target,
    choose_backend,
    open_backend,
    status,
    stop_embedded,
)
from trustd.privileged.measure.errors import MalformedAttestationFileError, MeasurementError
from trustd.privileged.measure.eventlog import EventRecord, decode_log, encode_log, replay
from trustd.privileged.measure.measure import (
    ALLOWED_PCRS,
    DEFAULT_PCR,
    EMBEDDED_PCR,
    RESETTABLE_PCRS,
    Measurer,
    Mode,
    default_pcr,
)

if TYPE_CHECKING:
    from trustd.privileged.measure.bundle import QuoteBundle, read_bundle, write_bundle
    from trustd.privileged.measure.pcrfile import PcrFile, decode_pcr_file, encode_pcr_file

# Quote bundles and PCR files load the attestation verifier's codecs (``cryptography``): on
# first use (PEP 562), so that a pod start, which only extends, loads neither (issue #14).
_LAZY = {
    "QuoteBundle": "bundle",
    "read_bundle": "bundle",
    "write_bundle": "bundle",
    "PcrFile": "pcrfile",
    "decode_pcr_file": "pcrfile",
    "encode_pcr_file": "pcrfile",
}

__all__ = [
    "ALLOWED_PCRS",
    "DEFAULT_PCR",
    "DIGEST_SIZES",
    "EMBEDDED_PCR",
    "ENV_TCTI",
    "RESETTABLE_PCRS",
    "BackendChoice",
    "BackendStatus",
    "EventRecord",
    "MalformedAttestationFileError",
    "MeasurementError",
    "Measurer",
    "Mode",
    "PcrFile",
    "QuoteBundle",
    "Target",
    "canonical_json",
    "choose_backend",
    "decode_log",
    "decode_pcr_file",
    "default_pcr",
    "encode_log",
    "encode_pcr_file",
    "event_digest",
    "open_backend",
    "read_bundle",
    "replay",
    "status",
    "stop_embedded",
    "write_bundle",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
