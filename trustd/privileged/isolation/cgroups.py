"""Pod cgroups: resource limits, process tracking, OOM reporting and a race-free kill.

A pod gets one ``trustd/<pod_id>`` group in each hierarchy it needs:

* **v1 or hybrid host** (no ``cgroup.controllers`` at the root): limits go through the v1
  controllers (``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes``,
  ``cpu.cfs_period_us``/``cpu.cfs_quota_us``, ``pids.max``); the memory, pids and freezer
  groups are always made, to track and freeze the pod. If the host also mounts cgroup2 at
  ``<root>/unified``, a group there tracks the pod too and gives the atomic ``cgroup.kill``.
* **pure cgroup2 host** (``<root>/cgroup.controllers`` lists the controllers): the memory,
  pids (and cpu) controllers are enabled in ``cgroup.subtree_control`` of the root and of
  ``trustd``, and the limits are ``memory.max`` (+ ``memory.swap.max`` 0), ``cpu.max`` and
  ``pids.max``. This machine has no cgroup2 controllers, so that path is tested against a
  fake sysfs tree (tests/unit/isolation/test_cgroup_v2_fake.py).

The layout is read from the filesystem under ``root`` (cgroupfs files mark each mount).
Fail closed (CONVENTIONS 6): a limit that cannot be applied raises
:class:`PolicyViolationError` naming the controller and the file, and every group made so
far is removed again.
"""

from __future__ import annotations

import contextlib
import errno
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from trustd.privileged.isolation._cgroup_fs import (
    KERNEL,
    CgroupFs,
    Layout,
    detect_layout,
    field_value,
    read_file,
    refused,
    write_file,
)
from trustd.privileged.isolation._cgroup_kill import V2, all_procs, kill_groups
from trustd.privileged.isolation._cgroup_quantity import Limits, parse_cpu, parse_memory
from trustd.shared.errors import LocalStateError, PolicyViolationError, UserError

__all__ = ["DEFAULT_ROOT", "CgroupFs", "Limits", "PodCgroup", "parse_cpu", "parse_memory"]

DEFAULT_ROOT = Path("/sys/fs/cgroup")
PARENT = "trustd"
CFS_PERIOD_US = 100_000
TRACKING_V1 = ("memory", "pids", "freezer")
_POD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_RMDIR_WAIT_S = 2.0

Groups = dict[str, Path]


def _check_pod_id(pod_id: str) -> None:
    if not _POD_ID_RE.fullmatch(pod_id) or ".." in pod_id:
        raise UserError(
            f"cgroups: pod id {pod_id!r} is not a safe cgroup name",
            hint="pod ids are UUIDs: letters, digits, '-', '_' and '.', at most 128",
        )


def _quota_us(millicores: int) -> int:
    return millicores * CFS_PERIOD_US // 1000


class _Builder:
    """Makes a pod's groups and remembers them, so a failure can take them all back."""

    def __init__(self, fs: CgroupFs, pod_id: str) -> None:
        self.fs = fs
        self.pod_id = pod_id
        self.made: list[Path] = []

    def parent(self, controller: str, mount: Path) -> Path:
        """``<mount>/trustd``, shared by every pod and never removed (no rmdir races)."""
        parent = mount / PARENT
        try:
            self.fs.mkdir(parent)
        except FileExistsError:
            pass
        except OSError as exc:
            raise refused(controller, parent, "create the trustd cgroup", exc) from exc
        return parent

    def group(self, controller: str, mount: Path) -> Path:
        path = self.parent(controller, mount) / self.pod_id
        try:
            self.fs.mkdir(path)
        except FileExistsError as exc:
            raise LocalStateError(
                f"cgroups: {path} already exists",
                hint="a pod with this id is running or was not cleaned up: run rkt gc",
            ) from exc
        except OSError as exc:
            raise refused(controller, path, "create the pod cgroup", exc) from exc
        self.made.append(path)
        return path

    def set(self, controller: str, path: Path, value: str, what: str) -> None:
        write_file(self.fs, controller, path, value, what)

    def rollback(self) -> None:
        for path in reversed(self.made):
            with contextlib.suppress(OSError):
                self.fs.rmdir(path)


def _missing(controller: str, proof: Path, needed_for: str) -> PolicyViolationError:
    return PolicyViolationError(
        f"cgroups: the {controller} controller is not available (see {proof}); "
        f"it is needed {needed_for}",
        hint=f"enable the {controller} cgroup controller on this host, or run the pod "
        "without that limit",
    )


def _needed_for(controller: str, limits: Limits) -> str:
    if controller == "cpu" or (controller in ("memory", "pids") and getattr(limits, controller)):
        return f"to apply the {controller} limit"
    return "to track the pod's processes"


