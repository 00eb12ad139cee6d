"""Crash-safe file writes (CONVENTIONS 7): temp file in the same directory, fsync, rename."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, mode: int = 0o644, sync_dir: bool = True, durable: bool = True
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half.

    The file is fsynced, and its directory after the rename. ``sync_dir=False``: the caller
    fsyncs the directory itself, once for several files (ADR 0020 addendum, the batched
    prepare). ``durable=False``: no fsync at all, for a file only a live process reads and
    nothing reads after a crash (a running pod's /etc files); the rename keeps it whole."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if durable:
                os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    if durable and sync_dir:
        fsync_dir(path.parent)


def read_capped(path: Path, max_bytes: int) -> bytes:
    """Read a small file whole, refusing one larger than ``max_bytes``."""
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes} bytes")
    return data


_OPEN_SHARED = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_regular(name: str | Path, max_bytes: int, *, dir_fd: int | None = None) -> bytes:
    """A file someone else may write (the group's store or log) read whole: opened with no
    symlink followed and without waiting (a FIFO in its place is refused, never blocked on),
    a regular file only, at most ``max_bytes`` even when it grows while read. Refusals are
    ``OSError``s whose ``strerror`` says why (ELOOP for a symlink, EINVAL for what is not a
    regular file, EFBIG for one too large)."""
    fd = os.open(name, _OPEN_SHARED, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"{st.st_size} bytes, more than the {max_bytes} read")
        chunks, size = [], 0
        while size <= max_bytes and (chunk := os.read(fd, min(max_bytes + 1 - size, 1 << 20))):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > max_bytes:
        raise OSError(errno.EFBIG, f"grew past the {max_bytes} bytes read")
    return b"".join(chunks)
