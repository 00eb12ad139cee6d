"""An OCI layout's files, all opened up front (private), so root can open and a child read.

Root's ``rkt fetch`` drops to ``rkt-fetch`` before it parses anything, but a layout made by
root (umoci writes its blobs ``0600``) or kept under ``/root`` is unreadable to that child.
So the opener (root, before the fork) opens ``index.json`` and every ``blobs/<algo>/<hex>``
and hands the descriptors over; the child parses and reads only through them. Nothing is
parsed while opening and nothing is followed: each name is first opened ``O_PATH |
O_NOFOLLOW`` and only a regular file is then opened for reading (through ``/proc/self/fd``,
the same inode, so a symlink, device or FIFO swapped in is never opened by root). Each
reader keeps its own offset (``pread``), so a blob can be read twice at once.

Why not copy the layout into the store's scratch space instead: it costs a second copy of
every blob in the layout (other images' too), a size cap to choose and a cleanup step across
the privilege boundary, and a copy made as root would still have to refuse links the same way.
(A layout verified as signed, docs/adr/0028, has its chosen image's layers copied by the
child, hashed while copied, into ``cas/tmp``: an in-place rewrite of an opened file is still
seen through its fd, and a signed image's bytes must be the ones checked.)
"""

from __future__ import annotations

import errno
import io
import os
import re
import resource
import stat
from pathlib import Path
from typing import BinaryIO, Final, cast

from trustd.shared.errors import UserError

MAX_FILES: Final = 100_000
_ALGOS: Final = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}
_HINT: Final = "oci:DIR[:TAG] names a directory made by umoci, skopeo or buildah"


class _PreadFile(io.RawIOBase):
    """A read-only view of a shared fd with its own offset; closing it keeps the fd."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pos = fd, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = os.pread(self.fd, len(buffer), self.pos)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos}.get(whence)
        self.pos = (os.fstat(self.fd).st_size if base is None else base) + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


class LayoutFiles:
    """``index.json`` and the blobs of one OCI layout, by relative name, as open fds."""

    def __init__(self, path: Path, fds: dict[str, int]) -> None:
        self.path, self.fds = path, fds

    @classmethod
    def open(cls, path: Path) -> LayoutFiles:
        fds: dict[str, int] = {}
        try:
            top = _open_dir(path, None, str(path))
            try:
                _open_regular(top, "index.json", "index.json", fds)
                _open_blobs(top, path, fds)
            finally:
                os.close(top)
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        return cls(path, fds)

    def open_file(self, name: str) -> BinaryIO:
        fd = self.fds.get(name)
        if fd is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        return cast(BinaryIO, io.BufferedReader(_PreadFile(fd), 1 << 16))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def _open_dir(name: str | Path, at: int | None, label: str) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if at is not None else 0)
    try:
        return os.open(name, flags, dir_fd=at)
    except OSError as exc:
        raise UserError(f"{label} is not an OCI image layout: {exc.strerror}", hint=_HINT) from exc


def _subdir(at: int, name: str, label: str) -> int | None:
    """``name`` beneath ``at`` as a directory fd, never through a symlink; None if absent."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=at)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = exc.strerror
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            why = (
                "it is a symbolic link or not a directory, and a layout's links are never followed"
            )
        raise UserError(f"OCI layout {label}: {why}", hint=_HINT) from exc


def _open_blobs(top: int, path: Path, fds: dict[str, int]) -> None:
    blobs = _subdir(top, "blobs", f"{path}: blobs")
    if blobs is None:
        return
    try:
        _open_algos(blobs, path, fds)
    finally:
        os.close(blobs)


def _open_algos(blobs: int, path: Path, fds: dict[str, int]) -> None:
    for algo, pattern in _ALGOS.items():
        algo_fd = _subdir(blobs, algo, f"{path}: blobs/{algo}")
        if algo_fd is None:
            continue
        try:
            listed = os.listdir(algo_fd)  # noqa: PTH208 - listing through the dir fd
            names = [n for n in listed if pattern.match(n)]
            if len(fds) + len(names) > MAX_FILES:
                raise UserError(f"OCI layout {path}: more than {MAX_FILES} blobs")
            _allow_fds(len(fds) + len(names))
            for name in names:
                _open_regular(algo_fd, name, f"blobs/{algo}/{name}", fds)
        finally:
            os.close(algo_fd)


def _open_regular(at: int, name: str, key: str, fds: dict[str, int]) -> None:
    """Open ``name`` for reading if it is a regular file (never through a link)."""
    try:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=at)
    except FileNotFoundError:
        return  # reported when (if) the image needs it
    try:
        if stat.S_ISREG(os.fstat(handle).st_mode):
            fds[key] = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(handle)


def _allow_fds(count: int) -> None:
    """A large layout needs one fd per blob: raise the soft limit toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        limit = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
