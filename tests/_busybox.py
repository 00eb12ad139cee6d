"""A small real image for pod tests: Debian's static busybox and its applet links."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    return sorted(set(out.split()) - {"busybox"})


def busybox_aci(
    path: Path,
    name: str,
    *,
    exec_: list[str] | None = None,
    isolators: list[dict[str, object]] | None = None,
    files: dict[str, bytes] | None = None,
    version: str = "1.0.0",
    app_extra: dict[str, object] | None = None,
    symlinks: dict[str, str] | None = None,
) -> Path:
    manifest = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [
            {"name": "version", "value": version},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": "amd64"},
        ],
        "app": {
            "exec": exec_ or ["/bin/sh", "-c", "echo hello from busybox"],
            "user": "0",
            "group": "0",
            "isolators": isolators or [],
            **(app_extra or {}),
        },
    }
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:

        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        raw = json.dumps(manifest).encode()
        m = tarfile.TarInfo("manifest")
        m.size = len(raw)
        add(m, raw)
        for d in ("rootfs", "rootfs/bin", "rootfs/etc", "rootfs/tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d.endswith("tmp") else 0o755
            add(info)
        body = Path(BUSYBOX).read_bytes()
        bb = tarfile.TarInfo("rootfs/bin/busybox")
        bb.size, bb.mode = len(body), 0o755
        add(bb, body)
        for applet in applets():
            link = tarfile.TarInfo(f"rootfs/bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            add(link)
        extra = {
            "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
            "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
            **(files or {}),
        }
        for rel, data in sorted(extra.items()):
            info = tarfile.TarInfo(f"rootfs/{rel}")
            info.size, info.mode = len(data), 0o755
            add(info, data)
        for rel, target in sorted((symlinks or {}).items()):  # e.g. {"data": "/etc"}
            link = tarfile.TarInfo(f"rootfs/{rel}")
            link.type, link.linkname = tarfile.SYMTYPE, target
            add(link)
    return path
