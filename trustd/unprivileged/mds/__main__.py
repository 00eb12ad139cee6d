"""``python -I -m trustd.unprivileged.mds --daemon``: the host daemon (daemon.py), started by
root's ``rkt metadata-service`` (dropped to ``rkt-mds``, no capabilities, _mdsd.py) or by
systemd's ``rkt-metadata.socket``. The process makes itself non-dumpable and refuses to serve
unconfined before anything else. (The one-pod mode an in-pod server used is gone, ADR 0025.)
``_read_all`` and ``_confined`` serve the attestation daemon too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from trustd.shared.isolation import set_undumpable

MAX_CONFIG = 16 << 20


def _read_all(fd: int) -> bytes:
    chunks, size = [], 0
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_CONFIG:
            raise ValueError(f"the metadata on fd {fd} is larger than {MAX_CONFIG} bytes")
    os.close(fd)
    return b"".join(chunks)


def _confined() -> str | None:
    """Why this process is not the unprivileged, capability-less one it must be, or None."""
    if os.getuid() == 0 or os.geteuid() == 0:
        return "it runs as root"
    status = dict(
        line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines()
    )
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(status[field], 16):
            return f"{field} is {status[field].strip()}"
    if status["NoNewPrivs"].strip() != "1":
        return "no_new_privs is not set"
    return None


def main(argv: list[str] | None = None) -> int:
    set_undumpable()  # first: before the key is in memory
    if (why := _confined()) is not None:
        print(f"metadata service: refusing to serve: {why}", file=sys.stderr)
        return 2
    if (argv if argv is not None else sys.argv[1:]) != ["--daemon"]:
        print("usage: python -I -m trustd.unprivileged.mds --daemon", file=sys.stderr)
        return 2
    from trustd.unprivileged.mds.daemon import main as daemon  # noqa: PLC0415

    return daemon()


if __name__ == "__main__":
    sys.exit(main())
