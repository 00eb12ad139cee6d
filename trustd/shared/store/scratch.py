"""Scratch files in ``cas/tmp`` and the sweep of those a killed process left behind.

A scratch file (``download-*``: the ACI a Docker image is converted into, before it is
admitted) is held under an exclusive flock for as long as it is in use. SIGKILL releases the
lock but leaves the file, full size; the next scratch file sweeps every ``download-*`` whose
lock is free. The lock is tried on a descriptor opened with ``O_NOFOLLOW|O_NONBLOCK`` (the
directory is the group's: a link or fifo planted there is never followed or waited on), and
the unlink happens under the lock, after checking the name still names that file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from pathlib import Path

SCRATCH_PREFIX = "download-"


def free_lock(dirfd: int, name: str) -> int | None:
    """An fd holding the exclusive lock of regular file ``name`` in ``dirfd``, or None when
    someone holds it (or it is not a regular file we may open). Never follows a link."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BlockingIOError
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_if_orphan(dirfd: int, name: str, older_than: float | None = None) -> bool:
    """Unlink ``name`` when its lock is free (its owner is gone) and, with ``older_than``,
    it was last written before that time. Checked again under the lock."""
    fd = free_lock(dirfd, name)
    if fd is None:
        return False
    try:
        st = os.fstat(fd)
        if older_than is not None and st.st_mtime >= older_than:
            return False
        try:
            now = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if now.st_ino != st.st_ino:
            return False
        os.unlink(name, dir_fd=dirfd)
        return True
    finally:
        os.close(fd)


def sweep_scratch(tmp: Path) -> int:
    """Remove every ``download-*`` in ``tmp`` whose owner is gone; returns how many."""
    removed = 0
    try:
        dirfd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        for name in os.listdir(dirfd):  # noqa: PTH208 - names beneath a held fd
            if name.startswith(SCRATCH_PREFIX):
                removed += remove_if_orphan(dirfd, name)
    finally:
        os.close(dirfd)
    return removed


def locked_scratch(tmp: Path) -> tuple[int, str]:
    """A new ``download-*`` file in ``tmp`` and an fd holding its lock (the caller closes it).

    A sweeper may take the lock between the create and ours and remove the file: then the
    name no longer names our inode, and we make another. The lock is taken while the file
    is still ``mkstemp``'s 0600, before the group may read it: taken after, a member who
    opened the file in between and locked it first made the blocking ``flock`` wait for ever
    (red team 8).
    """
    while True:
        fd, name = tempfile.mkstemp(prefix=SCRATCH_PREFIX, dir=tmp)
        try:
            # only our own uid may open it yet: a sweeper of ours (another fetch), which
            # holds it to remove it; then we make another rather than wait
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            os.fchmod(fd, 0o640)
            with contextlib.suppress(FileNotFoundError):
                if Path(name).lstat().st_ino == os.fstat(fd).st_ino:
                    return fd, name
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
