"""Is the pod a network record names still alive? Judged only by what root owns (red team 4,
ADR 0019 addendum).

Root's record (``/run/trustd/net/<uuid>.json``, root-only) keeps the ``pods/`` path of the
pod's data dir as it was at attach. When a later sweep reads it that path may name something
else: the data dir removed (the very case the sweep is for) and its path made again by
whoever may write its parent (under sticky ``/tmp``: any local user), with a symlink from
``pods/run/<uuid>`` to another, live pod's directory, so that root took the dead pod for
alive and kept its addresses, veth and NAT rules for ever. Now root opens ``pods/`` component
by component from ``/`` without following a symlink, every directory root's and not
group/other-writable (:func:`trustd.privileged._dirfd.check_root_owned`); the state dir and
the pod dir beneath that fd with ``openat2`` (no symlink, no ``..``), the pod dir root's and
not group/other-writable; ``private/`` 0700 root:root; ``private/lock`` a regular file of
root's, opened non-blocking. Only an exclusive flock held on that file is a live pod.
Anything else root did not make is not believed (:class:`Untrusted`, with the reason): the
pod counts as gone.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from trustd.privileged import _dirfd
from trustd.privileged.pod import _rootlock
from trustd.privileged.pod.lifecycle import STATE_DIRS
from trustd.shared.errors import LocalStateError

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DIR = os.O_RDONLY | os.O_DIRECTORY


class Untrusted(Exception):
    """What root read there is not what root made: it decides nothing."""


def _at(dirfd: int, rel: str, flags: int, where: str) -> int | None:
    """``rel`` beneath ``dirfd`` (no symlink, no ``..``), or None when it is not there."""
    try:
        return _dirfd.openat2(dirfd, rel, flags, 0, _dirfd.BENEATH)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        if exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):
            raise Untrusted(f"{where}: a symlink or non-directory is in the way") from exc
        raise Untrusted(f"{where}: {exc.strerror}") from exc


def _alive_in(top: int, rel: str, where: str, uuid: str) -> bool:
    pod = _at(top, rel, _DIR, where)
    if pod is None:
        return False
    try:
        _rootlock.check_pod_dir(pod, where, uuid)
        lock = _rootlock.open_root_lock(pod, where, uuid)
    except _rootlock.Damaged as exc:
        raise Untrusted(exc.message) from exc
    finally:
        os.close(pod)
    if lock is None:  # no root lock (the old layout): nothing root holds
        return False
    try:
        return _rootlock.held(lock, release=False)  # the close releases the shared lock
    finally:
        os.close(lock)


def pod_alive(pods: Path, uuid: str) -> bool:
    """Root holds the pod's lock in ``pods/<state>/<uuid>/private/lock``; False when no such
    pod is there (``pods`` gone included); Untrusted when root did not make what is there."""
    if not UUID.fullmatch(uuid):
        raise Untrusted(f"{uuid!r} is not a pod UUID")
    try:
        top = _dirfd.check_root_owned(pods)
    except FileNotFoundError:
        return False
    except LocalStateError as exc:
        raise Untrusted(exc.message) from exc
    try:
        return any(_alive_in(top, f"{s}/{uuid}", f"{pods}/{s}/{uuid}", uuid) for s in STATE_DIRS)
    finally:
        os.close(top)
