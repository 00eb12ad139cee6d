"""The root-only state directory ``<data-dir>/tpm/`` and its lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from trustd.shared.errors import LocalStateError


def tpm_dir(data_dir: Path) -> Path:
    return data_dir / "tpm"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` 0700; refuse one owned by someone else or open to group/others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise LocalStateError(f"{path} is not a directory", hint=f"remove it: rm {path}")
    if st.st_uid != os.geteuid():
        raise LocalStateError(
            f"{path} is owned by uid {st.st_uid}, not by uid {os.geteuid()}",
            hint=f"run: chown {os.geteuid()} {path} (the TPM state is root's alone)",
        )
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold ``directory/lock`` exclusively: one trustd at a time starts the swtpm or extends."""
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
