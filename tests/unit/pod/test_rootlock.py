"""Root's lock on a pod, read by fd: the one check ``Pod.held``, gc and the CNI sweep make.
Anything root did not make there is :class:`Damaged` (never followed, never waited on)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustd.privileged.pod import _rootlock
from trustd.privileged.pod._rootlock import Damaged


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "0f3c"
    (path / "private").mkdir(parents=True)
    os.chmod(path, 0o750)  # noqa: PTH101, S103 - exact modes (a pod dir is 0750)
    os.chmod(path / "private", 0o700)  # noqa: PTH101
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    yield path, fd
    os.close(fd)


def _skip_unless_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the checks require root's ownership")


def test_a_lock_root_made_is_opened_and_judged(pod: tuple[Path, int]) -> None:
    _skip_unless_root()
    path, fd = pod
    assert _rootlock.open_root_lock(fd, str(path), "0f3c") is None  # no lock: the old layout
    holder = os.open(path / "private/lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        lock = _rootlock.open_root_lock(fd, str(path), "0f3c")
        assert lock is not None
        try:
            assert not _rootlock.held(lock, release=True)
            fcntl.flock(holder, fcntl.LOCK_EX)
            assert _rootlock.held(lock, release=True)
            assert not _rootlock.take(lock)
        finally:
            os.close(lock)
    finally:
        os.close(holder)


def test_a_symlinked_private_dir_is_damaged_not_followed(pod: tuple[Path, int]) -> None:
    path, fd = pod
    os.rmdir(path / "private")  # noqa: PTH106
    (path / "elsewhere").mkdir(mode=0o700)
    (path / "private").symlink_to(path / "elsewhere")
    with pytest.raises(Damaged, match="must be a directory") as err:
        _rootlock.open_root_lock(fd, str(path), "0f3c")
    assert "rkt rm 0f3c" in err.value.hint


def test_a_fifo_or_a_symlink_as_the_lock_is_damaged_and_never_waited_on(
    pod: tuple[Path, int],
) -> None:
    _skip_unless_root()
    path, fd = pod
    os.mkfifo(path / "private/lock")
    with pytest.raises(Damaged, match="not a regular file"):
        _rootlock.open_root_lock(fd, str(path), "0f3c")
    (path / "private/lock").unlink()
    (path / "target").touch()
    (path / "private/lock").symlink_to(path / "target")
    with pytest.raises(Damaged):
        _rootlock.open_root_lock(fd, str(path), "0f3c")


@pytest.mark.parametrize("mode", [0o770, 0o752, 0o2770])
def test_a_pod_dir_others_may_write_is_damaged(pod: tuple[Path, int], mode: int) -> None:
    _skip_unless_root()
    path, fd = pod
    os.chmod(path, mode)  # noqa: PTH101
    with pytest.raises(Damaged, match="not writable by group or others"):
        _rootlock.check_pod_dir(fd, str(path), "0f3c")


@pytest.mark.parametrize("mode", [0o750, 0o701, 0o2700])
def test_a_private_dir_not_0700_is_damaged(pod: tuple[Path, int], mode: int) -> None:
    _skip_unless_root()
    path, fd = pod
    os.chmod(path / "private", mode)  # noqa: PTH101
    with pytest.raises(Damaged, match="0700 root:root"):
        _rootlock.open_root_lock(fd, str(path), "0f3c")
