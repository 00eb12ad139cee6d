"""The embedded swtpm's supervisor: one per data dir, detached, gone with its directory.

``python -I .../_swtpmd.py TPM_DIR READY_FD`` (a script, stdlib only: the long-lived
daemon loads neither trustd nor tpm2-pytss) is started by :func:`._swtpm.start`. It forks
once more (so it is nobody's child), checks ``TPM_DIR`` (a 0700 directory of this uid),
takes ``swtpmd.lock`` (a second supervisor for the same directory refuses to start) and
runs swtpm as its child: data and control channels are UNIX sockets ``swtpm.sock`` and
``swtpm.ctrl`` (0600) inside the directory, stdin and stdout are ``/dev/null``, stderr is
``swtpm.log``, no other fd is inherited. swtpm gets SIGKILL if the supervisor dies
(``PR_SET_PDEATHSIG``).

When swtpm answers, the supervisor writes ``ready PID SWTPM_PID`` to ``READY_FD`` and closes
it. It then checks twice a second that the directory still exists where it was (the open
fd's link count, the path's inode); when it is removed or moved, or on SIGTERM, it stops
swtpm and exits. swtpm has no option to do this itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

LOCK: Final = "swtpmd.lock"
SOCKET: Final = "swtpm.sock"
CTRL: Final = "swtpm.ctrl"
LOG: Final = "swtpm.log"
STATE: Final = "swtpm-state"
POLL: Final = 0.5
_READY_TIMEOUT: Final = 10.0
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(127)


def _argv(binary: str) -> list[str]:
    argv = [binary, "socket", "--tpm2", "--tpmstate", f"dir={STATE},mode=0600"]
    argv += ["--server", f"type=unixio,path={SOCKET},mode=0600"]
    argv += ["--ctrl", f"type=unixio,path={CTRL},mode=0600"]
    argv += ["--flags", "not-need-init,startup-clear", "--log", f"file={LOG}"]
    return argv


def _gone(dirfd: int, path: Path) -> bool:
    """The directory was removed (no links left) or something else now has its path."""
    held = os.fstat(dirfd)
    if held.st_nlink == 0:
        return True
    try:
        now = path.lstat()
    except OSError:
        return True
    return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)


def _answers() -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(SOCKET)
        except OSError:
            return False
        return True


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    for name in (SOCKET, CTRL):  # relative to the directory (our cwd), wherever it now is
        with contextlib.suppress(OSError):
            Path(name).unlink()


def _serve(path: Path, ready: int) -> int:
    dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(dirfd)
    if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        os.write(ready, f"error {path} is not a 0700 directory of uid {os.geteuid()}\n".encode())
        return 1
    os.fchdir(dirfd)
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.write(ready, b"busy another supervisor serves this directory\n")
        return 1
    binary = next(
        (
            f"{d}/swtpm"
            for d in ("/usr/bin", "/usr/local/bin", "/bin")
            if os.access(f"{d}/swtpm", 1)
        ),
        None,
    )
    if binary is None:
        os.write(ready, b"error the swtpm program is not installed\n")
        return 1
    Path(STATE).mkdir(mode=0o700, exist_ok=True)
    for name in (SOCKET, CTRL):
        Path(name).unlink(missing_ok=True)
    stopping = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    log = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    child = subprocess.Popen(  # noqa: S603
        _argv(binary),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        close_fds=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 (single-threaded supervisor)
    )
    os.close(log)
    try:
        deadline = time.monotonic() + _READY_TIMEOUT
        while not _answers():
            if child.poll() is not None or stopping or time.monotonic() > deadline:
                os.write(ready, f"error swtpm did not start; see {path / LOG}\n".encode())
                return 1
            time.sleep(0.01)
        os.write(ready, f"ready {os.getpid()} {child.pid}\n".encode())
        os.close(ready)
        while not stopping and child.poll() is None and not _gone(dirfd, path):
            time.sleep(POLL)
        return 0
    finally:
        _stop(child)


def main(argv: list[str]) -> int:
    path, ready = Path(argv[0]), int(argv[1])
    if os.fork() != 0:  # the starter waits for this process; the supervisor is nobody's child
        os._exit(0)
    try:
        return _serve(path, ready)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(ready, f"error {exc}\n".encode())
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