def _create_v1(b: _Builder, layout: Layout, limits: Limits) -> Groups:
    needed = [*TRACKING_V1, *(["cpu"] if _wants_cpu(limits) else [])]
    groups: Groups = {}
    by_mount: dict[Path, Path] = {}  # co-mounted controllers share one group
    for controller in needed:
        mount = layout.v1_mount(controller)
        if mount is None:
            proof = layout.root / controller / "cgroup.procs"
            raise _missing(controller, proof, _needed_for(controller, limits))
        if mount not in by_mount:
            by_mount[mount] = b.group(controller, mount)
        groups[controller] = by_mount[mount]
    _limit_v1(b, groups, limits)
    if layout.unified is not None:
        groups[V2] = b.group(V2, layout.unified)
    return groups


def _limit_v1(b: _Builder, groups: Groups, limits: Limits) -> None:
    if limits.memory is not None:
        memory = groups["memory"]
        b.set("memory", memory / "memory.limit_in_bytes", str(limits.memory), "limit memory")
        memsw = memory / "memory.memsw.limit_in_bytes"
        if b.fs.exists(memsw):  # absent when the kernel does not account swap
            b.set("memory", memsw, str(limits.memory), "limit memory+swap")
    if limits.cpu is not None:
        cpu = groups["cpu"]
        b.set("cpu", cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US), "set the cpu period")
        b.set("cpu", cpu / "cpu.cfs_quota_us", str(_quota_us(limits.cpu)), "limit cpu")
    if limits.cpu_shares is not None:
        b.set("cpu", groups["cpu"] / "cpu.shares", str(limits.cpu_shares), "set cpu shares")
    if limits.pids is not None:
        b.set("pids", groups["pids"] / "pids.max", str(limits.pids), "limit pids")


def _wants_cpu(limits: Limits) -> bool:
    return limits.cpu is not None or limits.cpu_shares is not None


def cpu_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) as cgroup v2 cpu.weight (1..10000), as runc maps it."""
    return 1 + ((max(shares, 2) - 2) * 9999) // 262142


def _create_v2(b: _Builder, layout: Layout, limits: Limits) -> Groups:
    needed = ["memory", "pids", *(["cpu"] if _wants_cpu(limits) else [])]
    for controller in needed:
        if controller not in layout.v2_controllers:
            proof = layout.root / "cgroup.controllers"
            raise _missing(controller, proof, _needed_for(controller, limits))
    _enable(b, layout.root, needed)
    _enable(b, b.parent(V2, layout.root), needed)
    group = b.group(V2, layout.root)
    if limits.memory is not None:
        b.set("memory", group / "memory.max", str(limits.memory), "limit memory")
        if b.fs.exists(group / "memory.swap.max"):
            b.set("memory", group / "memory.swap.max", "0", "forbid swap")
    if limits.cpu is not None:
        cpu_max = f"{_quota_us(limits.cpu)} {CFS_PERIOD_US}"
        b.set("cpu", group / "cpu.max", cpu_max, "limit cpu")
    if limits.cpu_shares is not None:
        weight = str(cpu_weight(limits.cpu_shares))
        b.set("cpu", group / "cpu.weight", weight, "set the cpu weight (--cpu-shares)")
    if limits.pids is not None:
        b.set("pids", group / "pids.max", str(limits.pids), "limit pids")
    return {V2: group}


def _enable(b: _Builder, group: Path, controllers: list[str]) -> None:
    """Turn the controllers on for ``group``'s children (cgroup2 ``cgroup.subtree_control``)."""
    control = group / "cgroup.subtree_control"
    enabled = read_file(b.fs, control).split()
    for controller in controllers:
        if controller not in enabled:
            b.set(controller, control, f"+{controller}", f"enable {controller} for pods")


