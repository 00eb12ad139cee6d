"""Waiting for another holder of a download's scratch file, with the download's own floor.

ACIs (``cas/tmp/partial-*``) and ``docker://`` layers (``cas/tmp/docker-blob-*``) download
into scratch files of the group's ``cas/tmp``, each under an exclusive flock so that two
fetches of one file never write it at once: the second waits for the first. Any member of
group ``rkt`` can create such a file for a URL or digest it can guess and hold its flock,
and the wait used to be without bound: root's ``rkt fetch`` and ``rkt run`` of that image
hung for ever (red team 6). An honest holder is downloading: its file grows. So the wait is
held to the throughput floor the download itself must keep (fetch.d ``minRate``, ADR 0023):
while the holder's file grows by ``need`` bytes in each ``window`` seconds the waiter waits;
once it does not, the waiter refuses with the file named, and nothing of the store changes.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

from trustd.shared.errors import LocalStateError

POLL = 0.25  # seconds between two tries of the lock while another process holds it


def _took(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_scratch(fd: int, what: str, path: str, min_rate: tuple[int, float] | None) -> None:
    """Take ``fd``'s exclusive flock, waiting while its holder's file keeps ``min_rate``
    (bytes, seconds; None: the holder is waited for without bound, as before); else raise."""
    if _took(fd):
        return
    print(f"image: another rkt instance is downloading {what}, waiting...", file=sys.stderr)
    if min_rate is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    need, window = min_rate
    size, since = os.fstat(fd).st_size, time.monotonic()
    while True:
        time.sleep(POLL)
        if _took(fd):
            return
        now = time.monotonic()
        grown = os.fstat(fd).st_size
        if grown - size >= need:
            size, since = grown, now
        elif now - since >= window:
            raise LocalStateError(
                f"{what}: another process holds its scratch file {path} and it grew "
                f"{grown - size} bytes in {now - since:.0f} s (the floor is {need} bytes in "
                f"{window:g} s); not waiting for it",
                hint="if another rkt fetch of this image is still converting or verifying, "
                f"run the command again once it ends; else find the holder with: fuser {path}",
            )
