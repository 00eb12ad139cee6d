"""ctypes access to the few libc calls isolation needs: ``prctl``, ``capget``, ``capset``.

Every wrapper raises :class:`OSError` with the errno libc set; callers turn that into the
domain error (fail closed).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_SECCOMP = 21
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_U32 = 0xFFFFFFFF

_libc = ctypes.CDLL(None, use_errno=True)


def _raise_errno() -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """``prctl(2)``; returns its non-negative result, raises OSError on -1."""
    args = (ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5))
    res = int(_libc.prctl(ctypes.c_int(option), *args))
    if res < 0:
        _raise_errno()
    return res


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


@dataclass(frozen=True)
class CapState:
    """The calling thread's capability sets, as 64-bit masks."""

    effective: int
    permitted: int
    inheritable: int


def capget() -> CapState:
    """``capget(2)`` for the calling thread (version 3: two 32-bit words per set)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if int(_libc.capget(ctypes.byref(header), data)) != 0:
        _raise_errno()
    return CapState(
        effective=data[0].effective | data[1].effective << 32,
        permitted=data[0].permitted | data[1].permitted << 32,
        inheritable=data[0].inheritable | data[1].inheritable << 32,
    )


def capset(state: CapState) -> None:
    """``capset(2)`` for the calling thread."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for word in (0, 1):
        shift = 32 * word
        data[word].effective = state.effective >> shift & _U32
        data[word].permitted = state.permitted >> shift & _U32
        data[word].inheritable = state.inheritable >> shift & _U32
    if int(_libc.capset(ctypes.byref(header), data)) != 0:
        _raise_errno()
