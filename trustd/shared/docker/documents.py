"""Docker and OCI documents: manifests, indexes and image configs, parsed strictly.

These are third-party documents; trustd reads the fields it converts and ignores the rest.
Every fault (bad JSON, a missing field, a wrong type, a digest that is not ``sha256:`` or
``sha512:`` hex) raises one :class:`DocumentError` naming the document and the field.
Schema 1 manifests (signed with a JWS that nobody checked) are refused.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from trustd.shared._dataclass import frozen
from trustd.shared.errors import RemoteLiedError

DIGEST: Final = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")

DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
SCHEMA1: Final = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MANIFEST_TYPES: Final = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES: Final = (DOCKER_LIST, OCI_INDEX)
LAYER_TYPES: Final = (
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
)
MAX_DOCUMENT: Final = 4 * 1024 * 1024  # distribution's own manifest limit


class DocumentError(RemoteLiedError):
    """A manifest, index or config that is not what the format says."""

    def __init__(self, source: str, field: str, reason: str) -> None:
        where = f"field {field}" if field else "document"
        super().__init__(
            f"{source}: {where}: {reason}",
            hint="the registry or archive serves a malformed image; do not run it",
        )


@frozen
class Platform:
    os: str
    architecture: str
    variant: str = ""


@frozen
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    ref_name: str = ""  # OCI layouts: org.opencontainers.image.ref.name
    kind: str = ""  # `cosign save` layouts: the "kind" annotation (dev.cosignproject.cosign/...)


# `cosign save` writes a layout whose index entries carry no ref name, only a "kind"
# annotation (sigstore/cosign pkg/oci/layout): the signed image (or image index), its
# signature image and its attestations.
COSIGN_IMAGE_KINDS = ("dev.cosignproject.cosign/image", "dev.cosignproject.cosign/imageIndex")
COSIGN_SIGS_KIND = "dev.cosignproject.cosign/sigs"


@frozen
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@frozen
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


@frozen
class ImageConfig:
    """The parts of an image config (``config`` object and top level) the ACI carries."""

    os: str
    architecture: str
    variant: str = ""
    author: str = ""
    created: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    diff_ids: tuple[str, ...] = ()


class _Doc:
    """Typed access to one JSON object, naming the field on every fault."""

    def __init__(self, obj: object, source: str, path: str = "") -> None:
        if not isinstance(obj, dict):
            raise DocumentError(source, path, "is not a JSON object")
        self.obj: dict[str, Any] = obj
        self.source, self.path = source, path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> DocumentError:
        return DocumentError(self.source, self.at(key), reason)

    def str_(self, key: str, *, required: bool = False) -> str:
        value = self.obj.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            raise self.error(key, "must be a string")
        return value

    def int_(self, key: str) -> int:
        value = self.obj.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.error(key, "must be a non-negative integer")
        return value

    def strs(self, key: str) -> tuple[str, ...]:
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return tuple(value)

    def keys_of(self, key: str) -> tuple[str, ...]:
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.error(key, "must be an object")
        return tuple(sorted(value))

    def str_map(self, key: str) -> tuple[tuple[str, str], ...]:
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.error(key, "must be an object of strings")
        return tuple(sorted(value.items()))

    def child(self, key: str, *, required: bool = False) -> _Doc | None:
        value = self.obj.get(key)
        if value is None and not required:
            return None
        return _Doc(value, self.source, self.at(key))

    def children(self, key: str) -> list[_Doc]:
        value = self.obj.get(key)
        if not isinstance(value, list):
            raise self.error(key, "must be a list")
        return [_Doc(v, self.source, f"{self.at(key)}[{i}]") for i, v in enumerate(value)]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_json(data: bytes, source: str) -> _Doc:
    if len(data) > MAX_DOCUMENT:
        raise DocumentError(source, "", f"{len(data)} bytes, over the {MAX_DOCUMENT}-byte cap")
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DocumentError(source, "", f"not valid JSON: {exc}") from exc
    return _Doc(obj, source)


def check_digest(value: str, source: str, field: str) -> str:
    if not DIGEST.match(value):
        raise DocumentError(source, field, f"{value!r} is not a sha256: or sha512: digest")
    return value


def _descriptor(d: _Doc) -> Descriptor:
    platform = None
    if (p := d.child("platform")) is not None:
        platform = Platform(
            p.str_("os", required=True), p.str_("architecture", required=True), p.str_("variant")
        )
    annotations = d.child("annotations")
    ref_name = annotations.str_("org.opencontainers.image.ref.name") if annotations else ""
    kind = annotations.str_("kind") if annotations else ""
    return Descriptor(
        d.str_("mediaType"),
        check_digest(d.str_("digest", required=True), d.source, d.at("digest")),
        d.int_("size"),
        platform,
        ref_name,
        kind,
    )


def media_type_of(data: bytes, header: str, source: str) -> str:
    """The document's media type: its own ``mediaType``, else the Content-Type, else sniffed."""
    doc = load_json(data, source)
    own = doc.str_("mediaType")
    if doc.obj.get("schemaVersion") == 1 or own in SCHEMA1 or header in SCHEMA1:
        raise DocumentError(
            source,
            "schemaVersion",
            "Docker schema 1 manifests are not supported (their signatures are unverifiable)",
        )
    if own:
        return own
    if header in MANIFEST_TYPES + INDEX_TYPES:
        return header
    return OCI_INDEX if "manifests" in doc.obj else OCI_MANIFEST


