"""The embedded swtpm's channel: TPM commands over a UNIX socket in the root-only ``tpm/``.

libtss2 3.2 (Debian 12) has no UNIX-socket TCTI for swtpm, so :class:`UnixTcti` carries one
written in Python (tpm2-pytss ``PyTCTI``): each command is sent as is and one response read
back, which is what swtpm's data channel speaks. The socket is reached through an fd of the
checked directory (``/proc/self/fd/N/swtpm.sock``), so the path is short and no component is
re-resolved after the check.

Root's tpm2-tools reach it through the ``cmd:`` TCTI and :mod:`._tpmrelay` (:func:`tools_tcti`).
"""

from __future__ import annotations

import os
import shlex
import socket
import stat
import sys
from pathlib import Path
from typing import Final

from tpm2_pytss.TCTI import PyTCTI  # type: ignore[import-untyped]

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


class UnixTcti(PyTCTI):  # type: ignore[misc]
    """A TCTI over the swtpm's UNIX socket (one connection, closed by :meth:`do_finalize`)."""

    def __init__(self, tpm_dir: Path) -> None:
        super().__init__(max_size=MAX_RESPONSE, magic=b"TRUSTDUX")
        self._sock: socket.socket | None = connect_socket(tpm_dir)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionError("the TCTI is closed")
        return self._sock

    def do_transmit(self, command: bytes) -> None:
        self._socket().sendall(command)

    def do_receive(self, timeout: int) -> bytes:
        sock = self._socket()
        sock.settimeout(None if timeout < 0 else timeout / 1000)
        return read_message(sock)

    def do_finalize(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def tools_tcti(tpm_dir: Path) -> str:
    """A ``cmd:`` TCTI string for root's tpm2-tools (``TPM2TOOLS_TCTI``) to this swtpm."""
    argv = [sys.executable, "-I", "-m", "trustd.privileged.measure._tpmrelay", str(tpm_dir)]
    return "cmd:" + shlex.join(argv)
