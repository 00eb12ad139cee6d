"""A lean reader of plain tar headers for pass 1 of the squash (private).

``tarfile`` spends most of pass 1 building each member through several layers of calls.
:func:`next_member` reads the next header of a layer held in a seekable file itself when
it is the common, simple kind — one block, a ustar/GNU/v7 header of a built-in type, octal
numbers, a checksum that sums right, no global pax header in force — and builds the member
exactly as ``TarInfo.fromtarfile`` would (the same fields, the same name rules, the same
offsets, ``tar.offset`` advanced the same way). Anything else — pax and GNU long-name
headers, sparse files, base-256 numbers, a bad or signed-char checksum, a zero, short or
missing block — is left to ``tar.next()`` itself, so every refusal and every unusual form
keeps tarfile's behaviour (and the caps of ``checked_tarinfo``). The property tests compare
the two readers member by member on generated and damaged archives.
"""

from __future__ import annotations

import tarfile
from typing import IO, Final, cast

_BLOCK: Final = tarfile.BLOCKSIZE
# one-block headers of built-in types: no pax (x, g, X), GNU long name (L, K) or sparse (S)
_SIMPLE: Final = frozenset(
    (
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.LNKTYPE,
        tarfile.SYMTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.DIRTYPE,
        tarfile.FIFOTYPE,
        tarfile.CONTTYPE,
    )
)
_REGULAR: Final = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


class _Slow(Exception):
    """This header is not the simple kind: tarfile reads it."""


def _octal(field: bytes) -> int:
    """tarfile's ``nti`` for an octal field (a base-256 one is left to tarfile)."""
    if field[0] in (0o200, 0o377):
        raise _Slow
    end = field.find(0)
    text = field if end < 0 else field[:end]
    try:
        return int(text.decode("ascii").strip() or "0", 8)
    except ValueError as exc:  # UnicodeDecodeError included
        raise _Slow from exc


def _text(field: bytes, encoding: str, errors: str) -> str:
    """tarfile's ``nts``."""
    end = field.find(0)
    return (field if end < 0 else field[:end]).decode(encoding, errors)


def next_member(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    """The next member of ``tar`` (opened on a seekable file in mode ``r:``), or None at
    the end, as ``tar.next()`` gives it."""
    # tarfile read the first member when it opened the archive; a global pax header changes
    # every later member: both are tarfile's job
    if tar.firstmember is None and not tar.pax_headers:  # type: ignore[attr-defined]
        member = _simple(tar)
        if member is not None:
            return member
    return tar.next()


def _simple(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    f = cast(IO[bytes], tar.fileobj)  # r: mode: the seekable file it was opened on
    before = f.tell()
    member = _parse(tar, f)
    if member is None:
        f.seek(before)  # tarfile's next() checks the data before offset by where it stands
    return member


def _parse(tar: tarfile.TarFile, f: IO[bytes]) -> tarfile.TarInfo | None:
    offset = tar.offset
    f.seek(offset)
    buf = f.read(_BLOCK)
    if len(buf) != _BLOCK:
        return None
    kind = buf[156:157]
    if kind not in _SIMPLE:
        return None
    try:
        chksum = _octal(buf[148:156])
        if chksum != sum(buf) - sum(buf[148:156]) + 256:
            return None  # bad, or a signed-char sum: tarfile decides
        mode, uid, gid = _octal(buf[100:108]), _octal(buf[108:116]), _octal(buf[116:124])
        size, mtime = _octal(buf[124:136]), _octal(buf[136:148])
        devmajor, devminor = _octal(buf[329:337]), _octal(buf[337:345])
    except _Slow:
        return None
    enc, err = tar.encoding, tar.errors
    assert err is not None  # noqa: S101 - TarFile always sets it
    name = _text(buf[0:100], enc, err)
    prefix = _text(buf[345:500], enc, err)
    if kind == tarfile.AREGTYPE and name.endswith("/"):
        kind = tarfile.DIRTYPE
    if kind == tarfile.DIRTYPE:
        name = name.rstrip("/")
    if prefix:
        name = prefix + "/" + name
    if kind == tarfile.DIRTYPE:
        name = name.rstrip("/")
    member = tar.tarinfo(name)
    member.mode, member.uid, member.gid, member.size, member.mtime = mode, uid, gid, size, mtime
    member.chksum, member.type = chksum, kind
    member.linkname = _text(buf[157:257], enc, err)
    member.uname = _text(buf[265:297], enc, err)
    member.gname = _text(buf[297:329], enc, err)
    member.devmajor, member.devminor = devmajor, devminor
    member.offset = offset
    member.offset_data = offset + _BLOCK
    end = member.offset_data
    if kind in _REGULAR:
        end += -(-size // _BLOCK) * _BLOCK
    tar.offset = end
    return member
