"""Build small, valid ACIs for tests (tarfile, gzip), so each test owns its image."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path


def manifest(name: str, version: str = "1.0.0", **extra: object) -> dict[str, object]:
    return {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [
            {"name": "version", "value": version},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": "amd64"},
        ],
        "app": {"exec": ["/bin/hello"], "user": "0", "group": "0"},
        **extra,
    }


def build_aci(
    path: Path,
    name: str,
    *,
    version: str = "1.0.0",
    files: dict[str, bytes] | None = None,
    gz: bool = True,
    extra: dict[str, object] | None = None,
) -> Path:
    """An ACI of ``files`` under ``rootfs``; ``extra``: more manifest fields (annotations)."""
    files = files if files is not None else {"bin/hello": b"#!/bin/sh\necho hello\n"}
    with tarfile.open(path, "w:gz" if gz else "w") as tar:

        def add(arcname: str, data: bytes | None, mode: int) -> None:
            info = tarfile.TarInfo(arcname)
            info.mode, info.mtime = mode, 0
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        add("manifest", json.dumps(manifest(name, version, **(extra or {}))).encode(), 0o644)
        add("rootfs", None, 0o755)
        dirs = sorted(
            {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        )
        for d in dirs:
            add(f"rootfs/{d}", None, 0o755)
        for rel, data in sorted(files.items()):
            add(f"rootfs/{rel}", data, 0o755)
    return path
