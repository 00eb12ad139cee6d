"""Layer blobs in the store's scratch space, one file per digest, each under an flock.

A layer downloads to ``cas/tmp/docker-blob-<algo>-<hex>``. The file outlives a fetch that
failed in transit, so the next attempt resumes it with ``Range`` (the digest is still
checked over the whole blob). Two fetches never write one file at once: each holds an
exclusive flock on it until it is done with the layer, and whoever removes the file does so
under that lock, so a waiter that wakes to a removed file opens the path again.
Locks are taken in digest order, once per distinct digest, so two fetches of images that
share layers cannot deadlock.

A fetch killed with SIGKILL leaves its layer files behind with their locks free. The next
fetch that needs one resumes it; :func:`sweep_blobs` removes the others once nobody has
touched them for :data:`RESUME_WINDOW` (under their lock, so never one in use).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from trustd.shared.store.scratch import remove_if_orphan
from trustd.unprivileged.transport.scratch import lock_scratch


def blob_path(tmp: Path, digest: str) -> Path:
    return tmp / f"docker-blob-{digest.replace(':', '-')}"


def _same_file(path: Path, fd: int) -> bool:
    try:
        return path.stat().st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _locked(path: Path, digest: str, min_rate: tuple[int, float] | None) -> Iterator[BinaryIO]:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660)
        f = os.fdopen(fd, "r+b")
        try:
            lock_scratch(fd, f"layer {digest}", str(path), min_rate)
        except BaseException:
            f.close()
            raise
        if _same_file(path, fd):
            break
        f.close()  # the previous holder removed it: lock the file that is there now
    with f:
        yield f


@contextlib.contextmanager
def locked_blobs(
    tmp: Path, digests: Iterable[str], min_rate: tuple[int, float] | None
) -> Iterator[dict[str, BinaryIO]]:
    """Open and lock one scratch file per distinct digest; yields digest -> file (``r+b``).
    Another holder is waited for while its file keeps ``min_rate`` (transport/scratch.py)."""
    with contextlib.ExitStack() as stack:
        yield {
            d: stack.enter_context(_locked(blob_path(tmp, d), d, min_rate))
            for d in sorted(set(digests))
        }


RESUME_WINDOW = 3600.0  # seconds an orphaned partial layer waits for a fetch to resume it
PREFIX = "docker-blob-"


def sweep_blobs(tmp: Path, keep: Iterable[str] = ()) -> int:
    """Remove layer partials no fetch holds and none has touched for RESUME_WINDOW, except
    those for the digests in ``keep`` (this fetch's: it resumes them). Returns how many."""
    kept = {blob_path(tmp, d).name for d in keep}
    cutoff = time.time() - RESUME_WINDOW
    removed = 0
    dirfd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in os.listdir(dirfd):  # noqa: PTH208 - names beneath a held fd
            if name.startswith(PREFIX) and name not in kept:
                removed += remove_if_orphan(dirfd, name, cutoff)
    finally:
        os.close(dirfd)
    return removed
