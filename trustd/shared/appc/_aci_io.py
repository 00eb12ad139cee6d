"""Byte plumbing for reading an ACI once (private): magic sniffing, decompression, hashing.

The pipeline is ``source -> _Prefixed (re-plays the sniffed head) -> gzip/bz2/lzma reader ->
HashingReader -> tarfile``. The hashing reader sees every uncompressed byte exactly once, so
its SHA-512 is the appc image ID, and it enforces the uncompressed size cap as bytes come out
of the decompressor (a compression bomb stops at the cap, not at memory exhaustion).
"""

from __future__ import annotations

import bz2
import enum
import gzip
import hashlib
import io
import lzma
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_HEAD = 262  # the ustar magic sits at offset 257


class Compression(enum.StrEnum):
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    NONE = "none"


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class SourceReadError(Exception):
    """The underlying source failed (disk, network): not the archive's fault."""


class CapExceeded(Exception):
    """The uncompressed stream grew past the cap."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"the uncompressed archive is larger than {cap} bytes")
        self.cap = cap


class NotAnArchive(Exception):
    """The first bytes match no format an ACI may use."""


class _Prefixed(io.RawIOBase):
    """A raw reader that returns ``head`` first, then the rest of ``source``."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n], self._head = self._head[:n], self._head[n:]
            return n
        try:
            chunk = self._source.read(len(view))
        except OSError as exc:
            raise SourceReadError(str(exc)) from exc
        view[: len(chunk)] = chunk
        return len(chunk)


def sniff(source: BinaryIO) -> tuple[Compression, Readable]:
    """Detect the compression by magic bytes; return it and a reader of the uncompressed bytes."""
    try:
        head = _read_exactly(source, _HEAD)
    except OSError as exc:
        raise SourceReadError(str(exc)) from exc
    stream = io.BufferedReader(_Prefixed(head, source))
    if head.startswith(b"\x1f\x8b"):
        return Compression.GZIP, gzip.GzipFile(fileobj=stream, mode="rb")
    if head.startswith(b"BZh"):
        return Compression.BZIP2, bz2.BZ2File(stream, mode="rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ, lzma.LZMAFile(stream, mode="rb")
    if head[257:262] == b"ustar":
        return Compression.NONE, stream
    if len(head) < _HEAD:
        raise NotAnArchive(f"it is only {len(head)} bytes long, too short for a tar archive")
    raise NotAnArchive(
        f"its first bytes ({head[:6].hex()}) are not gzip, bzip2, xz or a ustar tar header"
    )


def _read_exactly(source: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = source.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class HashingReader:
    """Hashes and counts every byte read through it; refuses to grow past ``cap``.

    It also remembers where the last non-zero byte ended, so the caller can tell a tar that
    ends with zero blocks from one that was cut short or has bytes hidden after its end.
    It offers the file-object methods ``tarfile`` types ask for; only ``read`` is used.
    """

    def __init__(self, inner: Readable, cap: int) -> None:
        self._inner = inner
        self._cap = cap
        self._sha = hashlib.sha512()
        self.size = 0
        self.nonzero_end = 0

    def read(self, size: int = -1, /) -> bytes:
        want = size if size >= 0 else 1 << 20
        chunk = self._inner.read(min(want, self._cap + 1 - self.size) or 1)
        if not chunk:
            return b""
        if self.size + len(chunk) > self._cap:
            raise CapExceeded(self._cap)
        self._sha.update(chunk)
        kept = len(chunk.rstrip(b"\x00"))
        if kept:
            self.nonzero_end = self.size + kept
        self.size += len(chunk)
        return chunk

    def drain(self) -> None:
        """Read (and hash) whatever is left, up to the cap."""
        while self.read(1 << 16):
            pass

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def tell(self) -> int:
        return self.size

    def write(self, b: bytes, /) -> int:
        raise io.UnsupportedOperation("write")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("seek")

    def close(self) -> None:
        """The caller owns the source; nothing to close here."""
