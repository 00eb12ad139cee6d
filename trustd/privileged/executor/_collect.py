"""``rkt gc``: mark exited pods, then collect the garbage past its grace period (root).

Messages are rkt's (stage0/gc.go). The pod tree is walked by fd (``pod/_tree.py``): each
state directory listed once, each pod judged by root's lock, and each pod collected while
root holds that lock exclusively, so nothing can start, enter or remove it between the
check and the removal. What each pod left on the host is found from one listing per gc,
not one probe per pod: its cgroups (one listing of ``trustd/`` per hierarchy, by the pod's
UUID, so a pod whose plan is damaged leaves none either), its network (after the sweep,
only pods with a record or a pinned netns are torn down). The registries (MCS pairs, uid
ranges, the metadata service's) are released per batch of pods: one lock and one write each,
after the batch's cgroups are gone (no process of theirs is left to share an id with a new
pod) and before its trees are removed (a gc killed in between leaves garbage that the next
gc releases again, harmlessly, and removes).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from trustd.privileged.executor import _mdsreg
from trustd.privileged.executor._userns import RangeAllocator
from trustd.privileged.isolation.cgroups import PodCgroup
from trustd.privileged.isolation.selinux import McsAllocator
from trustd.privileged.net import attached as attached_networks
from trustd.privileged.net import detach as detach_network
from trustd.privileged.net import sweep as sweep_networks
from trustd.privileged.pod import PodStore
from trustd.privileged.pod._tree import PodTree, Taken
from trustd.privileged.pod.lifecycle import PRIVATE, STATE_DIRS
from trustd.shared.errors import LocalStateError, TrustdError

BATCH = 128  # pods taken at once: two fds each, one registry write per batch
GARBAGE = ("exited-garbage", "garbage")


def _mark(tree: PodTree, expire_prepared: timedelta) -> None:
    now = time.time()
    for where in ("prepare", "prepared", "run"):
        for name in tree.names(where):
            try:
                judged = tree.held(where, name)
                if judged is None or judged[0]:  # gone, or root holds it
                    continue
                if where == "run":
                    print(f'gc: moving pod "{name}" to garbage', file=sys.stderr)
                    _move(tree, name, where, "exited-garbage")
                elif where == "prepare" or now - judged[1] > expire_prepared.total_seconds():
                    what = "failed prepare" if where == "prepare" else "expired prepared pod"
                    print(f'gc: moving {what} "{name}" to garbage', file=sys.stderr)
                    _move(tree, name, where, "garbage")
            except LocalStateError as exc:  # one damaged pod must not stop gc of the others
                print(f'gc: pod "{name}" skipped: {exc.message} ({exc.hint})', file=sys.stderr)


def _move(tree: PodTree, name: str, src: str, dst: str) -> None:
    try:
        tree.move(name, src, dst)
    except (KeyError, OSError) as exc:
        raise LocalStateError(
            f"cannot move it to pods/{dst}: {getattr(exc, 'strerror', None) or 'missing'}",
            hint="check the data directory (--dir)",
        ) from exc


class _Host:
    """What pods leave on the host, listed once per gc."""

    def __init__(self) -> None:
        try:
            self.groups: dict[str, list[PodCgroup]] = {}
            for pod_id, group in PodCgroup.every().items():
                self.groups.setdefault(pod_id.partition(".")[0], []).append(group)
        except (OSError, TrustdError):  # no cgroup hierarchy: no pod has groups
            self.groups = {}
        self.networks = attached_networks()

    def teardown(self, uuid: str) -> None:
        """Kill and remove the pod's cgroups (a killed init cannot), CNI DEL what a killed
        run left."""
        for group in self.groups.get(uuid, ()):
            with contextlib.suppress(OSError, LocalStateError):
                group.destroy()
        if self.networks is None or uuid in self.networks:
            with contextlib.suppress(OSError, LocalStateError):
                detach_network(uuid)


def _release(data: Path, uuids: Sequence[str]) -> None:
    McsAllocator(data).release_all(uuids)
    RangeAllocator(data / PRIVATE).release_all(uuids)
    _mdsreg.forget_all(data, uuids)  # an init that was killed did not unregister


def _take(tree: PodTree, where: str, name: str, grace: timedelta) -> Taken | None:
    try:
        pod = tree.take(where, name)
    except LocalStateError as exc:  # root cannot read its lock there: left for rkt rm
        print(f'gc: pod "{name}" skipped: {exc.message} ({exc.hint})', file=sys.stderr)
        return None
    if pod is not None and timedelta(seconds=time.time() - pod.ctime) < grace:
        print(f'gc: pod "{name}" not removed: still within grace period ({grace})', file=sys.stderr)
        pod.close()
        return None
    return pod


def _collect(tree: PodTree, data: Path, grace: timedelta) -> None:
    found = [(where, name) for where in GARBAGE for name in tree.names(where)]
    if not found:
        return
    host = _Host()
    for start in range(0, len(found), BATCH):
        taken: list[Taken] = []
        try:
            for where, name in found[start : start + BATCH]:
                pod = _take(tree, where, name, grace)
                if pod is not None:
                    taken.append(pod)
            for pod in taken:
                print(f'Garbage collecting pod "{pod.uuid}"')
                host.teardown(pod.uuid)
            _release(data, [pod.uuid for pod in taken])
            for pod in taken:
                try:
                    tree.remove(pod)
                except LocalStateError as exc:  # the others are still collected
                    print(
                        f'gc: pod "{pod.uuid}" not removed: {exc.message} ({exc.hint})',
                        file=sys.stderr,
                    )
        finally:
            for pod in taken:
                pod.close()


def collect_pods(
    pods: PodStore, *, grace: timedelta, expire_prepared: timedelta, mark_only: bool
) -> int:
    tree = PodTree.open(pods.root, STATE_DIRS)
    try:
        if tree is not None:
            _mark(tree, expire_prepared)
        if mark_only:
            return 0
        with contextlib.suppress(OSError, LocalStateError):
            sweep_networks()  # of pods whose rkt was killed and whose data dir went
        if tree is not None:
            _collect(tree, pods.root.parent, grace)
    finally:
        if tree is not None:
            tree.close()
    return 0
