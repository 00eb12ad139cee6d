"""appc schema types (spec 0.8.11): identifiers, names, and later the manifests."""

from trustd.appc.identifier import ACIdentifier, ACName, InvalidIdentifierError

__all__ = ["ACIdentifier", "ACName", "InvalidIdentifierError"]
