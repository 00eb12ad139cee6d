"""``python -I -m trustd.unprivileged.mds --config-fd=3 --listen-fd=4``: serve one pod;
``python -I -m trustd.unprivileged.mds --daemon``: the host daemon (daemon.py).

Started by the pod's init as ``rkt-mds`` with no capabilities (trustd/privileged/executor/
_mds.py). fd 3 carries the pod's metadata, token and HMAC key as one JSON document; fd 4 is
the listening socket. The process makes itself non-dumpable before it reads the key, so an
app that runs as the same uid cannot ptrace it or read its memory.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
from pathlib import Path

from trustd.shared.isolation import set_undumpable
from trustd.unprivileged.mds.server import MetadataService, PodMetadata

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


def decode(raw: bytes) -> PodMetadata:
    doc = json.loads(raw)
    apps = doc["apps"]
    return PodMetadata(
        uuid=str(doc["uuid"]),
        pod_manifest=dict(doc["pod_manifest"]),
        image_manifests={n: base64.b64decode(a["manifest"]) for n, a in apps.items()},
        image_ids={n: str(a["id"]) for n, a in apps.items()},
        key=base64.b64decode(doc["key"]),
        token=str(doc["token"]),
    )


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
    if (argv if argv is not None else sys.argv[1:]) == ["--daemon"]:  # rkt metadata-service
        from trustd.unprivileged.mds.daemon import main as daemon  # noqa: PLC0415

        return daemon()
    parser = argparse.ArgumentParser(prog="trustd.unprivileged.mds")
    parser.add_argument("--config-fd", type=int, required=True)
    parser.add_argument("--listen-fd", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        meta = decode(_read_all(args.config_fd))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"metadata service: bad metadata on fd {args.config_fd}: {exc}", file=sys.stderr)
        return 2
    listener = socket.socket(fileno=args.listen_fd)
    MetadataService(meta, listener=listener).httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
