"""Listing and killing every process of a pod's cgroups, without fork races.

The preferred way is cgroup2's ``cgroup.kill`` (Linux 5.14+): the kernel kills the whole
group at once. Without it the group is frozen first (v1 ``freezer.state`` or v2
``cgroup.freeze``), so nothing can fork while the pids are read and SIGKILLed, then thawed
so that the signals are delivered. Pids are pinned with pidfds before they are signalled,
so a pid reused by a process outside the pod is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from trustd.privileged.isolation._cgroup_fs import CgroupFs, read_file, unreadable, write_file
from trustd.shared.errors import LocalStateError

V2 = "cgroup2"  # key of the cgroup2 group among a pod's groups
_POLL_S = 0.005
_FREEZE_WAIT_S = 1.0
_ROUND_S = 0.5  # how long one kill round waits for the pod to empty
KILL_WAIT_S = 5.0


def procs_of(fs: CgroupFs, group: Path) -> list[int]:
    """Pids in one group; a group that is gone holds none."""
    try:
        text = fs.read(group / "cgroup.procs")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise unreadable(group / "cgroup.procs", exc) from exc
    return [int(word) for word in text.split() if word.isdigit()]


def all_procs(fs: CgroupFs, groups: Iterable[Path]) -> list[int]:
    return sorted({pid for group in groups for pid in procs_of(fs, group)})


def kill_groups(fs: CgroupFs, groups: Mapping[str, Path], wait_s: float = KILL_WAIT_S) -> None:
    """SIGKILL every process in ``groups`` and wait until the groups are empty."""
    paths = list(dict.fromkeys(groups.values()))
    if not all_procs(fs, paths):
        return
    v2 = groups.get(V2)
    if v2 is not None and fs.exists(v2 / "cgroup.kill"):
        _refuse_self(all_procs(fs, paths))
        write_file(fs, V2, v2 / "cgroup.kill", "1", "kill the pod")
        if _wait_empty(fs, paths, _ROUND_S):
            return
    deadline = time.monotonic() + wait_s
    while True:
        with _frozen(fs, groups):
            _sigkill(fs, paths)
        if _wait_empty(fs, paths, _ROUND_S):
            return
        if time.monotonic() > deadline:
            raise LocalStateError(
                f"cgroups: pids {all_procs(fs, paths)} are still in the pod's cgroups "
                f"{wait_s:g} s after SIGKILL",
                hint="they may be stuck in uninterruptible sleep (ps -o stat,wchan); retry",
            )


def _refuse_self(pids: list[int]) -> None:
    if os.getpid() in pids:
        raise LocalStateError(
            f"cgroups: refusing to kill a pod cgroup that holds this very process ({os.getpid()})",
            hint="the caller must move only the pod's processes into its cgroups",
        )


def _sigkill(fs: CgroupFs, paths: list[Path]) -> None:
    """SIGKILL the processes in the groups, never a stranger that reused a pid.

    Each pid is pinned with a pidfd first and signalled only if it is still listed after
    pinning: the pidfd then names the very process the group holds.
    """
    pids = all_procs(fs, paths)
    _refuse_self(pids)
    pinned: dict[int, int] = {}
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                pinned[pid] = os.pidfd_open(pid)
        still = set(all_procs(fs, paths))
        for pid, pidfd in pinned.items():
            if pid in still:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        for pidfd in pinned.values():
            os.close(pidfd)


def _wait_empty(fs: CgroupFs, paths: list[Path], wait_s: float) -> bool:
    """Poll until no group lists a process; False on timeout."""
    deadline = time.monotonic() + wait_s
    while all_procs(fs, paths):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


@dataclass(frozen=True)
class _Freezer:
    controller: str
    control: Path  # written to freeze and thaw
    status: Path  # read until it shows ``done``
    freeze: str
    thaw: str
    done: str


def _freezer(fs: CgroupFs, groups: Mapping[str, Path]) -> _Freezer | None:
    freezer, v2 = groups.get("freezer"), groups.get(V2)
    if freezer is not None and fs.exists(freezer / "freezer.state"):
        state = freezer / "freezer.state"
        return _Freezer("freezer", state, state, "FROZEN", "THAWED", "FROZEN")
    if v2 is not None and fs.exists(v2 / "cgroup.freeze"):
        return _Freezer(V2, v2 / "cgroup.freeze", v2 / "cgroup.events", "1", "0", "frozen 1")
    return None


@contextlib.contextmanager
def _frozen(fs: CgroupFs, groups: Mapping[str, Path]) -> Iterator[None]:
    """Freeze the pod for the body (v1 freezer, else v2 cgroup.freeze, else not at all)."""
    how = _freezer(fs, groups)
    if how is None:
        yield
        return
    write_file(fs, how.controller, how.control, how.freeze, "freeze the pod")
    try:
        _wait_frozen(fs, how.status, how.done)
        yield
    finally:
        write_file(fs, how.controller, how.control, how.thaw, "thaw the pod")


def _wait_frozen(fs: CgroupFs, status: Path, done: str) -> None:
    """Wait (briefly) for the freeze to complete; a task stuck in D state must not hang us."""
    deadline = time.monotonic() + _FREEZE_WAIT_S
    while time.monotonic() < deadline:
        if done in read_file(fs, status).splitlines():
            return
        time.sleep(_POLL_S)
