"""``rkt gc`` and ``rkt rm`` walk the pod tree by fd (issue #14, ADR 0020 addendum), attacked
as a real member of group rkt (``trustd-it-user``) or any local user. Each docstring says what
was wrong before, where something was."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import uuid as uuidlib
from pathlib import Path

import pytest

from tests.conftest import ConfigDirs
from tests.integration._attacker import member, member_popen, stop
from tests.integration.conftest import RKT, rkt
from trustd.privileged.pod.lifecycle import LOCK, PRIVATE

_PLANT = """
set -e
mkdir -p "$1/pods/exited-garbage/$3" "$1/selinux" "$1/private/userns"
echo '{}' > "$1/selinux/mcs.json"
echo '{}' > "$1/private/userns/ranges.json"
ln -s "$2" "$1/selinux/mcs.tmp"
ln -s "$2" "$1/private/userns/ranges.tmp"
chmod -R a+rX "$1"
"""


@pytest.mark.parametrize("command", ["gc", "rm"])
def test_a_data_dir_another_user_made_cannot_make_root_write_through_a_symlink(
    tmp_path: Path, command: str
) -> None:
    """Before: gc and rm wrote root's MCS and uid-range registries beside the ``pods/`` they
    were given, by path: with ``--dir`` in a directory any local user could make (a removed
    data dir under /tmp, made again), the user's ``selinux/mcs.tmp`` symlink made root write
    the registry into any file (here a root-only one: it read ``{}`` after gc). Now ``pods/``
    and every directory above it must be root's and not group/other-writable, as for a run;
    else nothing is touched and the fix is named."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    tmp_path.chmod(0o755)
    made = Path(tempfile.mkdtemp(prefix="trustd-gc-", dir="/tmp"))
    made.rmdir()  # root's data dir, removed; then made again by the member
    pod = str(uuidlib.uuid4())
    try:
        member("/bin/sh", "-c", _PLANT, "sh", str(made), str(victim), pod)
        args = ["gc", "--grace-period=0s"] if command == "gc" else ["rm", pod]
        done = subprocess.run(
            [RKT, f"--dir={made}", *args], capture_output=True, text=True, check=False
        )
        assert done.returncode == 254, done.stdout + done.stderr
        assert "must be owned by root and not writable by group or others" in done.stderr
        assert victim.read_text() == "precious\n"
        assert (made / "pods" / "exited-garbage" / pod).is_dir()
    finally:
        shutil.rmtree(made, ignore_errors=True)


def _garbage(dirs: ConfigDirs, image: str, count: int) -> list[Path]:
    for _ in range(count):
        rkt(dirs, "run", "--net=none", image, "--exec=/bin/true", check=True)
    rkt(dirs, "gc", "--grace-period=0s", "--mark-only", check=True)
    return sorted((dirs.data / "pods" / "exited-garbage").iterdir())


_FLOCK = """
import fcntl, os, sys
fds = [os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in sys.argv[1:]]
for fd in fds:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
print("LOCKED", flush=True)
sys.stdin.read()
"""


def test_a_members_lock_on_garbage_does_not_keep_it_and_roots_lock_does(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """gc now takes root's lock on each pod it collects and holds it while it removes the
    pod; the directory's public flock is only tried once. A member holding the public lock
    of every garbage pod neither stops nor stalls gc; a pod whose root lock is held (being
    removed by another root command) is left alone."""
    busy, *others = _garbage(shared_dirs, image, 3)
    holder = member_popen(
        "/usr/bin/python3", "-c", _FLOCK, *map(str, [busy, *others]), stdin=subprocess.PIPE
    )
    own = os.open(busy / PRIVATE / LOCK, os.O_RDWR)
    try:
        assert holder.stdout is not None
        assert "LOCKED" in holder.stdout.readline(), stop(holder)
        fcntl.flock(own, fcntl.LOCK_EX)
        gc = rkt(shared_dirs, "gc", "--grace-period=0s")
    finally:
        os.close(own)
        stop(holder)
    assert gc.returncode == 0, gc.stderr
    assert sorted(gc.stdout.split()[3::4]) == sorted(f'"{p.name}"' for p in others), gc.stdout
    assert "another process holds a lock" not in gc.stderr
    assert busy.is_dir() and not any(p.exists() for p in others)
    again = rkt(shared_dirs, "gc", "--grace-period=0s")
    assert again.returncode == 0 and not busy.exists(), again.stderr


def test_a_garbage_pod_whose_private_dir_fails_its_check_is_reported_and_left_for_rm(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """Before: gc removed a garbage pod whose ``private/`` was not 0700 root:root, judged by
    the directory flock any member may hold (and a symlinked ``private/`` stopped the whole
    gc with a traceback-less OSError). Now gc collects only what it holds by root's own lock:
    that pod is reported with the fix, the others are collected, and ``rkt rm`` (the fix)
    removes it."""
    damaged, linked, other = _garbage(shared_dirs, image, 3)
    (damaged / PRIVATE).chmod(0o2700)
    shutil.rmtree(linked / PRIVATE)
    (linked / PRIVATE).symlink_to(shared_dirs.data / PRIVATE)
    gc = rkt(shared_dirs, "gc", "--grace-period=0s")
    assert gc.returncode == 0, gc.stderr
    for pod in (damaged, linked):
        assert f'pod "{pod.name}" skipped' in gc.stderr and f"rkt rm {pod.name}" in gc.stderr
        assert pod.exists()
    assert not other.exists() and (shared_dirs.data / PRIVATE).is_dir()
    for pod in (damaged, linked):
        removed = rkt(shared_dirs, "rm", pod.name)
        assert removed.returncode == 0, removed.stderr
        assert not pod.exists()
    assert (shared_dirs.data / PRIVATE).is_dir()  # the symlink went, not what it named
