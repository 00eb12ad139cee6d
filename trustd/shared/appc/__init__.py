"""appc schema types (spec 0.8.11): identifiers, names, the image manifest and the ACI archive."""

from trustd.shared.appc.identifier import ACIdentifier, ACName, InvalidIdentifierError
from trustd.shared.appc.manifest import ImageManifest, ManifestError, parse_image_manifest

__all__ = [
    "ACIdentifier",
    "ACName",
    "ImageManifest",
    "InvalidIdentifierError",
    "ManifestError",
    "parse_image_manifest",
]
