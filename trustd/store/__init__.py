"""The shared, content-addressed image store (``--dir``/cas) and its admission gate."""

from trustd.store.admit import admit, readmit
from trustd.store.model import AdmittedImage, ImageRecord, Provenance, store_key
from trustd.store.store import ImageStore

__all__ = [
    "AdmittedImage",
    "ImageRecord",
    "ImageStore",
    "Provenance",
    "admit",
    "readmit",
    "store_key",
]
