"""The images of a name, newest first, as root orders them: an image root's fetches admitted
(root's own record, pinned before the child forks) above any other, by root's time, since
the index's import times are the group's to rewrite; without a pin, by the import times."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trustd.shared.store import ImageStore
from trustd.shared.store._index import pin_fetched
from trustd.shared.store.model import ImageRecord, Provenance

NAME = "example.com/app"
T0 = datetime(2026, 12, 3, tzinfo=UTC)


def _record(version: str, imported: datetime) -> ImageRecord:
    digest = hashlib.sha512(version.encode()).hexdigest()
    return ImageRecord(
        f"sha512-{digest[:64]}",
        digest,
        NAME,
        (("version", version),),
        imported,
        imported,
        1,
        1,
        "test",
        Provenance((), insecure=True, verified_at=imported.isoformat()),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    made = ImageStore.open(tmp_path / "data", create=True)
    # 1.0 made the newest by its row's import time (what a member can write), 2.0 older
    made.index.insert(_record("1.0", T0 + timedelta(days=900)))
    made.index.insert(_record("2.0", T0))
    made.index.insert(_record("0.9", T0 - timedelta(days=1)))
    yield made
    pin_fetched({})


def test_without_roots_record_the_newest_import_is_the_names_image(store: ImageStore) -> None:
    assert store.resolve(NAME).label("version") == "1.0"


def test_roots_record_orders_the_images_root_fetched_above_the_others(store: ImageStore) -> None:
    ids = {r.label("version"): r.full_key.id for r in store.index.by_name(NAME)}
    pin_fetched({ids["0.9"]: T0 - timedelta(days=1), ids["2.0"]: T0})
    assert store.resolve(NAME).label("version") == "2.0"
    assert store.resolve(f"{NAME}:1.0").label("version") == "1.0"  # a version still names it
    ordered = sorted(store.index.by_name(NAME), key=store.index.fetch_order, reverse=True)
    assert [r.label("version") for r in ordered] == ["2.0", "0.9", "1.0"]
