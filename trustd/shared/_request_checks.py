"""Bounds and checks the root program's pod requests share (trustd/shared/request.py):
root re-checks every field, whatever the front end did."""

from __future__ import annotations

import re
from typing import Literal

from trustd.shared.imageid import StoreKey

_UUID_PREFIX = re.compile(r"[0-9a-f][0-9a-f-]{0,35}")
_APP_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# What an app's environment, annotation and label may hold (root re-checks each, whatever
# the front end did): a name without "=" or NUL, a value without NUL.
MAX_NAME = 1024
MAX_VALUE = 128 << 10
Ipc = Literal["auto", "private", "parent"]
IPC_MODES: tuple[Ipc, ...] = ("auto", "private", "parent")
GID_MAX = 2**32 - 2  # (gid_t)-1 means "no change" to setgroups/setgid
NGROUPS_MAX = 65536
OOM_SCORE_ADJ = (-1000, 1000)
CPU_SHARES = (2, 262144)  # cgroup v1 cpu.shares bounds (appc os/linux/cpu-shares)


def _absolute(path: str, what: str) -> None:
    if not path.startswith("/") or "\0" in path:
        raise ValueError(f"{what} must be an absolute path, not {path!r}")


def _pairs(pairs: tuple[tuple[str, str], ...], what: str, *, env: bool = False) -> None:
    for name, value in pairs:
        bad = not name or len(name) > MAX_NAME or "\0" in name or (env and "=" in name)
        if bad:
            raise ValueError(f"{what} name {name[:80]!r} is empty, too long or has = or NUL")
        if len(value) > MAX_VALUE or "\0" in value:
            raise ValueError(f"{what} {name[:80]!r}: its value is over {MAX_VALUE} or has NUL")


def _in_range(value: int | None, bounds: tuple[int, int], what: str) -> None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{what} {value} is not in {bounds[0]}..{bounds[1]}")


def check_image_id(value: str) -> str:
    """``value`` if it is exactly a full image ID, else :class:`UserError` (never a path)."""
    return StoreKey.parse(value).id


def _uuid(value: str) -> None:
    if not _UUID_PREFIX.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not a pod UUID (prefix)")
