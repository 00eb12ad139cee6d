"""rkt's pod lifecycle (Documentation/devel/pod-lifecycle.md): state is the directory a pod
sits in, transitions are rename(2), and liveness is an flock held by whoever owns the pod.

    pods/embryo/<uuid>   -> pods/prepare/<uuid> (locked while preparing)
    pods/prepared/<uuid> -> pods/run/<uuid> (locked while running; unlocked = exited)
    pods/run/<uuid>      -> pods/exited-garbage/<uuid> -> removed by gc after the grace period
    pods/prepare/<uuid> unlocked = aborted prepare -> pods/garbage/<uuid>
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trustd.privileged.pod.model import PodState
from trustd.shared.errors import UserError

STATE_DIRS = ("embryo", "prepare", "prepared", "run", "exited-garbage", "garbage")
MANIFEST = "pod"


@dataclass(frozen=True, slots=True)
class Pod:
    uuid: str
    path: Path

    @property
    def where(self) -> str:
        return self.path.parent.name

    def locked(self) -> bool:
        """Somebody holds the pod's lock (preparing, running, or deleting)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def state(self) -> PodState:
        locked = self.locked()
        return {
            "embryo": PodState.EMBRYO,
            "prepare": PodState.PREPARING if locked else PodState.ABORTED_PREPARE,
            "prepared": PodState.PREPARED,
            "run": PodState.RUNNING if locked else PodState.EXITED,
            "exited-garbage": PodState.DELETING if locked else PodState.EXITED_GARBAGE,
            "garbage": PodState.DELETING if locked else PodState.GARBAGE,
        }[self.where]

    def lock(self) -> int:
        """Take the pod's exclusive lock; the returned fd holds it (inherit it to keep it)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise UserError(
                f'pod "{self.uuid}" is busy (preparing, running or being removed)'
            ) from exc
        return fd


class PodStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "pods"

    def ensure(self) -> None:
        for name in STATE_DIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
            (self.root / name).chmod(0o2750)
        self.root.chmod(0o2750)

    def new(self) -> tuple[Pod, int]:
        """A new pod in ``prepare``, locked by the returned fd (rkt: embryo then prepare)."""
        self.ensure()
        uuid = str(uuidlib.uuid4())
        embryo = self.root / "embryo" / uuid
        embryo.mkdir(mode=0o750)
        pod = Pod(uuid, embryo)
        fd = pod.lock()
        target = self.root / "prepare" / uuid
        embryo.rename(target)
        return Pod(uuid, target), fd

    def move(self, pod: Pod, where: str) -> Pod:
        target = self.root / where / pod.uuid
        pod.path.rename(target)
        return Pod(pod.uuid, target)

    def pods(self) -> Iterator[Pod]:
        for where in STATE_DIRS:
            base = self.root / where
            if base.is_dir():
                for entry in sorted(base.iterdir()):
                    yield Pod(entry.name, entry)

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
        shutil.rmtree(pod.path)
