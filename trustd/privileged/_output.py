"""Files root writes where its caller asked (uuid files, exports, keys, quote bundles).

The caller names a path, but other users may own a directory on it, plant a symlink at its
last component (``/tmp/x.aci -> /etc/ld.so.preload``) or on the way (``/tmp/exports ->
/etc``). So root walks to the parent one component at a time, refuses a link another user
made and a directory other users can change (a sticky directory such as ``/tmp`` is fine,
what they made inside it is not), writes a new temp file there with
``O_CREAT|O_EXCL|O_NOFOLLOW``, and renames it over the name: ``rename(2)`` replaces a
symlink, it never follows one. A failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from trustd.shared.errors import UserError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _trusted_owner(st: os.stat_result) -> bool:
    return st.st_uid in (0, os.geteuid())


def _open_dir_checked(parent_fd: int, name: str, where: Path) -> int:
    """``name`` beneath ``parent_fd``: a directory (no link followed) that only root or the
    caller owns, and that others cannot write unless it is sticky."""
    fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=parent_fd)
    st = os.fstat(fd)
    others_write = st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != 0)
    if not _trusted_owner(st) or (others_write and not st.st_mode & stat.S_ISVTX):
        os.close(fd)
        raise UserError(
            f"will not write under {where}: other users can change what is in it",
            hint="write into a directory only root can write (or a sticky one such as /tmp)",
        )
    return fd


def _parent(path: Path) -> int:
    """The parent directory's fd, walked from ``/`` one component at a time: every symlink on
    the way must be root's (or the caller's), and every directory on the resolved path must be
    one that only root (or the caller) can change; a sticky one such as ``/tmp`` is fine, but
    what another user made inside it is not. The walk ends in an fd, so nothing renamed
    afterwards changes where the write goes."""
    given = path.parent.absolute()
    probe = Path("/")
    for part in given.parts[1:]:
        probe = probe / part
        try:
            st = os.lstat(probe)
        except OSError as exc:
            raise UserError(f"cannot write {path}: {probe}: {exc.strerror}") from exc
        if stat.S_ISLNK(st.st_mode) and not _trusted_owner(st):
            raise UserError(
                f"will not write {path}: {probe} is a link another user made",
                hint="name the real directory",
            )
    fd = os.open("/", _DIR)
    try:
        for part in Path(os.path.realpath(given)).parts[1:]:
            child = _open_dir_checked(fd, part, given)
            os.close(fd)
            fd = child
    except OSError as exc:
        os.close(fd)
        raise UserError(f"cannot write {path}: {exc.strerror}") from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_parent(path: Path) -> None:
    """Refuse now, before any work, a ``path`` whose directory other users can change."""
    os.close(_parent(path))


def _existing(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def output_file(path: Path, *, overwrite: bool, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A new file that replaces ``path`` when the block ends without an error."""
    dir_fd = _parent(path)
    try:
        found = _existing(dir_fd, path.name)
        if found is not None and (not overwrite or stat.S_ISDIR(found.st_mode)):
            raise UserError(f"{path} already exists", hint="pass --overwrite, or another name")
        temp = f".{path.name}.{os.urandom(6).hex()}"
        fd = os.open(temp, _NEW, mode, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.rename(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def write_output(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    with output_file(path, overwrite=overwrite) as out:
        out.write(data)


def output_dir(path: Path) -> Path:
    """``path`` as a directory root made, or a real one root owns (never a link)."""
    dir_fd = _parent(path)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path.name, 0o755, dir_fd=dir_fd)
        found = _existing(dir_fd, path.name)
        if found is None or not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
            raise UserError(
                f"will not write into {path}: it is not a directory root owns",
                hint="name a new directory, or remove what is there",
            )
    finally:
        os.close(dir_fd)
    return path
