"""Build Docker layers (tar, optionally gzip/zstd) in memory for conversion tests."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import zstandard


@dataclass(frozen=True)
class E:
    """One layer entry: kind is file, dir, symlink, hardlink, fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644


def layer(*entries: E, compress: str = "gzip") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mode = e.mode
            if e.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.link
            elif e.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, e.link
            elif e.kind == "fifo":
                info.type = tarfile.FIFOTYPE
            else:
                info.size = len(e.data)
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
    data = raw.getvalue()
    if compress == "gzip":
        return gzip.compress(data, 1)
    if compress == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def openers(*blobs: bytes) -> tuple[Callable[[], BinaryIO], ...]:
    return tuple((lambda b=b: io.BytesIO(b)) for b in blobs)


CONFIG = (
    b'{"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/hello"], '
    b'"Env": ["PATH=/bin"]}}'
)
