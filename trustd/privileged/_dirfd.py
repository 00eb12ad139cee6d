"""Root's file operations on shared state: relative to a checked directory fd, no symlinks.

Group ``rkt`` can write the shared store, so any path root walks there may have been replaced
by a symlink, a FIFO or a directory of the group's choosing between two system calls. Every
operation here starts from a directory fd root has already checked and resolves the rest with
``openat2(2)``: ``RESOLVE_BENEATH`` (never above the fd, not even through ``..``),
``RESOLVE_NO_SYMLINKS`` (no symlink in any component) and ``RESOLVE_NO_MAGICLINKS``.
Names are created with ``mkdirat``/``openat(O_EXCL)`` and owners and modes are changed on the
opened fd (``fchown``/``fchmod``), never by path. Every failure is a
:class:`~trustd.shared.errors.LocalStateError` naming the path, with a hint.

Paths inside a container rootfs (mount points, volume targets) are resolved as if the rootfs
were ``/``: ``RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS`` from the rootfs's fd
(:func:`open_in_root`, :func:`makedirs_in_root`), so an image's ``/data -> /etc`` means the
rootfs's ``/etc``, never the host's (issue #10, class 6). A mount then names the resolved fd
(:func:`fd_path`), so it lands on exactly what was resolved.

The system call, the ``RESOLVE_*`` flags and the refusal every operation raises are in
:mod:`._dirfd_openat2`; opening paths inside a container rootfs and a host volume's source
in :mod:`._dirfd_mounts`; removing a tree in :mod:`._dirfd_rmtree`. This module holds the
rest (opening, creating, checking, reading and writing beneath a directory fd) and
re-exports those modules' public names, so callers import only ``_dirfd``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from trustd.privileged._dirfd_mounts import (
    fd_path,
    makedirs_in_root,
    open_host_path,
    open_in_root,
    open_root,
)
from trustd.privileged._dirfd_openat2 import (
    _DIR_FLAGS,
    _HINT,
    BENEATH,
    IN_ROOT,
    O_PATH,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    _check_relative,
    _refusal,
    _single_name,
    _where,
    openat2,
)
from trustd.privileged._dirfd_rmtree import rmtree_at, rmtree_open
from trustd.shared.errors import LocalStateError

__all__ = [
    "BENEATH",
    "IN_ROOT",
    "O_PATH",
    "RESOLVE_BENEATH",
    "RESOLVE_IN_ROOT",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "RESOLVE_NO_XDEV",
    "check_root_owned",
    "ensure_dir",
    "ensure_private_dir",
    "fd_path",
    "makedirs_in_root",
    "open_beneath",
    "open_dir",
    "open_host_path",
    "open_in_root",
    "open_root",
    "openat2",
    "read_beneath",
    "rmtree_at",
    "rmtree_open",
    "write_file_at",
]


def open_beneath(dirfd: int, relpath: str, flags: int, mode: int = 0o600) -> int:
    """Open ``relpath`` strictly beneath ``dirfd``: no ``..`` above it, no symlink anywhere."""
    _check_relative(dirfd, relpath)
    try:
        return openat2(dirfd, relpath, flags, mode, BENEATH)
    except OSError as exc:
        if exc.errno == errno.ENOENT and not flags & os.O_CREAT:
            raise FileNotFoundError(exc.errno, exc.strerror, _where(dirfd, relpath)) from None
        raise _refusal(dirfd, relpath, exc) from exc


def open_dir(dirfd: int, relpath: str) -> int:
    """A directory beneath ``dirfd`` (no symlinks), as an fd."""
    return open_beneath(dirfd, relpath, os.O_RDONLY | os.O_DIRECTORY)


def ensure_dir(
    parent_fd: int, name: str, mode: int, *, uid: int = 0, gid: int = 0, foreign_ok: bool = False
) -> int:
    """``name`` in ``parent_fd`` as a directory owned ``uid:gid`` with ``mode`` (created if
    missing, fixed on the fd if not); a symlink or non-directory there is refused. With
    ``foreign_ok``, a directory someone other than ``uid`` owns is returned untouched."""
    _single_name(parent_fd, name)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise _refusal(parent_fd, name, exc) from exc
    try:
        st = os.fstat(fd)
        if foreign_ok and st.st_uid != uid:
            return fd
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_private(fd: int, where: str, mode: int) -> None:
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_mode & 0o077 & ~mode:
        raise LocalStateError(
            f"{where} is owned by uid {st.st_uid} with mode "
            f"{stat.S_IMODE(st.st_mode):o}, not root's with mode {mode:o}",
            hint="root-only state must not be writable by anyone else; move it aside "
            "and run again (it will be re-created)",
        )


def ensure_private_dir(parent_fd: int, name: str, mode: int = 0o700) -> int:
    """A root-only directory: created ``root:root`` with ``mode``; one that exists must
    already be root's and not writable or readable by anyone else (it is never "fixed": a
    directory someone else owned may hold their files)."""
    _single_name(parent_fd, name)
    created = True
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
    except FileExistsError:
        created = False
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise _refusal(parent_fd, name, exc) from exc
    try:
        if created:
            os.fchown(fd, 0, 0)
            os.fchmod(fd, mode)
        else:
            _check_private(fd, _where(parent_fd, name), mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_dir_fd(fd: int, path: str, *, leaf: bool) -> None:
    st = os.fstat(fd)
    sticky = bool(st.st_mode & stat.S_ISVTX)
    writable = st.st_mode & 0o022
    if st.st_uid != 0 or (writable and (leaf or not sticky)):
        raise LocalStateError(
            f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}: "
            "root's data directory and every directory above it must be owned by root and "
            "not writable by group or others",
            hint=f"chown root {path} && chmod go-w {path}, or choose another --dir",
        )


def check_root_owned(path: Path) -> int:
    """An fd for directory ``path``, opened component by component from ``/`` without
    following symlinks; it and every ancestor are root's and not group/other-writable (an
    ancestor may be a sticky directory such as ``/tmp``)."""
    if not path.is_absolute() or any(p in (".", "..") for p in path.parts):
        raise LocalStateError(f"{path} is not a plain absolute path", hint="give --dir as one")
    fd = os.open("/", _DIR_FLAGS)
    so_far = Path("/")
    try:
        _check_dir_fd(fd, "/", leaf=path == so_far)
        parts = path.parts[1:]
        for i, part in enumerate(parts):
            so_far /= part
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise FileNotFoundError(exc.errno, exc.strerror, str(so_far)) from None
                raise _refusal(fd, part, exc) from exc
            os.close(fd)
            fd = child
            _check_dir_fd(fd, str(so_far), leaf=i == len(parts) - 1)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_beneath(dirfd: int, relpath: str, max_bytes: int) -> bytes:
    """A regular file beneath ``dirfd`` read whole, refused when larger than ``max_bytes``."""
    fd = open_beneath(dirfd, relpath, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LocalStateError(f"{_where(dirfd, relpath)} is not a regular file", hint=_HINT)
        if st.st_size > max_bytes:
            raise LocalStateError(
                f"{_where(dirfd, relpath)} is {st.st_size} bytes, more than {max_bytes}",
                hint=_HINT,
            )
        chunks, left = [], max_bytes + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise LocalStateError(f"{_where(dirfd, relpath)} grew past {max_bytes} bytes", hint=_HINT)
    return data


def write_file_at(dirfd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``name`` in ``dirfd`` with ``data``: a temp file (``O_EXCL``), fsync, rename."""
    _single_name(dirfd, name)
    tmp = f".{name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dirfd)
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dirfd
    )
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    os.fsync(dirfd)
