"""The TCG Canonical Event Log in its JSON form (CEL-JSON): reading, writing and replay.

A log file is either a JSON array of records, or a stream of records separated by RS (0x1E,
RFC 7464 JSON text sequences) or by newlines, one record each: an append-only writer can use the
stream form. Each record has exactly ``recnum`` (its 0-based position), ``pcr``, ``digests``
(``[{"hashAlg": "sha256", "digest": "<hex>"}]``, one per bank, no bank twice), ``content_type``
and ``content``. For trustd's own content type (:mod:`trustd.shared.attest.content`) the digests are
recomputed from the content during replay; other content types are replayed as given.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import NoReturn

from trustd.shared._dataclass import frozen
from trustd.shared.attest.content import (
    TRUSTD_CONTENT_TYPE,
    Json,
    TrustdContent,
    canonical_json,
    event_digest,
    parse_trustd_content,
)
from trustd.shared.attest.errors import AttestFormatError, QuoteError
from trustd.shared.attest.model import HashAlg

PCR_COUNT = 24
_HEX = re.compile(r"[0-9a-fA-F]*")
_KEYS = {"recnum", "pcr", "digests", "content_type", "content"}

Replay = dict[HashAlg, dict[int, bytes]]


@frozen
class CelRecord:
    recnum: int
    pcr: int
    digests: tuple[tuple[HashAlg, bytes], ...]
    content_type: str
    content: Json
    trustd: TrustdContent | None = None  # parsed content when content_type is "trustd"

    def to_json(self) -> dict[str, Json]:
        return {
            "recnum": self.recnum,
            "pcr": self.pcr,
            "digests": [{"hashAlg": a.label, "digest": d.hex()} for a, d in self.digests],
            "content_type": self.content_type,
            "content": self.content,
        }


@frozen
class CelLog:
    records: tuple[CelRecord, ...]
    source: str = "CEL-JSON log"

    def to_bytes(self) -> bytes:
        """The log as a JSON array, one canonical record per line."""
        lines = [canonical_json(r.to_json()).decode() for r in self.records]
        return ("[\n" + ",\n".join(lines) + "\n]\n").encode()


def trustd_record(
    recnum: int, pcr: int, content: TrustdContent, algs: tuple[HashAlg, ...]
) -> CelRecord:
    """A trustd record whose digests are computed from ``content`` (for the measuring side)."""
    digests = tuple((alg, event_digest(content, alg)) for alg in algs)
    return CelRecord(recnum, pcr, digests, TRUSTD_CONTENT_TYPE, content.as_json(), content)


def parse_cel(data: bytes, *, source: str = "CEL-JSON log") -> CelLog:
    try:
        text = data.decode("utf-8")
        stripped = text.lstrip()
        if stripped.startswith("["):
            items = _loads(stripped)
            if not isinstance(items, list):
                raise AttestFormatError(source, "(top)", "must be a JSON array of records")
        else:
            sep = "\x1e" if "\x1e" in text else "\n"
            items = [_loads(part) for part in text.split(sep) if part.strip()]
    except UnicodeDecodeError as err:
        raise AttestFormatError(source, "(text)", f"not UTF-8: {err}") from None
    except (ValueError, RecursionError) as err:
        raise AttestFormatError(source, "(json)", f"not valid JSON: {err}") from None
    return CelLog(tuple(_record(item, i, source) for i, item in enumerate(items)), source)


def _loads(text: str) -> Json:
    return json.loads(
        text, object_pairs_hook=_no_duplicates, parse_float=_no_float, parse_constant=_no_float
    )


def _no_duplicates(pairs: list[tuple[str, Json]]) -> dict[str, Json]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("an object has a duplicate key")
    return out


def _no_float(text: str) -> NoReturn:
    raise ValueError(f"number {text} is not an integer")


def _record(item: Json, index: int, source: str) -> CelRecord:
    where = f"{source} record {index}"
    if not isinstance(item, dict) or set(item) != _KEYS:
        got = sorted(item) if isinstance(item, dict) else type(item).__name__
        raise AttestFormatError(where, "(record)", f"must have exactly {sorted(_KEYS)}: {got}")
    recnum, pcr, content_type = item["recnum"], item["pcr"], item["content_type"]
    if type(recnum) is not int or recnum != index:
        raise AttestFormatError(where, "recnum", f"{recnum!r} is not {index}: records missing")
    if type(pcr) is not int or not 0 <= pcr < PCR_COUNT:
        raise AttestFormatError(where, "pcr", f"{pcr!r} is not a PCR index 0..{PCR_COUNT - 1}")
    if not isinstance(content_type, str) or not content_type:
        raise AttestFormatError(where, "content_type", "must be a non-empty string")
    trustd = None
    if content_type == TRUSTD_CONTENT_TYPE:
        trustd = parse_trustd_content(item["content"], where)
    digests = _digests(item["digests"], where)
    return CelRecord(recnum, pcr, digests, content_type, item["content"], trustd)


def _digests(items: Json, where: str) -> tuple[tuple[HashAlg, bytes], ...]:
    if not isinstance(items, list) or not items:
        raise AttestFormatError(where, "digests", "must be a non-empty array")
    out: dict[HashAlg, bytes] = {}
    for i, entry in enumerate(items):
        field = f"digests[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"hashAlg", "digest"}:
            raise AttestFormatError(where, field, "must have exactly hashAlg and digest")
        label, hexdigest = entry["hashAlg"], entry["digest"]
        alg = HashAlg.from_label(label) if isinstance(label, str) else None
        if alg is None:
            raise AttestFormatError(where, f"{field}.hashAlg", f"unknown algorithm {label!r}")
        if alg in out:
            raise AttestFormatError(where, f"{field}.hashAlg", f"{alg.label} appears twice")
        if not isinstance(hexdigest, str) or not _HEX.fullmatch(hexdigest):
            raise AttestFormatError(where, f"{field}.digest", "must be a hex string")
        if len(hexdigest) != 2 * alg.size:
            raise AttestFormatError(
                where,
                f"{field}.digest",
                f"{len(hexdigest)} hex digits, {alg.label} has {2 * alg.size}",
            )
        out[alg] = bytes.fromhex(hexdigest)
    return tuple(out.items())


def check_record(record: CelRecord, source: str = "CEL-JSON log") -> None:
    """A trustd record's digests must be the hash of its content; raises QuoteError."""
    if record.trustd is None:
        return
    for alg, digest in record.digests:
        if not hmac.compare_digest(event_digest(record.trustd, alg), digest):
            raise QuoteError(
                "event-digest",
                f"{source} record {record.recnum} (PCR {record.pcr}, kind "
                f"{record.trustd.kind!r}): its {alg.label} digest is not the hash of its content",
            )


def replay_cel(log: CelLog) -> Replay:
    """Extend every record's digests, bank by bank, from all-zero PCRs."""
    pcrs: Replay = {}
    for record in log.records:
        check_record(record, log.source)
        for alg, digest in record.digests:
            bank = pcrs.setdefault(alg, {})
            bank[record.pcr] = alg.extend(bank.get(record.pcr, bytes(alg.size)), digest)
    return pcrs
