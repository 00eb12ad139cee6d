"""Store hints by cause (issue #15): each SQLite failure class gets its own next step."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from trustd.shared.errors import LocalStateError, domain_error
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


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_an_oserror_for_a_full_disk_is_reported_as_full_never_as_permissions(code: int) -> None:
    """issue #12: domain_error turned every OSError with a file name into "check the path
    and its permissions", which is how a full disk reached the user."""
    named = domain_error(OSError(code, os.strerror(code), "/var/lib/rkt/cas/tmp/download-x"))
    assert isinstance(named, LocalStateError)
    assert "full" in named.hint and "permission" not in named.hint
    assert "/var/lib/rkt/cas/tmp" in named.hint
    bare = domain_error(OSError(code, os.strerror(code)))
    assert isinstance(bare, LocalStateError) and "full" in bare.hint


def test_a_disk_with_no_inode_left_is_full_for_sqlite_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite says "unable to open database file" when it cannot create its journal."""
    from trustd.shared.store import _hints  # noqa: PLC0415

    monkeypatch.setattr(_hints, "disk_full", lambda _path: True)
    hint = sqlite_hint(_error("SQLITE_CANTOPEN"), tmp_path / "index.sqlite", tmp_path)
    assert "is full" in hint and f"df -h {tmp_path}" in hint
