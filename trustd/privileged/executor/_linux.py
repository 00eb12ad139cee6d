"""The few Linux syscalls the stage1 needs, through ctypes (no privileged helper binary)."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155
SYS_SETNS = 308

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    _check(
        _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
        f"mount {fstype or source} on {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.syscall(SYS_SETNS, fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def bind(source: str, target: str, *, readonly: bool = False, recursive: bool = False) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if readonly:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


SYS_CLOSE_RANGE = 436
CLOSE_RANGE_CLOEXEC = 4
_ALL_FDS = 0xFFFFFFFF  # ~0U


def cloexec_above_stdio() -> None:
    """Every fd above 2 gets FD_CLOEXEC, in the app's process before its isolation and exec:
    an fd rkt inherited (``9</etc``, runc CVE-2024-21626) or one of ours never reaches the app.

    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) first (Linux >= 5.11); then, whatever it
    returned (an older kernel says ENOSYS), every fd still listed in /proc/self/fd is marked
    with fcntl, so the result never depends on the syscall. Any other failure raises.
    """
    _libc.syscall(SYS_CLOSE_RANGE, 3, ctypes.c_uint(_ALL_FDS), CLOSE_RANGE_CLOEXEC)
    for name in os.listdir("/proc/self/fd"):  # noqa: PTH208 - no Path objects before exec
        fd = int(name)
        if fd > 2:
            try:
                fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.EBADF:  # the listing's own fd, closed since
                    raise


def close_from(lowest: int) -> None:
    """Close every fd >= ``lowest`` now (the metadata service keeps only what it is given)."""
    if _libc.syscall(SYS_CLOSE_RANGE, lowest, ctypes.c_uint(_ALL_FDS), 0) != 0:
        os.closerange(lowest, os.sysconf("SC_OPEN_MAX"))
