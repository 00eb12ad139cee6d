"""Store-test fixtures: a signed image trusted for example.com, and the fetch workflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._aci import build_aci
from tests.conftest import ConfigDirs, Keys
from trustd.cli.fetch import parse_image_args
from trustd.cli.main import main
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.policy import load_effective
from trustd.shared.store import ImageStore
from trustd.unprivileged.fetch import FetchContext, FetchRequest, fetch_image, parse_image_ref

NAME = "example.com/hello"


def rkt(dirs: ConfigDirs, *args: str) -> int:
    return main([*dirs.flags(), *args])


@pytest.fixture
def signed(tmp_path: Path, keys: Keys, config_dirs: ConfigDirs) -> Path:
    """A signed image whose key is trusted for example.com."""
    aci = build_aci(tmp_path / "hello.aci", NAME)
    keys.gpg.sign(keys.good, aci, tmp_path / "hello.aci.asc")
    key = tmp_path / "good.asc"
    key.write_bytes(keys.public(keys.good))
    assert (
        rkt(config_dirs, "trust", "--prefix", "example.com", "--skip-fingerprint-review", str(key))
        == 0
    )
    return aci


def fetch(dirs: ConfigDirs, *args: str, insecure: Insecure = Insecure.NONE) -> str:
    """What ``rkt fetch ARGS`` does for each image, minus the root-only privilege drop."""
    ctx = FetchContext(
        ImageStore.open(dirs.data, create=True),
        Keystore(dirs.system, dirs.local),
        insecure,
        load_effective(dirs.system, dirs.local),
    )
    requests = [FetchRequest(parse_image_ref(t), s) for t, s in parse_image_args(list(args))]
    return [fetch_image(r, ctx).key for r in requests][-1]
