"""The per-entry rules of an ACI, applied while the tar streams past (private).

:class:`Scan` sees each member once, in archive order, and keeps only what later rules need:
the kind of every canonical name (for duplicates and "nothing below a symlink or a file"), the
symlink targets (resolved at the end, when every symlink is known), the manifest bytes and the
set-id files. See :mod:`trustd.shared.appc.aci` for the rules as a list.
"""

from __future__ import annotations

import lzma
import tarfile
import zlib
from typing import Final

from trustd.shared.appc._aci_paths import (
    Refused,
    canonical_name,
    check_symlink_target,
    resolve_symlink,
)
from trustd.shared.appc.manifest import ImageManifest, ManifestError, parse_image_manifest

_REGULAR: Final = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_DEVICES: Final = (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)
_META: Final = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)
_KIND: Final = {
    **dict.fromkeys(_REGULAR, "file"),
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    **dict.fromkeys(_DEVICES, "device"),
}
_SETID: Final = 0o6000


def corrupt_errors() -> tuple[type[BaseException], ...]:
    """What the decompressors and tarfile raise on damaged input."""
    return (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error, UnicodeError)


def checked_tarinfo(max_header: int) -> type[tarfile.TarInfo]:
    """A TarInfo class that refuses oversized pax/GNU headers and sparse files up front.

    tarfile reads a pax or long-name header's whole body into memory, and walks sparse maps
    whose length the archive chooses; both are refused before tarfile does either.
    ``_proc_member`` is tarfile's documented hook for subclasses (see its source comment).
    """

    class _Checked(tarfile.TarInfo):
        def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
            if self.type in _META and self.size > max_header:
                raise Refused(
                    "header-too-large",
                    f"a pax or long-name header of {self.size} bytes (at most {max_header})",
                    self.name,
                )
            if self.type == tarfile.GNUTYPE_SPARSE:
                raise Refused("sparse-file", "GNU sparse files are not allowed", self.name)
            result: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
            return result

        def _proc_gnusparse_00(self, *_: object) -> None:
            raise Refused("sparse-file", "pax sparse files are not allowed", self.name)

        _proc_gnusparse_01 = _proc_gnusparse_00
        _proc_gnusparse_10 = _proc_gnusparse_00

    return _Checked


class Scan:
    """Rule state for one archive."""

    def __init__(self, max_entries: int, max_file_size: int, max_manifest_size: int) -> None:
        self.max_entries = max_entries
        self.max_file_size = max_file_size
        self.max_manifest_size = max_manifest_size
        self.allow_devices = False
        self.entry_count = 0
        self.kinds: dict[str, str] = {}
        self.symlinks: dict[str, str] = {}  # rootfs-relative path -> target
        self.setuid_paths: list[str] = []
        self.manifest_bytes: bytes | None = None

    def entry(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        try:
            self._entry(member, tar)
        except Refused as exc:
            exc.entry = exc.entry or member.name
            raise

    def _entry(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self.entry_count += 1
        if self.entry_count > self.max_entries:
            raise Refused("entry-count-cap", f"more than {self.max_entries} entries")
        name = canonical_name(member.name)
        kind = self._kind(member)
        if name in self.kinds:
            raise Refused("duplicate-entry", f"{name or './'} appears twice in the archive")
        top = name.split("/", 1)[0]
        if name == "":
            _expect(
                kind == "dir", "root-not-directory", "the archive root entry is not a directory"
            )
        elif name == "manifest":
            _expect(kind == "file", "manifest-not-regular", "manifest is not a regular file")
            self._read_manifest(member, tar)
        elif name == "rootfs":
            _expect(kind == "dir", "rootfs-not-directory", "rootfs is not a directory")
        elif top == "rootfs":
            self._rootfs_entry(name, kind, member)
        else:
            raise Refused("extra-top-level", f"{top!r} is neither manifest nor rootfs/")
        self.kinds[name] = kind  # after the checks: a hard link must not find itself

    def _kind(self, member: tarfile.TarInfo) -> str:
        kind = _KIND.get(member.type)
        if kind is None:
            raise Refused("unsupported-entry-type", f"tar entry type {member.type!r}")
        if member.sparse is not None:
            raise Refused("sparse-file", "sparse files are not allowed")
        if kind == "device" and not self.allow_devices:
            raise Refused("device-node", "device nodes and fifos are not allowed in images")
        if kind == "file" and member.size > self.max_file_size:
            raise Refused(
                "file-size-cap", f"{member.size} bytes (at most {self.max_file_size} per file)"
            )
        return kind

    def _rootfs_entry(self, name: str, kind: str, member: tarfile.TarInfo) -> None:
        rel = name.removeprefix("rootfs/")
        if kind == "symlink":
            check_symlink_target(member.linkname)
            self.symlinks[rel] = member.linkname
        elif kind == "hardlink":
            target = canonical_name(member.linkname)
            if not target.startswith("rootfs/") or self.kinds.get(target) not in (
                "file",
                "hardlink",
            ):
                raise Refused(
                    "hardlink-escape",
                    f"the hard link target {member.linkname!r} is not an earlier regular "
                    "file inside rootfs/",
                )
        if kind in ("file", "hardlink") and member.mode & _SETID:
            self.setuid_paths.append(name)

    def _read_manifest(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        if member.size > self.max_manifest_size:
            raise Refused(
                "manifest-too-large",
                f"the manifest is {member.size} bytes (at most {self.max_manifest_size})",
            )
        handle = tar.extractfile(member)
        data = b"" if handle is None else handle.read(self.max_manifest_size + 1)
        if len(data) != member.size:
            raise Refused("truncated-tar", "the manifest is cut short")
        self.manifest_bytes = data

    def finish(self, source: str) -> tuple[ImageManifest, bytes]:
        """Apply the whole-archive rules; return the parsed manifest and its bytes."""
        if self.manifest_bytes is None:
            raise Refused("missing-manifest", "the archive has no manifest file")
        if "rootfs" not in self.kinds:
            raise Refused("missing-rootfs", "the archive has no rootfs/ directory")
        self._check_parents()
        for link in self.symlinks:
            try:
                resolve_symlink(link, self.symlinks)
            except Refused as exc:
                exc.entry = f"rootfs/{link}"
                raise
        try:
            manifest = parse_image_manifest(
                self.manifest_bytes,
                source=f"{source}:manifest",
                max_size=self.max_manifest_size,
            )
        except ManifestError as exc:
            raise Refused("bad-manifest", exc.message, "manifest") from exc
        return manifest, self.manifest_bytes

    def _check_parents(self) -> None:
        """Nothing may sit below a symlink, a file or a device (a write would go through it)."""
        for name in self.kinds:
            parts = name.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                kind = self.kinds.get(parent, "dir")
                if kind != "dir":
                    raise Refused(
                        "write-through-" + ("symlink" if kind == "symlink" else "non-directory"),
                        f"its parent {parent!r} is a {kind}, not a directory",
                        name,
                    )


def _expect(ok: bool, rule: str, reason: str) -> None:
    if not ok:
        raise Refused(rule, reason)
