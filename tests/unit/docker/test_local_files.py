"""The open-before-the-privilege-drop helpers: an OCI layout's files opened up front (never
through a link, FIFO or device), and the flock'd layer scratch files that survive a failed
fetch for the next one to resume."""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from pathlib import Path

import pytest

from trustd.shared.errors import UserError
from trustd.unprivileged.docker._blobs import blob_path, locked_blobs
from trustd.unprivileged.docker._layout_files import LayoutFiles


def _layout(root: Path) -> tuple[Path, str]:
    layout = root / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "index.json").write_text("{}")
    data = b"blob bytes" * 1000
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return layout, digest


def test_layout_files_are_read_with_independent_offsets(tmp_path: Path) -> None:
    layout, digest = _layout(tmp_path)
    files = LayoutFiles.open(layout)
    try:
        name = f"blobs/sha256/{digest}"
        with files.open_file(name) as a, files.open_file(name) as b:
            assert a.read(5) == b"blob "
            assert b.read() == b"blob bytes" * 1000
            assert a.read(5) == b"bytes"
            assert a.seek(0, os.SEEK_END) == 10_000
        assert set(files.fds) == {"index.json", name}
    finally:
        files.close()


def test_links_fifos_and_odd_names_are_never_opened(tmp_path: Path) -> None:
    layout, _ = _layout(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("not for the layout")
    blobs = layout / "blobs" / "sha256"
    linked = "a" * 64
    (blobs / linked).symlink_to(secret)
    fifo = "b" * 64
    os.mkfifo(blobs / fifo)
    (blobs / "not-a-digest").write_text("x")
    files = LayoutFiles.open(layout)
    try:
        assert len(files.fds) == 2  # index.json and the one real blob
        for name in (linked, fifo, "not-a-digest"):
            assert f"blobs/sha256/{name}" not in files.fds
        with pytest.raises(FileNotFoundError):
            files.open_file(f"blobs/sha256/{linked}")
    finally:
        files.close()


def test_a_linked_blobs_directory_is_refused(tmp_path: Path) -> None:
    layout, _ = _layout(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (layout / "blobs" / "sha256").rename(elsewhere)
    (layout / "blobs" / "sha256").symlink_to(elsewhere)
    with pytest.raises(UserError, match="blobs/sha256"):
        LayoutFiles.open(layout)


def test_a_missing_layout_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not an OCI image layout"):
        LayoutFiles.open(tmp_path / "nothing")


DIGEST = "sha256:" + "c" * 64


def test_one_lock_per_distinct_digest_and_the_file_outlives_it(tmp_path: Path) -> None:
    with locked_blobs(tmp_path, [DIGEST, DIGEST], None) as files:
        assert list(files) == [DIGEST]
        files[DIGEST].write(b"partial")
    assert blob_path(tmp_path, DIGEST).read_bytes() == b"partial"


def test_a_waiter_reopens_a_blob_its_holder_removed(tmp_path: Path) -> None:
    path = blob_path(tmp_path, DIGEST)
    got: list[bytes] = []
    with locked_blobs(tmp_path, [DIGEST], None) as files:
        files[DIGEST].write(b"old")
        files[DIGEST].flush()

        def waiter() -> None:
            with locked_blobs(tmp_path, [DIGEST], None) as mine:
                mine[DIGEST].write(b"new")
                mine[DIGEST].flush()
                got.append(path.read_bytes())

        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive()  # blocked on the flock
        path.unlink()  # the holder finishes and removes the file, still under its lock
    thread.join(5)
    assert got == [b"new"]  # written to the file at the path, not the removed one
    with path.open("rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it now
