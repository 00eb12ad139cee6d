"""``rkt stop`` and ``rkt rm``: pods through their lifecycle to removal (root; ``rkt gc`` is
``_collect.py``).

Pods are found by UUID prefix among root's own pod directories; a pod's cgroups and MCS pair
are released with it. Messages are rkt's (stage0/gc.go, rm.go, stop.go).
"""

from __future__ import annotations

import contextlib
import signal
import sys

from trustd.privileged.executor import _mdsreg, _procs
from trustd.privileged.executor._isolate import destroy_pod_cgroups
from trustd.privileged.executor._supervise import INIT_DIR
from trustd.privileged.executor.prepare import load_plan, release_private_users
from trustd.privileged.isolation.selinux import McsAllocator
from trustd.privileged.net import detach as detach_network
from trustd.privileged.pod import Pod, PodStore
from trustd.shared.errors import LocalStateError, UserError


def stop_pods(pods: PodStore, uuids: tuple[str, ...], *, force: bool) -> int:
    for uuid in uuids:
        pod = pods.find(uuid)
        if pod.state(by_root=True).value != "running":
            print(f'pod "{pod.uuid}" is already stopped', file=sys.stderr)
            continue
        if not force and _stop_through_init(pod):
            print(f'"{pod.uuid}"')
            continue
        sig = signal.SIGKILL if force else signal.SIGTERM
        for app_dir in sorted((pod.path / "apps").glob("*/")):
            pinned = _procs.pin(app_dir)  # never whoever reused an exited app's PID
            if pinned is not None:
                try:
                    pinned.signal(sig)
                finally:
                    pinned.close()
        print(f'"{pod.uuid}"')
    return 0


def _stop_through_init(pod: Pod) -> bool:
    """``rkt stop``: SIGTERM to the pod's init, which stops every app as a forwarded SIGTERM
    does (a clean stop: ``rkt run`` exits 0 when the apps just die of it, as in rkt's
    tests/rkt_stop_test.go). False when the init is not pinned (then the apps are signalled)."""
    pinned = _procs.pin(pod.check_private() / INIT_DIR)
    if pinned is None:
        return False
    try:
        pinned.signal(signal.SIGTERM)
    finally:
        pinned.close()
    return True


def _forget(pods: PodStore, pod: Pod) -> None:
    """Remove a pod's directory and any cgroups it left (a killed init cannot clean up)."""
    # a pod in the old layout (or with a damaged plan) is still removed
    with contextlib.suppress(OSError, ValueError, KeyError, LocalStateError):
        destroy_pod_cgroups(load_plan(pod))
    with contextlib.suppress(OSError, LocalStateError):  # CNI DEL of what a killed run left
        detach_network(pod.uuid)
    McsAllocator(pods.root.parent).release(pod.uuid)
    release_private_users(pods, pod.uuid)
    _mdsreg.forget(pods.root.parent, pod.uuid)  # an init that was killed did not unregister
    pods.remove(pod)


def _remove(pods: PodStore, uuid: str) -> None:
    pod = pods.find(uuid)
    if pod.held(removing=True):
        raise UserError(f'pod "{pod.uuid}" is currently running')
    lock = pod.lock(removing=True)
    _forget(pods, pod)
    lock.close()
    print(f'"{pod.uuid}"')


def remove_pods(pods: PodStore, uuids: tuple[str, ...]) -> int:
    pods.check()  # a data dir another user could rewrite: no registry write beside it
    failed = False
    for uuid in uuids:
        try:
            _remove(pods, uuid)
        except UserError as exc:
            print(f"rm: {exc.message}", file=sys.stderr)
            failed = True
    if failed:
        raise UserError("failed to remove one or more pods")
    return 0
