"""The shared, content-addressed image store (``--dir``/cas) and its admission gate."""

from trustd.shared.store.admit import admit, readmit
from trustd.shared.store.model import AdmittedImage, ImageRecord, Provenance, StoreKey, store_key
from trustd.shared.store.store import ImageStore

__all__ = [
    "AdmittedImage",
    "ImageRecord",
    "ImageStore",
    "Provenance",
    "StoreKey",
    "admit",
    "readmit",
    "store_key",
]
