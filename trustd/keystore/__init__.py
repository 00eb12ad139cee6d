"""Per-prefix keyrings in rkt's on-disk layout (``trustedkeys/{root.d,prefix.d}``)."""

from trustd.keystore.model import AddResult, KeyFile, RemoveResult
from trustd.keystore.store import Keystore

__all__ = ["AddResult", "KeyFile", "Keystore", "RemoveResult"]
