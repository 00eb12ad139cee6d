"""The appc 0.8.11 image manifest: frozen dataclasses and a strict parser.

An image manifest is a third-party document: the image's publisher wrote it and trustd
re-serialises it (into pod manifests, into measurements). So keys we do not know are kept, at
every level, and written back by :meth:`ImageManifest.to_json`; keys we do know are checked
strictly (appc's schema/types rules, plus: no duplicate JSON keys, strict UTF-8, no NUL, bounded
size and nesting). The first fault raises one :class:`ManifestError` naming the source and the
field path.
"""

from __future__ import annotations

from typing import Final

from trustd.shared.appc._json import FieldError, View, loads_strict
from trustd.shared.appc._manifest_decode import IMAGE_MANIFEST_KIND, decode_manifest
from trustd.shared.appc._manifest_model import (
    Annotation,
    App,
    Dependency,
    EnvironmentVariable,
    EventHandler,
    ImageManifest,
    Isolator,
    Label,
    MountPoint,
    Port,
)
from trustd.shared.appc._manifest_rules import VALID_OS_ARCH, os_arch_error
from trustd.shared.errors import RemoteLiedError

__all__ = [
    "IMAGE_MANIFEST_KIND",
    "MAX_MANIFEST_SIZE",
    "VALID_OS_ARCH",
    "Annotation",
    "App",
    "Dependency",
    "EnvironmentVariable",
    "EventHandler",
    "ImageManifest",
    "Isolator",
    "Label",
    "ManifestError",
    "MountPoint",
    "Port",
    "os_arch_error",
    "parse_image_manifest",
]

MAX_MANIFEST_SIZE: Final = 1024 * 1024


class ManifestError(RemoteLiedError):
    """An image manifest that is not valid appc 0.8.11.

    A RemoteLiedError, not a UserError: the image's publisher writes the manifest and trustd's
    user never does, so a bad one means the image is not what it claims to be, even when it
    reached us as a local file. ``source`` names where it came from and ``field`` the path
    inside it (``app.mountPoints[2].name``; empty when the document as a whole is at fault).
    """

    def __init__(self, source: str, field: str, reason: str) -> None:
        where = f"field {field}" if field else "document"
        super().__init__(
            f"image manifest from {source}: {where}: {reason}",
            hint="the image is malformed; ask its publisher to rebuild it "
            "(appc's `actool validate` reports the same kind of fault)",
        )
        self.source = source
        self.field = field
        self.reason = reason


def parse_image_manifest(
    data: bytes, *, source: str, max_size: int = MAX_MANIFEST_SIZE
) -> ImageManifest:
    """Parse and check an image manifest; any fault raises one :class:`ManifestError`."""
    try:
        return decode_manifest(View(loads_strict(data, max_size=max_size), ""))
    except FieldError as exc:
        raise ManifestError(source, exc.path, exc.reason) from exc
