"""appc user/group resolution against the app's own rootfs (numeric, name, or /path owner)."""

from __future__ import annotations

from pathlib import Path

from trustd.shared.errors import UserError

MAX_DB = 1 << 20


def _lookup(rootfs: Path, db: str, name: str) -> int | None:
    path = rootfs / "etc" / db
    if path.is_symlink() or not path.is_file():
        return None
    for line in path.read_bytes()[:MAX_DB].decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def resolve_id(rootfs: Path, value: str, *, kind: str) -> int:
    """``0`` / ``daemon`` / ``/some/file`` (its owner) -> a numeric id, per the appc spec."""
    if value.isdigit():
        return int(value)
    if value.startswith("/"):
        target = rootfs / value.lstrip("/")
        if target.is_symlink() or not target.exists():
            raise UserError(f"{kind} {value!r}: no such file in the image")
        st = target.lstat()
        return st.st_uid if kind == "user" else st.st_gid
    found = _lookup(rootfs, "passwd" if kind == "user" else "group", value)
    if found is None:
        raise UserError(
            f"{kind} {value!r} is not in the image's /etc/"
            f"{'passwd' if kind == 'user' else 'group'}",
            hint=f"use a numeric {kind} id, e.g. --{kind}=0",
        )
    return found
