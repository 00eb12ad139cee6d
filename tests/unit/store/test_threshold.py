"""k-of-n: a scope that needs two signatures by distinct trusted keys (ADR 0008).

A detached signature file may hold several signatures (``gpg -u A -u B --detach-sign``, or
files concatenated); every one that verifies is recorded, one per distinct signer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._aci import build_aci
from tests._policy import install_policy, policy_for_tests
from tests.conftest import ConfigDirs, Keys
from tests.unit.store.conftest import NAME, fetch
from trustd.shared.errors import PolicyViolationError
from trustd.shared.keystore import Keystore
from trustd.shared.store import ImageStore
from trustd.shared.verify import parse_public_keys


@pytest.fixture
def two_keys(config_dirs: ConfigDirs, keys: Keys) -> None:
    keystore = Keystore(config_dirs.system, config_dirs.local)
    for fpr in (keys.good, keys.rsa):
        keystore.add(parse_public_keys(keys.public(fpr), source=fpr)[0], None)
    install_policy(
        config_dirs.local, policy_for_tests() + f'\n[scopes."{NAME}".require]\nthreshold = 2\n'
    )


def test_one_signature_is_not_enough_two_are(
    config_dirs: ConfigDirs, keys: Keys, tmp_path: Path, two_keys: None
) -> None:
    aci = build_aci(tmp_path / "img.aci", NAME)
    one = keys.gpg.sign(keys.good, aci, tmp_path / "one.asc").read_bytes()
    other = keys.gpg.sign(keys.rsa, aci, tmp_path / "two.asc").read_bytes()
    (tmp_path / "img.aci.asc").write_bytes(one)
    with pytest.raises(PolicyViolationError, match="1 of 2 required"):
        fetch(config_dirs, str(aci))
    assert ImageStore.open(config_dirs.data).images() == []
    (tmp_path / "img.aci.asc").write_bytes(one + other)  # two armored signatures
    fetch(config_dirs, str(aci))
    (record,) = ImageStore.open(config_dirs.data).images()
    assert set(record.provenance.signers) == {keys.good.lower(), keys.rsa.lower()}


def test_the_same_key_twice_counts_once(
    config_dirs: ConfigDirs, keys: Keys, tmp_path: Path, two_keys: None
) -> None:
    aci = build_aci(tmp_path / "img.aci", NAME)
    one = keys.gpg.sign(keys.good, aci, tmp_path / "one.asc").read_bytes()
    again = keys.gpg.sign(keys.good, aci, tmp_path / "again.asc").read_bytes()
    (tmp_path / "img.aci.asc").write_bytes(one + again)
    with pytest.raises(PolicyViolationError, match="1 of 2 required"):
        fetch(config_dirs, str(aci))
