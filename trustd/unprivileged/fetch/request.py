"""What the user asked for: rkt's image-string resolution (rkt/image/common.go)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from trustd.shared._dataclass import frozen
from trustd.shared.appc.identifier import ACIdentifier
from trustd.shared.errors import UserError, excerpt

Kind = Literal["file", "url", "name", "docker"]
_ARCH = {
    "x86_64": "amd64",
    "aarch64": "aarch64",
    "i686": "i386",
    "armv7l": "armv7l",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def host_labels() -> dict[str, str]:
    """appc's os/arch for this host (rkt's defaults for discovery and store lookups)."""
    host = os.uname()  # what platform.system() and .machine() answer; platform costs ~8 ms
    return {"os": host.sysname.lower(), "arch": _ARCH.get(host.machine, host.machine)}


@frozen
class ImageRef:
    kind: Kind
    text: str
    path: Path | None = None
    name: ACIdentifier | None = None
    labels: tuple[tuple[str, str], ...] = ()


@frozen
class FetchRequest:
    ref: ImageRef
    signature: Path | None = None


def _parse_name(text: str) -> ImageRef:
    head, *label_parts = text.split(",")
    name, _, version = head.partition(":")
    labels = dict(host_labels())
    if version:
        labels["version"] = version
    for part in label_parts:
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise UserError(f"bad label {part!r} in image {text!r}", hint="use name=value")
        labels[key] = value
    return ImageRef(
        "name", text, name=ACIdentifier.parse(name), labels=tuple(sorted(labels.items()))
    )


def _is_file(text: str) -> bool:
    """An existing regular file; a string no path can be (too long, NUL) is not one."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def parse_image_ref(text: str) -> ImageRef:
    """rkt's order: a scheme decides; else an existing file or a path-like string is a file;
    anything else is an appc name (``name[:version][,label=value...]``)."""
    try:
        scheme = urlsplit(text).scheme
        file_path = urlsplit(text).path if scheme == "file" else ""
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise UserError(f"{excerpt(text)} is not an image name or URL: {exc}") from exc
    if scheme in ("docker", "docker-archive", "oci"):
        return ImageRef("docker", text)
    if scheme == "file":
        return ImageRef("file", text, path=Path(file_path))
    if scheme in ("http", "https"):
        return ImageRef("url", text)
    if text.startswith("/") or _is_file(text) or "./" in text or text.endswith(".aci"):
        return ImageRef("file", text, path=Path(text))
    return _parse_name(text)
