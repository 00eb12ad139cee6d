"""Keystore.preload(): root reads every key before its fetch child drops privileges.

The preloaded view must answer exactly as reading the directories would, follow root's own
add and remove, and keep answering after the directories became unreadable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ConfigDirs, Keys
from tests.unit.keystore.test_keystore import fingerprints, place
from trustd.shared.appc import ACIdentifier
from trustd.shared.keystore import Keystore
from trustd.shared.verify import parse_public_keys

NAMES = ("example.com/app", "example.com/app/sub", "example.com/other", "acme.org/x")


def _layout(dirs: ConfigDirs, keys: Keys) -> None:
    place(dirs.system, None, keys.rsa, keys.public(keys.rsa))
    place(dirs.system, "example.com", keys.good, keys.public(keys.good))
    place(dirs.local, "example.com", keys.good, b"")  # masks the system key
    place(dirs.local, "example.com/app", keys.with_sub, keys.public(keys.with_sub))
    place(dirs.local, "example.com/app", "0" * 40, b"not a key")  # reported, skipped


def test_preloaded_answers_as_the_directories_do(config_dirs: ConfigDirs, keys: Keys) -> None:
    _layout(config_dirs, keys)
    plain = Keystore(config_dirs.system, config_dirs.local)
    loaded = Keystore(config_dirs.system, config_dirs.local)
    loaded.preload()
    for name in NAMES:
        assert fingerprints(loaded, name) == fingerprints(plain, name), name
    assert sorted(f.path for f in loaded.entries()) == sorted(f.path for f in plain.entries())
    ring = loaded.keyring_for(ACIdentifier("example.com/app"))
    assert ring.problems == plain.keyring_for(ACIdentifier("example.com/app")).problems
    assert any("0" * 40 in problem for problem in ring.problems)


def test_preloaded_view_survives_unreadable_dirs(config_dirs: ConfigDirs, keys: Keys) -> None:
    """What the fetch child sees: root's 0700 config dirs, but root's keys in memory."""
    _layout(config_dirs, keys)
    loaded = Keystore(config_dirs.system, config_dirs.local)
    loaded.preload()
    expected = fingerprints(loaded, "example.com/app")
    gone = Path(str(config_dirs.local) + ".moved")
    config_dirs.local.rename(gone)
    try:
        assert fingerprints(loaded, "example.com/app") == expected
        assert keys.with_sub.lower() in expected
    finally:
        gone.rename(config_dirs.local)


def test_add_and_remove_update_the_preloaded_view(config_dirs: ConfigDirs, keys: Keys) -> None:
    loaded = Keystore(config_dirs.system, config_dirs.local)
    loaded.preload()
    assert fingerprints(loaded, "example.com/new") == set()
    key = parse_public_keys(keys.public(keys.good), source="good")[0]
    loaded.add(key, ACIdentifier("example.com/new"))
    assert fingerprints(loaded, "example.com/new") == {keys.good.lower()}
    loaded.remove(keys.good, ACIdentifier("example.com/new"))
    assert fingerprints(loaded, "example.com/new") == set()


@pytest.mark.parametrize("scope", [None, "example.com"])
def test_a_key_added_behind_the_preload_is_not_seen(
    config_dirs: ConfigDirs, keys: Keys, scope: str | None
) -> None:
    """The view is the one root read: a file planted later does not join it."""
    loaded = Keystore(config_dirs.system, config_dirs.local)
    loaded.preload()
    place(config_dirs.local, scope, keys.good, keys.public(keys.good))
    assert fingerprints(loaded, "example.com/app") == set()
