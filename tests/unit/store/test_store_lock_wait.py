"""The store's locks are waited for a bounded time (red team 8): their files are the group's,
so a member can hold one for ever, and waiting without end hung root's fetch, rm and gc. The
wait is lowered here; the attack as a member is in tests/integration/test_attack_redteam8.py.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from pathlib import Path

import pytest

from trustd.shared.errors import LocalStateError
from trustd.shared.store import ImageStore
from trustd.shared.store import scratch as scratch_module
from trustd.shared.store import store as store_module


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> float:
    seconds = 0.3
    monkeypatch.setattr(store_module, "STORE_LOCK_WAIT", seconds)
    return seconds


def _hold(path: Path, operation: int) -> int:
    """Another holder of ``path``'s lock (flock is per open file, so one process will do)."""
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, operation)
    return fd


@pytest.mark.parametrize("held", [fcntl.LOCK_SH, fcntl.LOCK_EX], ids=["shared", "exclusive"])
def test_a_held_store_lock_is_refused_after_the_wait(
    tmp_path: Path, short_wait: float, held: int
) -> None:
    store = ImageStore.open(tmp_path, create=True)
    fd = _hold(tmp_path / "cas/lock", held)
    try:
        with pytest.raises(LocalStateError) as refused, store.locked(exclusive=True):
            pass
    finally:
        os.close(fd)
    assert str(tmp_path / "cas/lock") in refused.value.message
    assert f"{short_wait:g} s" in refused.value.message
    assert "fuser" in refused.value.hint


def test_a_lock_released_within_the_wait_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "STORE_LOCK_WAIT", 60.0)
    store = ImageStore.open(tmp_path, create=True)
    fd = _hold(tmp_path / "cas/lock", fcntl.LOCK_SH)
    release = threading.Timer(0.2, os.close, (fd,))
    release.start()
    try:
        with store.locked(exclusive=True):
            taken = True
    finally:
        release.join()
    assert taken


def test_a_scratch_file_is_locked_before_the_group_may_open_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``locked_scratch`` made the file group-readable, then took its lock (blocking): a
    member who opened it in between and locked it first held the fetch for ever. When the
    mode is widened, the lock is already ours (another open file cannot take it)."""
    fchmod = os.fchmod
    seen: list[bool] = []

    def checking_fchmod(fd: int, mode: int) -> None:
        other = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            seen.append(True)  # held by the creator already
        else:
            seen.append(False)
        finally:
            os.close(other)
        fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", checking_fchmod)
    fd, name = scratch_module.locked_scratch(tmp_path)
    os.close(fd)
    assert seen == [True]
    assert Path(name).stat().st_mode & 0o777 == 0o640


def test_a_scratch_file_a_sweeper_locked_first_is_left_to_it_and_another_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the mode is widened only the creator's uid may open the file: a sweeper of its
    own (another fetch) may have it locked, to remove it. Then another file is made, rather
    than the fetch failing or waiting."""
    mkstemp = tempfile.mkstemp
    swept: list[tuple[int, str]] = []

    def raced_mkstemp(prefix: str, dir: Path) -> tuple[int, str]:
        fd, name = mkstemp(prefix=prefix, dir=dir)
        if not swept:  # the first file: a sweeper opens and locks it before the creator
            sweeper = os.open(name, os.O_RDONLY)
            fcntl.flock(sweeper, fcntl.LOCK_EX | fcntl.LOCK_NB)
            swept.append((sweeper, name))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", raced_mkstemp)
    try:
        fd, name = scratch_module.locked_scratch(tmp_path)
        os.close(fd)
    finally:
        for sweeper, _ in swept:
            os.close(sweeper)
    assert len(swept) == 1 and name != swept[0][1]  # a second file, not the swept one
    assert sorted(tmp_path.iterdir()) == sorted([Path(name), Path(swept[0][1])])
