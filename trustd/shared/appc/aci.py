"""Reading and checking an ACI (appc image archive) in one streaming pass, writing nothing.

:func:`inspect_aci` sniffs the compression by magic bytes, decompresses with the standard
library, and walks the tar once (``tarfile`` mode ``r|``) while a hashing reader computes the
image ID (``sha512-`` + SHA-512 of every uncompressed byte, end-of-archive padding included).
Every entry is checked against the rules below before any later stage could write it; the first
broken rule raises one :class:`AciError` naming the entry and the rule:

* layout: exactly ``manifest`` (regular file) and ``rootfs`` (directory) at the top, everything
  else below ``rootfs/``; an archive-root ``./`` directory entry is tolerated, as appc does;
* names: no absolute path, no ``..``, no empty or ``.`` segment, no duplicate (after dropping a
  leading ``./`` and trailing ``/``), nothing below a symlink or a file;
* links: symlinks resolve (following the archive's own symlinks) inside rootfs; hard links name
  an earlier regular file inside rootfs;
* types: regular files, directories, symlinks, hard links; device nodes and fifos only with
  ``allow_devices``; no sparse files, no GNU volume/multi-volume headers;
* caps: total uncompressed size, entry count, single file size, manifest size, and the size of
  pax / GNU long-name headers (which tarfile reads into memory);
* end: the tar must end with zero blocks and nothing but zeros after them (tarfile stops
  quietly at a cut-short or unreadable header, so this is checked here).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from trustd.shared._dataclass import frozen
from trustd.shared.appc._aci_io import (
    CapExceeded,
    Compression,
    HashingReader,
    NotAnArchive,
    SourceReadError,
    sniff,
)
from trustd.shared.appc._aci_paths import Refused
from trustd.shared.appc._aci_scan import Scan, checked_tarinfo, corrupt_errors
from trustd.shared.appc.manifest import ImageManifest
from trustd.shared.errors import LocalStateError, RemoteLiedError, UserError

__all__ = [
    "AciError",
    "AciInfo",
    "AciLimits",
    "Compression",
    "copy_uncompressed",
    "image_id_short",
    "inspect_aci",
]

_GIB: Final = 1024**3
_MIB: Final = 1024**2
IMAGE_ID_PREFIX: Final = "sha512-"


@frozen
class AciLimits:
    """Caps for one archive; the defaults fit any image rkt users ran, tests pass small ones."""

    max_uncompressed_size: int = 16 * _GIB
    max_entries: int = 1_000_000
    max_file_size: int = 8 * _GIB
    max_manifest_size: int = _MIB
    max_header_size: int = _MIB


@frozen
class AciInfo:
    """What one pass over a valid ACI established. ``setuid_paths`` lists set-id files."""

    image_id: str
    manifest: ImageManifest
    manifest_bytes: bytes
    uncompressed_size: int
    entry_count: int
    compression: Compression
    has_setuid: bool
    setuid_paths: tuple[str, ...] = ()


class AciError(RemoteLiedError):
    """An archive that is not a valid, safe ACI: the image is not what its publisher claims.

    ``rule`` is a stable id of the broken rule (``symlink-escape``, ``dotdot``, ``size-cap``,
    ...), ``entry`` the archive member name when one is at fault.
    """

    def __init__(self, source: str, rule: str, reason: str, entry: str | None = None) -> None:
        where = f" entry {entry!r}:" if entry is not None else ""
        super().__init__(
            f"image {source}:{where} {reason} [{rule}]",
            hint="do not run this image; fetch it again from its publisher, and report it "
            "if it stays the same (a safe ACI never breaks this rule)",
        )
        self.source = source
        self.rule = rule
        self.entry = entry
        self.reason = reason


def image_id_short(image_id: str) -> str:
    """rkt's short image ID: ``sha512-`` and the first 32 hex digits."""
    if not image_id.startswith(IMAGE_ID_PREFIX):
        raise UserError(
            f"{image_id!r} is not an image ID", hint="image IDs look like sha512-<hex digits>"
        )
    return image_id[: len(IMAGE_ID_PREFIX) + 32]


