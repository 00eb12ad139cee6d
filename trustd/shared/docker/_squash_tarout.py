"""Pass 2's tar writer (private to :mod:`._squash`): the PAX stream ``tarfile`` would write,
hashed and counted on the way out into an :class:`AciAccount`, and a tree node's header."""

from __future__ import annotations

import hashlib
import tarfile
from typing import BinaryIO, Final, cast

from trustd.shared._dataclass import frozen
from trustd.shared.docker._layers import Chunk, Drain
from trustd.shared.docker._squash_model import _REGULAR, _Node


@frozen
class AciAccount:
    """What pass 2 wrote, counted as it was written: what an inspection of the ACI would
    establish (the property tests compare the two on generated layers)."""

    sha512: str  # hex, of every byte written, end blocks and record padding included
    size: int
    entry_count: int  # tar members (pax extended headers are not members)
    setuid_paths: tuple[str, ...]  # set-uid/gid regular files and hard links, archive order


_BLOCK: Final = tarfile.BLOCKSIZE
_RECORD: Final = tarfile.RECORDSIZE
_FLUSH: Final = 1 << 20
_SETID: Final = 0o6000


class _TarOut:
    """The bytes of ``tarfile.open(fileobj=out, mode="w|", format=PAX_FORMAT)`` fed with
    ``addfile``, and nothing else: each header is ``TarInfo.tobuf`` in that format, encoding
    and error handler; data is padded to a block; the end is two zero blocks and zeros up to
    a whole record. Every byte is hashed and counted on its way out; small pieces are
    gathered and written in large ones."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha512()
        self.size = 0
        self.entries = 0
        self.setuid: list[str] = []
        self.pending = bytearray()
        self.drain = Drain(self._write)

    def _write(self, chunk: Chunk) -> None:  # in the drain thread, chunks in order
        self.out.write(chunk)
        self.hash.update(chunk)

    def _put(self, data: bytes | bytearray | memoryview) -> None:
        self.pending += data
        if len(self.pending) >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.size += len(self.pending)
            self.drain.put(self.pending)
            self.pending = bytearray()

    def _header(self, info: tarfile.TarInfo) -> None:
        head = _ustar_header(info)
        if head is None:
            head = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
        self._put(head)
        self.entries += 1
        if info.type in (*_REGULAR, tarfile.LNKTYPE) and info.mode & _SETID:
            self.setuid.append(info.name)

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            self._put(bytes(_BLOCK - size % _BLOCK))

    def add(self, info: tarfile.TarInfo, data: BinaryIO | None = None) -> None:
        self._header(info)
        if data is None or not info.size:
            return
        left = info.size
        while left:
            chunk = data.read(min(left, _FLUSH))
            if not chunk:
                raise tarfile.ReadError("unexpected end of data")
            left -= len(chunk)
            self._put(chunk)
        self._pad(info.size)

    def add_bytes(self, info: tarfile.TarInfo, data: bytes) -> None:
        self._header(info)
        self._put(data)
        self._pad(len(data))

    def close(self) -> AciAccount:
        end = self.size + len(self.pending) + 2 * _BLOCK
        self._put(bytes(2 * _BLOCK + (-end) % _RECORD))
        self._flush()
        self.drain.finish()
        return AciAccount(self.hash.hexdigest(), self.size, self.entries, tuple(self.setuid))

    def abandon(self) -> None:
        """Stop the drain thread after a failure (nothing more is written)."""
        self.drain.finish(check=False)


_OCTAL7: Final = 8**7
_OCTAL11: Final = 8**11
_TAIL: Final = tarfile.POSIX_MAGIC + bytes(32 + 32 + 8 + 8 + 155 + 12)  # magic .. block end


def _ustar_header(info: tarfile.TarInfo) -> bytes | None:
    """The one block ``TarInfo.tobuf(PAX_FORMAT, …)`` gives a member that needs no pax
    header (ASCII name and link of at most 100 bytes, no user or group name, numbers that
    fit their octal fields, not a device), built directly; None for any other member (the
    caller asks ``tobuf``). The property tests compare the two on generated members."""
    name = info.name
    if info.type == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    link = info.linkname
    uid, gid, size, mtime = info.uid, info.gid, info.size, info.mtime
    if (
        not (name.isascii() and link.isascii())
        or len(name) > 100  # ustar name field
        or len(link) > 100  # ustar linkname field
        or info.uname
        or info.gname
        or info.pax_headers
        or info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE)
        or not all(type(v) is int for v in (uid, gid, size, mtime))
        or not (0 <= uid < _OCTAL7 and 0 <= gid < _OCTAL7)
        or not (0 <= size < _OCTAL11 and 0 <= mtime < _OCTAL11)
    ):
        return None
    block = b"".join(
        (
            name.encode().ljust(100, b"\0"),
            b"%07o\0%07o\0%07o\0%011o\0%011o\0        "
            % (info.mode & 0o7777, uid, gid, size, cast(int, mtime)),
            info.type,
            link.encode().ljust(100, b"\0"),
            _TAIL,
        )
    )
    return block[:148] + b"%06o\0" % sum(block) + block[155:]


def _header(name: str, node: _Node) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid, info.mtime = node.mode, node.uid, node.gid, node.mtime
    info.uname = info.gname = ""
    if node.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif node.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, node.linkname
    else:
        info.type = tarfile.REGTYPE
    return info
