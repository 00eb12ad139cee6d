"""The data directory as rkt ships it: setgid group-``rkt`` store dirs, root-only trees.

<dir>/                     2750 root:rkt
<dir>/cas/                 2770 root:rkt   (flock'd: shared to import, exclusive for gc/rm)
<dir>/cas/db/index.sqlite  0660            (WAL)
<dir>/cas/blob/sha512/<2 hex>/sha512-<64 hex>/{image.aci, image.aci.asc, manifest}
    and, for a signed docker image, sha256-<64 hex> per layer and for the config (the blobs
    its signed manifest names, kept so root can re-run the conversion: ADR 0021 addendum)
<dir>/cas/tmp/             2770            (staging; a killed fetch leaves only this)
<dir>/cas/imagelocks/      2770            (one lock file per image being published)

Rendered trees are root's and live outside ``cas`` (``<dir>/private/tree``, see
trustd.privileged.treestore). Everything here is walked without following symlinks.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import re
import stat
from pathlib import Path

from trustd.shared.errors import LocalStateError

GROUP = "rkt"
ADMIN_GROUP = "rkt-admin"
ORIGINAL = "image.aci"
SIGNATURE = "image.aci.asc"
MANIFEST = "manifest"
_DOCKER_BLOB = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


def docker_blob_name(digest: str) -> str:
    """The file name a signed docker image's layer or config blob is kept under in the
    image's blob directory: its digest with ``-`` for ``:`` (``sha256-<64 hex>``)."""
    if not _DOCKER_BLOB.match(digest):
        raise LocalStateError(f"{digest!r} is not a sha256: or sha512: digest")
    return digest.replace(":", "-", 1)


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
        self.lock = self.cas / "lock"

    def blob_dir(self, key: str) -> Path:
        hexpart = key.removeprefix("sha512-")
        return self.blobs / hexpart[:2] / key

    @staticmethod
    def shared_dirs() -> list[tuple[str, int]]:
        """The group's directories, relative to the data dir, parents first."""
        return [
            ("cas", 0o2770),
            ("cas/db", 0o2770),
            ("cas/blob", 0o2770),
            ("cas/blob/sha512", 0o2770),
            ("cas/tmp", 0o2770),
            ("cas/imagelocks", 0o2770),
            ("policy", 0o2770),  # the fetch decision log (root's is under private/)
        ]


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _in_the_way(path: Path, exc: OSError) -> LocalStateError:
    what = "a symlink" if path.is_symlink() else "not a directory"
    return LocalStateError(
        f"store directory {path} is {what}"
        if exc.errno in (errno.ELOOP, errno.ENOTDIR)
        else f"cannot open store directory {path}: {exc.strerror}",
        hint="a member of group rkt may have replaced it; move it aside and run again",
    )


def open_store_dir(base: Path, rel: str, mode: int | None = None) -> int:
    """An fd for ``base/rel``, walked from ``base`` one component at a time with
    ``O_NOFOLLOW``: a symlink or non-directory on the way is refused, never followed. With
    ``mode``, a missing last component is created, and when it is ours its mode (and, as
    root, group rkt) is set on the fd, never by path."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    parts = [p for p in rel.split("/") if p]
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and mode is not None:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                raise _in_the_way(base / "/".join(parts[: i + 1]), exc) from exc
            os.close(fd)
            fd = child
        if mode is not None:
            _own(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _own(fd: int, mode: int) -> None:
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        return  # someone else's directory: leave its mode alone
    gid = group_id()
    if gid is not None and os.geteuid() == 0 and st.st_gid != gid:
        os.fchown(fd, -1, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, mode)


def make_dir(base: Path, rel: str, mode: int) -> None:
    """Create ``base/rel`` with ``mode`` (setgid bits included) and group rkt when we may,
    following no symlink below ``base``."""
    os.close(open_store_dir(base, rel, mode))


def open_shared_file(dirfd: int, name: str) -> int:
    """Open (creating) a file group rkt shares, ``name`` in ``dirfd``: mode 0660 whatever the
    umask, never through a symlink, and only a regular file (a FIFO would block)."""
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o660, dir_fd=dirfd)
    except OSError as exc:
        what = "a symlink is in the way" if exc.errno == errno.ELOOP else exc.strerror
        raise LocalStateError(
            f"store file {name!r}: {what}",
            hint="a member of group rkt may have replaced it; move it aside and run again",
        ) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise LocalStateError(
            f"store file {name!r} is not a regular file",
            hint="a member of group rkt may have replaced it; move it aside and run again",
        )
    if st.st_uid == os.geteuid() and st.st_mode & 0o777 != 0o660:
        os.fchmod(fd, 0o660)
    return fd
