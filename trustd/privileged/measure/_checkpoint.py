"""``<data-dir>/tpm/eventlog.checkpoint.json``: where the event log stands, so that a pod start
does not replay the whole log.

It records, for the current epoch, how many records the log holds, its size in bytes, where its
last line starts and that line's sha256, and the value every PCR the log extends has after the
log, per bank. It is root's alone (0600 in the 0700 state directory), written atomically
(temp file, fsync, rename) after each pod start's extends, and never trusted on its own: every
start compares its values with the TPM's PCRs and its size and last line with the log, and a
checkpoint that does not fit the log is set aside for one full replay (ADR 0007).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Final, Literal

from trustd.privileged.measure._canon import DIGEST_SIZES
from trustd.privileged.measure.eventlog import EventRecord
from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import atomic_write
from trustd.shared.codec import DecodeError, decode_json, encode

CHECKPOINT: Final = "eventlog.checkpoint.json"
MAX_CHECKPOINT: Final = 64 * 1024
_HINT: Final = "remove it; the next pod start replays the event log once and writes a new one"

# PCR -> bank -> value after the log. A PCR the log never extends is absent (all zeros); a
# bank absent for a PCR that is present is unknown (a record lacked it), never zeros.
Values = dict[int, dict[str, bytes]]


def _count(value: int) -> str | None:
    return None if 0 <= value < 2**62 else "must be a non-negative integer"


def _pcr(value: int) -> str | None:
    return None if 0 <= value <= 23 else "must be a PCR index, 0 to 23"


def _sha256_hex(value: str) -> str | None:
    ok = len(value) == 64 and value == value.lower() and all(c in "0123456789abcdef" for c in value)
    return None if ok else "must be 64 lowercase hex digits"


def _bank_values(value: Mapping[str, str]) -> str | None:
    for bank, hexd in value.items():
        if bank not in DIGEST_SIZES:
            return f"{bank!r} is not a bank trustd extends"
        if len(hexd) != 2 * DIGEST_SIZES[bank] or hexd != hexd.lower():
            return f"the {bank} value is not {DIGEST_SIZES[bank]} bytes of lowercase hex"
        try:
            bytes.fromhex(hexd)
        except ValueError:
            return f"the {bank} value is not hex"
    return None


@frozen
class PcrValue:
    pcr: int = field(metadata={"check": _pcr})
    banks: Mapping[str, str] = field(metadata={"check": _bank_values})


@frozen
class Checkpoint:
    """The log of epoch (``tpm_reset_count``, ``tpm_restart_count``) as of its last pod start."""

    tpm_reset_count: int = field(metadata={"check": _count})
    tpm_restart_count: int = field(metadata={"check": _count})
    records: int = field(metadata={"check": _count})
    size: int = field(metadata={"check": _count})
    last_offset: int = field(metadata={"check": _count})
    last_sha256: str = field(metadata={"check": _sha256_hex})
    pcrs: tuple[PcrValue, ...] = ()
    version: Literal[1] = 1

    def __post_init__(self) -> None:
        if (self.records == 0) != (self.size == 0) or self.last_offset > self.size:
            raise ValueError(
                f"{self.records} records in {self.size} bytes, last at "
                f"{self.last_offset}: not a log"
            )
        if len({p.pcr for p in self.pcrs}) != len(self.pcrs):
            raise ValueError("a PCR appears twice")

    def values(self) -> Values:
        return {p.pcr: {b: bytes.fromhex(v) for b, v in p.banks.items()} for p in self.pcrs}


def make_checkpoint(
    epoch: tuple[int, int], records: int, size: int, last: tuple[int, bytes], values: Values
) -> Checkpoint:
    """``last`` is (offset, bytes) of the log's last line (``(0, b"")`` for an empty log)."""
    pcrs = tuple(
        PcrValue(pcr, {b: v.hex() for b, v in sorted(banks.items())})
        for pcr, banks in sorted(values.items())
    )
    digest = hashlib.sha256(last[1]).hexdigest()
    return Checkpoint(epoch[0], epoch[1], records, size, last[0], digest, pcrs)


def load_checkpoint(directory: Path) -> Checkpoint | None:
    """The checkpoint, or None when there is none or it does not decode (then the caller
    replays the log in full: the checkpoint only ever saves work, it never vouches)."""
    path = directory / CHECKPOINT
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CHECKPOINT + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_CHECKPOINT:
        return None
    try:
        return decode_json(data, Checkpoint, str(path), _HINT)
    except DecodeError:
        return None


def store_checkpoint(directory: Path, checkpoint: Checkpoint) -> None:
    data = json.dumps(encode(checkpoint), indent=1, sort_keys=True).encode() + b"\n"
    atomic_write(directory / CHECKPOINT, data, mode=0o600)


def advance(values: Values, record: EventRecord) -> None:
    """Extend ``values`` by one record, as the TPM does (a bank the record lacks is dropped:
    from then on the log cannot say what that bank holds)."""
    digests = dict(record.digests)
    current = values.get(record.pcr)
    if current is None:
        current = {alg: bytes(DIGEST_SIZES[alg]) for alg in digests}
    values[record.pcr] = {
        alg: hashlib.new(alg, value + bytes.fromhex(digests[alg])).digest()
        for alg, value in current.items()
        if alg in digests
    }


def expected(values: Values, pcr: int, bank: str) -> bytes | None:
    """What the log says ``pcr`` holds in ``bank``; None when the log cannot say."""
    if pcr not in values:
        return bytes(DIGEST_SIZES[bank])
    return values[pcr].get(bank)
