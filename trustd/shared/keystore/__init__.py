"""Per-prefix keyrings in rkt's on-disk layout (``trustedkeys/{root.d,prefix.d}``)."""

from trustd.shared.keystore.model import AddResult, KeyFile, RemoveResult
from trustd.shared.keystore.store import Keystore

__all__ = ["AddResult", "KeyFile", "Keystore", "RemoveResult"]
