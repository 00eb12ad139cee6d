"""Relay TPM commands from stdin to the embedded swtpm's socket, responses back to stdout.

``python -I -m trustd.privileged._tpmrelay TPM_DIR``: what the ``cmd:`` TCTI of
:func:`trustd.privileged.measure._unixtpm.tools_tcti` runs, so root's tpm2-tools can talk to
the embedded swtpm (``TPM2TOOLS_TCTI``). Only root can open the socket. It loads
:mod:`trustd.privileged._tpmsocket` only (no tpm2-pytss): it runs once per tpm2-tools command.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trustd.privileged._tpmsocket import HEADER, connect_socket, read_message


def relay(tpm_dir: Path) -> int:
    sock = connect_socket(tpm_dir)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(HEADER)
        if not header:
            return 0
        size = int.from_bytes(header[2:6], "big")
        body = stdin.read(max(0, size - HEADER))
        sock.sendall(header + body)
        stdout.write(read_message(sock))
        stdout.flush()


if __name__ == "__main__":
    sys.exit(relay(Path(sys.argv[1])))
