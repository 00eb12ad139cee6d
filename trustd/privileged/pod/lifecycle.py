"""rkt's pod lifecycle (Documentation/devel/pod-lifecycle.md): state is the directory a pod
sits in, transitions are rename(2), and liveness is an flock held by whoever owns the pod.

    pods/embryo/<uuid>   -> pods/prepare/<uuid> (locked while preparing)
    pods/prepared/<uuid> -> pods/run/<uuid> (locked while running; unlocked = exited)
    pods/run/<uuid>      -> pods/exited-garbage/<uuid> -> removed by gc after the grace period
    pods/prepare/<uuid> unlocked = aborted prepare -> pods/garbage/<uuid>

A pod directory (0750 root:rkt) holds only public, non-secret state that group rkt may read:
timestamps, ``info.json`` (app names, image names and keys), ``apps/<name>/{pid,exit}`` and
``measurement.json``. Everything secret or app-written -- ``plan.json`` (env, args), the pod
manifest ``pod``, the overlay upper/work dirs, empty volumes, the stage1 mount points -- is
under ``<pod>/private/`` (0700 root:root), created and checked through a directory fd, so no
member of group rkt can read a secret or reach a file an app wrote (issue #10).

Two locks (red team 3): root's own is an flock on ``<pod>/private/lock``, which only root can
open, and every decision root makes (busy, running, exited, collectable) reads that one
(``held()``, ``state(by_root=True)``). The
flock on the pod directory, rkt's liveness signal, is kept for ``rkt list`` and other readers
in group rkt; since any member may open the directory and hold a shared flock on it, root
takes it as a courtesy and never waits on it or believes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from trustd.privileged import _dirfd
from trustd.privileged.pod import _rootlock
from trustd.privileged.pod.model import PodState
from trustd.shared._dataclass import frozen
from trustd.shared._uuid4 import uuid4
from trustd.shared.errors import LocalStateError, UserError

STATE_DIRS = ("embryo", "prepare", "prepared", "run", "exited-garbage", "garbage")
MANIFEST = "pod"  # under private/
PLAN = "plan.json"  # under private/
INFO = "info.json"  # public
PRIVATE = _rootlock.PRIVATE
LOCK = _rootlock.LOCK  # under private/: root's lock
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PUBLIC_TRIES = 50  # x 10 ms: rkt list holds the public lock for a moment only


@frozen
class Pod:
    uuid: str
    path: Path

    @property
    def where(self) -> str:
        return self.path.parent.name

    @property
    def private(self) -> Path:
        """The root-only part of the pod's state (0700 root:root)."""
        return self.path / PRIVATE

    def legacy(self) -> bool:
        """Prepared by an older trustd that kept plan.json readable by group rkt."""
        return not self.private.is_dir() and (self.path / PLAN).exists()

    def check_private(self) -> Path:
        """The private dir, after checking it is a real dir, root-owned, mode 0700."""
        if self.legacy():
            raise LocalStateError(
                f"pod {self.uuid} uses the old layout, which kept its plan and secrets "
                "readable by group rkt",
                hint=f"remove it and prepare it again: rkt rm {self.uuid}",
            )
        try:
            fd = os.open(self.private, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:  # missing, a symlink, not a directory
            raise LocalStateError(
                f"{self.private}: {exc.strerror}; a pod's private state must be a directory",
                hint=f"remove the pod: rkt rm {self.uuid}",
            ) from exc
        try:
            _check_private_fd(fd, self.private)
        finally:
            os.close(fd)
        return self.private

    def _private_lock(self, *, create: bool) -> int | None:
        """An fd on ``<pod>/private/lock`` (created if ``create``), or None for a pod of the
        layout before it (its directory lock is all there is)."""
        try:
            parent = os.open(self.private, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a symlink or a file: damaged, as the check says
            raise LocalStateError(
                f"{self.private}: {exc.strerror}; a pod's private state must be a directory",
                hint=f"remove the pod: rkt rm {self.uuid}",
            ) from exc
        try:
            _check_private_fd(parent, self.private)
            flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
            try:
                return os.open(LOCK, flags, 0o600, dir_fd=parent)
            except FileNotFoundError:
                return None
        finally:
            os.close(parent)

    def locked(self, fd: int | None = None, *, release: bool = True) -> bool:
        """The public signal, as readers in group rkt see it: somebody holds the directory's
        flock; ``fd``: the pod directory, already open (its lock is tried, then released;
        ``release=False``: left for the caller's ``close`` to release, which must follow at
        once). Root never decides by it."""
        if fd is not None:
            return _held(fd, release=release)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            return _held(fd, release=False)
        finally:
            os.close(fd)

    def held(self, *, removing: bool = False) -> bool:
        """Root holds the pod (preparing, running, or deleting): its lock in ``private/``
        (:mod:`._rootlock`, the check gc and the CNI sweep make too), or, for a pod of the
        layout before it, the directory's (so too when ``removing`` a pod that fails the
        check)."""
        fd = os.open(self.path, _DIR)
        try:
            try:
                _rootlock.check_pod_dir(fd, str(self.path), self.uuid)
                own = _rootlock.open_root_lock(fd, str(self.path), self.uuid)
            except LocalStateError:
                if not removing:
                    raise
                own = None
            if own is None:
                return _held(fd, release=False)
        finally:
            os.close(fd)
        try:
            return _held(own, release=False)
        finally:
            os.close(own)

    def state(
        self, fd: int | None = None, *, by_root: bool = False, release: bool = True
    ) -> PodState:
        """The pod's state; ``by_root``: judged by root's lock (root's decisions), else by
        the public one (what ``rkt list`` shows; ``release`` as for :meth:`locked`)."""
        locked = self.held() if by_root else self.locked(fd, release=release)
        return state_of(self.where, locked=locked)

    def lock(self, *, removing: bool = False) -> PodLock:
        """Take the pod's exclusive lock (root's, then the public one); hold the returned
        lock for as long as the pod is owned. A pod of the layout before ``private/`` has
        only its directory's lock (it can only be removed); so has a pod whose ``private/``
        fails its check when ``removing`` (``rkt rm`` is the fix the check's error names)."""
        try:
            own = self._private_lock(create=True)
        except LocalStateError:
            if not removing:
                raise
            own = None
        legacy = own is None
        if own is None:
            own = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(own, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(own)
            raise UserError(
                f'pod "{self.uuid}" is busy (preparing, running or being removed)'
            ) from exc
        return PodLock(own, None if legacy else self._public_lock())

    def _public_lock(self) -> int | None:
        """The directory's flock for readers in group rkt, if nobody else holds it."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        for _ in range(_PUBLIC_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                time.sleep(0.01)
            else:
                return fd
        os.close(fd)
        print(
            f"warning: pod {self.uuid}: another process holds a lock on the pod's directory; "
            "rkt list may show the pod as not running while it runs",
            file=sys.stderr,
        )
        return None


_STATES = {  # where -> (state when locked, state when not)
    "embryo": (PodState.EMBRYO, PodState.EMBRYO),
    "prepare": (PodState.PREPARING, PodState.ABORTED_PREPARE),
    "prepared": (PodState.PREPARED, PodState.PREPARED),
    "run": (PodState.RUNNING, PodState.EXITED),
    "exited-garbage": (PodState.DELETING, PodState.EXITED_GARBAGE),
    "garbage": (PodState.DELETING, PodState.GARBAGE),
}


def locked_at(fd: int) -> bool:
    """:meth:`Pod.locked` of the pod directory ``fd``, the shared lock left for the caller's
    ``close`` to release (which must follow at once)."""
    return _held(fd, release=False)


def state_of(where: str, *, locked: bool) -> PodState:
    """The state of a pod in ``pods/<where>`` whose lock is (not) held."""
    return _STATES[where][0 if locked else 1]


class PodLock:
    """Root's hold on a pod: the private lock, and the public one where it could be had."""

    __slots__ = ("_fds",)

    def __init__(self, own: int, public: int | None) -> None:
        self._fds = [own] if public is None else [own, public]

    def close(self) -> None:
        """Release both (the public one first: a reader then sees the pod as root does)."""
        while self._fds:
            os.close(self._fds.pop())


_held = _rootlock.held


def _check_private_fd(fd: int, path: Path) -> None:
    _rootlock.check_private(fd, str(path), path.parent.name)


def make_private(pod_dir: Path) -> None:
    """Create ``<pod>/private`` 0700 root:root through the pod dir's fd (never a symlink)."""
    parent = os.open(pod_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.mkdir(PRIVATE, 0o700, dir_fd=parent)
        fd = os.open(PRIVATE, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        try:
            os.fchown(fd, 0, 0)  # not the setgid parent's group rkt
            os.fchmod(fd, 0o700)
            _check_private_fd(fd, pod_dir / PRIVATE)
        finally:
            os.close(fd)
    finally:
        os.close(parent)


class PodStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "pods"

    def ensure(self) -> None:
        for name in STATE_DIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
            (self.root / name).chmod(0o2750)
        self.root.chmod(0o2750)

    def check(self) -> None:
        """``pods/`` and every directory above it are root's and not group/other-writable
        (as the data directory must be for a run): before ``rkt rm`` writes root's
        registries beside it. Nothing to check when it is not there."""
        with contextlib.suppress(FileNotFoundError):
            os.close(_dirfd.check_root_owned(self.root))

    def new(self) -> tuple[Pod, PodLock]:
        """A new pod in ``prepare``, locked by the returned fd (rkt: embryo then prepare)."""
        self.ensure()
        uuid = uuid4()
        embryo = self.root / "embryo" / uuid
        embryo.mkdir(mode=0o750)
        make_private(embryo)
        pod = Pod(uuid, embryo)
        lock = pod.lock()
        target = self.root / "prepare" / uuid
        embryo.rename(target)
        return Pod(uuid, target), lock

    def move(self, pod: Pod, where: str) -> Pod:
        target = self.root / where / pod.uuid
        pod.path.rename(target)
        return Pod(pod.uuid, target)

    def pods(self) -> Iterator[Pod]:
        for where in STATE_DIRS:
            base = self.root / where
            if base.is_dir():
                for name in sorted(p.name for p in base.iterdir()):  # str compares are cheap
                    yield Pod(name, base / name)

    def find(self, prefix: str) -> Pod:
        """rkt's UUID-prefix rule."""
        if not prefix:
            raise UserError("UUID cannot be empty")
        matches = [p for p in self.pods() if p.uuid.startswith(prefix.lower())]
        if not matches:
            raise UserError(f'no matches found for "{prefix}"', hint="see: rkt list")
        if len(matches) > 1:
            raise UserError(f"ambiguous uuid, {len(matches)} matches", hint="give more of it")
        return matches[0]

    def remove(self, pod: Pod) -> None:
        """By fd, never following a link, whatever the depth of what its apps left."""
        parent = os.open(pod.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            _dirfd.rmtree_at(parent, pod.path.name)
        finally:
            os.close(parent)
