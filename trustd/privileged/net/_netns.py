"""A pod's network namespace: made by root and pinned by a bind mount on a file in root's
``/run/trustd/netns/`` (0700), named by the pod's UUID; joined by the stage1 with setns(2).

A member of group rkt cannot create, replace or point trustd at a netns: the directory is
root's and mode 0700, the path is derived from the UUID (never read from pod state), and the
file joined must be an nsfs mount (checked by fstatfs) that root opened without following a
symlink.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path

from trustd.privileged.net import _sys as lx
from trustd.privileged.net._config import STATE_ROOT, ensure_state_dir
from trustd.shared.errors import LocalStateError

NETNS_DIR = STATE_ROOT / "netns"
NSFS_MAGIC = 0x6E736673


def netns_path(uuid: str) -> Path:
    return NETNS_DIR / uuid


def _pin(path: Path, failed: list[OSError]) -> None:
    """The body of a thread of its own: unshare(2) moves only this thread into a new
    netns, which is bind-mounted on ``path``; then the thread ends, so no other code ever
    runs in that netns (the process and its other threads stay in the host's)."""
    try:
        lx.unshare(lx.CLONE_NEWNET)
        lx.bind("/proc/thread-self/ns/net", str(path))
    except OSError as exc:
        failed.append(exc)


def create(uuid: str) -> Path:
    """A new network namespace (loopback only) pinned at ``netns_path(uuid)``."""
    ensure_state_dir(NETNS_DIR)
    path = netns_path(uuid)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    # no fork (CNI ADD runs in a worker thread) and no exec of unshare(1) (it cost 2-8 ms
    # on the start path): a short-lived thread makes and pins it
    failed: list[OSError] = []
    pinner = threading.Thread(target=_pin, args=(path, failed), name=f"netns-{uuid[:8]}")
    pinner.start()
    pinner.join()
    if failed:
        with contextlib.suppress(OSError):
            path.unlink()
        raise LocalStateError(
            f"could not create the pod's network namespace at {path}: {failed[0].strerror}"
        )
    return path


def open_netns(uuid: str) -> int:
    """An fd of the pod's pinned netns, checked to be one."""
    fd = os.open(netns_path(uuid), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if lx.fs_type(fd) != NSFS_MAGIC:
        os.close(fd)
        raise LocalStateError(f"{netns_path(uuid)} is not a network namespace")
    return fd


def join(uuid: str) -> None:
    """setns(2) into the pod's netns (the stage1, before it unshares the rest)."""
    fd = open_netns(uuid)
    try:
        lx.setns(fd, lx.CLONE_NEWNET)
    finally:
        os.close(fd)


def remove(uuid: str) -> None:
    """Unpin and delete the netns file; nothing if it is gone already."""
    path = netns_path(uuid)
    try:
        lx.umount(str(path), lx.MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
