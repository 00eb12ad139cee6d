"""Waiting for another holder of a scratch file (trustd/unprivileged/transport/scratch.py):
while the holder's file keeps the floor the waiter waits and then gets the lock; a holder
that stops writing is refused with the file named, whatever else holds."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from trustd.shared.errors import LocalStateError
from trustd.unprivileged.transport.scratch import lock_scratch


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def test_a_free_file_is_locked_at_once(tmp_path: Path) -> None:
    fd = _open(tmp_path / "f")
    try:
        lock_scratch(fd, "layer x", str(tmp_path / "f"), (1, 0.5))
        other = _open(tmp_path / "f")
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the lock is ours
        os.close(other)
    finally:
        os.close(fd)


def test_a_holder_that_keeps_writing_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "f"
    holder = _open(path)
    fcntl.flock(holder, fcntl.LOCK_EX)
    writes = 40

    def download() -> None:  # a byte every 50 ms, far above the floor of 1 byte in 3 s
        for _ in range(writes):
            os.write(holder, b"x")
            time.sleep(0.05)
        os.close(holder)  # done: the lock goes with the descriptor

    thread = threading.Thread(target=download)
    thread.start()
    fd = _open(path)
    try:
        lock_scratch(fd, "layer x", str(path), (1, 3.0))
        assert os.fstat(fd).st_size == writes  # locked only once the holder was done
    finally:
        os.close(fd)
        thread.join()


def test_a_holder_that_does_not_write_is_refused_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "f"
    holder = _open(path)
    fcntl.flock(holder, fcntl.LOCK_EX)
    fd = _open(path)
    try:
        with pytest.raises(LocalStateError, match="another process holds its scratch file") as e:
            lock_scratch(fd, "layer sha256:ab", str(path), (65536, 0.5))
        assert str(path) in e.value.message and "fuser" in (e.value.hint or "")
        assert "65536 bytes in 0.5 s" in e.value.message
    finally:
        os.close(fd)
        os.close(holder)
