"""The store index: SQLite in WAL mode under ``cas/db``, one connection per operation, or
one connection and one transaction for a batch of them (:meth:`Index.session`)."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustd.shared.errors import LocalStateError, printable
from trustd.shared.store._hints import sqlite_hint
from trustd.shared.store._rows import _Decoded, _decoder, _row, _table_decoder, _valid
from trustd.shared.store.model import ImageRecord, ImageRow, RemoteRecord, remote_record

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    key TEXT PRIMARY KEY, digest TEXT NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL,
    import_time TEXT NOT NULL, last_used TEXT NOT NULL, size INTEGER NOT NULL,
    uncompressed_size INTEGER NOT NULL, source TEXT NOT NULL, provenance TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS images_name ON images(name);
CREATE TABLE IF NOT EXISTS remotes (
    url TEXT PRIMARY KEY, key TEXT NOT NULL, etag TEXT, max_age INTEGER, download_time TEXT
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""
# The most SQLite virtual-machine steps one connection may take: listing 100,000 images takes
# ~1.2 million, a hostile trigger's endless recursion a billion in ~12 s on a 2-vCPU VM. The
# group writes the index, so a member's trigger on ``images`` runs inside whatever statement
# of root's child meets it (rm's DELETE, a fetch's INSERT, gc's UPDATE); past this budget the
# statement is interrupted, its transaction rolled back, and the operation refused.
MAX_INDEX_STEPS = 1 << 30
# Steps are not all alike: one ``randomblob(100000000)`` is one step of ~0.2 s, so a trigger
# looping over it took years within the step budget (red team 8). So the thread's CPU time
# is budgeted too (time the process waited is not counted) and looked at every few steps; no
# value may exceed what the index needs (labels from a manifest of at most 1 MiB, JSON with
# non-ASCII escaped: at most 3x), and no LIKE/GLOB pattern what it uses (none), which bounds
# most single steps to milliseconds. Not all: replace() and instr() compare in O(n*m), so one
# step can still take minutes; the child that meets the index has a deadline for those.
MAX_INDEX_CPU_SECONDS = 30.0
MAX_INDEX_VALUE = 4 << 20
_MAX_PATTERN = 64
_STEPS_PER_CALL = 100


def _bounded(conn: sqlite3.Connection) -> Callable[[], bool]:
    """Install the step and CPU budgets on ``conn``; the returned callable says whether one
    ran out."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_INDEX_VALUE)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, _MAX_PATTERN)
    calls, spent = [0], [False]
    limit = MAX_INDEX_STEPS // _STEPS_PER_CALL
    until = time.thread_time() + MAX_INDEX_CPU_SECONDS

    def progress() -> int:
        calls[0] += 1
        spent[0] = spent[0] or calls[0] > limit or time.thread_time() > until
        return spent[0]

    conn.set_progress_handler(progress, _STEPS_PER_CALL)
    return lambda: spent[0]


def _budget_spent(path: Path) -> LocalStateError:
    return LocalStateError(
        f"store index {path}: an operation ran past {MAX_INDEX_STEPS} SQLite steps or "
        f"{MAX_INDEX_CPU_SECONDS:g} s of CPU and was stopped; nothing it did was kept",
        hint="a member of group rkt may have made the index compute for ever (a trigger of "
        f"theirs); look: sqlite3 {path} .schema, and drop what trustd did not make",
    )


# Above every character a key can hold after a prefix (keys are ASCII; SQLite compares
# TEXT by its UTF-8 bytes, and U+10FFFF's are above any ASCII byte).
_TOP = "\U0010ffff"
_COLUMNS = (
    "key, digest, name, labels, import_time, last_used, size, uncompressed_size, source, provenance"
)


# sqlite3's error for a TEXT value that is not UTF-8: raised by the cursor, it failed the
# whole read (every image hidden from rkt image list by one row; red team 9).
_UNDECODABLE = "Could not decode to UTF-8"


