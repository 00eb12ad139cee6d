"""Root's own records (``<dir>/private/remotes.json``, ``fetched.json``): bounded on write,
and never a reason to stop a fetch on read (red team 10)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ConfigDirs
from trustd.privileged.treestore import datadir
from trustd.privileged.treestore.datadir import open_data_dir, record_remotes, root_remotes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root's data dir needs root")
KEY = "sha512-" + "a" * 64
T0 = datetime(2026, 12, 3, tzinfo=UTC)


def test_a_url_or_etag_past_its_cap_is_not_recorded(config_dirs: ConfigDirs) -> None:
    with open_data_dir(config_dirs.data) as data:
        record_remotes(
            data,
            [
                ("https://a/x.aci", (KEY, "e" * 2000, None, T0)),
                ("https://a/" + "u" * 9000, (KEY, '"e"', None, T0)),
                ("https://a/ok.aci", (KEY, '"e"', 60, T0)),
            ],
        )
        assert root_remotes(data) == {"https://a/ok.aci": (KEY, '"e"', 60, T0)}


def test_the_file_stays_within_what_its_reader_takes_keeping_the_newest(
    config_dirs: ConfigDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datadir, "_RECORD_MAX", 2000)
    updates = [
        (f"https://a/{n}.aci", (KEY, f'"{n}"', None, T0 + timedelta(seconds=n))) for n in range(100)
    ]
    with open_data_dir(config_dirs.data) as data:
        record_remotes(data, updates)
        size = (config_dirs.data / "private" / datadir.REMOTES).stat().st_size
        kept = root_remotes(data)
    assert size <= 2000
    assert 0 < len(kept) < 100
    assert set(kept) == {f"https://a/{n}.aci" for n in range(100 - len(kept), 100)}


def test_a_record_root_cannot_read_is_said_and_taken_as_none(
    config_dirs: ConfigDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_data_dir(config_dirs.data) as data:
        big = f'{{"https://a/x.aci": ["{KEY}", "{"e" * (5 << 20)}", null, "{T0.isoformat()}"]}}'
        (config_dirs.data / "private" / datadir.REMOTES).write_text(big)  # an older trustd's
        assert root_remotes(data) == {}
        assert "remotes.json" in capsys.readouterr().err
        record_remotes(data, [("https://a/new.aci", (KEY, None, None, T0))])  # starts again
        assert set(root_remotes(data)) == {"https://a/new.aci"}


def test_the_images_of_one_fetch_never_tie_the_first_the_newest(config_dirs: ConfigDirs) -> None:
    """Red team 11: an image and a dependency of its own name admitted by one fetch tied, and
    the index's order (the group's) then chose between them."""
    ids = [f"sha512-{c * 128}" for c in "abc"]
    with open_data_dir(config_dirs.data) as data:
        datadir.record_fetched(data, [*ids, "not an ID"], T0)
        fetched = datadir.root_fetched(data)
    assert sorted(fetched, key=fetched.__getitem__, reverse=True) == ids
    assert fetched[ids[0]] == T0