def inspect_aci(
    source: BinaryIO | str | os.PathLike[str],
    *,
    limits: AciLimits,
    allow_devices: bool = False,
    name: str | None = None,
) -> AciInfo:
    """Read the ACI at ``source`` (a path or a binary stream) once, check it, and describe it.

    ``name`` is used in messages (default: the path or the stream's ``name``). Raises
    :class:`AciError` for any fault of the archive, :class:`UserError` for a path that cannot be
    opened and :class:`LocalStateError` when the stream itself fails mid-read.
    """
    if isinstance(source, str | os.PathLike):
        label = name or os.fspath(source)
        try:
            stream = Path(source).open("rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise UserError(
                f"cannot open image {label}: {exc.strerror}", hint="check the path"
            ) from exc
        with stream:
            return _inspect(stream, label, limits, allow_devices)
    label = name or str(getattr(source, "name", "<stream>"))
    return _inspect(source, label, limits, allow_devices)


def _inspect(stream: BinaryIO, label: str, limits: AciLimits, allow_devices: bool) -> AciInfo:
    try:
        compression, plain = sniff(stream)
        reader = HashingReader(plain, limits.max_uncompressed_size)
        scan = Scan(limits.max_entries, limits.max_file_size, limits.max_manifest_size)
        scan.allow_devices = allow_devices
        end = _walk(reader, scan, limits.max_header_size)
        reader.drain()
        _check_end(reader, end)
        manifest, manifest_bytes = scan.finish(label)
    except Refused as exc:
        raise AciError(label, exc.rule, exc.reason, exc.entry) from exc
    except CapExceeded as exc:
        raise AciError(label, "size-cap", str(exc)) from exc
    except NotAnArchive as exc:
        raise AciError(label, "not-an-archive", f"not an ACI: {exc}") from exc
    except SourceReadError as exc:
        raise LocalStateError(
            f"reading image {label} failed: {exc}", hint="check the file or the connection"
        ) from exc
    except corrupt_errors() as exc:
        raise AciError(label, "corrupt-archive", f"the archive is corrupt: {exc}") from exc
    return AciInfo(
        image_id=IMAGE_ID_PREFIX + reader.hexdigest(),
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        uncompressed_size=reader.size,
        entry_count=scan.entry_count,
        compression=compression,
        has_setuid=bool(scan.setuid_paths),
        setuid_paths=tuple(scan.setuid_paths),
    )


def _walk(reader: HashingReader, scan: Scan, max_header: int) -> int:
    """Check every member; return the offset where tarfile found the end of the archive."""
    with tarfile.open(
        fileobj=reader, mode="r|", tarinfo=checked_tarinfo(max_header), errors="surrogateescape"
    ) as tar:
        while (member := tar.next()) is not None:
            scan.entry(member, tar)
            # Stream mode still keeps every member in a list (undocumented); we need none.
            tar.members.clear()  # type: ignore[attr-defined]
        return tar.offset


def _check_end(reader: HashingReader, end: int) -> None:
    if reader.nonzero_end > end:
        raise Refused(
            "trailing-data",
            f"non-zero bytes follow offset {end}, where tarfile stopped reading "
            "(an unreadable header, or data hidden after the end of the archive)",
        )
    if reader.size < end + 1024:
        raise Refused("truncated-tar", f"the tar ends at byte {reader.size} without end blocks")


class Sink(Protocol):
    """Anything bytes can be written to (a file, or a hashing pass-through)."""

    def write(self, data: bytes, /) -> object: ...


def copy_uncompressed(source: Path, target: Sink, chunk: int = 1 << 20) -> None:
    """Write the uncompressed tar of the ACI at ``source`` to ``target`` (rkt's export format)."""
    with source.open("rb") as stream:
        try:
            _compression, plain = sniff(stream)
            while block := plain.read(chunk):
                target.write(block)
        except NotAnArchive as exc:
            raise AciError(str(source), "not-an-archive", f"not an ACI: {exc}") from exc
        except corrupt_errors() as exc:
            raise AciError(
                str(source), "corrupt-archive", f"the archive is corrupt: {exc}"
            ) from exc
