"""Pod cgroups on the real kernel (root): this host's v1 controllers plus the unified tree.

Each workload is a child that waits on stdin until it has been moved into the pod's
cgroups, so everything it allocates or forks afterwards is charged to the pod.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import require_root
from trustd.privileged.isolation.cgroups import (
    DEFAULT_ROOT,
    Limits,
    PodCgroup,
    parse_cpu,
    parse_memory,
)
from trustd.shared.errors import PolicyViolationError

pytestmark = pytest.mark.root

HIERARCHIES = ("memory", "pids", "freezer", "cpu", "unified")

ALLOCATE_200M = "import sys; sys.stdin.read(1); b = [bytes([i]) * (1 << 20) for i in range(200)]"
FORK_20 = """
import os, sys, time
sys.stdin.read(1)
forked = 0
try:
    for _ in range(20):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        forked += 1
except BlockingIOError:
    print("EAGAIN", forked, flush=True)
else:
    print("ALL", forked, flush=True)
time.sleep(30)
"""
# a child, its child, and a grandchild that left the session: print all three pids
FAMILY = """
import os, sys, time
sys.stdin.read(1)
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, f"{os.getpid()} ".encode()); time.sleep(30); os._exit(0)
    os.write(w, f"{os.getpid()} ".encode()); time.sleep(30); os._exit(0)
os.close(w)
pids = b""
while len(pids.split()) < 2:
    pids += os.read(r, 64)
print(os.getpid(), pids.decode(), flush=True)
time.sleep(30)
"""
# each process forks a child and exits at once: the pids keep changing under a naive killer
WALKER = """
import os, sys
sys.stdin.read(1)
print("go", flush=True)
os.close(1)
while True:
    try:
        if os.fork() != 0:
            os._exit(0)
    except BlockingIOError:  # pids.max: unreaped parents still count; try again
        pass
