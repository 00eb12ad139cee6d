"""The embedded swtpm's channel: TPM commands over a UNIX socket in the root-only ``tpm/``.

libtss2 3.2 (Debian 12) has no UNIX-socket TCTI for swtpm, so :class:`UnixTcti` carries one
written in Python (tpm2-pytss ``PyTCTI``): each command is sent as is and one response read
back, which is what swtpm's data channel speaks. The socket is reached through an fd of the
checked directory (``/proc/self/fd/N/swtpm.sock``), so the path is short and no component is
re-resolved after the check.

Root's tpm2-tools reach it through the ``cmd:`` TCTI and :mod:`trustd.privileged._tpmrelay`
(:func:`tools_tcti`).
"""

from __future__ import annotations

import shlex
import socket
import sys
from pathlib import Path

from tpm2_pytss.TCTI import PyTCTI  # type: ignore[import-untyped]

from trustd.privileged._tpmsocket import (
    HEADER,
    MAX_RESPONSE,
    SOCKET,
    connect_socket,
    open_tpm_dir,
    read_message,
)

__all__ = [
    "HEADER",
    "MAX_RESPONSE",
    "SOCKET",
    "UnixTcti",
    "connect_socket",
    "open_tpm_dir",
    "read_message",
    "tools_tcti",
]


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
    argv = [sys.executable, "-I", "-m", "trustd.privileged._tpmrelay", str(tpm_dir)]
    return "cmd:" + shlex.join(argv)
