"""Local Docker-format sources (private): ``docker save`` tarballs and OCI image layouts.

Nothing is extracted. A ``docker save`` tarball is read in place (tarfile's random access):
the current layout (``manifest.json`` naming a config and layer files) or the legacy one
(``repositories`` naming the top layer ID, each ``<id>/json`` naming its parent). Layer IDs
must be 64 hex digits, parent chains must end (a layer that is its own ancestor is refused at
once) and every member name used is checked with the ACI path rules. An OCI layout is a
directory whose blobs are read by digest and hashed while read.

Root's ``rkt fetch`` opens the tarball, or the layout's index and blobs
(:mod:`._layout_files`), itself (:func:`open_local_source`) and hands the open
files to the unprivileged child, which does all the parsing: a source under a private
directory such as ``/root``, or a layout umoci wrote ``0600``, still loads.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final, cast

from trustd.shared._dataclass import frozen
from trustd.shared.appc._aci_paths import Refused, canonical_name
from trustd.shared.appc._aci_scan import checked_tarinfo, corrupt_errors
from trustd.shared.docker.documents import (
    COSIGN_IMAGE_KINDS,
    INDEX_TYPES,
    OCI_INDEX,
    DocumentError,
    Index,
    Manifest,
    load_json,
    media_type_of,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from trustd.shared.errors import RemoteLiedError, UserError
from trustd.unprivileged.docker._layout_files import LayoutFiles
from trustd.unprivileged.docker.reference import DockerRef, parse_docker_ref

_LAYER_ID: Final = re.compile(r"^[a-f0-9]{64}$")
MAX_MEMBERS: Final = 100_000
MAX_CHAIN: Final = 1000
MAX_SMALL: Final = 4 * 1024 * 1024


@frozen
class LocalImage:
    config_json: bytes
    layers: tuple[Callable[[], BinaryIO], ...]
    repository: str
    tag: str | None
    image_id: str
    parent_id: str
    manifest_digest: str
    diff_ids: tuple[str, ...]


def _refuse(source: str, reason: str) -> RemoteLiedError:
    return RemoteLiedError(
        f"docker archive {source}: {reason}",
        hint="this archive is malformed or hostile; do not load it anywhere",
    )


class _Archive:
    def __init__(self, path: Path, fileobj: BinaryIO) -> None:
        self.path, self.label = path, str(path)
        try:
            fileobj.seek(0)
            self.tar = tarfile.open(  # noqa: SIM115 - lives as long as the layer openers
                fileobj=fileobj, mode="r:*", tarinfo=checked_tarinfo(1 << 20)
            )
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from exc
        except (Refused, *corrupt_errors()) as exc:  # type: ignore[misc]
            raise _refuse(self.label, f"not a readable tar: {exc}") from exc
        members = self.tar.getmembers()
        if len(members) > MAX_MEMBERS:
            raise _refuse(self.label, f"more than {MAX_MEMBERS} members")
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            try:
                self.members[canonical_name(m.name)] = m
            except Refused:
                continue  # never looked up by a bad name, so never used

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str) -> BinaryIO:
        try:
            key = canonical_name(name)
        except Refused as exc:
            raise _refuse(self.label, f"member {name!r}: {exc.reason}") from exc
        member = self.members.get(key)
        handle = self.tar.extractfile(member) if member is not None else None
        if handle is None:
            raise _refuse(self.label, f"member {name!r} is missing or not a file")
        return cast(BinaryIO, handle)

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            data = f.read(MAX_SMALL + 1)
        if len(data) > MAX_SMALL:
            raise _refuse(self.label, f"{name} is larger than {MAX_SMALL} bytes")
        return data


def open_archive(path: Path) -> BinaryIO:
    """Open a ``docker-archive:`` file, with the message rkt gave for a missing one."""
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise UserError(f"open {path}: no such file or directory") from exc
    except OSError as exc:
        raise UserError(f"cannot open {path}: {exc.strerror}") from exc


def load_archive(path: Path, fileobj: BinaryIO) -> LocalImage:
    """Read a ``docker save`` tarball from ``fileobj`` (``path`` names it in messages)."""
    archive = _Archive(path, fileobj)
    if archive.has("manifest.json"):
        return _current(archive)
    if archive.has("repositories"):
        return _legacy(archive)
    raise _refuse(archive.label, "neither manifest.json nor repositories: not a docker save")


def _repo_tag(text: str) -> tuple[str, str | None]:
    """``RepoTags[0]`` in Docker's familiar form (``docker save`` writes ``example/x:1``;
    skopeo writes ``docker.io/example/x:1``)."""
    name, _, tag = text.rpartition(":") if ":" in text.rsplit("/", 1)[-1] else (text, "", "")
    return name.removeprefix("docker.io/").removeprefix("library/"), tag or None


def _current(archive: _Archive) -> LocalImage:
    source = f"{archive.label}:manifest.json"
    data = archive.read("manifest.json")
    entries = _json_list(data, source)
    if len(entries) != 1 or not isinstance(entries[0], dict):
        raise _refuse(
            archive.label, f"expected exactly one image in manifest.json, found {len(entries)}"
        )
    entry = entries[0]
    config_name, layer_names = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_name, str) or not isinstance(layer_names, list):
        raise DocumentError(source, "[0]", "needs Config (a string) and Layers (a list)")
    config_bytes = archive.read(config_name)
    image_id = hashlib.sha256(config_bytes).hexdigest()
    named = re.search(r"([a-f0-9]{64})(?:\.json)?$", config_name)
    if named and named.group(1) != image_id:
        raise _refuse(archive.label, f"config {config_name} hashes to sha256:{image_id}")
    config = parse_config(config_bytes, f"{archive.label}:{config_name}")
    tags = entry.get("RepoTags") or []
    repo, tag = _repo_tag(tags[0]) if tags and isinstance(tags[0], str) else ("", None)
    layers = tuple(_opener(archive, str(name)) for name in layer_names)
    if config.diff_ids and len(config.diff_ids) != len(layers):
        raise _refuse(archive.label, f"{len(layers)} layers but {len(config.diff_ids)} diff_ids")
    return LocalImage(
        config_bytes, layers, repo, tag, image_id, "", f"sha256:{image_id}", config.diff_ids
    )


def _json_list(data: bytes, source: str) -> list[object]:
    import json  # noqa: PLC0415

    try:
        value = json.loads(data)
    except ValueError as exc:
        raise DocumentError(source, "", f"not valid JSON: {exc}") from exc
    if not isinstance(value, list):
        raise DocumentError(source, "", "is not a JSON list")
    return value


def _legacy(archive: _Archive) -> LocalImage:
    source = f"{archive.label}:repositories"
    repos = load_json(archive.read("repositories"), source).obj
    images = [
        (repo, tag, top)
        for repo, tags in repos.items()
        if isinstance(tags, dict)
        for tag, top in tags.items()
    ]
    if len(images) != 1 or not isinstance(images[0][2], str):
        raise _refuse(
            archive.label, f"expected exactly one image in repositories, found {len(images)}"
        )
    repo, tag, top = images[0]
    chain: list[str] = []
    current = top
    while current:
        if not _LAYER_ID.match(current):
            raise _refuse(archive.label, f"invalid layer ID {current!r}")
        if current in chain:
            raise _refuse(archive.label, f"dependency loop detected at layer {current}")
        if len(chain) >= MAX_CHAIN:
            raise _refuse(archive.label, f"more than {MAX_CHAIN} layers")
        chain.append(current)
        layer_json = load_json(archive.read(f"{current}/json"), f"{archive.label}:{current}/json")
        parent = layer_json.str_("parent")
        current = parent
    top_json = archive.read(f"{top}/json")
    parse_config(top_json, f"{archive.label}:{top}/json")
    parent_id = load_json(top_json, "json").str_("parent")
    chain.reverse()
    layers = tuple(_opener(archive, f"{layer}/layer.tar") for layer in chain)
    return LocalImage(top_json, layers, repo, tag, top, parent_id, top, ())


def _opener(archive: _Archive, name: str) -> Callable[[], BinaryIO]:
    if not archive.has(name):
        raise _refuse(archive.label, f"layer file {name!r} is missing")
    return lambda: archive.open(name)


def _blob_name(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def _verified_blob(layout: LayoutFiles, digest: str, size: int | None = None) -> str:
    name = _blob_name(digest)
    algo = digest.partition(":")[0]
    h = hashlib.new(algo)
    label = layout.path
    try:
        with layout.open_file(name) as f:
            length = os.fstat(f.fileno()).st_size
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise UserError(f"OCI layout {label}: cannot read blob {digest}: {exc.strerror}") from exc
    if f"{algo}:{h.hexdigest()}" != digest:
        raise RemoteLiedError(
            f"OCI layout {label}: blob {digest} hashes to {algo}:{h.hexdigest()}",
            hint="the layout was altered; nothing was stored",
        )
    if size is not None and length != size:
        raise RemoteLiedError(f"OCI layout {label}: blob {digest} is not {size} bytes")
    return name


def load_oci_layout(layout: LayoutFiles, tag: str | None) -> tuple[Manifest, str]:
    """The image manifest for ``tag`` in an OCI layout, and its digest (indexes: this host)."""
    manifest, digest, _body, _index = load_oci_manifest(layout, tag)
    return manifest, digest


def read_layout_index(layout: LayoutFiles) -> Index:
    """``index.json``, read once (a later change to the file is never seen)."""
    label = layout.path
    try:
        with layout.open_file("index.json") as f:
            index_bytes = f.read(MAX_SMALL + 1)
    except OSError as exc:
        raise UserError(
            f"{label} is not an OCI image layout: index.json: {exc.strerror}",
            hint="oci:DIR[:TAG] names a directory made by umoci, skopeo or buildah",
        ) from exc
    return parse_index(index_bytes, OCI_INDEX, f"{label}/index.json")


def load_oci_manifest(layout: LayoutFiles, tag: str | None) -> tuple[Manifest, str, bytes, Index]:
    """(manifest, its digest, the very bytes that hash to it, the layout's index).

    Each document is read once and hashed as read, so the manifest parsed is the one whose
    digest a signature covers, whatever the layout's owner writes meanwhile."""
    label = layout.path
    index = read_layout_index(layout)
    candidates = [d for d in index.manifests if (d.ref_name or None) == tag or tag is None]
    if tag is None and len(index.manifests) > 1:
        candidates = [d for d in index.manifests if d.ref_name == "latest"]
        if not candidates:  # `cosign save`'s layout: the entry its "kind" calls the image
            candidates = [d for d in index.manifests if d.kind in COSIGN_IMAGE_KINDS]
    if len(candidates) != 1:
        names = ", ".join(sorted({d.ref_name or "<untagged>" for d in index.manifests}))
        raise UserError(
            f"OCI layout {label}: no single image tagged {tag or 'latest'!r} (tags: {names})",
            hint="name one: oci:DIR:TAG",
        )
    desc = candidates[0]
    for _ in range(4):  # an index may name an index: follow a few levels
        data = read_verified(layout, desc.digest, desc.size)
        media = media_type_of(data, desc.media_type, f"{label}@{desc.digest}")
        if media not in INDEX_TYPES:
            manifest = parse_manifest(data, media, f"{label}@{desc.digest}")
            return manifest, desc.digest, data, index
        source = f"{label}@{desc.digest}"
        desc = select_platform(parse_index(data, media, source), source)
    raise RemoteLiedError(f"OCI layout {label}: indexes nest more than 4 levels")


def read_verified(layout: LayoutFiles, digest: str, size: int | None) -> bytes:
    """A small blob (a manifest, a config, a cosign payload), read once and hashed as read."""
    name = _blob_name(digest)
    algo = digest.partition(":")[0]
    try:
        with layout.open_file(name) as f:
            data = f.read(MAX_SMALL + 1)
    except OSError as exc:
        raise UserError(
            f"OCI layout {layout.path}: cannot read blob {digest}: {exc.strerror}",
            hint="the layout must hold every blob its index names, as regular files "
            "(a symlinked blob is never followed)",
        ) from exc
    if len(data) > MAX_SMALL:
        raise RemoteLiedError(f"OCI layout {layout.path}: {digest} is larger than {MAX_SMALL}")
    got = f"{algo}:{hashlib.new(algo, data).hexdigest()}"
    if got != digest:
        raise RemoteLiedError(
            f"OCI layout {layout.path}: blob {digest} hashes to {got}",
            hint="the layout was altered; nothing was stored",
        )
    if size is not None and len(data) != size:
        raise RemoteLiedError(f"OCI layout {layout.path}: blob {digest} is not {size} bytes")
    return data


def oci_blob_opener(layout: LayoutFiles, digest: str, size: int) -> Callable[[], BinaryIO]:
    name = _verified_blob(layout, digest, size)
    return lambda: layout.open_file(name)


def oci_blob_bytes(layout: LayoutFiles, digest: str, size: int) -> bytes:
    if size > MAX_SMALL:
        raise RemoteLiedError(
            f"OCI layout {layout.path}: config {digest} is larger than {MAX_SMALL}"
        )
    return read_verified(layout, digest, size)


@frozen
class LocalSource:
    """A local Docker-format source opened before a privilege drop (root's ``rkt fetch``):
    the parsed reference, and the open archive file or layout directory."""

    ref: DockerRef
    archive: BinaryIO | None = None
    layout: LayoutFiles | None = None


def open_local_source(text: str) -> LocalSource | None:
    """Open a ``docker-archive:`` file or an ``oci:`` directory now, with the caller's rights;
    None for ``docker://``. Nothing is parsed here: that is the unprivileged child's work."""
    ref = parse_docker_ref(text)
    if ref.path is None:
        return None
    if ref.kind == "archive":
        return LocalSource(ref, archive=open_archive(ref.path))
    return LocalSource(ref, layout=LayoutFiles.open(ref.path))
