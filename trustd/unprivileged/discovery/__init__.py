"""appc meta discovery (spec 0.8.11): from an image name to ACI and public key URLs.

Model (``model``, ``_parse``, ``_template``), workflow (``walk``) and the I/O edge
(``_fetcher``) are kept apart. Prefixes are matched on whole path segments.
"""

from trustd.unprivileged.discovery._fetcher import Fetcher
from trustd.unprivileged.discovery.model import ACIEndpoint, Attempt, DiscoveryError, MetaTag
from trustd.unprivileged.discovery.walk import discover_images, discover_pubkeys

__all__ = [
    "ACIEndpoint",
    "Attempt",
    "DiscoveryError",
    "Fetcher",
    "MetaTag",
    "discover_images",
    "discover_pubkeys",
]
