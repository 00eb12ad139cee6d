"""The content-addressed image store: admitted images in, records and original bytes out.

Writes are staged in ``cas/tmp`` and made visible by one ``rename(2)`` of a directory, then
indexed; two imports of the same image both succeed and store it once, and a killed import
leaves nothing but a stale staging directory that ``gc`` removes.

Used with the group's rights only: root never opens the index (as root, the front end runs
this in the privsep child, trustd.cli._store), and store directories and shared files are
opened without following symlinks. Rendered trees are root's (trustd.privileged.treestore).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from trustd.shared._fsutil import fsync_dir
from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.imageid import ID_PREFIX, is_id_ref
from trustd.shared.store._hints import os_hint
from trustd.shared.store._index import Index
from trustd.shared.store._layout import (
    MANIFEST,
    ORIGINAL,
    SIGNATURE,
    StoreLayout,
    docker_blob_name,
    make_dir,
    open_shared_file,
    open_store_dir,
)
from trustd.shared.store.model import AdmittedImage, ImageRecord, ImageRow
from trustd.shared.store.scratch import locked_scratch, sweep_scratch

if TYPE_CHECKING:  # annotations only: an index lookup does not load the manifest model
    from trustd.shared.appc.manifest import ImageManifest

MIN_ID_HEX = 2


# Seconds a store lock is waited for. The lock files are the group's, so a member can hold
# one for ever (``flock -s <dir>/cas/lock sleep``): waiting without end hung root's fetch, rm
# and gc (red team 8). An import holds the shared lock only while it publishes, gc and rm
# the exclusive one while they remove.
STORE_LOCK_WAIT = 120.0


def _wait_lock(fd: int, operation: int, path: Path) -> None:
    """``flock(fd, operation)``, refused once :data:`STORE_LOCK_WAIT` seconds have passed."""
    end, pause = time.monotonic() + STORE_LOCK_WAIT, 0.01
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= end:
                raise LocalStateError(
                    f"store lock {path} was held by another process for {STORE_LOCK_WAIT:g} s",
                    hint=f"another fetch, rm or gc may still run: run again once it ends; else "
                    f"a member of group rkt holds it (see: fuser -v {path})",
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        else:
            return


# _COPYING: shutil, subprocess and tempfile are loaded where the store copies, stages or
# removes, not with the module: ``rkt image list`` opens the store only to read the index
# (issue #14). Every child that writes the store preloads them before its drop
# (trustd.unprivileged.privsep.drop's PRELOAD and INDEX_PRELOAD).


def _remove_tree(path: Path) -> None:
    """``shutil.rmtree`` whatever the depth: the group can write the store, and a chain of
    thousands of directories a member planted (in ``cas/tmp`` or an image's blob dir) makes
    Python's recursive remover raise RecursionError, which ``ignore_errors`` does not catch
    and which failed every ``image gc`` and ``image rm`` of the store (red team, third pass).
    GNU rm removes any depth and follows no symlink."""
    import shutil  # noqa: PLC0415 - see _COPYING
    import subprocess  # noqa: PLC0415

    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:
        subprocess.run(  # noqa: S603 - a fixed binary and argv, no shell
            ["/bin/rm", "-rf", "--one-file-system", "--", str(path)],
            capture_output=True,
            check=False,
            env={"PATH": "/usr/bin:/bin"},
            timeout=600,
        )


class ImageStore:
    def __init__(self, data_dir: Path) -> None:
        self.layout = StoreLayout(data_dir)
        self.index = Index(self.layout.index)
        # the full IDs of the images this process admitted (hashed and verified) into the
        # store: what root's fetch child reports to root for root's own record of them
        self.admitted: list[str] = []
        # their manifests as verified (full ID -> manifest): a stored image's dependencies are
        # its own, never the blob dir's copy, which the group rewrites (red team 11)
        self.manifests: dict[str, ImageManifest] = {}

    @classmethod
    def open(cls, data_dir: Path, *, create: bool = False) -> ImageStore:
        store = cls(data_dir)
        if create:
            store._create()
        elif not store.layout.index.exists():
            raise UserError(
                f"no image store at {data_dir}",
                hint="fetch an image first (rkt fetch), or check --dir",
            )
        return store

    def _create(self) -> None:
        """Make the group's directories and the index (never through a symlink). As root, the
        CLI makes the directories only (trustd.privileged.treestore.datadir) and leaves the
        index to the unprivileged fetch process: root never opens it."""
        root = self.layout.root
        try:
            if not root.is_dir():
                root.mkdir(mode=0o750, parents=True)
                make_dir(root.parent, root.name, 0o2750)
            for rel, mode in self.layout.shared_dirs():
                make_dir(root, rel, mode)
            with self.locked(exclusive=True):  # the schema is created once, idempotently
                os.close(self._shared_file("cas/db", "index.sqlite"))  # -wal/-shm get its mode
                self.index.create()
        except OSError as exc:
            raise LocalStateError(
                f"cannot create the image store under {self.layout.root}: {exc.strerror}",
                hint=os_hint(exc, self.layout.root),
            ) from exc

    def _shared_file(self, rel_dir: str, name: str) -> int:
        dirfd = open_store_dir(self.layout.root, rel_dir)
        try:
            return open_shared_file(dirfd, name)
        finally:
            os.close(dirfd)

    def ensure(self) -> None:
        """Create what is missing of the store (the unprivileged fetch process does this
        when root runs ``rkt fetch``: root only makes the directories)."""
        self._create()

    @contextlib.contextmanager
    def locked(self, *, exclusive: bool) -> Iterator[None]:
        """Imports share the store lock; gc and rm hold it alone (rkt's prepareLock pattern)."""
        fd = self._shared_file("cas", "lock")
        try:
            _wait_lock(
                fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, self.layout.root / "cas/lock"
            )
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def scratch_file(self) -> Iterator[Path]:
        """A temporary file in ``cas/tmp`` (same filesystem as the blobs), removed after.

        It is held under an exclusive flock while in use, so a fetch killed with SIGKILL
        leaves a ``download-*`` file whose lock is free: every new scratch file first sweeps
        those (:func:`sweep_scratch`). The file is readable by the group (a sweeper running
        as another member must open it to try the lock; the store is the group's anyway).
        """
        sweep_scratch(self.layout.tmp)
        fd, name = locked_scratch(self.layout.tmp)
        try:
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)
            os.close(fd)

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        """One publisher per image at a time (rkt's imagelocks)."""
        make_dir(self.layout.root, "cas/imagelocks", 0o2770)
        fd = self._shared_file("cas/imagelocks", key)
        try:
            _wait_lock(fd, fcntl.LOCK_EX, self.layout.root / "cas/imagelocks" / key)
            yield
        finally:
            os.close(fd)

    def put(
        self,
        admitted: AdmittedImage,
        original: Path,
        signature: bytes | None,
        source: str,
        *,
        blobs: Mapping[str, Path | bytes] | None = None,
    ) -> ImageRecord:
        """Store an admitted image (its original bytes and signature) once; return its record.

        ``blobs`` (digest -> file or bytes) are kept beside it under
        :func:`~trustd.shared.store._layout.docker_blob_name`: a signed docker image's layers
        and config, which root converts again before it renders the image."""
        key = admitted.key
        self.admitted.append(admitted.info.image_id)
        self.manifests[admitted.info.image_id] = admitted.info.manifest
        with self.locked(exclusive=False), self._key_lock(key):
            existing = self.index.by_key_prefix(key)
            if existing:
                return existing[0]
            self._stage_and_publish(
                self.layout.blob_dir(key), admitted, original, signature, blobs or {}
            )
            self.index.insert(self._record(admitted, original, source))
            return self.index.by_key_prefix(key)[0]

    def _stage_and_publish(
        self,
        final: Path,
        admitted: AdmittedImage,
        original: Path,
        signature: bytes | None,
        blobs: Mapping[str, Path | bytes],
    ) -> None:
        import shutil  # noqa: PLC0415 - see _COPYING
        import tempfile  # noqa: PLC0415

        stage = Path(tempfile.mkdtemp(prefix="import-", dir=self.layout.tmp))
        try:
            files = {MANIFEST: admitted.info.manifest_bytes}
            for name, source in [(ORIGINAL, original)] + [
                (docker_blob_name(d), b) for d, b in blobs.items() if isinstance(b, Path)
            ]:
                try:  # scratch files live in cas/tmp: a hard link costs nothing
                    os.link(source, stage / name)
                except OSError:
                    shutil.copyfile(source, stage / name)
            files |= {docker_blob_name(d): b for d, b in blobs.items() if isinstance(b, bytes)}
            if signature is not None:
                files[SIGNATURE] = signature
            for name, data in files.items():
                (stage / name).write_bytes(data)
            for child in stage.iterdir():
                child.chmod(0o440)
                with child.open("rb") as f:
                    os.fsync(f.fileno())
            stage.chmod(0o2770)
            make_dir(self.layout.root, f"cas/blob/sha512/{final.parent.name}", 0o2770)
            self._publish(stage, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _publish(self, stage: Path, final: Path) -> None:
        """rename(2) the staged directory into place; an unindexed leftover is replaced."""
        import shutil  # noqa: PLC0415 - see _COPYING
        import tempfile  # noqa: PLC0415

        if final.exists():  # left by a killed import before it was indexed
            aside = Path(tempfile.mkdtemp(prefix="stale-", dir=self.layout.tmp))
            final.rename(aside / "old")
            shutil.rmtree(aside, ignore_errors=True)
        try:
            stage.rename(final)
        except OSError as exc:
            if not final.exists():
                raise LocalStateError(f"cannot store image at {final}: {exc.strerror}") from exc
        fsync_dir(final.parent)

    @staticmethod
    def _record(admitted: AdmittedImage, original: Path, source: str) -> ImageRecord:
        now = datetime.now(UTC)
        manifest = admitted.info.manifest
        return ImageRecord(
            key=admitted.key,
            digest=admitted.info.image_id.removeprefix(ID_PREFIX),
            name=str(manifest.name),
            labels=tuple((lbl.name.value, lbl.value) for lbl in manifest.labels or ()),
            import_time=now,
            last_used=now,
            size=original.stat().st_size,
            uncompressed_size=admitted.info.uncompressed_size,
            source=source,
            provenance=admitted.provenance,
        )

    def original(self, record: ImageRecord) -> tuple[Path, bytes | None]:
        """The stored original archive and its signature (None for an insecure import)."""
        blob = self.layout.blob_dir(record.key)
        sig = blob / SIGNATURE
        if not (blob / ORIGINAL).is_file():
            raise LocalStateError(
                f"image {record.key} is indexed but its blob is missing",
                hint=f"rkt image rm {record.key}, then fetch it again",
            )
        return blob / ORIGINAL, (sig.read_bytes() if sig.exists() else None)

    def resolve(self, ref: str) -> ImageRecord:
        """An image by ID prefix (rkt's rules) or by name[:version] (the newest import; as
        root, the newest of those root fetched: ``_index.pin_fetched``)."""
        if is_id_ref(ref):
            hexpart = ref.removeprefix(ID_PREFIX).lower()
            if len(hexpart) < MIN_ID_HEX:
                raise UserError("image ID too short", hint="give at least sha512- and 2 hex")
            matches = self.index.by_key_prefix(ID_PREFIX + hexpart[:64])
            if not matches:
                raise UserError(f"no image IDs found for {ref!r}", hint="see: rkt image list")
            if len(matches) > 1:
                raise UserError(f"ambiguous image ID {ref!r}", hint="give more hex digits")
            return matches[0]
        name, _, version = ref.partition(":")
        found = [
            r for r in self.index.by_name(name) if not version or r.label("version") == version
        ]
        if not found:
            raise UserError(f"no image named {ref!r} in the store", hint="see: rkt image list")
        return max(found, key=self.index.fetch_order)  # the newest (root's: as root fetched)

    def images(self) -> list[ImageRecord]:
        return self.index.all()

    def table(self) -> list[ImageRow]:
        """:meth:`images` as ``rkt image list``'s table shows them (no provenance)."""
        return self.index.table()

    def _drop(self, record: ImageRecord) -> None:
        """Forget an image: index row first (it stops being visible), then its files. The
        record's key passed the index grammar, so the path is built from checked text.
        Rendered trees are root's (``<dir>/private/tree``); root removes them itself."""
        self.index.delete(record.key)
        _remove_tree(self.layout.blob_dir(record.key))

    def remove(self, record: ImageRecord) -> None:
        with self.locked(exclusive=True):
            self._drop(record)

    def gc(
        self,
        grace: timedelta,
        *,
        keep: Collection[str] = (),
        last_used: Mapping[str, datetime] | None = None,
    ) -> list[ImageRecord]:
        """Remove images unused for longer than ``grace``, and stale staging directories.

        ``keep`` holds image keys (full IDs or rkt's short store keys) a pod still references
        (never removed); ``last_used``
        adds root's own last-used stamps (full ID -> time), the later of it and the index's
        counts."""
        cutoff = datetime.now(UTC) - grace
        stamps = last_used or {}
        removed = []
        with self.locked(exclusive=True):
            for record in self.index.all():
                full = record.full_key.id
                used = max(record.last_used, stamps.get(full, record.last_used))
                if full not in keep and record.key not in keep and used < cutoff:
                    self._drop(record)
                    removed.append(record)
            self._sweep_tmp()
        return removed

    def _sweep_tmp(self) -> None:
        """Staging dirs exist only under the shared lock, so under the exclusive one they are
        leftovers of killed imports; downloads (made outside the lock) must be a day old."""
        day_ago = datetime.now(UTC).timestamp() - 86400
        for entry in self.layout.tmp.iterdir():
            staged = entry.name.startswith(("import-", "stale-"))
            if staged or entry.stat().st_mtime < day_ago:
                if entry.is_dir():
                    _remove_tree(entry)
                else:
                    entry.unlink(missing_ok=True)
