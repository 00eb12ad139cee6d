"""Builders for in-test ACI archives (tar entries, good trees, compressions) for test_aci*."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trustd.shared.appc.aci import AciInfo, AciLimits, Compression, inspect_aci

VECTORS = Path(__file__).parents[2] / "vectors"
LIMITS = AciLimits()
MANIFEST = json.dumps(
    {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/app",
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
    }
).encode()


@dataclass
class E:
    """One tar entry to write."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    pax: dict[str, str] = field(default_factory=dict)

    def info(self) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(self.name)
        ti.type, ti.linkname, ti.mode, ti.pax_headers = (
            self.type,
            self.linkname,
            self.mode,
            self.pax,
        )
        ti.size = len(self.data) if ti.isreg() else 0
        return ti


def d(name: str) -> E:
    return E(name, tarfile.DIRTYPE, mode=0o755)


def sym(name: str, target: str) -> E:
    return E(name, tarfile.SYMTYPE, linkname=target)


def hard(name: str, target: str) -> E:
    return E(name, tarfile.LNKTYPE, linkname=target)


def good(*extra: E) -> list[E]:
    return [
        E("manifest", data=MANIFEST),
        d("rootfs"),
        d("rootfs/bin"),
        E("rootfs/bin/app", data=b"x"),
        *extra,
    ]


def tar_bytes(entries: list[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for e in entries:
            tar.addfile(e.info(), io.BytesIO(e.data) if e.data else None)
    return buf.getvalue()


COMPRESS: dict[Compression, Callable[[bytes], bytes]] = {
    Compression.GZIP: gzip.compress,
    Compression.BZIP2: bz2.compress,
    Compression.XZ: lzma.compress,
    Compression.NONE: lambda b: b,
}


def inspect(data: bytes, limits: AciLimits = LIMITS, **kw: bool) -> AciInfo:
    return inspect_aci(io.BytesIO(data), limits=limits, name="test.aci", **kw)
