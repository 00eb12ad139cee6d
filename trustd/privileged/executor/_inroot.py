"""Paths inside an app's rootfs, resolved as if the rootfs were ``/`` (RESOLVE_IN_ROOT).

An image may hold ``/data -> /etc``; a mountPoint ``/data`` must then become ``<rootfs>/etc``,
never the host's /etc (issue #10, class 6). Every lookup here is an openat2() from a dir fd
of the rootfs with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS: absolute symlinks and ``..`` are
clamped to the rootfs. Missing components are created with mkdirat() under the fd of their
resolved parent. The caller mounts onto ``/proc/self/fd/N`` of the fd it gets, so the mount
lands on exactly what was resolved.

Private to the executor until trustd/privileged/_dirfd.py (open_in_root) lands; same semantics.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
O_PATH = getattr(os, "O_PATH", 0o10000000)

_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def open_in_root(rootfd: int, path: str, flags: int) -> int:
    """openat2(rootfd, path, flags, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS); an O_CLOEXEC fd."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    rel = path.lstrip("/") or "."
    fd = int(
        _libc.syscall(SYS_OPENAT2, rootfd, os.fsencode(rel), ctypes.byref(how), ctypes.sizeof(how))
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EINVAL, "a mount target must not contain '..'", path)
    return parts


def makedirs_in_root(rootfd: int, path: str, mode: int = 0o755) -> int:
    """An O_PATH fd of directory ``path`` inside the root, creating missing components
    (mkdirat under the resolved parent). A component that is a file, or a dangling symlink,
    is refused."""
    current = os.dup(rootfd)
    walked = ""
    try:
        for part in _parts(path):
            walked = f"{walked}/{part}"
            try:
                nxt = open_in_root(rootfd, walked, O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                try:
                    os.mkdir(part, mode, dir_fd=current)
                except FileExistsError as exc:
                    raise OSError(
                        errno.ENOENT, "a dangling symlink in the image; refusing it", walked
                    ) from exc
                nxt = open_in_root(rootfd, walked, O_PATH | os.O_DIRECTORY)
            os.close(current)
            current = nxt
    except BaseException:
        os.close(current)
        raise
    return current


def open_root(root: Path) -> int:
    """The rootfs directory itself (a path trustd built under the pod's private dir)."""
    return os.open(root, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def fd_path(fd: int) -> str:
    """The magic link a mount(2) target may name to mean exactly this fd's file."""
    return f"/proc/self/fd/{fd}"
