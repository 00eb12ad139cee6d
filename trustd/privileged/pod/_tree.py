"""``pods/`` held by directory fds, for ``rkt gc``: each state directory listed once, each pod
judged, moved and removed relative to fds root checked, never by a path built again.

``pods/`` is opened component by component from ``/`` without following a symlink, it and
every ancestor root's and not group/other-writable (sticky ``/tmp`` above is fine), as for the
data directory (``_dirfd.check_root_owned``); each state directory beneath it with
``openat2`` (no symlink, no ``..``), root's and not group/other-writable. Only root can then
add, rename or remove a name in them, so a name listed once stays the pod root judged. A
pod directory is opened ``O_NOFOLLOW`` and judged by its root lock (:mod:`._rootlock`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trustd.privileged import _dirfd
from trustd.privileged.pod import _rootlock
from trustd.shared._dataclass import frozen
from trustd.shared.errors import LocalStateError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@frozen
class Taken:
    """A pod root holds exclusively: its directory's fd (also holding the public flock where
    it could be had at once) and root's lock fd (None for the layout before it, whose lock is
    the directory's)."""

    uuid: str
    where: str
    fd: int
    lock: int | None
    ctime: float

    def close(self) -> None:
        if self.lock is not None:
            os.close(self.lock)
        os.close(self.fd)


def _check_state_dir(fd: int, path: Path) -> None:
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise LocalStateError(
            f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}; "
            "pods' state directories must be root's and not writable by group or others",
            hint=f"chown root {path} && chmod go-w {path}",
        )


class PodTree:
    """The state directories of ``pods/``, open."""

    def __init__(self, path: Path, dirs: dict[str, int]) -> None:
        self.path = path
        self._dirs = dirs

    @classmethod
    def open(cls, pods: Path, states: tuple[str, ...]) -> PodTree | None:
        """``pods`` and its ``states`` (those present), checked; None when ``pods`` is not
        there. LocalStateError when anything in the way is not root's alone."""
        try:
            top = _dirfd.check_root_owned(pods)
        except FileNotFoundError:
            return None
        dirs: dict[str, int] = {}
        try:
            for where in states:
                try:
                    fd = _dirfd.open_dir(top, where)
                except FileNotFoundError:
                    continue
                dirs[where] = fd
                _check_state_dir(fd, pods / where)
        except BaseException:
            for fd in dirs.values():
                os.close(fd)
            raise
        finally:
            os.close(top)
        return cls(pods, dirs)

    def close(self) -> None:
        while self._dirs:
            os.close(self._dirs.popitem()[1])

    def names(self, where: str) -> list[str]:
        """The pods in state ``where``, sorted (one getdents pass)."""
        fd = self._dirs.get(where)
        return sorted(os.listdir(fd)) if fd is not None else []  # noqa: PTH208 - an fd

    def _open(self, where: str, name: str) -> tuple[int, os.stat_result] | None:
        try:
            fd = os.open(name, _DIR, dir_fd=self._dirs[where])
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _rootlock.Damaged(
                f"{self.path / where / name}: {exc.strerror}; a pod must be a directory",
                hint=f"remove it: rkt rm {name}",
            ) from exc
        try:
            return fd, _rootlock.check_pod_dir(fd, str(self.path / where / name), name)
        except BaseException:
            os.close(fd)
            raise

    def _locked_pod(self, where: str, name: str) -> tuple[int, int | None, float] | None:
        """The pod's directory fd, root's lock fd in it (None for the layout before root's
        own lock, whose lock is the directory's) and the directory's ctime; None when it is
        gone. Damaged when root cannot judge it. The caller closes both fds."""
        opened = self._open(where, name)
        if opened is None:
            return None
        fd, st = opened
        try:
            lock = _rootlock.open_root_lock(fd, str(self.path / where / name), name)
        except BaseException:
            os.close(fd)
            raise
        return fd, lock, st.st_ctime

    def held(self, where: str, name: str) -> tuple[bool, float] | None:
        """(root holds the pod, its directory's ctime); None when it is gone.
        Damaged when root cannot judge it."""
        found = self._locked_pod(where, name)
        if found is None:
            return None
        fd, lock, ctime = found
        try:
            return _rootlock.held(fd if lock is None else lock, release=False), ctime
        finally:
            if lock is not None:
                os.close(lock)
            os.close(fd)

    def take(self, where: str, name: str) -> Taken | None:
        """The pod held exclusively by root until :meth:`Taken.close` (nothing can start,
        enter or remove it meanwhile); None when it is busy or gone. Damaged when root
        cannot judge it (gc says so and leaves it; ``rkt rm`` is the fix)."""
        found = self._locked_pod(where, name)
        if found is None:
            return None
        fd, lock, ctime = found
        if not _rootlock.take(fd if lock is None else lock):
            if lock is not None:
                os.close(lock)
            os.close(fd)
            return None
        if lock is not None:  # the public signal, as a courtesy: tried once, never waited on
            _rootlock.take(fd)
        return Taken(name, where, fd, lock, ctime)

    def move(self, name: str, src: str, dst: str) -> None:
        """``rename(2)`` between two state directories, by their fds."""
        os.rename(name, name, src_dir_fd=self._dirs[src], dst_dir_fd=self._dirs[dst])

    def remove(self, pod: Taken) -> None:
        """The taken pod's tree, emptied through its fd (never following a link, whatever
        the depth its apps left), then its name."""
        _dirfd.rmtree_open(self._dirs[pod.where], pod.uuid, pod.fd)
