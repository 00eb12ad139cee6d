"""The quote bundle directory ``rkt attest quote --out DIR`` writes, in formats other tools read.

========================  ==========================================================
``ak.pub.pem``            the AK public key (informational: the verifier pins its own)
``quote.attest``          TPMS_ATTEST, as ``tpm2_quote -m`` writes it
``quote.sig``             TPMT_SIGNATURE, as ``tpm2_quote -s`` writes it
``quote.pcrs``            the PCR file ``tpm2_quote -o`` writes / ``tpm2_checkquote -f`` reads
``eventlog.json``         the CEL-JSON event log (:mod:`trustd.shared.attest.cel`)
========================  ==========================================================
"""

from __future__ import annotations

import os
from pathlib import Path

from trustd.shared._dataclass import frozen
from trustd.shared.attest._pcrfile import encode_pcr_file, parse_pcr_file
from trustd.shared.attest._tpm2 import parse_signature
from trustd.shared.attest.cel import CelLog, parse_cel
from trustd.shared.attest.errors import AttestFormatError
from trustd.shared.attest.keys import load_ak_pem
from trustd.shared.attest.model import AttestationKey, PcrValues, TpmSignature
from trustd.shared.errors import UserError

AK_FILE = "ak.pub.pem"
ATTEST_FILE = "quote.attest"
SIG_FILE = "quote.sig"
PCRS_FILE = "quote.pcrs"
LOG_FILE = "eventlog.json"
_SMALL = 64 * 1024
_LOG_MAX = 64 * 1024 * 1024


@frozen
class QuoteBundle:
    """What a machine sent: none of it is trusted until :func:`verify_bundle` says so."""

    attest: bytes  # raw: the signature covers these exact bytes
    signature: TpmSignature
    pcrs: PcrValues
    event_log: CelLog
    ak: AttestationKey | None = None  # the bundle's own copy of the AK, never trusted

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> QuoteBundle:
        root = Path(directory)
        if not root.is_dir():
            raise UserError(
                f"attestation bundle {str(root)!r} is not a directory",
                hint="pass the directory `rkt attest quote --out DIR` wrote",
            )
        ak_path = root / AK_FILE
        ak = None
        if ak_path.exists():
            ak = load_ak_pem(read_capped(ak_path, _SMALL), source=str(ak_path))
        return cls(
            attest=read_capped(root / ATTEST_FILE, _SMALL),
            signature=parse_signature(read_capped(root / SIG_FILE, _SMALL)),
            pcrs=parse_pcr_file(read_capped(root / PCRS_FILE, _SMALL)),
            event_log=parse_cel(
                read_capped(root / LOG_FILE, _LOG_MAX), source=str(root / LOG_FILE)
            ),
            ak=ak,
        )

    def pcr_file(self) -> bytes:
        """``quote.pcrs`` as tpm2-tools would write it."""
        return encode_pcr_file(self.pcrs)


def read_capped(path: Path, cap: int) -> bytes:
    """Read at most ``cap`` bytes; a larger or missing file is an error naming it."""
    try:
        with path.open("rb") as fh:
            data = fh.read(cap + 1)
    except FileNotFoundError:
        raise UserError(
            f"attestation bundle file {str(path)!r} is missing",
            hint=f"a bundle holds {AK_FILE}, {ATTEST_FILE}, {SIG_FILE}, {PCRS_FILE}, {LOG_FILE}",
        ) from None
    except OSError as err:
        raise UserError(f"cannot read {str(path)!r}: {err.strerror}") from None
    if len(data) > cap:
        raise AttestFormatError(str(path), "(size)", f"larger than the {cap}-byte limit")
    return data
