"""The few system calls the network side needs (ctypes; the executor has its own set)."""

from __future__ import annotations

import ctypes
import os
import struct

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
SYS_SETNS = 308  # x86_64
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def bind(source: str, target: str) -> None:
    _check(_libc.mount(source.encode(), target.encode(), None, MS_BIND, None), "mount")


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), "umount2")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def fs_type(fd: int) -> int:
    buf = ctypes.create_string_buffer(128)  # struct statfs; f_type is its first long
    _check(_libc.fstatfs(fd, buf), "fstatfs")
    return int(struct.unpack_from("l", buf.raw)[0])
