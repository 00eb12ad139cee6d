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
import subprocess
from pathlib import Path

from trustd.privileged.net import _sys as lx
from trustd.privileged.net._config import STATE_ROOT, ensure_state_dir
from trustd.shared.errors import LocalStateError
from trustd.shared.request import ROOT_PATH

NETNS_DIR = STATE_ROOT / "netns"
NSFS_MAGIC = 0x6E736673
UNSHARE = "/usr/bin/unshare"


def netns_path(uuid: str) -> Path:
    return NETNS_DIR / uuid


def create(uuid: str) -> Path:
    """A new network namespace (loopback only) pinned at ``netns_path(uuid)``."""
    ensure_state_dir(NETNS_DIR)
    path = netns_path(uuid)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    # util-linux's unshare(1) pins the new netns on the file (a bind mount): an exec, not
    # a fork of this process, so it is safe from the worker thread that runs CNI ADD
    done = subprocess.run(  # noqa: S603 - a fixed root-owned binary, no shell
        [UNSHARE, f"--net={path}", "/bin/true"],
        capture_output=True,
        env={"PATH": ROOT_PATH},
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        with contextlib.suppress(OSError):
            path.unlink()
        raise LocalStateError(
            f"could not create the pod's network namespace at {path}: "
            f"{done.stderr.decode(errors='replace').strip()[:300]}"
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
