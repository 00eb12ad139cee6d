"""``fetch.d`` (trustd/shared/fetch_settings.py): the throughput floor as configuration.

Table-driven: each bad file is refused at load naming the file, the field and the fix;
later directories override earlier ones; the default is the transport's (ADR 0023)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trustd.shared import fetch_settings
from trustd.shared.errors import UserError
from trustd.unprivileged.transport import IMAGE_LIMITS


def _write(directory: Path, name: str, doc: object) -> Path:
    where = directory / "fetch.d"
    where.mkdir(parents=True, exist_ok=True)
    path = where / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _doc(**fields: object) -> dict[str, object]:
    return {"rktKind": "fetch", "rktVersion": "v1", **fields}


def test_no_file_is_the_transports_default() -> None:
    settings = fetch_settings.load([Path("/nonexistent")])
    assert settings.min_rate == IMAGE_LIMITS.min_rate == (64 * 1024, 60.0)
    assert settings.as_config() is None


def test_later_directories_override_earlier_ones(tmp_path: Path) -> None:
    system, local, user = tmp_path / "s", tmp_path / "l", tmp_path / "u"
    _write(system, "a.json", _doc(minRate={"bytes": 1024, "seconds": 10}))
    last = _write(local, "b.json", _doc(minRate={"bytes": 4096, "seconds": 30}))
    _write(user, "c.json", _doc())  # sets nothing: overrides nothing
    settings = fetch_settings.load([system, local, None, user])
    assert settings.min_rate == (4096, 30.0) and settings.min_rate_from == str(last)
    assert settings.as_config() == {
        "rktVersion": "v1",
        "rktKind": "fetch",
        "minRate": {"bytes": 4096, "seconds": 30},
    }


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ("{", "not JSON"),
        ("[]", "expected a JSON object"),
        ({"rktKind": "paths", "rktVersion": "v1"}, "does not belong in fetch.d"),
        ({"rktKind": "fetch", "rktVersion": "v2"}, 'rktVersion must be "v1"'),
        (_doc(minrate={"bytes": 1, "seconds": 1}), "unknown field 'minrate'"),
        (_doc(minRate=65536), "minRate must be an object with bytes and seconds"),
        (_doc(minRate={"bytes": 1}), "minRate must be an object with bytes and seconds"),
        (_doc(minRate={"bytes": 0, "seconds": 60}), "minRate.bytes must be an integer from 1"),
        (_doc(minRate={"bytes": "64k", "seconds": 60}), "minRate.bytes must be an integer"),
        (_doc(minRate={"bytes": 1.5, "seconds": 60}), "minRate.bytes must be an integer"),
        (_doc(minRate={"bytes": True, "seconds": 60}), "minRate.bytes must be an integer"),
        (_doc(minRate={"bytes": 1 << 31, "seconds": 60}), "to 1073741824"),
        (_doc(minRate={"bytes": 1024, "seconds": 0}), "minRate.seconds must be a number from 1"),
        (_doc(minRate={"bytes": 1024, "seconds": 86400}), "to 3600, not 86400"),
        (_doc(minRate={"bytes": 1024, "seconds": None}), "minRate.seconds must be a number"),
    ],
)
def test_a_bad_file_is_refused_at_load_with_the_reason_and_the_fix(
    tmp_path: Path, doc: object, says: str
) -> None:
    path = _write(tmp_path, "floor.json", doc)
    with pytest.raises(UserError) as err:
        fetch_settings.load([tmp_path])
    assert str(path) in err.value.message and says in err.value.message, err.value.message
    assert err.value.hint.startswith("write ")  # the fix, spelled out


def test_files_that_are_not_json_by_name_are_not_read(tmp_path: Path) -> None:
    _write(tmp_path, "floor.json~", "{")
    assert fetch_settings.load([tmp_path]).min_rate == fetch_settings.DEFAULT_MIN_RATE
