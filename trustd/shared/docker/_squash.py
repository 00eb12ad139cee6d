"""Squash Docker layers into one ACI tar, in memory, never extracting anything (private).

Pass 1 reads every layer's headers, bottom layer first, into a tree held in memory: names are
judged with the ACI path rules (no absolute path, no ``..``, nothing below a symlink or a file)
*before* anything is written; whiteouts (``.wh.NAME``) and opaque markers (``.wh..wh..opq``)
remove what lower layers put there (OCI image spec: they never touch their own layer); a
non-directory replacing a directory drops what was below it; a hard link names the content it
shares (so it stays right when its target path is later replaced). Device nodes and fifos are
dropped: the runtime provides /dev.

Pass 2 writes the ACI: ``manifest``, ``rootfs``, the directories (parents first), then each
file's content from its layer followed at once by the hard links that share it, then the
symlinks. It writes the bytes ``tarfile``'s PAX stream writer would (each header is
``TarInfo.tobuf``; the data, padding and end blocks are written here in large pieces) and
hashes (sha512) and counts them as they go out, so the image ID, size, entry count and set-id
files are known without reading the ACI again (:class:`AciAccount`).

With a ``scratch`` directory, pass 1 keeps each layer's uncompressed tar in an
unnamed temporary file there (it vanishes with the process, even on SIGKILL) and pass 2
copies each file's bytes from it by offset; without one (or for a layer with sparse
members) the layer is decompressed and parsed a second time. Both give the same bytes.
Every symlink is resolved inside the rootfs first; an escape is refused. The result is
deterministic: the same layers give the same bytes, hence the same image ID.

This module holds the rules and the tree (:class:`Squasher`); the limits and the tree's node
types are in :mod:`._squash_model`, reading a layer's members in :mod:`._squash_members`, and
pass 2's tar writer and its :class:`AciAccount` in :mod:`._squash_tarout`.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final, cast

from trustd.shared.appc._aci_io import SourceReadError
from trustd.shared.appc._aci_paths import (
    Refused,
    canonical_name,
    check_symlink_target,
    resolve_symlink,
)
from trustd.shared.appc._aci_scan import corrupt_errors
from trustd.shared.docker._layers import CapExceeded
from trustd.shared.docker._squash_members import _members
from trustd.shared.docker._squash_model import _REGULAR, Opener, SquashLimits, _Entry, _Node
from trustd.shared.docker._squash_tarout import AciAccount, _header, _TarOut

__all__ = ["STDIO_LINKS", "AciAccount", "LayerRefused", "Opener", "SquashLimits", "Squasher"]

_OPAQUE: Final = ".wh..wh..opq"
_AUFS_META: Final = ".wh..wh."
_WHITEOUT: Final = ".wh."
_SKIPPED: Final = (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)
# docker2aci adds these so apps find /dev/std* (rkt mounts /dev over them anyway)
STDIO_LINKS: Final = (
    ("dev/stdin", "/proc/self/fd/0"),
    ("dev/stdout", "/dev/console"),
    ("dev/stderr", "/dev/console"),
    ("dev/fd", "/proc/self/fd"),
)


class LayerRefused(Exception):
    """One rule broken by one layer entry (turned into a RemoteLiedError by the caller)."""

    def __init__(self, layer: int | None, rule: str, reason: str, entry: str | None = None):
        super().__init__(f"{rule}: {reason}")
        self.layer, self.rule, self.reason, self.entry = layer, rule, reason, entry


class Squasher:
    """The merged tree of an image's layers; :meth:`write` emits it as an ACI tar."""

    def __init__(
        self, layers: list[Opener], limits: SquashLimits | None = None, scratch: Path | None = None
    ) -> None:
        self.layers = layers
        self.limits = limits or SquashLimits()
        self.scratch = scratch
        self.plain: dict[int, BinaryIO] = {}  # layer -> its uncompressed tar (pass 1's copy)
        self.reread: set[int] = set()  # layers pass 2 must read again (sparse members)
        self.data: dict[tuple[int, int], tuple[int, int]] = {}  # source -> (offset, size)
        if len(layers) > self.limits.max_layers:
            raise LayerRefused(
                None, "layer-count-cap", f"more than {self.limits.max_layers} layers"
            )
        self.root = _Node("dir", explicit=False)
        self.entries = 0
        self.skipped_devices = 0
        self.diff_ids: list[str] = []

    # -- pass 1 -----------------------------------------------------------------------------
    def read_layers(self) -> None:
        budget = [self.limits.max_uncompressed_size]
        for index, opener in enumerate(self.layers):
            try:
                self._read_layer(index, opener, budget)
            except LayerRefused as exc:
                exc.layer = index
                raise
            except Refused as exc:
                raise LayerRefused(index, exc.rule, exc.reason, exc.entry) from exc
            except CapExceeded as exc:
                raise LayerRefused(index, "size-cap", str(exc)) from exc
            except SourceReadError:
                raise
            except corrupt_errors() as exc:
                raise LayerRefused(index, "corrupt-layer", f"the layer is corrupt: {exc}") from exc

    def close(self) -> None:
        """Drop pass 1's uncompressed copies (unnamed files: closing frees them)."""
        for f in self.plain.values():
            f.close()
        self.plain.clear()

    def _read_layer(self, index: int, opener: Opener, budget: list[int]) -> None:
        entries: list[_Entry] = []
        whiteouts: list[str] = []
        opaque: list[str] = []
        tee = None
        if self.scratch is not None:
            tee = self.plain[index] = tempfile.TemporaryFile(dir=self.scratch)  # noqa: SIM115
        for ordinal, member, _tar in _members(opener, budget, self.limits, self.diff_ids, tee):
            if member.type in _REGULAR:
                if member.sparse is not None:
                    self.reread.add(index)  # its data is not one run of bytes
                self.data[index, ordinal] = (member.offset_data, member.size)
            self.entries += 1
            if self.entries > self.limits.max_entries:
                raise Refused("entry-count-cap", f"more than {self.limits.max_entries} entries")
            try:
                self._classify(ordinal, member, entries, whiteouts, opaque)
            except Refused as exc:
                exc.entry = exc.entry or member.name
                raise
        for path in whiteouts:
            self._remove(path)
        for path in opaque:
            node = self._lookup(path)
            if node is not None and node.kind == "dir":
                node.children.clear()
        for entry in entries:
            self._apply(index, entry)

    def _classify(
        self,
        ordinal: int,
        member: tarfile.TarInfo,
        entries: list[_Entry],
        whiteouts: list[str],
        opaque: list[str],
    ) -> None:
        path = canonical_name(member.name)
        if not path:
            return  # the layer's own root "./"
        parent, _, base = path.rpartition("/")
        if any(seg.startswith(_AUFS_META) for seg in path.split("/")):
            if base == _OPAQUE:
                opaque.append(parent)
            return  # aufs bookkeeping (.wh..wh.plnk and the like)
        if base.startswith(_WHITEOUT):
            hidden = base[len(_WHITEOUT) :]
            if hidden in ("", ".", ".."):
                raise Refused("bad-whiteout", f"the whiteout {base!r} names no file")
            whiteouts.append(f"{parent}/{hidden}" if parent else hidden)
            return
        if member.type in _SKIPPED:
            self.skipped_devices += 1
            return
        node = _Node("dir", member.mode & 0o7777, member.uid, member.gid, int(member.mtime), size=0)
        if member.type == tarfile.DIRTYPE:
            entries.append(_Entry(ordinal, path, "dir", node))
        elif member.type in _REGULAR:
            if member.size > self.limits.max_file_size:
                raise Refused("file-size-cap", f"{member.size} bytes")
            node.kind, node.size = "file", member.size
            entries.append(_Entry(ordinal, path, "file", node))
        elif member.type == tarfile.SYMTYPE:
            check_symlink_target(member.linkname)
            node.kind, node.linkname = "symlink", member.linkname
            entries.append(_Entry(ordinal, path, "symlink", node))
        elif member.type == tarfile.LNKTYPE:
            node.kind = "file"
            target = canonical_name(member.linkname)
            entries.append(_Entry(ordinal, path, "hardlink", node, target))
        else:
            raise Refused("unsupported-entry-type", f"tar entry type {member.type!r}")

    def _apply(self, layer: int, entry: _Entry) -> None:
        node = entry.node
        if entry.kind == "hardlink":
            target = self._lookup(entry.link_target)
            if target is None or target.kind != "file" or target.source is None:
                raise Refused(
                    "hardlink-escape",
                    f"the hard link target {entry.link_target!r} is not a regular file "
                    "in this image",
                    entry.path,
                )
            node.source, node.size = target.source, target.size
        elif entry.kind == "file":
            node.source = (layer, entry.ordinal)
        parent = self._parent_dir(entry.path)
        name = entry.path.rsplit("/", 1)[-1]
        old = parent.children.get(name)
        if old is not None and old.kind == "dir" and node.kind == "dir":
            node.children = old.children  # a directory re-declared: contents merge
        parent.children[name] = node

    def _parent_dir(self, path: str) -> _Node:
        node = self.root
        parts = path.split("/")[:-1]
        for depth, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node("dir", explicit=False)
            elif child.kind != "dir":
                where = "/".join(parts[: depth + 1])
                kind = "symlink" if child.kind == "symlink" else "non-directory"
                raise Refused(
                    f"write-through-{kind}",
                    f"its parent {where!r} is a {child.kind}, not a directory",
                    path,
                )
            node = child
        return node

    def _lookup(self, path: str) -> _Node | None:
        node: _Node | None = self.root
        for part in path.split("/") if path else ():
            if node is None or node.kind != "dir":
                return None
            node = node.children.get(part)
        return node

    def _remove(self, path: str) -> None:
        parent, _, name = path.rpartition("/")
        holder = self._lookup(parent)
        if holder is not None and holder.kind == "dir":
            holder.children.pop(name, None)

    def exists(self, path: str) -> bool:
        """Whether ``path`` names a file in the image, following the image's own symlinks."""
        links = {p: node.linkname for p, node in self.walk() if node.kind == "symlink"}
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in links:
                try:
                    resolved = resolve_symlink(prefix, links)
                except Refused:
                    return False
                rest = "/".join([resolved, *parts[depth:]]).strip("/")
                node = self._lookup(rest)
                return node is not None and node.kind == "file"
        node = self._lookup(path)
        return node is not None and node.kind == "file"

    def add_stdio_links(self) -> None:
        dev = self.root.children.get("dev")
        if dev is not None and dev.kind != "dir":
            raise LayerRefused(
                None, "dev-not-directory", 'invalid layer: "/dev" is not a directory'
            )
        for path, target in STDIO_LINKS:
            if self._lookup(path) is None:
                parent = self._parent_dir(path)
                parent.children[path.rsplit("/", 1)[-1]] = _Node("symlink", 0o777, linkname=target)

    # -- checks and pass 2 ------------------------------------------------------------------
    def walk(self) -> Iterator[tuple[str, _Node]]:
        """Every node, parents before children, siblings sorted."""
        stack: list[tuple[str, _Node]] = [("", self.root)]
        while stack:
            path, node = stack.pop()
            if path:
                yield path, node
            for name in sorted(node.children, reverse=True):
                stack.append((f"{path}/{name}" if path else name, node.children[name]))

    def check_symlinks(self) -> None:
        links = {path: node.linkname for path, node in self.walk() if node.kind == "symlink"}
        for path in links:
            try:
                resolve_symlink(path, links)
            except Refused as exc:
                raise LayerRefused(None, exc.rule, exc.reason, f"rootfs/{path}") from exc

    def write(self, out: BinaryIO, manifest: bytes) -> AciAccount:
        """Emit the ACI (uncompressed tar, PAX) to ``out``; return its account."""
        nodes = list(self.walk())
        groups: dict[tuple[int, int], list[str]] = {}
        for path, node in nodes:
            if node.kind == "file" and node.source is not None:
                groups.setdefault(node.source, []).append(path)
        by_path = dict(nodes)
        tar = _TarOut(out)
        try:
            info = tarfile.TarInfo("manifest")
            info.size, info.mode = len(manifest), 0o644
            tar.add_bytes(info, manifest)
            tar.add(_header("rootfs", _Node("dir")))
            for path, node in nodes:
                if node.kind == "dir" and node.explicit:
                    tar.add(_header(f"rootfs/{path}", node))
            self._write_files(tar, groups, by_path)
            for path, node in nodes:
                if node.kind == "symlink":
                    tar.add(_header(f"rootfs/{path}", node))
            return tar.close()
        finally:
            tar.abandon()

    def _write_files(
        self,
        tar: _TarOut,
        groups: dict[tuple[int, int], list[str]],
        by_path: dict[str, _Node],
    ) -> None:
        budget = [self.limits.max_uncompressed_size]
        wanted_layers = sorted({layer for layer, _ in groups})
        for index in wanted_layers:
            if index in self.plain and index not in self.reread:
                self._copy_files(tar, index, groups, by_path)
                continue
            for ordinal, member, src in _members(self.layers[index], budget, self.limits):
                paths = groups.get((index, ordinal))
                if not paths:
                    continue
                data = src.extractfile(member)
                assert data is not None  # noqa: S101 - a regular member always has data
                self._file(tar, paths, by_path, member.size, cast(BinaryIO, data))

    def _copy_files(
        self,
        tar: _TarOut,
        index: int,
        groups: dict[tuple[int, int], list[str]],
        by_path: dict[str, _Node],
    ) -> None:
        """Pass 2 for one layer from pass 1's uncompressed copy: each file's bytes by offset,
        in member order, exactly what re-reading the layer would give."""
        plain = self.plain[index]
        for source in sorted(s for s in groups if s[0] == index):
            offset, size = self.data[source]
            plain.seek(offset)
            self._file(tar, groups[source], by_path, size, plain)

    @staticmethod
    def _file(
        tar: _TarOut, paths: list[str], by_path: dict[str, _Node], size: int, data: BinaryIO
    ) -> None:
        """One file's content, then at once the hard links that share it."""
        first, *links = sorted(paths)
        info = _header(f"rootfs/{first}", by_path[first])
        info.size = size
        tar.add(info, data)
        for link in links:
            hard = _header(f"rootfs/{link}", by_path[link])
            hard.type, hard.linkname, hard.size = tarfile.LNKTYPE, f"rootfs/{first}", 0
            tar.add(hard)
