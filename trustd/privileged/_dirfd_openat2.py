"""The ``openat2(2)`` system call and what every :mod:`._dirfd` operation shares (private to
it): the ``RESOLVE_*`` flags, the refusal (a :class:`~trustd.shared.errors.LocalStateError`
naming the path, with a hint) and the checks of a relative path and of a single name."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from pathlib import Path

from trustd.shared.errors import DISK_FULL, LocalStateError, disk_full_error

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS

O_PATH = getattr(os, "O_PATH", 0o10000000)

_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "riscv64": 437}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_HINT = "a member of group rkt may have replaced it; check the data directory (--dir)"


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _fd_target(fd: int) -> str:
    try:
        return str(Path(f"/proc/self/fd/{fd}").readlink())
    except OSError:
        return f"<fd {fd}>"


def _where(dirfd: int, path: str) -> str:
    return f"{_fd_target(dirfd)}/{path}"


def openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    """The raw system call; raises OSError (errno as the kernel set it)."""
    machine = os.uname().machine  # platform.machine()'s answer, without loading platform
    number = _SYS_OPENAT2.get(machine)
    if number is None:  # pragma: no cover - only the architectures above are supported
        raise OSError(errno.ENOSYS, f"openat2 is not known on {machine}")
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(
        ctypes.c_long(number),
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def _refusal(dirfd: int, path: str, exc: OSError) -> LocalStateError:
    where = _where(dirfd, path)
    if exc.errno == errno.ENOTDIR:  # O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.stat(path, dir_fd=dirfd, follow_symlinks=False).st_mode):
                return LocalStateError(f"{where}: a symlink is in the way", hint=_HINT)
    if exc.errno == errno.ELOOP:
        return LocalStateError(f"{where}: a symlink is in the way", hint=_HINT)
    if exc.errno == errno.EXDEV:
        return LocalStateError(f"{where}: the path leaves its directory", hint=_HINT)
    if exc.errno == errno.ENOTDIR:
        return LocalStateError(f"{where}: a non-directory is in the way", hint=_HINT)
    if exc.errno in DISK_FULL:
        return disk_full_error(exc, where)
    return LocalStateError(
        f"{where}: {exc.strerror}", hint="check the data directory (--dir) and its permissions"
    )


def _check_relative(dirfd: int, relpath: str) -> None:
    if not relpath or relpath.startswith("/") or "\0" in relpath:
        raise LocalStateError(
            f"{_where(dirfd, relpath)}: not a relative path", hint="this is a bug in trustd"
        )


def _single_name(parent_fd: int, name: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise LocalStateError(
            f"{_where(parent_fd, name)}: not a single file name", hint="this is a bug in trustd"
        )
