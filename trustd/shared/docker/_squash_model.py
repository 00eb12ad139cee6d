"""What the two squash passes share (private to :mod:`._squash`): the limits, the layer
opener, the tar types of a regular file, and the in-memory tree's node and layer entry."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from trustd.shared._dataclass import frozen

_REGULAR: Final = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)

Opener = Callable[[], BinaryIO]


@frozen
class SquashLimits:
    max_layers: int = 256
    max_entries: int = 1_000_000
    max_uncompressed_size: int = 16 * 1024**3
    max_file_size: int = 8 * 1024**3
    max_header_size: int = 1024**2


@dataclass(slots=True)
class _Node:
    kind: str  # "dir", "file", "symlink"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    linkname: str = ""  # symlink target
    source: tuple[int, int] | None = None  # (layer, member ordinal) holding a file's bytes
    size: int = 0
    explicit: bool = True  # False: a parent no layer declared
    children: dict[str, _Node] = field(default_factory=dict)


@frozen
class _Entry:
    ordinal: int
    path: str
    kind: str  # dir, file, symlink, hardlink
    node: _Node
    link_target: str = ""
