"""The content-addressed image store: admitted images in, records and original bytes out.

Writes are staged in ``cas/tmp`` and made visible by one ``rename(2)`` of a directory, then
indexed; two imports of the same image both succeed and store it once, and a killed import
leaves nothing but a stale staging directory that ``gc`` removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trustd.shared._fsutil import fsync_dir
from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.store._index import Index
from trustd.shared.store._layout import MANIFEST, ORIGINAL, SIGNATURE, StoreLayout, make_dir
from trustd.shared.store.model import ID_PREFIX, AdmittedImage, ImageRecord

MIN_ID_HEX = 2


def _open_shared(path: Path) -> int:
    """Open (creating) a file group rkt shares: mode 0660 whatever the umask (no umask
    juggling: it is process-wide and imports may run in threads)."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o660)
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and st.st_mode & 0o777 != 0o660:
        os.fchmod(fd, 0o660)
    return fd


class ImageStore:
    def __init__(self, data_dir: Path) -> None:
        self.layout = StoreLayout(data_dir)
        self.index = Index(self.layout.index)

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
        try:
            for path, mode in self.layout.shared_dirs():
                make_dir(path, mode)
            with self.locked(exclusive=True):  # the schema is created once, idempotently
                os.close(_open_shared(self.layout.index))  # SQLite gives -wal/-shm this mode
                self.index.create()
        except OSError as exc:
            raise LocalStateError(
                f"cannot create the image store under {self.layout.root}: {exc.strerror}",
                hint="run as root once, or add yourself to group rkt (newgrp rkt)",
            ) from exc

    @contextlib.contextmanager
    def locked(self, *, exclusive: bool) -> Iterator[None]:
        """Imports share the store lock; gc and rm hold it alone (rkt's prepareLock pattern)."""
        fd = _open_shared(self.layout.lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def scratch_file(self) -> Iterator[Path]:
        """A private temporary file in ``cas/tmp`` (same filesystem as the blobs), removed after."""
        fd, name = tempfile.mkstemp(prefix="download-", dir=self.layout.tmp)
        os.close(fd)
        try:
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        """One publisher per image at a time (rkt's imagelocks)."""
        locks = self.layout.cas / "imagelocks"
        make_dir(locks, 0o2770)
        fd = _open_shared(locks / key)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def put(
        self, admitted: AdmittedImage, original: Path, signature: bytes | None, source: str
    ) -> ImageRecord:
        """Store an admitted image (its original bytes and signature) once; return its record."""
        key = admitted.key
        with self.locked(exclusive=False), self._key_lock(key):
            existing = self.index.by_key_prefix(key)
            if existing:
                return existing[0]
            self._stage_and_publish(self.layout.blob_dir(key), admitted, original, signature)
            self.index.insert(self._record(admitted, original, source))
            return self.index.by_key_prefix(key)[0]

    def _stage_and_publish(
        self, final: Path, admitted: AdmittedImage, original: Path, signature: bytes | None
    ) -> None:
        stage = Path(tempfile.mkdtemp(prefix="import-", dir=self.layout.tmp))
        try:
            try:  # scratch files live in cas/tmp: a hard link costs nothing
                os.link(original, stage / ORIGINAL)
            except OSError:
                shutil.copyfile(original, stage / ORIGINAL)
            files = {MANIFEST: admitted.info.manifest_bytes}
            if signature is not None:
                files[SIGNATURE] = signature
            for name, data in files.items():
                (stage / name).write_bytes(data)
            for child in stage.iterdir():
                child.chmod(0o440)
                with child.open("rb") as f:
                    os.fsync(f.fileno())
            stage.chmod(0o2770)
            make_dir(final.parent, 0o2770)
            self._publish(stage, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _publish(self, stage: Path, final: Path) -> None:
        """rename(2) the staged directory into place; an unindexed leftover is replaced."""
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
        """An image by ID prefix (rkt's rules) or by name[:version] (the newest import)."""
        if ref.startswith(ID_PREFIX):
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
        return max(found, key=lambda r: r.import_time)

    def images(self) -> list[ImageRecord]:
        return self.index.all()

    def _drop(self, record: ImageRecord) -> None:
        """Forget an image: index row first (it stops being visible), then its files."""
        self.index.delete(record.key)
        shutil.rmtree(self.layout.blob_dir(record.key), ignore_errors=True)
        if os.geteuid() == 0:  # rendered trees are root's (cas/tree is 2700)
            shutil.rmtree(self.layout.tree / record.key, ignore_errors=True)

    def remove(self, record: ImageRecord) -> None:
        with self.locked(exclusive=True):
            self._drop(record)

    def gc(self, grace: timedelta) -> list[ImageRecord]:
        """Remove images unused for longer than ``grace``, trees of images that are gone,
        and stale staging directories."""
        cutoff = datetime.now(UTC) - grace
        removed = []
        with self.locked(exclusive=True):
            for record in self.index.all():
                if record.last_used < cutoff:
                    self._drop(record)
                    removed.append(record)
            self._sweep_tmp()
            self._sweep_trees()
        return removed

    def _sweep_trees(self) -> None:
        if os.geteuid() != 0 or not self.layout.tree.is_dir():
            return
        known = {r.key for r in self.index.all()}
        for tree in self.layout.tree.iterdir():
            if tree.name not in known:
                shutil.rmtree(tree, ignore_errors=True)

    def _sweep_tmp(self) -> None:
        """Staging dirs exist only under the shared lock, so under the exclusive one they are
        leftovers of killed imports; downloads (made outside the lock) must be a day old."""
        day_ago = datetime.now(UTC).timestamp() - 86400
        for entry in self.layout.tmp.iterdir():
            staged = entry.name.startswith(("import-", "stale-"))
            if staged or entry.stat().st_mtime < day_ago:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