def parse_manifest(data: bytes, media_type: str, source: str) -> Manifest:
    doc = load_json(data, source)
    if doc.obj.get("schemaVersion") != 2:
        raise doc.error("schemaVersion", "must be 2")
    config = _descriptor(doc.child("config", required=True))  # type: ignore[arg-type]
    layers = tuple(_descriptor(d) for d in doc.children("layers"))
    for i, layer in enumerate(layers):
        if layer.media_type and layer.media_type not in LAYER_TYPES:
            raise doc.error(
                f"layers[{i}].mediaType",
                f"{layer.media_type!r} is not a Linux layer type trustd converts "
                "(foreign and non-distributable layers are refused)",
            )
    return Manifest(media_type, config, layers)


def parse_index(data: bytes, media_type: str, source: str) -> Index:
    doc = load_json(data, source)
    if doc.obj.get("schemaVersion") != 2:
        raise doc.error("schemaVersion", "must be 2")
    return Index(media_type, tuple(_descriptor(d) for d in doc.children("manifests")))


def parse_config(data: bytes, source: str) -> ImageConfig:
    doc = load_json(data, source)
    inner = doc.child("config") or _Doc({}, source, "config")
    rootfs = doc.child("rootfs")
    return ImageConfig(
        os=doc.str_("os") or "linux",
        architecture=doc.str_("architecture") or "amd64",
        variant=doc.str_("variant"),
        author=doc.str_("author"),
        created=doc.str_("created"),
        entrypoint=inner.strs("Entrypoint"),
        cmd=inner.strs("Cmd"),
        env=inner.strs("Env"),
        user=inner.str_("User"),
        working_dir=inner.str_("WorkingDir"),
        exposed_ports=inner.keys_of("ExposedPorts"),
        volumes=inner.keys_of("Volumes"),
        labels=inner.str_map("Labels"),
        diff_ids=tuple(check_digest(d, source, "rootfs.diff_ids") for d in rootfs.strs("diff_ids"))
        if rootfs
        else (),
    )


_HOST_ARCH: Final = {
    "x86_64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
}


def host_platform() -> Platform:
    """This machine as Docker names platforms (linux/amd64, linux/arm64/v8, ...)."""
    import platform  # noqa: PLC0415

    machine = platform.machine()
    arch, variant = _HOST_ARCH.get(machine, (machine, ""))
    return Platform(platform.system().lower(), arch, variant)


def select_platform(index: Index, source: str, want: Platform | None = None) -> Descriptor:
    """The entry of a manifest list / OCI index for ``want`` (default: this host)."""
    want = want or host_platform()
    fits = [
        d
        for d in index.manifests
        if d.platform is not None
        and d.platform.os == want.os
        and d.platform.architecture == want.architecture
        and (not want.variant or not d.platform.variant or d.platform.variant == want.variant)
    ]
    if not fits and len(index.manifests) == 1 and index.manifests[0].platform is None:
        fits = list(index.manifests)
    if not fits:
        offered = ", ".join(
            sorted(
                "/".join(
                    x for x in (d.platform.os, d.platform.architecture, d.platform.variant) if x
                )
                for d in index.manifests
                if d.platform is not None
            )
        )
        wanted = _platform_text(want)
        raise DocumentError(
            source, "manifests", f"no image for {wanted} (the list offers: {offered or 'none'})"
        )
    exact = [d for d in fits if d.platform is not None and d.platform.variant == want.variant]
    return (exact or fits)[0]


def _platform_text(p: Platform) -> str:
    return "/".join(x for x in (p.os, p.architecture, p.variant) if x)
