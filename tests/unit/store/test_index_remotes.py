"""The index's record of a fetched URL (``remotes``) is the group's to write: a row that is
not one the fetch writes is said and ignored (the URL is fetched as if new), never an
internal error in the fetch; a max-age past 2**31 seconds is taken as 2**31 (RFC 9111).
Root's fetch child answers from root's pinned record; a key lookup compares the answered
keys again (a view answers other rows than it matched)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trustd.shared.store import ImageStore
from trustd.shared.store.model import Provenance

URL = "https://example.com/app.aci"
KEY = "sha512-" + hashlib.sha512(b"app").hexdigest()[:64]
WHEN = datetime(2026, 12, 3, tzinfo=UTC).isoformat()
_PROVENANCE = json.dumps(Provenance((), insecure=True, verified_at=WHEN).to_json())


def _index(tmp_path: Path) -> tuple[ImageStore, Path]:
    store = ImageStore.open(tmp_path / "data", create=True)
    return store, store.index.path


def _write(db: Path, *values: object) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT OR REPLACE INTO remotes VALUES (?,?,?,?,?)", (URL, *values))


def test_a_row_the_fetch_wrote_is_read_back(tmp_path: Path) -> None:
    store, _ = _index(tmp_path)
    store.index.set_remote(URL, KEY, '"v1"', 60)
    key, etag, max_age, when = store.index.remote(URL) or ("", None, None, None)
    assert (key, etag, max_age) == (KEY, '"v1"', 60)
    assert when is not None and when.tzinfo is not None


def test_a_max_age_past_2_to_the_31_is_taken_as_2_to_the_31(tmp_path: Path) -> None:
    store, db = _index(tmp_path)
    _write(db, KEY, None, 10**18, WHEN)
    assert store.index.remote(URL) == (KEY, None, 1 << 31, datetime.fromisoformat(WHEN))


@pytest.mark.parametrize(
    ("key", "etag", "max_age", "when", "why"),
    [
        ("", None, None, WHEN, "bad image key"),  # a prefix of every key
        ("sha512-", None, None, WHEN, "bad image key"),
        (7, None, None, WHEN, "bad image key"),
        (KEY.upper(), None, None, WHEN, "bad image key"),
        # (the columns' affinities turn 5 into '5' for the texts and '60' into 60 for the count)
        (KEY, b"v1", None, WHEN, "ETag is not text"),
        (KEY, None, "sixty", WHEN, "max-age is not a count"),
        (KEY, None, -1, WHEN, "max-age is not a count"),
        (KEY, None, 1.5, WHEN, "max-age is not a count"),
        (KEY, None, None, "yesterday", "Invalid isoformat"),
        (KEY, None, None, WHEN.encode(), "argument must be str"),
        (KEY, None, None, "2026-12-03T00:00:00", "no zone"),
        (KEY, None, 1 << 31, "9999-12-31T23:59:59+00:00", "out of range"),  # + max-age
        (KEY, None, None, "0001-01-01T00:00:00+23:59", "out of range"),
    ],
)
def test_a_row_the_fetch_does_not_write_is_ignored_with_the_reason(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: object,
    etag: object,
    max_age: object,
    when: object,
    why: str,
) -> None:
    store, db = _index(tmp_path)
    _write(db, key, etag, max_age, when)
    assert store.index.remote(URL) is None
    err = capsys.readouterr().err
    assert f"the store index's record of {URL} is ignored" in err
    assert why in err


def test_a_pinned_index_answers_from_roots_record_and_reports_what_it_records(
    tmp_path: Path,
) -> None:
    """Root's fetch child: ``remote`` reads only the pinned record (the group's table may say
    anything), ``set_remote`` writes the table and reports the record for root to keep."""
    store, db = _index(tmp_path)
    roots = (KEY, '"v1"', 60, datetime.fromisoformat(WHEN))
    other = "sha512-" + hashlib.sha512(b"other").hexdigest()[:64]
    _write(db, other, '"v2"', None, WHEN)  # what a member put in the table
    store.index.pin_remotes({URL: roots})
    assert store.index.remote(URL) == roots
    assert store.index.remote("https://example.com/unknown.aci") is None
    store.index.set_remote("https://example.com/new.aci", other, None, 5)
    ((url, (key, etag, max_age, when)),) = store.index.remote_updates
    assert (url, key, etag, max_age) == ("https://example.com/new.aci", other, None, 5)
    assert store.index.remote(url) == (key, etag, max_age, when)
    with sqlite3.connect(db) as conn:
        written = conn.execute("SELECT key FROM remotes WHERE url = ?", (url,)).fetchone()
    assert written == (other,)


def test_a_view_that_answers_another_row_than_it_matched_answers_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Red teams 4 and 10: a view in the table's place evaluates its key column anew for the
    answer, so the row SQLite matched by the prefix need not be the row it answers; each
    answered key is compared with the prefix again. (The view answers the other image's own
    row a quarter of the time.)"""
    store, db = _index(tmp_path)
    rows = []
    for name in (b"victim", b"other"):
        digest = hashlib.sha512(name).hexdigest()
        rows.append((f"sha512-{digest[:64]}", digest))
    (victim, _), (other, _) = rows
    with sqlite3.connect(db) as conn:
        for key, digest in rows:
            conn.execute(
                "INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?)",
                (key, digest, "n", "[]", WHEN, WHEN, 1, 1, "s", _PROVENANCE),
            )
        cols = "digest, name, labels, import_time, last_used, size, uncompressed_size, source"
        view = (  # the test's own keys (hex)
            "ALTER TABLE images RENAME TO images_real; "  # noqa: S608
            "CREATE VIEW images AS SELECT CASE WHEN abs(random()) % 4 < 3 "
            f"THEN '{victim}' ELSE key END AS key, {cols}, provenance "
            f"FROM images_real WHERE key = '{other}';"
        )
        conn.executescript(view)
    answered = [r.key for _ in range(60) for r in store.index.by_key_prefix(victim)]
    assert other not in answered
    capsys.readouterr()
