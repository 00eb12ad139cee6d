"""The quote bundle directory, in formats other tools read.

``ak.pub.pem`` (the AK, PEM SubjectPublicKeyInfo), ``quote.attest`` (TPMS_ATTEST),
``quote.sig`` (TPMT_SIGNATURE), ``quote.pcrs`` (the ``tpm2_checkquote -f`` PCR file, see
:mod:`trustd.privileged.measure.pcrfile`) and ``eventlog.json`` (CEL-JSON, see
:mod:`.eventlog`). ``tpm2_checkquote -u ak.pub.pem -m quote.attest -s quote.sig
-f quote.pcrs -g sha256 -q NONCE`` accepts a bundle written here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from trustd.privileged.measure.errors import MalformedAttestationFileError
from trustd.privileged.measure.eventlog import MAX_LOG_BYTES, EventRecord, decode_log, encode_log
from trustd.privileged.measure.pcrfile import MAX_PCR_FILE, PcrFile, decode_pcr_file
from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import atomic_write, read_capped

AK_FILE: Final = "ak.pub.pem"
ATTEST_FILE: Final = "quote.attest"
SIG_FILE: Final = "quote.sig"
PCRS_FILE: Final = "quote.pcrs"
EVENTLOG_FILE: Final = "eventlog.json"
_SMALL: Final = 64 * 1024


@frozen
class QuoteBundle:
    """A bundle's contents, parsed as far as trustd's file formats go (no signature check)."""

    ak_pem: bytes
    attest: bytes
    signature: bytes
    pcr_file: bytes
    pcrs: PcrFile
    events: tuple[EventRecord, ...]


def write_bundle(out_dir: Path, bundle: QuoteBundle) -> None:
    out_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    atomic_write(out_dir / AK_FILE, bundle.ak_pem)
    atomic_write(out_dir / ATTEST_FILE, bundle.attest)
    atomic_write(out_dir / SIG_FILE, bundle.signature)
    atomic_write(out_dir / PCRS_FILE, bundle.pcr_file)
    atomic_write(out_dir / EVENTLOG_FILE, encode_log(bundle.events))


def _read(path: Path, cap: int) -> bytes:
    try:
        return read_capped(path, cap)
    except FileNotFoundError as exc:
        raise MalformedAttestationFileError(
            f"{path}: missing", hint="a bundle is the directory rkt attest quote --out wrote"
        ) from exc
    except (OSError, ValueError) as exc:
        raise MalformedAttestationFileError(f"{path}: {exc}") from exc


def read_bundle(directory: Path, *, check_digests: bool = False) -> QuoteBundle:
    """Read and parse a bundle; ``check_digests`` also recomputes each event's digests.

    The default leaves digest checks to the verifier, so it can name that check on refusal.
    """
    pcr_file = _read(directory / PCRS_FILE, MAX_PCR_FILE)
    log = _read(directory / EVENTLOG_FILE, MAX_LOG_BYTES)
    try:
        events = decode_log(log, check_digests=check_digests)
    except ValueError as exc:
        raise MalformedAttestationFileError(f"{directory / EVENTLOG_FILE}: {exc}") from exc
    return QuoteBundle(
        ak_pem=_read(directory / AK_FILE, _SMALL),
        attest=_read(directory / ATTEST_FILE, _SMALL),
        signature=_read(directory / SIG_FILE, _SMALL),
        pcr_file=pcr_file,
        pcrs=decode_pcr_file(pcr_file),
        events=events,
    )
