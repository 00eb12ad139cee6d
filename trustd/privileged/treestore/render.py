"""Rendering: root's only path from the shared store to a tree that may be executed.

The store is writable by group rkt, so nothing in it is believed, and the index is never
read. Root takes a full image ID (:class:`~trustd.shared.store.StoreKey`), opens
``cas/blob/sha512/<2 hex>/<key>/image.aci`` (and ``.asc``) beneath the ``cas`` fd with no
symlink followed (regular files only, size-capped), copies them into root-only space
(``<dir>/private/tree/.render-*``), and only that copy is re-inspected, re-hashed against the
ID and re-verified against the keyring in force now for the name in its own manifest
(:func:`trustd.shared.store.admit.readmit_key`). Only that same copy is extracted. A group
member who swaps the blob mid-render changes nothing root reads.

A tree rendered before is reused only on the word of the ``rendered`` marker root wrote
beside it (digest, signers, insecure), strictly decoded: the signers are re-checked against
the keyring in force, and an insecure render needs insecure acceptance again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from trustd.privileged import _dirfd
from trustd.privileged._output import check_parent, output_dir
from trustd.privileged.treestore._copy import open_cas, private_copy
from trustd.privileged.treestore.datadir import TREE, DataDir, _require_root, private_dir
from trustd.privileged.treestore.marker import (
    MAX_MARKER,
    RENDERED,
    RenderMarker,
    decode_marker,
    encode_marker,
)
from trustd.shared._dataclass import frozen
from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.appc.manifest import ImageManifest, parse_image_manifest
from trustd.shared.codec import DecodeError
from trustd.shared.errors import (
    LocalStateError,
    PolicyViolationError,
    UntrustedSignerError,
    UserError,
)
from trustd.shared.imageid import StoreKey
from trustd.shared.keystore import Keystore
from trustd.shared.ocisig.name import DockerName, DockerReference
from trustd.shared.store._docker_admit import docker_origin
from trustd.shared.store.admit import AcceptFor, IdentityFor, readmit_key
from trustd.shared.store.model import AdmittedImage
from trustd.shared.verify import format_fingerprint

AcceptUnsigned = AcceptFor  # (name, version label, docker name) -> may pass
Expected = tuple[str | None, str | None]  # the name and version asked for, if by name
ANY_NAME: Expected = (None, None)  # an image asked for by ID: any name is its own


@frozen
class RenderedTree:
    """A root-only tree: ``rootfs/`` and ``manifest`` as extracted from verified bytes."""

    path: Path
    manifest: ImageManifest
    signers: tuple[str, ...]
    insecure: bool
    docker_name: str = ""  # a converted docker image: its signers vouch for this docker:// name

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"


def _recheck_signers(
    name: str, key: StoreKey, signers: tuple[str, ...], keystore: Keystore, docker_name: str = ""
) -> None:
    """The keyring in force now must still hold a usable key for every recorded signer (for
    a converted docker image, the keyring of the docker name its signatures verified for)."""
    docker = DockerName.parse(docker_name) if docker_name else None
    ring = keystore.keyring_for(docker or ACIdentifier(name))
    pem = {t.key.key_id for t in keystore.pem_keys_for(docker)} if docker else set()
    name = docker_name or name
    now = datetime.now(UTC)
    for fpr in signers:
        if fpr in pem:  # a sigstore key still trusted for the docker name
            continue
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
                f'image "{name}" ({key.id[:39]}) was verified with key '
                f"{format_fingerprint(fpr)}, which {problem}",
                hint="the key was revoked, removed, masked or has expired since the fetch; "
                f'fetch an image signed by a current key (rkt trust --prefix "{name}")',
            )


def _decode_marker(raw: bytes, key: StoreKey, source: Path) -> RenderMarker | None:
    """The marker root wrote for exactly these bytes, else None (render again)."""
    try:
        marker = decode_marker(raw, str(source))
    except DecodeError:
        return None
    return marker if marker.digest == key.digest else None


def _cached_tree(
    data: DataDir, tree_fd: int, key: StoreKey, keystore: Keystore, accept: AcceptUnsigned
) -> RenderedTree | None:
    """A tree rendered earlier, re-checked against today's keyring without re-hashing."""
    final = data.private / TREE / key.id
    try:
        marker = _decode_marker(
            _dirfd.read_beneath(tree_fd, f"{key.id}/{RENDERED}", MAX_MARKER), key, final / RENDERED
        )
        manifest_bytes = _dirfd.read_beneath(tree_fd, f"{key.id}/manifest", 1 << 20)
    except (FileNotFoundError, LocalStateError):
        return None
    if marker is None or (marker.docker_name and not marker.converted):
        return None  # not a marker for these bytes (or not of root's conversion): render again
    signers, insecure = marker.signers, marker.insecure
    manifest = parse_image_manifest(manifest_bytes, source=str(final / "manifest"))
    name = str(manifest.name)
    if insecure:
        if not accept(name, manifest.label("version"), docker_origin(manifest)):
            raise PolicyViolationError(
                f"image {key.id[:39]} ({name}) was stored without signature verification",
                hint="fetch a signed copy, or accept the risk with --insecure-options=image",
            )
    else:
        _recheck_signers(name, key, signers, keystore, marker.docker_name)
    return RenderedTree(final, manifest, signers, insecure, marker.docker_name)


