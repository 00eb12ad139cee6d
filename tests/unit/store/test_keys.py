"""The key grammar root takes, and index rows that do not follow it (refused, never used)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ConfigDirs
from tests.unit.store.conftest import fetch
from trustd.shared.errors import UserError
from trustd.shared.store import ImageRecord, ImageStore, StoreKey
from trustd.shared.store.model import check_index_key

DIGEST = hashlib.sha512(b"x").hexdigest()


def test_a_full_id_is_a_key() -> None:
    key = StoreKey.parse("sha512-" + DIGEST)
    assert key.digest == DIGEST
    assert key.blob_name == "sha512-" + DIGEST[:64]
    assert key.blob_relpath == f"blob/sha512/{DIGEST[:2]}/sha512-{DIGEST[:64]}"


@pytest.mark.parametrize(
    "text",
    [
        "sha512-" + DIGEST[:64],  # rkt's short store key: a prefix, not a key
        "sha512-" + DIGEST.upper(),
        "sha512-" + DIGEST + "\n",
        "sha512-" + DIGEST[:-3] + "../",
        "sha256-" + DIGEST,
        "sha512-" + "../" * 42 + "ab",
        "",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(UserError, match="not a full image ID"):
        StoreKey.parse(text)


@given(st.text(alphabet=string.printable + "/.\0é", max_size=140))
def test_a_key_is_never_a_path_with_more_than_one_component(text: str) -> None:
    try:
        key = StoreKey(text)
    except ValueError:
        return
    assert "/" not in key.id and "." not in key.id and len(key.id) == 135
    assert key.blob_relpath.split("/")[:3] == ["blob", "sha512", key.digest[:2]]


def test_index_keys_must_be_the_digests() -> None:
    assert check_index_key("sha512-" + DIGEST[:64], DIGEST).id == "sha512-" + DIGEST
    other = hashlib.sha512(b"y").hexdigest()
    for key, digest in (
        ("sha512-" + other[:64], DIGEST),
        ("sha512-../../x", DIGEST),
        ("sha512-" + DIGEST[:64], "../" + DIGEST[3:]),
        (None, DIGEST),
    ):
        with pytest.raises(ValueError):
            check_index_key(key, digest)


def test_bad_index_rows_are_skipped_with_a_warning(
    config_dirs: ConfigDirs, signed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fetch(config_dirs, str(signed))
    store = ImageStore.open(config_dirs.data)
    (record,) = store.images()
    conn = sqlite3.connect(store.layout.index)
    conn.execute(
        "INSERT INTO images SELECT 'sha512-../../../etc', digest, name, labels, import_time, "
        "last_used, size, uncompressed_size, source, provenance FROM images"
    )
    conn.commit()
    conn.close()
    assert store.images() == [record]
    assert "store index row refused: bad image key 'sha512-../../../etc'" in capsys.readouterr().err
    with pytest.raises(UserError, match="no image IDs found"):
        store.resolve("sha512-..")


def test_records_cross_from_the_unprivileged_side_strictly(
    config_dirs: ConfigDirs, signed: Path
) -> None:
    fetch(config_dirs, str(signed))
    (record,) = ImageStore.open(config_dirs.data).images()
    assert ImageRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    for bad in (
        {**record.to_json(), "key": "sha512-../../etc"},
        {**record.to_json(), "extra": 1},
        {**record.to_json(), "size": "12"},
        {**record.to_json(), "labels": [["version"]]},
        {k: v for k, v in record.to_json().items() if k != "provenance"},
        {**record.to_json(), "import_time": "2026-12-03T10:00:00"},  # naive: fails comparisons
        {**record.to_json(), "last_used": "0001-01-01T00:00:00+23:59"},  # out of range
        {**record.to_json(), "import_time": 1764756000},
    ):
        with pytest.raises(ValueError):
            ImageRecord.from_json(bad)
