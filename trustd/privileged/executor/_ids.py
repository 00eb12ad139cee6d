"""appc user/group resolution against the app's own rootfs (numeric, name, or /path owner)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trustd.privileged import _dirfd
from trustd.shared.errors import LocalStateError, UserError

MAX_DB = 1 << 20


def _open_in(rootfs: Path, path: str, flags: int) -> int | None:
    """``path`` opened inside the image's rootfs (symlinks, ``..`` and absolute links all
    resolve within it: an image's ``/etc -> /proc/self/root/etc`` reads nothing of the host)."""
    root = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _dirfd.open_in_root(root, path, flags | os.O_CLOEXEC)
    except (FileNotFoundError, LocalStateError):
        return None
    finally:
        os.close(root)


def _read_db(rootfs: Path, db: str) -> str:
    fd = _open_in(rootfs, f"/etc/{db}", os.O_RDONLY | os.O_NOFOLLOW)
    if fd is None:
        return ""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return ""
        return f.read(MAX_DB).decode(errors="replace")


def _lookup(rootfs: Path, db: str, name: str) -> int | None:
    for line in _read_db(rootfs, db).splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def resolve_id(rootfs: Path, value: str, *, kind: str) -> int:
    """``0`` / ``daemon`` / ``/some/file`` (its owner) -> a numeric id, per the appc spec."""
    if value.isdigit():
        return int(value)
    if value.startswith("/"):
        fd = _open_in(rootfs, value, os.O_PATH | os.O_NOFOLLOW)
        if fd is None:
            raise UserError(f"{kind} {value!r}: no such file in the image")
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if stat.S_ISLNK(st.st_mode):
            raise UserError(f"{kind} {value!r}: no such file in the image")
        return st.st_uid if kind == "user" else st.st_gid
    found = _lookup(rootfs, "passwd" if kind == "user" else "group", value)
    if found is None:
        raise UserError(
            f"{kind} {value!r} is not in the image's /etc/"
            f"{'passwd' if kind == 'user' else 'group'}",
            hint=f"use a numeric {kind} id, e.g. --{kind}=0",
        )
    return found
