"""The --private-users range allocator: 65536-aligned, distinct per pod, clear of host ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trustd.privileged.executor._userns import RANGE, RangeAllocator
from trustd.shared.errors import LocalStateError


def _etc(tmp_path: Path, passwd: str = "", subuid: str = "") -> Path:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text("")
    (etc / "subuid").write_text(subuid)
    (etc / "subgid").write_text("")
    return etc


def test_a_pod_keeps_its_range_and_releases_it(tmp_path: Path) -> None:
    alloc = RangeAllocator(tmp_path / "private", _etc(tmp_path))
    shift = alloc.allocate("pod-a")
    assert shift % RANGE == 0 and shift >= 16 * RANGE and shift + RANGE <= 2**32 - 1
    assert alloc.allocate("pod-a") == shift
    assert (tmp_path / "private/userns").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "private/userns/ranges.json").stat().st_mode & 0o777 == 0o600
    alloc.release("pod-a")
    assert alloc.in_use() == {}


def test_ranges_never_overlap_each_other(tmp_path: Path) -> None:
    alloc = RangeAllocator(tmp_path / "private", _etc(tmp_path))
    shifts = [alloc.allocate(f"pod-{i}") for i in range(200)]
    assert len(set(shifts)) == 200


_ALLOCATE = """
import json, sys
from pathlib import Path
from trustd.privileged.executor._userns import RangeAllocator
alloc = RangeAllocator(Path(sys.argv[1]), Path(sys.argv[2]))
print(json.dumps([alloc.allocate(f"w{sys.argv[3]}-{i}") for i in range(25)]))
"""


def test_concurrent_allocations_are_serialised_by_the_lock(tmp_path: Path) -> None:
    """Four processes at once (fresh interpreters: a forked pool can deadlock at teardown
    under a tracer, and the allocator's users are separate processes anyway)."""
    etc = _etc(tmp_path)
    private = str(tmp_path / "private")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _ALLOCATE, private, str(etc), str(w)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    results = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        results.append(json.loads(out))
    shifts = [s for r in results for s in r]
    assert len(set(shifts)) == 100
    assert len(RangeAllocator(tmp_path / "private", etc).in_use()) == 100  # none lost


def test_host_accounts_and_subid_delegations_are_avoided(tmp_path: Path) -> None:
    """Every block but one is taken by a host id: the allocator must find that one."""
    lines = [f"u{b}:x:{b * RANGE + 7}:0::/:/bin/false" for b in range(16, 0xFFFE)]
    free = 40000
    passwd = "\n".join(x for x in lines if not x.startswith(f"u{free}:"))
    etc = _etc(tmp_path, passwd=passwd, subuid=f"sub:{free * RANGE - 5}:5\n")
    alloc = RangeAllocator(tmp_path / "private", etc)
    alloc_many = {alloc.allocate("pod-x")}
    assert alloc_many == {free * RANGE}


def test_a_corrupt_registry_is_a_local_state_error(tmp_path: Path) -> None:
    alloc = RangeAllocator(tmp_path / "private", _etc(tmp_path))
    alloc.allocate("pod-a")
    alloc.path.write_text(json.dumps({"pod-a": "not a number"}))
    with pytest.raises(LocalStateError, match="not a map of pod UUIDs"):
        alloc.allocate("pod-b")
    alloc.path.write_text("{")
    with pytest.raises(LocalStateError, match="corrupt"):
        alloc.allocate("pod-b")


def test_no_free_range_says_so(tmp_path: Path) -> None:
    etc = _etc(tmp_path, subuid="everyone:0:4294967295\n")
    with pytest.raises(LocalStateError, match="no free 65536-wide uid range") as err:
        RangeAllocator(tmp_path / "private", etc).allocate("pod-a")
    assert "rkt gc" in err.value.hint


def _proc(tmp_path: Path, maps: dict[int, str]) -> Path:
    """A /proc with one process per entry (its uid_map and gid_map), plus init's identity."""
    proc = tmp_path / "proc"
    for pid, text in {1: "0 0 4294967295\n", **maps}.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "uid_map").write_text(text)
        (proc / str(pid) / "gid_map").write_text(text)
    (proc / "self").mkdir()  # not a pid: skipped
    return proc


def test_what_a_live_user_namespace_maps_is_avoided(tmp_path: Path) -> None:
    """Another data dir's pod or another runtime's container holds every block but one
    (two uid_map lines): the allocator of this data dir must take that one."""
    from trustd.privileged.executor._userns import _live_mappings  # noqa: PLC0415

    free = 40000
    below = (free - 16) * RANGE
    text = f"0 {16 * RANGE} {below}\n{below} {(free + 1) * RANGE} {(0xFFFE - free - 1) * RANGE}\n"
    proc = _proc(tmp_path, {4242: text})
    assert (16 * RANGE, below) in _live_mappings(proc)
    assert (0, 4294967295) not in _live_mappings(proc)  # the host's own identity map
    alloc = RangeAllocator(tmp_path / "private", _etc(tmp_path), proc)
    assert alloc.allocate("pod-x") == free * RANGE


def test_a_start_refuses_a_range_taken_since_prepare(tmp_path: Path) -> None:
    from trustd.privileged.executor._userns import check_unshared  # noqa: PLC0415
    from trustd.shared.errors import PolicyViolationError  # noqa: PLC0415

    shift = 40000 * RANGE
    etc = _etc(tmp_path)
    check_unshared(shift, _proc(tmp_path / "a", {7: "0 100000 65536\n"}), etc)  # elsewhere: fine
    with pytest.raises(PolicyViolationError, match="in use by another user namespace") as err:
        check_unshared(shift, _proc(tmp_path / "b", {7: f"0 {shift + 65535} 1\n"}), etc)
    assert "rkt rm" in err.value.message
    (tmp_path / "c").mkdir()
    taken = _etc(tmp_path / "c", subuid=f"newuser:{shift}:65536\n")  # an account added since
    with pytest.raises(PolicyViolationError, match="or host account"):
        check_unshared(shift, _proc(tmp_path / "d", {}), taken)


def test_a_batch_is_released_in_one_write_and_nothing_is_made_without_a_registry(
    tmp_path: Path,
) -> None:
    """``rkt gc`` gives back a batch of pods' ranges under one lock with one write."""
    alloc = RangeAllocator(tmp_path / "private", _etc(tmp_path))
    alloc.release_all(["pod-a", "pod-b"])
    assert not (tmp_path / "private").exists()  # no registry: nothing to give back or make
    for name in ("pod-a", "pod-b", "pod-c"):
        alloc.allocate(name)
    registry = tmp_path / "private/userns/ranges.json"
    before = registry.stat().st_ino
    alloc.release_all(["pod-a", "pod-c", "pod-gone"])
    after = registry.stat().st_ino
    assert after != before and set(alloc.in_use()) == {"pod-b"}
    alloc.release_all(["pod-a"])  # nothing of it left: not written again
    assert registry.stat().st_ino == after
