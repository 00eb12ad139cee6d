"""Store hints by cause (issue #15): each SQLite failure class gets its own next step."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from trustd.shared.store._hints import denied_hint, os_hint, sqlite_hint


def _error(name: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError("boom")
    exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("SQLITE_FULL", "is full"),
        ("SQLITE_BUSY", "another rkt command"),
        ("SQLITE_CORRUPT", "move"),
        ("SQLITE_NOTADB", "move"),
        ("SQLITE_IOERR_WRITE", "disk I/O error"),  # this file system is not full
        ("SQLITE_READONLY", ""),  # rights: the caller's own case (denied_hint)
    ],
)
def test_each_sqlite_failure_has_its_own_hint(tmp_path: Path, name: str, says: str) -> None:
    path = tmp_path / "cas" / "db" / "index.sqlite"
    hint = sqlite_hint(_error(name), path, tmp_path)
    assert says in hint if says else hint == denied_hint(tmp_path)
    assert "permissions" not in hint


def test_a_real_corrupt_index_is_reported_with_its_fix(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"not a database, just text " * 200)
    with pytest.raises(sqlite3.DatabaseError) as err, sqlite3.connect(path) as conn:
        conn.execute("SELECT * FROM images")
    assert f"move {path} aside" in sqlite_hint(err.value, path, tmp_path)


def test_enospc_is_full_and_eacces_is_about_rights(tmp_path: Path) -> None:
    assert "is full" in os_hint(OSError(28, "No space left on device"), tmp_path)
    assert os_hint(OSError(13, "Permission denied"), tmp_path) == denied_hint(tmp_path)