@dataclass(frozen=True)
class PodCgroup:
    """One pod's groups: ``(key, path)`` per hierarchy, key a v1 controller or ``cgroup2``."""

    pod_id: str
    v2_only: bool
    groups: tuple[tuple[str, Path], ...]
    fs: CgroupFs = field(default=KERNEL, repr=False, compare=False)

    @classmethod
    def create(
        cls, pod_id: str, limits: Limits, root: Path = DEFAULT_ROOT, *, fs: CgroupFs = KERNEL
    ) -> PodCgroup:
        """Make the pod's groups and apply ``limits``; all or nothing."""
        _check_pod_id(pod_id)
        layout = detect_layout(root, fs)
        builder = _Builder(fs, pod_id)
        try:
            make = _create_v2 if layout.v2_only else _create_v1
            groups = make(builder, layout, limits)
        except BaseException:
            builder.rollback()
            raise
        return cls(pod_id, layout.v2_only, tuple(groups.items()), fs)

    @classmethod
    def open(
        cls,
        pod_id: str,
        root: Path = DEFAULT_ROOT,
        *,
        missing_ok: bool = False,
        fs: CgroupFs = KERNEL,
    ) -> PodCgroup:
        """Find an existing pod's groups again (``rkt stop``/``rkt gc`` in another process).

        With ``missing_ok`` a pod without groups gives an empty :class:`PodCgroup`, whose
        :meth:`destroy` does nothing; otherwise that is a :class:`UserError`.
        """
        _check_pod_id(pod_id)
        layout = detect_layout(root, fs)
        groups: Groups = {}
        for key, mount in _mounts(layout, root):
            path = mount / PARENT / pod_id
            if fs.exists(path / "cgroup.procs"):
                groups[key] = path
        if not groups and not missing_ok:
            raise UserError(
                f"cgroups: pod {pod_id} has no cgroups under {root}",
                hint="check the pod UUID with rkt list; a collected pod has none",
            )
        return cls(pod_id, layout.v2_only, tuple(groups.items()), fs)

    @classmethod
    def every(cls, root: Path = DEFAULT_ROOT, *, fs: CgroupFs = KERNEL) -> dict[str, PodCgroup]:
        """Every pod's groups on this host by pod id, from one listing of ``trustd/`` per
        hierarchy (``rkt gc``: not one :meth:`open` per app of each pod). Only names that
        pass the pod id check are taken; the groups are in :meth:`open`'s order."""
        layout = detect_layout(root, fs)
        found: dict[str, Groups] = {}
        for key, mount in _mounts(layout, root):
            for name in sorted(fs.children(mount / PARENT)):
                if _POD_ID_RE.fullmatch(name) and ".." not in name:
                    found.setdefault(name, {})[key] = mount / PARENT / name
        return {
            pod_id: cls(pod_id, layout.v2_only, tuple(groups.items()), fs)
            for pod_id, groups in found.items()
        }

    def _paths(self) -> list[Path]:
        """Each group once (co-mounted v1 controllers share one)."""
        return list(dict.fromkeys(path for _, path in self.groups))

    def _group(self, key: str) -> Path:
        path = dict(self.groups).get(key)
        if path is None:
            raise LocalStateError(
                f"cgroups: pod {self.pod_id} has no {key} cgroup",
                hint="the pod's cgroups were removed or made by another tool; run rkt gc",
            )
        return path

    def add(self, pid: int) -> None:
        """Move ``pid`` into every group of the pod (before it execs the app).

        On failure the process may sit in some groups only: the caller must kill it.
        """
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise UserError(f"cgroups: {pid!r} is not a process id")
        if not self.groups:
            raise LocalStateError(
                f"cgroups: pod {self.pod_id} has no cgroups to move pid {pid} into",
                hint="create the pod's cgroups before starting its processes",
            )
        moved: set[Path] = set()
        for key, path in self.groups:
            if path not in moved:
                write_file(self.fs, key, path / "cgroup.procs", str(pid), f"move pid {pid} in")
                moved.add(path)

    def procs(self) -> list[int]:
        """Every pid in any of the pod's groups, sorted."""
        return all_procs(self.fs, self._paths())

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer has killed a process of this pod."""
        if self.v2_only:
            events = self._group(V2) / "memory.events"
        else:
            events = self._group("memory") / "memory.oom_control"
        count = field_value(read_file(self.fs, events), "oom_kill")
        if count is None:
            raise LocalStateError(
                f"cgroups: {events} has no oom_kill counter",
                hint="OOM kills are counted from Linux 4.13 on; upgrade the kernel",
            )
        return count > 0

    def kill(self) -> None:
        """SIGKILL every process of the pod (grandchildren too) and wait until none is left."""
        kill_groups(self.fs, dict(self.groups))

    def destroy(self) -> None:
        """Kill the pod, then remove its groups. Idempotent: gone groups are fine."""
        self.kill()
        for path in reversed(self._paths()):
            _rmdir(self.fs, path)


def _mounts(layout: Layout, root: Path) -> list[tuple[str, Path]]:
    """(key, mount) of each hierarchy a pod has a group in."""
    mounts = [(V2, root)] if layout.v2_only else list(layout.v1)
    if layout.unified is not None and not layout.v2_only:
        mounts.append((V2, layout.unified))
    return mounts


def _rmdir(fs: CgroupFs, path: Path) -> None:
    """Remove one group, waiting out the brief EBUSY while the killed tasks are released."""
    deadline = time.monotonic() + _RMDIR_WAIT_S
    while True:
        try:
            fs.rmdir(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            raise LocalStateError(
                f"cgroups: cannot remove {path}: {exc.strerror or exc}",
                hint="a process may still be in it (cat cgroup.procs); retry rkt gc",
            ) from exc
        return
