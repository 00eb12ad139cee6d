"""Ninth red-team pass: ``rkt image list``'s row decoding and its drop for good (issue #14's
table of rows, 2026-12-03), attacked as a real member of group rkt (``trustd-it-user``,
through an unprivileged ``/bin/sh``).

Each test makes the attack, then asserts what trustd guarantees, counting outcomes (never
timing them; a timeout only turns a hang into a failure). The docstrings say what was wrong.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ConfigDirs
from tests.integration._attacker import member
from tests.integration.conftest import rkt
from tests.integration.test_image_list_drop import SPY
from trustd.unprivileged.privsep import fetch_identity

_SQL = (
    "import sqlite3, sys\n"
    "sqlite3.connect(sys.argv[1], isolation_level=None).execute(sys.argv[2], sys.argv[3:])"
)
_DIGEST = hashlib.sha512(b"red team 9").hexdigest()
_KEY = f"sha512-{_DIGEST[:64]}"


def _sql(dirs: ConfigDirs, statement: str, *params: str) -> None:
    """As the member: ``statement`` on the group's index."""
    member(
        "/usr/bin/python3", "-c", _SQL, str(dirs.data / "cas/db/index.sqlite"), statement, *params
    )


def _plant_row(dirs: ConfigDirs, column: str, value: str) -> None:
    """As the member: a copy of the stored row under another key, ``column`` set to the SQL
    expression ``value``."""
    _sql(
        dirs,
        "INSERT INTO images SELECT ?, ?, name, labels, import_time, last_used, size, "
        "uncompressed_size, source, provenance FROM images LIMIT 1",
        _KEY,
        _DIGEST,
    )
    _sql(dirs, f"UPDATE images SET {column} = {value} WHERE key = ?", _KEY)  # noqa: S608 - the attack


def _spied_list(
    dirs: ConfigDirs, *form: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Root's ``rkt image list`` with the drop spied on (test_image_list_drop's spy)."""
    done = subprocess.run(
        [sys.executable, "-c", SPY, *dirs.flags(), *form],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    spied = json.loads(done.stderr.rpartition("SPY ")[2])
    assert spied["uid"] == fetch_identity().uid  # it did drop, for good
    return done, spied


_PROVENANCE = {"signers": [], "insecure": True, "verified_at": "x"}
# What the member stores in one column of a row (an SQL expression), and what it did
# before red team 9 (every image hidden, or an internal error, from one row).
HOSTILE_ROWS = {
    # a REAL infinity in an INTEGER column: int() raised OverflowError, an internal error
    "size-infinity": ("size", "9e999"),
    "uncompressed-size-infinity": ("uncompressed_size", "9e999"),
    # JSON nested past the recursion limit: RecursionError failed the whole listing
    "labels-nested-deep": ("labels", "'" + "[" * 100_000 + "'"),
    "provenance-nested-deep": ("provenance", "'" + "[" * 100_000 + "'"),
    # a time without an offset: comparing or subtracting it from the clock raised TypeError
    "import-time-naive": ("import_time", "'2024-01-01T00:00:00'"),
    # a time whose local rendering leaves datetime's range: --full raised OverflowError
    "last-used-year-one": ("last_used", "'0001-01-01T00:00:00+23:59'"),
    # a BLOB name: --sort=name compared bytes with str (TypeError)
    "name-blob": ("name", "X'41'"),
    # a BLOB source: --format=json could not serialize it (TypeError)
    "source-blob": ("source", "X'41'"),
    # BLOB JSON texts (json.loads takes UTF-16/32 bytes): taken, now refused as not text
    "labels-utf16-blob": ("labels", "X'" + '[["version", "1"]]'.encode("utf-16").hex() + "'"),
    "provenance-utf32-blob": (
        "provenance",
        "X'" + json.dumps(_PROVENANCE).encode("utf-32").hex() + "'",
    ),
    # TEXT that is not UTF-8: sqlite3's cursor raised, failing the whole read
    "name-not-utf8": ("name", "CAST(X'ff' AS TEXT)"),
    # a negative size (ImageRecord.from_json refuses it; the row decoder took it)
    "size-negative": ("size", "-5"),
}
FORMS = [
    ["image", "list"],
    ["image", "list", "--full"],
    ["image", "list", "--sort=name"],
    ["image", "list", "--sort=importtime", "--order=desc"],
    ["image", "list", "--format=json"],
]


@pytest.mark.parametrize("hostile", sorted(HOSTILE_ROWS))
def test_a_hostile_index_row_is_skipped_with_a_warning_by_every_listing(
    image: str, shared_dirs: ConfigDirs, hostile: str
) -> None:
    """A row whose value is of a type or range the writer never stores made root's dropped
    ``rkt image list`` fail outright (exit 254, every image hidden, an internal error whose
    report then loaded ``traceback`` after the drop), not skip that row with the warning the
    decoder promises. Each form of the listing now lists the good image, warns about the
    planted row, and loads no module after the drop; ``image gc`` (every row) goes on too."""
    _plant_row(shared_dirs, *HOSTILE_ROWS[hostile])
    for form in FORMS:
        done, spied = _spied_list(shared_dirs, *form)
        assert done.returncode == 0, (form, done.stderr)
        assert image[: len("sha512-") + 12] in done.stdout, form
        assert _KEY[:19] not in done.stdout, form  # the planted row is not shown
        assert f"warning: store index row for '{_KEY}' is corrupt" in done.stderr, form
        assert spied["late"] == [], form
    gc = rkt(shared_dirs, "image", "gc", "--grace-period=24h")
    assert gc.returncode == 0, gc.stderr
    assert image in rkt(shared_dirs, "image", "list", "--full", "--no-legend").stdout


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_a_listing_that_fails_after_its_drop_loads_no_code(
    image: str, shared_dirs: ConfigDirs, debug: bool
) -> None:
    """Reporting any failure (here a view the member put in the table's place: the schema
    script's ``CREATE INDEX`` on it fails) imported ``traceback`` and ``textwrap`` from disk
    in root's listing, after it dropped for good: the report loaded them whether or not
    ``--debug`` asked for a traceback. Now only ``--debug`` uses them, loaded before the drop."""
    _sql(shared_dirs, "ALTER TABLE images RENAME TO kept")
    _sql(shared_dirs, "CREATE VIEW images AS SELECT * FROM kept")
    flags = ["--debug"] if debug else []
    done, spied = _spied_list(shared_dirs, *flags, "image", "list")
    assert done.returncode == 254, done.stderr
    assert "list: store index" in done.stderr
    assert "views may not be indexed" in done.stderr
    assert ("Traceback (most recent call last)" in done.stderr) is debug
    assert spied["late"] == []
