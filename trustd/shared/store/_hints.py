"""Hints for a store that cannot be written, by the cause (issue #15: hints that lead
somewhere). A full disk is not a permission problem, and a member of group rkt is never
told to join group rkt."""

from __future__ import annotations

import errno
import grp
import os
import sqlite3
from pathlib import Path

from trustd.shared.store._layout import GROUP

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def in_group(name: str = GROUP) -> bool:
    """Whether this process holds group ``name`` now (a new member must log in again)."""
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        return False
    return gid == os.getegid() or gid in os.getgroups()


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_full(path: Path) -> bool:
    """The file system holding ``path`` has no block or inode left for this user."""
    try:
        st = os.statvfs(_nearest_existing(path))
    except OSError:
        return False
    return st.f_bavail == 0 or (st.f_files > 0 and st.f_favail == 0)


def full_hint(path: Path) -> str:
    where = _nearest_existing(path)
    if not where.is_dir():
        where = where.parent
    return (
        f"the file system holding {where} is full: free space there (df -h {where}), then run again"
    )


def denied_hint(root: Path) -> str:
    """Why the caller cannot write the store at ``root``, and the command that fixes it."""
    if os.geteuid() == 0:
        where = _nearest_existing(root)
        return f"{where} refuses even root (a read-only file system?): pick another --dir"
    if not in_group():
        return (
            f"add yourself to group {GROUP}: sudo usermod -aG {GROUP} $USER, "
            f"then log in again (or: newgrp {GROUP})"
        )
    parent = _nearest_existing(root)
    return (
        f"you are in group {GROUP}, but {parent} is not writable for you: create the store once "
        f"as root (sudo rkt --dir={root} image list), or give --dir a directory you own"
    )


def os_hint(exc: OSError, root: Path) -> str:
    if exc.errno in _FULL or disk_full(root):
        return full_hint(root)
    if exc.errno in _DENIED:
        return denied_hint(root)
    return f"check the file system holding {root} (dmesg may say more)"


def sqlite_hint(exc: sqlite3.Error, path: Path, root: Path) -> str:
    """SQLITE_FULL, or an I/O, can't-open or read-only error on a full file system (no
    block, or no inode: sqlite cannot create its journal), is a full disk; otherwise
    read-only and can't-open are permissions; anything else names the disk."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    maybe_full = ("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY")
    if name.startswith("SQLITE_FULL") or (name.startswith(maybe_full) and disk_full(path)):
        return full_hint(path)
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        return denied_hint(root)
    if name.startswith("SQLITE_IOERR"):
        return f"a disk I/O error under {path.parent}: check the disk (dmesg), then run again"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "another rkt command holds the store: wait for it to finish, then run again"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return f"the index is damaged: move {path} aside and fetch the images again"
    return f"check the store under {root} (its files belong to group {GROUP})"
