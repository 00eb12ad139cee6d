"""The stored archive copied out of the group's store into root's space: beneath the ``cas``
fd, no symlink followed, regular files only, size-capped, and refused before a byte is
copied when it would make root write far more than the group wrote (a sparse file, or one
larger than root's free space). After the copy, nothing the group writes is read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trustd.privileged import _dirfd
from trustd.shared.errors import LocalStateError, UserError
from trustd.shared.imageid import StoreKey
from trustd.shared.store._layout import ORIGINAL, SIGNATURE

MAX_ARCHIVE = 16 << 30
MAX_SIGNATURE = 1 << 20


def _copy_regular(src_dir: int, relpath: str, dest: Path, max_bytes: int) -> None:
    """Copy the stored file ``relpath`` to ``dest`` (a new file in root's space), refusing
    first what would make root write far more than the group wrote (:func:`_refuse_to_copy`),
    and a file that changes size while it is copied (a stored blob never does)."""
    src = _dirfd.open_beneath(src_dir, relpath, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            raise LocalStateError(
                f"stored {relpath} is not a regular file of at most {max_bytes} bytes",
                hint="the store was altered; remove the image (rkt image rm) and fetch it again",
            )
        _refuse_to_copy(src, st.st_size, relpath, dest.parent)
        with dest.open("xb") as out:
            left = st.st_size + 1
            while left > 0 and (chunk := os.read(src, min(left, 1 << 20))):
                out.write(chunk)
                left -= len(chunk)
            if left != 1:
                raise LocalStateError(
                    f"stored {relpath} changed size while it was copied",
                    hint="a member of group rkt may be writing to it; remove the image "
                    "(rkt image rm) and fetch it again",
                )
    finally:
        os.close(src)


# Space root leaves free on the filesystem it copies into: 5% of it, at most 1 GiB.
_RESERVE_FRACTION, _RESERVE_MAX = 20, 1 << 30


def _refuse_to_copy(src: int, size: int, relpath: str, into: Path) -> None:
    """A stored archive with a hole, or one larger than root's free space: a fetch writes an
    archive front to back, so a hole is a member's ``truncate -s 16G`` (a few blocks of the
    group's disk that root's copy would turn into 16 GiB of its own). Holes are asked of the
    filesystem (``SEEK_HOLE``: one past the end when there is none, or where it cannot tell),
    so a compressing filesystem's small ``st_blocks`` is not mistaken for one."""
    hole = os.lseek(src, 0, os.SEEK_HOLE) if size else size
    os.lseek(src, 0, os.SEEK_SET)
    if hole < size:
        raise LocalStateError(
            f"stored {relpath} is sparse ({size} bytes, a hole at {hole}): not an archive "
            "a fetch wrote",
            hint="a member of group rkt made it; remove the image (rkt image rm), fetch it again",
        )
    fs = os.statvfs(into)
    free = fs.f_bavail * fs.f_frsize
    reserve = min(fs.f_blocks * fs.f_frsize // _RESERVE_FRACTION, _RESERVE_MAX)
    if size > free - reserve:
        raise LocalStateError(
            f"stored {relpath} is {size} bytes, more than root may copy into {into}: "
            f"{free} bytes free there, of which it keeps {reserve}",
            hint="free space there, or remove the image (rkt image rm) if it is not yours",
        )


def private_copy(cas_fd: int, key: StoreKey, into: Path) -> tuple[Path, bytes | None]:
    """Copy the stored archive (and signature) named by ``key`` into ``into``: beneath the
    ``cas`` fd, no symlink followed, regular files only. After this, nothing the group
    writes is read."""
    base = key.blob_relpath
    copy = into / ORIGINAL
    try:
        _copy_regular(cas_fd, f"{base}/{ORIGINAL}", copy, MAX_ARCHIVE)
    except FileNotFoundError as exc:
        raise UserError(
            f"image {key.id[:39]}… is not in the store",
            hint="fetch it first (rkt fetch), or see: rkt image list",
        ) from exc
    try:
        signature: bytes | None = _dirfd.read_beneath(cas_fd, f"{base}/{SIGNATURE}", MAX_SIGNATURE)
    except FileNotFoundError:
        signature = None
    return copy, signature


def open_cas(data_dir: Path) -> int:
    """``<dir>/cas`` as an fd, for callers that are not root (``rkt image render``)."""
    base = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _dirfd.open_dir(base, "cas")
    except FileNotFoundError as exc:
        raise UserError(
            f"no image store at {data_dir}", hint="fetch an image first (rkt fetch), or check --dir"
        ) from exc
    finally:
        os.close(base)
