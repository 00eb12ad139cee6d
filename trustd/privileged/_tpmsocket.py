"""The embedded swtpm's UNIX socket only: connect through the checked ``tpm/`` fd, frame messages.

Its own light module (the standard library and :mod:`trustd.shared.errors` only) because
:mod:`trustd.privileged._tpmrelay` runs once per root tpm2-tools command and must not load
tpm2-pytss or the measurement package. :mod:`.measure._unixtpm` builds its TCTI on it.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Final

from trustd.shared.errors import LocalStateError

SOCKET: Final = "swtpm.sock"
HEADER: Final = 10  # tag (2), size (4), code (4)
MAX_RESPONSE: Final = 4096


def open_tpm_dir(tpm_dir: Path) -> int:
    """An fd of ``tpm_dir``, refused unless it is a directory of this uid, mode 0700."""
    try:
        fd = os.open(tpm_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise LocalStateError(
            f"{tpm_dir}: {exc.strerror}", hint="run: rkt attest status (starts the swtpm)"
        ) from exc
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        os.close(fd)
        raise LocalStateError(
            f"{tpm_dir} is not a 0700 directory of uid {os.geteuid()}",
            hint=f"remove it (the TPM state is root's alone): rm -r {tpm_dir}",
        )
    return fd


def connect_socket(tpm_dir: Path) -> socket.socket:
    """A connection to the swtpm of ``tpm_dir``, through the checked directory's fd."""
    dirfd = open_tpm_dir(tpm_dir)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(f"/proc/self/fd/{dirfd}/{SOCKET}")
        except OSError:
            sock.close()
            raise
        return sock
    finally:
        os.close(dirfd)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the swtpm closed the connection mid-response")
        data += chunk
    return bytes(data)


def read_message(sock: socket.socket) -> bytes:
    """One TPM command or response: the header's size field says how long it is."""
    header = _read_exact(sock, HEADER)
    size = int.from_bytes(header[2:6], "big")
    if not HEADER <= size <= MAX_RESPONSE:
        raise ConnectionError(f"a TPM message of {size} bytes is not plausible")
    return header + _read_exact(sock, size - HEADER)
