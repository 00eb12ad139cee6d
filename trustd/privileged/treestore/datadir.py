"""Root's view of the data directory: checked once, then used only through directory fds.

    <dir>/                    2750 root:rkt  root's; no ancestor group/other-writable
    <dir>/cas/                the group's store; root reads blobs beneath it by checked key
    <dir>/private/            0700 root:root
    <dir>/private/tree/<id>/  rendered trees and their ``rendered`` markers
    <dir>/private/used/<id>   root's last-used stamp per image (prepare and run write it)
    <dir>/private/decisions.jsonl  root's decision log (run gates)
    <dir>/private/lock        prepare holds it shared while it renders and plans; gc alone

Root never opens the store index and never builds a path from what the group wrote; its
part of setting up the shared store is making directories, without following symlinks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trustd.privileged import _dirfd
from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.imageid import StoreKey
from trustd.shared.store._layout import StoreLayout, group_id
from trustd.shared.store.model import RemoteRecord, remote_record

PRIVATE = "private"
TREE = "tree"
USED = "used"
LOCK = "lock"
ROOT_LOG = "decisions.jsonl"
REMOTES = "remotes.json"  # root's own record of the URLs it fetched
FETCHED = "fetched.json"  # root's own record of the images its fetches admitted
MAX_RECORDS = 4096  # entries a record keeps, the newest; one is ~300 bytes
_RECORD_MAX = 4 << 20  # what root reads of one, and so the most it writes
# A longer URL or ETag is not recorded (the URL is fetched as new next time): the server
# picks the ETag (the transport joins repeated headers: megabytes), and a few such records
# put the file past what its reader takes, which stopped every root fetch (red team 10).
_REMOTE_URL_MAX = 8192
_REMOTE_ETAG_MAX = 1024
_STAMP_MAX = 64


@frozen
class DataDir:
    """``--dir`` as root holds it: fds for the data dir, ``cas`` and ``private``."""

    path: Path
    fd: int
    private_fd: int

    @property
    def private(self) -> Path:
        """A path for root-only state (every ancestor was checked: no one else can write)."""
        return self.path / PRIVATE

    def cas_fd(self) -> int:
        """A fresh fd for ``cas`` (a real directory, no symlink); the caller closes it."""
        return _dirfd.open_dir(self.fd, "cas")

    def close(self) -> None:
        for fd in (self.private_fd, self.fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> DataDir:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("cannot run as unprivileged user", hint="run it as root (sudo)")


def _root_dir(path: Path) -> int:
    gid = group_id()
    try:
        fd = _dirfd.check_root_owned(path)
    except FileNotFoundError:
        try:
            parent = _dirfd.check_root_owned(path.parent)
        except FileNotFoundError as exc:
            raise LocalStateError(
                f"cannot create the data directory {path}: {exc.filename} does not exist",
                hint=f"create it (mkdir -p {path.parent}) or choose another --dir",
            ) from exc
        try:
            return _dirfd.ensure_dir(parent, path.name, 0o2750, uid=0, gid=gid or 0)
        finally:
            os.close(parent)
    try:  # root's own directory, reached without a symlink: give the group traverse rights
        st = os.fstat(fd)
        if gid is not None and st.st_gid != gid:
            os.fchown(fd, 0, gid)
        if st.st_mode & 0o7777 != 0o2750:
            os.fchmod(fd, 0o2750)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_data_dir(path: Path) -> DataDir:
    """Check ``path`` (root's, no ancestor writable by group or others), create it and
    ``private/`` if missing, and hold them by fd."""
    _require_root()
    path = Path.cwd() / path  # absolute; a symlink in it is for check_root_owned to refuse
    fd = _root_dir(path)
    try:
        private = _dirfd.ensure_private_dir(fd, PRIVATE)
    except BaseException:
        os.close(fd)
        raise
    return DataDir(path, fd, private)


def ensure_store_dirs(data: DataDir) -> None:
    """Root's part of setting up the shared store: its directories, 2770 root:rkt, made
    and fixed by fd without following a symlink (one in the way is refused, naming it); a
    directory the group made is left as it is. The index is never created or opened here:
    the unprivileged fetch process does that."""
    gid = group_id() or 0
    for rel, mode in StoreLayout.shared_dirs():
        parent_rel, _, name = rel.rpartition("/")
        parent = _dirfd.open_dir(data.fd, parent_rel) if parent_rel else os.dup(data.fd)
        try:
            os.close(_dirfd.ensure_dir(parent, name, mode, uid=0, gid=gid, foreign_ok=True))
        finally:
            os.close(parent)


def prepare_store(path: Path) -> None:
    """As root, before an unprivileged process uses the store: check the data dir and make
    the shared directories (nothing else)."""
    with open_data_dir(path) as data:
        ensure_store_dirs(data)


@contextlib.contextmanager
def tree_lock(data: DataDir, *, exclusive: bool) -> Iterator[None]:
    """Renders and plans share it; gc holds it alone, so a tree a pod is about to reference
    is never collected between its render and its plan."""
    fd = _dirfd.open_beneath(data.private_fd, LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def private_dir(data: DataDir, name: str) -> Iterator[int]:
    """``private/<name>`` as an fd, created root-only if missing (checked if not)."""
    fd = _dirfd.ensure_private_dir(data.private_fd, name)
    try:
        yield fd
    finally:
        os.close(fd)


def stamp_used(data: DataDir, key: StoreKey) -> None:
    """Record now as ``key``'s last use (``private/used/<id>``): gc's grace counts from it."""
    with private_dir(data, USED) as used:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        _dirfd.write_file_at(used, key.id, now.encode(), 0o600)


def used_stamps(data: DataDir) -> dict[str, datetime]:
    """Root's last-used stamps: full image ID -> time (unreadable stamps are skipped)."""
    out: dict[str, datetime] = {}
    with private_dir(data, USED) as used:
        for name in os.listdir(used):  # noqa: PTH208 - an fd, not a path
            try:
                key = StoreKey(name)
                raw = _dirfd.read_beneath(used, key.id, _STAMP_MAX)
                stamp = datetime.fromisoformat(raw.decode("ascii"))
            except (ValueError, UnicodeDecodeError, LocalStateError):
                continue
            out[key.id] = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return out


def forget_used(data: DataDir, key: StoreKey) -> None:
    with private_dir(data, USED) as used:
        _dirfd.rmtree_at(used, key.id)


def _read_record(data: DataDir, name: str) -> dict[str, Any]:
    """``private/<name>``, one of root's JSON records: an object, or ``{}`` when the file
    is missing or does not decode (a record root keeps only to spare work)."""
    try:
        raw = _dirfd.read_beneath(data.private_fd, name, _RECORD_MAX)
    except FileNotFoundError:
        return {}
    except (OSError, LocalStateError) as exc:  # a record is a cache: never a reason to stop
        why = exc.message if isinstance(exc, LocalStateError) else exc.strerror
        print(f"warning: {why}; going on as if nothing was recorded", file=sys.stderr)
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if type(doc) is dict else {}


def _update_record(
    data: DataDir, name: str, update: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Replace ``private/<name>`` by ``update`` of it, under the record's own lock (two root
    fetches at once keep both), by rename."""
    lock = _dirfd.open_beneath(data.private_fd, f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = update(_read_record(data, name))
        _dirfd.write_file_at(data.private_fd, name, json.dumps(doc).encode(), 0o600)
    finally:
        os.close(lock)


def root_remotes(data: DataDir) -> dict[str, RemoteRecord]:
    """Root's own record of the URLs it fetched (``private/remotes.json``): URL -> key,
    ETag, max-age and time, what root's fetch child consults in place of the index's
    ``remotes`` table, which the group writes. An entry that does not check is left out
    (the URL is fetched as if new)."""
    return _remotes_of(_read_record(data, REMOTES))


def _remotes_of(doc: dict[str, Any]) -> dict[str, RemoteRecord]:
    out: dict[str, RemoteRecord] = {}
    for url, fields in doc.items():
        with contextlib.suppress(ValueError, TypeError):
            out[url] = remote_record(*fields)
    return out


def record_remotes(data: DataDir, updates: Iterable[tuple[str, RemoteRecord]]) -> None:
    """Add ``updates`` to :func:`root_remotes`, keeping the newest :data:`MAX_RECORDS` URLs
    that fit what the reader takes, none with a URL or ETag past its cap."""

    def update(doc: dict[str, Any]) -> dict[str, Any]:
        records = _remotes_of(doc)
        records.update(updates)
        newest = sorted(records.items(), key=lambda item: item[1][3], reverse=True)
        kept: dict[str, Any] = {}
        size = 2  # "{}"
        for url, (key, etag, max_age, when) in newest:
            if len(url) > _REMOTE_URL_MAX or len(etag or "") > _REMOTE_ETAG_MAX:
                continue
            fields = [key, etag, max_age, when.isoformat()]
            size += len(json.dumps({url: fields})) + 2  # ", " between entries
            if len(kept) == MAX_RECORDS or size > _RECORD_MAX:
                break
            kept[url] = fields
        return kept

    _update_record(data, REMOTES, update)


def root_fetched(data: DataDir) -> dict[str, datetime]:
    """Root's own record of the images its fetches admitted (``private/fetched.json``): full
    image ID -> when. It orders the images of a name for root (``_index.pin_fetched``),
    where the index's import times are the group's to rewrite. Entries that do not check
    are left out."""
    return _fetched_of(_read_record(data, FETCHED))


def _fetched_of(doc: dict[str, Any]) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for image_id, when in doc.items():
        with contextlib.suppress(ValueError, TypeError):
            stamp = datetime.fromisoformat(when)
            if stamp.tzinfo is not None:
                out[StoreKey(image_id).id] = stamp
    return out


def record_fetched(data: DataDir, image_ids: Iterable[str], when: datetime) -> None:
    """Add ``image_ids`` to :func:`root_fetched`, the first at ``when`` and each next one a
    microsecond before the one before it (no two of one fetch tie, so the index's order,
    the group's, never decides between them), keeping the newest :data:`MAX_RECORDS`."""
    stamps = {i: (when - timedelta(microseconds=n)).isoformat() for n, i in enumerate(image_ids)}

    def update(doc: dict[str, Any]) -> dict[str, Any]:
        records = _fetched_of(doc)
        records.update(_fetched_of(stamps))  # IDs checked
        newest = sorted(records.items(), key=lambda item: item[1], reverse=True)
        return {image_id: stamp.isoformat() for image_id, stamp in newest[:MAX_RECORDS]}

    _update_record(data, FETCHED, update)


def open_root_log(data: DataDir, *, create: bool) -> int | None:
    """Root's decision log (``private/decisions.jsonl``), opened by fd with no symlink
    followed; None when it does not exist and ``create`` is false."""
    flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
    try:
        return _dirfd.open_beneath(data.private_fd, ROOT_LOG, flags, 0o600)
    except FileNotFoundError:
        return None


_SWEEP_WAIT = 2.0  # seconds root waits for the group's store lock, holding its tree lock


def _lock_briefly(fd: int) -> bool:
    """The exclusive flock on ``fd`` (the group's ``cas/lock``) within :data:`_SWEEP_WAIT`:
    the caller holds root's tree lock, which every run waits for, and a member can hold this
    one for ever (red team 5)."""
    deadline = time.monotonic() + _SWEEP_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        else:
            return True


def sweep_store_tmp(data: DataDir) -> list[str]:
    """Remove the staging directories killed imports left in ``cas/tmp`` (``import-*``,
    ``stale-*``), which the group's own gc may lack the rights to remove (a member's 0700
    staging directory). Under the store's exclusive lock (no import is staging), by fd,
    following no symlink, never leaving ``cas/tmp`` and never entering a directory root owns
    (so nothing goes that its owner could not have removed). The lock is tried for at most
    two seconds; held longer (by a member, for ever), the sweep is skipped and said."""
    cas = data.cas_fd()
    try:
        lock = _dirfd.open_beneath(cas, "lock", os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(lock).st_mode):
                raise LocalStateError(
                    f"{data.path}/cas/lock is not a regular file",
                    hint="a member of group rkt may have replaced it; move it aside",
                )
            if not _lock_briefly(lock):
                print(
                    f"gc: {data.path}/cas/tmp was not swept: the store lock stayed held for "
                    f"{_SWEEP_WAIT:.0f} s (a fetch, or a member of group rkt, holds it); the "
                    "next gc sweeps it",
                    file=sys.stderr,
                )
                return []
            tmp = _dirfd.open_dir(cas, "tmp")
            try:
                names = [n for n in os.listdir(tmp) if n.startswith(("import-", "stale-"))]  # noqa: PTH208
                for name in names:
                    _dirfd.rmtree_at(tmp, name, foreign_only=True)
            finally:
                os.close(tmp)
        finally:
            os.close(lock)
    except FileNotFoundError:
        return []
    finally:
        os.close(cas)
    return names
