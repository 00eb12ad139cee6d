"""An app's process, named so that a reused PID can never stand in for it.

A PID read from a file names whatever process holds that number *now*: once the app exits,
any local user can fork until the kernel hands them the same PID, and ``rkt enter`` or
``rkt stop`` would then join or signal their process as root. So stage1 records, next to
the PID, the process's start time (``/proc/<pid>/stat`` field 22, clock ticks since boot);
:func:`pin` opens a pidfd first and then checks that the process holding the PID started
at the recorded time and that the app has not exited. A live process is unique by (PID,
start time), and the pidfd keeps naming it, so whatever is done through the pidfd (signals)
or checked again with :func:`still_pinned` after opening its ``/proc`` entries reaches
exactly the app.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from trustd.shared._dataclass import frozen
from trustd.shared.errors import UserError

_SYS_PIDFD_OPEN = 434
_SYS_PIDFD_SEND_SIGNAL = 424
_libc = ctypes.CDLL(None, use_errno=True)
PID_FILE, START_FILE, EXIT_FILE = "pid", "starttime", "exit"


def start_time(pid: int) -> int:
    """Field 22 of ``/proc/<pid>/stat``; the command name (field 2) may hold spaces and ')'."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rindex(b")") + 2 :].split()[19].decode())


def record_self(app_dir: Path) -> None:
    """In the app's process, before it execs: its host PID and start time, for enter/stop."""
    pid = int(str(Path("/proc/self").readlink()))
    (app_dir / START_FILE).write_text(str(start_time(pid)))
    (app_dir / PID_FILE).write_text(str(pid))


@frozen
class Pinned:
    pid: int
    pidfd: int
    started: int

    def signal(self, sig: int) -> None:
        """Signal exactly this process (pidfd_send_signal), never whoever holds the PID."""
        if _libc.syscall(_SYS_PIDFD_SEND_SIGNAL, self.pidfd, sig, None, 0) != 0:
            err = ctypes.get_errno()
            if err != errno.ESRCH:
                raise OSError(err, os.strerror(err))

    def close(self) -> None:
        os.close(self.pidfd)


def still_pinned(pinned: Pinned) -> bool:
    """The pinned process is alive and still the one at its PID (checked after /proc use)."""
    if _libc.syscall(_SYS_PIDFD_SEND_SIGNAL, pinned.pidfd, 0, None, 0) != 0:
        return False
    try:
        return start_time(pinned.pid) == pinned.started
    except (OSError, ValueError, IndexError):
        return False


def pin(app_dir: Path) -> Pinned | None:
    """The app recorded in ``app_dir`` if it is still running, else None.

    None when the app has exited (its exit file exists), never recorded a start time, or
    its PID is now held by another process."""
    if (app_dir / EXIT_FILE).exists():
        return None
    try:
        pid = int((app_dir / PID_FILE).read_text())
        started = int((app_dir / START_FILE).read_text())
    except (OSError, ValueError):
        return None
    fd = _libc.syscall(_SYS_PIDFD_OPEN, pid, 0)
    if fd < 0:
        return None
    pinned = Pinned(pid, fd, started)
    if not still_pinned(pinned):
        pinned.close()
        return None
    return pinned


def pin_running(app_dir: Path, app: str, pod: str) -> Pinned:
    pinned = pin(app_dir)
    if pinned is None:
        raise UserError(f"app {app!r} of pod {pod} is not running")
    return pinned


__all__ = ["Pinned", "pin", "pin_running", "record_self", "start_time", "still_pinned"]
