"""Rendering believes nothing the store says: a private copy is re-verified, then extracted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._aci import build_aci
from tests.conftest import ConfigDirs, Keys
from tests.unit.store.conftest import NAME, fetch
from trustd.privileged.treestore.render import render_into, render_tree
from trustd.shared.appc import ACIdentifier
from trustd.shared.errors import BadSignatureError, PolicyViolationError, UntrustedSignerError
from trustd.shared.insecure import Insecure
from trustd.shared.keystore import Keystore
from trustd.shared.store import ImageStore


def _setup(dirs: ConfigDirs, image: Path) -> tuple[ImageStore, Keystore]:
    fetch(dirs, str(image))
    return ImageStore.open(dirs.data), Keystore(dirs.system, dirs.local)


def test_render_writes_the_rootfs(config_dirs: ConfigDirs, signed: Path, tmp_path: Path) -> None:
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    out = render_into(store, record, keystore, tmp_path / "out", rootfs_only=True, overwrite=False)
    hello = out / "bin/hello"
    assert hello.read_bytes() == b"#!/bin/sh\necho hello\n"
    assert os.access(hello, os.X_OK)
    full = render_into(
        store, record, keystore, tmp_path / "full", rootfs_only=False, overwrite=False
    )
    assert sorted(p.name for p in full.iterdir()) == ["manifest", "rootfs"]


def test_a_rewritten_blob_is_refused_and_nothing_is_written(
    config_dirs: ConfigDirs, signed: Path, tmp_path: Path
) -> None:
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    blob, _sig = store.original(record)
    blob.chmod(0o644)
    build_aci(blob, NAME, files={"bin/hello": b"written by a member of group rkt"})
    with pytest.raises(BadSignatureError):
        render_into(store, record, keystore, tmp_path / "out", rootfs_only=True, overwrite=False)
    assert not (tmp_path / "out").exists()


def test_a_key_removed_since_the_fetch_is_refused(
    config_dirs: ConfigDirs, signed: Path, keys: Keys, tmp_path: Path
) -> None:
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    keystore.remove(keys.good, keystore.keyring_for(ACIdentifier(record.name)).keys[0].scope)
    with pytest.raises(UntrustedSignerError, match="not trusted for prefix"):
        render_into(store, record, keystore, tmp_path / "out", rootfs_only=True, overwrite=False)


def test_insecure_images_need_the_opt_out_again(config_dirs: ConfigDirs, tmp_path: Path) -> None:
    image = build_aci(tmp_path / "u.aci", "unsigned.example/u")
    fetch(config_dirs, str(image), insecure=Insecure.IMAGE)
    store, keystore = (
        ImageStore.open(config_dirs.data),
        Keystore(config_dirs.system, config_dirs.local),
    )
    (record,) = store.images()
    with pytest.raises(PolicyViolationError, match="without signature verification"):
        render_into(store, record, keystore, tmp_path / "a", rootfs_only=True, overwrite=False)
    render_into(
        store,
        record,
        keystore,
        tmp_path / "b",
        rootfs_only=True,
        overwrite=False,
        allow_insecure=True,
    )
    assert (tmp_path / "b/bin/hello").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the tree store is root-only")
def test_render_tree_is_root_only_and_reused(config_dirs: ConfigDirs, signed: Path) -> None:
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    tree = render_tree(store, record, keystore)
    assert tree.path == store.layout.tree / record.key
    assert (store.layout.tree.stat().st_mode & 0o7777) == 0o2700
    assert (tree.rootfs / "bin/hello").is_file()
    again = render_tree(store, record, keystore)
    assert again.path == tree.path
    assert again.signers == record.provenance.signers
    store.remove(record)
    assert not tree.path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the tree store is root-only")
def test_a_rendered_tree_is_refused_once_its_signer_is_removed(
    config_dirs: ConfigDirs, signed: Path, keys: Keys
) -> None:
    """No re-hash on reuse, but the keyring in force decides every time."""
    store, keystore = _setup(config_dirs, signed)
    (record,) = store.images()
    render_tree(store, record, keystore)
    keystore.remove(keys.good, ACIdentifier("example.com"))
    with pytest.raises(UntrustedSignerError, match="no longer trusted"):
        render_tree(store, record, keystore)
