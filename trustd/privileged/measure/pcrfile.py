"""The PCR file ``tpm2_checkquote -f`` reads, exactly as ``tpm2_quote -o`` writes it.

The codec is :mod:`trustd.shared.attest`'s (``parse_pcr_file``/``encode_pcr_file``); this module
adapts it to the measurement side's shape: banks by name (``"sha256"``), values flattened in
selection order, digest blocks as the TPM returned them, and the measurement error family.
"""

from __future__ import annotations

from typing import Final

from trustd.privileged.measure.errors import MalformedAttestationFileError
from trustd.shared._dataclass import frozen
from trustd.shared.attest import (
    MAX_PCR_FILE_SIZE,
    AttestFormatError,
    HashAlg,
    PcrValues,
    parse_pcr_file,
)
from trustd.shared.attest import encode_pcr_file as encode_values

ALG_IDS: Final = {alg.label: alg.value for alg in HashAlg}
MAX_PCR_FILE: Final = MAX_PCR_FILE_SIZE


@frozen
class PcrFile:
    """Selected PCRs per bank (in file order) and their values, flattened in selection order."""

    selection: tuple[tuple[str, tuple[int, ...]], ...]
    values: tuple[bytes, ...]

    def value_map(self) -> dict[tuple[str, int], bytes]:
        keys = [(bank, pcr) for bank, pcrs in self.selection for pcr in pcrs]
        return dict(zip(keys, self.values, strict=True))


def encode_pcr_file(
    selection: tuple[tuple[str, tuple[int, ...]], ...], chunks: tuple[tuple[bytes, ...], ...]
) -> bytes:
    """Selection, then one ``TPML_DIGEST`` per chunk (as the TPM returned them, ≤ 8 each)."""
    flat = [value for chunk in chunks for value in chunk]
    if len(flat) != sum(len(pcrs) for _, pcrs in selection):
        raise ValueError(f"{len(flat)} values for the PCRs selected in {selection}")
    rest = iter(flat)
    banks = tuple(
        (HashAlg(ALG_IDS[bank]), tuple((pcr, next(rest)) for pcr in pcrs))
        for bank, pcrs in selection
    )
    return encode_values(PcrValues(banks), blocks=[len(chunk) for chunk in chunks])


def decode_pcr_file(data: bytes) -> PcrFile:
    """Parse a PCR file strictly: exact length, sizes that match each bank's hash."""
    try:
        values = parse_pcr_file(data)
    except AttestFormatError as exc:
        raise MalformedAttestationFileError(
            f"quote.pcrs: {exc.field}: {exc.problem}",
            hint="the PCR file must be written by tpm2_quote -o or rkt attest quote",
        ) from exc
    return PcrFile(
        selection=tuple((alg.label, tuple(i for i, _ in pcrs)) for alg, pcrs in values.banks),
        values=tuple(values.ordered()),
    )