"""


@pytest.fixture
def pod_id() -> Iterator[str]:
    require_root()
    if not (DEFAULT_ROOT / "memory" / "cgroup.procs").exists():
        pytest.skip("needs the cgroup v1 memory controller at /sys/fs/cgroup/memory")
    pod_id = f"test-{uuid.uuid4()}"
    yield pod_id
    PodCgroup.open(pod_id, missing_ok=True).destroy()


def _dirs(pod_id: str) -> list[Path]:
    paths = [DEFAULT_ROOT / h / "trustd" / pod_id for h in HIERARCHIES]
    return [p for p in paths if p.exists()]


def _start(pod: PodCgroup, code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    pod.add(proc.pid)
    assert proc.stdin is not None
    proc.stdin.write("g")
    proc.stdin.flush()
    return proc


def _gone(pid: int) -> bool:
    """Dead, or a zombie nobody has reaped yet (it holds nothing and runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_the_pod_is_placed_in_every_hierarchy(pod_id: str) -> None:
    pod = PodCgroup.create(pod_id, Limits(memory=parse_memory("64Mi"), cpu=parse_cpu("500m")))
    assert not pod.v2_only
    assert {key for key, _ in pod.groups} == {"memory", "pids", "freezer", "cpu", "cgroup2"}
    memory = DEFAULT_ROOT / "memory" / "trustd" / pod_id
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    cpu = DEFAULT_ROOT / "cpu" / "trustd" / pod_id
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
    proc = subprocess.Popen(["sleep", "30"])
    pod.add(proc.pid)
    cgroup = Path(f"/proc/{proc.pid}/cgroup").read_text()
    for line in (f"memory:/trustd/{pod_id}", f"pids:/trustd/{pod_id}", f"0::/trustd/{pod_id}"):
        assert line in cgroup
    assert pod.procs() == [proc.pid]
    pod.destroy()
    assert proc.wait(timeout=3) == -signal.SIGKILL


def test_allocating_past_the_memory_limit_is_oom_killed(pod_id: str) -> None:
    pod = PodCgroup.create(pod_id, Limits(memory=parse_memory("64Mi")))
    assert not pod.oom_killed()
    proc = _start(pod, ALLOCATE_200M)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert pod.oom_killed()


def test_pids_max_makes_fork_fail(pod_id: str) -> None:
    pod = PodCgroup.create(pod_id, Limits(pids=10))
    proc = _start(pod, FORK_20)
    assert proc.stdout is not None
    assert proc.stdout.readline().split() == ["EAGAIN", "9"]  # 10 tasks: the child and 9 more
    assert len(pod.procs()) == 10
    pod.kill()
    assert proc.wait(timeout=3) == -signal.SIGKILL


def _family(pod: PodCgroup) -> tuple[subprocess.Popen[str], list[int]]:
    proc = _start(pod, FAMILY)
    assert proc.stdout is not None
    pids = [int(word) for word in proc.stdout.readline().split()]
    assert len(pids) == 3
    assert sorted(pids) == pod.procs()
    return proc, pids


def test_kill_reaches_grandchildren_that_left_the_session(pod_id: str) -> None:
    pod = PodCgroup.create(pod_id, Limits())
    proc, pids = _family(pod)
    pod.kill()
    assert proc.wait(timeout=3) == -signal.SIGKILL
    assert all(_gone(pid) for pid in pids)
    assert pod.procs() == []


def test_kill_without_cgroup2_freezes_through_the_v1_freezer(pod_id: str) -> None:
    made = PodCgroup.create(pod_id, Limits())
    pod = dataclasses.replace(made, groups=tuple(g for g in made.groups if g[0] != "cgroup2"))
    proc, pids = _family(pod)
    pod.kill()
    assert proc.wait(timeout=3) == -signal.SIGKILL
    assert all(_gone(pid) for pid in pids)
    state = DEFAULT_ROOT / "freezer" / "trustd" / pod_id / "freezer.state"
    assert state.read_text().strip() == "THAWED"


def test_destroy_from_another_process_removes_every_directory(pod_id: str) -> None:
    pod = PodCgroup.create(pod_id, Limits(memory=1 << 26, cpu=200, pids=20))
    assert len(_dirs(pod_id)) == 5
    proc = subprocess.Popen(["sleep", "30"])
    pod.add(proc.pid)
    code = (
        "import sys; from trustd.privileged.isolation.cgroups import PodCgroup; "
        "PodCgroup.open(sys.argv[1]).destroy()"
    )
    subprocess.run([sys.executable, "-c", code, pod_id], check=True, timeout=10)
    assert proc.wait(timeout=3) == -signal.SIGKILL
    assert _dirs(pod_id) == []
    pod.destroy()  # idempotent


def test_a_refused_limit_leaves_nothing_behind(pod_id: str) -> None:
    with pytest.raises(PolicyViolationError) as caught:
        # 1 millicore is a 100 us CFS quota; the kernel's minimum is 1 ms
        PodCgroup.create(pod_id, Limits(memory=1 << 26, cpu=1, pids=20))
    assert "cpu controller" in str(caught.value)
    assert "cpu.cfs_quota_us" in str(caught.value)
    assert _dirs(pod_id) == []
    assert PodCgroup.open(pod_id, missing_ok=True).groups == ()


def test_kill_of_an_empty_pod_returns_at_once(pod_id: str) -> None:
    pod = PodCgroup.create(pod_id, Limits())
    pod.kill()
    assert pod.procs() == []
    assert os.getpid() not in pod.procs()


@pytest.mark.parametrize("how", ["cgroup.kill", "v1 freezer"])
def test_kill_catches_a_process_that_keeps_forking_away(pod_id: str, how: str) -> None:
    made = PodCgroup.create(pod_id, Limits(pids=100))
    drop = "cgroup2" if how == "v1 freezer" else ""
    pod = dataclasses.replace(made, groups=tuple(g for g in made.groups if g[0] != drop))
    proc = _start(pod, WALKER)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "go\n"
    time.sleep(0.05)
    assert pod.procs()  # still walking
    pod.kill()
    assert pod.procs() == []
    time.sleep(0.05)
    assert made.procs() == []
