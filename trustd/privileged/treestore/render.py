"""Rendering: root's only path from the shared store to a tree that may be executed.

The store is writable by group rkt, so nothing in it is believed: the original archive and
signature are first copied into root-only space, that copy is re-inspected, re-hashed
against the recorded digest and re-verified against the keyring in force now
(:func:`trustd.shared.store.readmit`), and only that same copy is extracted. A group member who
swaps the blob mid-render changes nothing root reads.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.appc.manifest import ImageManifest, parse_image_manifest
from trustd.shared.errors import PolicyViolationError, UntrustedSignerError, UserError
from trustd.shared.keystore import Keystore
from trustd.shared.store._layout import make_dir
from trustd.shared.store.admit import readmit
from trustd.shared.store.model import AdmittedImage, ImageRecord
from trustd.shared.store.store import ImageStore
from trustd.shared.verify import format_fingerprint

RENDERED = "rendered"


@dataclass(frozen=True, slots=True)
class RenderedTree:
    """A root-only tree: ``rootfs/`` and ``manifest`` as extracted from verified bytes."""

    path: Path
    manifest: ImageManifest
    signers: tuple[str, ...]
    insecure: bool

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"


def _recheck_signers(record: ImageRecord, signers: tuple[str, ...], keystore: Keystore) -> None:
    """The keyring in force now must still hold a usable key for every recorded signer."""
    ring = keystore.keyring_for(ACIdentifier(record.name))
    now = datetime.now(UTC)
    for fpr in signers:
        trusted = ring.find(fpr)
        problem = (
            "is no longer trusted for it"
            if trusted is None
            else f"now {trusted.key.refusal(now)}"
            if trusted.key.refusal(now)
            else None
        )
        if problem:
            raise UntrustedSignerError(
                f'image "{record.name}" ({record.key[:39]}) was verified with key '
                f"{format_fingerprint(fpr)}, which {problem}",
                hint="the key was revoked, removed, masked or has expired since the fetch; "
                f'fetch an image signed by a current key (rkt trust --prefix "{record.name}")',
            )


def _cached_tree(
    final: Path, record: ImageRecord, keystore: Keystore, allow_insecure: bool
) -> RenderedTree | None:
    """A tree rendered earlier, re-checked against today's keyring without re-hashing."""
    try:
        marker = json.loads((final / RENDERED).read_text())
    except (OSError, ValueError):
        return None
    if marker.get("digest") != record.digest:
        return None  # rendered from other bytes: render again
    signers = tuple(marker.get("signers", ()))
    if marker.get("insecure"):
        _gate(record, keystore, allow_insecure)
    else:
        _recheck_signers(record, signers, keystore)
    manifest = parse_image_manifest((final / "manifest").read_bytes(), source=str(final))
    return RenderedTree(final, manifest, signers, bool(marker.get("insecure")))


def _gate(record: ImageRecord, keystore: Keystore, allow_insecure: bool) -> Keystore | None:
    if not record.provenance.insecure:
        return keystore
    if allow_insecure:
        return None
    raise PolicyViolationError(
        f"image {record.key[:39]} ({record.name}) was stored without signature verification",
        hint="fetch a signed copy, or accept the risk with --insecure-options=image",
    )


def _private_copy(store: ImageStore, record: ImageRecord, into: Path) -> tuple[Path, bytes | None]:
    original, signature = store.original(record)
    copy = into / "image.aci"
    shutil.copyfile(original, copy)  # after this, nothing the group writes is read
    return copy, signature


def _extract(archive: Path, dest: Path) -> None:
    """Extract an archive that readmit() just validated in this same private copy: no escapes,
    no writes through links, no devices (modes and set-id bits are kept, as a rootfs needs)."""
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="fully_trusted")  # noqa: S202 - validated, see docstring


def verified_copy(
    store: ImageStore,
    record: ImageRecord,
    keystore: Keystore,
    workdir: Path,
    *,
    allow_insecure: bool = False,
) -> tuple[Path, AdmittedImage]:
    """A private copy of the image's original archive that passed the gate again just now."""
    gate = _gate(record, keystore, allow_insecure)
    copy, signature = _private_copy(store, record, workdir)
    return copy, readmit(copy, signature, gate, record.digest)


def render_tree(
    store: ImageStore, record: ImageRecord, keystore: Keystore, *, allow_insecure: bool = False
) -> RenderedTree:
    """Render ``record`` into the root-only tree store (``cas/tree/<key>``), or reuse it.

    A first render re-verifies a private copy of the original bytes; a later one re-checks
    the recorded signers against the keyring in force, without re-hashing the image.
    """
    if os.geteuid() != 0:
        raise UserError("cannot run as unprivileged user", hint="rendering needs root")
    tree_root = store.layout.tree
    make_dir(tree_root, 0o2700)
    final = tree_root / record.key
    cached = _cached_tree(final, record, keystore, allow_insecure)
    if cached is not None:
        return cached
    stage = Path(tempfile.mkdtemp(prefix=".render-", dir=tree_root))
    try:
        copy, admitted = verified_copy(
            store, record, keystore, stage, allow_insecure=allow_insecure
        )
        tree = stage / "tree"
        tree.mkdir(mode=0o700)
        _extract(copy, tree)
        marker = {
            "digest": record.digest,
            "signers": list(admitted.provenance.signers),
            "insecure": admitted.provenance.insecure,
            "rendered_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tree / RENDERED).write_text(json.dumps(marker))
        os.sync()
        if final.exists():
            shutil.rmtree(final)
        tree.rename(final)
        return RenderedTree(
            final, admitted.info.manifest, admitted.provenance.signers, admitted.provenance.insecure
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def render_into(
    store: ImageStore,
    record: ImageRecord,
    keystore: Keystore,
    dest: Path,
    *,
    rootfs_only: bool,
    overwrite: bool,
    allow_insecure: bool = False,
) -> Path:
    """``rkt image render/extract IMAGE DIR``: verify a private copy, extract it into DIR."""
    if dest.exists() and any(dest.iterdir()):
        if not overwrite:
            raise UserError(f"{dest} is not empty", hint="pass --overwrite to replace it")
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".trustd-render-", dir=dest.parent) as work:
        copy, _admitted = verified_copy(
            store, record, keystore, Path(work), allow_insecure=allow_insecure
        )
        unpacked = Path(work) / "unpacked"
        _extract(copy, unpacked)
        source = unpacked / "rootfs" if rootfs_only else unpacked
        dest.mkdir(parents=True, exist_ok=True)
        for child in source.iterdir():
            child.rename(dest / child.name)
    return dest
