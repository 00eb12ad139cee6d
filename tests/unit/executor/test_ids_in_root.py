"""The image's user database is read inside its rootfs: a symlinked /etc reads nothing of
the host (red team: ``etc -> /proc/self/root/etc`` would have read the host's passwd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustd.privileged.executor._ids import resolve_id
from trustd.shared.errors import UserError


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\napp:x:4321:\n")
    return root


def test_names_resolve_from_the_images_own_files(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    assert resolve_id(root, "app", kind="user") == 1234
    assert resolve_id(root, "app", kind="group") == 4321
    assert resolve_id(root, "7", kind="user") == 7


@pytest.mark.parametrize("link", ["/proc/self/root/etc", "/etc", "../../../../etc"])
def test_a_symlinked_etc_never_reaches_the_host(tmp_path: Path, link: str) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "etc").symlink_to(link)
    with pytest.raises(UserError, match="not in the image"):
        resolve_id(root, "root", kind="user")  # the host has root; the image has no passwd


def test_a_path_owner_is_looked_up_inside_the_rootfs(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    (root / "escape").symlink_to("/etc/shadow")
    with pytest.raises(UserError, match="no such file"):
        resolve_id(root, "/escape", kind="user")
    assert resolve_id(root, "/etc/passwd", kind="user") == (root / "etc/passwd").stat().st_uid
