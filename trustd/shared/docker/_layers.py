"""Layer streams (private): sniff the compression, decompress, count and hash as bytes pass.

A layer blob is gzip, zstd, xz, bzip2 or a plain tar; the magic bytes decide, whatever the
media type says. :class:`LayerReader` caps the uncompressed bytes (a decompression bomb stops
at the cap) and hashes them (sha256, for the config's ``diff_ids``).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import queue
import threading
import zlib
from collections.abc import Callable
from typing import BinaryIO, Final, Protocol, cast

_GZIP: Final = b"\x1f\x8b"
_ZSTD: Final = b"\x28\xb5\x2f\xfd"
_XZ: Final = b"\xfd7zXZ\x00"
_BZIP2: Final = b"BZh"


Chunk = bytes | bytearray


class CapExceeded(Exception):
    """The uncompressed layers passed the size cap."""


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Peeked:
    """A stream with its first bytes read already and handed back first."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.rest.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            return data
        return self.rest.read(n)


class Gunzip:
    """gzip members, one after another, read as :class:`gzip.GzipFile` reads them (the same
    bytes; zero padding between members skipped; anything else after a member must be
    another member; a cut stream is EOFError), but through zlib directly and in large
    pieces: GzipFile reads the blob 8 KiB at a time through two buffering layers and
    checks the CRC in Python, about a third of pass 1's decompression time (issue #12).
    zlib checks each member's header, CRC and length itself. ``read(n)`` returns at most
    ``n`` bytes (a bomb is stopped by the reader's cap, never held in memory)."""

    _PIECE: Final = 1 << 18

    def __init__(self, raw: Readable) -> None:
        self.raw = raw
        self.z = zlib.decompressobj(31)
        self.buf: bytes | memoryview = b""  # compressed bytes not yet given to zlib
        self.done = False
        self.empty = True  # no byte read yet: an empty blob is no bytes, as GzipFile reads it

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        while n and not self.done:
            if self.z.eof and not self._next_member():
                self.done = True
                break
            if not self.buf:
                self.buf = memoryview(self.raw.read(self._PIECE))
                if not self.buf and self.empty:
                    self.done = True
                    break
                self.empty = False
                if not self.buf:
                    raise EOFError(
                        "Compressed file ended before the end-of-stream marker was reached"
                    )
            feed = min(len(self.buf), max(n >> 2, 8192))  # the tail zlib copies stays small
            data = self.z.decompress(self.buf[:feed], n)
            # at a member's end the rest of ``feed`` is in unused_data (3.11 repeats it in
            # unconsumed_tail); before it, the output cap left unconsumed_tail unread
            left = 0 if self.z.eof else len(self.z.unconsumed_tail)
            self.buf = self.buf[feed - left :]
            if data:
                return data
        return b""

    def _next_member(self) -> bool:
        """Start the member after the one that ended; False at the clean end of the blob."""
        rest = bytes(self.z.unused_data) + bytes(self.buf)
        while not (rest := rest.lstrip(b"\x00")):
            rest = self.raw.read(self._PIECE)
            if not rest:
                return False
        while len(rest) < 2 and (more := self.raw.read(self._PIECE)):
            rest += more
        if rest[:2] != _GZIP:
            raise gzip.BadGzipFile(f"Not a gzipped file ({rest[:2]!r})")
        self.z, self.buf = zlib.decompressobj(31), memoryview(rest)
        return True


def decompressed(raw: BinaryIO) -> BinaryIO:
    """The uncompressed tar stream of one layer blob."""
    head = raw.read(6)
    stream = cast(BinaryIO, Peeked(head, raw))
    if head.startswith(_GZIP):
        return cast(BinaryIO, Gunzip(stream))
    if head.startswith(_ZSTD):
        import zstandard  # noqa: PLC0415 - only zstd layers need it (it imports platform)

        return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(stream))
    if head.startswith(_XZ):
        return cast(BinaryIO, lzma.LZMAFile(stream))
    if head.startswith(_BZIP2):
        return cast(BinaryIO, bz2.BZ2File(stream))
    return stream


class LayerReader:
    """Reads the uncompressed layer, counting against a shared budget and hashing (sha256)."""

    def __init__(self, plain: BinaryIO, budget: list[int], tee: BinaryIO | None = None) -> None:
        self.plain = plain
        self.budget = budget  # one-element list: bytes left for all layers of the image
        self.hash = hashlib.sha256()
        self.size = 0
        self.tee = tee  # gets every uncompressed byte, in order (pass 2 reads it back)

    def _next(self, n: int | None) -> bytes:
        """The next uncompressed bytes, counted against the budget."""
        want = 1 << 20 if n is None or n < 0 else n
        data = self.plain.read(min(want, self.budget[0] + 1))
        self.size += len(data)
        self.budget[0] -= len(data)
        if self.budget[0] < 0:
            raise CapExceeded("the uncompressed layers are larger than the cap")
        return data

    def _keep(self, data: Chunk) -> None:
        self.hash.update(data)
        if self.tee is not None:
            self.tee.write(data)

    def read(self, n: int = -1) -> bytes:
        data = self._next(n)
        self._keep(data)
        return data

    def drain(self, *, threaded: bool = False) -> None:
        """Read to the end; ``threaded``: hash and tee each chunk in a second thread while
        the next is decompressed (the same bytes, in the same order)."""
        if not threaded:
            while self.read(1 << 20):
                pass
            return
        drain = Drain(self._keep)
        try:
            while chunk := self._next(1 << 20):
                drain.put(chunk)
            drain.finish()
        finally:
            drain.finish(check=False)

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class Drain:
    """Hands chunks, in order, to ``write`` in a second thread: hashing and file writes
    release the GIL on large buffers, so they overlap the caller's work (decompressing,
    building headers). A failure there is raised in the caller at its next chunk, or at
    :meth:`finish`; the thread is gone after :meth:`finish`."""

    def __init__(self, write: Callable[[Chunk], None]) -> None:
        self.write = write
        self.queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="trustd-drain", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.write(chunk)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self.error = exc

    def put(self, chunk: Chunk) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(chunk)

    def finish(self, *, check: bool = True) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if check and self.error is not None:
            raise self.error
