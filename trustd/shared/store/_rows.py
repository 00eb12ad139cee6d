"""Index rows as records or as the table's rows: every column checked as the writer stores
it, the refused rows skipped with a warning (the group writes the index). Pure functions of
the values SQLite returns; the index itself (:mod:`trustd.shared.store._index`) reads them.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from trustd.shared._jsonexact import loads_exact
from trustd.shared.errors import LocalStateError, printable
from trustd.shared.store.model import (
    ImageRecord,
    ImageRow,
    Provenance,
    check_index_key,
    index_key_ok,
    index_time,
    provenance_text_ok,
)

_Decoded = TypeVar("_Decoded", ImageRecord, ImageRow)


# What decoding a row may raise on what the group wrote: a float infinity as a size
# (OverflowError), JSON nested past the recursion limit (RecursionError), as ValueError.
_REFUSED = (ValueError, KeyError, TypeError, OverflowError, RecursionError)


def _size(value: object) -> int:
    """A size as the writer stores it: an INTEGER, not negative (never a REAL, text or blob)."""
    if type(value) is not int or value < 0:
        raise ValueError(f"bad size {value!r:.40}")
    return value


def _plain(name: object, source: object, size: object, usize: object) -> bool:
    """:func:`_row`'s checks of the name, source and sizes, without the reason."""
    return (
        type(name) is str
        and type(source) is str
        and type(size) is int
        and type(usize) is int
        and size >= 0
        and usize >= 0
    )


def _text(value: object, what: str) -> str:
    """A TEXT column's value (a BLOB is refused: the writer stores text)."""
    if type(value) is not str:
        raise TypeError(f"{what} {value!r:.40} is not text")
    return value


def _labels(text: object) -> tuple[tuple[str, str], ...]:
    """A labels text as the writer stores it: a JSON list of [name, value] lists of strings
    (not anything that unpacks into two: ``["ab"]`` is not the label a=b, ``[[1, 2]]`` not
    "1"="2")."""
    pairs = loads_exact(_text(text, "labels"))
    if type(pairs) is not list or not all(
        type(p) is list and len(p) == 2 and type(p[0]) is str and type(p[1]) is str for p in pairs
    ):
        raise ValueError(f"labels {text!r:.40} are not [name, value] pairs of text")
    return tuple([(k, v) for k, v in pairs])


def _row(row: tuple[Any, ...]) -> ImageRecord:
    """One index row (the columns of :data:`_COLUMNS`, in order) as a record, every field
    checked (each of the type the writer stores); a plain tuple and one pass (issue #14:
    ``rkt image list`` of 10,000 images)."""
    key, digest, name, labels, imported, used, size, usize, source, provenance = row
    if not index_key_ok(key, digest):
        try:
            check_index_key(key, digest)  # the exact reason
        except ValueError as exc:
            raise LocalStateError(
                f"store index row refused: {exc}",
                hint="a member of group rkt wrote it; remove it: rkt image gc, or fetch again",
            ) from exc
    try:
        return ImageRecord(
            key,
            digest,
            _text(name, "name"),
            _labels(labels),
            index_time(imported),
            index_time(used),
            _size(size),
            _size(usize),
            _text(source, "source"),
            Provenance.from_json(loads_exact(_text(provenance, "provenance"))),
        )
    except _REFUSED as exc:
        raise LocalStateError(
            f"store index row for {key!r} is corrupt: {exc}",
            hint="remove the image with rkt image rm and fetch it again",
        ) from exc


def _valid(
    rows: Iterable[tuple[Any, ...]], row: Callable[[tuple[Any, ...]], _Decoded]
) -> list[_Decoded]:
    """The rows that decode; a refused one is skipped with a warning (never used).

    The cyclic collector is paused meanwhile: decoding makes no cycles, only objects the
    caller keeps (rows, labels, JSON values), which each collection would walk again, about
    a tenth of ``rkt image list``'s time at 10,000 images (issue #14)."""
    out, refused = [], []
    paused = gc.isenabled()
    gc.disable()
    try:
        for values in rows:
            try:
                out.append(row(values))
            except LocalStateError as exc:
                refused.append(exc.message)
    finally:
        if paused:
            gc.enable()
    for message in refused:  # once the read is done: a read made again warns once
        # the message may quote the row (a provenance field's name): the group's text
        print(f"warning: {printable(message)}", file=sys.stderr)
    return out


def _decoder() -> Callable[[tuple[Any, ...]], ImageRecord]:
    """:func:`_row` for many rows, each labels and provenance text decoded once: the two are
    pure functions of their text, and rows repeat them (issue #14: ``rkt image list`` of
    10,000 images). A row whose texts were not seen before, or that fails anywhere, goes
    through :func:`_row` itself, so what is taken and what is refused (with which reason)
    is exactly what :func:`_row` decides; only a text that decoded is remembered."""
    labels_seen: dict[str, tuple[tuple[str, str], ...]] = {}
    provenance_seen: dict[str, Provenance] = {}

    def row(values: tuple[Any, ...]) -> ImageRecord:
        key, digest, name, labels, imported, used, size, usize, source, provenance = values
        if type(labels) is not str or type(provenance) is not str:
            return _row(values)
        shown = labels_seen.get(labels)
        why = provenance_seen.get(provenance)
        if (
            shown is None
            or why is None
            or not index_key_ok(key, digest)
            or not _plain(name, source, size, usize)
        ):
            record = _row(values)  # decodes both texts, or raises as it always did
            labels_seen[labels], provenance_seen[provenance] = record.labels, record.provenance
            return record
        try:
            return ImageRecord(
                key,
                digest,
                name,
                shown,
                index_time(imported),
                index_time(used),
                size,
                usize,
                source,
                why,
            )
        except _REFUSED:
            return _row(values)  # raises with the reason, as it always did

    return row


def _shown(record: ImageRecord) -> ImageRow:
    return ImageRow(
        record.key,
        record.name,
        record.labels,
        record.import_time,
        record.last_used,
        record.size,
        record.source,
    )


def _table_decoder() -> Callable[[tuple[Any, ...]], ImageRow]:
    """One row as the table shows it (:class:`ImageRow`), taken or refused exactly as
    :func:`_row` takes or refuses it, without building the record: a provenance text of the
    writer's own grammar (:func:`provenance_text_ok`) is known to decode, so it is not
    decoded; each labels text is decoded once. A row that is not plainly good in every field
    goes through :func:`_row` itself, which takes it or raises with the reason."""
    labels_seen: dict[str, tuple[tuple[str, str], ...]] = {}

    def row(values: tuple[Any, ...]) -> ImageRow:
        key, digest, name, labels, imported, used, size, usize, source, provenance = values
        shown = labels_seen.get(labels) if type(labels) is str else None
        if (
            shown is None
            or not provenance_text_ok(provenance)
            or not index_key_ok(key, digest)
            or not _plain(name, source, size, usize)  # usize too, though the table hides it
        ):
            record = _row(values)
            labels_seen[labels] = record.labels  # _row took it: text
            return _shown(record)
        try:
            return ImageRow(key, name, shown, index_time(imported), index_time(used), size, source)
        except _REFUSED:
            return _shown(_row(values))  # raises with the reason, as it always did

    return row
