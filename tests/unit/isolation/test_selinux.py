"""SELinux svirt labels: contexts, per-pod MCS pairs unique across processes, file labels.

This machine's kernel has no SELinux LSM, so a fake root stands in for /etc/selinux and
/sys/fs/selinux where a test needs an "enabled" host; file labels are real xattrs (root may
set security.* without an LSM). The process label (setexeccon) cannot be exercised here.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from trustd.privileged.isolation.selinux import (
    LxcContexts,
    McsAllocator,
    label_tree,
    pod_labels,
    selinux_enabled,
    with_mcs,
)
from trustd.shared.errors import PolicyViolationError

LXC = """process = "system_u:system_r:svirt_lxc_net_t:s0"
file = "system_u:object_r:svirt_sandbox_file_t:s0"
ro_file="system_u:object_r:svirt_lxc_file_t:s0"
"""


def fake_root(tmp_path: Path, *, enabled: bool) -> Path:
    root = tmp_path / "root"
    (root / "etc/selinux/mls/contexts").mkdir(parents=True)
    (root / "etc/selinux/config").write_text("SELINUX=enforcing\nSELINUXTYPE=mls\n")
    (root / "etc/selinux/mls/contexts/lxc_contexts").write_text(LXC)
    if enabled:
        (root / "sys/fs/selinux").mkdir(parents=True)
        (root / "sys/fs/selinux/enforce").write_text("1")
    return root


def test_contexts_and_mcs(tmp_path: Path) -> None:
    root = fake_root(tmp_path, enabled=True)
    contexts = LxcContexts.load(root)
    assert contexts.ro_file.endswith("svirt_lxc_file_t:s0")
    assert with_mcs(contexts.process, (3, 700)) == "system_u:system_r:svirt_lxc_net_t:s0:c3,c700"
    labels = pod_labels("enforce", "pod-1", tmp_path / "data", root)
    assert labels is not None and labels.process.endswith(f":c{labels.pair[0]},c{labels.pair[1]}")
    again = pod_labels("enforce", "pod-1", tmp_path / "data", root)
    assert again is not None and again.pair == labels.pair  # one pair per pod


def test_modes_without_selinux(tmp_path: Path) -> None:
    root = fake_root(tmp_path, enabled=False)
    assert not selinux_enabled(root)
    with pytest.raises(PolicyViolationError, match="requires SELinux"):
        pod_labels("enforce", "p", tmp_path / "data", root)
    assert pod_labels("permissive", "p", tmp_path / "data", root) is None
    assert pod_labels("off", "p", tmp_path / "data", root) is None


def _allocate(data: str, pods: list[str], out: multiprocessing.Queue[tuple[int, int]]) -> None:
    alloc = McsAllocator(Path(data))
    for pod in pods:
        out.put(alloc.allocate(pod))


def test_pairs_stay_unique_across_concurrent_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[tuple[int, int]] = ctx.Queue()
    procs = [
        ctx.Process(target=_allocate, args=(str(tmp_path), [f"p{i}-{j}" for j in range(40)], out))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    pairs = [out.get(timeout=20) for _ in range(160)]
    for p in procs:
        p.join()
    assert len(set(pairs)) == 160 and all(0 <= x < y < 1024 for x, y in pairs)
    alloc = McsAllocator(tmp_path)
    assert len(alloc.in_use()) == 160
    alloc.release("p0-0")
    assert "p0-0" not in alloc.in_use()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set security.* xattrs without an LSM")
def test_label_tree_sets_the_xattr(tmp_path: Path) -> None:
    tree = tmp_path / "upper"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/motd").write_text("x")
    (tree / "link").symlink_to("/etc/passwd")
    label = "system_u:object_r:svirt_sandbox_file_t:s0:c1,c2"
    assert label_tree(tree, label) == 4
    assert os.getxattr(tree / "etc/motd", "security.selinux").rstrip(b"\0") == label.encode()
    assert os.getxattr(tree / "link", "security.selinux", follow_symlinks=False) == label.encode()
