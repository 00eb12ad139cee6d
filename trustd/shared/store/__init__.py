"""The shared, content-addressed image store (``--dir``/cas) and its admission gate.

Everything but the key grammar is loaded on first use (PEP 562): the front end names a store
key, and root code imports the gate from here, without loading the index code and ``sqlite3``
or the ACI reader and the OpenPGP verifier that the gate needs (issue #14: start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trustd.shared.imageid import StoreKey, store_key

if TYPE_CHECKING:
    from trustd.shared.store.admit import admit, readmit
    from trustd.shared.store.model import AdmittedImage, ImageRecord, Provenance
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

_LAZY = {
    "AdmittedImage": "model",
    "ImageRecord": "model",
    "Provenance": "model",
    "admit": "admit",
    "readmit": "admit",
    "ImageStore": "store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
