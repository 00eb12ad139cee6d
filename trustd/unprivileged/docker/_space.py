"""Free space in the store's scratch space, checked before and while a layer downloads.

A hostile registry can declare a huge layer and send an endless body; the transport cap
bounds the body by the declared size (never above :data:`IMAGE_LIMITS`), and this module
refuses a download the file system cannot hold while keeping ``reserve`` bytes free for
everything else (the index, the decision log, other users of the disk). A full disk is
reported as full, with the numbers, never as a permission problem.
"""

from __future__ import annotations

import os

from trustd.shared.errors import LocalStateError

_MiB = 1024 * 1024
#: Bytes a download leaves free on the file system holding ``cas/tmp`` by default: 256 MiB,
#: or a twentieth of a smaller file system.
DEFAULT_RESERVE = 256 * _MiB


def default_reserve(fd: int) -> int:
    st = os.fstatvfs(fd)
    return min(DEFAULT_RESERVE, st.f_blocks * st.f_frsize // 20)


def free_bytes(fd: int) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``fd``."""
    st = os.fstatvfs(fd)
    return st.f_bavail * st.f_frsize


def _mib(n: int) -> str:
    return f"{n / _MiB:.1f} MiB"


def need_space(fd: int, need: int, reserve: int | None, what: str, where: str) -> None:
    """Refuse (LocalStateError) when ``need`` more bytes would eat into ``reserve`` (None:
    :func:`default_reserve`)."""
    if reserve is None:
        reserve = default_reserve(fd)
    free = free_bytes(fd)
    if free - need >= reserve:
        return
    raise LocalStateError(
        f"{what} needs {need} bytes ({_mib(need)}) in {where}, but only {free} bytes "
        f"({_mib(free)}) are free and {_mib(reserve)} stay in reserve",
        hint=f"the file system holding {where} is (nearly) full: free space there "
        f"(df -h {where}), then run again; nothing was stored",
    )


class SpaceWatch:
    """While a body streams: every ``every`` bytes written, the reserve must still be free."""

    def __init__(
        self, fd: int, reserve: int | None, what: str, where: str, every: int = _MiB
    ) -> None:
        self.fd, self.what, self.where, self.every = fd, what, where, every
        self.reserve = default_reserve(fd) if reserve is None else reserve
        self.since = 0

    def wrote(self, n: int) -> None:
        self.since += n
        if self.since < self.every:
            return
        self.since = 0
        need_space(self.fd, 0, self.reserve, self.what, self.where)


def disk_full(what: str, where: str, exc: OSError) -> LocalStateError:
    """The write of ``what`` hit a full disk (ENOSPC, EDQUOT): say so, with the place."""
    return LocalStateError(
        f"{what}: cannot write to {where}: {exc.strerror or exc}",
        hint=f"the file system holding {where} is full: free space there (df -h {where}), "
        "then run again; nothing was stored",
    )