def _text_or_blob(data: bytes) -> str | bytes:
    """A TEXT value as text, or as its bytes when they are not UTF-8: a BLOB to the decoder,
    which refuses that one row ("is not text")."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def _decoded(
    conn: sqlite3.Connection,
    make: Callable[[], Callable[[tuple[Any, ...]], _Decoded]],
    sql: str,
    params: tuple[Any, ...] = (),
) -> list[_Decoded]:
    """:func:`_valid` of ``sql``'s rows through a fresh ``make()``; when a TEXT value is not
    UTF-8, read again with such values as bytes (sqlite3's own decoding, in C, serves every
    index whose text is UTF-8: issue #14)."""
    try:
        return _valid(_tuples(conn, sql, params), make())
    except sqlite3.OperationalError as exc:
        if _UNDECODABLE not in str(exc):
            raise
    conn.text_factory = _text_or_blob
    try:
        return _valid(_tuples(conn, sql, params), make())
    finally:
        conn.text_factory = str


def _tuples(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
    """``sql``'s rows as plain tuples (``sqlite3.Row`` costs a lookup per field)."""
    cur = conn.cursor()
    cur.row_factory = None
    return cur.execute(sql, params)


# Root's own record of the images its fetches admitted (full ID -> when), pinned by root
# before it forks a child that reads the index (:func:`pin_fetched`); empty otherwise.
_ROOT_FETCHED: dict[str, datetime] = {}


def pin_fetched(fetched: dict[str, datetime]) -> None:
    """Order the images of a name by ``fetched`` in every index of this process (and of the
    children it forks), not by the rows' import times, which the group writes: a member made
    an old, vulnerable release of a name the newest, and root ran it (red team)."""
    _ROOT_FETCHED.clear()
    _ROOT_FETCHED.update(fetched)


class Index:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._session: sqlite3.Connection | None = None
        self._pinned: dict[str, RemoteRecord] | None = None
        self.remote_updates: list[tuple[str, RemoteRecord]] = []

    def pin_remotes(self, records: dict[str, RemoteRecord]) -> None:
        """Answer :meth:`remote` from ``records`` alone, never from the ``remotes`` table:
        root's fetch child is given root's own record of the URLs root fetched, since the
        table is the group's to rewrite (a member pointed a URL at another signed image).
        :meth:`set_remote` still writes the table, and keeps each record in
        :attr:`remote_updates` for root to add to its own."""
        self._pinned = dict(records)

    @staticmethod
    def fetch_order(record: ImageRecord) -> tuple[bool, datetime]:
        """The key that sorts the images of one name oldest to newest: an image root's
        fetches admitted (:func:`pin_fetched`) above any other, by root's time; the others
        by the row's import time."""
        when = _ROOT_FETCHED.get(record.full_key.id)
        return (True, when) if when is not None else (False, record.import_time)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Every operation inside on one connection and in one write transaction, committed
        at the end (rolled back on an error): ``rkt run``'s lookups and last-use stamps cost
        one open and one commit (one fsync of the WAL), not one each (issue #14). The write
        lock is taken at the start (``BEGIN IMMEDIATE``), so a stamp after a read never
        meets a snapshot another writer made stale; the busy timeout waits for the lock."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            self._session = conn
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._session = None
            conn.execute("COMMIT")

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        if self._session is not None:
            yield self._session  # errors are translated by the session's own connect
            return
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise LocalStateError(
                f"cannot open store index {self.path}: {printable(str(exc))}",
                hint=sqlite_hint(exc, self.path, self.path.parents[2]),
            ) from exc
        conn.row_factory = sqlite3.Row
        spent = _bounded(conn)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            yield conn
        except sqlite3.Error as exc:
            if spent():
                raise _budget_spent(self.path) from exc
            raise LocalStateError(
                # a trigger the group made there raises the text it chose (red team 6, I)
                f"store index {self.path}: {printable(str(exc))}",
                hint=sqlite_hint(exc, self.path, self.path.parents[2]),  # <dir>/cas/db/index
            ) from exc
        finally:
            conn.close()

    def create(self) -> None:
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def insert(self, record: ImageRecord) -> bool:
        """Add ``record``; False when the key is already indexed (another fetch won)."""
        values = (
            record.key,
            record.digest,
            record.name,
            json.dumps(list(record.labels)),
            record.import_time.isoformat(),
            record.last_used.isoformat(),
            record.size,
            record.uncompressed_size,
            record.source,
            json.dumps(record.provenance.to_json()),
        )
        with self.connect() as conn:
            cur = conn.execute(
                f"INSERT OR IGNORE INTO images ({_COLUMNS}) "  # noqa: S608
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                values,
            )
            return cur.rowcount == 1

    def all(self) -> list[ImageRecord]:
        with self.connect() as conn:
            return _decoded(conn, _decoder, f"SELECT {_COLUMNS} FROM images")  # noqa: S608

    def table(self) -> list[ImageRow]:
        """Every row that decodes, as ``rkt image list``'s table shows it: refused or taken,
        with the same warning, exactly as :meth:`all` refuses or takes it."""
        with self.connect() as conn:
            return _decoded(conn, _table_decoder, f"SELECT {_COLUMNS} FROM images")  # noqa: S608

    def by_key_prefix(self, prefix: str) -> list[ImageRecord]:
        """Rows whose key starts with ``prefix``: a range on the key's index (O(log n) plus
        the matches, issue #14), each also compared exactly, in SQL and again here: a view
        the group put in the table's place evaluates its columns anew for the answer, so
        the row that matched need not be the row answered (red teams 4 and 10)."""
        with self.connect() as conn:
            found = _decoded(
                conn,
                lambda: _row,
                f"SELECT {_COLUMNS} FROM images "  # noqa: S608
                "WHERE key >= ? AND key < ? AND substr(key, 1, ?) = ?",
                (prefix, prefix + _TOP, len(prefix), prefix),
            )
        return [r for r in found if r.key.startswith(prefix)]

    def by_name(self, name: str) -> list[ImageRecord]:
        """Rows of ``name`` (compared again here, as :meth:`by_key_prefix` compares keys)."""
        with self.connect() as conn:
            found = _decoded(
                conn,
                lambda: _row,
                f"SELECT {_COLUMNS} FROM images WHERE name = ?",  # noqa: S608
                (name,),
            )
        return [r for r in found if r.name == name]

    def delete(self, key: str) -> None:
        with self.connect() as conn:
            conn.execute("DELETE FROM images WHERE key = ?", (key,))
            conn.execute("DELETE FROM remotes WHERE key = ?", (key,))

    def touch(self, key: str) -> None:
        with self.connect() as conn:
            conn.execute(
                "UPDATE images SET last_used = ? WHERE key = ?",
                (datetime.now(UTC).isoformat(), key),
            )

    def set_remote(self, url: str, key: str, etag: str | None, max_age: int | None) -> None:
        now = datetime.now(UTC)
        with self.connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO remotes VALUES (?,?,?,?,?)",
                (url, key, etag, max_age, now.isoformat()),
            )
        if self._pinned is not None:
            record = (key, etag, max_age, now)
            self._pinned[url] = record
            self.remote_updates.append((url, record))

    def remote(self, url: str) -> RemoteRecord | None:
        """What the last fetch of ``url`` recorded: its key, ETag, max-age and time; None
        when nothing was, or when the row is not one the fetch writes (the group writes the
        index: a key that is not an image key, a mistyped field, a time that does not parse),
        which is then said and ignored, and the URL fetched as if new. Pinned
        (:meth:`pin_remotes`): the pinned record, the table unread."""
        if self._pinned is not None:
            return self._pinned.get(url)
        with self.connect() as conn:
            row = conn.execute(
                "SELECT key, etag, max_age, download_time FROM remotes WHERE url = ?", (url,)
            ).fetchone()
        if row is None:
            return None
        try:
            return remote_record(row["key"], row["etag"], row["max_age"], row["download_time"])
        except (ValueError, TypeError) as exc:
            print(
                f"warning: the store index's record of {printable(url)} is ignored: "
                f"{printable(str(exc))}",
                file=sys.stderr,
            )
            return None
