"""The data directory as rkt ships it: setgid group-``rkt`` store dirs, root-only trees.

<dir>/                     2750 root:rkt
<dir>/cas/                 2770 root:rkt   (flock'd: shared to import, exclusive for gc/rm)
<dir>/cas/db/index.sqlite  0660            (WAL)
<dir>/cas/blob/sha512/<2 hex>/sha512-<64 hex>/{image.aci, image.aci.asc, manifest}
<dir>/cas/tmp/             2770            (staging; a killed fetch leaves only this)
<dir>/cas/tree/            2700            (rendered trees, root only)
"""

from __future__ import annotations

import contextlib
import grp
import os
from pathlib import Path

GROUP = "rkt"
ADMIN_GROUP = "rkt-admin"
ORIGINAL = "image.aci"
SIGNATURE = "image.aci.asc"
MANIFEST = "manifest"


def group_id(name: str = GROUP) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


class StoreLayout:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.cas = data_dir / "cas"
        self.db = self.cas / "db"
        self.index = self.db / "index.sqlite"
        self.blobs = self.cas / "blob" / "sha512"
        self.tmp = self.cas / "tmp"
        self.tree = self.cas / "tree"
        self.lock = self.cas / "lock"

    def blob_dir(self, key: str) -> Path:
        hexpart = key.removeprefix("sha512-")
        return self.blobs / hexpart[:2] / key

    def shared_dirs(self) -> list[tuple[Path, int]]:
        return [
            (self.root, 0o2750),
            (self.cas, 0o2770),
            (self.db, 0o2770),
            (self.cas / "blob", 0o2770),
            (self.blobs, 0o2770),
            (self.tmp, 0o2770),
            (self.root / "policy", 0o2770),  # the decision log: fetches append to it too
        ]


def make_dir(path: Path, mode: int) -> None:
    """Create ``path`` with ``mode`` (setgid bits included) and group rkt when we may."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid != os.geteuid():
        return  # someone else's directory: leave its mode alone
    gid = group_id()
    if gid is not None and os.geteuid() == 0:
        os.chown(path, -1, gid)
    with contextlib.suppress(PermissionError):
        path.chmod(mode)
