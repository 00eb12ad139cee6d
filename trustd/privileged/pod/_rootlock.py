"""Root's lock on a pod, read through the pod directory's fd: the one check that
:meth:`Pod.held`, ``rkt gc`` and the CNI sweep (``trustd.privileged.net._sweep``) all make.

Root believes a lock only where nobody else could have put it: the pod directory root's and
not writable by group or others, ``private/`` a real directory 0700 root:root,
``private/lock`` a regular file of root's. Every name is opened with ``O_NOFOLLOW`` beneath
the fd before it, so no symlink is followed; the lock file is opened non-blocking (never a
FIFO to wait on). Anything else is :class:`Damaged`, with the reason; a ``private/`` or a
lock that is not there at all is the layout before root's own lock (None).
"""

from __future__ import annotations

import fcntl
import os
import stat

from trustd.shared.errors import LocalStateError

PRIVATE = "private"
LOCK = "lock"  # under private/
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK = os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


class Damaged(LocalStateError):
    """What is there is not what root made: root cannot judge the pod by it."""


def _damaged(message: str, uuid: str) -> Damaged:
    return Damaged(
        message, hint=f"someone changed the pod's directory; remove the pod: rkt rm {uuid}"
    )


def check_pod_dir(fd: int, where: str, uuid: str) -> os.stat_result:
    """The pod directory on ``fd`` is root's and not group/other-writable; its stat."""
    st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != 0 or mode & 0o022:
        raise _damaged(
            f"{where} is owned by uid {st.st_uid} with mode {mode:o}; a pod's directory must "
            "be root's and not writable by group or others",
            uuid,
        )
    return st


def check_private(fd: int, where: str, uuid: str) -> None:
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_gid != 0 or stat.S_IMODE(st.st_mode) != 0o700:
        raise _damaged(
            f"{where} is owned by {st.st_uid}:{st.st_gid} with mode "
            f"{stat.S_IMODE(st.st_mode):o}; a pod's private state must be 0700 root:root",
            uuid,
        )


def open_root_lock(pod_fd: int, where: str, uuid: str) -> int | None:
    """An fd on ``private/lock`` beneath the pod directory ``pod_fd`` (``where`` names it in
    messages), checked as the module says; None when ``private/`` or the lock is missing."""
    try:
        private = os.open(PRIVATE, _DIR, dir_fd=pod_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP/ENOTDIR: a symlink or a file
        raise _damaged(
            f"{where}/{PRIVATE}: {exc.strerror}; a pod's private state must be a directory", uuid
        ) from exc
    try:
        check_private(private, f"{where}/{PRIVATE}", uuid)
        try:
            lock = os.open(LOCK, _LOCK, dir_fd=private)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _damaged(f"{where}/{PRIVATE}/{LOCK}: {exc.strerror}", uuid) from exc
        st = os.fstat(lock)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0:
            os.close(lock)
            raise _damaged(f"{where}/{PRIVATE}/{LOCK} is not a regular file of root's", uuid)
        return lock
    finally:
        os.close(private)


def held(fd: int, *, release: bool) -> bool:
    """Somebody holds an exclusive flock on ``fd``'s file (tried shared, then released, or
    left for the caller's ``close`` to release)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    if release:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def take(fd: int) -> bool:
    """The exclusive flock on ``fd`` taken without waiting; False when somebody holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
