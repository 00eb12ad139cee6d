"""The pure-cgroup2 path of PodCgroup, against a fake sysfs tree in tmp_path.

A fake, on purpose (CONVENTIONS 13): this machine's cgroup2 mount has no resource
controllers (they are bound to v1), so a v2 host with memory/cpu/pids cannot exist here.
``FakeKernel`` plays the kernel over plain directories: mkdir makes the interface files of
the controllers the parent enabled in ``cgroup.subtree_control``, writes never create
files, bad values are EINVAL, ``cgroup.kill`` and ``cgroup.freeze`` act on real processes.
The real v1 path is tested in tests/integration/test_cgroups.py.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustd.privileged.isolation.cgroups import CgroupFs, Limits, PodCgroup
from trustd.shared.errors import LocalStateError, PolicyViolationError, UserError

ALL = "cpuset cpu io memory hugetlb pids rdma misc"
_FILES = {
    "memory": {
        "memory.max": "max",
        "memory.swap.max": "max",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    },
    "cpu": {"cpu.max": "max 100000"},
    "pids": {"pids.max": "max"},
}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _einval(path: Path) -> OSError:
    return OSError(errno.EINVAL, os.strerror(errno.EINVAL), str(path))


class FakeKernel(CgroupFs):
    """cgroup2 semantics over a plain tree (see the module docstring)."""

    def __init__(self, *, kill_file: bool = True, busy: frozenset[str] = frozenset()) -> None:
        self.kill_file = kill_file
        self.busy = busy  # controllers whose enabling fails with EBUSY
        self.writes: list[tuple[str, str]] = []

    def make_root(self, root: Path, controllers: str = ALL) -> Path:
        root.mkdir()
        for name, text in [
            ("cgroup.controllers", controllers),
            ("cgroup.subtree_control", ""),
            ("cgroup.procs", ""),
        ]:
            (root / name).write_text(text)
        return root

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        enabled = (path.parent / "cgroup.subtree_control").read_text().split()
        files = {
            "cgroup.procs": "",
            "cgroup.controllers": " ".join(enabled),
            "cgroup.subtree_control": "",
            "cgroup.events": "populated 0\nfrozen 0\n",
            "cgroup.freeze": "0",
        }
        if self.kill_file:
            files["cgroup.kill"] = ""
        for controller in enabled:
            files.update(_FILES.get(controller, {}))
        for name, text in files.items():
            (path / name).write_text(text)

    def rmdir(self, path: Path) -> None:
        if not path.is_dir():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        if self._pids(path) or any(p.is_dir() for p in path.iterdir()):
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        for file in path.iterdir():
            file.unlink()
        path.rmdir()

    def read(self, path: Path) -> str:
        if path.name == "cgroup.procs":  # the kernel drops tasks as they exit
            return "".join(f"{pid}\n" for pid in self._pids(path.parent))
        return super().read(path)

    def write(self, path: Path, text: str) -> None:
        self.writes.append((path.name, text))
        handler = getattr(self, "_write_" + path.name.replace(".", "_"), None)
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        if handler is None:
            self._check_value(path, text)
            super().write(path, text)
        else:
            handler(path, text)

    def _check_value(self, path: Path, text: str) -> None:
        numeric = ("memory.max", "memory.swap.max", "pids.max")
        if path.name in numeric and not (text == "max" or text.isdigit()):
            raise _einval(path)
        if path.name == "cpu.max":
            quota, period = text.split()
            if int(quota) < 1000 or not 1000 <= int(period) <= 1_000_000:
                raise _einval(path)

    def _write_cgroup_subtree_control(self, path: Path, text: str) -> None:
        available = (path.parent / "cgroup.controllers").read_text().split()
        enabled = path.read_text().split()
        for word in text.split():
            name = word[1:]
            if word[0] != "+" or name not in available:
                raise OSError(errno.ENOENT, "No such file or directory", str(path))
            if name in self.busy:
                raise OSError(errno.EBUSY, "Device or resource busy", str(path))
            enabled.append(name)
        path.write_text(" ".join(dict.fromkeys(enabled)))

    def _write_cgroup_procs(self, path: Path, text: str) -> None:
        pid = int(text)
        if not _alive(pid):
            raise OSError(errno.ESRCH, "No such process", str(path))
        path.write_text(path.read_text() + f"{pid}\n")

    def _write_cgroup_kill(self, path: Path, text: str) -> None:
        for pid in self._pids(path.parent):
            os.kill(pid, signal.SIGKILL)

    def _write_cgroup_freeze(self, path: Path, text: str) -> None:
        sig = signal.SIGSTOP if text == "1" else signal.SIGCONT
        for pid in self._pids(path.parent):
            os.kill(pid, sig)
        path.write_text(text)
        (path.parent / "cgroup.events").write_text(f"populated 1\nfrozen {text}\n")

    @staticmethod
    def _pids(group: Path) -> list[int]:
        words = (group / "cgroup.procs").read_text().split()
        return [pid for pid in map(int, words) if _alive(pid)]


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


@pytest.fixture
def root(tmp_path: Path, kernel: FakeKernel) -> Path:
    return kernel.make_root(tmp_path / "cgroup")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


def test_limits_land_in_the_v2_files_after_enabling_controllers(
    root: Path, kernel: FakeKernel
) -> None:
    pod = PodCgroup.create("pod-1", Limits(memory=64 << 20, cpu=500, pids=10), root, fs=kernel)
    group = root / "trustd" / "pod-1"
    assert pod.v2_only
    assert pod.groups == (("cgroup2", group),)
    assert set((root / "cgroup.subtree_control").read_text().split()) == {"memory", "pids", "cpu"}
    assert set((root / "trustd" / "cgroup.subtree_control").read_text().split()) == {
        "memory",
        "pids",
        "cpu",
    }
    assert (group / "memory.max").read_text() == str(64 << 20)
    assert (group / "memory.swap.max").read_text() == "0"
    assert (group / "cpu.max").read_text() == "50000 100000"
    assert (group / "pids.max").read_text() == "10"


def test_no_limits_still_tracks_memory_and_pids(root: Path, kernel: FakeKernel) -> None:
    PodCgroup.create("pod-1", Limits(), root, fs=kernel)
    group = root / "trustd" / "pod-1"
    assert (group / "memory.max").read_text() == "max"
    assert (group / "memory.events").is_file()
    assert not (group / "cpu.max").exists()


def _left(root: Path) -> list[str]:
    parent = root / "trustd"
    return sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.exists() else []


def test_a_controller_the_host_lacks_is_refused(tmp_path: Path, kernel: FakeKernel) -> None:
    root = kernel.make_root(tmp_path / "cgroup", controllers="memory pids io")
    with pytest.raises(PolicyViolationError) as caught:
        PodCgroup.create("pod-1", Limits(cpu=500), root, fs=kernel)
    assert "cpu controller" in str(caught.value)
    assert str(root / "cgroup.controllers") in str(caught.value)
    assert _left(root) == []


def test_a_refused_limit_leaves_no_group_behind(root: Path, kernel: FakeKernel) -> None:
    with pytest.raises(PolicyViolationError) as caught:
        PodCgroup.create("pod-1", Limits(memory=1 << 20, cpu=1), root, fs=kernel)  # 100 us quota
    message = str(caught.value)
    assert "cpu controller" in message
    assert "cpu.max" in message
    assert _left(root) == []


def test_a_refused_enable_names_subtree_control(tmp_path: Path) -> None:
    kernel = FakeKernel(busy=frozenset({"memory"}))  # as when memory is bound to v1
    root = kernel.make_root(tmp_path / "cgroup")
    with pytest.raises(PolicyViolationError) as caught:
        PodCgroup.create("pod-1", Limits(memory=1 << 20), root, fs=kernel)
    assert "memory controller" in str(caught.value)
    assert "cgroup.subtree_control" in str(caught.value)
    assert _left(root) == []


def test_an_existing_pod_group_is_not_taken_over(root: Path, kernel: FakeKernel) -> None:
    first = PodCgroup.create("pod-1", Limits(pids=5), root, fs=kernel)
    with pytest.raises(LocalStateError, match="already exists"):
        PodCgroup.create("pod-1", Limits(pids=50), root, fs=kernel)
    assert _left(root) == ["pod-1"]
    assert (first.groups[0][1] / "pids.max").read_text() == "5"


def test_add_procs_and_cgroup_kill(
    root: Path, kernel: FakeKernel, sleeper: subprocess.Popen[bytes]
) -> None:
    pod = PodCgroup.create("pod-1", Limits(), root, fs=kernel)
    pod.add(sleeper.pid)
    assert pod.procs() == [sleeper.pid]
    pod.kill()
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert ("cgroup.kill", "1") in kernel.writes
    assert pod.procs() == []


def test_without_cgroup_kill_the_pod_is_frozen_then_killed(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    kernel = FakeKernel(kill_file=False)  # Linux 5.2 to 5.13
    root = kernel.make_root(tmp_path / "cgroup")
    pod = PodCgroup.create("pod-1", Limits(), root, fs=kernel)
    pod.add(sleeper.pid)
    pod.kill()
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    freezes = [text for name, text in kernel.writes if name == "cgroup.freeze"]
    assert freezes == ["1", "0"]


def test_oom_killed_reads_memory_events(root: Path, kernel: FakeKernel) -> None:
    pod = PodCgroup.create("pod-1", Limits(memory=1 << 20), root, fs=kernel)
    assert not pod.oom_killed()
    events = root / "trustd" / "pod-1" / "memory.events"
    events.write_text(events.read_text().replace("oom_kill 0", "oom_kill 1"))
    assert pod.oom_killed()


def test_destroy_removes_the_group_and_is_idempotent(
    root: Path, kernel: FakeKernel, sleeper: subprocess.Popen[bytes]
) -> None:
    pod = PodCgroup.create("pod-1", Limits(pids=10), root, fs=kernel)
    pod.add(sleeper.pid)
    pod.destroy()
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert _left(root) == []
    pod.destroy()


def test_open_finds_the_pod_again(root: Path, kernel: FakeKernel) -> None:
    made = PodCgroup.create("pod-1", Limits(cpu=250), root, fs=kernel)
    found = PodCgroup.open("pod-1", root, fs=kernel)
    assert found == made
    found.destroy()
    assert _left(root) == []
    with pytest.raises(UserError, match="pod-1 has no cgroups"):
        PodCgroup.open("pod-1", root, fs=kernel)
    gone = PodCgroup.open("pod-1", root, missing_ok=True, fs=kernel)
    assert gone.groups == ()
    assert gone.procs() == []
    gone.destroy()
    with pytest.raises(LocalStateError, match="no cgroups to move"):
        gone.add(os.getpid())  # never silently unconfined


@pytest.mark.parametrize("pod_id", ["", "../etc", "a/b", "..", ".hidden", "x" * 129, "a\nb"])
def test_unsafe_pod_ids_are_refused(root: Path, kernel: FakeKernel, pod_id: str) -> None:
    with pytest.raises(UserError):
        PodCgroup.create(pod_id, Limits(), root, fs=kernel)
    assert not (root / "trustd").exists()


def test_no_cgroup_hierarchy_at_all_is_refused(tmp_path: Path, kernel: FakeKernel) -> None:
    with pytest.raises(PolicyViolationError, match="no cgroup hierarchy"):
        PodCgroup.create("pod-1", Limits(), tmp_path, fs=kernel)


def test_a_pid_that_does_not_exist_cannot_be_added(root: Path, kernel: FakeKernel) -> None:
    pod = PodCgroup.create("pod-1", Limits(), root, fs=kernel)
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(PolicyViolationError, match=r"cgroup\.procs"):
        pod.add(proc.pid)
    with pytest.raises(UserError):
        pod.add(0)


def test_every_pods_groups_from_one_listing_are_what_open_finds(
    root: Path, kernel: FakeKernel
) -> None:
    """``rkt gc`` lists ``trustd/`` once instead of opening each app's group: the same
    groups, and a name that fails the pod id check is not taken."""
    for pod_id in ("0f3c.app", "0f3c.db", "9a1e.app"):
        PodCgroup.create(pod_id, Limits(), root, fs=kernel)
    (root / "trustd" / "x..y").mkdir()
    every = PodCgroup.every(root, fs=kernel)
    assert sorted(every) == ["0f3c.app", "0f3c.db", "9a1e.app"]
    for pod_id, group in every.items():
        assert group == PodCgroup.open(pod_id, root, fs=kernel)
    every["0f3c.db"].destroy()
    assert sorted(PodCgroup.every(root, fs=kernel)) == ["0f3c.app", "9a1e.app"]


def test_every_is_empty_before_any_pod(root: Path, kernel: FakeKernel) -> None:
    assert PodCgroup.every(root, fs=kernel) == {}
