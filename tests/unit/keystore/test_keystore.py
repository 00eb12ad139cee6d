"""Keystore behaviour: whole-segment prefixes, masking, broken files, add and remove."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ConfigDirs, Keys, snapshot
from trustd.shared.appc import ACIdentifier, InvalidIdentifierError
from trustd.shared.errors import RefusedKeyError, UntrustedSignerError, UserError
from trustd.shared.keystore import Keystore
from trustd.shared.verify import parse_public_keys, verify_detached


def place(base: Path, scope: str | None, fpr: str, data: bytes) -> Path:
    d = base / "trustedkeys" / ("root.d" if scope is None else f"prefix.d/{scope}")
    d.mkdir(parents=True, exist_ok=True)
    (d / fpr.lower()).write_bytes(data)
    return d / fpr.lower()


def fingerprints(ks: Keystore, name: str) -> set[str]:
    return {k.key.fingerprint for k in ks.keyring_for(ACIdentifier(name)).keys}


@pytest.fixture
def ks(config_dirs: ConfigDirs) -> Keystore:
    return Keystore(config_dirs.system, config_dirs.local)


@pytest.mark.parametrize(
    ("image", "trusted"),
    [
        ("example.com/foo", True),
        ("example.com/foo/bar", True),
        ("example.com/foo/bar/baz", True),
        ("example.com/foobar", False),  # rkt's string-prefix walk said yes (docs/adr/0002)
        ("example.com/fo", False),
        ("example.com", False),
        ("example.org/foo", False),
    ],
)
def test_prefix_keys_apply_on_whole_path_segments(
    ks: Keystore, config_dirs: ConfigDirs, keys: Keys, image: str, trusted: bool
) -> None:
    place(config_dirs.local, "example.com/foo", keys.good, keys.public(keys.good))
    assert (keys.good.lower() in fingerprints(ks, image)) is trusted
    ring = ks.keyring_for(ACIdentifier(image))
    if trusted:
        assert verify_detached(keys.message, keys.sigs["good"], ring).signer == keys.good.lower()
    else:
        with pytest.raises(UntrustedSignerError):
            verify_detached(keys.message, keys.sigs["good"], ring)


def test_root_keys_apply_to_every_image(ks: Keystore, config_dirs: ConfigDirs, keys: Keys) -> None:
    place(config_dirs.system, None, keys.good, keys.public(keys.good))
    assert keys.good.lower() in fingerprints(ks, "anything.example/at/all")


def test_local_zero_byte_file_masks_system_key_in_the_same_scope(
    ks: Keystore, config_dirs: ConfigDirs, keys: Keys
) -> None:
    place(config_dirs.system, None, keys.good, keys.public(keys.good))
    place(config_dirs.system, "example.com", keys.rsa, keys.public(keys.rsa))
    place(config_dirs.local, None, keys.good, b"")
    place(config_dirs.local, "example.com", keys.rsa, b"")
    assert fingerprints(ks, "example.com/app") == set()


def test_a_mask_does_not_hide_a_local_key(
    ks: Keystore, config_dirs: ConfigDirs, keys: Keys
) -> None:
    place(config_dirs.system, "example.com", keys.good, b"")
    place(config_dirs.local, "example.com", keys.rsa, keys.public(keys.rsa))
    assert fingerprints(ks, "example.com/app") == {keys.rsa.lower()}


def test_broken_key_files_are_reported_and_do_not_break_other_prefixes(
    ks: Keystore, config_dirs: ConfigDirs, keys: Keys
) -> None:
    garbage = place(config_dirs.local, "broken.example", "ab" * 20, b"garbage")
    mismatch = place(config_dirs.local, "broken.example", "cd" * 20, keys.public(keys.good))
    badname = place(config_dirs.local, "broken.example", "README", b"x")
    place(config_dirs.local, "fine.example", keys.good, keys.public(keys.good))

    assert fingerprints(ks, "fine.example/app") == {keys.good.lower()}
    ring = ks.keyring_for(ACIdentifier("broken.example/app"))
    assert ring.keys == ()
    text = "\n".join(ring.problems)
    assert str(garbage) in text and "not an OpenPGP public key" in text
    assert str(mismatch) in text and "fingerprint mismatch" in text
    assert str(badname) in text and "not named by a 40-hex" in text
    with pytest.raises(UntrustedSignerError, match=str(mismatch)):
        verify_detached(keys.message, keys.sigs["good"], ring)


def _key(keys: Keys, fpr: str):  # type: ignore[no-untyped-def]
    return parse_public_keys(keys.public(fpr), source=fpr)[0]


def test_add_writes_rkt_layout_and_is_idempotent(
    ks: Keystore, config_dirs: ConfigDirs, keys: Keys
) -> None:
    result = ks.add(_key(keys, keys.good), ACIdentifier("example.com/app"))
    expected = config_dirs.local / "trustedkeys/prefix.d/example.com/app" / keys.good.lower()
    assert result.path == expected and result.status == "added"
    assert expected.stat().st_mode & 0o777 == 0o644
    before = snapshot(config_dirs.local)
    again = ks.add(_key(keys, keys.good), ACIdentifier("example.com/app"))
    assert again.status == "already-trusted"
    assert snapshot(config_dirs.local) == before


@pytest.mark.parametrize("which", ["revoked", "expired", "weak"])
def test_add_refuses_unusable_keys_and_writes_nothing(
    ks: Keystore, config_dirs: ConfigDirs, keys: Keys, which: str
) -> None:
    fpr = getattr(keys, which)
    with pytest.raises(RefusedKeyError, match="not trusting key"):
        ks.add(_key(keys, fpr), ACIdentifier("example.com/app"))
    assert snapshot(config_dirs.local) == {}


def test_remove_deletes_local_and_masks_system(
    ks: Keystore, config_dirs: ConfigDirs, keys: Keys
) -> None:
    scope = ACIdentifier("example.com")
    ks.add(_key(keys, keys.good), scope)
    place(config_dirs.system, "example.com", keys.rsa, keys.public(keys.rsa))
    assert ks.remove(keys.good, scope).masked_system_key is False
    result = ks.remove(keys.rsa, scope)
    assert result.masked_system_key is True
    assert result.path.read_bytes() == b""
    assert (config_dirs.system / "trustedkeys/prefix.d/example.com" / keys.rsa.lower()).exists()
    assert fingerprints(ks, "example.com/app") == set()
    with pytest.raises(UserError, match="is not trusted for"):
        ks.remove(keys.good, scope)


@pytest.mark.parametrize(
    "prefix",
    [
        "..",
        "example.com/../etc",
        "Example.com",
        "https://example.com",
        "/etc/rkt",
        "example.com//app",
        "example.com/app/",
        "a b",
    ],
)
def test_bad_prefixes_are_refused_before_touching_the_keystore(
    config_dirs: ConfigDirs, prefix: str
) -> None:
    with pytest.raises(InvalidIdentifierError, match="is not a valid AC Identifier"):
        ACIdentifier.parse(prefix)
    assert snapshot(config_dirs.local) == {}
