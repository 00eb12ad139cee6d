"""Root's pod lock is its own (red team 3): a member of group rkt may open a pod's directory
and hold a shared flock on it -- rkt's public liveness signal -- but that never makes root
refuse, wait, or misjudge a pod. Root decides by ``<pod>/private/lock``, which only root can
open; a pod of the layout before it is still judged by its directory lock."""

from __future__ import annotations

import fcntl
import os
import subprocess

from tests.conftest import ConfigDirs
from tests.integration._attacker import member_popen
from tests.integration.conftest import rkt
from trustd.privileged.pod import Pod
from trustd.privileged.pod.lifecycle import LOCK, PRIVATE
from trustd.privileged.pod.model import PodState

_FLOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
print("LOCKED", flush=True)
sys.stdin.read()
"""


def _member_holds(path: str) -> subprocess.Popen[str]:
    """The group member holds a shared flock on ``path`` until its stdin closes."""
    proc = member_popen("/usr/bin/python3", "-c", _FLOCK, path, stdin=subprocess.PIPE)
    assert proc.stdout is not None
    assert "LOCKED" in proc.stdout.readline(), proc.communicate()[1]
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    proc.communicate(timeout=60)


def test_a_members_lock_on_an_exited_pod_does_not_stop_rkt_rm(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Was: ``rkt rm`` failed with 'pod ... is busy' for as long as the member held it."""
    rkt(shared_dirs, "run", "--net=none", image, "--exec=/bin/true", check=True)
    (pod_dir,) = (shared_dirs.data / "pods" / "run").iterdir()
    holder = _member_holds(str(pod_dir))
    try:
        removed = rkt(shared_dirs, "rm", pod_dir.name)
        assert removed.returncode == 0, removed.stderr
        assert not pod_dir.exists()
    finally:
        _release(holder)


def test_the_private_lock_is_root_only_and_decides(shared_dirs: ConfigDirs, image: str) -> None:
    uuid = rkt(shared_dirs, "prepare", image, "--exec=/bin/true", check=True).stdout.strip()
    pod = Pod(uuid, shared_dirs.data / "pods" / "prepared" / uuid)
    lock_file = pod.path / PRIVATE / LOCK
    st = lock_file.lstat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600)
    assert not pod.held()
    holder = _member_holds(str(pod.path))  # the public lock, held shared by the member
    try:
        assert not pod.held() and not pod.locked()
        lock = pod.lock()  # not stopped by the member's lock
        try:
            assert pod.held()
            assert pod.state(by_root=True) is PodState.PREPARED
        finally:
            lock.close()
        assert not pod.held()
    finally:
        _release(holder)


def test_a_pod_without_a_private_lock_is_judged_by_its_directory(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """A pod an older trustd prepared has no ``private/lock``: its directory flock (only
    root ever held it exclusively then) is all root can read."""
    uuid = rkt(shared_dirs, "prepare", image, "--exec=/bin/true", check=True).stdout.strip()
    pod = Pod(uuid, shared_dirs.data / "pods" / "prepared" / uuid)
    (pod.path / PRIVATE / LOCK).unlink()
    fd = os.open(pod.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not pod.held()
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert pod.held()
    finally:
        os.close(fd)
    assert not (pod.path / PRIVATE / LOCK).exists()  # judging never creates it


def test_a_pod_whose_private_dir_fails_its_check_is_skipped_by_gc_and_removed_by_rm(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Root does not believe a lock in a ``private/`` that is not 0700 root:root, so it
    cannot judge that pod: gc says so and goes on with the others, and ``rkt rm`` (the fix
    the message names) still removes it, judged by its directory lock."""
    for _ in range(2):
        rkt(shared_dirs, "run", "--net=none", image, "--exec=/bin/true", check=True)
    damaged, other = sorted((shared_dirs.data / "pods" / "run").iterdir())
    (damaged / PRIVATE).chmod(0o2700)
    gc = rkt(shared_dirs, "gc", "--grace-period=0s")
    assert gc.returncode == 0, gc.stderr
    assert f'pod "{damaged.name}" skipped' in gc.stderr and f"rkt rm {damaged.name}" in gc.stderr
    assert damaged.exists() and not (shared_dirs.data / "pods" / "run" / other.name).exists()
    removed = rkt(shared_dirs, "rm", damaged.name)
    assert removed.returncode == 0, removed.stderr
    assert not damaged.exists()
