"""A store index of fake rows, and the hostile trigger the red-team tests plant in one."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

from trustd.shared.store._index import Index

# A trigger whose body never ends (a recursive CTE without a bound) on ``{event}`` of the
# index's images (``{when}``: nothing, or ``WHEN <condition>``): it runs inside whatever
# statement of root's child meets that event.
ENDLESS_TRIGGER = """
CREATE TRIGGER endless BEFORE {event} ON images {when} BEGIN
  SELECT count(*) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
    SELECT i FROM n);
END"""


def short_key(n: int) -> str:
    """The ``n``-th fake image key (rkt's short store key: 64 hex digits)."""
    return "sha512-" + hashlib.sha512(str(n).encode()).hexdigest()[:64]


def full_key(n: int) -> str:
    """The ``n``-th fake full image ID."""
    return "sha512-" + hashlib.sha512(str(n).encode()).hexdigest()


def fake_index(
    base: Path,
    images: int,
    *,
    key: Callable[[int], str] = short_key,
    index_class: type[Index] = Index,
    trigger: str | None = None,
) -> Index:
    """An index (of ``index_class``) under ``base`` with ``images`` rows keyed ``key(n)``, last
    used 'never' (they do not decode as records: enough for what counts rows, steps and
    stamps); ``trigger``: SQL run on it after (a hostile trigger)."""
    path = base / "cas" / "db" / "index"
    path.parent.mkdir(parents=True)
    index = index_class(path)
    index.create()
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO images VALUES (?, ?, 'example.com/x', '[]', '', 'never', 0, 0, '', '{}')",
            ((key(n), key(n)) for n in range(images)),
        )
        if trigger:
            conn.execute(trigger)
    return index


def last_used(index: Index) -> dict[str, str]:
    """Every row's key and last-use stamp, read straight from the file."""
    with sqlite3.connect(index.path) as conn:
        return dict(conn.execute("SELECT key, last_used FROM images"))
