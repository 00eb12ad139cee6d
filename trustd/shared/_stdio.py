"""Descriptors 0, 1 and 2 open before anything else is opened.

A process started with one of them closed (``rkt run >&-``, a service manager's setup) gives
its number to the next file it opens: a lock, a store blob, root's decision log would then
receive what is printed, and the pod it forks would inherit it as its own stdout. Python
leaves ``sys.stdout`` as None in that case, so the flush at exit failed with an
AttributeError. As glibc does for a setuid program, a closed standard descriptor is opened
on ``/dev/null`` first (what is written there is lost, as it would have been).
"""

from __future__ import annotations

import io
import os
import sys

_STREAMS = ("stdin", "stdout", "stderr")


def standard_fds_open() -> None:
    """Open ``/dev/null`` on each of fds 0-2 that is closed; give Python a stream for it."""
    for fd, name in enumerate(_STREAMS):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if null != fd:  # pragma: no cover - a lower one was closed after the check
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            mode = "r" if fd == 0 else "w"
            stream = io.TextIOWrapper(io.FileIO(fd, mode, closefd=False), errors="replace")
            setattr(sys, name, stream)
