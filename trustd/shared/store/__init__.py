"""The shared, content-addressed image store (``--dir``/cas) and its admission gate.

:class:`ImageStore` (the SQLite index and the blobs, used with the group's rights) is loaded
on first use (PEP 562): root code imports the key grammar and the gate from here without
loading the index code or ``sqlite3``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trustd.shared.imageid import StoreKey, store_key
from trustd.shared.store.admit import admit, readmit
from trustd.shared.store.model import AdmittedImage, ImageRecord, Provenance

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name == "ImageStore":
        from trustd.shared.store.store import ImageStore  # noqa: PLC0415

        return ImageStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