def check_requested(key: StoreKey, manifest: ImageManifest, expected: Expected) -> None:
    """An image asked for by name[:version] is that by its own manifest (from the bytes
    that hash to ``key``), whatever the group's index that mapped the name to ``key`` said."""
    want_name, want_version = expected
    name, version = str(manifest.name), manifest.label("version")
    if (want_name is not None and name != want_name) or (
        want_version is not None and version != want_version
    ):
        wanted = f"{want_name}:{want_version}" if want_version else want_name
        raise LocalStateError(
            f"image {key.id[:39]}… is {name}:{version or '-'} by its own manifest, not the "
            f"requested {wanted}",
            hint="the store index maps the name to another image; rkt image rm it and fetch "
            "again, or name it by its full ID",
        )


def _extract(archive: Path, dest: Path) -> None:
    """Extract an archive that readmit_key() just validated in this same private copy: no
    escapes, no writes through links, no devices (modes and set-id bits are kept, as a rootfs
    needs). Python before 3.11.4 (Debian 12's 3.11.2) has no extraction filters (PEP 706);
    there, extraction without one is exactly what "fully_trusted" names."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "fully_trusted_filter"):
            tar.extractall(dest, filter="fully_trusted")  # noqa: S202 - validated, see docstring
        else:  # pragma: no cover - the interpreter decides which branch runs
            tar.extractall(dest)  # noqa: S202 - validated, see docstring


def verified_copy(
    cas_fd: int,
    key: StoreKey,
    keystore: Keystore,
    workdir: Path,
    accept: AcceptUnsigned,
    *,
    identity: IdentityFor | None = None,
) -> tuple[Path, AdmittedImage]:
    """A private copy of the image's original archive that passed the gate again just now.

    For a docker image whose signature evidence verified, root also converts the signed
    manifest's stored layers again and requires that to be this archive (:mod:`._docker`);
    a docker image admitted insecure is run as the recorded opt-out, unconverted."""
    copy, signature = private_copy(cas_fd, key, workdir)
    admitted = readmit_key(
        copy, signature, keystore, key, accept_unsigned=accept, identity=identity
    )
    if signature is not None and _docker_name(admitted):
        # the conversion code only for a docker image (issue #14: an ACI's start skips it)
        from trustd.privileged.treestore._docker import check_conversion  # noqa: PLC0415

        check_conversion(cas_fd, key, signature, admitted.info.manifest)
    return copy, admitted


def render_tree(
    data: DataDir,
    key: StoreKey,
    keystore: Keystore,
    *,
    accept_unsigned: AcceptUnsigned,
    identity: IdentityFor | None = None,
) -> RenderedTree:
    """Render ``key`` into the root-only tree store (``private/tree/<id>``), or reuse it.

    ``accept_unsigned(name)`` says whether an image without a (verifying) signature may pass
    now: the request's --insecure-options=image, or the policy for the manifest's name. The
    caller holds :func:`~trustd.privileged.treestore.datadir.tree_lock` (shared).
    """
    _require_root()
    with _render_lock(data, key), private_dir(data, TREE) as tree_fd:
        cached = _cached_tree(data, tree_fd, key, keystore, accept_unsigned)
        if cached is not None:  # perhaps rendered by a concurrent run we waited for
            return cached
        stage_name = f".render-{os.urandom(8).hex()}"
        os.mkdir(stage_name, 0o700, dir_fd=tree_fd)
        stage = data.private / TREE / stage_name
        try:
            cas = data.cas_fd()
            try:
                copy, admitted = verified_copy(
                    cas, key, keystore, stage, accept_unsigned, identity=identity
                )
            finally:
                os.close(cas)
            tree = stage / "tree"
            tree.mkdir(mode=0o700)
            _extract(copy, tree)
            (tree / RENDERED).write_bytes(
                encode_marker(
                    RenderMarker.now(
                        key.digest,
                        admitted.provenance.signers,
                        admitted.provenance.insecure,
                        _docker_name(admitted),
                        converted=bool(_docker_name(admitted)),  # verified_copy checked it
                    )
                )
            )
            os.sync()
            _dirfd.rmtree_at(tree_fd, key.id)
            os.rename(f"{stage_name}/tree", key.id, src_dir_fd=tree_fd, dst_dir_fd=tree_fd)
        finally:
            _dirfd.rmtree_at(tree_fd, stage_name)
    provenance = admitted.provenance
    return RenderedTree(
        data.private / TREE / key.id,
        admitted.info.manifest,
        provenance.signers,
        provenance.insecure,
        _docker_name(admitted),
    )


RENDERING = "rendering"  # private/rendering/<image ID>: one render of an image at a time


@contextlib.contextmanager
def _render_lock(data: DataDir, key: StoreKey) -> Iterator[None]:
    """Two runs of one image render it one after the other, and the second reuses the first's
    tree: without it both replaced ``private/tree/<id>``, one failing ("directory not
    empty") or removing the tree the other's pod was starting on. The lock is a file in a
    root-only dir (nobody else can hold it); :func:`remove_render_locks` clears them when no
    render can run."""
    with private_dir(data, RENDERING) as locks:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(key.id, flags, 0o600, dir_fd=locks)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_render_locks(data: DataDir) -> None:
    """The render locks of :func:`_render_lock`; the caller holds the exclusive
    :func:`~trustd.privileged.treestore.datadir.tree_lock`, so no render runs."""
    with private_dir(data, RENDERING) as locks:
        for name in os.listdir(locks):  # noqa: PTH208 - an fd, not a path
            _dirfd.rmtree_at(locks, name)


def _docker_name(admitted: AdmittedImage) -> str:
    """The docker:// name a converted image's signatures verified for just now, or ""."""
    ref = admitted.provenance.docker_reference
    return str(DockerReference.parse(ref).name) if ref and not admitted.provenance.insecure else ""


def render_into(
    data_dir: Path,
    key: StoreKey,
    keystore: Keystore,
    dest: Path,
    *,
    rootfs_only: bool,
    overwrite: bool,
    allow_insecure: bool = False,
    expected: Expected = ANY_NAME,
) -> Path:
    """``rkt image render/extract IMAGE DIR``: verify a private copy, extract it into DIR
    (``expected``: the name and version IMAGE gave, which the verified manifest must say)."""
    check_parent(dest)  # the staging below sits beside dest: nobody else may move it
    if dest.exists() or dest.is_symlink():
        output_dir(dest)  # only a real directory root owns, in one only root can change
    if dest.exists() and any(dest.iterdir()):
        if not overwrite:
            raise UserError(f"{dest} is not empty", hint="pass --overwrite to replace it")
        for child in dest.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    cas = open_cas(data_dir)
    try:
        with tempfile.TemporaryDirectory(prefix=".trustd-render-", dir=dest.parent) as work:
            copy, admitted = verified_copy(
                cas, key, keystore, Path(work), lambda _name, _version, _docker: allow_insecure
            )
            check_requested(key, admitted.info.manifest, expected)
            unpacked = Path(work) / "unpacked"
            _extract(copy, unpacked)
            source = unpacked / "rootfs" if rootfs_only else unpacked
            output_dir(dest)
            for child in source.iterdir():
                child.rename(dest / child.name)
    finally:
        os.close(cas)
    return dest


def remove_tree(data: DataDir, name: str) -> None:
    """Remove ``private/tree/<name>`` without following a symlink (gc, image rm)."""
    with private_dir(data, TREE) as tree_fd:
        _dirfd.rmtree_at(tree_fd, name)


def tree_names(data: DataDir) -> list[str]:
    """The names in ``private/tree`` (rendered trees and stale ``.render-*`` stages)."""
    with private_dir(data, TREE) as tree_fd:
        return sorted(os.listdir(tree_fd))  # noqa: PTH208 - an fd, not a path


def remove_legacy_trees(data: DataDir) -> bool:
    """The old tree store (``cas/tree``, inside the group-writable ``cas``) is never read;
    gc removes it when it is a real directory root owns. True when it was removed."""
    cas = data.cas_fd()
    try:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat("tree", dir_fd=cas, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == 0:
                _dirfd.rmtree_at(cas, "tree")
                return True
    finally:
        os.close(cas)
    return False
