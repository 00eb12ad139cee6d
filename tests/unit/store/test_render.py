"""Rendering believes nothing the store says: a private copy is re-verified, then extracted."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests._aci import build_aci
from tests.conftest import ConfigDirs, Keys
from tests.unit.store.conftest import NAME, fetch
from trustd.privileged.treestore.datadir import open_data_dir
from trustd.privileged.treestore.render import remove_tree, render_into, render_tree
from trustd.shared.appc import ACIdentifier
from trustd.shared.errors import LocalStateError, PolicyViolationError, UntrustedSignerError
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.store import ImageRecord, ImageStore


def _never(_name: str, _version: str | None = None, _docker: object = None) -> bool:
    return False


def _setup(dirs: ConfigDirs, image: Path) -> tuple[ImageStore, Keystore]:
    fetch(dirs, str(image))
    return ImageStore.open(dirs.data), Keystore(dirs.system, dirs.local)


def _render_into(
    store: ImageStore, record: ImageRecord, keystore: Keystore, dest: Path, **kw: Any
) -> Path:
    return render_into(
        store.layout.root,
        record.full_key,
        keystore,
        dest,
        rootfs_only=kw.pop("rootfs_only", True),
        overwrite=False,
        **kw,
    )


def test_render_writes_the_rootfs(config_dirs: ConfigDirs, signed: Path, tmp_path: Path) -> None:
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    out = _render_into(store, record, keystore, tmp_path / "out")
    hello = out / "bin/hello"
    assert hello.read_bytes() == b"#!/bin/sh\necho hello\n"
    assert os.access(hello, os.X_OK)
    full = _render_into(store, record, keystore, tmp_path / "full", rootfs_only=False)
    assert sorted(p.name for p in full.iterdir()) == ["manifest", "rootfs"]


def test_a_rewritten_blob_is_refused_and_nothing_is_written(
    config_dirs: ConfigDirs, signed: Path, tmp_path: Path
) -> None:
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    blob, _sig = store.original(record)
    blob.chmod(0o644)
    build_aci(blob, NAME, files={"bin/hello": b"written by a member of group rkt"})
    with pytest.raises(LocalStateError, match="not the requested"):  # the ID names the bytes
        _render_into(store, record, keystore, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_key_removed_since_the_fetch_is_refused(
    config_dirs: ConfigDirs, signed: Path, keys: Keys, tmp_path: Path
) -> None:
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    scope = keystore.keyring_for(ACIdentifier(record.name)).keys[0].scope
    assert isinstance(scope, ACIdentifier)
    keystore.remove(keys.good, scope)
    with pytest.raises(UntrustedSignerError, match="not trusted for prefix"):
        _render_into(store, record, keystore, tmp_path / "out")


def test_insecure_images_need_the_opt_out_again(config_dirs: ConfigDirs, tmp_path: Path) -> None:
    image = build_aci(tmp_path / "u.aci", "unsigned.example/u")
    fetch(config_dirs, str(image), insecure=Insecure.IMAGE)
    store, keystore = (
        ImageStore.open(config_dirs.data),
        Keystore(config_dirs.system, config_dirs.local),
    )
    (record,) = store.images()
    with pytest.raises(PolicyViolationError, match="without signature verification"):
        _render_into(store, record, keystore, tmp_path / "a")
    _render_into(store, record, keystore, tmp_path / "b", allow_insecure=True)
    assert (tmp_path / "b/bin/hello").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the tree store is root-only")
def test_render_tree_is_root_only_and_reused(config_dirs: ConfigDirs, signed: Path) -> None:
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    with open_data_dir(config_dirs.data) as data:
        tree = render_tree(data, record.full_key, keystore, accept_unsigned=_never)
        assert tree.path == config_dirs.data / "private/tree" / record.full_key.id
        for d in (data.private, data.private / "tree"):
            assert (d.stat().st_uid, d.stat().st_mode & 0o7777) == (0, 0o700)
        assert (tree.rootfs / "bin/hello").is_file()
        marker = json.loads((tree.path / "rendered").read_text())
        assert marker["digest"] == record.digest and marker["insecure"] is False
        again = render_tree(data, record.full_key, keystore, accept_unsigned=_never)
        assert again.path == tree.path
        assert again.signers == record.provenance.signers
        remove_tree(data, record.full_key.id)
    assert not tree.path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the tree store is root-only")
def test_concurrent_renders_of_one_image_share_one_tree(
    config_dirs: ConfigDirs, signed: Path
) -> None:
    """Two runs of one image used to both replace ``private/tree/<id>``: one failed with
    "directory not empty", or removed the tree the other's pod started on. Now the second
    waits on the image's render lock and reuses the first's tree (a render, not a copy)."""
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    with open_data_dir(config_dirs.data) as data:
        with ThreadPoolExecutor(max_workers=4) as pool:
            trees = list(
                pool.map(
                    lambda _n: render_tree(data, record.full_key, keystore, accept_unsigned=_never),
                    range(4),
                )
            )
        assert {t.path for t in trees} == {config_dirs.data / "private/tree" / record.full_key.id}
        inode = trees[0].path.stat().st_ino
        assert all(t.path.stat().st_ino == inode for t in trees)  # nobody replaced it
        assert [p.name for p in (data.private / "tree").iterdir()] == [record.full_key.id]


def test_a_rendered_tree_is_refused_once_its_signer_is_removed(
    config_dirs: ConfigDirs, signed: Path, keys: Keys
) -> None:
    """No re-hash on reuse, but the keyring in force decides every time."""
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    with open_data_dir(config_dirs.data) as data:
        render_tree(data, record.full_key, keystore, accept_unsigned=_never)
        keystore.remove(keys.good, ACIdentifier("example.com"))
        with pytest.raises(UntrustedSignerError, match="no longer trusted"):
            render_tree(data, record.full_key, keystore, accept_unsigned=_never)


@pytest.mark.skipif(os.geteuid() != 0, reason="the tree store is root-only")
@pytest.mark.parametrize(
    "marker",
    [
        b"not json",
        b'{"digest": "00", "signers": [], "insecure": true, "rendered_at": ""}',
        b'{"signers": ["x"], "insecure": false}',
        b'{"digest": "D", "signers": ["x"], "insecure": false, "rendered_at": "", "extra": 1}',
        b'{"digest": "D", "signers": [], "insecure": false, "rendered_at": ""}',
        b'{"digest": "D", "signers": ["x"], "insecure": "no", "rendered_at": ""}',
    ],
)
def test_a_marker_that_does_not_decode_strictly_is_not_believed(
    config_dirs: ConfigDirs, signed: Path, marker: bytes
) -> None:
    """The tree is rendered again from verified bytes (and its marker rewritten)."""
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    with open_data_dir(config_dirs.data) as data:
        tree = render_tree(data, record.full_key, keystore, accept_unsigned=_never)
        (tree.rootfs / "planted").write_bytes(b"not from the image")
        (tree.path / "rendered").write_bytes(marker.replace(b'"D"', f'"{record.digest}"'.encode()))
        again = render_tree(data, record.full_key, keystore, accept_unsigned=_never)
    assert not (again.rootfs / "planted").exists()
    assert json.loads((again.path / "rendered").read_text())["signers"] == list(
        record.provenance.signers
    )
