"""A stored image's dependencies are its own (red team 11): the fetch takes them from the
manifest it verified, or from the stored archive hashed against the image's ID, never from
the blob directory's ``manifest`` file, which the group rewrites. The integration test is
tests/integration/test_attack_redteam11.py (a real member, root's record of its fetches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._aci import build_aci
from tests.conftest import ConfigDirs, Keys
from tests.unit.store.conftest import fetch
from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.policy import load_effective
from trustd.shared.store import ImageStore
from trustd.shared.store._layout import ORIGINAL
from trustd.shared.store._stored import stored_info
from trustd.unprivileged.fetch import FetchContext, FetchRequest, fetch_image, parse_image_ref
from trustd.unprivileged.fetch.remote import _fetch_dependencies

DEP = "example.com/dep"


def _forge(store: ImageStore, key: str, name: str) -> Path:
    """The blob dir's manifest file rewritten to depend on ``name`` (as a member may)."""
    path = store.layout.blob_dir(key) / "manifest"
    doc = json.loads(path.read_text())
    doc["dependencies"] = [{"imageName": name}]
    path.unlink()
    path.write_text(json.dumps(doc))
    return path


def _context(dirs: ConfigDirs) -> FetchContext:
    """A new fetch's context (it admitted nothing yet), which may not reach a network."""
    return FetchContext(
        ImageStore.open(dirs.data),
        Keystore(dirs.system, dirs.local),
        Insecure.NONE,
        load_effective(dirs.system, dirs.local),
        pull_policy="never",  # a dependency it looked for would fail: "not in the store"
    )


def test_a_forged_dependency_in_the_manifest_file_is_not_followed(
    config_dirs: ConfigDirs, signed: Path
) -> None:
    key = fetch(config_dirs, str(signed))
    ctx = _context(config_dirs)
    (record,) = ctx.store.images()
    _forge(ctx.store, key, "example.com/old")
    _fetch_dependencies(record, ctx, 0)  # the stored bytes declare none: nothing looked up
    assert stored_info(ctx.store.layout, record).manifest.dependencies is None


def test_the_manifest_this_fetch_verified_is_used_as_is(
    config_dirs: ConfigDirs, signed: Path
) -> None:
    ImageStore.open(config_dirs.data, create=True)
    ctx = _context(config_dirs)
    store = ctx.store
    record = fetch_image(FetchRequest(parse_image_ref(str(signed)), None), ctx)
    assert list(store.manifests) == [record.full_key.id] == store.admitted
    _forge(store, record.key, "example.com/old")
    (store.layout.blob_dir(record.key) / ORIGINAL).unlink()  # not read again: not needed
    _fetch_dependencies(record, ctx, 0)


def test_a_stored_archive_behind_a_link_is_refused(config_dirs: ConfigDirs, signed: Path) -> None:
    key = fetch(config_dirs, str(signed))
    ctx = _context(config_dirs)
    (record,) = ctx.store.images()
    original = ctx.store.layout.blob_dir(key) / ORIGINAL
    original.unlink()
    original.symlink_to(signed)  # the same bytes, through a link: never followed
    with pytest.raises(LocalStateError, match=ORIGINAL):
        _fetch_dependencies(record, ctx, 0)


def test_a_dependency_the_signed_bytes_declare_is_still_followed(
    config_dirs: ConfigDirs, signed: Path, keys: Keys, tmp_path: Path
) -> None:
    aci = build_aci(
        tmp_path / "app.aci", "example.com/app", extra={"dependencies": [{"imageName": DEP}]}
    )
    keys.gpg.sign(keys.good, aci, tmp_path / "app.aci.asc")
    fetch(config_dirs, str(aci))
    ctx = _context(config_dirs)
    (record,) = [r for r in ctx.store.images() if r.name == "example.com/app"]
    with pytest.raises(UserError, match=f'image name "{DEP}"'):  # looked for (policy never)
        _fetch_dependencies(record, ctx, 0)
