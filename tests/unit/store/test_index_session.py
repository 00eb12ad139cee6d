"""``Index.session``: a batch of lookups and last-use stamps on one connection, in one
transaction (issue #14: each stamp was its own commit, an fsync of the WAL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests._index import fake_index as _index
from tests._index import short_key as _key
from trustd.shared.store._index import Index


def _never(index: Index) -> list[str]:
    with sqlite3.connect(index.path) as conn:
        rows = conn.execute("SELECT key FROM images WHERE last_used = 'never' ORDER BY key")
        return [row[0] for row in rows]


def test_the_stamps_of_a_session_are_one_transaction(tmp_path: Path) -> None:
    """Another reader sees none of the stamps until the session ends, then all of them."""
    index = _index(tmp_path, 5)
    seen_inside = []
    with index.session():
        for n in range(5):
            index.touch(_key(n))
            seen_inside.append(len(_never(index)))
    assert seen_inside == [5, 5, 5, 5, 5]
    assert _never(index) == []


def test_a_session_that_fails_stamps_nothing_and_leaves_the_index_usable(
    tmp_path: Path,
) -> None:
    index = _index(tmp_path, 3)
    with pytest.raises(RuntimeError), index.session():
        index.touch(_key(0))
        index.touch(_key(1))
        raise RuntimeError("the lookup failed")
    assert len(_never(index)) == 3
    index.touch(_key(2))  # its own connection again, autocommitted
    assert _never(index) == sorted([_key(0), _key(1)])


def test_lookups_inside_a_session_see_its_own_stamps(tmp_path: Path) -> None:
    index = _index(tmp_path, 2)
    with index.session():
        index.touch(_key(1))
        with index.connect() as conn:
            used = conn.execute("SELECT last_used FROM images WHERE key = ?", (_key(1),))
            assert used.fetchone()[0] != "never"
