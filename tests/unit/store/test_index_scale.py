"""The store index's key-prefix lookup is a range on the key's index (issue #14): the work
SQLite does for one lookup (its VM steps, counted) does not grow with the number of images."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests._index import fake_index
from tests._index import full_key as _key
from trustd.shared.store._index import Index


class CountingIndex(Index):
    """The real index; each connection counts SQLite's VM steps (every 10)."""

    steps = 0

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        with super().connect() as conn:

            def tick() -> int:
                CountingIndex.steps += 1
                return 0

            conn.set_progress_handler(tick, 10)
            yield conn


def _index(tmp_path: Path, images: int) -> CountingIndex:
    index = fake_index(tmp_path / f"index-{images}", images, key=_key, index_class=CountingIndex)
    assert isinstance(index, CountingIndex)
    return index


def _lookup_steps(index: CountingIndex, prefix: str) -> tuple[int, int]:
    CountingIndex.steps = 0
    found = index.by_key_prefix(prefix)  # the rows do not decode as records: counted, skipped
    return CountingIndex.steps, len(found)


def test_a_prefix_lookup_does_the_same_work_at_100_and_10000_images(tmp_path: Path) -> None:
    small, large = _index(tmp_path, 100), _index(tmp_path, 10_000)
    prefix = _key(42)[:20]
    small_steps, _ = _lookup_steps(small, prefix)
    large_steps, _ = _lookup_steps(large, prefix)
    assert large_steps <= 2 * small_steps + 5, (small_steps, large_steps)


def test_the_range_finds_exactly_the_keys_with_the_prefix(tmp_path: Path) -> None:
    index = _index(tmp_path, 300)
    with sqlite3.connect(index.path) as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM images")]
        for prefix in ("sha512-", _key(7)[:8], _key(7)[:9], _key(7), "sha512-g", "sha511"):
            rows = conn.execute(
                "SELECT key FROM images WHERE key >= ? AND key < ?",
                (prefix, prefix + "\U0010ffff"),
            )
            assert sorted(k for (k,) in rows) == sorted(k for k in keys if k.startswith(prefix))
