"""Mount targets resolved inside a rootfs (RESOLVE_IN_ROOT), on a real kernel (openat2).

A fake rootfs in tmp_path holds the image's tricks: an absolute symlink ``/data -> /etc``, a
relative one climbing out (``up -> ../../..``), a dangling one and a file in the way.
Outside it sits a ``host`` dir that nothing may create anything in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustd.privileged.executor._inroot import makedirs_in_root, open_root


@pytest.fixture
def rootfs(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    host = tmp_path / "host"
    root = tmp_path / "rootfs"
    (host / "etc").mkdir(parents=True)
    (root / "etc").mkdir(parents=True)
    (root / "data").symlink_to("/etc")
    (root / "up").symlink_to("../../..")
    (root / "dangling").symlink_to("/nowhere/at/all")
    (root / "file").write_text("x")
    fd = open_root(root)
    yield root, host, fd
    os.close(fd)


def _where(fd: int) -> Path:
    return Path(f"/proc/self/fd/{fd}").readlink()


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        ("/data", "etc"),
        ("/data/sub/dir", "etc/sub/dir"),
        ("/up/data/x", "etc/x"),  # climbing out is clamped at the rootfs
        ("/new/a/b", "new/a/b"),
        ("/", "."),
    ],
)
def test_targets_land_inside_the_rootfs(
    rootfs: tuple[Path, Path, int], target: str, lands: str
) -> None:
    root, host, rootfd = rootfs
    before = sorted(p.name for p in host.rglob("*"))
    fd = makedirs_in_root(rootfd, target)
    try:
        assert _where(fd) == (root / lands).resolve()
    finally:
        os.close(fd)
    assert sorted(p.name for p in host.rglob("*")) == before
    assert not Path("/etc/sub").exists()


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("/dangling", "dangling symlink"),
        ("/file/below", "Not a directory"),
        ("/a/../b", "'..'"),
    ],
)
def test_refused_targets(rootfs: tuple[Path, Path, int], target: str, error: str) -> None:
    _, _, rootfd = rootfs
    with pytest.raises(OSError, match=error):
        makedirs_in_root(rootfd, target)
    assert not Path("/nowhere").exists()
