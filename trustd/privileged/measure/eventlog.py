"""trustd's event log: TCG Canonical Event Log records in their JSON form.

The log on disk is a stream of records, one JSON object per line, appended (never rewritten);
a quote bundle carries it as a JSON array (both are CEL-JSON, :mod:`trustd.shared.attest.cel`)::

    {"recnum": 0, "pcr": 23, "content_type": "trustd",
     "digests": [{"hashAlg": "sha256", "digest": "<hex>"}, ...],
     "content": {"kind": "...", "data": {...}}}

Every digest is ``event_digest(content, hashAlg)`` (see :mod:`._canon`), so a
verifier recomputes it from the record itself (the content contract is
:mod:`trustd.shared.attest.content`). The first record of each TPM boot epoch has kind "tpm-epoch".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from trustd.privileged.measure._canon import (
    DIGEST_SIZES,
    canonical_json,
    event_digest,
    parse_trustd_content,
)
from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import atomic_write, read_capped
from trustd.shared.errors import TrustdError

CONTENT_TYPE: Final = "trustd"
MAX_LOG_BYTES: Final = 64 * 1024 * 1024
MAX_CONTENT_BYTES: Final = 64 * 1024
_KEYS: Final = frozenset({"recnum", "pcr", "content_type", "digests", "content"})


@frozen
class EventRecord:
    """One measured event. ``measured`` is False only in best-effort mode, with ``reason``."""

    recnum: int | None
    pcr: int
    digests: tuple[tuple[str, str], ...]  # (hashAlg, lowercase hex), in bank order
    content_json: str  # canonical JSON of the content: the exact hashed bytes, decoded
    measured: bool = True
    backend: str = ""
    reason: str | None = field(default=None)

    @property
    def content(self) -> Mapping[str, object]:
        return MappingProxyType(json.loads(self.content_json))

    def digest(self, alg: str) -> bytes:
        return bytes.fromhex(dict(self.digests)[alg])

    def to_cel(self) -> dict[str, object]:
        return {
            "recnum": self.recnum,
            "pcr": self.pcr,
            "content_type": CONTENT_TYPE,
            "digests": [{"hashAlg": a, "digest": d} for a, d in self.digests],
            "content": json.loads(self.content_json),
        }


def make_record(
    recnum: int | None, pcr: int, content: Mapping[str, object], banks: Sequence[str]
) -> EventRecord:
    canon = canonical_json(dict(content))
    digests = tuple((alg, event_digest(content, alg).hex()) for alg in banks)
    return EventRecord(recnum, pcr, digests, canon.decode())


def _decode_digests(raw: object, n: int) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"record {n}: digests must be a non-empty list")
    out = []
    for d in raw:
        if not isinstance(d, dict) or set(d) != {"hashAlg", "digest"}:
            raise ValueError(f"record {n}: each digest is {{hashAlg, digest}}")
        alg, hexd = d["hashAlg"], d["digest"]
        if alg not in DIGEST_SIZES or not isinstance(hexd, str):
            raise ValueError(f"record {n}: unsupported hashAlg {alg!r}")
        if len(hexd) != 2 * DIGEST_SIZES[alg] or hexd != hexd.lower():
            raise ValueError(f"record {n}: {alg} digest is not {DIGEST_SIZES[alg]} bytes of hex")
        bytes.fromhex(hexd)
        out.append((alg, hexd))
    return tuple(out)


def _decode_record(raw: object, n: int, check_digests: bool) -> EventRecord:
    if not isinstance(raw, dict) or set(raw) != _KEYS:
        raise ValueError(f"record {n}: expected keys {sorted(_KEYS)}")
    if raw["recnum"] != n or isinstance(raw["recnum"], bool):
        raise ValueError(f"record {n}: recnum is {raw['recnum']!r}")
    pcr = raw["pcr"]
    if not isinstance(pcr, int) or isinstance(pcr, bool) or not 0 <= pcr <= 23:
        raise ValueError(f"record {n}: pcr {pcr!r} is not 0-23")
    if raw["content_type"] != CONTENT_TYPE:
        raise ValueError(f"record {n}: content_type {raw['content_type']!r} is not 'trustd'")
    if not isinstance(raw["content"], dict):
        raise ValueError(f"record {n}: content must be an object")  # noqa: TRY004
    digests = _decode_digests(raw["digests"], n)
    record = EventRecord(n, pcr, digests, canonical_json(raw["content"]).decode())
    if check_digests:
        try:  # parsed once, not once per bank (event_digest parses a mapping the same way)
            content = parse_trustd_content(raw["content"], "trustd content")
        except (ValueError, TrustdError) as exc:
            raise ValueError(f"record {n}: content: {exc}") from exc
        for alg, hexd in digests:
            try:
                good = event_digest(content, alg).hex() == hexd
            except (ValueError, TrustdError) as exc:
                raise ValueError(f"record {n}: content: {exc}") from exc
            if not good:
                raise ValueError(f"record {n}: {alg} digest does not match its content")
    return record


def decode_log(data: bytes, *, check_digests: bool = True) -> tuple[EventRecord, ...]:
    """Parse a CEL-JSON log strictly, a JSON array or one record per line (the form trustd
    appends); any defect is a ValueError naming the record."""
    if data.lstrip()[:1] != b"[":
        return decode_lines(data, 0, check_digests=check_digests)
    if len(data) > MAX_LOG_BYTES:
        raise ValueError(f"log larger than {MAX_LOG_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(doc, list):
        raise ValueError("a CEL-JSON log is a JSON array of records")  # noqa: TRY004
    return tuple(_decode_record(raw, n, check_digests) for n, raw in enumerate(doc))


def decode_lines(data: bytes, first: int, *, check_digests: bool = True) -> tuple[EventRecord, ...]:
    """Records ``first``, ``first + 1``, ... of the line form: every line ends in a newline
    (an unterminated last line is a torn append), none is empty."""
    if len(data) > MAX_LOG_BYTES:
        raise ValueError(f"log larger than {MAX_LOG_BYTES} bytes")
    if not data:
        return ()
    if not data.endswith(b"\n"):
        torn = first + data.count(b"\n")
        raise ValueError(f"record {torn}: incomplete (no final newline)")
    out = []
    for n, line in enumerate(data[:-1].split(b"\n"), first):
        try:
            raw = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"record {n}: not JSON: {exc}") from exc
        out.append(_decode_record(raw, n, check_digests))
    return tuple(out)


def encode_log(records: Sequence[EventRecord]) -> bytes:
    body = ",\n".join(json.dumps(r.to_cel(), sort_keys=True, ensure_ascii=False) for r in records)
    return f"[\n{body}\n]\n".encode() if records else b"[]\n"


def encode_line(record: EventRecord) -> bytes:
    """One record of the line form, newline included (JSON escapes every newline inside)."""
    return json.dumps(record.to_cel(), sort_keys=True, ensure_ascii=False).encode() + b"\n"


def load_log(path: Path) -> tuple[EventRecord, ...]:
    """Read a log file; a missing file is an empty log. Raises ValueError/OSError on defects."""
    try:
        data = read_capped(path, MAX_LOG_BYTES)
    except FileNotFoundError:
        return ()
    return decode_log(data)


def store_log(path: Path, records: Sequence[EventRecord]) -> None:
    """Replace the log with ``records`` in the line form (converting an older array log)."""
    atomic_write(path, b"".join(encode_line(r) for r in records), mode=0o600)


def replay(records: Sequence[EventRecord], pcr: int, alg: str) -> bytes:
    """The value ``pcr`` holds in bank ``alg`` after the records, starting from zeros."""
    value = bytes(DIGEST_SIZES[alg])
    for record in records:
        if record.pcr != pcr:
            continue
        if alg not in dict(record.digests):
            raise ValueError(f"record {record.recnum} has no {alg} digest")
        value = hashlib.new(alg, value + record.digest(alg)).digest()
    return value
